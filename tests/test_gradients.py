"""Derivatives of the inference layer, and its behaviour under vmap and jit.

``jax.grad``/``jax.jacrev`` of ``fit`` (bestfit, twice_nll), ``fixed_poi_fit``
(also w.r.t. the POI value), ``q0``, ``qmu``, ``discovery_significance``,
``hypotest`` (cls_obs, cls_exp) and ``upper_limit`` (obs, exp) are compared
with central finite differences, w.r.t. the yields of a sample that carries a
normsys, a histosys, a staterror and a shapesys (so the derivative must follow
the staterror sigmas and the shapesys tau as the yields change) and w.r.t. the
observed main data.  Two datasets: an excess (every fit interior) and a
deficit (mu_hat = 0 at its bound, q0 = 0 with a zero, not NaN, gradient).

Finite differences need converged fits: everything here runs with
``SolverOptions(tol_abs=1e-14, tol_rel=0)``.  The solver stops within ~1e-7
sigma of the exact minimum, which perturbs derivatives of the best fit by
~1e-8 absolute; the comparison is 1e-5 relative with an absolute floor of
1e-6 x the largest entry of the same Jacobian block.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest

import jax
import jax.numpy as jnp

import nextstat_jax as nsj

RTOL = 1e-5
FLOOR = 1e-6  # absolute floor, relative to the largest entry of a Jacobian block
STEP = 1e-5  # relative finite-difference step (fits, statistics, hypotests)
LIMIT_STEP = 1e-3  # limits: root-finding noise ~1e-9 relative needs a larger step (Richardson-extrapolated)
TIGHT = nsj.SolverOptions(tol_abs=1e-14, tol_rel=0.0)

WS = {
    "channels": [
        {
            "name": "SR",
            "samples": [
                {"name": "signal", "data": [4.0, 8.0, 5.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
                {
                    "name": "bkg",
                    "data": [50.0, 40.0, 30.0],
                    "modifiers": [
                        {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.92}},
                        {"name": "bkg_shape", "type": "histosys", "data": {"hi_data": [52.0, 41.0, 29.0], "lo_data": [48.5, 39.0, 31.5]}},
                        {"name": "staterror_SR", "type": "staterror", "data": [3.0, 2.5, 2.0]},
                        {"name": "bkg_unc", "type": "shapesys", "data": [4.0, 3.0, 3.0]},
                    ],
                },
            ],
        }
    ],
    "observations": [{"name": "SR", "data": [60.0, 53.0, 36.0]}],
    "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
    "version": "1.0.0",
}
CH, SAMPLE = "SR", "bkg"
Y0 = np.array([50.0, 40.0, 30.0])
EXCESS = np.array([60.0, 53.0, 36.0])
DEFICIT = np.array([45.0, 36.0, 27.0])
DATASETS = {"excess": EXCESS, "deficit": DEFICIT}
MU_TEST = 2.5  # above mu_hat (1.54 on the excess), so q_mu > 0 on both datasets


pytestmark = pytest.mark.usefixtures("x64")  # conftest.py


@pytest.fixture(scope="module")
def model():
    m = nsj.from_pyhf(copy.deepcopy(WS))
    assert m.poi_name == "mu"
    return m


def _np(x):
    return np.asarray(jax.device_get(x), dtype=float)


# --------------------------------------------------------------------------
# the functions under test: (yields, main data) -> pytree of arrays
# --------------------------------------------------------------------------


def make_functions(m):
    def fit(y, d):
        r = nsj.fit(m.with_yields(CH, SAMPLE, y), d, options=TIGHT)
        return {"bestfit": r.bestfit, "twice_nll": r.twice_nll}

    def fixed_poi_fit(mu, y, d):
        r = nsj.fixed_poi_fit(m.with_yields(CH, SAMPLE, y), mu, d, options=TIGHT)
        return {"bestfit": r.bestfit, "twice_nll": r.twice_nll, "converged": r.converged, "status": r.status}

    def q0(y, d):
        return nsj.q0(m.with_yields(CH, SAMPLE, y), d, options=TIGHT)

    def qmu(y, d):
        return nsj.qmu(m.with_yields(CH, SAMPLE, y), MU_TEST, d, options=TIGHT)

    def z0(y, d):
        return nsj.discovery_significance(m.with_yields(CH, SAMPLE, y), d, options=TIGHT)

    def hypotest(y, d):
        r = nsj.hypotest(m.with_yields(CH, SAMPLE, y), MU_TEST, d, options=TIGHT)
        return {"cls_obs": r.cls_obs, "cls_exp": r.cls_exp}

    def upper_limit(y, d):
        r = nsj.upper_limit(m.with_yields(CH, SAMPLE, y), d, options=TIGHT)
        return {"obs": r.obs, "exp": r.exp}

    return dict(fit=fit, fixed_poi_fit=fixed_poi_fit, q0=q0, qmu=qmu, z0=z0, hypotest=hypotest, upper_limit=upper_limit)


_CACHE: dict = {}


def _float_outputs(f, *args):
    out = f(*args)
    if isinstance(out, dict):
        return {k: v for k, v in out.items() if k not in ("converged", "status")}
    return out


def compiled(m, name, kind):
    """Jitted forward ('fwd') or Jacobian ('jac', w.r.t. every argument) of a
    function, built once per module."""
    key = (name, kind)
    if key not in _CACHE:
        f = make_functions(m)[name]
        nargs = 3 if name == "fixed_poi_fit" else 2
        if kind == "fwd":
            _CACHE[key] = jax.jit(f)
        else:  # differentiate the floating-point outputs only
            _CACHE[key] = jax.jit(jax.jacrev(functools.partial(_float_outputs, f), argnums=tuple(range(nargs))))
    return _CACHE[key]


# --------------------------------------------------------------------------
# finite differences
# --------------------------------------------------------------------------


def fd_jacobian(f, args, argnum, rel_step, richardson=False):
    """Central differences of ``f(*args)`` (a pytree) w.r.t. ``args[argnum]``;
    leaves get a trailing axis of the input's size (as jax.jacrev)."""
    x = np.atleast_1d(np.asarray(args[argnum], dtype=float))
    scalar = np.ndim(args[argnum]) == 0

    def at(xv):
        a = list(args)
        a[argnum] = xv[0] if scalar else xv
        return jax.tree_util.tree_map(lambda v: np.asarray(v, float), jax.device_get(f(*a)))

    def central(h_rel):
        cols = []
        for i in range(x.size):
            h = h_rel * max(abs(x[i]), 1.0)
            xp, xm = x.copy(), x.copy()
            xp[i] += h
            xm[i] -= h
            fp, fm = at(xp), at(xm)
            cols.append(jax.tree_util.tree_map(lambda a, b: (a - b) / (2 * h), fp, fm))
        return jax.tree_util.tree_map(lambda *c: np.stack(c, axis=-1), *cols)

    d1 = central(rel_step)
    if richardson:  # (4 D(h) - D(2h)) / 3 removes the h^2 term
        d2 = central(2 * rel_step)
        d1 = jax.tree_util.tree_map(lambda a, b: (4 * a - b) / 3, d1, d2)
    if scalar:
        d1 = jax.tree_util.tree_map(lambda a: a[..., 0], d1)
    return d1


