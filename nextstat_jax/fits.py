"""Maximum-likelihood fits with exact derivatives.

``fit`` and ``fixed_poi_fit`` minimise ``NLL = -logpdf`` with the bounded Newton
solver of ``solver.py``.  The solver itself is never differentiated.  Instead:

* the minimum value (``twice_nll``) is differentiated by the envelope theorem:
  at the optimum ``d f(theta_hat(y), y)/dy = df/dy`` with the free parameters
  held, and the pinned ones (fixed, or at an active bound) following their
  pinning value (so the derivative w.r.t. a fixed POI value ``mu`` is right);
* ``bestfit`` is differentiated by the implicit function theorem restricted to
  the free parameters F: ``dtheta_F = -H_FF^{-1} (d(grad_F f) + H_FA dtheta_A)``
  (a ``custom_jvp``, so forward and reverse mode both work).

Uncertainties and covariance come from the inverse Hessian of NLL on the
parameters that are not fixed (no derivatives flow through them).
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ._x64 import f64, public
from .errors import InvalidInput
from . import linalg
from .model import Model, Prepared
from .solver import Solution, SolverOptions, assemble_dense, minimize
from .structure import hessian_structure

__all__ = ["FitResult", "fit", "fixed_poi_fit", "SolverOptions"]


class FitResult(NamedTuple):
    """Result of a maximum-likelihood fit (a pytree; batched under vmap).

    bestfit (P,): fitted parameters. uncertainties (P,): sqrt of the covariance
    diagonal (0 for fixed parameters). twice_nll (): -2 logpdf at bestfit.
    converged (): bool. n_iter (): Newton iterations. covariance (P, P):
    inverse Hessian of NLL on the non-fixed parameters. status (): solver code
    (0 converged, 1 max_iter, 2 non-finite, 3 line search failed).
    """

    bestfit: jax.Array
    uncertainties: jax.Array
    twice_nll: jax.Array
    converged: jax.Array
    n_iter: jax.Array
    covariance: jax.Array
    status: jax.Array


class _Problem(NamedTuple):
    """A fit problem: everything the objective and constraints depend on."""

    model: Model
    data: jax.Array
    init: jax.Array
    bounds: jax.Array
    fixed: jax.Array
    #: optional first iterate (P,); init stays the fallback where the objective
    #: is not finite there (``minimize``'s ``start``)
    start: Optional[jax.Array] = None


def _objective(theta, model: Model, data, prep: Prepared):
    """NLL = -logpdf (normalisation constants included)."""
    return -model._logpdf(theta, data, prep)


def _varying_objective(theta, model: Model, data, prep: Prepared):
    """NLL up to parameter-independent constants: what the solver minimises
    (no lnGamma or log-sigma terms in the loop)."""
    return -model._logpdf_varying(theta, data, prep)


def _derivatives(model: Model, data, prep: Prepared):
    """``theta -> (f, grad, Y = H @ seeds)`` with compressed Hessian-vector
    products (forward-over-reverse), and ``theta -> f``, for the varying part
    of the NLL."""
    f = functools.partial(_varying_objective, model=model, data=data, prep=prep)
    seeds = jnp.asarray(hessian_structure(model.layout).seeds)
    vg = jax.value_and_grad(f)

    n_seeds = seeds.shape[1]

    def derivs(theta):
        if n_seeds <= 16:  # unrolled: nested vmaps make batched gathers slow on CPU
            outs = [jax.jvp(vg, (theta,), (seeds[:, k],)) for k in range(n_seeds)]
            (v, g), _ = outs[0]
            return v, g, jnp.stack([hv for _, (_, hv) in outs], axis=1)
        (v, g), (_, hv) = jax.vmap(lambda s: jax.jvp(vg, (theta,), (s,)), in_axes=1)(seeds)
        return v[0], g[0], hv.T

    return derivs, f


def hessian(theta, model: Model, data, prep: Prepared):
    """Exact dense Hessian (P, P) of NLL, from compressed products."""
    derivs, _ = _derivatives(model, data, prep)
    return assemble_dense(derivs(theta)[2], hessian_structure(model.layout))


#: interpolation codes whose factor has a kink (a jump in slope) at alpha = 0
_KINKED_CODES = ("code0", "code1")
#: |alpha| below which a converged parameter is tried on the other side of its kink
KINK_WINDOW = 0.05


@functools.lru_cache(maxsize=256)
def _kink_mask(layout) -> Optional[np.ndarray]:
    """(P,) bool: parameters whose normsys/histosys interpolation is piecewise
    (codes 0 and 1 have a slope jump at alpha = 0); None when there are none."""
    mask = np.zeros(layout.n_params, bool)
    if layout.normsys_code in _KINKED_CODES:
        mask[np.asarray(layout.ns_par, int)] = True
    if layout.histosys_code in _KINKED_CODES:
        mask[np.asarray(layout.hs_par, int)] = True
    return mask if mask.any() else None


def _two_sided(model: Model) -> jax.Array:
    """(P,) bool: parameters with a piecewise (code 0/1) variation whose up and
    down templates move a yield the same way (both above or both below the
    nominal). Along such a parameter the NLL can have a Lambda-shaped kink at
    0, with a local minimum on each side that a Newton method, standing on one
    side, cannot see across."""
    lay = model.layout
    out = jnp.zeros((lay.n_params,), model.nominal.dtype)
    if lay.normsys_code in _KINKED_CODES and lay.ns_par.shape[0]:
        same = (model.ns_hi - 1.0) * (1.0 - model.ns_lo) < 0
        out = out.at[lay.ns_par].max(same.astype(out.dtype))
    if lay.histosys_code in _KINKED_CODES and lay.hs_par.shape[0]:
        nom = model.nominal[lay.hs_sample, lay.hs_bin]
        same = (model.hs_hi - nom) * (nom - model.hs_lo) < 0
        out = out.at[lay.hs_par].max(same.astype(out.dtype))
    return out > 0


def _other_side_of_kinks(theta, kinks, fixed, two_sided):
    """``theta`` with every free kinked parameter within ``KINK_WINDOW`` of its
    kink, and every ``two_sided`` one wherever it is, moved to the mirror point
    on the other side (``0`` -> ``-1e-8``)."""
    near = kinks & ~fixed & ((jnp.abs(theta) < KINK_WINDOW) | two_sided)
    mirror = jnp.where(theta > 0, -theta, jnp.maximum(-theta, 1e-8))
    return jnp.where(near, mirror, theta)


@functools.lru_cache(maxsize=256)
def _central_piece_mask(layout) -> Optional[np.ndarray]:
    """(P,) bool: histosys parameters under code 2, whose interpolation (as
    pyhf implements it) jumps in value at |alpha| = 1; None when there are none."""
    if layout.histosys_code != "code2" or len(layout.hs_par) == 0:
        return None
    mask = np.zeros(layout.n_params, bool)
    mask[np.asarray(layout.hs_par, int)] = True
    return mask


def _lower(best: Solution, other: Solution) -> Solution:
    """The better of two solutions (per element under vmap)."""
    better = other.converged & (other.f < best.f)
    out = jax.tree_util.tree_map(lambda a, b: jnp.where(better, a, b), other, best)
    return out._replace(n_iter=best.n_iter + other.n_iter)


def _solve(prob: _Problem, options: SolverOptions) -> Solution:
    """Run the minimiser; no derivatives flow through this.

    Piecewise interpolation makes the NLL piecewise smooth, and a Newton method
    only sees the piece it stands on; such models get extra solves, and the
    lowest converged minimum wins (models with the default codes pay nothing):

    * codes 0/1 have a slope jump at alpha = 0: one side's piece can have its
      minimum a hair from the kink while the other side descends further (a
      one-sided systematic with slightly pulled auxdata, e.g. Asimov data).
      A second solve starts across every nearby kink, and across the kink of
      every parameter whose two variations move a yield the same way (a
      Lambda-shaped kink has a minimum on each side, however far from 0);
    * histosys code 2, as pyhf implements it, jumps in value at |alpha| = 1, so
      the minimum can sit exactly at alpha = +-1 on the central piece while a
      Newton step lands on the outer piece's own minimum. A third solve keeps
      those parameters within [-1, 1] (a box constraint the solver handles
      exactly).
    """
    prob = jax.lax.stop_gradient(prob)
    objective = (prob.model, prob.data, prob.model.prepare())
    lo, hi = prob.bounds[:, 0], prob.bounds[:, 1]
    structure = hessian_structure(prob.model.layout)
    kinks = _kink_mask(prob.model.layout)

    def run(init, lo, hi, start=None):
        return minimize(_objective_fns, objective, init, lo, hi, prob.fixed, structure, options, kinks, start)

    sol = run(prob.init, lo, hi, prob.start)
    best = sol
    if kinks is not None:
        mirror = _other_side_of_kinks(sol.theta, jnp.asarray(kinks), prob.fixed, _two_sided(prob.model))
        best = _lower(best, run(mirror, lo, hi))
    central = _central_piece_mask(prob.model.layout)
    if central is not None:
        c = jnp.asarray(central) & ~prob.fixed
        lo_c, hi_c = jnp.where(c, jnp.maximum(lo, -1.0), lo), jnp.where(c, jnp.minimum(hi, 1.0), hi)
        best = _lower(best, run(jnp.where(c, jnp.clip(sol.theta, lo_c, hi_c), sol.theta), lo_c, hi_c))
    return best


def _objective_fns(objective):
    """``(model, data, prep) -> (derivatives, value)`` for :func:`minimize`."""
    return _derivatives(*objective)


def _pinned(theta, prob: _Problem):
    """Mask of parameters held by a constraint at the solution, and the values
    holding them (init for fixed, the bound for active bounds)."""
    lo, hi = prob.bounds[:, 0], prob.bounds[:, 1]
    at_lo = theta <= lo
    at_hi = theta >= hi
    pinned = prob.fixed | at_lo | at_hi
    z = jnp.where(prob.fixed, prob.init, jnp.where(at_lo, lo, hi))
    return pinned, z


def _factor_free(H, free):
    """Factor of ``H`` on the ``free`` parameters (P,) bool, the identity on
    the others (so solves leave them at 0)."""
    Hf = jnp.where(free[:, None] & free[None, :], H, jnp.eye(H.shape[0], dtype=H.dtype))
    return linalg.factor(Hf)


@jax.custom_jvp
def _implicit(theta_hat, prob: _Problem):
    """Identity on ``theta_hat`` whose derivative is the implicit-function one."""
    return theta_hat


@_implicit.defjvp
def _implicit_jvp(primals, tangents):
    theta, prob = primals
    _, tprob = tangents
    pinned, z = _pinned(theta, prob)
    _, tz = jax.jvp(lambda p: _pinned(theta, p)[1], (prob,), (tprob,))
    tz = jnp.where(pinned, tz, 0.0)

    def grad_f(model, data):
        return jax.grad(_objective)(theta, model, data, model.prepare())

    _, dgrad = jax.jvp(grad_f, (prob.model, prob.data), (tprob.model, tprob.data))
    model, data = prob.model, prob.data
    H = hessian(theta, model, data, model.prepare())
    free = ~pinned
    rhs = jnp.where(free, dgrad + H @ tz, 0.0)
    dtheta = -linalg.solve(_factor_free(H, free), rhs)  # H_FF is positive definite at a minimum
    return theta, jnp.where(pinned, tz, dtheta)


def _value_at(sol: Solution, prob: _Problem):
    """2*NLL at the solver's optimum with envelope-theorem derivatives. The
    value is the solver's own (the varying part at ``sol.theta``) plus the
    normalisation constants: no second evaluation of the likelihood, which
    outside the solver's loop runs as plain vmapped kernels (a fifth of the
    seed model's q0 batch)."""
    return _envelope(jax.lax.stop_gradient(sol.theta), jax.lax.stop_gradient(sol.f), prob)


