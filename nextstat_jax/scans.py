"""Scans over a grid and goodness of fit.

* :func:`profile_scan`: the profile likelihood of one parameter (the POI by
  default) on a grid, ``-2 Delta ln L`` relative to the global minimum.  The
  free fit and the conditional fits at every grid value run in **one** vmapped
  solve (one ``while_loop``).
* :func:`cls_curve`: asymptotic CLs (observed and the expected -2..+2 sigma band)
  on a grid of POI values in one vmapped call, with the upper limits read off by
  linear interpolation (pyhf's ``upper_limit(..., scan=...)``).  The free fits
  and the Asimov data do not depend on mu and are computed once.
* :func:`goodness_of_fit`: the saturated-model test (as cabinetry).

Each compiles once per model structure, grid length and options: a new grid
of the same length, new data or new yields reuse the compiled code.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaincc

from ._pytree import pytree_dataclass, static_field
from ._x64 import f64, public
from .asymptotics import asimov_from_fit, asymptotic_pvalues
from .errors import InvalidInput
from .fits import _fit_problem, _implicit, _poi_index, _solve, _value_at, make_problem
from .limits import UpperLimit
from .model import Model, xlogy
from .solver import SolverOptions
from .teststats import from_fits, profiles

__all__ = ["ProfileScan", "CLsCurve", "GoodnessOfFit", "profile_scan", "cls_curve", "goodness_of_fit"]


# --------------------------------------------------------------------- results
@pytree_dataclass
class ProfileScan:
    """Result of :func:`profile_scan` (a pytree; N grid values, P parameters).

    ``values`` (N,): the grid. ``delta_twice_nll`` (N,): ``-2 Delta ln L`` =
    ``twice_nll - global_twice_nll``, clipped at 0. ``twice_nll`` (N,): -2 ln L
    of the conditional fits. ``bestfit`` (N, P): conditional best fits (the
    scanned parameter at its grid value). ``converged`` (N,) bool.
    ``global_bestfit`` (P,), ``global_twice_nll`` (), ``global_converged`` ():
    the unconditional fit. ``par_index``, ``par_name``: the scanned parameter
    (static).
    """

    values: jax.Array
    delta_twice_nll: jax.Array
    twice_nll: jax.Array
    bestfit: jax.Array
    converged: jax.Array
    global_bestfit: jax.Array
    global_twice_nll: jax.Array
    global_converged: jax.Array
    par_index: int = static_field()
    par_name: str = static_field()

    @property
    def best_value(self) -> jax.Array:
        """The scanned parameter's unconditional best-fit value."""
        return self.global_bestfit[..., self.par_index]

    def __repr__(self) -> str:
        return f"ProfileScan(par_name={self.par_name!r}, n_points={np.shape(self.values)[-1]})"


@pytree_dataclass
class CLsCurve:
    """Result of :func:`cls_curve` (a pytree; N POI values).

    ``mus`` (N,): the grid. ``cls_obs``, ``clsb_obs``, ``clb_obs`` (N,):
    observed CLs, CLs+b, CLb. ``cls_exp`` (N, 5): expected CLs at -2, -1, 0, +1,
    +2 sigma. ``converged`` (N,) bool: every fit behind that point converged.
    ``obs_limit`` (), ``exp_limits`` (5,): upper limits at CLs = ``level`` by
    linear interpolation (pyhf's scan mode). ``level``, ``test_stat``,
    ``poi_name``: static.
    """

    mus: jax.Array
    cls_obs: jax.Array
    clsb_obs: jax.Array
    clb_obs: jax.Array
    cls_exp: jax.Array
    converged: jax.Array
    obs_limit: jax.Array
    exp_limits: jax.Array
    level: float = static_field()
    test_stat: str = static_field()
    poi_name: str = static_field()

    @property
    def limits(self) -> UpperLimit:
        """``UpperLimit(obs, exp)`` of the interpolated limits."""
        return UpperLimit(self.obs_limit, self.exp_limits)

    def __repr__(self) -> str:
        return (f"CLsCurve(poi_name={self.poi_name!r}, n_points={np.shape(self.mus)[-1]}, "
                f"level={self.level}, test_stat={self.test_stat!r})")


