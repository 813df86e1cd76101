"""Interpretation after a fit: impact ranking, pulls and constraints, the
correlation matrix.

``rank_impact`` follows cabinetry's definition of impacts: the POI is refitted
with one nuisance parameter fixed at ``theta_hat +/- sigma`` (pre-fit sigma:
the constraint width; post-fit sigma: from the exact Hessian at the best fit),
and the impact is the shift of the fitted POI.  Every refit (2 per ranked
parameter) runs in one vmapped solve.  Rows carry NextStat's keys
(``name, delta_mu_up, delta_mu_down, total_impact, pull, constraint, rank``),
so code written for ``nextstat.interpret.rank_impact`` keeps working;
``method="prefit"`` reproduces NextStat's numbers, ``"postfit"`` (default) is
the ATLAS/cabinetry convention.  Parameters held fixed (including masked
staterror/shapesys bins) and the POI are not ranked.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from ._x64 import x64
from .errors import InvalidInput
from .fits import _fit_problem, _poi_index, _solve, make_problem
from .model import Model
from .solver import SolverOptions

__all__ = ["ImpactRow", "rank_impact", "rank_impact_df", "prefit_uncertainties", "pulls", "correlation_matrix"]

_SORT_KEYS = {
    "total": lambda r: r.total_impact,
    "up": lambda r: abs(r.delta_mu_up),
    "down": lambda r: abs(r.delta_mu_down),
    "pull": lambda r: abs(r.pull),
    "name": lambda r: r.name,
}


@dataclasses.dataclass(frozen=True)
class ImpactRow:
    """One ranked nuisance parameter (see :func:`rank_impact`)."""

    name: str
    delta_mu_up: float
    delta_mu_down: float
    total_impact: float
    pull: float
    constraint: float
    rank: int = 0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@x64
def prefit_uncertainties(model: Model) -> np.ndarray:
    """(P,) pre-fit uncertainty of each parameter: the Gaussian constraint width,
    ``1/sqrt(tau)`` for Poisson (shapesys) constraints, 0 for unconstrained
    parameters (as cabinetry)."""
    lay = model.layout
    prep = model.prepare()
    width = np.asarray(prep.width)
    unc = np.zeros(lay.n_params)
    for a, p in enumerate(lay.aux_par):
        unc[p] = 1.0 / np.sqrt(width[a]) if lay.aux_poisson[a] else width[a]
    return unc


def _nominal_centres(model: Model) -> np.ndarray:
    """(P,) constraint centre (auxdata; Poisson: 1) or init for unconstrained."""
    lay = model.layout
    centre = np.asarray(model.init, dtype=float).copy()
    aux = np.asarray(model.auxdata)
    for a, p in enumerate(lay.aux_par):
        centre[p] = 1.0 if lay.aux_poisson[a] else aux[a]
    return centre


_best_fit = jax.jit(_fit_problem, static_argnums=(1, 2))


@functools.partial(jax.jit, static_argnames=("options",))
def _refits(prob, index, values, *, options):
    """POI estimates of fits with parameter ``index[k]`` fixed at ``values[k]``."""

    def one(i, v):
        p = prob._replace(init=prob.init.at[i].set(v), fixed=prob.fixed.at[i].set(True))
        return _solve(p, options)

    sol = jax.vmap(one)(index, values)
    return sol.theta, sol.converged


@x64
def rank_impact(
    model: Model,
    data=None,
    *,
    top_n: Optional[int] = None,
    sort_by: str = "total",
    ascending: bool = False,
    method: str = "postfit",
    options: SolverOptions = SolverOptions(),
) -> list[dict]:
    """Nuisance-parameter impacts on the POI, highest first (list of dicts).

    Args:
        model: a :class:`Model` with a POI. data: None (observed), or data.
        top_n: keep the first ``top_n`` rows after sorting.
        sort_by: "total" (|up| + |down|), "up", "down", "pull" or "name".
        ascending: sort ascending instead of descending.
        method: "postfit" (ATLAS/cabinetry default) or "prefit" (NextStat's).

    Returns:
        ``[{"name", "delta_mu_up", "delta_mu_down", "total_impact", "pull",
        "constraint", "rank"}, ...]``: ``delta_mu_*`` are POI shifts with the
        parameter at ``theta_hat +/- sigma`` (clipped to its bounds); ``pull`` is
        ``(theta_hat - centre) / sigma_prefit`` (for unconstrained parameters
        ``(theta_hat - init) / sigma_postfit``); ``constraint`` is
        ``sigma_postfit / sigma_prefit`` (``sigma_postfit`` if unconstrained).
    """
    if sort_by not in _SORT_KEYS:
        raise InvalidInput(f"sort_by must be one of {list(_SORT_KEYS)}, got {sort_by!r}")
    if method not in ("prefit", "postfit"):
        raise InvalidInput(f"method must be 'prefit' or 'postfit', got {method!r}")
    rows = _impact_rows(model, data, method, options)
    rows.sort(key=_SORT_KEYS[sort_by], reverse=not ascending)
    if top_n is not None:
        rows = rows[: int(top_n)]
    return [dataclasses.replace(r, rank=i + 1).as_dict() for i, r in enumerate(rows)]


def _impact_rows(model: Model, data, method: str, options: SolverOptions) -> list[ImpactRow]:
    poi = _poi_index(model)
    prob = make_problem(model, data)
    best = _best_fit(prob, options, True)
    theta = np.asarray(best.bestfit)
    post = np.asarray(best.uncertainties)
    pre = prefit_uncertainties(model)
    fixed = np.asarray(prob.fixed)
    bounds = np.asarray(prob.bounds)
    ranked = [i for i in range(model.n_params) if i != poi and not fixed[i]]
    if not ranked:
        return []
    sigma = pre if method == "prefit" else post
    idx = np.asarray(ranked * 2, np.int32)
    shift = np.concatenate([sigma[ranked], -sigma[ranked]])
    values = np.clip(theta[idx] + shift, bounds[idx, 0], bounds[idx, 1])
    fitted, _ = _refits(prob, jnp.asarray(idx), jnp.asarray(values), options=options)
    mu = np.asarray(fitted)[:, poi] - theta[poi]
    n = len(ranked)
    centre = _nominal_centres(model)
    rows = []
    for k, i in enumerate(ranked):
        constrained = pre[i] > 0
        up, down = float(mu[k]), float(mu[n + k])
        # a zero shift (e.g. prefit sigma of an unconstrained parameter) has no impact
        if sigma[i] == 0:
            up = down = 0.0
        pull = (theta[i] - centre[i]) / (pre[i] if constrained else max(post[i], 1e-300))
        constraint = post[i] / pre[i] if constrained else post[i]
        rows.append(ImpactRow(model.par_names[i], up, down, abs(up) + abs(down), float(pull), float(constraint)))
    return rows


def rank_impact_df(model: Model, data=None, **kwargs):
    """:func:`rank_impact` as a ``pandas.DataFrame`` (pandas is optional)."""
    try:
        import pandas as pd
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("rank_impact_df needs pandas: pip install pandas") from err
    return pd.DataFrame(rank_impact(model, data, **kwargs))


@x64
def pulls(model: Model, data=None, *, options: SolverOptions = SolverOptions()) -> list[dict]:
    """Pull and constraint of every non-fixed, non-POI parameter:
    ``{"name", "bestfit", "uncertainty", "pull", "constraint"}`` (definitions as
    in :func:`rank_impact`)."""
    prob = make_problem(model, data)
    best = _best_fit(prob, options, True)
    theta, post = np.asarray(best.bestfit), np.asarray(best.uncertainties)
    pre, centre, fixed = prefit_uncertainties(model), _nominal_centres(model), np.asarray(prob.fixed)
    out = []
    for i, name in enumerate(model.par_names):
        if i == model.poi_index or fixed[i]:
            continue
        constrained = pre[i] > 0
        out.append({
            "name": name,
            "bestfit": float(theta[i]),
            "uncertainty": float(post[i]),
            "pull": float((theta[i] - centre[i]) / (pre[i] if constrained else max(post[i], 1e-300))),
            "constraint": float(post[i] / pre[i] if constrained else post[i]),
        })
    return out


@x64
def correlation_matrix(model: Model, data=None, *, options: SolverOptions = SolverOptions()):
    """(names, (P', P') correlation matrix) of the non-fixed parameters at the
    best fit, from the exact Hessian."""
    prob = make_problem(model, data)
    best = _best_fit(prob, options, True)
    keep = np.flatnonzero(~np.asarray(prob.fixed))
    cov = np.asarray(best.covariance)[np.ix_(keep, keep)]
    sd = np.sqrt(np.clip(np.diag(cov), 1e-300, None))
    return [model.par_names[i] for i in keep], cov / np.outer(sd, sd)