@jax.custom_jvp
def _envelope(theta, f, prob: _Problem):
    model = prob.model
    return 2.0 * (f - model._logpdf_constant(prob.data, model.prepare()))


@_envelope.defjvp
def _envelope_jvp(primals, tangents):
    """d(2 NLL(theta_hat(p), p)) = 2 dNLL/dp at theta_hat, the free parameters
    held and the pinned ones (fixed, or at an active bound) following their
    pinning value (so the derivative w.r.t. a fixed POI value is right)."""
    theta, f, prob = primals

    def full(prob):
        pinned, z = _pinned(theta, prob)
        return 2.0 * _objective(jnp.where(pinned, z, theta), prob.model, prob.data, prob.model.prepare())

    _, dv = jax.jvp(full, (prob,), (tangents[2],))
    return _envelope(theta, f, prob), dv


def _covariance(theta, prob: _Problem):
    """Inverse Hessian of NLL on the non-fixed parameters (0 elsewhere). The
    modified Cholesky keeps it finite: a flat direction gets a huge variance."""
    theta = jax.lax.stop_gradient(theta)
    prob = jax.lax.stop_gradient(prob)
    model = prob.model
    H = hessian(theta, model, prob.data, model.prepare())
    free = ~prob.fixed
    cov = linalg.solve(_factor_free(H, free), jnp.eye(theta.shape[0], dtype=H.dtype))
    return jnp.where(free[:, None] & free[None, :], 0.5 * (cov + cov.T), 0.0)


