"""Cut models on event-level samples (nextstat_jax.cuts): yields, templates and
staterror from the selected events equal NumPy histograms and a pyhf-built
workspace; relaxed cuts tend to hard cuts; gradients w.r.t. thresholds match
finite differences; bad inputs give clear errors or documented finite output;
the optimisers' results are consistent.

Runs with the user's ``jax_enable_x64`` off (JAX's default). Tiny samples.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nextstat_jax as nsj
from nextstat_jax.cuts import (
    Cut,
    EventSample,
    EventWorkspace,
    InvalidEvents,
    evaluate_hard,
    gradient_ascent,
    grid_scan,
    make_cut_model,
    synthetic_benchmark,
)

FEATURES = ["m", "a", "b"]
EDGES = np.linspace(0.0, 1.0, 5)


def _events(seed=0, n_sig=200, n_bkg=400, observed=False, neg=False):
    rng = np.random.default_rng(seed)
    xs = np.stack([rng.normal(0.5, 0.12, n_sig), rng.normal(1.0, 0.7, n_sig), rng.exponential(0.5, n_sig)], 1)
    xb = np.stack([rng.uniform(-0.1, 1.1, n_bkg), rng.normal(0.0, 1.0, n_bkg), rng.exponential(1.5, n_bkg)], 1)
    ws = rng.uniform(0.05, 0.15, n_sig)
    wb = rng.uniform(0.5, 1.5, n_bkg)
    if neg:
        wb[:5] *= -0.2
    rel = 0.05 + 0.1 * np.clip(xb[:, 1], 0, 3)
    sig = EventSample("signal", xs, ws, modifiers=[{"name": "mu", "type": "normfactor", "data": None}])
    bkg = EventSample("background", xb, wb, variations={"sys": (wb * (1 + rel), wb * (1 - 0.5 * rel))},
                      modifiers=[{"name": "norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}],
                      allow_negative_weights=neg)
    obs = None
    if observed:
        obs = np.concatenate([xs[: n_sig // 4], xb[: n_bkg // 2]])
    return EventWorkspace(FEATURES, [sig, bkg], [Cut("a", ">", (-3.0, 3.0)), Cut("b", "<", (0.0, 5.0))],
                          "m", EDGES, observed=obs)


@pytest.fixture(scope="module")
def ews():
    return _events()


@pytest.fixture(scope="module")
def cm(ews):
    return make_cut_model(ews)


def _select(x, t):
    return (x[:, 1] >= t[0]) & (x[:, 2] <= t[1])


def _hist(ews, sample, t, weights=None):
    s = ews.samples[ews.sample_names.index(sample)]
    sel = _select(s.features, t)
    w = s.weights if weights is None else weights
    return np.histogram(s.features[sel, 0], bins=EDGES, weights=w[sel])[0], sel, s


THRESHOLDS = [np.array([-3.0, 5.0]), np.array([0.2, 1.0]), np.array([0.9, 0.4]), np.array([-0.5, 2.5])]


@pytest.mark.parametrize("t", THRESHOLDS, ids=lambda t: f"t={t.tolist()}")
def test_yields_templates_staterror_equal_numpy(ews, cm, t):
    y = np.asarray(cm.yields(t))
    sw2 = np.asarray(cm.sumw2(t))
    n_sel = np.asarray(cm.n_selected(t))
    m = cm.model_at(t)
    for i, name in enumerate(cm.sample_names):
        ref, sel, s = _hist(ews, name, t)
        np.testing.assert_allclose(y[i], ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(np.asarray(m.sample_yields("SR", name)), np.maximum(ref, 1e-6), rtol=1e-12)
        ref2 = np.histogram(s.features[sel, 0], bins=EDGES, weights=s.weights[sel] ** 2)[0]
        np.testing.assert_allclose(sw2[i], ref2, rtol=1e-12, atol=1e-14)
        inside = (s.features[:, 0] >= EDGES[0]) & (s.features[:, 0] <= EDGES[-1])
        assert n_sel[i] == np.count_nonzero(sel & inside)
    # histosys templates = histograms of the variation weights
    s = ews.samples[1]
    up = _hist(ews, "background", t, s.variations["sys"][0])[0]
    lo = _hist(ews, "background", t, s.variations["sys"][1])[0]
    np.testing.assert_allclose(np.asarray(m.hs_hi), np.maximum(up, 1e-6), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(m.hs_lo), np.maximum(lo, 1e-6), rtol=1e-12)
    # staterror: per-entry sqrt(sum w^2), sigma = sqrt(sum u^2) / sum nominal per bin
    u = np.sqrt(sw2)
    lay = m.layout
    for e in range(lay.st_comp.size):
        name = lay.samples[lay.st_sample[e]]
        assert np.asarray(m.st_unc)[e] == pytest.approx(u[cm.sample_names.index(name), lay.st_bin[e]], rel=1e-12)
    width = np.asarray(m.prepare().width)
    tot = np.maximum(y, 1e-6).sum(0)
    sigma = np.sqrt((u**2).sum(0)) / tot
    st_aux = np.asarray(lay.aux_st_comp) >= 0
    np.testing.assert_allclose(width[st_aux], np.where(sigma > 0, sigma, 1.0), rtol=1e-12)


def _pyhf_spec(ews, t):
    """The equivalent pyhf workspace, built by hand from NumPy histograms."""
    samples = []
    for name in ("signal", "background"):
        ref, sel, s = _hist(ews, name, t)
        sw2 = np.histogram(s.features[sel, 0], bins=EDGES, weights=s.weights[sel] ** 2)[0]
        mods = list(s.modifiers)
        for v, (wu, wd) in s.variations.items():
            mods.append({"name": v, "type": "histosys", "data": {
                "hi_data": np.maximum(_hist(ews, name, t, wu)[0], 1e-6).tolist(),
                "lo_data": np.maximum(_hist(ews, name, t, wd)[0], 1e-6).tolist()}})
        mods.append({"name": "staterror_SR", "type": "staterror", "data": np.sqrt(sw2).tolist()})
        samples.append({"name": name, "data": np.maximum(ref, 1e-6).tolist(), "modifiers": mods})
    return {"channels": [{"name": "SR", "samples": samples}],
            "observations": [{"name": "SR", "data": [0.0] * (EDGES.size - 1)}],
            "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
            "version": "1.0.0"}


def test_model_equals_workspace_built_from_histograms(ews, cm):
    t = THRESHOLDS[1]
    ref = nsj.from_pyhf(_pyhf_spec(ews, t))
    m = cm.model_at(t)
    assert m.par_names == ref.par_names
    rng = np.random.default_rng(1)
    data = np.asarray(m.data)  # Asimov main data (mu = 1) + auxdata
    pars0 = np.asarray(ref.suggested_init()).copy()
    pars0[ref.poi_index] = 1.0
    np.testing.assert_allclose(data[: ref.nmaindata], np.asarray(ref.expected_actualdata(pars0)), rtol=1e-12)
    for _ in range(3):
        pars = np.asarray(ref.suggested_init()) + rng.normal(0, 0.1, ref.n_params)
        assert float(m.logpdf(pars, data)) == pytest.approx(float(ref.logpdf(pars, data)), rel=1e-10)
    assert float(cm.q0(t)) == pytest.approx(float(nsj.q0(ref, data)), rel=1e-7, abs=1e-9)


def test_relaxed_tends_to_hard(cm):
    for t in THRESHOLDS[1:]:
        hard = np.asarray(cm.yields(t))
        errs = [np.max(np.abs(np.asarray(cm.yields(t, T)) - hard)) for T in (1e-2, 1e-3, 1e-6)]
        assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-8
        zh = float(cm.z0(t))
        zs = [float(cm.z0(t, T)) for T in (1e-2, 1e-4, 1e-7)]
        assert abs(zs[-1] - zh) < 1e-6 and abs(zs[-1] - zh) <= abs(zs[0] - zh) + 1e-12


def test_gradients_match_finite_differences(cm):
    """d Z0 / d t and d CLs / d t (relaxed cuts) against central differences.
    CLs' differences come from fits at a tight tolerance: CLs depends on the
    background-only fit's optimum, and a fit stopped within the default
    tolerance leaves an error in it (~1e-6 in a parameter, 1e-11 in 2NLL)
    that varies smoothly with t and moved the difference quotient by 6e-4
    relative; the analytic gradient does not see it."""
    t0 = jnp.asarray([0.2, 1.2])
    T = 0.05
    width = np.asarray(cm.high - cm.low)

    def fd(f, i, h):
        e = np.zeros(2)
        e[i] = h
        return (float(f(np.asarray(t0) + e)) - float(f(np.asarray(t0) - e))) / (2 * h)

    def cls(t, options=nsj.SolverOptions()):
        return nsj.hypotest(cm.model_at(t, T), 1.0, options=options).cls_obs

    cases = {
        "z0": (lambda t: cm.z0(t, T),) * 2,
        "cls": (cls, lambda t: cls(t, nsj.SolverOptions(tol_abs=1e-14))),
    }
    for name, (f, f_ref) in cases.items():
        g = np.asarray(jax.grad(f)(t0))
        assert np.all(np.isfinite(g)) and np.all(np.abs(g) > 1e-6), (name, g)
        for i in range(2):
            ref = fd(f_ref, i, 1e-5 * width[i])
            assert g[i] == pytest.approx(ref, rel=2e-4, abs=1e-8), (name, i, g[i], ref)


def test_jit_vmap_no_recompile(cm):
    """New thresholds never retrace; the vmapped hard evaluation equals a loop."""
    traces = []

    @jax.jit
    def total(t):
        traces.append(1)
        return cm.model_at(t).nominal

    ts = np.stack(THRESHOLDS)
    for t in ts:
        total(t)
    assert len(traces) == 1
    vals = [float(cm.z0(t)) for t in ts]
    ev = evaluate_hard(cm, ts)
    np.testing.assert_allclose(ev["z0"], vals, rtol=1e-9)
    np.testing.assert_allclose(ev["n_background"], [float(cm.n_background(t)) for t in ts])


def test_observed_data(cm):
    ews = _events(observed=True)
    cmo = make_cut_model(ews)
    t = THRESHOLDS[1]
    sel = _select(ews.observed, t)
    ref = np.histogram(ews.observed[sel, 0], bins=EDGES)[0]
    m = cmo.model_at(t)
    np.testing.assert_allclose(np.asarray(m.obs_main), ref)
    q_obs = float(cmo.q0(t, data="observed"))
    assert q_obs > 0
    assert q_obs == pytest.approx(float(nsj.q0(m, m.data)), rel=1e-7)
    with pytest.raises(nsj.InvalidInput, match="observed events"):
        cm.z0(t, data="observed")


def test_json_roundtrip(ews, cm, tmp_path):
    d = json.loads(json.dumps(ews.to_dict()))
    back = EventWorkspace.from_dict(d)
    path = tmp_path / "events.json"
    path.write_text(json.dumps(d))
    for again in (make_cut_model(back), make_cut_model(str(path))):
        for t in THRESHOLDS[:2]:
            np.testing.assert_array_equal(np.asarray(again.yields(t)), np.asarray(cm.yields(t)))
            assert float(again.z0(t)) == float(cm.z0(t))


def test_empty_selection_is_finite(cm):
    t = np.array([3.0, 0.0])  # a >= 3 and b <= 0: nothing passes
    np.testing.assert_array_equal(np.asarray(cm.yields(t)), 0.0)
    np.testing.assert_array_equal(np.asarray(cm.n_selected(t)), 0.0)
    m = cm.model_at(t)
    np.testing.assert_allclose(np.asarray(m.nominal), 1e-6)
    z = float(cm.z0(t))
    assert np.isfinite(z) and 0.0 <= z < 1e-2
    zr = cm.z0(t, 0.01)
    g = np.asarray(jax.grad(lambda tt: cm.z0(tt, 0.01))(jnp.asarray(t)))
    assert np.isfinite(float(zr)) and np.all(np.isfinite(g))
    assert np.isfinite(float(nsj.hypotest(m, 1.0).cls_obs))


def test_negative_weights(ews):
    with pytest.raises(InvalidEvents, match=r"sample 'background'.*negative weight.*event 0.*allow_negative_weights"):
        ews_bad = _events()
        s = ews_bad.samples[1]
        w = s.weights.copy()
        w[0] = -1.0
        EventWorkspace(FEATURES, [ews_bad.samples[0], EventSample("background", s.features, w, s.variations,
                                                                   s.modifiers)], ews_bad.cuts, "m", EDGES)
    cmn = make_cut_model(_events(neg=True))
    for t in THRESHOLDS:
        assert np.isfinite(float(cmn.z0(t)))
        assert np.all(np.asarray(cmn.model_at(t).nominal) >= 1e-6)


def _sample(**kw):
    base = dict(name="s", features=np.zeros((3, 3)), weights=np.ones(3),
                modifiers=[{"name": "mu", "type": "normfactor", "data": None}])
    base.update(kw)
    return EventSample(**base)


def _ws(*samples, **kw):
    args = dict(feature_names=FEATURES, samples=list(samples), cuts=[Cut("a", ">", (0, 1))], binning_feature="m",
                bin_edges=EDGES)
    args.update(kw)
    return EventWorkspace(**args)


@pytest.mark.parametrize("kw, match", [
    (dict(weights=np.ones(4)), r"sample 's': weights have length 4 but features have 3 events"),
    (dict(features=np.zeros((3, 2))), r"sample 's': features have 2 columns but the workspace has 3"),
    (dict(features=np.zeros(3)), r"sample 's': features must be 2-dimensional"),
    (dict(features=np.zeros((0, 3)), weights=None), r"sample 's' has no events"),
    (dict(features=np.array([[0.0, 0, 0], [0, np.nan, 0], [0, 0, 0]])),
     r"sample 's': features has a non-finite value \(nan\) at event 1, feature 'a'"),
    (dict(weights=np.array([1.0, np.inf, 1.0])), r"weights has a non-finite value \(inf\) at event 1"),
    (dict(variations={"v": (np.ones(3), np.ones(2))}),
     r"variation 'v': down weights have length 2 but features have 3 events"),
    (dict(variations={"v": (np.ones(3), -np.ones(3))}), r"variation 'v': down weights has a negative weight"),
    (dict(variations={"v": np.ones(3)}), r"variation 'v': expected a pair"),
])
def test_bad_sample_inputs(kw, match):
    with pytest.raises(InvalidEvents, match=match):
        _ws(_sample(**kw))


def test_bad_workspace_inputs(cm):
    with pytest.raises(nsj.InvalidModifier, match=r"histosys is derived from the events"):
        _ws(_sample(modifiers=[{"name": "mu", "type": "normfactor", "data": None},
                               {"name": "h", "type": "histosys", "data": {}}]))
    with pytest.raises(nsj.InvalidModifier, match=r"parameter of interest 'mu' must be a normfactor"):
        _ws(_sample(modifiers=[]))
    with pytest.raises(InvalidEvents, match=r"cuts\[0\] \('zz'\): unknown feature"):
        _ws(_sample(), cuts=[Cut("zz")])
    with pytest.raises(InvalidEvents, match=r"direction must be '>' or '<'"):
        _ws(_sample(), cuts=[Cut("a", ">=")])
    with pytest.raises(InvalidEvents, match=r"range must be finite with low < high"):
        _ws(_sample(), cuts=[Cut("a", ">", (1.0, 0.0))])
    with pytest.raises(InvalidEvents, match=r"bin_edges must be strictly increasing"):
        _ws(_sample(), bin_edges=[0.0, 0.5, 0.5, 1.0])
    with pytest.raises(InvalidEvents, match=r"binning_feature 'q'"):
        _ws(_sample(), binning_feature="q")
    with pytest.raises(InvalidEvents, match=r"duplicate sample name 's'"):
        _ws(_sample(), _sample())
    with pytest.raises(InvalidEvents, match=r"observed events has a non-finite value \(nan\) at event 0, feature 'm'"):
        _ws(_sample(), observed=np.full((2, 3), np.nan))
    with pytest.raises(InvalidEvents, match="not valid JSON"):
        EventWorkspace.from_dict("{not json")
    with pytest.raises(nsj.InvalidInput, match=r"thresholds must have shape \(2,\)"):
        cm.z0(np.zeros(3))
    with pytest.raises(nsj.InvalidInput, match="thresholds must be finite"):
        cm.yields(np.array([np.nan, 1.0]))
    with pytest.raises(nsj.InvalidInput, match="temperature must be > 0"):
        cm.z0(np.zeros(2), 0.0)
    assert issubclass(InvalidEvents, nsj.NextStatJaxError) and issubclass(InvalidEvents, ValueError)


def test_optimisers_tiny(cm):
    min_events = 50
    g = grid_scan(cm, (4, 2), min_events=min_events)
    assert g.evaluations == 8 and g.n_background >= min_events
    ev = evaluate_hard(cm, g.thresholds)
    assert g.z0 == pytest.approx(float(ev["z0"]))
    ok = g.details["n_background"] >= min_events
    assert g.z0 == pytest.approx(np.max(g.details["z0"][ok]))
    ga = gradient_ascent(cm, n_restarts=3, steps=40, lr=0.05, temperature=(0.05, 0.01), min_events=min_events)
    assert ga.thresholds.shape == (2,) and ga.n_background >= min_events
    assert ga.z0 == pytest.approx(float(cm.z0(ga.thresholds)), rel=1e-9)
    assert ga.z0 >= g.z0
    assert ga.evaluations == 3 * 40 + 3
    assert np.all(np.isfinite(ga.details["history"]))


def test_synthetic_benchmark_small():
    ews = synthetic_benchmark(n_signal=500, n_background=1000)
    assert ews.feature_names == ("m", "pt", "iso", "score") and ews.n_cuts == 3
    cm = make_cut_model(ews)
    assert cm.background_mask.tolist() == [False, True]
    loose = np.asarray(cm.loosest)
    y = np.asarray(cm.yields(loose))
    # yields normalised in the binning range; the loosest cuts keep what lies in the cut ranges
    for s, total, yi in zip(ews.samples, (600.0, 20_000.0), y):
        x = s.features
        inside = (x[:, 0] >= 110) & (x[:, 0] <= 140)
        assert s.weights[inside].sum() == pytest.approx(total)
        keep = inside & (x[:, 1] >= 0) & (x[:, 2] <= 6) & (x[:, 3] >= -3)
        assert yi.sum() == pytest.approx(s.weights[keep].sum(), rel=1e-12)
    assert float(cm.z0([30.0, 1.5, -0.5])) > float(cm.z0(loose)) > 0
