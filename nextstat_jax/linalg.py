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
larger ones by a ``fori_loop`` over columns (one matrix-vector product per
column, vectorised over any batch) where they are safely positive definite,
and from an eigendecomposition with the negative curvature reflected where
not (``V max(|w|, delta) V^T``: a proper Newton-like step out of a saddle-like
region, which the pivot rule does not guarantee).

For the Newton step (``block_arrow_solve``) an indefinite small block is
instead factored shifted, ``A + tau I`` with ``tau = 2 |lambda_min| +
1e-3 min|A_ii|`` (a Levenberg step that reflects the most negative curvature,
as the eigendecomposition does): from an indefinite start of a likelihood
with two minima the pivot rule's step led into the higher one. The floor
follows the block's smallest curvature, not its largest: parameters of very
different scales share a block, and a floor of ``1e-3 max|A_ii|`` (three
normfactors of one sample near 0, curvatures ~1e-3 beside a normsys' 90)
cut their steps ~50-fold, so the fit crawled and stopped short of the minimum.
``block_arrow_solve`` says when a factor was visibly modified: the step is
then not Newton's, and the solver does not stop on its decrement alone.
``lambda_min`` comes from bisection on Cholesky's success for ``A - sigma
I`` (a ``while_loop`` that runs only for the blocks that need it, and
unrolls); Gershgorin's bound alone is far too deep where parameters are
strongly correlated (toy fits at high statistics then crawled).

LAPACK never sees a batch: under ``vmap`` jaxlib's batched CPU kernels (potrf,
syevd, getrf, trsm) split their batch over the thread pool that runs them,
and two such kernels running at once on a 2-core machine each wait for
sub-tasks queued behind the other: a deadlock (seen with 2048 fits of a
12-parameter one-channel model). So triangular solves are loops too, and the
rare eigendecompositions run one matrix at a time (a ``custom_vmap`` rule
folds every vmapped axis into one flat batch first).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from jax.custom_batching import custom_vmap

__all__ = ["factor", "solve", "block_arrow_solve", "UNROLL_MAX"]

UNROLL_MAX = 8
_REL_PIVOT = 1e-10
_REL_SHIFT = 1e-3  # Levenberg floor of an indefinite block's shift, relative to its smallest |A_ii|
_DEPTH_TOL = 0.05  # relative precision of |lambda_min| in that shift
_MAX_BISECT = 64


def _pivot(s, ajj):
    delta = jnp.maximum(_REL_PIVOT * jnp.abs(ajj), 1e-300)
    return jnp.maximum(jnp.abs(s), delta)


def _cholesky_entries(A, shift=None):
    """Unrolled modified Cholesky of ``A + shift I`` (A (..., m, m), shift
    (...) or None): (entries ``L[i][j]`` (...) for j <= i, ok (...): no
    pivot was modified)."""
    m = A.shape[-1]
    L = [[None] * m for _ in range(m)]
    ok = True
    for j in range(m):
        ajj = A[..., j, j] if shift is None else A[..., j, j] + shift
        s = ajj
        for k in range(j):
            s = s - L[j][k] ** 2
        ok = ok & (s > _REL_PIVOT * jnp.abs(ajj))
        ljj = jnp.sqrt(_pivot(s, ajj))
        L[j][j] = ljj
        for i in range(j + 1, m):
            v = A[..., i, j]
            for k in range(j):
                v = v - L[i][k] * L[j][k]
            L[i][j] = v / ljj
    return L, ok


def _stack_lower(L):
    """(..., m, m) lower-triangular array from ``_cholesky_entries``' entries."""
    m = len(L)
    zero = jnp.zeros_like(L[0][0])
    rows = [jnp.stack([L[i][j] if j <= i else zero for j in range(m)], axis=-1) for i in range(m)]
    return jnp.stack(rows, axis=-2)


