"""Plots (``nextstat_jax.plot``): each is rendered to PNG with the Agg backend
and checked on its content (artists, labels, data), not just on the file.

Statistical inputs come from the package on the seed workspace (the same
calls as ``test_scans``, so a single pytest process compiles them once); the
RL inputs are synthetic arrays of the documented shapes.
"""

from __future__ import annotations

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.container import BarContainer, ErrorbarContainer  # noqa: E402

import nextstat_jax as nsj  # noqa: E402
from nextstat_jax import plot, scans  # noqa: E402
from nextstat_jax.datasets import benchmark_workspace, seed_workspace  # noqa: E402
from nextstat_jax.interpret import correlation_matrix, prefit_uncertainties  # noqa: E402

OBSERVED = [21.0, 16.0, 18.0, 17.0, 10.0, 9.0, 4.0, 6.0]
MUS = np.linspace(0.0, 3.0, 41)  # the CLI's default grid length: one compile per session


@pytest.fixture(scope="module")
def model():
    s = seed_workspace()
    s["observations"][0]["data"] = OBSERVED
    return nsj.from_pyhf(s)


@pytest.fixture(scope="module")
def multi():
    """Three channels of 4 bins (13 parameters)."""
    return nsj.from_pyhf(benchmark_workspace(3, 4))


@pytest.fixture(scope="module")
def rows():
    """Rows shaped as ``rank_impact``'s (and ``pulls``'), highest impact first
    (the real functions are exercised by the CLI tests)."""
    rng = np.random.default_rng(1)
    out = []
    for i in range(8):
        up, down = 0.3 / (i + 1), -0.25 / (i + 1)
        out.append({"name": f"staterror_ch0{i % 3}[{i}]", "delta_mu_up": up, "delta_mu_down": down,
                    "total_impact": abs(up) + abs(down), "pull": float(rng.normal(0, 0.7)),
                    "constraint": float(rng.uniform(0.4, 1.0)), "rank": i + 1})
    return out


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def render(fig, tmp_path, name):
    """Save as PNG and check it is a real, non-empty image."""
    path = tmp_path / f"{name}.png"
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = plt.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.01  # not a blank canvas
    return path


