"""Toy-based hypothesis tests (``hypotest(..., calculator="toybased")``).

* reproducibility: the same key gives identical results, another key differs;
  ``chunk_size`` and the number of devices (8 forced CPU devices in a
  subprocess) do not change the result;
* on the §7.1 model scaled by 100 (high statistics) toy CLs agrees with the
  asymptotic CLs within binomial errors;
* the q~_mu distributions of our toys match pyhf 0.7.6's own
  (``ToyCalculator.distributions``, NumPy backend, its global RNG) in a
  two-sample KS test, means and quantiles;
* regressions found while sampling toys (fits next to the POI bound).

pyhf 0.7.6's ``ToyCalculator.expected_pvalues`` calls
``np.percentile(interpolation=...)``, removed in NumPy 2.x, so only its
``distributions`` (which works) is used as the reference.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import jax
import jax.numpy as jnp

import nextstat_jax as nsj

from corpus import get_case

N_TOYS = 256  # per hypothesis, for the exact-equality tests (one compiled chunk shape)
CHUNK = 256
FIELDS = ("cls_obs", "clsb_obs", "clb_obs", "cls_exp", "clsb_exp", "clb_exp", "test_stat")


pytestmark = pytest.mark.usefixtures("x64")  # conftest.py


def _np(x):
    return np.asarray(jax.device_get(x), dtype=float)


def scaled_spec(factor: float) -> dict:
    """§7.1 with every yield, staterror uncertainty and observation x factor."""
    spec = copy.deepcopy(get_case("spec_7_1")[0])
    for ch in spec["channels"]:
        for s in ch["samples"]:
            s["data"] = [v * factor for v in s["data"]]
            for m in s["modifiers"]:
                if m["type"] == "staterror":
                    m["data"] = [v * factor for v in m["data"]]
    for o in spec["observations"]:
        o["data"] = [v * factor for v in o["data"]]
    return spec


@pytest.fixture(scope="module")
def model():
    return nsj.from_pyhf(get_case("spec_7_1")[0])


@pytest.fixture(scope="module")
def big_model():
    return nsj.from_pyhf(scaled_spec(100.0))


def toys(m, mu=1.0, key=0, n=N_TOYS, chunk=CHUNK, **kw):
    return nsj.hypotest(m, mu, calculator="toybased", n_toys=n, key=jax.random.key(key), chunk_size=chunk, **kw)


def as_dict(r):
    return {f: _np(getattr(r, f)) for f in FIELDS}


@pytest.fixture(scope="module")
def reference_result(model):
    """Single-device result used by several tests."""
    return toys(model, key=0)


# --------------------------------------------------------------------------
# reproducibility
# --------------------------------------------------------------------------


def test_same_key_same_result(model, reference_result):
    again = toys(model, key=0)
    a, b = as_dict(reference_result), as_dict(again)
    for f in FIELDS:
        np.testing.assert_array_equal(a[f], b[f], err_msg=f"{f} differs for the same key")


def test_different_keys_differ(model, reference_result):
    other = as_dict(toys(model, key=1))
    ref = as_dict(reference_result)
    assert other["test_stat"] == ref["test_stat"]  # the observed statistic does not depend on the key
    assert any(not np.array_equal(ref[f], other[f]) for f in ("clsb_obs", "clb_obs", "cls_exp", "clsb_exp"))


def test_result_is_sane(model, reference_result):
    r = reference_result
    assert bool(r.converged)
    h_asym = nsj.hypotest(model, 1.0)
    np.testing.assert_allclose(float(r.test_stat), float(h_asym.test_stat), rtol=1e-9)  # raw q~ on the data
    for f in ("cls_obs", "clsb_obs", "clb_obs", "cls_exp", "clsb_exp", "clb_exp"):
        v = _np(getattr(r, f))
        assert np.all((v >= 0.0) & (v <= 1.0)), f"{f} = {v}: p-values must lie in [0, 1]"
    # p-values are counts / n_toys
    for f in ("clsb_obs", "clb_obs"):
        k = float(getattr(r, f)) * N_TOYS
        assert abs(k - round(k)) < 1e-9
    exp = _np(r.cls_exp)
    assert np.all(np.diff(exp) >= 0), f"expected CLs must ascend from -2 sigma to +2 sigma: {exp}"
    np.testing.assert_allclose(float(r.cls_obs), float(r.clsb_obs) / float(r.clb_obs), rtol=1e-12)


def test_chunk_size_does_not_change_the_result(model, reference_result):
    chunked = as_dict(toys(model, key=0, chunk=100))  # 3 chunks, the last one padded
    ref = as_dict(reference_result)  # one chunk of 256
    for f in FIELDS:
        np.testing.assert_array_equal(chunked[f], ref[f], err_msg=f"{f}: chunk 100 vs 256")


def test_default_chunks(model, reference_result):
    from nextstat_jax.toys import CHUNK_NUMBERS, MAX_CHUNK, auto_chunk

    from nextstat_jax.toys import _toy_chunk

    compiled = _toy_chunk._cache_size()
    auto = as_dict(nsj.hypotest(model, 1.0, calculator="toybased", n_toys=N_TOYS, key=jax.random.key(0)))
    ref = as_dict(reference_result)
    for f in FIELDS:
        np.testing.assert_array_equal(auto[f], ref[f], err_msg=f"{f}: default chunk vs {CHUNK}")
    # 200 toys run in the padded chunk of 256 compiled for the reference: no new compilation
    fewer = nsj.hypotest(model, 1.0, calculator="toybased", n_toys=200, key=jax.random.key(0))
    assert _toy_chunk._cache_size() == compiled
    assert float(fewer.clsb_obs) * 200 == pytest.approx(round(float(fewer.clsb_obs) * 200), abs=1e-9)
    # the smallest power of two holding the toys, capped by MAX_CHUNK and by memory
    assert auto_chunk(2000, 2, model) == 2048 and auto_chunk(1, 2, model) == 1
    assert auto_chunk(10**7, 2, model) == MAX_CHUNK
    wide = nsj.from_pyhf(nsj.datasets.benchmark_workspace())
    c = auto_chunk(10**7, 2, wide)
    lay = wide.layout
    width = 2 * (lay.n_main + len(lay.aux_poisson) + lay.n_params)
    assert c * width <= CHUNK_NUMBERS < 2 * c * width


def test_q0_toys(model):
    r = toys(model, mu=0.0, test_stat="q0", key=3)
    assert float(r.cls_obs) == float(r.clsb_obs)  # p0, as pyhf
    asym = nsj.hypotest(model, 0.0, test_stat="q0")
    err = np.sqrt(float(asym.clsb_obs) * (1 - float(asym.clsb_obs)) / N_TOYS)
    assert abs(float(r.clsb_obs) - float(asym.clsb_obs)) < 4 * err + 0.02


# --------------------------------------------------------------------------
# toys vs asymptotics at high statistics
# --------------------------------------------------------------------------


def test_toys_approach_asymptotics_at_high_statistics(big_model):
    mu, n = 1.0, 1000
    asym = nsj.hypotest(big_model, mu)
    assert 0.1 < float(asym.cls_obs) < 0.5
    r = toys(big_model, mu=mu, key=7, n=n)
    assert bool(r.converged), "a toy fit did not converge"
    for f in ("cls_obs", "clsb_obs", "clb_obs", "cls_exp", "clsb_exp", "clb_exp"):
        v = _np(getattr(r, f))
        assert np.all((v >= 0.0) & (v <= 1.0)), f"{f} = {v}: p-values must lie in [0, 1]"
    for f in ("clsb_obs", "clb_obs"):
        p = float(getattr(asym, f))
        err = np.sqrt(p * (1 - p) / n)
        assert abs(float(getattr(r, f)) - p) < 4 * err + 0.01, f"{f}: toys {float(getattr(r, f))} vs asymptotic {p}"
    sb, b = float(asym.clsb_obs), float(asym.clb_obs)
    cls_err = float(asym.cls_obs) * np.sqrt((1 - sb) / (n * sb) + (1 - b) / (n * b))
    assert abs(float(r.cls_obs) - float(asym.cls_obs)) < 4 * cls_err + 0.01
    # the median expected CLs too (its toy error is about that of CLs+b at q = q_A)
    np.testing.assert_allclose(float(r.cls_exp[2]), float(asym.cls_exp[2]), atol=0.05)


# --------------------------------------------------------------------------
# toy distributions vs pyhf's
# --------------------------------------------------------------------------

N_PYHF = 200


@pytest.fixture(scope="module")
def pyhf_distributions():
    import pyhf

    old = pyhf.get_backend()
    pyhf.set_backend("numpy")
    try:
        spec = get_case("spec_7_1")[0]
        ws = pyhf.Workspace(spec)
        m = ws.model()
        data = ws.data(m)
        np.random.seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calc = pyhf.infer.calculators.ToyCalculator(
                data, m, ntoys=N_PYHF, test_stat="qtilde", track_progress=False
            )
            sb, b = calc.distributions(1.0)
            q_obs = float(calc.teststatistic(1.0))
    finally:
        pyhf.set_backend(*old)
    return np.asarray(sb.samples, float), np.asarray(b.samples, float), q_obs


@pytest.fixture(scope="module")
def our_distributions(model):
    """Our q~_1 toy distributions (internal API: toys.toy_statistics)."""
    from nextstat_jax.fits import make_problem
    from nextstat_jax.toys import _setup, toy_statistics

    opts = nsj.SolverOptions()
    poi = model.poi_index
    with jax.enable_x64(True):
        prob = make_problem(model)
        mu = jnp.asarray(1.0)
        out = []
        thetas = _setup(prob, mu, "qtilde", poi, opts)[1]  # generated at mu = 1 and at mu = 0
        for theta, seed in zip(thetas, (11, 12)):
            q, conv = toy_statistics(prob, theta, mu, "qtilde", poi, opts, jax.random.key(seed), 1024, CHUNK)
            assert bool(jnp.all(conv))
            out.append(_np(q))
    return out


@pytest.mark.parametrize("which", ["s+b", "b"])
def test_toy_distribution_matches_pyhf(pyhf_distributions, our_distributions, which):
    ref = pyhf_distributions[0 if which == "s+b" else 1]
    ours = our_distributions[0 if which == "s+b" else 1]
    assert np.all(ours >= 0)
    ks = stats.ks_2samp(ours, ref)
    assert ks.pvalue > 1e-3, f"{which}: KS p = {ks.pvalue:.2g} (D = {ks.statistic:.3f})"
    se = np.sqrt(ours.var() / ours.size + ref.var() / ref.size)
    assert abs(ours.mean() - ref.mean()) < 4 * se, f"{which}: mean ours {ours.mean():.4f} vs pyhf {ref.mean():.4f}"
    # fraction of toys with q = 0 (mu_hat > mu): a binomial proportion
    f0, g0 = np.mean(ours == 0), np.mean(ref == 0)
    assert abs(f0 - g0) < 4 * np.sqrt(g0 * (1 - g0) / ref.size + f0 * (1 - f0) / ours.size) + 1e-3
    for pct in (10, 50, 90):
        a = np.percentile(ours, pct)
        # bootstrap-free bound: the pyhf quantile's order-statistic range at ~4 sigma
        k = pct / 100 * ref.size
        half = 4 * np.sqrt(ref.size * pct / 100 * (1 - pct / 100))
        lo = np.sort(ref)[max(int(k - half), 0)]
        hi = np.sort(ref)[min(int(np.ceil(k + half)), ref.size - 1)]
        assert lo - 1e-9 <= a <= hi + 1e-9, f"{which}: {pct}% quantile ours {a:.4f} outside pyhf's range [{lo:.4f}, {hi:.4f}]"


def test_toy_pvalues_match_pyhf(model, pyhf_distributions):
    """Public result vs pyhf's p-values from its own toys (binomial errors)."""
    sb, b, q_obs = pyhf_distributions
    r = toys(model, key=5, n=1000)
    np.testing.assert_allclose(float(r.test_stat), q_obs, rtol=1e-5)
    for ours, ref_samples in ((float(r.clsb_obs), sb), (float(r.clb_obs), b)):
        p = np.mean(ref_samples >= q_obs)
        err = np.sqrt(p * (1 - p) / ref_samples.size + p * (1 - p) / 1000)
        assert abs(ours - p) < 4 * err + 1e-3, f"toy p-value ours {ours} vs pyhf {p}"


