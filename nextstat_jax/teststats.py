"""Profile-likelihood test statistics (spec §6.2), as pyhf 0.7.6 defines them.

With ``t = 2NLL(theta_hat_hat(mu)) - 2NLL(theta_hat)``:

* ``tmu``/``ttilde``: ``max(t, 0)``;
* ``qmu``/``qtilde``: ``0 if mu_hat > mu else max(t, 0)``;
* ``q0``: ``0 if mu_hat < 0 else max(t_0, 0)``.

The "tilde" variants are the same code: the tilde behaviour (mu_hat >= 0)
comes from the POI lower bound of 0 in the bounds, exactly as in pyhf; the
flag only matters to the asymptotic calculator (``hypotest``).
Values come from fits through the envelope theorem, so ``jax.grad`` of any
statistic costs one backward pass and no extra fits; where a statistic is
clipped to 0 its gradient is 0.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._x64 import public
from .fits import _Problem, _poi_index, _solve, _value_at, _varying_objective, fix_poi, make_problem
from .model import Model
from .solver import SolverOptions

__all__ = ["q0", "qmu", "tmu", "test_statistic", "discovery_significance", "TEST_STATISTICS"]

TEST_STATISTICS = ("q0", "q", "qtilde", "t", "ttilde")


class ProfileFit(NamedTuple):
    """Value-only fit results used by the statistics (batched along axis 0 when
    several fits run together): 2NLL with envelope derivatives, POI estimate,
    convergence, and the solver's bestfit (no derivatives through it)."""

    twice_nll: jax.Array
    poi_hat: jax.Array
    converged: jax.Array
    bestfit: jax.Array


def profiles(prob: _Problem, poi_index: int, options: SolverOptions, mus=(), free: bool = True,
             starts=None, trust_starts: bool = False) -> ProfileFit:
    """The free fit (if ``free``) followed by fixed-POI fits at each of ``mus``,
    solved together in one vmapped call (one ``while_loop`` to compile).
    Returns a :class:`ProfileFit` with a leading axis of ``free + len(mus)``.

    ``starts`` (F, P), optional: a candidate start per fit (e.g. the optimum
    of a nearby problem: an RL step changes the yields by a few percent). Each
    fit starts from whichever of it and the usual init has the lower NLL
    (fixed parameters, the POI of a fixed-POI fit included, keep their
    values), so a bad candidate never makes a start worse; the optimum found
    is the same to the solver's tolerance.

    ``trust_starts``: each fit starts from its candidate (clipped into the
    bounds), with the usual init as the solver's fallback where the objective
    is not finite there (``minimize``'s ``start``). For candidates that
    are good by construction (toys, ``toy_starts.py``): the NLL comparison
    above costs two vmapped NLL evaluations per fit outside the solver's
    unrolled loop (seed toys, 2 x 2048: 1.7 of 8.5 ms)."""
    inits, fixeds = profile_inits(prob, poi_index, mus, free)
    first = None
    if starts is not None and trust_starts:
        first = jax.lax.stop_gradient(starts)
    elif starts is not None:
        inits = jax.vmap(lambda i, f, s: _better_start(prob, i, f, s))(inits, fixeds, starts)

    def one(init, fixed, start):
        p = prob._replace(init=init, fixed=fixed, start=start)
        sol = _solve(p, options)
        return ProfileFit(
            _value_at(sol, p), jax.lax.stop_gradient(sol.theta[poi_index]), sol.converged, sol.theta
        )

    return jax.vmap(one)(inits, fixeds, first)


def profile_inits(prob: _Problem, poi_index: int, mus=(), free: bool = True):
    """Inits (F, P) and fixed masks (F, P) of the fits :func:`profiles` runs:
    the free fit (if ``free``), then the fixed-POI fits at each of ``mus``."""
    probs = ([prob] if free else []) + [fix_poi(prob, poi_index, mu) for mu in mus]
    return jnp.stack([p.init for p in probs]), jnp.stack([p.fixed for p in probs])


def _better_start(prob: _Problem, init, fixed, candidate):
    """``candidate`` (in the bounds, fixed entries from ``init``) if its NLL is
    lower than at ``init`` (a NaN NLL never wins), else ``init``."""
    prob = jax.lax.stop_gradient(prob)
    cand = jnp.where(fixed, init, jnp.clip(jax.lax.stop_gradient(candidate), prob.bounds[:, 0], prob.bounds[:, 1]))
    nll = functools.partial(_varying_objective, model=prob.model, data=prob.data, prep=prob.model.prepare())
    return jnp.where(nll(cand) < nll(init), cand, init)


def safe_sqrt(x):
    """sqrt with a zero (not infinite) gradient at 0 (statistics clipped at 0)."""
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


