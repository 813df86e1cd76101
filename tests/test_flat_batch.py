"""Large elements: element_while runs a batch whose elements carry many numbers
as lax.map over cache-sized pieces (flat_batch.in_pieces). Each element must
still end exactly where its own loop ends, however the batch is nested,
shared, padded or sized."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nextstat_jax as nsj
from nextstat_jax import flat_batch
from nextstat_jax.datasets import benchmark_workspace
from nextstat_jax.element_loop import element_while
from nextstat_jax.flat_batch import CHUNK_FLOATS, MIN_CHUNK, chunk_size

WIDTH = 2000  # context numbers per element: pieces of 256 with the default CHUNK_FLOATS


@pytest.fixture(autouse=True)
def _float64():
    with jax.enable_x64(True):
        yield


def _cond(s):
    return (s[0] > 1e-3) & (s[1] < 200)


def _body(ctx, s):
    """Halve towards 0 at a per-element rate read from a wide context, so the
    iteration count varies by element."""
    x, k = s
    rate = 0.5 + 0.4 * jnp.tanh(jnp.mean(ctx * x))
    return x * rate, k + 1


def _ours(ctx, x0):
    return element_while(_cond, _body, ctx, (x0, jnp.int32(0)))


def _plain(ctx, x0):
    return jax.lax.while_loop(_cond, lambda s: _body(ctx, s), (x0, jnp.int32(0)))


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(n, WIDTH))), jnp.asarray(rng.uniform(0.1, 10.0, n))


def test_chunk_size():
    assert chunk_size(100, 10) == 100  # fits at once
    assert chunk_size(8192, 30) == 8192
    c = chunk_size(8192, WIDTH)
    assert c < 8192 and c * WIDTH <= CHUNK_FLOATS < 2 * c * WIDTH
    assert chunk_size(10**6, 10**6) == MIN_CHUNK
    # one and a half pieces still run at once (no nearly empty second piece)
    assert chunk_size(3 * c // 2, WIDTH) == 3 * c // 2 and chunk_size(3 * c // 2 + 1, WIDTH) == c


@pytest.mark.parametrize("n", [1, 300, 1100, 2049])
def test_pieces_equal_each_element(n):
    ctx, x0 = _data(n)
    ref = jax.jit(jax.vmap(_plain))(ctx, x0)
    out = jax.jit(jax.vmap(_ours))(ctx, x0)
    np.testing.assert_array_equal(np.asarray(out[1]), np.asarray(ref[1]))
    np.testing.assert_allclose(np.asarray(out[0]), np.asarray(ref[0]), rtol=1e-14, atol=0)
    if n > 1000:
        assert len(set(np.asarray(ref[1]).tolist())) > 3  # iterations really vary


def test_wide_batches_run_in_pieces():
    """A wide batch of 1000 becomes a loop over pieces of 512, each a plain
    loop (two whiles); a narrow one runs in one piece: its unrolled loop and
    that loop's tail (element_loop.TAIL), no loop over pieces."""
    from nextstat_jax import element_loop

    def n_loops(width, n):
        ctx, x0 = jnp.zeros((n, width)), jnp.ones(n)
        return jax.jit(jax.vmap(_ours)).lower(ctx, x0).as_text().count("stablehlo.while")

    tail = 1000 // element_loop.TAIL >= element_loop.MIN_TAIL
    assert n_loops(WIDTH, 1000) == 2 and n_loops(4, 1000) == 1 + tail


def test_nested_and_shared_context():
    """A vmap over starts inside a vmap over contexts folds into one flat
    batch of pieces; a context no vmap batches stays shared."""
    ctx, x0 = _data(600, seed=1)
    starts = jnp.asarray([0.5, 7.0])

    def inner(f):
        return lambda c: jax.vmap(lambda s: f(c, s))(starts)

    out = jax.jit(jax.vmap(inner(_ours)))(ctx)
    ref = jax.jit(jax.vmap(inner(_plain)))(ctx)
    assert out[0].shape == (600, 2)
    np.testing.assert_array_equal(np.asarray(out[1]), np.asarray(ref[1]))
    np.testing.assert_allclose(np.asarray(out[0]), np.asarray(ref[0]), rtol=1e-14, atol=0)
    shared = jax.jit(jax.vmap(lambda s: _ours(ctx[0], s)))(x0)
    shared_ref = jax.jit(jax.vmap(lambda s: _plain(ctx[0], s)))(x0)
    np.testing.assert_array_equal(np.asarray(shared[1]), np.asarray(shared_ref[1]))


def test_fits_in_pieces_equal_fits_at_once(monkeypatch):
    """q0 of the 201-parameter model over 600 yield vectors (1200 fits):
    solved in pieces (the default) and as one batch (pieces switched off)."""
    model = nsj.from_pyhf(benchmark_workspace())
    nominal = np.asarray(model.sample_yields("ch07", "signal"))
    ys = jnp.asarray(nominal * np.exp(0.3 * np.random.default_rng(1).normal(size=(600, nominal.size))))

    def run():
        f = jax.jit(jax.vmap(lambda y: nsj.q0(model.with_yields("ch07", "signal", y))))
        return np.asarray(f(ys)), f.lower(ys).as_text().count("stablehlo.while")

    pieces, loops_pieces = run()
    monkeypatch.setattr(flat_batch, "CHUNK_FLOATS", 1 << 40)
    jax.clear_caches()  # the statistic's own jit would otherwise reuse the traced pieces
    whole, loops_whole = run()
    jax.clear_caches()
    # the switch took effect: pieces loop plainly inside a lax.map, the whole
    # batch of 1200 compacts in stages (a different number of loops)
    assert loops_pieces != loops_whole
    assert np.all(pieces > 0)
    np.testing.assert_allclose(pieces, whole, rtol=1e-10, atol=1e-12)
