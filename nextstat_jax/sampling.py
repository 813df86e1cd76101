"""Exact float64 Poisson sampling for toys, fast under ``vmap``.

``jax.random.poisson`` is not good enough for toys, measured with jax 0.10:

* it converts the rates to float32 before sampling, so its rejection test
  (``log v <= -lam + k log lam - lgamma(k+1)``, terms ~ k log k) loses all
  precision at large rates: at rate 1e6 the draws' variance is 2.8% too
  large (8 standard errors with 200k draws), at 1e8 46%;
* below rate 10 it runs Knuth's product-of-uniforms loop, one fresh uniform
  per pass: vmapped over toys, every element pays for the ~25 passes of the
  batch's largest draw, and both of its branches run for every element;
* it accepts threefry keys only (so does :func:`poisson`: with rbg keys the
  vmapped draws stalled for minutes at 200 toys, measured; they are refused
  with a clear error instead).

:func:`poisson` computes in the rates' dtype (float64 here):

* rates <= ``TABLE_MAX`` (200): inversion, ``k = min{k : F(k) >= u}`` for
  one uniform ``u``, by binary search in a table of ``F`` over the
  ``TABLE_SIZE`` (256) counts around the rate that hold all but 2^-56 of the
  probability on each side (``_inversion``). The table depends on the rates
  only: vmapped over the toys of one hypothesis it is built once, and a draw
  costs one uniform and 8 compares;
* rates > ``TABLE_MAX``: Hörmann's transformed rejection with squeeze (PTRS,
  1993; NumPy's sampler for rates >= 10) with the log-probability from
  :func:`log_pmf` (no cancellation at any rate). One candidate per entry from
  one vectorised draw, then passes retrying the rejected entries gathered
  into a small buffer (``_rejection``).

Each branch runs only when some rate needs it (``lax.cond``); in a toy batch
the rates do not depend on the toy, so the branches are real (vmapped over
rates as well, both run for every element, and each element builds its own
tables of TABLE_SIZE probabilities per rate). Measured on 2 cores, 2 x 2048 toys
(vmapped keys, rates shared): the seed model's 8 bins (rates 3.8-22) 1.5 ms
(PTRS for rates >= 10 and an unrolled CDF walk below: 10.8 ms;
``jax.random.poisson``: 9.7 ms for 2048 toys); the 201-parameter model's 200 bins (rates
28-66) 27 ms (was 115 ms). The draws for a given key differ from
``jax.random.poisson``'s.

Toys take their uniforms from :func:`counter_uniforms`: Threefry-2x32 (the
hash behind ``jax.random``, bit for bit, written out) of the counters
``(toy index, entry)`` under the hypothesis' key, and invert them with
:func:`poisson_inverting` (Gaussian auxdata: the normal quantile). JAX
lowers its own Threefry to a loop of 5 passes on the CPU, and a toy drawn
by ``fold_in`` + ``uniform`` + ``normal`` ran 7 of them: the seed model's
2 x 2048 toys 1.4 -> 1.1 ms.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import gammaln

from .errors import InvalidInput

__all__ = ["poisson", "poisson_inverting", "counter_uniforms", "threefry2x32", "log_pmf", "check_key",
           "TABLE_MAX", "TABLE_SIZE"]

#: counts in a rate's inversion table
TABLE_SIZE = 256
#: rates up to this are drawn by inversion: their table of TABLE_SIZE counts
#: misses less than 2^-56 of the probability on either side up to rate 204
TABLE_MAX = 200.0


def _window_start(lam):
    """First count of a rate's table: ``P(X < start) < 2^-56``."""
    return jnp.maximum(jnp.floor(lam - 8.5 * jnp.sqrt(lam)) - 1.0, 0.0)