class StatValue(NamedTuple):
    """A statistic, whether all its fits converged, and their optima (F, P)
    (free fit first; no derivatives through them)."""

    value: jax.Array
    converged: jax.Array
    bestfits: jax.Array


def from_fits(free_nll, free_poi_hat, cond_nll, mu_test, kind: str):
    """Statistic ``kind`` from a free and a conditional fit (pyhf's definitions)."""
    t = jnp.maximum(cond_nll - free_nll, 0.0)
    if kind == "q0":
        return jnp.where(free_poi_hat < 0, 0.0, t)
    if kind in ("q", "qtilde"):
        return jnp.where(free_poi_hat > mu_test, 0.0, t)
    return t  # "t", "ttilde"


def test_mu(kind: str, mu, dtype):
    """The POI value a statistic tests: 0 for q0, else ``mu``."""
    return jnp.zeros((), dtype) if kind == "q0" else mu


def statistic(prob: _Problem, mu, kind: str, poi_index: int, options: SolverOptions, starts=None,
              trust_starts: bool = False) -> StatValue:
    """Test statistic ``kind`` at POI value ``mu``: free and fixed-POI fits in
    one vmapped solve, optionally warm-started (``starts`` (2, P) and
    ``trust_starts``, see :func:`profiles`). Pure; jit/vmap/grad-able."""
    mu_test = test_mu(kind, mu, prob.init.dtype)
    fits = profiles(prob, poi_index, options, (mu_test,), starts=starts, trust_starts=trust_starts)
    value = from_fits(fits.twice_nll[0], fits.poi_hat[0], fits.twice_nll[1], mu_test, kind)
    return StatValue(value, jnp.all(fits.converged), jax.lax.stop_gradient(fits.bestfit))


def check_kind(kind: str) -> str:
    from .errors import InvalidInput

    if kind not in TEST_STATISTICS:
        raise InvalidInput(f"unknown test statistic {kind!r}; choose one of {list(TEST_STATISTICS)}")
    return kind


@functools.partial(jax.jit, static_argnames=("kind", "options"))
def _statistic_entry(model, data, init, fixed, bounds, mu, *, kind, options):
    """A statistic in one compiled call, problem assembly included."""
    prob = make_problem(model, data, init, fixed, bounds)
    return statistic(prob, jnp.asarray(mu, prob.init.dtype), kind, _poi_index(model), options).value


@public
def test_statistic(
    model: Model,
    mu=0.0,
    data=None,
    *,
    kind: str = "qtilde",
    init=None,
    fixed=None,
    bounds=None,
    options: SolverOptions = SolverOptions(),
) -> jax.Array:
    """Profile-likelihood test statistic ``kind`` in ``("q0", "q", "qtilde",
    "t", "ttilde")`` at POI value ``mu`` (ignored for q0). Returns a scalar."""
    _poi_index(model)
    return _statistic_entry(model, data, init, fixed, bounds, mu, kind=check_kind(kind), options=options)


@public
def q0(model: Model, data=None, *, init=None, fixed=None, bounds=None,
       options: SolverOptions = SolverOptions()) -> jax.Array:
    """Discovery statistic q0 (scalar): 0 if mu_hat < 0, else 2NLL(mu=0) - 2NLL(free)."""
    return test_statistic(model, 0.0, data, kind="q0", init=init, fixed=fixed, bounds=bounds, options=options)


@public
def qmu(model: Model, mu, data=None, tilde: bool = True, *, init=None, fixed=None, bounds=None,
        options: SolverOptions = SolverOptions()) -> jax.Array:
    """Upper-limit statistic q_mu (or q~_mu; identical code, see module doc)."""
    kind = "qtilde" if tilde else "q"
    return test_statistic(model, mu, data, kind=kind, init=init, fixed=fixed, bounds=bounds, options=options)


@public
def tmu(model: Model, mu, data=None, tilde: bool = True, *, init=None, fixed=None, bounds=None,
        options: SolverOptions = SolverOptions()) -> jax.Array:
    """Two-sided statistic t_mu (or t~_mu): max(0, 2NLL(mu) - 2NLL(free))."""
    kind = "ttilde" if tilde else "t"
    return test_statistic(model, mu, data, kind=kind, init=init, fixed=fixed, bounds=bounds, options=options)


@public
def discovery_significance(model: Model, data=None, *, init=None, fixed=None, bounds=None,
                           options: SolverOptions = SolverOptions()) -> jax.Array:
    """Observed discovery significance Z0 = sqrt(q0) (0 where q0 = 0, with a
    zero gradient there)."""
    return safe_sqrt(q0(model, data, init=init, fixed=fixed, bounds=bounds, options=options))
