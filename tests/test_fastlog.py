"""fastlog.log: the vectorised float64 log of unrolled loops.

It must be as accurate as ``jnp.log`` (at most 1 ulp from NumPy's correctly
rounded-or-nearly log), give the same special values, and differentiate
like a log to any order, under jit, vmap and with the user's x64 flag off."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nextstat_jax import fastlog

pytestmark = pytest.mark.usefixtures("x64")
_log = jax.jit(fastlog.log)


def _ulps(got, ref):
    return np.abs(got - ref) / np.spacing(np.abs(ref))


def test_within_one_ulp_over_the_float64_range():
    rng = np.random.default_rng(0)
    xs = np.concatenate([
        np.exp(rng.uniform(-708.0, 709.0, 400_000)),  # every exponent
        rng.uniform(0.5, 2.0, 200_000),  # around the sqrt(2) split and 1
        1.0 + rng.normal(0.0, 1e-9, 50_000),  # log(x) ~ x - 1, tiny results
        np.nextafter(np.sqrt(2.0) / 2.0, [0.0, 2.0]),
        np.nextafter(np.sqrt(2.0), [0.0, 2.0]),
        [np.finfo(np.float64).tiny, np.finfo(np.float64).max, 2.0**-1022, 2.0**1023, 0.5, 2.0, 3.0, 10.0],
    ])
    ref = np.log(xs)
    got = np.asarray(_log(xs))
    nonzero = ref != 0.0
    assert np.all(got[~nonzero] == 0.0)
    assert _ulps(got[nonzero], ref[nonzero]).max() <= 1.0


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=2.2250738585072014e-308, max_value=1.7e308, allow_nan=False))
def test_random_positive_normals(x):
    ref = np.log(x)
    got = float(_log(jnp.float64(x)))
    assert got == ref or abs(got - ref) <= np.spacing(abs(ref))


def test_special_values_as_jnp_log():
    xs = jnp.asarray([0.0, -0.0, -1.0, -np.inf, np.inf, np.nan, 1.0, 5e-324, 1e-310])
    got, ref = np.asarray(_log(xs)), np.asarray(jax.jit(jnp.log)(xs))
    np.testing.assert_array_equal(got, ref)  # subnormals: as jnp.log on this platform


def test_derivatives_to_third_order():
    x = jnp.asarray([1e-3, 0.7, 1.0, 3.0, 1e6])
    d1 = jax.vmap(jax.grad(fastlog.log))(x)
    d2 = jax.vmap(jax.grad(jax.grad(fastlog.log)))(x)
    d3 = jax.vmap(jax.grad(jax.grad(jax.grad(fastlog.log))))(x)
    np.testing.assert_allclose(d1, 1.0 / x, rtol=1e-15)
    np.testing.assert_allclose(d2, -1.0 / x**2, rtol=1e-15)
    np.testing.assert_allclose(d3, 2.0 / x**3, rtol=1e-15)
    jac = jax.jacfwd(fastlog.log)(x)
    np.testing.assert_allclose(jac, np.diag(1.0 / np.asarray(x)), rtol=1e-15)


def test_vmap_and_shapes():
    x = jnp.asarray(np.random.default_rng(1).uniform(0.1, 50.0, (3, 4, 5)))
    np.testing.assert_array_equal(jax.vmap(jax.vmap(_log))(x), _log(x))
    assert _log(x).shape == (3, 4, 5)
    assert float(fastlog.log(2.0)) == pytest.approx(np.log(2.0), rel=1e-16)


def test_other_dtypes_take_lax_log():
    x = jnp.asarray([0.5, 2.0, 7.0], jnp.float32)
    out = fastlog.log(x)
    assert out.dtype == jnp.float32
    np.testing.assert_array_equal(out, jnp.log(x))


def test_unrolled_loops_compute_their_logs_with_it():
    """An unrolled body's float64 log entries run fastlog (no scalar log call
    left in the program), to within 1 ulp of jnp.log."""
    from nextstat_jax.unrolled import unrolled_vmap

    x = jnp.asarray(np.random.default_rng(2).uniform(0.01, 1e4, (300, 3)))
    body = lambda v: jnp.log(v) * v - jnp.log(v[0])
    text = jax.jit(unrolled_vmap(body)).lower(x).as_text()
    assert "stablehlo.log" not in text
    got = np.asarray(jax.jit(unrolled_vmap(jnp.log))(x))
    ref = np.log(np.asarray(x))
    assert _ulps(got, ref).max() <= 1.0


def test_lowers_with_the_x64_flag_off():
    """Lowering runs wherever the caller's jit lowers, maybe with x64 off."""
    with jax.enable_x64(True):
        x = jnp.asarray([0.25, 3.0, 1e300])
    with jax.enable_x64(False):
        out = jax.jit(fastlog.log)(x)
    assert out.dtype == jnp.float64
    assert _ulps(np.asarray(out), np.log(np.asarray(x))).max() <= 1.0