def _lambda_min_below(a, need):
    """A lower bound ``lo`` on the smallest eigenvalue of one symmetric ``a``
    (m, m), within ``_DEPTH_TOL |lo|`` plus ``_REL_SHIFT / 10`` of the
    smallest diagonal magnitude (returned as ``scale``): bisection between Gershgorin's lower bound and the
    smallest diagonal entry, ``sigma`` moving up where ``a - sigma I`` has a
    Cholesky factor (then ``lambda_min > sigma``). No iteration unless
    ``need`` (a bool scalar): Gershgorin's bound is returned. Written entry by
    entry: it is unrolled (``unrolled.py``), where array helpers cost entries."""
    m = a.shape[-1]
    d = [a[j, j] for j in range(m)]
    off = {(i, j): jnp.abs(a[i, j]) for i in range(m) for j in range(i)}
    lower = hi = d[0]
    big = small = jnp.abs(d[0])
    for j in range(m):
        radius = sum(off[max(i, j), min(i, j)] for i in range(m) if i != j)
        lower = jnp.minimum(lower, d[j] - radius)
        hi = jnp.minimum(hi, d[j])
        big = jnp.maximum(big, jnp.abs(d[j]))
        small = jnp.minimum(small, jnp.abs(d[j]))
    # the smallest curvature sets the precision and the floor, not the largest:
    # parameters of very different scales share a block (three normfactors
    # of one sample near 0 have curvatures ~1e-3 beside a normsys' 90, and a
    # floor of 1e-3 x 90 made their steps ~50x too short)
    scale = jnp.maximum(small, 1e-12 * big)

    def go_on(c):
        lo, hi, n = c
        return need & (hi - lo > _DEPTH_TOL * jnp.abs(lo) + 0.1 * _REL_SHIFT * scale) & (n < _MAX_BISECT)

    def halve(c):
        lo, hi, n = c
        mid = 0.5 * (lo + hi)
        below = _cholesky_entries(a, -mid)[1]
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid), n + 1

    lo, _, _ = lax.while_loop(go_on, halve, (lower, hi, 0))
    return lo, scale


def _factor_unrolled(A, shift_indefinite=False):
    """Unrolled modified Cholesky factor of A (..., m, m); with
    ``shift_indefinite`` the factor of ``A + tau I``, tau = 0 where A is
    safely positive definite (module doc). No branch, so it vectorises and
    unrolls."""
    if not shift_indefinite:
        return _stack_lower(_cholesky_entries(A)[0])
    # tau is a step modification: not differentiated (nor its while_loop)
    a = lax.stop_gradient(A)
    # a positive-definite block is factored twice (this test, then A + 0 I):
    # keeping the first factor and selecting it cost more unrolled entries
    # (interp_code1_code0 past MAX_ENTRIES) and measured no faster
    ok = _cholesky_entries(a)[1]
    lo, scale = jnp.vectorize(_lambda_min_below, signature="(m,m),()->(),()")(a, ~ok)
    tau = jnp.where(ok, 0.0, 2.0 * jnp.maximum(-lo, 0.0) + _REL_SHIFT * scale)
    return _stack_lower(_cholesky_entries(A, tau)[0])


def _cholesky_loop(X):
    """Left-looking Cholesky of X (N, m, m), one column per loop step, vectorised
    over N; pivots that are not safely positive are modified as in
    ``_factor_unrolled``. Returns (L, ok (N,): no pivot was modified)."""
    m = X.shape[-1]
    idx = jnp.arange(m)

    def column(j, carry):
        L, ok = carry
        row = L[:, j, :]  # entries k < j are set, the rest are 0
        ajj = X[:, j, j]
        s = ajj - jnp.sum(row * row, axis=-1)
        ljj = jnp.sqrt(_pivot(s, ajj))
        col = (X[:, :, j] - jnp.einsum("nik,nk->ni", L, row)) / ljj[:, None]
        col = jnp.where(idx > j, col, jnp.where(idx == j, ljj[:, None], 0.0))
        return L.at[:, :, j].set(col), ok & (s > _REL_PIVOT * jnp.abs(ajj))

    return lax.fori_loop(0, m, column, (jnp.zeros_like(X), jnp.ones(X.shape[:1], bool)))


def _factor_eigen(a):
    """Factor of ``V max(|w|, delta) V^T`` for one indefinite (m, m) matrix:
    negative curvature reflected, so the Newton step descends along it (from
    a saddle-like start the pivot rule can lead to a worse stationary point)."""
    w, V = jnp.linalg.eigh(a)
    w = jnp.maximum(jnp.abs(w), jnp.maximum(_REL_PIVOT * jnp.max(jnp.abs(w)), 1e-300))
    M = (V * w[None, :]) @ V.T
    return jnp.linalg.cholesky(0.5 * (M + M.T))


