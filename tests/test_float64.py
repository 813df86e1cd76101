"""float64 whatever the user's ``jax_enable_x64`` (API.md header, §1).

These tests run with the global flag OFF (JAX's default) and check that the
package computes in float64 anyway, under the user's jit / grad / vmap, without
flipping the flag.  Flag-on references are computed inside
``with jax.enable_x64(True):``.
"""

import subprocess
import sys

import jax

FLAG_AT_START = jax.config.read("jax_enable_x64")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pyhf  # noqa: E402
import pytest  # noqa: E402

import nextstat_jax as nsj  # noqa: E402

FLAG_AFTER_IMPORT = jax.config.read("jax_enable_x64")

# spec §7.1
SPEC = {
    "channels": [
        {
            "name": "SR",
            "samples": [
                {
                    "name": "signal",
                    "data": [5.0, 10.0],
                    "modifiers": [{"name": "mu", "type": "normfactor", "data": None}],
                },
                {
                    "name": "background",
                    "data": [50.0, 60.0],
                    "modifiers": [
                        {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.95}},
                        {"name": "staterror_SR", "type": "staterror", "data": [5.0, 3.0]},
                    ],
                },
            ],
        }
    ],
    "observations": [{"name": "SR", "data": [53.0, 65.0]}],
    "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
    "version": "1.0.0",
}

# spec §7.3
POINTS = [
    ([1.0, 0.0, 1.0, 1.0], -3.5913636517043841),
    ([1.2, 0.5, 0.98, 1.03], -4.7990388970848672),
    ([0.7, -1.5, 1.05, 0.9], -7.1657822323824814),
    ([2.0, 1.0, 1.0, 1.0], -7.8571136412870004),
    ([0.0, -1.0, 1.0, 1.0], -4.7152061078364369),
    ([1.0, 2.3, 1.1, 0.95], -11.870590765176109),
]
PARS = np.array([p for p, _ in POINTS], dtype=np.float64)
EXPECTED = np.array([v for _, v in POINTS])
P = PARS[1]  # a generic point


def flag():
    return jax.config.read("jax_enable_x64")


def f64(x):
    """A float64 JAX array, created inside the x64 context."""
    with jax.enable_x64(True):
        return jnp.asarray(np.asarray(x, dtype=np.float64))


@pytest.fixture(autouse=True)
def flag_stays_off():
    assert flag() is False
    yield
    assert flag() is False


@pytest.fixture(scope="module")
def model():
    return nsj.from_pyhf(SPEC)


@pytest.fixture(scope="module")
def pyhf_values():
    ws = pyhf.Workspace(SPEC)
    m = ws.model()
    data = ws.data(m)
    return np.array([float(m.logpdf(p, data)[0]) for p in PARS])


def test_flag_off_at_start_and_after_import():
    assert FLAG_AT_START is False
    assert FLAG_AFTER_IMPORT is False


def test_import_leaves_flag_unchanged_in_fresh_process():
    code = (
        "import jax; import nextstat_jax as nsj; assert not jax.config.read('jax_enable_x64'); "
        f"m = nsj.from_pyhf({SPEC!r}); v = m.logpdf(m.suggested_init()); "
        "assert v.dtype == 'float64', v.dtype; assert not jax.config.read('jax_enable_x64')"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---------------------------------------------------------------------- values


def test_model_leaves_are_float64(model):
    assert model.nominal.dtype == jnp.float64
    assert model.suggested_init().dtype == jnp.float64
    assert model.suggested_bounds().dtype == jnp.float64
    assert model.data.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(model.data), [53.0, 65.0, 0.0, 1.0, 1.0])


def test_logpdf_is_float64_and_matches_pyhf(model, pyhf_values):
    for pars, expected, ref in zip(PARS, EXPECTED, pyhf_values):
        for given in (pars, list(pars), f64(pars)):
            value = model.logpdf(given)
            assert value.dtype == jnp.float64
            assert value.shape == ()
            assert float(value) == pytest.approx(expected, rel=1e-10)
            assert float(value) == pytest.approx(ref, rel=1e-10)
    expected_data = model.expected_data(PARS[0])
    assert expected_data.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(expected_data), [55.0, 70.0, 0.0, 1.0, 1.0], rtol=1e-14)
    nll = model.nll(PARS[0])
    assert nll.dtype == jnp.float64
    assert float(nll) == pytest.approx(-EXPECTED[0], rel=1e-12)


