"""Plots of fit results, limits, scans and RL training (matplotlib, optional).

Install with ``pip install 'nextstat-jax[plot]'``; matplotlib is imported only
when a function here is called.  Every function draws into the ``ax`` (or
``axes``) it is given, or into a new figure, and returns the
:class:`matplotlib.figure.Figure`:

* :func:`ranking` - impacts on the POI (bars) and pulls (points with the
  +/-1 band), as cabinetry and ATLAS show them (``interpret.rank_impact`` rows);
* :func:`pulls` - pulls and constraints (``interpret.pulls`` rows);
* :func:`correlation_matrix` - ``interpret.correlation_matrix`` output;
* :func:`brazil_band` - CLs vs mu with the expected bands (``scans.cls_curve``);
* :func:`profile_scan` - ``-2 Delta ln L`` (``scans.profile_scan``);
* :func:`stacked_yields` - pre-/post-fit stacked yields with data and the
  uncertainty band, per channel;
* :func:`learning_curves` - PPO metrics (``rl.train_ppo(...).metrics``);
* :func:`yield_evolution` - yields of one episode (``rl.evaluate(...)["yields"][i]``).
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ._x64 import f64, x64
from .errors import InvalidInput
from .fits import _covariance, make_problem

__all__ = [
    "ranking",
    "pulls",
    "correlation_matrix",
    "brazil_band",
    "profile_scan",
    "stacked_yields",
    "learning_curves",
    "yield_evolution",
]

# colours: matplotlib's defaults plus the Brazil-band convention
_GREEN, _YELLOW = "#00cc00", "#ffdd00"
_PPO_GOLD = "#D4AF37"


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "nextstat_jax.plot needs matplotlib: pip install 'nextstat-jax[plot]'"
        ) from err
    return plt


def _figure_and_ax(ax, figsize):
    """(fig, ax, created): the given axes' figure, or a new one."""
    if ax is not None:
        return ax.figure, ax, False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax, True


def _figure_and_axes(axes, n: int, figsize, what: str):
    if axes is not None:
        axes = list(np.ravel(np.asarray(axes, dtype=object)))
        if len(axes) != n:
            raise InvalidInput(f"{what} needs {n} axes, got {len(axes)}")
        return axes[0].figure, axes, False
    plt = _pyplot()
    fig, axes = plt.subplots(1, n, figsize=figsize, squeeze=False)
    return fig, list(axes[0]), True


def _rows(rows, keys: Sequence[str], what: str) -> list[dict]:
    rows = list(rows)
    for i, r in enumerate(rows):
        missing = [k for k in keys if k not in r]
        if missing:
            raise InvalidInput(f"{what}: row {i} lacks {missing} (rows need {list(keys)})")
    return rows


