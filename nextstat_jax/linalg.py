"""Small dense and block-arrow linear algebra for the Newton step.

The Newton system ``H d = r`` of a HistFactory NLL is block-arrow (see
``structure.py``): channel blocks ``A`` (C, m, m), their coupling ``Bc``
(C, m, g) to the global parameters and the global block ``D`` (g, g).  It is
solved by block elimination with the Schur complement
``S = D - sum_c Bc^T A_c^{-1} Bc``.

Factorisations are *modified* Cholesky: a pivot that is not safely positive is
replaced by ``max(|pivot|, delta)``, so the factored matrix is always positive
definite and the step a descent direction (it equals H whenever H is
comfortably positive definite).  Blocks up to ``UNROLL_MAX`` are factored with
unrolled, batch-vectorised code (LAPACK calls per tiny matrix are slow on CPU);
larger ones use LAPACK, with an eigendecomposition when needed.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

__all__ = ["factor", "solve", "block_arrow_solve", "UNROLL_MAX"]

UNROLL_MAX = 8
_REL_PIVOT = 1e-10


def _pivot(s, ajj):
    delta = jnp.maximum(_REL_PIVOT * jnp.abs(ajj), 1e-300)
    return jnp.maximum(jnp.abs(s), delta)


def _factor_unrolled(A):
    m = A.shape[-1]
    L = [[None] * m for _ in range(m)]
    for j in range(m):
        s = A[..., j, j]
        for k in range(j):
            s = s - L[j][k] ** 2
        ljj = jnp.sqrt(_pivot(s, A[..., j, j]))
        L[j][j] = ljj
        for i in range(j + 1, m):
            v = A[..., i, j]
            for k in range(j):
                v = v - L[i][k] * L[j][k]
            L[i][j] = v / ljj
    zero = jnp.zeros_like(A[..., 0, 0])
    rows = [jnp.stack([L[i][j] if j <= i else zero for j in range(m)], axis=-1) for i in range(m)]
    return jnp.stack(rows, axis=-2)


def _factor_lapack(A):
    """Cholesky when positive definite; otherwise of V max(|w|, delta) V^T from
    the eigendecomposition (negative curvature reflected, as the unrolled
    modified Cholesky does per pivot: a proper Newton-like step, not the crawl
    of a large diagonal shift)."""
    L1 = jnp.linalg.cholesky(A)
    ok = jnp.all(jnp.isfinite(L1), axis=(-2, -1), keepdims=True)
    w, V = jnp.linalg.eigh(A)
    wmax = jnp.max(jnp.abs(w), axis=-1, keepdims=True)
    w = jnp.maximum(jnp.abs(w), jnp.maximum(_REL_PIVOT * wmax, 1e-300))
    M = (V * w[..., None, :]) @ jnp.swapaxes(V, -1, -2)
    L2 = jnp.linalg.cholesky(0.5 * (M + jnp.swapaxes(M, -1, -2)))
    return jnp.where(ok, L1, L2)


def factor(A):
    """Lower Cholesky factor (..., m, m) of a positive-definite modification of
    the symmetric ``A`` (..., m, m)."""
    if A.shape[-1] <= UNROLL_MAX:
        return _factor_unrolled(A)
    return _factor_lapack(A)


def _solve_unrolled(L, b):
    m = L.shape[-1]
    y = []
    for i in range(m):
        v = b[..., i, :]
        for k in range(i):
            v = v - L[..., i, k, None] * y[k]
        y.append(v / L[..., i, i, None])
    x = [None] * m
    for i in reversed(range(m)):
        v = y[i]
        for k in range(i + 1, m):
            v = v - L[..., k, i, None] * x[k]
        x[i] = v / L[..., i, i, None]
    return jnp.stack(x, axis=-2)


def solve(L, b):
    """Solve ``(L L^T) x = b`` for b (..., m) or (..., m, r)."""
    vec = b.ndim == L.ndim - 1
    B = b[..., None] if vec else b
    if L.shape[-1] <= UNROLL_MAX:
        X = _solve_unrolled(L, B)
    else:
        Y = solve_triangular(L, B, lower=True)
        X = solve_triangular(jnp.swapaxes(L, -1, -2), Y, lower=False)
    return X[..., 0] if vec else X


def block_arrow_solve(A, Bc, D, rl, rg):
    """Solve the block-arrow system ``[[blockdiag(A), Bc], [Bc^T, D]] x = r``.

    Shapes: A (C, m, m), Bc (C, m, g), D (g, g), rl (C, m), rg (g,).
    Returns (xl (C, m), xg (g,)); each factorisation is modified to be
    positive definite (module doc)."""
    La = factor(A)
    zl = solve(La, rl)
    g = D.shape[-1]
    if g == 0:
        return zl, rg
    Z = solve(La, Bc)  # (C, m, g)
    S = D - jnp.einsum("cmg,cmh->gh", Bc, Z)
    s = rg - jnp.einsum("cmg,cm->g", Bc, zl)
    xg = solve(factor(0.5 * (S + S.T)), s)
    xl = zl - jnp.einsum("cmg,g->cm", Z, xg)
    return xl, xg