class GoodnessOfFit(NamedTuple):
    """Result of :func:`goodness_of_fit` (all scalars).

    ``delta_twice_nll``: ``2 NLL(best fit) - 2 NLL(saturated)`` (the chi2-like
    statistic); ``dof``: main bins minus free unconstrained parameters;
    ``p_value``: chi2 survival probability (NaN if ``dof <= 0``);
    ``twice_nll``, ``saturated_twice_nll``: the two terms; ``converged``: the
    best fit converged.
    """

    delta_twice_nll: jax.Array
    dof: jax.Array
    p_value: jax.Array
    twice_nll: jax.Array
    saturated_twice_nll: jax.Array
    converged: jax.Array


# ------------------------------------------------------------------ utilities
def _par_index(model: Model, par) -> int:
    names = model.par_names
    if par is None:
        return _poi_index(model)
    if isinstance(par, str):
        if par in names:
            return names.index(par)
        raise InvalidInput(f"unknown parameter {par!r}; the model's parameters are {names}")
    if isinstance(par, (int, np.integer)) and not isinstance(par, bool):
        if not -len(names) <= int(par) < len(names):
            raise InvalidInput(f"parameter index {par} out of range for a model with {len(names)} parameters")
        return int(par) % len(names)
    raise InvalidInput(f"par must be a parameter name or an index, got {type(par).__name__} {par!r}")


def _grid(values, what: str):
    values = f64(values, what)
    if values.ndim != 1 or values.shape[0] < 1:
        raise InvalidInput(f"{what} must be a 1-d array of at least 1 value, got shape {tuple(values.shape)}")
    return values


def _check_in_bounds(model: Model, values, index: int, bounds, what: str) -> None:
    """Grid values outside the parameter's bounds are refused (concrete inputs
    only): the likelihood may not exist there (negative rates)."""
    if isinstance(values, jax.core.Tracer) or isinstance(bounds, jax.core.Tracer):
        return
    b = np.asarray(model.bounds if bounds is None else bounds, dtype=float)
    if b.shape != (model.n_params, 2):
        return  # make_problem reports the shape
    lo, hi = b[index]
    v = np.asarray(values)
    if not np.all(np.isfinite(v)):
        raise InvalidInput(f"{what} must be finite")
    if np.any(v < lo) or np.any(v > hi):
        raise InvalidInput(
            f"{what} must lie within the bounds [{lo:g}, {hi:g}] of {model.par_names[index]!r} "
            f"(got [{v.min():g}, {v.max():g}]); pass bounds=... to widen them"
        )


# --------------------------------------------------------------- profile scan
def scan_fits(prob, index: int, values, options: SolverOptions):
    """Free fit and fits with parameter ``index`` fixed at each of ``values``,
    in one vmapped solve: (twice_nll (1+N,), bestfit (1+N, P), converged (1+N,))."""
    n = values.shape[0]
    inits = jnp.concatenate([prob.init[None], jnp.tile(prob.init, (n, 1)).at[:, index].set(values)])
    fixeds = jnp.concatenate([prob.fixed[None], jnp.tile(prob.fixed, (n, 1)).at[:, index].set(True)])

    def one(init, fixed):
        p = prob._replace(init=init, fixed=fixed)
        sol = _solve(p, options)
        return _value_at(sol, p), _implicit(sol.theta, p), sol.converged

    return jax.vmap(one)(inits, fixeds)


@functools.partial(jax.jit, static_argnames=("index", "name", "options"))
def _profile_entry(model, data, init, fixed, bounds, values, *, index, name, options):
    prob = make_problem(model, data, init, fixed, bounds)
    nll, best, conv = scan_fits(prob, index, values, options)
    delta = jnp.maximum(nll[1:] - nll[0], 0.0)
    return ProfileScan(values, delta, nll[1:], best[1:], conv[1:], best[0], nll[0], conv[0], index, name)