# ---------------------------------------------------------------- ranking
def ranking(rows, *, ax=None, poi_label: str = r"\mu", figsize=None):
    """Impact ranking: horizontal bars of the POI shifts (top axis) and the
    pulls with their constraints (bottom axis, grey +/-1 band), first row at
    the top, as cabinetry's ranking plot.

    Args:
        rows: ``nsj.interpret.rank_impact(...)`` rows (dicts with ``name``,
            ``delta_mu_up``, ``delta_mu_down``, ``pull``, ``constraint``).
        ax: axes for the pulls (a twin axis is added for the impacts).
        poi_label: LaTeX name of the POI in the axis label.

    Returns:
        the Figure. Its axes: ``fig.axes[0]`` pulls (``ax``), the twin with
        the impact bars (two ``BarContainer`` s: up and down shifts).
    """
    rows = _rows(rows, ("name", "delta_mu_up", "delta_mu_down", "pull", "constraint"), "ranking")
    n = len(rows)
    created = ax is None
    if created:
        fig, ax = _pyplot().subplots(figsize=figsize or (7.5, 2.2 + 0.4 * max(n, 1)), layout="constrained")
    else:
        fig = ax.figure
    names = [r["name"] for r in rows]
    up = np.array([r["delta_mu_up"] for r in rows], float)
    down = np.array([r["delta_mu_down"] for r in rows], float)
    pull = np.array([r["pull"] for r in rows], float)
    constraint = np.array([r["constraint"] for r in rows], float)
    y = np.arange(n)[::-1].astype(float)

    ax_imp = ax.twiny()
    ax_imp.barh(y, up, height=0.7, color="C0", alpha=0.75, label=rf"$\Delta {poi_label}$ ($\hat\theta + \sigma$)")
    ax_imp.barh(y, down, height=0.7, color="C9", alpha=0.75, label=rf"$\Delta {poi_label}$ ($\hat\theta - \sigma$)")
    span = float(np.max(np.abs(np.concatenate([up, down, [0.0]]))))
    span = 1.15 * span if span > 0 else 1.0
    ax_imp.set_xlim(-span, span)
    ax_imp.set_xlabel(rf"$\Delta {poi_label}$")

    ax.fill_betweenx([-0.5, n - 0.5], -1.0, 1.0, color="gray", alpha=0.2, linewidth=0, label=r"$\pm 1\sigma$")
    ax.axvline(0.0, color="gray", linestyle="--", linewidth=0.8)
    ax.errorbar(pull, y, xerr=constraint, fmt="o", color="k", markersize=4, label="pull")
    reach = np.abs(pull) + np.abs(constraint)
    lim = max(2.0, 1.1 * float(np.max(reach))) if n else 2.0
    ax.set_xlim(-lim, lim)
    ax.set_xlabel(r"$(\hat{\theta} - \theta_0) / \Delta\theta$")
    ax.set_yticks(y, names)
    ax.set_ylim(-0.5, n - 0.5)
    # pulls drawn above the bars
    ax.set_zorder(ax_imp.get_zorder() + 1)
    ax.patch.set_visible(False)
    h1, l1 = ax_imp.get_legend_handles_labels()
    h2, l2 = ax.get_legend_handles_labels()
    if created:  # below the plot, outside the data
        fig.legend(h1 + h2, l1 + l2, loc="outside lower center", ncol=4, fontsize="small", frameon=False)
    else:
        ax.legend(h1 + h2, l1 + l2, loc="best", fontsize="small", framealpha=0.9)
    return fig


def pulls(rows, *, ax=None, figsize=None):
    """Pulls ``(theta_hat - theta_0)/Delta theta`` with error bars equal to the
    constraints, over green (+/-1) and yellow (+/-2) bands.

    Args:
        rows: ``nsj.interpret.pulls(...)`` (or ``rank_impact``) rows: dicts
            with ``name``, ``pull``, ``constraint``.
        ax: axes to draw into.

    Returns:
        the Figure (the bands are two ``PolyCollection`` s, the points one
        ``errorbar``; y tick labels are the parameter names, top row first).
    """
    rows = _rows(rows, ("name", "pull", "constraint"), "pulls")
    n = len(rows)
    fig, ax, created = _figure_and_ax(ax, figsize or (6.0, 1.2 + 0.35 * max(n, 1)))
    y = np.arange(n)[::-1].astype(float)
    pull = np.array([r["pull"] for r in rows], float)
    constraint = np.array([r["constraint"] for r in rows], float)
    ax.fill_betweenx([-0.5, n - 0.5], -2.0, 2.0, color=_YELLOW, linewidth=0, label=r"$\pm 2\sigma$")
    ax.fill_betweenx([-0.5, n - 0.5], -1.0, 1.0, color=_GREEN, linewidth=0, label=r"$\pm 1\sigma$")
    ax.axvline(0.0, color="k", linestyle="--", linewidth=0.8)
    ax.errorbar(pull, y, xerr=constraint, fmt="o", color="k", markersize=4, label="pull")
    reach = np.abs(pull) + np.abs(constraint)
    lim = max(3.0, 1.1 * float(np.max(reach))) if n else 3.0
    ax.set_xlim(-lim, lim)
    ax.set_yticks(y, [r["name"] for r in rows])
    ax.set_ylim(-0.5, n - 0.5)
    ax.set_xlabel(r"$(\hat{\theta} - \theta_0) / \Delta\theta$")
    ax.legend(loc="upper right", fontsize="small")
    if created:
        fig.tight_layout()
    return fig


