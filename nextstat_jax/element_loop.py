"""A per-element ``while_loop`` whose batched cost follows each element.

Under ``vmap``, ``lax.while_loop`` becomes one loop over the whole batch that
runs until its slowest element stops: every element pays for the slowest
one's iterations (in a batch of q0 fits most elements need 2-3 Newton steps,
a few need 5, and the whole batch does 5).

``element_while(cond, body, ctx, state)`` is ``lax.while_loop(cond,
partial(body, ctx), state)`` for one element.  Vmapped, it runs the batch in
stages: the loop runs on the full batch while more than 1/``SHRINK`` of it is
still active, then the active elements (their state and their ``ctx``) are
gathered into a buffer ``SHRINK`` times smaller, which runs on in the same way,
and the results are scattered back.  Each element's iterations are the same
as in the plain loop, so results are too; only the cost changes, to roughly
the sum of the iterations each element needs.

Nested vmaps (a batch of fits inside a batch of models) are flattened into
one batch (``flat_batch.flat_call``), so compaction sees the whole batch;
leaves that no vmap batches stay shared.  Batches smaller
than ``SHRINK * MIN_STAGE`` run as the plain vmapped loop.  No derivatives
flow through the loop (callers stop gradients on its inputs).

A batch of large elements (a 201-parameter fit carries ~2,000 numbers of
context and state) runs as ``lax.map`` over pieces of at most
``flat_batch.CHUNK_FLOATS`` numbers (``flat_batch.in_pieces``), each looping
and compacting on its own: every pass of the body over a (batch, P) array then
stays in the CPU caches instead of streaming 13 MB through memory. Measured
on 2 cores, 4096 q0 on the 201-parameter model: 376 ms as one batch, ~255 ms
in pieces of 512; the seed model's ~30 numbers per element keep 8192
elements in one piece. (Chunking the whole solve instead, problem setup
included, measured ~5% faster there but its extra ``custom_vmap`` layer cost
10-20% more compile time on every fit.)

A batch of small elements (at most ``UNROLL_WIDTH`` numbers each, at least
``UNROLL_MIN_BATCH`` of them) runs its body through
:func:`~nextstat_jax.unrolled.unrolled_vmap`: entry by entry, a few fused
passes per iteration instead of one kernel per operation; where the body
cannot be unrolled it falls back to ``jax.vmap``. That loop runs on the
whole batch without stages: each stage's gathers, scatters and loop of its
own cost more than the iterations they save when every element needs a
few Newton steps (seed model, 2 cores, staged vs one loop, same process:
4096 q0 5.2 vs 5.0 ms, compile 8.4 vs 3.4 s; a toy hypotest of 2 x 2000
toys 10.3 vs 9.3 ms, compile 14.7 vs 7.9 s; gymnax env at 4096 envs 0.92
vs 1.03 M steps/s, compile 16.3 vs 6.9 s). The price: an element that
needs many iterations keeps the whole batch iterating (masked), up to the
solver's ``max_iter`` -- except that the whole-batch loop stops once at most
1/``TAIL`` of the batch is still going, and those elements finish in a
vmapped loop over a buffer that small.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .flat_batch import batch_size, chunk_size, flat_call, in_pieces
from .unrolled import Unsupported, unrolled_vmap

__all__ = ["element_while", "SHRINK", "MIN_STAGE"]

#: each stage's buffer is this many times smaller than the previous one's
SHRINK = 4
#: the smallest buffer worth a stage of its own
MIN_STAGE = 256


def element_while(cond: Callable, body: Callable, ctx: Any, state: Any) -> Any:
    """``while cond(state): state = body(ctx, state)`` for one element.

    Args:
        cond: ``state -> bool ()``.
        body: ``(ctx, state) -> state`` (same structure, shapes and dtypes).
        ctx: read-only pytree the body needs (problem data).
        state: the loop carry.

    Returns the final state. Under ``vmap`` the batch is compacted as it
    converges (module doc); ``cond`` and ``body`` must not close over traced
    values (pass them in ``ctx``).
    """
    leaves, tree = jax.tree_util.tree_flatten((ctx, state))
    n_ctx = len(jax.tree_util.tree_leaves(ctx))

    def impl(tree, leaves, mask):
        if not any(mask):
            ctx, state = jax.tree_util.tree_unflatten(tree, leaves)
            return lax.while_loop(cond, lambda s: body(ctx, s), state)
        return _staged(cond, body, leaves, tree, n_ctx, mask)

    return flat_call(impl, tree, leaves)


def _staged(cond, body, leaves, tree, n_ctx: int, mask: tuple):
    """The batched loop over a flat batch (leaves with ``mask`` carry it)."""
    n = batch_size(leaves, mask)
    # large elements: lax.map over cache-sized pieces, each compacting on its own
    # (state no vmap batches is broadcast inside each piece, not over the batch)
    width = sum(int(np.prod(x.shape[1:] if m else x.shape)) for i, (x, m) in enumerate(zip(leaves, mask))
                if m or i >= n_ctx)
    chunk = chunk_size(n, width)
    if chunk < n:
        return in_pieces(lambda ls: _staged(cond, body, ls, tree, n_ctx, mask), leaves, mask, chunk)
    ctx_leaves, st_leaves = leaves[:n_ctx], leaves[n_ctx:]
    st_leaves = [x if m else jnp.broadcast_to(x[None], (n,) + x.shape) for x, m in zip(st_leaves, mask[n_ctx:])]
    ctx_mask = mask[:n_ctx]
    ctx_tree, st_tree = tree.children()
    ctx = jax.tree_util.tree_unflatten(ctx_tree, ctx_leaves)
    state = jax.tree_util.tree_unflatten(st_tree, st_leaves)
    ctx_axes = jax.tree_util.tree_unflatten(ctx_tree, [0 if m else None for m in ctx_mask])
    if width <= UNROLL_WIDTH and n >= UNROLL_MIN_BATCH:
        try:
            return _batched_loop(cond, body, ctx, state, ctx_axes, n, unrolled=True)
        except Unsupported:
            pass
    return _batched_loop(cond, body, ctx, state, ctx_axes, n, unrolled=False)


#: elements carrying at most this many numbers run their iterations unrolled,
#: in batches of at least ``UNROLL_MIN_BATCH`` (measured on the seed model,
#: 2 cores: 4096 q0 6.5 ms unrolled vs 10.7 ms vmapped, 256 q0 0.88 vs 1.13 ms,
#: 64 q0 0.36 vs 0.33 ms; unrolling costs 1.5-3 s more compile time)
UNROLL_WIDTH = 256
UNROLL_MIN_BATCH = 256


#: an unrolled loop stops on the whole batch once at most 1/``TAIL`` of it is
#: still going; those elements finish in a buffer that small. Measured on the
#: seed model (2 cores, interleaved, p10 of 30 calls, 64 vs 8): a toy chunk
#: of 2 x 2048 9.74 vs 9.07 ms (a fifth of its free fits need a fourth
#: Newton step, which 64 ran on the whole batch), 4096 q0 6.43 vs 5.91 ms,
#: 16 steps of 4096 gymnax envs 47.6 vs 41.2 ms; compiling all three 65 vs 50 s
TAIL = 8
#: the smallest tail worth its gathers and scatters
MIN_TAIL = 16


def _take(tree, idx, axes=None):
    """Rows ``idx`` of every leaf batched on axis 0 (per ``axes``; all when None)."""
    if axes is None:
        return jax.tree_util.tree_map(lambda x: jnp.take(x, idx, axis=0, mode="clip"), tree)
    return jax.tree_util.tree_map(lambda a, x: x if a is None else jnp.take(x, idx, axis=0, mode="clip"),
                                  axes, tree, is_leaf=lambda x: x is None)


def _put(state, idx, part):
    """``state`` with rows ``idx`` replaced by ``part`` (indices past the end dropped)."""
    return jax.tree_util.tree_map(lambda full, p: full.at[idx].set(p, mode="drop"), state, part)


def _unrolled_with_tail(cond, single, ctx, state, ctx_axes, n: int):
    """The unrolled loop on the whole batch until at most ``n // TAIL``
    elements are still going, then those (gathered) in a loop of their own."""
    tail = n // TAIL
    if tail < MIN_TAIL:
        return unrolled_vmap(single, in_axes=(ctx_axes, 0))(ctx, state)
    state = unrolled_vmap(single, in_axes=(ctx_axes, 0), stop_at=tail)(ctx, state)
    active = jax.vmap(cond)(state)

    def finish(state):
        idx = jnp.nonzero(active, size=tail, fill_value=n)[0]
        # vmapped: as fast as unrolled at this size, and compiles in less time
        sub = jax.vmap(single, in_axes=(ctx_axes, 0))(_take(ctx, idx, ctx_axes), _take(state, idx))
        return _put(state, idx, sub)

    return lax.cond(jnp.any(active), finish, lambda s: s, state)


def _batched_loop(cond, body, ctx, state, ctx_axes, n: int, unrolled: bool):
    """The loop over a batch of ``n`` (state batched on axis 0, ``ctx`` per
    ``ctx_axes``). ``unrolled``: the body runs entry by entry on the whole
    batch, then on its tail (``unrolled.py``: a few fused passes over the
    batch per iteration instead of one kernel per operation; raises
    ``Unsupported`` at trace time where the body cannot be unrolled); else
    ``jax.vmap``, in compacting stages for large batches."""
    single = lambda c, s: lax.while_loop(cond, lambda t: body(c, t), s)
    if unrolled:
        return _unrolled_with_tail(cond, single, ctx, state, ctx_axes, n)
    if n < SHRINK * MIN_STAGE:
        return jax.vmap(single, in_axes=(ctx_axes, 0))(ctx, state)

    vcond = jax.vmap(cond)
    vbody = jax.vmap(body, in_axes=(ctx_axes, 0))
    sizes = [n]
    while sizes[-1] // SHRINK >= MIN_STAGE:
        sizes.append(sizes[-1] // SHRINK)

    def stage(k, ctx, state):
        limit = sizes[k + 1] if k + 1 < len(sizes) else 0

        def step(s):
            active = vcond(s)
            new = vbody(ctx, s)
            return jax.tree_util.tree_map(
                lambda a, b: jnp.where(active.reshape(active.shape + (1,) * (a.ndim - 1)), a, b), new, s)

        state = lax.while_loop(lambda s: jnp.sum(vcond(s)) > limit, step, state)
        if limit == 0:
            return state
        # the (at most `limit`) active elements; padding slots point past the end
        idx = jnp.nonzero(vcond(state), size=limit, fill_value=sizes[k])[0]
        return _put(state, idx, stage(k + 1, _take(ctx, idx, ctx_axes), _take(state, idx)))

    return stage(0, ctx, state)