def polys(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def legend_texts(ax_or_fig):
    leg = ax_or_fig.get_legend() if hasattr(ax_or_fig, "get_legend") else None
    if leg is None and hasattr(ax_or_fig, "legends") and ax_or_fig.legends:
        leg = ax_or_fig.legends[0]
    return [t.get_text() for t in leg.get_texts()]


def poly_y(coll):
    return np.concatenate([p.vertices[:, 1] for p in coll.get_paths()])


def contains_all(values, expected, atol=1e-9):
    values = np.asarray(values)
    return all(np.any(np.isclose(values, e, atol=atol, rtol=1e-9)) for e in np.ravel(expected))


# ------------------------------------------------------------------ ranking
def test_ranking(rows, tmp_path):
    fig = plot.ranking(rows)
    render(fig, tmp_path, "ranking")
    ax, ax_imp = fig.axes[0], fig.axes[1]
    bars = [c for c in ax_imp.containers if isinstance(c, BarContainer)]
    assert len(bars) == 2 and all(len(b) == len(rows) == 8 for b in bars)
    # first row at the top; bar widths are the impacts
    ys = [p.get_y() + p.get_height() / 2 for p in bars[0]]
    assert np.all(np.diff(ys) < 0)
    np.testing.assert_allclose([p.get_width() for p in bars[0]], [r["delta_mu_up"] for r in rows])
    np.testing.assert_allclose([p.get_width() for p in bars[1]], [r["delta_mu_down"] for r in rows])
    tick_y = ax.get_yticks()
    labels = {round(y, 6): t.get_text() for y, t in zip(tick_y, ax.get_yticklabels())}
    assert [labels[round(y, 6)] for y in ys] == [r["name"] for r in rows]
    # pulls with constraint error bars, and the +/-1 band
    (err,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    np.testing.assert_allclose(err.lines[0].get_xdata(), [r["pull"] for r in rows])
    np.testing.assert_allclose(err.lines[0].get_ydata(), ys)
    (band,) = polys(ax)
    assert np.allclose(sorted(set(np.round(band.get_paths()[0].vertices[:, 0], 9))), [-1.0, 1.0])
    assert "Delta" in ax_imp.get_xlabel() and "theta" in ax.get_xlabel()
    assert {"pull", r"$\pm 1\sigma$"} <= set(legend_texts(fig))
    # into a given axes
    fig2, own = plt.subplots()
    assert plot.ranking(rows[:3], ax=own) is fig2
    assert len(own.get_yticklabels()) == 3 and own.get_legend() is not None


def test_pulls(rows, tmp_path):
    fig = plot.pulls(rows)
    render(fig, tmp_path, "pulls")
    ax = fig.axes[0]
    (err,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    x, y = err.lines[0].get_xdata(), err.lines[0].get_ydata()
    np.testing.assert_allclose(x, [r["pull"] for r in rows])
    order = np.argsort(-y)  # top to bottom
    labels = {round(t, 6): lab.get_text() for t, lab in zip(ax.get_yticks(), ax.get_yticklabels())}
    assert [labels[round(v, 6)] for v in y[order]] == [r["name"] for r in rows]
    # error bars are the constraints
    seg = err.lines[2][0].get_segments()
    np.testing.assert_allclose([s[1, 0] - s[0, 0] for s in seg], [2 * r["constraint"] for r in rows])
    bands = polys(ax)
    assert len(bands) == 2
    widths = sorted(np.ptp(b.get_paths()[0].vertices[:, 0]) for b in bands)
    np.testing.assert_allclose(widths, [2.0, 4.0])
    assert legend_texts(ax) == [r"$\pm 2\sigma$", r"$\pm 1\sigma$", "pull"]


def test_correlation_matrix(model, tmp_path):
    names, corr = correlation_matrix(model)
    assert names == model.par_names
    fig = plot.correlation_matrix((names, corr))
    render(fig, tmp_path, "correlation")
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), corr)
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    assert len(ax.texts) == len(names) ** 2 and ax.texts[0].get_text() == "1.00"
    assert ax.images[0].get_clim() == (-1.0, 1.0)
    assert len(fig.axes) == 2  # the colour bar
    with pytest.raises(nsj.InvalidInput, match="shape"):
        plot.correlation_matrix(names, corr[:1])


# ---------------------------------------------------------- limits, scans
def test_brazil_band(model, tmp_path):
    curve = scans.cls_curve(model, MUS)
    fig = plot.brazil_band(curve)
    render(fig, tmp_path, "brazil")
    ax = fig.axes[0]
    exp, obs = np.asarray(curve.cls_exp), np.asarray(curve.cls_obs)
    solid = [ln for ln in ax.lines if ln.get_linestyle() == "-" and len(ln.get_xdata()) == MUS.size]
    dashed = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert len(solid) == 1 and len(dashed) == 1
    np.testing.assert_allclose(solid[0].get_xdata(), MUS)
    np.testing.assert_allclose(solid[0].get_ydata(), obs)
    np.testing.assert_allclose(dashed[0].get_ydata(), exp[:, 2])
    bands = polys(ax)
    assert len(bands) == 2
    assert contains_all(poly_y(bands[0]), np.concatenate([exp[:, 0], exp[:, 4]]))  # yellow: +/-2 sigma
    assert contains_all(poly_y(bands[1]), np.concatenate([exp[:, 1], exp[:, 3]]))  # green: +/-1 sigma
    level = [ln for ln in ax.lines if np.allclose(ln.get_ydata(), 0.05)]
    limit = [ln for ln in ax.lines if np.allclose(ln.get_xdata(), float(curve.obs_limit))]
    assert len(level) == 1 and len(limit) == 1
    texts = legend_texts(ax)
    assert texts[:4] == [r"expected $\pm 2\sigma$", r"expected $\pm 1\sigma$", r"expected CL$_s$",
                         r"observed CL$_s$"]
    assert texts[-1] == f"observed limit {float(curve.obs_limit):.3g}"
    assert ax.get_xlabel() == "mu" and ax.get_ylabel() == r"CL$_s$"
    # a root-found limit is marked instead when given
    fig2 = plot.brazil_band(curve, limit=(2.0, None), logy=True)
    assert any(np.allclose(ln.get_xdata(), 2.0) for ln in fig2.axes[0].lines)
    assert fig2.axes[0].get_yscale() == "log"


def test_profile_scan_plot(model, tmp_path):
    scan = scans.profile_scan(model, MUS)
    fig = plot.profile_scan(scan)
    render(fig, tmp_path, "scan")
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), MUS)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), scan.delta_twice_nll)
    hlines = sorted(float(ln.get_ydata()[0]) for ln in ax.lines[1:3])
    assert hlines == [1.0, 3.84]
    assert np.allclose(ax.lines[3].get_xdata(), float(scan.best_value))
    assert ax.get_xlabel() == "mu" and "ln L" in ax.get_ylabel()
    assert legend_texts(ax)[:3] == ["profile likelihood", "68.3% CL", "95% CL"]


