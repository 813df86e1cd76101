"""element_while: a per-element loop that vmaps with compaction.

Each element must end exactly where its own ``lax.while_loop`` ends, however
the batch is nested, shared or sized (compaction on or off)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nextstat_jax import element_loop
from nextstat_jax.element_loop import MIN_STAGE, SHRINK, element_while


def _cond(s):
    x, k = s
    return (x > 1.0) & (k < 500)


def _body(ctx, s):
    """A Collatz-like map whose iteration count varies wildly by element."""
    x, k = s
    scale, shift = ctx
    nxt = jnp.where(jnp.mod(x, 2.0) == 0.0, x / 2.0, scale * x + shift)
    return nxt, k + 1


def _reference(x0, scale, shift):
    return jax.lax.while_loop(_cond, lambda s: _body((scale, shift), s), (x0, jnp.int32(0)))


def _ours(x0, scale, shift):
    return element_while(_cond, _body, (scale, shift), (x0, jnp.int32(0)))


def _starts(n, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(1, 3000, n).astype(np.float32))


@pytest.mark.parametrize("n", [1, 7, SHRINK * MIN_STAGE - 1, SHRINK * MIN_STAGE, 4 * SHRINK * SHRINK * MIN_STAGE + 3])
def test_vmapped_equals_each_element(n):
    x0 = _starts(n)
    ref = jax.jit(jax.vmap(lambda x: _reference(x, 3.0, 1.0)))(x0)
    out = jax.jit(jax.vmap(lambda x: _ours(x, 3.0, 1.0)))(x0)
    np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(ref[0]))
    np.testing.assert_array_equal(np.asarray(out[1]), np.asarray(ref[1]))
    if n > 100:  # the batch really is uneven
        assert int(np.max(ref[1])) > 3 * int(np.median(ref[1]))


def test_unbatched_call_is_the_plain_loop():
    out = jax.jit(_ours)(jnp.float32(27.0), 3.0, 1.0)
    ref = _reference(jnp.float32(27.0), 3.0, 1.0)
    assert float(out[0]) == float(ref[0]) and int(out[1]) == int(ref[1]) == 111


def test_nested_vmaps_and_partly_shared_context():
    """A vmap over the context inside a vmap over starts: both axes flatten
    into one compacted batch; an unbatched leaf stays shared."""
    x0 = _starts(600, seed=1)
    shifts = jnp.asarray([1.0, 3.0])

    def inner(x):
        return jax.vmap(lambda sh: _ours(x, 3.0, sh))(shifts)

    def inner_ref(x):
        return jax.vmap(lambda sh: _reference(x, 3.0, sh))(shifts)

    out = jax.jit(jax.vmap(inner))(x0)
    ref = jax.jit(jax.vmap(inner_ref))(x0)
    assert out[0].shape == (600, 2)
    np.testing.assert_array_equal(np.asarray(out[1]), np.asarray(ref[1]))
    np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(ref[0]))
    # in_axes=None on the start, batched context: the state is broadcast
    out2 = jax.jit(jax.vmap(lambda sh: _ours(jnp.float32(27.0), 3.0, sh)))(jnp.full(600, 1.0))
    assert np.all(np.asarray(out2[1]) == 111)


def test_under_scan_and_grad_context():
    """Inside lax.scan (as the RL env steps it) and next to jax.grad of the
    surrounding function (no derivative flows through the loop)."""
    x0 = _starts(SHRINK * MIN_STAGE, seed=2)

    def f(w):
        steps = jax.vmap(lambda x: _ours(jax.lax.stop_gradient(x * 0 + x), 3.0, 1.0)[1])(x0)
        return w * jnp.sum(steps.astype(jnp.float32))

    ref_steps = jax.vmap(lambda x: _reference(x, 3.0, 1.0)[1])(x0)
    assert float(jax.grad(f)(2.0)) == float(jnp.sum(ref_steps))

    def scan_body(c, x):
        return c, jax.vmap(lambda v: _ours(v, 3.0, 1.0)[1])(x)

    _, ks = jax.lax.scan(scan_body, 0, jnp.stack([x0, x0 + 1.0]))
    np.testing.assert_array_equal(np.asarray(ks[0]), np.asarray(ref_steps))


def _n_loops(n):
    text = jax.jit(jax.vmap(lambda x: _ours(x, 3.0, 1.0))).lower(_starts(n)).as_text()
    return text.count("stablehlo.while")


def test_compaction_stages_in_the_program(monkeypatch):
    """Vmapped (not unrolled): a batch of SHRINK**2 * MIN_STAGE runs in three
    stages (three loops); one smaller than SHRINK * MIN_STAGE in one."""
    monkeypatch.setattr(element_loop, "UNROLL_WIDTH", -1)
    jax.clear_caches()
    assert _n_loops(SHRINK * SHRINK * MIN_STAGE) == 3
    assert _n_loops(SHRINK * MIN_STAGE - 1) == 1


def test_unrolled_batches_run_one_loop_and_a_tail():
    """Small elements run unrolled as one loop over the whole batch, then the
    last 1/TAIL of it in a loop of its own (a batch too small for a tail of
    MIN_TAIL: one loop)."""
    jax.clear_caches()
    assert _n_loops(SHRINK * SHRINK * MIN_STAGE) == 2
    assert _n_loops(element_loop.TAIL * element_loop.MIN_TAIL - 1) == 1


def test_tail_takes_over_mid_loop():
    """The whole-batch loop stops with at most n // TAIL elements going; they
    finish in the tail loop exactly as they would have (every element's
    iterations and result are its own)."""
    n = element_loop.TAIL * 64
    x0 = _starts(n, seed=3)
    ref = jax.jit(jax.vmap(lambda x: _reference(x, 3.0, 1.0)))(x0)
    steps = np.asarray(ref[1])
    # a long tail: after the median element's iterations far more than n // TAIL go on, at the end few
    assert np.sum(steps > np.median(steps)) > n // element_loop.TAIL > np.sum(steps >= steps.max() - 1)
    out = jax.jit(jax.vmap(lambda x: _ours(x, 3.0, 1.0)))(x0)
    np.testing.assert_array_equal(np.asarray(out[1]), steps)
    np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(ref[0]))