def _fit_problem(prob: _Problem, options: SolverOptions, with_covariance: bool) -> FitResult:
    sol = _solve(prob, options)
    theta = _implicit(sol.theta, prob)
    twice_nll = _value_at(sol, prob)
    if with_covariance:
        cov = _covariance(sol.theta, prob)
        unc = jnp.sqrt(jnp.clip(jnp.diag(cov), 0.0))
    else:
        n = theta.shape[0]
        cov = jnp.zeros((n, n), theta.dtype)
        unc = jnp.zeros((n,), theta.dtype)
    return FitResult(theta, unc, twice_nll, sol.converged, sol.n_iter, cov, sol.status)


def _resolve_data(model: Model, data) -> jax.Array:
    """Full data vector (B + A,); ``None`` means observed, (B,) gets the auxdata."""
    if data is None:
        return model.data
    data = f64(data, "data")
    nm, na = model.nmaindata, model.nauxdata
    if data.shape == (nm + na,):
        return data
    if data.shape == (nm,):
        return jnp.concatenate([data, model.auxdata])
    raise InvalidInput(
        f"data must have shape ({nm + na},) (main + auxdata) or ({nm},) (main bins only), "
        f"got shape {tuple(data.shape)}"
    )


def make_problem(model: Model, data=None, init=None, fixed=None, bounds=None) -> _Problem:
    """Assemble a fit problem with pyhf's defaults for anything not given."""
    if not isinstance(model, Model):
        raise InvalidInput(f"expected a nextstat_jax Model, got {type(model).__name__}")
    n = model.n_params
    data = _resolve_data(model, data)
    init = model.init if init is None else f64(init, "init")
    bounds = model.bounds if bounds is None else f64(bounds, "bounds")
    fixed = model.prepare().fixed if fixed is None else jnp.asarray(fixed, dtype=bool)
    for name, arr, shape in (("init", init, (n,)), ("bounds", bounds, (n, 2)), ("fixed", fixed, (n,))):
        if arr.shape != shape:
            raise InvalidInput(f"{name} must have shape {shape}, got {tuple(arr.shape)}")
    return _Problem(model, data, init, bounds, fixed)