def test_user_jit_model_as_argument(model):
    fn = jax.jit(lambda m, p: m.logpdf(p))
    out = fn(model, f64(P))
    assert out.dtype == jnp.float64
    assert float(out) == pytest.approx(EXPECTED[1], rel=1e-10)
    # numpy parameters closed over
    out = jax.jit(lambda m: m.logpdf(P))(model)
    assert out.dtype == jnp.float64
    assert float(out) == pytest.approx(EXPECTED[1], rel=1e-10)


def test_user_jit_model_closed_over(model):
    fn = jax.jit(lambda p: model.logpdf(p))
    out = fn(f64(P))
    assert out.dtype == jnp.float64
    assert float(out) == pytest.approx(EXPECTED[1], rel=1e-10)
    # float32 parameters (what a flag-off user has): float64 result, float32 precision of inputs
    p32 = jnp.asarray(P, dtype=jnp.float32)
    out = fn(p32)
    assert out.dtype == jnp.float64
    ref = float(model.logpdf(np.asarray(p32, dtype=np.float64)))
    assert float(out) == pytest.approx(ref, rel=1e-12)


def test_vmap_over_parameter_batches(model):
    out = jax.vmap(model.logpdf)(f64(PARS))
    assert out.dtype == jnp.float64
    assert out.shape == (len(PARS),)
    np.testing.assert_allclose(np.asarray(out), EXPECTED, rtol=1e-10)
    out = jax.jit(jax.vmap(lambda m, p: m.logpdf(p), in_axes=(None, 0)))(model, f64(PARS))
    np.testing.assert_allclose(np.asarray(out), EXPECTED, rtol=1e-10)
    # float32 batch
    b32 = jnp.asarray(PARS, dtype=jnp.float32)
    out = jax.vmap(model.logpdf)(b32)
    ref = [float(model.logpdf(p)) for p in np.asarray(b32, dtype=np.float64)]
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-12)


# ---------------------------------------------------------------------- gradients


def reference_grad_pars(model, pars):
    with jax.enable_x64(True):
        grad = jax.jit(jax.grad(lambda m, p: m.logpdf(p), argnums=1))
        return np.asarray(grad(model, jnp.asarray(np.asarray(pars, dtype=np.float64))))


def test_grad_wrt_pars_float32_input(model):
    p32 = jnp.asarray(P, dtype=jnp.float32)
    g = jax.grad(model.logpdf)(p32)
    assert g.dtype == jnp.float32
    ref = reference_grad_pars(model, np.asarray(p32, dtype=np.float64))
    assert np.all(np.isfinite(ref))
    np.testing.assert_allclose(np.asarray(g, dtype=np.float64), ref, rtol=1e-6)


def test_grad_wrt_pars_float64_input(model):
    g = jax.grad(model.logpdf)(f64(P))
    assert g.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(g), reference_grad_pars(model, P), rtol=1e-10)


def test_jit_of_grad(model):
    ref = reference_grad_pars(model, P)
    g = jax.jit(jax.grad(model.logpdf))(f64(P))
    np.testing.assert_allclose(np.asarray(g), ref, rtol=1e-10)
    g = jax.jit(jax.grad(lambda m, p: m.logpdf(p), argnums=1))(model, f64(P))
    np.testing.assert_allclose(np.asarray(g), ref, rtol=1e-10)
    p32 = jnp.asarray(P, dtype=jnp.float32)
    g = jax.jit(jax.grad(model.logpdf))(p32)
    assert g.dtype == jnp.float32
    np.testing.assert_allclose(
        np.asarray(g, dtype=np.float64), reference_grad_pars(model, np.asarray(p32, dtype=np.float64)), rtol=1e-6
    )


def test_grad_wrt_yields(model):
    def f(y):
        return model.with_yields("SR", "background", y).logpdf(P)

    with jax.enable_x64(True):
        ref = np.asarray(jax.grad(f)(jnp.asarray([50.0, 60.0], dtype=jnp.float64)))
    assert np.all(np.isfinite(ref)) and np.all(ref != 0)

    y32 = jnp.asarray([50.0, 60.0], dtype=jnp.float32)
    g = jax.grad(f)(y32)
    assert g.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(g, dtype=np.float64), ref, rtol=1e-6)

    g = jax.grad(f)(f64([50.0, 60.0]))
    assert g.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(g), ref, rtol=1e-10)

    g = jax.jit(jax.grad(f))(y32)
    np.testing.assert_allclose(np.asarray(g, dtype=np.float64), ref, rtol=1e-6)

    # batched yields
    ys = jnp.asarray([[50.0, 60.0], [40.0, 70.0]], dtype=jnp.float32)
    gs = jax.jit(jax.vmap(jax.grad(f)))(ys)
    with jax.enable_x64(True):
        refs = np.asarray(jax.jit(jax.vmap(jax.grad(f)))(jnp.asarray(np.asarray(ys, dtype=np.float64))))
    np.testing.assert_allclose(np.asarray(gs, dtype=np.float64), refs, rtol=1e-6)


