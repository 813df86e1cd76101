"""Profile-likelihood scans, CLs curves and the saturated-model goodness of fit
(``nextstat_jax.scans``), against pyhf 0.7.6 and the package's own pointwise
functions.

The model is the bundled seed workspace (8 bins, POI + one normsys) with
observations moved away from the Asimov data, so that the best fit is not at
the nominal point; every function compiles once for it.
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pyhf
import pytest

import nextstat_jax as nsj
from nextstat_jax import scans
from nextstat_jax.datasets import seed_workspace

OBSERVED = [21.0, 16.0, 18.0, 17.0, 10.0, 9.0, 4.0, 6.0]
MUS = np.linspace(0.0, 3.0, 41)  # the CLI's default grid length: one compile per session


@pytest.fixture(scope="module")
def spec():
    s = seed_workspace()
    s["observations"][0]["data"] = OBSERVED
    return s


@pytest.fixture(scope="module")
def model(spec):
    return nsj.from_pyhf(spec)


@pytest.fixture(scope="module")
def pyhf_env(spec):
    old = pyhf.get_backend()
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-12))
    log = logging.getLogger("pyhf")
    level = log.level
    log.setLevel(logging.CRITICAL)
    ws = pyhf.Workspace(spec)
    model = ws.model()
    yield model, ws.data(model)
    log.setLevel(level)
    pyhf.set_backend(*old)


def _while_loops(jaxpr, inside=False) -> int:
    """Number of outermost ``while`` loops in a (closed) jaxpr, recursively
    through sub-jaxprs (jit, custom_jvp, ...) but not into a while's body."""
    count = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "while":
            count += 1
            continue
        for v in eqn.params.values():
            for sub in v if isinstance(v, (list, tuple)) else [v]:
                inner = getattr(sub, "jaxpr", None)
                if inner is not None and hasattr(inner, "eqns"):
                    count += _while_loops(inner)
                elif hasattr(sub, "eqns"):
                    count += _while_loops(sub)
    return count


# ------------------------------------------------------------ profile scan
@pytest.fixture(scope="module")
def poi_scan(model):
    return scans.profile_scan(model, MUS)


def test_profile_scan_shapes_and_minimum(model, poi_scan):
    n, p = MUS.size, model.n_params
    assert poi_scan.values.shape == (n,)
    assert poi_scan.delta_twice_nll.shape == (n,)
    assert poi_scan.twice_nll.shape == (n,)
    assert poi_scan.bestfit.shape == (n, p)
    assert poi_scan.converged.shape == (n,) and bool(np.all(poi_scan.converged))
    assert poi_scan.par_name == "mu" and poi_scan.par_index == model.poi_index
    assert bool(np.all(np.asarray(poi_scan.delta_twice_nll) >= 0))
    # the POI is held at each grid value
    np.testing.assert_allclose(poi_scan.bestfit[:, model.poi_index], MUS, atol=0)
    # global fit = nsj.fit; the scan's minimum sits at the grid point nearest mu_hat
    best = nsj.fit(model)
    np.testing.assert_allclose(poi_scan.global_twice_nll, best.twice_nll, atol=1e-8)
    np.testing.assert_allclose(poi_scan.best_value, best.bestfit[model.poi_index], atol=1e-8)
    mu_hat = float(best.bestfit[model.poi_index])
    assert int(np.argmin(np.asarray(poi_scan.delta_twice_nll))) == int(np.argmin(np.abs(MUS - mu_hat)))
    # a grid point at the best fit gives 0; a parabola-like shape around it
    at_best = scans.profile_scan(model, np.full(MUS.size, mu_hat))
    np.testing.assert_allclose(at_best.delta_twice_nll, 0.0, atol=1e-8)


def test_profile_scan_matches_pyhf_fixed_poi_fit(pyhf_env, poi_scan):
    pmodel, pdata = pyhf_env
    _, free = pyhf.infer.mle.fit(pdata, pmodel, return_fitted_val=True)
    ref = np.array([float(pyhf.infer.mle.fixed_poi_fit(mu, pdata, pmodel, return_fitted_val=True)[1])
                    for mu in MUS]) - float(free)
    np.testing.assert_allclose(poi_scan.delta_twice_nll, ref, atol=1e-5)
    np.testing.assert_allclose(poi_scan.twice_nll - poi_scan.global_twice_nll, ref, atol=1e-5)


