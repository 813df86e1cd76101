"""Functions that see their whole vmapped batch as one flat axis.

``flat_call(impl, tree, leaves)`` calls ``impl(tree, leaves, mask)``: unbatched,
``mask`` is all False; under ``vmap`` (however nested) a
``jax.custom_batching.custom_vmap`` rule folds every vmapped axis into one
leading batch axis of the leaves that carry it (``mask`` True), leaves that no
vmap batches stay shared, and ``impl`` runs once on the flat batch. Its outputs
must carry the flat batch axis whenever any input does. This is how
``element_loop`` compacts a batch as it converges and how :func:`chunked` runs
a large batch in cache-sized pieces.

No derivatives flow through these calls (callers stop gradients first).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_batching import custom_vmap

__all__ = ["flat_call", "batch_size", "chunked", "chunk_size", "CHUNK_FLOATS", "MIN_CHUNK"]

#: batched numbers (summed over a chunk's elements) that one chunk may carry
CHUNK_FLOATS = 1 << 19
#: the smallest chunk (below it the fixed cost of each kernel dominates)
MIN_CHUNK = 128


def flat_call(impl: Callable, tree, leaves: list) -> Any:
    """``impl(tree, leaves, mask)`` with every vmapped axis folded into one
    flat batch axis (module doc)."""
    return _flat(impl, tree, (False,) * len(leaves))(*leaves)


def batch_size(leaves, mask) -> int:
    """Length of the flat batch axis (leaves whose ``mask`` entry is True)."""
    return next(x.shape[0] for x, m in zip(leaves, mask) if m)


def _flat(impl: Callable, tree, mask: tuple):
    @custom_vmap
    def run(*leaves):
        return impl(tree, list(leaves), mask)

    @run.def_vmap
    def rule(axis_size, in_batched, *leaves):
        prev = any(mask)
        # the flat batch axis so far: axis 1 of leaves that this vmap batches too
        n = next(x.shape[1 if b else 0] for x, m, b in zip(leaves, mask, in_batched) if m) if prev else 1
        flat = []
        for x, m, b in zip(leaves, mask, in_batched):
            if m and b:
                x = x.reshape((axis_size * n,) + x.shape[2:])
            elif m:
                x = jnp.broadcast_to(x[None], (axis_size,) + x.shape).reshape((axis_size * n,) + x.shape[1:])
            elif b and prev:
                x = jnp.repeat(x, n, axis=0)
            flat.append(x)
        new_mask = tuple(m or b for m, b in zip(mask, in_batched))
        out = _flat(impl, tree, new_mask)(*flat)
        if prev:
            out = jax.tree_util.tree_map(lambda y: y.reshape((axis_size, n) + y.shape[1:]), out)
        return out, jax.tree_util.tree_map(lambda _: True, out)

    return run


def chunk_size(n: int, width: int) -> int:
    """Elements per chunk for a flat batch of ``n`` elements carrying ``width``
    batched numbers each: the largest power of two (at least ``MIN_CHUNK``)
    whose chunk holds at most ``CHUNK_FLOATS`` numbers, or ``n`` when the whole
    batch fits in one and a half chunks."""
    c = MIN_CHUNK
    while 2 * c * width <= CHUNK_FLOATS:
        c *= 2
    return n if 2 * n <= 3 * c else c


def chunked(fn: Callable) -> Callable:
    """``fn`` that, under ``vmap``, runs as ``lax.map`` over pieces of the flat
    batch (each piece vmapped) instead of one vmap over all of it.

    Why: a fit of a 201-parameter model carries ~2,000 numbers per element;
    each pass of a vmapped solver over a (8192, 201) array streams 13 MB
    through memory, while a piece of 256 elements stays in the CPU caches.
    Measured on 2 cores: 4096 q0 on the 201-parameter model 376 -> ~220 ms;
    a model as small as the seed (2 parameters) fits its 8192 elements in one
    piece, so nothing changes there. ``fn`` must not close over traced values,
    and no derivatives may flow into it.
    """

    def wrapped(*args):
        leaves, tree = jax.tree_util.tree_flatten(args)
        return flat_call(lambda t, ls, m: _run_chunked(fn, t, ls, m), tree, leaves)

    return wrapped


def _run_chunked(fn: Callable, tree, leaves: list, mask: tuple):
    call = lambda *ls: fn(*jax.tree_util.tree_unflatten(tree, ls))
    if not any(mask):
        return call(*leaves)
    n = batch_size(leaves, mask)
    width = sum(int(np.prod(x.shape[1:])) for x, m in zip(leaves, mask) if m)
    chunk = chunk_size(n, width)
    in_axes = tuple(0 if m else None for m in mask)
    if chunk >= n:
        return jax.vmap(call, in_axes=in_axes)(*leaves)
    n_chunks = -(-n // chunk)
    pad = n_chunks * chunk - n

    def split(x):  # the last chunk is padded with copies of element 0 (dropped below)
        if pad:
            x = jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad,) + x.shape[1:])])
        return x.reshape((n_chunks, chunk) + x.shape[1:])

    shared = [x for x, m in zip(leaves, mask) if not m]

    def piece(part):
        it_b, it_s = iter(part), iter(shared)
        return jax.vmap(call, in_axes=in_axes)(*[next(it_b) if m else next(it_s) for m in mask])

    out = lax.map(piece, [split(x) for x, m in zip(leaves, mask) if m])
    return jax.tree_util.tree_map(lambda y: y.reshape((n_chunks * chunk,) + y.shape[2:])[:n], out)