def correlation_matrix(names, corr=None, *, ax=None, annotate: Optional[bool] = None, figsize=None):
    """Correlation matrix as a colour map (-1 blue ... +1 red) with a colour
    bar; values written in the cells when ``annotate`` (default: up to 20
    parameters).

    Args:
        names: parameter names, or the ``(names, corr)`` pair returned by
            ``nsj.interpret.correlation_matrix``.
        corr: (P', P') correlation matrix (omit when ``names`` is the pair).
        ax: axes to draw into.

    Returns:
        the Figure (``ax.images[0]`` holds the matrix; tick labels are the names).
    """
    if corr is None:
        try:
            names, corr = names
        except (TypeError, ValueError):
            raise InvalidInput("correlation_matrix needs (names, corr) or names and corr") from None
    names = list(names)
    corr = np.asarray(corr, float)
    n = len(names)
    if corr.shape != (n, n):
        raise InvalidInput(f"corr must have shape ({n}, {n}) for {n} names, got {corr.shape}")
    fig, ax, created = _figure_and_ax(ax, figsize or (1.5 + 0.5 * max(n, 4), 1.0 + 0.5 * max(n, 4)))
    im = ax.imshow(corr, cmap="RdBu_r", vmin=-1.0, vmax=1.0)
    fig.colorbar(im, ax=ax, label="correlation")
    ax.set_xticks(np.arange(n), names, rotation=90)
    ax.set_yticks(np.arange(n), names)
    if annotate is None:
        annotate = n <= 20
    if annotate:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize="small",
                        color="white" if abs(corr[i, j]) > 0.6 else "black")
    if created:
        fig.tight_layout()
    return fig


# ----------------------------------------------------------- limits, scans
def brazil_band(curve, *, ax=None, limit=None, poi_label: Optional[str] = None, logy: bool = False, figsize=None):
    """CLs vs the POI (Brazil band): observed CLs (solid), expected median
    (dashed), green +/-1 sigma and yellow +/-2 sigma bands, the CLs = level
    line, and the observed limit (vertical dotted line).

    Args:
        curve: :class:`nextstat_jax.scans.CLsCurve` from ``cls_curve``.
        ax: axes to draw into.
        limit: optional ``UpperLimit`` (or observed value) to mark instead of
            the curve's interpolated ``obs_limit`` (e.g. from ``upper_limit``).
        poi_label: x-axis label (default the POI name).
        logy: logarithmic CLs axis.

    Returns:
        the Figure (lines: observed, expected; two ``PolyCollection`` bands).
    """
    mus = np.asarray(curve.mus, float)
    obs = np.asarray(curve.cls_obs, float)
    exp = np.asarray(curve.cls_exp, float)
    level = float(curve.level)
    if limit is None:
        obs_limit = float(curve.obs_limit)
    else:
        obs_limit = float(limit[0] if isinstance(limit, tuple) else limit)
    fig, ax, created = _figure_and_ax(ax, figsize or (6.4, 4.4))
    ax.fill_between(mus, exp[:, 0], exp[:, 4], color=_YELLOW, linewidth=0, label=r"expected $\pm 2\sigma$")
    ax.fill_between(mus, exp[:, 1], exp[:, 3], color=_GREEN, linewidth=0, label=r"expected $\pm 1\sigma$")
    ax.plot(mus, exp[:, 2], color="k", linestyle="--", label=r"expected CL$_s$")
    ax.plot(mus, obs, color="k", linestyle="-", marker="o", markersize=3, label=r"observed CL$_s$")
    ax.axhline(level, color="red", linewidth=1.0, label=rf"CL$_s$ = {level:g}")
    ax.axvline(obs_limit, color="C3", linestyle=":", linewidth=1.5, label=f"observed limit {obs_limit:.3g}")
    poi = poi_label or getattr(curve, "poi_name", None) or "mu"
    ax.set_xlabel(poi)
    ax.set_ylabel(r"CL$_s$")
    ax.set_xlim(mus[0], mus[-1])
    if logy:
        ax.set_yscale("log")
    else:
        ax.set_ylim(0.0, 1.05)
    ax.legend(loc="upper right", fontsize="small")
    if created:
        fig.tight_layout()
    return fig