@pytest.mark.parametrize("n_sb, n_b", [(1000, 1000), (37, 500), (1, 3)])
def test_expected_set_is_the_percentiles_of_each_toys_pvalues(n_sb, n_b):
    """The expected CLs+b, CLb and CLs are the percentiles (NumPy's linear
    method, as pyhf's) of the p-values obtained with each background toy as
    the observation, computed one by one here (ties and zeros included)."""
    from nextstat_jax.toys import NORMAL_PERCENTILES, _toy_result

    rng = np.random.default_rng(n_sb)
    q_sb = np.round(rng.exponential(1.0, n_sb), 1) * (rng.uniform(size=n_sb) < 0.8)
    q_b = np.round(rng.exponential(3.0, n_b), 1) * (rng.uniform(size=n_b) < 0.8)
    r = _toy_result(np.float64(1.3), q_sb, q_b, np.ones(n_b, bool), "qtilde")
    clsb_j = np.array([np.mean(q_sb >= v) for v in q_b])
    clb_j = np.array([np.mean(q_b >= v) for v in q_b])
    pct = lambda x: np.clip(np.percentile(x, NORMAL_PERCENTILES, method="linear"), 0.0, 1.0)
    np.testing.assert_allclose(r.clsb_exp, pct(clsb_j), rtol=0, atol=1e-14)
    np.testing.assert_allclose(r.clb_exp, pct(clb_j), rtol=0, atol=1e-14)
    np.testing.assert_allclose(r.cls_exp, pct(clsb_j / clb_j), rtol=0, atol=1e-14)
    assert float(r.clsb_obs) == np.mean(q_sb >= 1.3) and float(r.clb_obs) == np.mean(q_b >= 1.3)