def _poi_index(model: Model) -> int:
    if model.poi_index is None:
        raise InvalidInput("the model has no parameter of interest (build it with a POI)")
    return model.poi_index


def fix_poi(prob: _Problem, poi_index: int, poi_value) -> _Problem:
    """The same problem with the POI fixed at ``poi_value``."""
    mu = f64(poi_value, "poi_value")
    if mu.shape != ():
        raise InvalidInput(f"poi_value must be a scalar, got shape {tuple(mu.shape)}")
    return prob._replace(
        init=prob.init.at[poi_index].set(mu), fixed=prob.fixed.at[poi_index].set(True)
    )


@functools.partial(jax.jit, static_argnames=("options", "covariance", "poi_value_given"))
def _fit_entry(model, data, init, fixed, bounds, poi_value, *, options, covariance, poi_value_given):
    """The whole fit in one compiled call: problem assembly included (eager
    assembly would cost more than the fit itself on small models)."""
    prob = make_problem(model, data, init, fixed, bounds)
    if poi_value_given:
        prob = fix_poi(prob, _poi_index(model), poi_value)
    return _fit_problem(prob, options, covariance)


@public
def fit(
    model: Model,
    data=None,
    *,
    init=None,
    fixed=None,
    bounds=None,
    options: SolverOptions = SolverOptions(),
    covariance: bool = True,
) -> FitResult:
    """Maximum-likelihood fit of all non-fixed parameters within bounds.

    Args:
        model: the :class:`Model`.
        data: (B + A,) full data, (B,) main bins (model auxdata appended), or
            None for the model's observed data.
        init, fixed, bounds: override ``suggested_init()`` (P,),
            ``suggested_fixed()`` (P,) bool, ``suggested_bounds()`` (P, 2).
        options: :class:`SolverOptions`.
        covariance: also compute covariance/uncertainties (one Hessian).

    Returns:
        :class:`FitResult`. Works under jit and vmap; ``bestfit`` and
        ``twice_nll`` are exactly differentiable w.r.t. yields and data.
    """
    return _fit_entry(model, data, init, fixed, bounds, None, options=options, covariance=covariance,
                      poi_value_given=False)


@public
def fixed_poi_fit(
    model: Model,
    poi_value,
    data=None,
    *,
    init=None,
    fixed=None,
    bounds=None,
    options: SolverOptions = SolverOptions(),
    covariance: bool = True,
) -> FitResult:
    """Fit with the parameter of interest fixed at ``poi_value`` (pyhf's
    ``fixed_poi_fit``); other arguments as :func:`fit`."""
    _poi_index(model)
    return _fit_entry(model, data, init, fixed, bounds, poi_value, options=options, covariance=covariance,
                      poi_value_given=True)