def test_profile_scan_of_a_nuisance_parameter_matches_pyhf(pyhf_env, model):
    pmodel, pdata = pyhf_env
    values = np.linspace(-2.0, 2.0, MUS.size)  # same grid length: same compiled code, new index
    scan = scans.profile_scan(model, values, par="bkg_norm")
    idx = model.par_names.index("bkg_norm")
    assert scan.par_name == "bkg_norm" and scan.par_index == idx
    _, free = pyhf.infer.mle.fit(pdata, pmodel, return_fitted_val=True)
    ref = []
    for v in values:
        init = pmodel.config.suggested_init()
        init[idx] = v
        fixed = pmodel.config.suggested_fixed()
        fixed[idx] = True
        ref.append(float(pyhf.infer.mle.fit(pdata, pmodel, init_pars=init, fixed_params=fixed,
                                            return_fitted_val=True)[1]) - float(free))
    np.testing.assert_allclose(scan.delta_twice_nll, ref, atol=1e-5)
    np.testing.assert_allclose(scans.profile_scan(model, values, par=idx).delta_twice_nll,
                               scan.delta_twice_nll, atol=0)


def test_profile_scan_is_one_vmapped_solve_and_does_not_retrace(model):
    values = jnp.asarray(MUS)
    jaxpr = jax.make_jaxpr(lambda v: scans.profile_scan(model, v).delta_twice_nll)(values)
    assert _while_loops(jaxpr.jaxpr) == 1
    scans.profile_scan(model, MUS)
    before = scans._profile_entry._cache_size()
    other = scans.profile_scan(model, MUS[::-1] * 0.9)
    assert scans._profile_entry._cache_size() == before
    np.testing.assert_allclose(other.values, MUS[::-1] * 0.9)
    # under an outer jit, a new grid of the same length reuses the compiled call
    traces = []

    @jax.jit
    def run(v):
        traces.append(1)
        return scans.profile_scan(model, v).delta_twice_nll

    a = run(values)
    b = run(values * 0.5)
    assert len(traces) == 1
    grid = np.asarray(values, np.float64)  # float32 unless the user enabled x64
    np.testing.assert_allclose(a, scans.profile_scan(model, grid).delta_twice_nll, atol=1e-10)
    np.testing.assert_allclose(b, scans.profile_scan(model, grid * 0.5).delta_twice_nll, atol=1e-10)


def test_profile_scan_input_errors(model):
    with pytest.raises(nsj.InvalidInput, match="unknown parameter"):
        scans.profile_scan(model, MUS, par="nope")
    with pytest.raises(nsj.InvalidInput, match="out of range"):
        scans.profile_scan(model, MUS, par=7)
    with pytest.raises(nsj.InvalidInput, match="within the bounds"):
        scans.profile_scan(model, [-1.0, 0.0, 1.0])
    with pytest.raises(nsj.InvalidInput, match="1-d"):
        scans.profile_scan(model, [[0.0, 1.0]])


# --------------------------------------------------------------- CLs curve
@pytest.fixture(scope="module")
def curve(model):
    return scans.cls_curve(model, MUS)