@public
def profile_scan(
    model: Model,
    values,
    data=None,
    *,
    par: Union[str, int, None] = None,
    init=None,
    fixed=None,
    bounds=None,
    options: SolverOptions = SolverOptions(),
) -> ProfileScan:
    """Profile-likelihood scan of one parameter over a grid.

    Args:
        model: the :class:`Model`.
        values: (N,) grid of values of the scanned parameter (within its
            bounds; pass ``bounds`` to widen them).
        data: (B + A,) or (B,) data, or None for the observed data.
        par: parameter name (``model.par_names``) or index; default the POI.
        init, fixed, bounds, options: as :func:`nextstat_jax.fit`.

    Returns:
        :class:`ProfileScan`: ``delta_twice_nll`` (N,) is ``-2 Delta ln L``
        relative to the global minimum (>= 0), with the conditional fits
        (``twice_nll`` (N,), ``bestfit`` (N, P), ``converged`` (N,)) and the
        global fit. The free fit and all N conditional fits run in one vmapped
        solve; jit/vmap/grad-able (a new grid of the same length does not
        recompile).
    """
    index = _par_index(model, par)
    values = _grid(values, "values")
    _check_in_bounds(model, values, index, bounds, "scan values")
    return _profile_entry(model, data, init, fixed, bounds, values, index=index,
                          name=model.par_names[index], options=options)


# ------------------------------------------------------------------ CLs curve
def curve_points(prob, mus, kind: str, poi: int, options: SolverOptions):
    """(cls, clsb, clb (N,), cls_exp (N, 5), converged (N,)) at each of ``mus``.

    Two vmapped solves in all: the free and mu = 0 fits to the data (which give
    the Asimov data), then the free fit to the Asimov data together with the
    conditional fits at every mu to the data and to the Asimov data (2N + 1
    problems, one ``while_loop``)."""
    dtype = prob.init.dtype
    first = profiles(prob, poi, options, (jnp.zeros((), dtype),))
    asimov = asimov_from_fit(prob, poi, jnp.zeros((), dtype), first.bestfit[1])
    n = mus.shape[0]
    cond_init = jnp.tile(prob.init, (n, 1)).at[:, poi].set(mus)
    cond_fixed = jnp.tile(prob.fixed, (n, 1)).at[:, poi].set(True)
    datas = jnp.concatenate([asimov[None], jnp.tile(prob.data, (n, 1)), jnp.tile(asimov, (n, 1))])
    inits = jnp.concatenate([prob.init[None], cond_init, cond_init])
    fixeds = jnp.concatenate([prob.fixed[None], cond_fixed, cond_fixed])

    def one(data, init, fixed):
        p = prob._replace(data=data, init=init, fixed=fixed)
        sol = _solve(p, options)
        return _value_at(sol, p), jax.lax.stop_gradient(sol.theta[poi]), sol.converged

    nll, poi_hat, conv = jax.vmap(one)(datas, inits, fixeds)
    q = from_fits(first.twice_nll[0], first.poi_hat[0], nll[1 : n + 1], mus, kind)
    q_a = from_fits(nll[0], poi_hat[0], nll[n + 1 :], mus, kind)
    (cls, clsb, clb), (cls_exp, _, _) = jax.vmap(lambda a, b: asymptotic_pvalues(a, b, kind))(q, q_a)
    converged = conv[1 : n + 1] & conv[n + 1 :] & conv[0] & jnp.all(first.converged)
    return cls, clsb, clb, cls_exp, converged


def interpolate_limits(mus, cls_obs, cls_exp, level: float):
    """pyhf's scan-mode limits: ``np.interp(level, cls[::-1], mus[::-1])`` for
    the observed and each expected curve. Returns (obs (), exp (5,))."""
    vals = jnp.concatenate([cls_obs[:, None], cls_exp], axis=1)
    lim = jax.vmap(lambda v: jnp.interp(level, v[::-1], mus[::-1]), in_axes=1)(vals)
    return lim[0], lim[1:]


@functools.partial(jax.jit, static_argnames=("level", "kind", "name", "options"))
def _curve_entry(model, data, init, fixed, bounds, mus, *, level, kind, name, options):
    prob = make_problem(model, data, init, fixed, bounds)
    cls, clsb, clb, cls_exp, conv = curve_points(prob, mus, kind, _poi_index(model), options)
    obs, exp = interpolate_limits(mus, cls, cls_exp, level)
    return CLsCurve(mus, cls, clsb, clb, cls_exp, conv, obs, exp, level, kind, name)


