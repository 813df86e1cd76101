"""flat_batch.chunked: a vmapped call run in cache-sized pieces must equal the
plain vmap element by element, however the batch is nested, shared or sized."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nextstat_jax as nsj
from nextstat_jax import flat_batch
from nextstat_jax.datasets import benchmark_workspace
from nextstat_jax.flat_batch import CHUNK_FLOATS, MIN_CHUNK, chunk_size, chunked

WIDTH = 1000  # numbers per element: chunks of 256 with the default CHUNK_FLOATS


@pytest.fixture(autouse=True)
def _float64():
    with jax.enable_x64(True):
        yield


def _fn(x, scale):
    """Per element: x (WIDTH,) -> a reduction and an elementwise map."""
    return jnp.sum(jnp.sin(x) * scale), jnp.cos(x) * scale


def test_chunk_size():
    assert chunk_size(100, 10) == 100  # fits at once
    assert chunk_size(8192, 30) == 8192
    c = chunk_size(8192, WIDTH)
    assert c < 8192 and c * WIDTH <= CHUNK_FLOATS < 2 * c * WIDTH
    assert chunk_size(10**6, 10**6) == MIN_CHUNK
    # one and a half chunks still run at once (no nearly empty second piece)
    assert chunk_size(3 * c // 2, WIDTH) == 3 * c // 2 and chunk_size(3 * c // 2 + 1, WIDTH) == c


@pytest.mark.parametrize("n", [1, 300, 1000, 1024, 2049])
def test_chunked_equals_vmap(n):
    x = jnp.asarray(np.random.default_rng(n).normal(size=(n, WIDTH)))
    ref = jax.jit(jax.vmap(lambda v: _fn(v, 2.0)))(x)
    out = jax.jit(jax.vmap(lambda v: chunked(_fn)(v, 2.0)))(x)
    for a, b in zip(out, ref):
        assert a.shape == b.shape
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-13, atol=0)


def test_chunked_runs_in_pieces():
    """A wide batch becomes a loop over pieces (lax.map); a narrow one does not."""
    def n_loops(width, n):
        x = jnp.zeros((n, width))
        return jax.jit(jax.vmap(lambda v: chunked(_fn)(v, 2.0))).lower(x).as_text().count("stablehlo.while")

    assert n_loops(WIDTH, 2048) == 1
    assert n_loops(4, 2048) == 0


def test_nested_and_shared():
    """vmap over scales inside vmap over rows: both axes fold into one flat
    batch; an argument no vmap batches stays shared; unbatched calls are plain."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(700, WIDTH)))
    scales = jnp.asarray([1.0, -3.0])

    def inner(f):
        return lambda v: jax.vmap(lambda s: f(v, s))(scales)

    out = jax.jit(jax.vmap(inner(chunked(_fn))))(x)
    ref = jax.jit(jax.vmap(inner(_fn)))(x)
    assert out[1].shape == (700, 2, WIDTH)
    for a, b in zip(out, ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-13, atol=0)
    # batched scale only, shared x
    out2 = jax.jit(jax.vmap(lambda s: chunked(_fn)(x[0], s)))(jnp.linspace(0, 1, 600))
    np.testing.assert_allclose(np.asarray(out2[0]), np.asarray(jnp.sum(jnp.sin(x[0])) * jnp.linspace(0, 1, 600)),
                               rtol=1e-12)
    single = chunked(_fn)(x[3], 2.0)
    np.testing.assert_allclose(np.asarray(single[0]), np.asarray(_fn(x[3], 2.0)[0]), rtol=1e-15)


def test_fits_in_pieces_equal_fits_at_once(monkeypatch):
    """q0 of the 201-parameter model over 600 yield vectors: solved in pieces
    (the default) and as one batch (chunking switched off) agree."""
    model = nsj.from_pyhf(benchmark_workspace())
    nominal = np.asarray(model.sample_yields("ch07", "signal"))
    ys = jnp.asarray(nominal * np.exp(0.3 * np.random.default_rng(1).normal(size=(600, nominal.size))))

    def run():
        f = jax.jit(jax.vmap(lambda y: nsj.q0(model.with_yields("ch07", "signal", y))))
        return np.asarray(f(ys)), f.lower(ys).as_text().count("stablehlo.while")

    pieces, loops_pieces = run()
    monkeypatch.setattr(flat_batch, "CHUNK_FLOATS", 1 << 40)
    jax.clear_caches()  # the statistic's own jit would otherwise reuse the chunked trace
    whole, loops_whole = run()
    jax.clear_caches()
    # the switch took effect: pieces of 256 loop plainly inside a lax.map, the
    # whole batch of 1200 compacts in stages (more loops)
    assert loops_pieces != loops_whole
    assert np.all(pieces > 0)
    np.testing.assert_allclose(pieces, whole, rtol=1e-10, atol=1e-12)
