"""A natural logarithm that XLA vectorises on the CPU.

XLA's CPU backend lowers a float64 ``log`` to one scalar libm call per entry,
while ``exp`` and arithmetic run as SIMD code: measured on 2 cores, 8 x 8192
``x * log(x)`` cost ~240 us above the same arithmetic without the log, this
``log`` ~60 us. :mod:`~nextstat_jax.unrolled` computes the float64 ``log``
entries of an unrolled loop with it (the Poisson terms ``n log(nu)``,
evaluated at every line-search trial for every bin of every element); the
rest of the library keeps ``jnp.log``.

The algorithm is fdlibm's ``__ieee754_log`` (Sun Microsystems, 1993): split
``x = 2^k (1 + f)`` with ``1 + f`` in ``[sqrt(2)/2, sqrt(2))`` by integer
operations on the bits, then ``log(1 + f) = 2 atanh(s)``, ``s = f / (2 + f)``,
with fdlibm's minimax polynomial in ``s^2``. Error below 1 ulp (measured on
2 million points over the whole float64 range: at most 1 ulp from NumPy's
``log``, as ``jnp.log``); zero, negative, infinite and NaN inputs give what
``jnp.log`` gives; subnormal inputs are scaled into the normal range (on the
CPU, XLA flushes them to zero first, as it does for ``jnp.log``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ._x64 import x64

__all__ = ["log"]

_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_LG1, _LG2, _LG3, _LG4, _LG5, _LG6, _LG7 = (
    6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01, 2.222219843214978396e-01,
    1.818357216161805012e-01, 1.531383769920937332e-01, 1.479819860511658591e-01)
_TINY = 2.2250738585072014e-308  # smallest normal float64
_TWO54 = 18014398509481984.0
#: the bits of sqrt(2)/2: adding (1.0's bits - these) carries into the
#: exponent exactly when the mantissa is >= sqrt(2)
_SQRT_HALF_BITS = 0x3FE6A09E667F3BCD


def _reciprocal(y):
    """``1 / y`` for ``y`` in ``[1 + sqrt(2)/2, 1 + sqrt(2)]`` without a
    division (XLA does not fuse a division into several consumers, which
    split each log into separate kernels): the minimax linear guess
    (relative error 0.015), then four Newton steps (each squares the error;
    three leave 3e-15)."""
    a, b = 1.0 + 0.5 * 2.0 ** 0.5, 1.0 + 2.0 ** 0.5
    q = 2.0 / (a * b + 0.25 * (a + b) ** 2)
    r = q * (a + b) - q * y
    for _ in range(4):
        r = r * (2.0 - y * r)
    return r


@x64  # int64 bit operations, whatever the caller's x64 flag
def _log_f64(x):
    """The algorithm (module doc) on a float64 array."""
    tiny = x < _TINY
    bits = lax.bitcast_convert_type(jnp.where(tiny, x * _TWO54, x), jnp.int64)
    hx = bits + (0x3FF0000000000000 - _SQRT_HALF_BITS)
    k = ((hx >> 52) - jnp.where(tiny, 1023 + 54, 1023)).astype(jnp.float64)
    f = lax.bitcast_convert_type((hx & 0x000FFFFFFFFFFFFF) + _SQRT_HALF_BITS, jnp.float64) - 1.0
    s = f * _reciprocal(2.0 + f)
    z = s * s
    w = z * z
    r = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7))) + w * (_LG2 + w * (_LG4 + w * _LG6))
    hfsq = 0.5 * f * f
    out = k * _LN2_HI - ((hfsq - (s * (hfsq + r) + k * _LN2_LO)) - f)
    out = jnp.where(x == 0.0, -jnp.inf, out)
    out = jnp.where(x == jnp.inf, jnp.inf, out)
    return jnp.where((x < 0.0) | jnp.isnan(x), jnp.nan, out)


@jax.custom_jvp
def log(x: jax.Array) -> jax.Array:
    """``log(x)`` elementwise; float64 arrays take the vectorised algorithm
    (module doc), other dtypes ``lax.log``. Derivative ``1 / x``."""
    x = jnp.asarray(x)
    if x.dtype != jnp.float64:
        return lax.log(x)
    return _log_f64(x)


@log.defjvp
def _log_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return log(x), dx / x