def profile_scan(scan, *, ax=None, label: Optional[str] = None, figsize=None):
    """``-2 Delta ln L`` against the scanned parameter, with the 68.3% (1)
    and 95% (3.84) lines and the best-fit value (dashed).

    Args:
        scan: :class:`nextstat_jax.scans.ProfileScan` from ``profile_scan``.
        ax: axes to draw into. label: x-axis label (default the parameter name).

    Returns:
        the Figure (``ax.lines[0]`` holds the scan).
    """
    x = np.asarray(scan.values, float)
    y = np.asarray(scan.delta_twice_nll, float)
    name = label or getattr(scan, "par_name", None) or "parameter"
    fig, ax, created = _figure_and_ax(ax, figsize or (6.4, 4.4))
    ax.plot(x, y, color="C0", marker="o", markersize=3, label="profile likelihood")
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=0.8, label="68.3% CL")
    ax.axhline(3.84, color="gray", linestyle=":", linewidth=0.8, label="95% CL")
    best = getattr(scan, "best_value", None)
    if best is not None and x.min() <= float(best) <= x.max():
        ax.axvline(float(best), color="C3", linestyle="--", linewidth=1.0, label=f"best fit {float(best):.3g}")
    ax.set_xlabel(name)
    ax.set_ylabel(r"$-2\,\Delta \ln L$")
    ax.set_ylim(bottom=0.0)
    ax.legend(fontsize="small")
    if created:
        fig.tight_layout()
    return fig


# --------------------------------------------------------------- yields
@functools.partial(jax.jit, static_argnames=("prefit", "want_cov"))
def _propagate(prob, theta, cov, prefit_var, *, prefit, want_cov):
    """Per-sample yields (S, B), total (B,) and its linearly propagated sigma (B,)."""
    model = prob.model
    if prefit:
        cov = jnp.diag(prefit_var)
    elif want_cov:
        cov = _covariance(theta, prob)
    by_sample = model._rates_by_sample(theta)
    jac = jax.jacfwd(lambda p: jnp.sum(model._rates_by_sample(p), axis=0))(theta)
    var = jnp.einsum("bp,pq,bq->b", jac, cov, jac)
    return by_sample, jnp.sum(by_sample, axis=0), jnp.sqrt(jnp.clip(var, 0.0))


@x64
def _yield_numbers(model, data, pars, covariance):
    """(prefit, by_sample (S, B), total (B,), sigma (B,), data (B,)) in NumPy."""
    from .fits import FitResult
    from .interpret import prefit_uncertainties

    prob = make_problem(model, data)
    n = model.n_params
    prefit = pars is None
    if isinstance(pars, FitResult):
        if covariance is None:
            covariance = pars.covariance
        pars = pars.bestfit
    theta = model.init if prefit else f64(pars, "pars")
    if theta.shape != (n,):
        raise InvalidInput(f"pars must have shape ({n},), got {tuple(theta.shape)}")
    want_cov = not prefit and covariance is None
    cov = jnp.zeros((n, n)) if covariance is None else f64(covariance, "covariance")
    if cov.shape != (n, n):
        raise InvalidInput(f"covariance must have shape ({n}, {n}), got {tuple(cov.shape)}")
    prefit_var = jnp.asarray(prefit_uncertainties(model) ** 2)
    by_sample, total, sigma = _propagate(prob, theta, cov, prefit_var, prefit=prefit, want_cov=want_cov)
    main = prob.data[: model.nmaindata]
    return prefit, np.asarray(by_sample), np.asarray(total), np.asarray(sigma), np.asarray(main)