def _inversion(u, lam):
    """Draws for rates ``lam`` <= TABLE_MAX (1-d, float) by inversion of a
    table: ``k = min{k : F(k) >= u}`` for the uniforms ``u`` (same shape),
    with ``F`` over the ``TABLE_SIZE`` counts from :func:`_window_start`
    (outside them less than 2^-56 of the probability on each side, below the
    uniforms' 2^-52 resolution). The table depends on the rates only: vmapped
    over toys at shared rates it is built once, and each draw is a binary
    search (8 compares)."""
    lam_pos = jnp.where(lam > 0.0, lam, 1.0)
    start = _window_start(lam_pos)
    ks = start[:, None] + jnp.arange(TABLE_SIZE, dtype=lam.dtype)
    cdf = jnp.cumsum(jnp.exp(log_pmf(ks, lam_pos[:, None])), axis=1)
    cdf = cdf / cdf[:, -1:]  # sums to 1 - O(1e-12): the last count takes the rest
    # a binary search per rate (measured: 8 compares per draw beat all 256 at once ~10x)
    k = start + jax.vmap(lambda c, x: jnp.searchsorted(c, x, side="left"))(cdf, u).astype(lam.dtype)
    return jnp.where(lam > 0.0, k, 0.0)


def log_pmf(k, lam):
    """log Poisson(k; lam) in float64 without the cancellation of
    ``-lam + k log(lam) - lgamma(k+1)`` at large rates (terms ~ k log k,
    result ~ -log(sqrt(lam))): for k >= 9 Stirling's series for lgamma(k+1)
    and log((k+1)/lam) as log1p, exact to ~1e-12 absolute at any rate."""
    x = k + 1.0
    xs = jnp.maximum(x, 10.0)
    inv = 1.0 / xs
    inv2 = inv * inv
    series = inv * (1 / 12 - inv2 * (1 / 360 - inv2 * (1 / 1260 - inv2 * (1 / 1680 - inv2 / 1188))))
    stirling = ((xs - lam) - (xs - 1.0) * jnp.log1p((xs - lam) / lam) - 0.5 * jnp.log(xs)
                - 0.5 * np.log(2 * np.pi) - series)
    direct = -lam + k * jnp.log(lam) - gammaln(x)
    return jnp.where(x >= 10.0, stirling, direct)


def _ptrs(U, V, lam):
    """One PTRS candidate per rate from uniforms ``U``, ``V`` (same shape as
    ``lam`` > TABLE_MAX): (candidate, accepted)."""
    U = U - 0.5
    b = 0.931 + 2.53 * jnp.sqrt(lam)
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2.0)
    us = 0.5 - jnp.abs(U)
    k = jnp.floor((2.0 * a / us + b) * U + lam + 0.43)
    fast = (us >= 0.07) & (V <= v_r)
    reject = ~(k >= 0.0) | ((us < 0.013) & (V > us))
    k = jnp.where(reject, 0.0, k)
    slow = jnp.log(V * inv_alpha / (a / (us * us) + b)) <= log_pmf(k, lam)
    return k, fast | (~reject & slow)


#: rejected entries retried per pass: this fraction of the vector (at least 1)
_RETRY_FRACTION = 16