def test_percentiles_are_numpys_linear_method():
    from nextstat_jax.toys import NORMAL_PERCENTILES, _percentiles

    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 7, 100, 2000):
        for _ in range(50):
            x = np.sort(rng.uniform(size=n) if rng.uniform() < 0.5 else rng.integers(0, 5, n) / 4)
            np.testing.assert_array_equal(
                _percentiles(x), np.clip(np.percentile(x, NORMAL_PERCENTILES, method="linear"), 0.0, 1.0))


# --------------------------------------------------------------------------
# devices
# --------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    os.environ["JAX_PLATFORMS"] = "cpu"
    sys.path.insert(0, sys.argv[1])
    import jax
    jax.config.update("jax_enable_x64", True)
    import nextstat_jax as nsj
    from corpus import get_case
    assert jax.device_count() == 8, jax.devices()
    m = nsj.from_pyhf(get_case("spec_7_1")[0])
    r = nsj.hypotest(m, 1.0, calculator="toybased", n_toys=int(sys.argv[2]), key=jax.random.key(0),
                     chunk_size=int(sys.argv[3]))
    print(json.dumps({f: jax.device_get(getattr(r, f)).tolist() for f in json.loads(sys.argv[4])}))
    """
)


def test_eight_devices_give_the_single_device_result(reference_result):
    tests_dir = str(Path(__file__).resolve().parent)
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    root = str(Path(tests_dir).parent)
    env["PYTHONPATH"] = os.pathsep.join([root, tests_dir, env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, tests_dir, str(N_TOYS), str(CHUNK), json.dumps(FIELDS)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    ref = as_dict(reference_result)
    for f in FIELDS:
        np.testing.assert_allclose(np.asarray(child[f], float), ref[f], rtol=1e-9, atol=1e-12,
                                   err_msg=f"{f}: 8 devices vs 1")


# --------------------------------------------------------------------------
# regressions
# --------------------------------------------------------------------------


def test_fit_next_to_the_poi_bound_converges(big_model):
    """A background-like toy of the x100 model: the free fit must find
    mu_hat = 0 (at its bound) and pyhf's minimum (pyhf 0.7.6, SLSQP at
    tolerance 1e-12: 2NLL = 19.01641958 at bkg_norm = 1.0938, q~_1 = 7.7372837)."""
    data = np.array([5368.0, 6569.0, 2.53226234, 0.936246813, 1.03475511])
    r = nsj.fit(big_model, data)
    assert bool(r.converged), (
        f"status {int(r.status)} after {int(r.n_iter)} iterations, bestfit {_np(r.bestfit)}, 2NLL {float(r.twice_nll)}"
    )
    np.testing.assert_allclose(float(r.twice_nll), 19.01641958, atol=1e-6)
    np.testing.assert_allclose(float(nsj.qmu(big_model, 1.0, data)), 7.737283690808731, rtol=1e-5)