def assert_jac_close(ad, fd, what):
    ad = np.asarray(jax.device_get(ad), float)
    fd = np.asarray(fd, float)
    assert ad.shape == fd.shape, f"{what}: shape AD {ad.shape} vs FD {fd.shape}"
    assert np.all(np.isfinite(ad)), f"{what}: non-finite derivative {ad}"
    atol = FLOOR * float(np.max(np.abs(fd), initial=0.0)) + 1e-12
    np.testing.assert_allclose(ad, fd, rtol=RTOL, atol=atol, err_msg=f"{what}: AD vs central FD")


def check_against_fd(m, name, args, labels, rel_step=STEP, richardson=False):
    jac = compiled(m, name, "jac")(*args)  # tuple over args of pytrees
    fwd = compiled(m, name, "fwd")
    for k, label in enumerate(labels):
        fd = fd_jacobian(fwd, args, k, rel_step, richardson)
        if isinstance(fd, dict):
            fd = {key: v for key, v in fd.items() if key not in ("converged", "status")}  # jacrev of a dict output: {key: (d/d arg0, d/d arg1, ...)}
            for key in fd:
                assert_jac_close(jac[key][k], fd[key], f"d {name}.{key} / d {label}")
        else:
            assert_jac_close(jac[k], fd, f"d {name} / d {label}")
    return jac