def test_cls_curve_shapes_and_pointwise_hypotest(model, curve):
    n = MUS.size
    assert curve.cls_obs.shape == (n,) and curve.cls_exp.shape == (n, 5)
    assert curve.clsb_obs.shape == (n,) and curve.clb_obs.shape == (n,)
    assert curve.obs_limit.shape == () and curve.exp_limits.shape == (5,)
    assert curve.converged.shape == (n,) and bool(np.all(curve.converged))
    assert curve.level == 0.05 and curve.test_stat == "qtilde" and curve.poi_name == "mu"
    for i in (1, 4, 9):  # a few points: each hypotest compiles nothing new
        r = nsj.hypotest(model, MUS[i])
        np.testing.assert_allclose(curve.cls_obs[i], r.cls_obs, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(curve.clsb_obs[i], r.clsb_obs, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(curve.clb_obs[i], r.clb_obs, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(curve.cls_exp[i], r.cls_exp, rtol=1e-6, atol=1e-9)
    # the expected band is ordered: -2 sigma (lowest CLs) ... +2 sigma
    assert bool(np.all(np.diff(np.asarray(curve.cls_exp)[1:], axis=1) >= 0))
    # interpolated limits: np.interp of mu against CLs, as pyhf's scan mode
    cls = np.asarray(curve.cls_obs)
    np.testing.assert_allclose(curve.obs_limit, np.interp(0.05, cls[::-1], MUS[::-1]), rtol=1e-12)
    assert curve.limits.obs == curve.obs_limit


def test_cls_curve_matches_pyhf_scan(pyhf_env, curve):
    pmodel, pdata = pyhf_env
    obs, exp, (scan, results) = pyhf.infer.intervals.upper_limits.upper_limit(
        pdata, pmodel, scan=MUS, level=0.05, return_results=True)
    ref_obs = np.array([float(r[0]) for r in results])
    ref_exp = np.array([[float(x) for x in r[1]] for r in results])
    np.testing.assert_allclose(curve.cls_obs, ref_obs, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(curve.cls_exp, ref_exp, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(curve.obs_limit, float(obs), rtol=1e-4)
    np.testing.assert_allclose(curve.exp_limits, np.asarray(exp, float), rtol=1e-4)


def test_cls_curve_is_two_vmapped_solves_and_checks_inputs(model):
    jaxpr = jax.make_jaxpr(lambda m: scans.cls_curve(model, m).cls_obs)(jnp.asarray(MUS))
    assert _while_loops(jaxpr.jaxpr) == 2
    with pytest.raises(nsj.InvalidInput, match="test_stat"):
        scans.cls_curve(model, MUS, test_stat="q0")
    with pytest.raises(nsj.InvalidInput, match="level"):
        scans.cls_curve(model, MUS, level=1.5)
    with pytest.raises(nsj.InvalidInput, match="at least 2"):
        scans.cls_curve(model, [1.0])


# ---------------------------------------------------------- goodness of fit
def test_goodness_of_fit(model, pyhf_env):
    g = scans.goodness_of_fit(model)
    assert int(g.dof) == model.nmaindata - 1  # mu is the only free unconstrained parameter
    assert 0.0 <= float(g.p_value) <= 1.0 and bool(g.converged)
    assert float(g.delta_twice_nll) > 0
    best = nsj.fit(model)
    np.testing.assert_allclose(g.twice_nll, best.twice_nll, atol=1e-8)
    # by hand: 2 sum [nu - n + n ln(n/nu)] at the best fit; chi2 survival (scipy)
    from scipy.stats import chi2

    nu = np.asarray(model.expected_actualdata(best.bestfit))
    n = np.asarray(OBSERVED)
    delta = 2 * np.sum(nu - n + n * np.log(n / nu))
    np.testing.assert_allclose(g.delta_twice_nll, delta, rtol=1e-8)
    np.testing.assert_allclose(g.p_value, chi2.sf(delta, g.dof), rtol=1e-8)
    np.testing.assert_allclose(g.saturated_twice_nll, g.twice_nll - g.delta_twice_nll, rtol=1e-12)
    # pyhf: 2NLL(best) - 2NLL(saturated main, constraint at best fit)
    pmodel, pdata = pyhf_env
    pars, twice = pyhf.infer.mle.fit(pdata, pmodel, return_fitted_val=True)
    sat = -2 * (np.sum(pyhf.tensorlib.poisson_logpdf(n, n))
                + float(pmodel.constraint_logpdf(np.asarray(pmodel.config.auxdata), pars)))
    np.testing.assert_allclose(g.delta_twice_nll, float(twice) - sat, atol=1e-6)


def test_goodness_of_fit_asimov_at_best_fit_is_perfect(model):
    best = nsj.fit(model)
    asimov = model.expected_data(best.bestfit)
    g = scans.goodness_of_fit(model, asimov)
    assert float(g.delta_twice_nll) < 1e-8
    np.testing.assert_allclose(g.p_value, 1.0, atol=1e-6)
    assert int(g.dof) == model.nmaindata - 1