def stacked_yields(model, data=None, pars=None, *, channel: Optional[str] = None, covariance=None,
                   axes=None, ax=None, figsize=None):
    """Stacked expected yields per sample, data with Poisson (sqrt n) error
    bars and the hatched uncertainty band of the total, one panel per channel.

    Pre-fit when ``pars`` is None: parameters at ``suggested_init()``, band
    from the pre-fit uncertainties (``interpret.prefit_uncertainties``) as a
    diagonal covariance. Post-fit with ``pars`` = a :class:`FitResult` (its
    bestfit and covariance) or a parameter vector (with ``covariance``, or the
    inverse Hessian of the NLL at ``pars``). The band is linear error
    propagation ``sigma_b^2 = J C J^T`` with ``J`` the Jacobian (``jax``) of
    the expected main data.

    Args:
        model: the :class:`Model`. data: (B + A,)/(B,) or None (observed).
        pars: None, a FitResult or (P,) parameters.
        channel: one channel (default: every channel, side by side).
        covariance: (P, P), overrides the FitResult's / the Hessian's.
        axes: one axes per channel drawn; ``ax``: the axes for a single channel.

    Returns:
        the Figure: per channel one ``BarContainer`` per sample (label = sample
        name), one ``PolyCollection`` band, one errorbar for the data.
    """
    channels = model.channels if channel is None else [channel]
    if channel is not None and channel not in model.channels:
        raise InvalidInput(f"unknown channel {channel!r}; channels are {model.channels}")
    if ax is not None:
        if len(channels) != 1:
            raise InvalidInput("ax draws one channel; pass channel=... or axes=[...] (one per channel)")
        axes = [ax]
    fig, axes, created = _figure_and_axes(axes, len(channels), figsize or (5.0 * len(channels), 4.2),
                                          "stacked_yields")
    prefit, by_sample, total, sigma, main = _yield_numbers(model, data, pars, covariance)
    lay = model.layout
    for a, ch in zip(axes, channels):
        c = lay.channels.index(ch)
        sl = model.channel_slices[ch]
        n = sl.stop - sl.start
        edges = np.arange(n + 1, dtype=float)
        bottom = np.zeros(n)
        for s, sample in enumerate(lay.samples):
            if not lay.sample_in_channel[s][c]:
                continue
            y = by_sample[s, sl]
            a.bar(edges[:-1], y, width=1.0, bottom=bottom, align="edge", label=sample, color=f"C{s % 10}",
                  edgecolor="none")
            bottom = bottom + y
        tot, sig = total[sl], sigma[sl]
        a.fill_between(edges, np.append(tot - sig, tot[-1] - sig[-1]), np.append(tot + sig, tot[-1] + sig[-1]),
                       step="post", facecolor="none", edgecolor="k", hatch="////", linewidth=0,
                       label="uncertainty")
        d = main[sl]
        a.errorbar(edges[:-1] + 0.5, d, yerr=np.sqrt(np.clip(d, 0.0, None)), fmt="o", color="k", markersize=4,
                   label="data")
        a.set_xlim(0, n)
        a.set_ylim(bottom=0.0)
        a.set_xlabel(f"{ch} bin")
        a.set_ylabel("events")
        a.set_title(f"{ch} ({'pre-fit' if prefit else 'post-fit'})")
        a.legend(fontsize="small")
    if created:
        fig.tight_layout()
    return fig