# --------------------------------------------------------------- yields
def _check_stack(ax, model, pars, sigma, data):
    by_sample = np.asarray(model.expected_by_sample(pars))
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == len(model.samples) and all(len(b) == model.nmaindata for b in bars)
    bottom = np.zeros(model.nmaindata)
    for b, s in zip(bars, model.samples):
        assert b.get_label() == s
        np.testing.assert_allclose([p.get_height() for p in b], by_sample[model.samples.index(s)], rtol=1e-10)
        np.testing.assert_allclose([p.get_y() for p in b], bottom, atol=1e-10)
        bottom = bottom + by_sample[model.samples.index(s)]
    (band,) = polys(ax)
    assert contains_all(poly_y(band), np.concatenate([bottom + sigma, bottom - sigma]), atol=1e-7)
    (err,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    np.testing.assert_allclose(err.lines[0].get_ydata(), data)
    np.testing.assert_allclose(err.lines[0].get_xdata(), np.arange(model.nmaindata) + 0.5)
    assert set(legend_texts(ax)) == set(model.samples) | {"uncertainty", "data"}


def _fd_jacobian(model, pars, eps=1e-6):
    pars = np.asarray(pars, float)
    cols = []
    for i in range(pars.size):
        d = np.zeros_like(pars)
        d[i] = eps
        cols.append((np.asarray(model.expected_actualdata(pars + d))
                     - np.asarray(model.expected_actualdata(pars - d))) / (2 * eps))
    return np.stack(cols, axis=1)


def test_stacked_yields_prefit_and_postfit(model, tmp_path):
    init = np.asarray(model.suggested_init())
    # pre-fit: band from the pre-fit uncertainties (bkg_norm: 1; mu: none)
    fig = plot.stacked_yields(model)
    render(fig, tmp_path, "prefit")
    ax = fig.axes[0]
    jac = _fd_jacobian(model, init)
    sigma = np.sqrt(np.einsum("bp,p,bp->b", jac, prefit_uncertainties(model) ** 2, jac))
    _check_stack(ax, model, init, sigma, OBSERVED)
    assert ax.get_title() == "SR (pre-fit)" and ax.get_ylabel() == "events"
    # post-fit: bestfit and covariance of the FitResult
    res = nsj.fit(model)
    fig = plot.stacked_yields(model, pars=res)
    render(fig, tmp_path, "postfit")
    jac = _fd_jacobian(model, res.bestfit)
    sigma = np.sqrt(np.einsum("bp,pq,bq->b", jac, np.asarray(res.covariance), jac))
    _check_stack(fig.axes[0], model, res.bestfit, sigma, OBSERVED)
    assert fig.axes[0].get_title() == "SR (post-fit)"
    # parameters only: the covariance is the inverse Hessian at them (= the fit's)
    fig = plot.stacked_yields(model, pars=res.bestfit, channel="SR")
    _check_stack(fig.axes[0], model, res.bestfit, sigma, OBSERVED)
    with pytest.raises(nsj.InvalidInput, match="unknown channel"):
        plot.stacked_yields(model, channel="CR")


def test_stacked_yields_one_panel_per_channel(multi, tmp_path):
    fig = plot.stacked_yields(multi)
    render(fig, tmp_path, "channels")
    assert [a.get_title() for a in fig.axes] == [f"{c} (pre-fit)" for c in multi.channels]
    for a in fig.axes:
        bars = [c for c in a.containers if isinstance(c, BarContainer)]
        assert len(bars) == 2 and all(len(b) == 4 for b in bars)
    fig2, axes = plt.subplots(1, 3)
    assert plot.stacked_yields(multi, axes=axes) is fig2
    with pytest.raises(nsj.InvalidInput, match="one channel"):
        plot.stacked_yields(multi, ax=axes[0])


# ------------------------------------------------------------------- RL
def test_learning_curves_single_and_multi_seed(tmp_path):
    steps = np.arange(1, 11) * 4096.0
    ret = np.linspace(0.0, 5.0, 10)
    met = np.linspace(3.0, 12.0, 10)
    fig = plot.learning_curves({"timesteps": steps, "episode_return": ret, "metric": met, "other": ret})
    render(fig, tmp_path, "curves")
    assert len(fig.axes) == 2
    for a, y, label in zip(fig.axes, (ret, met), ("episode return", "metric")):
        np.testing.assert_allclose(a.lines[0].get_xdata(), steps)
        np.testing.assert_allclose(a.lines[0].get_ydata(), y)
        assert a.get_xlabel() == "environment steps" and a.get_ylabel() == label
        assert not polys(a)
    # (seeds, updates): mean line and a min-max band
    multi = {"timesteps": np.tile(steps, (3, 1)), "episode_return": np.stack([ret, ret + 1, ret - 1]),
             "metric": np.stack([met, met * 1.1, met * 0.9])}
    fig = plot.learning_curves(multi)
    render(fig, tmp_path, "curves_seeds")
    a = fig.axes[1]
    np.testing.assert_allclose(a.lines[0].get_ydata(), multi["metric"].mean(0))
    (band,) = polys(a)
    assert contains_all(poly_y(band), np.concatenate([met * 0.9, met * 1.1]), atol=1e-9)
    assert legend_texts(a) == ["range of 3 seeds", "mean of 3 seeds"]
    with pytest.raises(nsj.InvalidInput, match="lack"):
        plot.learning_curves({"metric": met})


def test_yield_evolution(tmp_path):
    rng = np.random.default_rng(0)
    yields = np.abs(rng.normal(5.0, 1.0, size=(65, 8))).cumsum(axis=0) / np.arange(1, 66)[:, None]
    nominal = yields[0] * 1.01
    fig = plot.yield_evolution(yields, nominal=nominal)
    render(fig, tmp_path, "evolution")
    left, right = fig.axes
    assert len(left.lines) == 8
    for i, ln in enumerate(left.lines):
        np.testing.assert_allclose(ln.get_xdata(), np.arange(65))
        np.testing.assert_allclose(ln.get_ydata(), yields[:, i])
    bars = [c for c in right.containers if isinstance(c, BarContainer)]
    assert len(bars) == 2 and all(len(b) == 8 for b in bars)
    np.testing.assert_allclose([p.get_height() for p in bars[0]], yields[0])
    np.testing.assert_allclose([p.get_height() for p in bars[1]], yields[-1])
    assert set(legend_texts(right)) == {"initial", "final", "nominal"}
    assert left.get_xlabel() == "step" and right.get_ylabel() == "yield"
    with pytest.raises(nsj.InvalidInput, match="steps"):
        plot.yield_evolution(yields[None])