@public
def cls_curve(
    model: Model,
    mus,
    data=None,
    *,
    test_stat: str = "qtilde",
    level: float = 0.05,
    init=None,
    fixed=None,
    bounds=None,
    options: SolverOptions = SolverOptions(),
) -> CLsCurve:
    """Asymptotic CLs over a grid of POI values, with the expected band.

    Args:
        model: the :class:`Model` (with a free POI).
        mus: (N,) POI values (within the POI bounds), N >= 2, increasing for
            the interpolated limits to be meaningful.
        data: (B + A,) or (B,) data, or None for the observed data.
        test_stat: "qtilde" (default) or "q".
        level: CLs level of the limits (default 0.05, i.e. 95% CL).
        init, fixed, bounds, options: as :func:`nextstat_jax.fit`.

    Returns:
        :class:`CLsCurve`: ``cls_obs`` (N,), ``cls_exp`` (N, 5) (-2..+2
        sigma), ``clsb_obs``/``clb_obs`` (N,), ``converged`` (N,), and the
        observed (``obs_limit``) and expected (``exp_limits``, (5,)) limits by
        linear interpolation, as pyhf's ``upper_limit(data, model, scan=mus)``.
        One vmapped call; each point equals :func:`nextstat_jax.hypotest`.
    """
    from .infer import _check_poi_free

    if test_stat not in ("q", "qtilde"):
        raise InvalidInput(f"cls_curve uses test_stat 'q' or 'qtilde', got {test_stat!r}")
    if not 0.0 < float(level) < 1.0:
        raise InvalidInput(f"level must be in (0, 1), got {level}")
    poi = _check_poi_free(model, fixed)
    mus = _grid(mus, "mus")
    if mus.shape[0] < 2:
        raise InvalidInput("mus must hold at least 2 POI values")
    _check_in_bounds(model, mus, poi, bounds, "mus")
    return _curve_entry(model, data, init, fixed, bounds, mus, level=float(level), kind=test_stat,
                        name=model.poi_name, options=options)


# ------------------------------------------------------------- goodness of fit
def free_unconstrained_count(model: Model) -> int:
    """Number of parameters that are neither fixed nor constrained (cabinetry's
    ``unconstrained_parameter_count``)."""
    lay = model.layout
    constrained = np.zeros(lay.n_params, bool)
    constrained[np.asarray(lay.aux_par, int)] = True
    fixed = np.asarray(lay.fixed_base, bool) & ~np.asarray(lay.fixed_dynamic, bool)
    return int(np.sum(~constrained & ~fixed))


@functools.partial(jax.jit, static_argnames=("options", "dof"))
def _gof_entry(model, data, *, options, dof):
    prob = make_problem(model, data)
    best = _fit_problem(prob, options, False)
    main = prob.data[: model.nmaindata]
    nu = jnp.sum(model._rates_by_sample(best.bestfit), axis=0)
    # saturated model: nu = n in every main bin; the constraint terms (at the
    # best fit) cancel in the difference, as do the lnGamma(n+1) terms
    poisson_best = jnp.sum(xlogy(main, nu) - nu)
    poisson_sat = jnp.sum(xlogy(main, main) - main)
    delta = jnp.maximum(2.0 * (poisson_sat - poisson_best), 0.0)
    saturated = best.twice_nll - 2.0 * (poisson_sat - poisson_best)
    k = jnp.asarray(dof, delta.dtype)
    p = gammaincc(jnp.maximum(k, 1.0) / 2.0, delta / 2.0) if dof > 0 else jnp.asarray(jnp.nan, delta.dtype)
    return GoodnessOfFit(delta, jnp.asarray(dof, jnp.int32), p, best.twice_nll, saturated, best.converged)


@public
def goodness_of_fit(model: Model, data=None, *, options: SolverOptions = SolverOptions()) -> GoodnessOfFit:
    """Saturated-model goodness of fit (cabinetry's definition).

    The saturated model has expected = observed counts in every main bin and
    its constraint terms evaluated at the best fit, so
    ``delta_twice_nll = 2 NLL(best fit) - 2 NLL(saturated)
    = 2 sum_b [nu_b - n_b + n_b ln(n_b / nu_b)]`` at the best fit;
    ``dof`` = number of main bins - number of free unconstrained parameters;
    ``p_value`` = chi2 survival function of ``delta_twice_nll`` with ``dof``
    degrees of freedom (NaN when ``dof <= 0``, as cabinetry).

    Args:
        model: the :class:`Model`. data: (B + A,) or (B,) data, or None for
            the observed data. options: :class:`SolverOptions`.

    Returns:
        :class:`GoodnessOfFit` (scalars; jit/vmap-able over data).
    """
    dof = model.nmaindata - free_unconstrained_count(model)
    return _gof_entry(model, data, options=options, dof=int(dof))