# ------------------------------------------------------------------- RL
def learning_curves(metrics: dict, *, axes=None, keys: Sequence[str] = ("episode_return", "metric"),
                    labels: Optional[Sequence[str]] = None, figsize=None):
    """Training curves against environment steps, one panel per key.

    Args:
        metrics: ``train_ppo(...).metrics`` (arrays (updates,), or (seeds,
            updates) with ``num_seeds > 1``; ``"timesteps"`` gives the x axis).
        axes: one axes per key. keys: metric names to draw.
        labels: y-axis labels (default: the keys).

    Returns:
        the Figure: one line per panel (the seed mean if several seeds, with a
        min-max ``PolyCollection`` band over the seeds).
    """
    missing = [k for k in keys if k not in metrics]
    if missing:
        raise InvalidInput(f"metrics lack {missing}; they have {sorted(metrics)}")
    labels = list(labels) if labels is not None else [k.replace("_", " ") for k in keys]
    fig, axes, created = _figure_and_axes(axes, len(keys), figsize or (5.0 * len(keys), 3.8), "learning_curves")
    first = np.asarray(metrics[keys[0]])
    n_updates = first.shape[-1]
    if "timesteps" in metrics:
        steps = np.asarray(metrics["timesteps"], float)
        steps = steps.reshape(-1, n_updates)[0]
        xlabel = "environment steps"
    else:
        steps = np.arange(1, n_updates + 1, dtype=float)
        xlabel = "update"
    for a, key, lab in zip(axes, keys, labels):
        v = np.asarray(metrics[key], float)
        if v.ndim == 1:
            a.plot(steps, v, color=_PPO_GOLD, linewidth=2, label="PPO")
        elif v.ndim == 2:
            a.fill_between(steps, v.min(0), v.max(0), color=_PPO_GOLD, alpha=0.3, linewidth=0,
                           label=f"range of {v.shape[0]} seeds")
            a.plot(steps, v.mean(0), color=_PPO_GOLD, linewidth=2, label=f"mean of {v.shape[0]} seeds")
        else:
            raise InvalidInput(f"metrics[{key!r}] must have shape (updates,) or (seeds, updates), got {v.shape}")
        a.set_xlabel(xlabel)
        a.set_ylabel(lab)
        a.grid(alpha=0.2)
        a.legend(fontsize="small")
    if created:
        fig.tight_layout()
    return fig


def yield_evolution(yields, nominal=None, *, axes=None, bin_centers=None, figsize=None):
    """Yields of one episode, as the seed notebook's figure: each bin's yield
    against the step (left), and the initial vs final yields as bars (right,
    with the nominal as a step outline when given).

    Args:
        yields: (steps + 1, n_bins), e.g. ``nsj.rl.evaluate(...)["yields"][i]``.
        nominal: optional (n_bins,) reference yields.
        axes: two axes. bin_centers: x positions of the bins (default 0..n-1).

    Returns:
        the Figure: ``n_bins`` lines on the first axes, two ``BarContainer`` s
        (initial, final) of ``n_bins`` bars on the second.
    """
    y = np.asarray(yields, float)
    if y.ndim != 2 or y.shape[0] < 1:
        raise InvalidInput(f"yields must have shape (steps + 1, n_bins), got {y.shape}")
    n_bins = y.shape[1]
    fig, axes, created = _figure_and_axes(axes, 2, figsize or (11.0, 4.0), "yield_evolution")
    steps = np.arange(y.shape[0])
    for i in range(n_bins):
        axes[0].plot(steps, y[:, i], alpha=0.8, linewidth=1.0, label=f"bin {i}")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("yield")
    axes[0].set_title("Bin yields over the episode")
    axes[0].grid(alpha=0.2)
    if n_bins <= 10:
        axes[0].legend(fontsize="x-small", ncol=2)
    centers = np.arange(n_bins, dtype=float) if bin_centers is None else np.asarray(bin_centers, float)
    if centers.shape != (n_bins,):
        raise InvalidInput(f"bin_centers must have shape ({n_bins},), got {centers.shape}")
    width = float(np.min(np.diff(centers))) if n_bins > 1 else 1.0
    axes[1].bar(centers - 0.2 * width, y[0], width=0.35 * width, color="gray", alpha=0.6, label="initial")
    axes[1].bar(centers + 0.2 * width, y[-1], width=0.35 * width, color=_PPO_GOLD, alpha=0.85, label="final")
    if nominal is not None:
        nom = np.asarray(nominal, float)
        if nom.shape != (n_bins,):
            raise InvalidInput(f"nominal must have shape ({n_bins},), got {nom.shape}")
        edges = np.concatenate([centers - 0.5 * width, [centers[-1] + 0.5 * width]])
        axes[1].stairs(nom, edges, color="k", linestyle="--", label="nominal")
    axes[1].set_xlabel("bin")
    axes[1].set_ylabel("yield")
    axes[1].set_title("Initial vs final yields")
    axes[1].grid(alpha=0.2)
    axes[1].legend(fontsize="small")
    if created:
        fig.tight_layout()
    return fig
