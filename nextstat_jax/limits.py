"""Upper limits on the POI: the mu where CLs (observed, and each expected band)
equals ``level``, by bracketed root finding in JAX.

The free fits and the Asimov data do not depend on mu and are computed once;
each tested mu then needs two fixed-POI fits (data and Asimov data), solved
together in one vmapped call.  All six roots (observed + five expected) are
found in one vmapped solve.  The derivative of a limit follows from the
implicit function theorem at the root, ``dmu* = -(dCLs/dy) / (dCLs/dmu)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .asymptotics import asimov_from_fit, asymptotic_pvalues
from .fits import _Problem
from .roots import bracket_and_solve
from .solver import SolverOptions
from .teststats import ProfileFit, from_fits, profiles

__all__ = ["UpperLimit", "cls_values", "solve_limits", "scan_limits"]


class UpperLimit(NamedTuple):
    """``obs`` (): observed limit; ``exp`` (5,): expected limits at
    -2, -1, 0, +1, +2 sigma. Unpacks as ``obs, exp = ...``."""

    obs: jax.Array
    exp: jax.Array


class _Shared(NamedTuple):
    """The mu-independent part of CLs(mu): free fits and the Asimov data."""

    free_obs: ProfileFit
    asimov: _Problem
    free_asimov: ProfileFit


def _shared(prob: _Problem, poi: int, options: SolverOptions) -> _Shared:
    zero = jnp.zeros((), prob.init.dtype)
    obs = profiles(prob, poi, options, (zero,))  # free fit + Asimov nuisances
    aprob = prob._replace(data=asimov_from_fit(prob, poi, zero, obs.bestfit[1]))
    free_obs = jax.tree_util.tree_map(lambda x: x[0], obs)
    free_asimov = jax.tree_util.tree_map(lambda x: x[0], profiles(aprob, poi, options))
    return _Shared(free_obs, aprob, free_asimov)


def cls_values(mu, prob: _Problem, kind: str, poi: int, options: SolverOptions, shared: _Shared = None):
    """(6,) [CLs observed, CLs expected -2..+2 sigma] at ``mu``."""
    if shared is None:
        shared = _shared(prob, poi, options)

    def conditional(data):
        fit = profiles(prob._replace(data=data), poi, options, (mu,), free=False)
        return fit.twice_nll[0]

    cond = jax.vmap(conditional)(jnp.stack([prob.data, shared.asimov.data]))
    q = from_fits(shared.free_obs.twice_nll, shared.free_obs.poi_hat, cond[0], mu, kind)
    q_a = from_fits(shared.free_asimov.twice_nll, shared.free_asimov.poi_hat, cond[1], mu, kind)
    (cls, _, _), (cls_exp, _, _) = asymptotic_pvalues(q, q_a, kind)
    return jnp.concatenate([cls[None], cls_exp])


def _roots(prob: _Problem, shared: _Shared, level: float, kind: str, poi: int, options: SolverOptions, bracket):
    """(6,) roots of CLs - level (no derivatives: the caller's JVP supplies them)."""
    prob, shared = jax.lax.stop_gradient((prob, shared))
    fn = lambda mu: cls_values(mu, prob, kind, poi, options, shared) - level
    return bracket_and_solve(fn, bracket[0], bracket[1], n=6).root


def solve_limits(prob: _Problem, level: float, kind: str, poi: int, options: SolverOptions, bracket) -> UpperLimit:
    """Observed and expected limits with implicit-function derivatives."""

    # the bracket is an argument (not captured): it may be traced under jit
    @jax.custom_jvp
    def limits(prob, bracket):
        return _roots(prob, _shared(prob, poi, options), level, kind, poi, options, bracket)

    @limits.defjvp
    def limits_jvp(primals, tangents):
        (p, br), (tp, _) = primals, tangents
        # the mu-independent fits once, with their tangents: the roots and the
        # implicit derivative below share them (each is a solver in the program)
        shared, shared_dot = jax.jvp(lambda p: _shared(p, poi, options), (p,), (tp,))
        mus = _roots(p, shared, level, kind, poi, options, br)

        def g(mus, p, shared):
            vals = jax.vmap(lambda mu: cls_values(mu, p, kind, poi, options, shared))(mus)
            return jnp.diagonal(vals)

        # one linearisation serves both directional derivatives (g is traced once)
        _, g_lin = jax.linearize(g, mus, p, shared)
        zeros = lambda tree: jax.tree_util.tree_map(jnp.zeros_like, tree)
        dg_p = g_lin(jnp.zeros_like(mus), tp, shared_dot)
        dg_mu = g_lin(jnp.ones_like(mus), zeros(tp), zeros(shared_dot))
        safe = jnp.where(dg_mu != 0, dg_mu, 1.0)
        return mus, jnp.where(dg_mu != 0, -dg_p / safe, 0.0)

    bracket = tuple(jnp.asarray(b, prob.init.dtype) for b in bracket)
    roots = limits(prob, bracket)
    return UpperLimit(roots[0], roots[1:])


def scan_limits(prob: _Problem, scan, level: float, kind: str, poi: int, options: SolverOptions) -> UpperLimit:
    """pyhf's ``scan=`` mode: CLs on a grid, limits by linear interpolation of
    mu as a function of CLs (``np.interp(level, cls[::-1], scan[::-1])``)."""
    shared = _shared(prob, poi, options)
    vals = jax.vmap(lambda mu: cls_values(mu, prob, kind, poi, options, shared))(scan)
    lim = jax.vmap(lambda v: jnp.interp(level, v[::-1], scan[::-1]), in_axes=1)(vals)
    return UpperLimit(lim[0], lim[1:])
