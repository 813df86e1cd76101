"""Bounded Newton minimiser in pure JAX (no host round trips).

``minimize`` runs a projected Newton method (Bertsekas 1982) inside
``lax.while_loop``: at each iterate the parameters pinned at a bound whose
gradient pushes outward (plus the fixed ones) are held, a Newton step is taken
on the others (Cholesky of the free block, with a diagonal shift if it is not
positive definite), and a backtracking Armijo search runs along the projected
path ``clip(theta + a*d, lo, hi)``.  Under ``vmap`` every element stops when it
has converged (JAX's batched ``while_loop`` freezes finished elements), and the
loop ends when all have converged or hit ``max_iter``.

Convergence is declared when the Newton decrement on the free parameters,
``g_F^T H_FF^{-1} g_F / 2`` (the predicted distance to the minimum in objective
units), falls below ``tol_abs + tol_rel*|f|``.  Nothing here differentiates
through the iterations: see ``fits.py`` for the implicit-function gradients.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["SolverOptions", "Solution", "minimize", "STATUS"]

# status codes (per element under vmap)
STATUS = {0: "converged", 1: "max_iter reached", 2: "non-finite objective", 3: "line search failed"}


class SolverOptions(NamedTuple):
    """Static options of :func:`minimize` (hashable; part of the compile key).

    ``tol_abs``/``tol_rel``: stop when the Newton decrement/2 (estimated
    objective distance to the minimum) is below ``tol_abs + tol_rel*|f|``.
    ``max_iter``: Newton iterations; ``max_backtrack``: halvings per line search.
    """

    max_iter: int = 100
    tol_abs: float = 1e-10
    tol_rel: float = 1e-14
    max_backtrack: int = 40
    armijo: float = 1e-4


class Solution(NamedTuple):
    """Result of :func:`minimize` (all per element under vmap).

    theta (P,), f () objective value, grad (P,), converged () bool,
    n_iter () int32, status () int32 (see ``STATUS``)."""

    theta: jax.Array
    f: jax.Array
    grad: jax.Array
    converged: jax.Array
    n_iter: jax.Array
    status: jax.Array


class _State(NamedTuple):
    theta: jax.Array
    f: jax.Array
    g: jax.Array
    it: jax.Array
    done: jax.Array
    status: jax.Array


def _free_mask(theta, g, lo, hi, fixed):
    """Parameters the Newton step may move: not fixed, and not sitting at a
    bound with the gradient pushing further out."""
    at_lo = (theta <= lo) & (g > 0)
    at_hi = (theta >= hi) & (g < 0)
    return ~(fixed | at_lo | at_hi | (lo >= hi))


def newton_direction(H, g, free):
    """Newton step on the free block, ``d = -H_FF^{-1} g_F`` (0 off ``free``),
    and the Newton decrement ``-g.d``.  If the block is not positive definite
    (Cholesky fails or the step is not a descent direction) the block is
    shifted by its Gershgorin bound, which makes it strictly diagonally
    dominant and hence positive definite."""
    n = g.shape[0]
    eye = jnp.eye(n, dtype=g.dtype)
    Hf = jnp.where(free[:, None] & free[None, :], H, eye)
    gf = jnp.where(free, g, 0.0)

    def solve(M):
        L = jnp.linalg.cholesky(M)
        d = -jax.scipy.linalg.cho_solve((L, True), gf)
        return d, jnp.all(jnp.isfinite(d)) & (jnp.dot(gf, d) <= 0)

    d1, ok1 = solve(Hf)
    diag = jnp.diag(Hf)
    radius = jnp.sum(jnp.abs(Hf), axis=1) - jnp.abs(diag)
    shift = jnp.maximum(jnp.max(radius - diag), 0.0) + 1e-8 * jnp.maximum(jnp.max(jnp.abs(diag)), 1.0)
    d2, ok2 = solve(Hf + shift * eye)
    scale = jnp.maximum(jnp.max(jnp.abs(diag)), 1e-300)
    d = jnp.where(ok1, d1, jnp.where(ok2, d2, -gf / scale))
    d = jnp.where(free, d, 0.0)
    return d, -jnp.dot(gf, d)


def minimize(
    value_grad_hess: Callable,
    value: Callable,
    theta0: jax.Array,
    lo: jax.Array,
    hi: jax.Array,
    fixed: jax.Array,
    options: SolverOptions = SolverOptions(),
) -> Solution:
    """Minimise ``f`` over the box ``[lo, hi]`` with ``fixed`` parameters held.

    Args:
        value_grad_hess: ``theta -> (f, grad (P,), hess (P, P))``.
        value: ``theta -> f`` (for the line search).
        theta0: (P,) start; clipped into the box (fixed entries stay as given).
        lo, hi: (P,) bounds; fixed: (P,) bool.
    """
    # fixed parameters stay at theta0 even outside their bounds
    lo = jnp.where(fixed, theta0, lo)
    hi = jnp.where(fixed, theta0, hi)
    theta = jnp.clip(theta0, lo, hi)
    dtype = theta.dtype
    state = _State(theta, jnp.asarray(jnp.inf, dtype), jnp.zeros_like(theta), jnp.int32(0),
                   jnp.zeros((), bool), jnp.int32(1))

    def cond(s: _State):
        return (~s.done) & (s.it <= options.max_iter)

    def body(s: _State):
        # derivatives at the current iterate (the only place they are traced)
        f, g, H = value_grad_hess(s.theta)
        finite = jnp.isfinite(f) & jnp.all(jnp.isfinite(g)) & jnp.all(jnp.isfinite(H))
        free = _free_mask(s.theta, g, lo, hi, fixed)
        d, dec = newton_direction(H, g, free)
        small = 0.5 * dec <= options.tol_abs + options.tol_rel * jnp.abs(f)
        stop = small | ~finite | (s.it >= options.max_iter)

        def ls_cond(c):
            _, _, ok, k = c
            return (~ok) & (k < options.max_backtrack) & (~stop)

        def ls_body(c):
            alpha, _, _, k = c
            cand = jnp.clip(s.theta + alpha * d, lo, hi)
            fc = value(cand)
            ok = jnp.isfinite(fc) & (fc <= f + options.armijo * jnp.dot(g, cand - s.theta))
            return 0.5 * alpha, cand, ok, k + 1

        _, cand, ok, _ = lax.while_loop(
            ls_cond, ls_body, (jnp.ones((), dtype), s.theta, jnp.zeros((), bool), 0)
        )
        status = jnp.where(
            small & finite, 0,
            jnp.where(~finite, 2, jnp.where(s.it >= options.max_iter, 1, jnp.where(ok, 1, 3))),
        ).astype(jnp.int32)
        step = ok & ~stop
        return _State(
            theta=jnp.where(step, cand, s.theta),
            f=jnp.where(finite, f, s.f),
            g=jnp.where(finite, g, s.g),
            it=s.it + step.astype(jnp.int32),
            done=stop | ~ok,
            status=status,
        )

    out = lax.while_loop(cond, body, state)
    converged = out.status == 0
    return Solution(out.theta, out.f, out.g, converged, out.it, out.status)