# --------------------------------------------------------------------------
# gradients vs finite differences
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_fit_gradients(model, dataset):
    d = DATASETS[dataset]
    r = compiled(model, "fit", "fwd")(Y0, d)
    poi = model.poi_index
    if dataset == "deficit":
        assert float(r["bestfit"][poi]) == 0.0, "the deficit data must put mu_hat at its 0 bound"
    else:
        assert 0.0 < float(r["bestfit"][poi]) < 10.0
    jac = check_against_fd(model, "fit", (Y0, d), ("yields", "data"))
    if dataset == "deficit":  # the pinned POI does not move
        for k in range(2):
            assert np.all(_np(jac["bestfit"][k][poi]) == 0.0)


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_fixed_poi_fit_gradients(model, dataset):
    d = DATASETS[dataset]
    jac = check_against_fd(model, "fixed_poi_fit", (1.3, Y0, d), ("poi_value", "yields", "data"))
    poi = model.poi_index
    assert float(jac["bestfit"][0][poi]) == 1.0  # d mu / d poi_value
    assert np.all(_np(jac["bestfit"][1][poi]) == 0.0)


def test_q0_gradients_excess(model):
    q = float(compiled(model, "q0", "fwd")(Y0, EXCESS))
    assert q > 0.5
    check_against_fd(model, "q0", (Y0, EXCESS), ("yields", "data"))


def test_q0_zero_has_zero_gradient(model):
    """Deficit: mu_hat = 0, q0 = 0; its gradient (and that of Z0 = sqrt(q0))
    must be exactly 0, not NaN."""
    assert float(compiled(model, "q0", "fwd")(Y0, DEFICIT)) == 0.0
    assert float(compiled(model, "z0", "fwd")(Y0, DEFICIT)) == 0.0
    for name in ("q0", "z0"):
        jac = compiled(model, name, "jac")(Y0, DEFICIT)
        for k in range(2):
            g = _np(jac[k])
            assert np.all(np.isfinite(g)), f"{name}: gradient {g}"
            assert np.all(g == 0.0), f"{name}: gradient at q0 = 0 is {g}, expected exactly 0"
    # plain jax.grad too
    g = jax.grad(make_functions(model)["z0"], argnums=(0, 1))(Y0, DEFICIT)
    assert all(np.all(_np(x) == 0.0) for x in g)


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_qmu_gradients(model, dataset):
    d = DATASETS[dataset]
    assert float(compiled(model, "qmu", "fwd")(Y0, d)) > 0.0
    check_against_fd(model, "qmu", (Y0, d), ("yields", "data"))


def test_discovery_significance_gradients(model):
    z = float(compiled(model, "z0", "fwd")(Y0, EXCESS))
    q = float(compiled(model, "q0", "fwd")(Y0, EXCESS))
    np.testing.assert_allclose(z, np.sqrt(q), rtol=1e-12)
    check_against_fd(model, "z0", (Y0, EXCESS), ("yields", "data"))


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_hypotest_gradients(model, dataset):
    d = DATASETS[dataset]
    r = compiled(model, "hypotest", "fwd")(Y0, d)
    assert 1e-5 < float(r["cls_obs"]) < 1.0
    check_against_fd(model, "hypotest", (Y0, d), ("yields", "data"))


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_upper_limit_gradients(model, dataset):
    """API §2: upper_limit is differentiable w.r.t. yields and data (and works
    under jit)."""
    d = DATASETS[dataset]
    check_against_fd(model, "upper_limit", (Y0, d), ("yields", "data"), rel_step=LIMIT_STEP, richardson=True)