def test_grad_wrt_model(model):
    """A Model is a pytree: jax.grad w.r.t. it gives a Model of float64 cotangents."""
    g = jax.grad(lambda m: m.logpdf(P))(model)
    with jax.enable_x64(True):
        ref = jax.grad(lambda m: m.logpdf(P))(model)
    assert g.nominal.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(g.nominal), np.asarray(ref.nominal), rtol=1e-10)


def test_grad_wrt_model_leaves_values(model):
    # allow_int: tolerate non-float leaves if the model has any
    g = jax.grad(lambda m: m.logpdf(P), allow_int=True)(model)
    with jax.enable_x64(True):
        ref = jax.grad(lambda m: m.logpdf(P), allow_int=True)(model)
    assert g.nominal.dtype == jnp.float64
    assert np.all(np.isfinite(np.asarray(ref.nominal)))
    np.testing.assert_allclose(np.asarray(g.nominal), np.asarray(ref.nominal), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(g.st_unc), np.asarray(ref.st_unc), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(g.ns_hi), np.asarray(ref.ns_hi), rtol=1e-10)
    # through the user's jit
    gj = jax.jit(jax.grad(lambda m: m.logpdf(P), allow_int=True))(model)
    np.testing.assert_allclose(np.asarray(gj.nominal), np.asarray(ref.nominal), rtol=1e-10)


# --------------------------------------------------------------- forward mode (flag on)


def test_forward_mode_with_flag_on(model):
    # jitted: eager forward mode compiles every primitive separately (slow, same values)
    with jax.enable_x64(True):
        p = jnp.asarray(P)
        grad = jax.jit(jax.vmap(jax.grad(model.logpdf)))
        g_rev = np.asarray(grad(p[None]))[0]
        g_fwd = np.asarray(jax.jit(jax.jacfwd(model.logpdf))(p))
        np.testing.assert_allclose(g_fwd, g_rev, rtol=1e-12)
        h = np.asarray(jax.jit(jax.hessian(lambda m, q: m.logpdf(q), argnums=1))(model, p))
        assert h.shape == (4, 4)
        assert h.dtype == np.float64
        np.testing.assert_allclose(h, h.T, rtol=1e-12, atol=1e-12)
        # central differences of the reverse-mode gradient
        eps = 1e-6
        steps = eps * jnp.eye(4)
        fd = (np.asarray(grad(p + steps)) - np.asarray(grad(p - steps))).T / (2 * eps)
        np.testing.assert_allclose(h, fd, rtol=1e-5, atol=1e-6)
        # forward mode w.r.t. yields
        def f(y):
            return model.with_yields("SR", "background", y).logpdf(p)

        y = jnp.asarray([50.0, 60.0])
        jy = jax.jit(jax.jacfwd(f))(y)
        gy = jax.jit(jax.grad(f))(y)
        np.testing.assert_allclose(np.asarray(jy), np.asarray(gy), rtol=1e-12)


def test_solver_options_under_user_jit_and_grad(model):
    """SolverOptions (Python floats) passed through jit/grad with the flag off
    stay static options, never traced values."""
    opts = nsj.SolverOptions(tol_abs=1e-13, tol_rel=0.0)
    data = np.asarray([53.0, 65.0])

    def q0(d):
        return nsj.q0(model, d, options=opts)

    val = jax.jit(q0)(data)
    g = jax.jit(jax.grad(q0))(data)  # the flag-off jit makes `data` float32: so is its gradient
    assert val.dtype == jnp.float64 and g.dtype == jnp.float32
    assert not jax.config.read("jax_enable_x64")
    with jax.enable_x64(True):
        ref = nsj.q0(model, jnp.asarray(data), options=opts)
        ref_g = jax.grad(q0)(jnp.asarray(data))
    assert float(val) == pytest.approx(float(ref), rel=1e-10)
    np.testing.assert_allclose(np.asarray(g), np.asarray(ref_g), rtol=1e-6)  # float32 rounding