@custom_vmap
def _factor_large(A):
    """Cholesky where safely positive definite, else the eigenvalue-reflected
    factor, for A (..., m, m). The eigendecomposition runs one matrix at a time
    and only for the matrices that need it (rare: a few iterates of a few fits),
    so LAPACK never sees a batch (module doc)."""
    m = A.shape[-1]
    X = A.reshape((-1, m, m))
    L, ok = _cholesky_loop(X)
    bad = jnp.nonzero(~ok, size=X.shape[0], fill_value=0)[0]
    fix = lambda i, L: L.at[bad[i]].set(_factor_eigen(X[bad[i]]))
    L = lax.fori_loop(0, jnp.sum(~ok), fix, L)
    return L.reshape(A.shape)


@_factor_large.def_vmap
def _factor_large_vmap(axis_size, in_batched, A):
    # the vmapped axis becomes one more leading axis of the same computation
    (batched,) = in_batched
    if not batched:
        A = jnp.broadcast_to(A[None], (axis_size,) + A.shape)
    return _factor_large(A), True


def factor(A, shift_indefinite=False):
    """Lower Cholesky factor (..., m, m) of a positive-definite modification of
    the symmetric ``A`` (..., m, m): the pivot rule, or for blocks up to
    ``UNROLL_MAX`` with ``shift_indefinite`` the Levenberg shift (module
    doc); larger blocks are reflected either way."""
    if A.shape[-1] <= UNROLL_MAX:
        return _factor_unrolled(A, shift_indefinite)
    return _factor_large(A)


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


def _solve_loop(L, B):
    """Forward then back substitution, one row per loop step; B (..., m, r)."""
    m = L.shape[-1]

    def forward(i, Y):
        v = B[..., i, :] - jnp.einsum("...k,...kr->...r", L[..., i, :], Y)
        return Y.at[..., i, :].set(v / L[..., i, i, None])

    Y = lax.fori_loop(0, m, forward, jnp.zeros_like(B))

    def back(k, X):
        i = m - 1 - k
        v = Y[..., i, :] - jnp.einsum("...k,...kr->...r", L[..., :, i], X)
        return X.at[..., i, :].set(v / L[..., i, i, None])

    return lax.fori_loop(0, m, back, jnp.zeros_like(B))


def solve(L, b):
    """Solve ``(L L^T) x = b`` for b (..., m) or (..., m, r)."""
    vec = b.ndim == L.ndim - 1
    B = b[..., None] if vec else b
    if L.shape[-1] <= UNROLL_MAX:
        X = _solve_unrolled(L, B)
    else:
        X = _solve_loop(L, B)
    return X[..., 0] if vec else X


def _modified(L, A):
    """(...) bool: the factor ``L`` (..., m, m) is of a matrix visibly other
    than ``A`` (a shift, a reflected eigenvalue): an entry of the diagonal of
    ``L L^T`` differs from ``A``'s by more than 1e-6 of itself. The pivot
    floor's changes (a singular, positive semi-definite block) stay below."""
    d = jnp.sum(L * L, axis=-1)
    a = jnp.diagonal(A, axis1=-2, axis2=-1)
    return jnp.any(jnp.abs(d - a) > 1e-6 * jnp.abs(a) + 1e-300, axis=-1)


def block_arrow_solve(A, Bc, D, rl, rg):
    """Solve the block-arrow system ``[[blockdiag(A), Bc], [Bc^T, D]] x = r``.

    Shapes: A (C, m, m), Bc (C, m, g), D (g, g), rl (C, m), rg (g,).
    Returns (xl (C, m), xg (g,), modified ()); each factorisation is modified
    to be positive definite, small indefinite blocks shifted (module doc);
    ``modified``: some factor was visibly modified (the system was indefinite,
    so ``x`` is not the Newton step)."""
    La = factor(A, shift_indefinite=True)
    modified = jnp.any(_modified(La, A))
    zl = solve(La, rl)
    g = D.shape[-1]
    if g == 0:
        return zl, rg, modified
    Z = solve(La, Bc)  # (C, m, g)
    S = D - jnp.einsum("cmg,cmh->gh", Bc, Z)
    s = rg - jnp.einsum("cmg,cm->g", Bc, zl)
    S = 0.5 * (S + S.T)
    Ls = factor(S, shift_indefinite=True)
    xg = solve(Ls, s)
    xl = zl - jnp.einsum("cmg,g->cm", Z, xg)
    return xl, xg, modified | _modified(Ls, S)
