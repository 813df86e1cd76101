"""Interpolation codes of HistFactory systematics, as pyhf 0.7.6 computes them.

Each function is pure and elementwise (any broadcastable shapes) with finite
gradients everywhere its value is finite: branches are selected with
``jnp.where`` on quantities that are finite in every branch.

* normsys (multiplicative factor, nominal 1): ``code1``, ``code4`` (default).
  ``hi``/``lo`` are the factors at alpha = +1 / -1 and must be > 0.
* histosys (additive delta to the nominal): ``code0``, ``code2``, ``code4p``
  (default). ``up = hi - nominal`` and ``dn = nominal - lo`` per bin.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "NORMSYS_CODES",
    "HISTOSYS_CODES",
    "normsys_code1",
    "normsys_code4",
    "histosys_code0",
    "histosys_code2",
    "histosys_code4p",
    "normsys",
    "histosys",
    "NormsysTerms",
    "normsys_terms",
    "normsys_from_terms",
]

NORMSYS_CODES = ("code1", "code4")
HISTOSYS_CODES = ("code0", "code2", "code4p")

# code4 polynomial coefficients a = M @ r for alpha0 = 1 (pyhf hard-wires 1),
# r = (U-1, D-1, U lnU, -D lnD, U (lnU)^2, D (lnD)^2).
_CODE4_MATRIX = np.array(
    [
        [15 / 16, -15 / 16, -7 / 16, -7 / 16, 1 / 16, -1 / 16],
        [3 / 2, 3 / 2, -9 / 16, 9 / 16, 1 / 16, 1 / 16],
        [-5 / 8, 5 / 8, 5 / 8, 5 / 8, -1 / 8, 1 / 8],
        [-3 / 2, -3 / 2, 7 / 8, -7 / 8, -1 / 8, -1 / 8],
        [3 / 16, -3 / 16, -3 / 16, -3 / 16, 1 / 16, -1 / 16],
        [1 / 2, 1 / 2, -5 / 16, 5 / 16, 1 / 16, 1 / 16],
    ]
)


class NormsysTerms(NamedTuple):
    """What a normsys interpolation needs from ``hi``/``lo`` (computed once per
    model, not per evaluation): logs and the code4 coefficients (..., 6)."""

    log_hi: jax.Array
    log_lo: jax.Array
    coef: jax.Array


def normsys_terms(hi, lo) -> NormsysTerms:
    log_hi, log_lo = jnp.log(hi), jnp.log(lo)
    r = jnp.stack(
        [hi - 1.0, lo - 1.0, hi * log_hi, -lo * log_lo, hi * log_hi**2, lo * log_lo**2],
        axis=-1,
    )
    return NormsysTerms(log_hi, log_lo, r @ jnp.asarray(_CODE4_MATRIX.T, r.dtype))


def _code1(alpha, t: NormsysTerms):
    # ">=": at the kink alpha = 0 (both sides give 1) the derivative is the
    # upper side's, as pyhf's forward-difference gradients see it; from the
    # default init this picks the same side of a two-sided kink as pyhf
    return jnp.where(alpha >= 0, jnp.exp(alpha * t.log_hi), jnp.exp(-alpha * t.log_lo))


def _code4(alpha, t: NormsysTerms):
    inside = jnp.clip(alpha, -1.0, 1.0)  # keep the unused branch's powers tame
    poly = t.coef[..., 5]
    for k in (4, 3, 2, 1, 0):  # Horner: 1 + sum_k a_k alpha^k
        poly = poly * inside + t.coef[..., k]
    poly = 1.0 + poly * inside
    return jnp.where(jnp.abs(alpha) < 1.0, poly, _code1(alpha, t))


def normsys_code1(alpha, hi, lo):
    """Piecewise exponential: ``hi**alpha`` for alpha > 0, ``lo**(-alpha)`` else."""
    return _code1(alpha, normsys_terms(hi, lo))


def code4_coefficients(hi, lo):
    """The six polynomial coefficients of code4, stacked on a new last axis."""
    return normsys_terms(hi, lo).coef


def normsys_code4(alpha, hi, lo):
    """Polynomial inside |alpha| < 1 (continuous to 2nd derivative), code1 outside."""
    return _code4(alpha, normsys_terms(hi, lo))


def histosys_code0(alpha, up, dn):
    """Piecewise linear: ``alpha*up`` for alpha > 0, ``alpha*dn`` else (at the
    kink alpha = 0 the derivative is taken from the upper side, see code1)."""
    return jnp.where(alpha >= 0, alpha * up, alpha * dn)


def histosys_code2(alpha, up, dn):
    """Quadratic inside, linear outside, exactly as pyhf 0.7.6's tensorised code2
    (discontinuous at |alpha| = 1; never a default)."""
    a = 0.5 * (up - dn)  # (hi + lo)/2 - nominal
    b = 0.5 * (up + dn)  # (hi - lo)/2
    return jnp.where(
        alpha > 1.0,
        (b + 2.0 * a) * (alpha - 1.0),
        jnp.where(alpha >= -1.0, a * alpha**2 + b * alpha, (b - 2.0 * a) * alpha),
    )


def histosys_code4p(alpha, up, dn):
    """Polynomial inside |alpha| <= 1 (C1 at the edges), linear outside."""
    s = 0.5 * (up + dn)
    a = 0.0625 * (up - dn)
    asq = alpha**2
    inside = alpha * s + asq * (asq * (asq * 3.0 - 10.0) + 15.0) * a
    return jnp.where(alpha > 1.0, alpha * up, jnp.where(alpha < -1.0, alpha * dn, inside))


_NORMSYS = {"code1": _code1, "code4": _code4}
_HISTOSYS = {"code0": histosys_code0, "code2": histosys_code2, "code4p": histosys_code4p}


def normsys(code: str, alpha, hi, lo):
    """Dispatch a normsys interpolation by pyhf code name."""
    return _NORMSYS[code](alpha, normsys_terms(hi, lo))


def normsys_from_terms(code: str, alpha, terms: NormsysTerms):
    """Normsys factor from precomputed :class:`NormsysTerms`."""
    return _NORMSYS[code](alpha, terms)


def histosys(code: str, alpha, up, dn):
    """Dispatch a histosys interpolation by pyhf code name."""
    return _HISTOSYS[code](alpha, up, dn)