def _rejection(key, lam):
    """Draws for rates ``lam`` > TABLE_MAX (1-d). One PTRS candidate per entry
    from a single vectorised draw (~80% are accepted at rate 10, ~88% at
    1e4); then passes that each retry up to ``n / _RETRY_FRACTION`` of the
    still rejected entries (gathered by ``nonzero``), until none is left.
    Retrying the whole vector instead would cost ~10 full passes (the
    slowest of n entries), jax.random.poisson's way."""
    n = lam.size
    slots = max(1, -(-n // _RETRY_FRACTION))
    k_first, k_more = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    uv = jax.random.uniform(k_first, (2 * n,), lam.dtype)
    k0, ok0 = _ptrs(uv[:n], uv[n:], lam)
    lam_pad = jnp.concatenate([lam, jnp.full((1,), TABLE_MAX, lam.dtype)])  # index n: an empty slot

    def retry(c):
        k, done, i = c
        idx = jnp.nonzero(~done, size=slots, fill_value=n)[0]
        u = jax.random.uniform(jax.random.fold_in(k_more, i), (2 * slots,), lam.dtype)
        kt, ok = _ptrs(u[:slots], u[slots:], lam_pad[idx])
        k = k.at[idx].set(jnp.where(ok, kt, k[jnp.minimum(idx, n - 1)]), mode="drop")
        return k, done.at[idx].set(ok, mode="drop"), i + 1

    k, _, _ = lax.while_loop(lambda c: ~jnp.all(c[1]), retry, (k0, ok0, jnp.uint32(0)))
    return k


def check_key(key) -> None:
    """Raise :class:`~nextstat_jax.errors.InvalidInput` unless ``key`` is a
    threefry key (``jax.random.key(seed)``, or a raw ``PRNGKey``)."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        name = str(jax.random.key_impl(key))
        if "threefry" not in name:
            raise InvalidInput(f"toys need a threefry PRNG key (jax.random.key(seed)), got a {name!r} key")


def poisson(key, lam):
    """Poisson draws with rates ``lam`` (any shape, float, >= 0), as floats of
    ``lam``'s dtype. A non-finite rate gives itself back (inf or NaN), so
    invalid expected yields show up in the data instead of as a silent 0."""
    check_key(key)
    # fold_in, not split: vmapped, a split key made the draws ~20% dearer (measured)
    k_rej, k_inv = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    return _draw(lam, lambda shape, dtype: jax.random.uniform(k_inv, shape, dtype), lambda: k_rej)


def poisson_inverting(u, lam, rejection_key):
    """:func:`poisson` with the uniforms of the rates <= ``TABLE_MAX`` given:
    ``u`` (same shape as ``lam``, in [0, 1)) is inverted there; larger rates
    are drawn by rejection with the key ``rejection_key()`` (traced into the
    rejection branch, which runs only when some rate needs it)."""
    return _draw(lam, lambda shape, dtype: jnp.reshape(u, shape).astype(dtype), rejection_key)


def _draw(lam, uniforms, rejection_key):
    lam = jnp.asarray(lam)
    if lam.size == 0:
        return lam
    shape, lam = lam.shape, lam.reshape(-1)  # 1-d: multi-dimensional draws cost ~3x more vmapped
    finite = jnp.isfinite(lam)
    small = finite & (lam <= TABLE_MAX)
    large = finite & ~small
    zeros = lambda: jnp.zeros_like(lam)
    # real branches when ``lam`` is not batched (toys of one hypothesis), selects otherwise
    k_small = lax.cond(jnp.any(small),
                       lambda: _inversion(uniforms(lam.shape, lam.dtype), jnp.where(small, lam, 0.0)), zeros)
    k_large = lax.cond(jnp.any(large),
                       lambda: _rejection(rejection_key(), jnp.where(large, lam, 2 * TABLE_MAX)), zeros)
    return jnp.where(small, k_small, jnp.where(large, k_large, lam)).reshape(shape)


def threefry2x32(k0, k1, x0, x1):
    """Random123's Threefry-2x32 (20 rounds) of the counters ``(x0, x1)``
    (uint32 arrays) under the key ``(k0, k1)``: the hash behind
    ``jax.random``, bit for bit, written out. (JAX lowers its own to a loop
    of 5 passes on the CPU, each a chain of kernels; this one fuses into the
    surrounding elementwise code.)"""
    rotations = ((13, 15, 26, 6), (17, 29, 16, 24))
    ks = (k0, k1, k0 ^ k1 ^ np.uint32(0x1BD11BDA))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in rotations[i % 2]:
            x0 = x0 + x1
            x1 = (x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r))
            x1 = x0 ^ x1
        x0, x1 = x0 + ks[(i + 1) % 3], x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def key_words(key):
    """The two uint32 words of a threefry key (typed or raw)."""
    check_key(key)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return key[0], key[1]


def counter_uniforms(key, index, m: int):
    """(m,) float64 uniforms in (0, 1) for draw number ``index`` (uint32):
    Threefry-2x32 of the counters ``(index, 0..m-1)`` under ``key``, 52 bits
    each, ``(bits + 1/2) / 2^52``. One fused hash per number: a toy's
    uniforms cost ~5x less than ``fold_in`` and ``uniform`` calls (each a
    loop of its own on the CPU), and depend only on the key and the index."""
    k0, k1 = key_words(key)
    x0 = jnp.broadcast_to(jnp.asarray(index, jnp.uint32), (m,))
    w0, w1 = threefry2x32(k0, k1, x0, jnp.arange(m, dtype=jnp.uint32))
    bits = (w0.astype(jnp.uint64) << np.uint64(20)) | (w1.astype(jnp.uint64) >> np.uint64(12))
    return (bits.astype(jnp.float64) + 0.5) * 2.0**-52