def test_upper_limit_plain_grad(model):
    """The plainest use: jax.grad of the observed limit, no jit around it."""
    g = jax.grad(lambda d: nsj.upper_limit(model, d, options=TIGHT).obs)(EXCESS)
    assert np.all(np.isfinite(_np(g))) and np.any(_np(g) != 0.0)


# --------------------------------------------------------------------------
# vmap and jit
# --------------------------------------------------------------------------


def _yield_batch(n, seed=0):
    rng = np.random.default_rng(seed)
    return Y0 * rng.uniform(0.85, 1.15, size=(n, Y0.size))


def test_vmap_q0_matches_loop(model):
    ys = _yield_batch(8)
    batched = jax.vmap(lambda y: nsj.q0(model.with_yields(CH, SAMPLE, y), EXCESS, options=TIGHT))(jnp.asarray(ys))
    q0 = compiled(model, "q0", "fwd")
    loop = np.array([float(q0(y, EXCESS)) for y in ys])
    assert batched.shape == (8,)
    assert np.all(loop > 0)
    np.testing.assert_allclose(_np(batched), loop, rtol=1e-9, atol=1e-12)


def test_jit_does_not_retrace_for_new_yields(model):
    traces = []

    @jax.jit
    def user_fn(y):
        traces.append(1)  # runs only while tracing
        return nsj.q0(model.with_yields(CH, SAMPLE, y), EXCESS, options=TIGHT)

    ys = _yield_batch(3, seed=1)
    vals = [float(user_fn(jnp.asarray(y))) for y in ys]
    assert len(traces) == 1, f"user function traced {len(traces)} times for 3 yield vectors"
    q0 = compiled(model, "q0", "fwd")
    np.testing.assert_allclose(vals, [float(q0(y, EXCESS)) for y in ys], rtol=1e-9, atol=1e-12)


def test_vmap_hypotest_matches_loop(model):
    ys = _yield_batch(4, seed=2)
    batched = jax.vmap(lambda y: nsj.hypotest(model.with_yields(CH, SAMPLE, y), MU_TEST, EXCESS, options=TIGHT))(
        jnp.asarray(ys)
    )
    hypotest = compiled(model, "hypotest", "fwd")
    for i, y in enumerate(ys):
        single = hypotest(y, EXCESS)
        for field in ("cls_obs", "cls_exp"):
            np.testing.assert_allclose(
                _np(getattr(batched, field)[i]), _np(single[field]), rtol=1e-9, atol=1e-12,
                err_msg=f"vmap vs loop, yields #{i}: {field}",
            )


def test_fit_converges_where_the_hessian_is_indefinite(model):
    """With these bkg yields the fixed-POI fit at mu = 0 (the Asimov fit of
    every hypotest) starts where the Hessian has a negative eigenvalue (~ -0.5,
    from the normsys/histosys interpolation).  It must still converge to pyhf's
    minimum (pyhf 0.7.6, SLSQP at tolerance 1e-12: 2NLL = 32.98456332)."""
    import pyhf

    y = np.array([52.36149522, 40.74718795, 26.85056037])
    spec = copy.deepcopy(WS)
    spec["channels"][0]["samples"][1]["data"] = [float(v) for v in y]
    old = pyhf.get_backend()
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-12))
    try:
        pm = pyhf.Workspace(spec).model()
        _, ref = pyhf.infer.mle.fixed_poi_fit(
            0.0, np.concatenate([EXCESS, pm.config.auxdata]), pm, return_fitted_val=True
        )
    finally:
        pyhf.set_backend(*old)
    r = compiled(model, "fixed_poi_fit", "fwd")(0.0, y, EXCESS)
    assert bool(r["converged"]), f"fixed_poi_fit(0) did not converge: status {int(r['status'])}"
    assert abs(float(r["twice_nll"]) - float(ref)) <= 1e-6, f"2NLL ours {float(r['twice_nll'])} vs pyhf {float(ref)}"
