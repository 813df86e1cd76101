"""Running normalisation of observations and rewards (pure, batched).

``RunningStats`` keeps a mean and variance updated with whole batches
(Chan et al.'s parallel algorithm), as SB3's VecNormalize does; rewards are
scaled by the standard deviation of the discounted return, not centred.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["RunningStats", "init_stats", "update_stats", "normalize"]


class RunningStats(NamedTuple):
    mean: jax.Array
    var: jax.Array
    count: jax.Array


def init_stats(shape) -> RunningStats:
    return RunningStats(jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32), jnp.asarray(1e-4, jnp.float32))


def update_stats(stats: RunningStats, batch) -> RunningStats:
    """Merge a batch (leading axis = samples) into the running statistics."""
    batch = batch.astype(jnp.float32)
    b_mean = jnp.mean(batch, axis=0)
    b_var = jnp.var(batch, axis=0)
    b_count = jnp.asarray(batch.shape[0], jnp.float32)
    delta = b_mean - stats.mean
    total = stats.count + b_count
    mean = stats.mean + delta * b_count / total
    m2 = stats.var * stats.count + b_var * b_count + delta**2 * stats.count * b_count / total
    return RunningStats(mean, m2 / total, total)


def normalize(stats: RunningStats, x, clip: float = 10.0):
    return jnp.clip((x.astype(jnp.float32) - stats.mean) / jnp.sqrt(stats.var + 1e-8), -clip, clip)
