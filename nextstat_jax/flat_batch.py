"""Functions that see their whole vmapped batch as one flat axis.

``flat_call(impl, tree, leaves)`` calls ``impl(tree, leaves, mask)``: unbatched,
``mask`` is all False; under ``vmap`` (however nested) a
``jax.custom_batching.custom_vmap`` rule folds every vmapped axis into one
leading batch axis of the leaves that carry it (``mask`` True), leaves that no
vmap batches stay shared, and ``impl`` runs once on the flat batch. Its outputs
must carry the flat batch axis whenever any input does. This is how
``element_loop`` compacts a batch as it converges and runs a batch of large
elements in cache-sized pieces (:func:`in_pieces`).

No derivatives flow through these calls (callers stop gradients first).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_batching import custom_vmap

__all__ = ["flat_call", "batch_size", "in_pieces", "chunk_size", "CHUNK_FLOATS", "MIN_CHUNK"]

#: batched numbers (summed over a piece's elements) that one piece may carry
CHUNK_FLOATS = 1 << 20
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


def in_pieces(run: Callable, leaves: list, mask: tuple, chunk: int):
    """``run(leaves)`` on a flat batch (leaves with ``mask`` True carry it),
    as ``lax.map`` over pieces of ``chunk`` elements; ``run`` maps leaves with
    ``chunk`` elements to outputs that all carry them. The last piece is padded
    with copies of element 0, dropped from the result."""
    n = batch_size(leaves, mask)
    n_chunks = -(-n // chunk)
    pad = n_chunks * chunk - n

    def split(x):
        if pad:
            x = jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad,) + x.shape[1:])])
        return x.reshape((n_chunks, chunk) + x.shape[1:])

    shared = [x for x, m in zip(leaves, mask) if not m]

    def piece(part):
        it_b, it_s = iter(part), iter(shared)
        return run([next(it_b) if m else next(it_s) for m in mask])

    out = lax.map(piece, [split(x) for x, m in zip(leaves, mask) if m])
    return jax.tree_util.tree_map(lambda y: y.reshape((n_chunks * chunk,) + y.shape[2:])[:n], out)
