"""Bounded Newton minimiser in pure JAX (no host round trips).

``minimize`` runs a projected Newton method (Bertsekas 1982) inside
``lax.while_loop``.  At each iterate the parameters pinned at a bound whose
gradient pushes outward (and the fixed ones) are held; a Newton step is taken
on the others, using the exact Hessian assembled from a few compressed
Hessian-vector products and solved block-wise (``structure.py``,
``linalg.py``; dense when the model has no sparsity); a backtracking Armijo
search then runs along the projected path ``clip(theta + a*d, lo, hi)``.
Under ``vmap`` every element freezes when it has converged and the loop ends
when all have converged or hit ``max_iter``; the batch is compacted as its
elements converge (``element_loop.py``), so each costs about its own
iterations.

Convergence: the Newton decrement on the free parameters, ``g_F^T H_FF^{-1}
g_F / 2`` (the predicted distance to the minimum in objective units), below
``tol_abs + tol_rel*|f|`` (where ``H_FF`` is indefinite and the step a
shifted one, ``g_i^2 / |H_ii|`` summed must be below it too: the shifted
decrement understates the distance, and a ridge is not a minimum); or a
full Newton step (alpha = 1) accepted from a point whose decrement was
already below ``tol_step``: Newton converges quadratically there, so the
step lands within ~tol_step**2 of the minimum and one more derivative
evaluation only to confirm it would be wasted work (the
worst case, no quadratic convergence at all, is still within ``tol_step``).
The same holds from a decrement/2 up to ``tol_quad`` (1e-4) when the step's
actual decrease ``f - f_new`` matched the quadratic model's prediction
``dec/2`` closely: the mismatch ``m`` measures the cubic term, and to leading
order (one dimension: error ``e``, third derivative ``T``: ``m = T e^3/6``,
the error after the step ``T e^2/(2 H)``) the objective distance left is
``4.5 m^2 / dec``. The fit ends when that, times ``QUAD_SAFETY``, is within
the decrement stop's own ``tol_abs + tol_rel*|f|``, and so is the next
decrement extrapolated from the last two, ``pred^3 / pred_prev^2`` (Newton
converging quadratically at the rate seen so far): the mismatch only sees the
cubic term along the step, and where that term couples the step with other
directions the gradient after the step can be far larger than it suggests
(tests/test_solver_stops.py: 3e-8 of NLL left, the estimate 7e-11). Both are
leading-order estimates, not bounds: on that model a fit now and then still
ends with up to ~5e-8 of NLL left (``tol_quad=0`` makes every fit end on the
decrement). Most fits then end one derivative evaluation sooner (seed q0 x
4096, 2 cores: 4.1 -> 3.2 ms), and a caller's tighter tolerance tightens this
rule with it.
A free parameter exactly on a bound with an exactly zero gradient at
convergence (all factors of a product at 0: a possible saddle that Newton
cannot leave) is moved ``KICK`` of its range inside, once per fit, and the
iterations go on.

Nothing here is differentiated: see ``fits.py``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .element_loop import element_while
from .linalg import block_arrow_solve
from .model import gather
from .structure import HessianStructure

__all__ = ["SolverOptions", "Solution", "minimize", "STATUS", "assemble_dense", "newton_direction"]

# status codes (per element under vmap)
STATUS = {0: "converged", 1: "max_iter reached", 2: "non-finite objective", 3: "line search failed"}


class SolverOptions(NamedTuple):
    """Static options of :func:`minimize` (hashable; part of the compile key).

    ``tol_abs``/``tol_rel``: stop when the Newton decrement/2 (estimated
    objective distance to the minimum, in NLL units) is below
    ``tol_abs + tol_rel*|f|``, or after a full Newton step taken with the
    decrement/2 below ``tol_step`` (module doc). ``max_iter``: Newton iterations;
    ``max_backtrack``: halvings per line search; ``armijo``: sufficient
    decrease constant. ``tol_quad``: a full Newton step from a decrement/2
    below it whose actual decrease matched the predicted one closely enough
    (module doc) also ends the fit; 0 turns that rule off.
    """

    max_iter: int = 100
    tol_abs: float = 1e-10
    tol_rel: float = 1e-14
    tol_step: float = 1e-8
    max_backtrack: int = 40
    armijo: float = 1e-4
    tol_quad: float = 1e-4


class Solution(NamedTuple):
    """Result of :func:`minimize` (all per element under vmap).

    theta (P,), f () objective value at theta, grad (P,) gradient at the
    last derivative evaluation (the iterate before a final full Newton step),
    converged () bool, n_iter () int32, status () int32 (see ``STATUS``)."""

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
    kicked: jax.Array
    pred: jax.Array  # the last Newton step's predicted decrease dec/2 (inf before one)


#: margin on the leading-order estimate of the error a quadratic-agreement
#: stop leaves (measured, seed q0 x 4096: within 2.2e-10 of fits at
#: tol_abs=1e-14 with 1, as the decrement stop alone (2.0e-10); with 0.01,
#: 1.5e-9; 10 keeps the rule from firing and its gain: 3.2 vs 4.1 ms)
QUAD_SAFETY = 1.0

#: fraction of its range by which a parameter stuck on a bound is moved inside
KICK = 1e-3


def _stuck_on_bounds(theta, g, free, lo, hi):
    """(P,) bool: free parameters exactly on a bound with an exactly zero
    gradient. That is what a product of factors that all vanish looks like
    (two normfactors of one sample both at 0): every first derivative along
    them is 0, the curvature is only mixed, so the point can be a saddle that
    a Newton step (d = 0 where g = 0) never leaves. (``free`` already
    excludes fixed parameters and empty boxes.)"""
    return free & (g == 0.0) & ((theta == lo) | (theta == hi))


def _kicked(theta, stuck, lo, hi):
    """``theta`` with the ``stuck`` parameters moved ``KICK`` of their range
    (1 where it is unbounded) away from their bound."""
    width = jnp.where(jnp.isfinite(hi - lo), hi - lo, 1.0)
    return jnp.where(stuck, jnp.where(theta == lo, theta + KICK * width, theta - KICK * width), theta)


def _entries(Y, flat: np.ndarray):
    """Entries of ``Y`` (P, n) at static indices into ``Y.reshape(-1)``
    (``structure.py``), 0 where the index is -1."""
    valid = flat >= 0
    vals = gather(Y.reshape(-1), np.where(valid, flat, 0).astype(np.int32))
    return vals if valid.all() else jnp.where(valid, vals, 0.0)


def assemble_dense(Y, st: HessianStructure):
    """Dense Hessian (P, P) from compressed products ``Y = H V`` (P, n_seeds)."""
    H = _entries(Y, st.flat_dense)
    return 0.5 * (H + H.T)


def newton_direction(g, Y, free, st: HessianStructure):
    """Newton step ``d = -H_FF^{-1} g_F`` on the free parameters (0 elsewhere)
    from the compressed Hessian ``Y``, the decrement ``-g.d``, and whether
    the Hessian on the free parameters had to be modified (indefinite: ``d``
    is then a shifted step and the decrement understates the distance to a
    minimum).
    All index work is static 1-d gathers (no scatters: fast under vmap)."""
    n_glob = st.n_global
    A = _entries(Y, st.flat_a)  # (C, m, m)
    free_p = jnp.concatenate([free, jnp.zeros((1,), bool)])
    fl = free_p[st.local] if st.local.size > 64 else jnp.stack(
        [free_p[int(i)] for i in st.local.reshape(-1)]).reshape(st.local.shape)
    m = st.local.shape[1]
    A = jnp.where(fl[:, :, None] & fl[:, None, :], 0.5 * (A + jnp.swapaxes(A, 1, 2)),
                  jnp.eye(m, dtype=Y.dtype))
    r = -jnp.where(free, g, 0.0)
    rl = gather(jnp.concatenate([r, jnp.zeros((1,), r.dtype)]), st.local)
    if n_glob:
        fg = free[st.glob]
        Bc = jnp.where(fl[:, :, None] & fg[None, None, :], _entries(Y, st.flat_b), 0.0)
        D = jnp.where(fg[:, None] & fg[None, :], _entries(Y, st.flat_d), jnp.eye(n_glob, dtype=Y.dtype))
        rg = gather(r, st.glob)
    else:
        Bc = jnp.zeros((A.shape[0], m, 0), Y.dtype)
        D = jnp.zeros((0, 0), Y.dtype)
        rg = jnp.zeros((0,), Y.dtype)
    xl, xg, modified = block_arrow_solve(A, Bc, D, rl, rg)
    x = jnp.concatenate([xl.reshape(-1), xg, jnp.zeros((1,), Y.dtype)])
    d = jnp.where(free, gather(x, st.inverse), 0.0)
    return d, -jnp.dot(g, d), modified


def _active_bounds(theta, g, scale, lo, hi):
    """Parameters at, or within epsilon of, a bound with the gradient pushing
    further out (Bertsekas' epsilon-active set: without the epsilon a parameter
    1e-11 above its bound counts as free and the projected step stalls).
    Per parameter, epsilon = min(1e-7 * width, |projected step of g / scale|)
    with ``scale`` the Hessian diagonal: in Newton units, so a parameter whose
    optimum is 1e-12 from its bound (a POI next to a 1e12 signal) stays free."""
    step = jnp.abs(theta - jnp.clip(theta - g / scale, lo, hi))
    eps = jnp.minimum(1e-7 * jnp.maximum(hi - lo, 1.0), step)
    at_lo = (theta - lo <= eps) & (g > 0)
    at_hi = (hi - theta <= eps) & (g < 0)
    return at_lo, at_hi


def _line_search(value, theta, f, g, d, lo, hi, snap_lo, snap_hi, snap_kink, options, skip):
    """Backtracking Armijo search along the projected path; parameters in the
    epsilon-active set are moved exactly onto their bound, those held at a
    kink exactly onto 0. Returns (candidate, accepted, number of trials,
    objective at the candidate)."""

    def cond(c):
        _, _, _, ok, k = c
        return (~ok) & (k < options.max_backtrack) & (~skip)

    def body(c):
        alpha, _, _, _, k = c
        cand = jnp.clip(theta + alpha * d, lo, hi)
        cand = jnp.where(snap_lo, lo, jnp.where(snap_hi, hi, jnp.where(snap_kink, 0.0, cand)))
        fc = value(cand)
        ok = jnp.isfinite(fc) & (fc <= f + options.armijo * jnp.dot(g, cand - theta))
        return 0.5 * alpha, cand, fc, ok, k + 1

    _, cand, fc, ok, n = lax.while_loop(cond, body, (jnp.ones((), theta.dtype), theta, f, jnp.zeros((), bool), 0))
    return cand, ok, n, fc


#: distance from 0 within which a kinked parameter may be held at its kink
KINK_EPS = 1e-6


def _at_kink(value, theta, fixed, kinks):
    """(P,) bool: kinked parameters at a kink minimum along their own axis
    (upper-side slope > 0, lower-side slope < 0); all False without kinks."""
    if kinks is None:
        return jnp.zeros(theta.shape, bool)
    near = jnp.asarray(kinks) & ~fixed & (jnp.abs(theta) <= KINK_EPS)
    grad = jax.grad(value)
    g_up = grad(jnp.where(near, 0.0, theta))  # interpolation takes alpha >= 0 as the upper side
    g_dn = grad(jnp.where(near, -1e-30, theta))
    return near & (g_up > 0) & (g_dn < 0)


class _Context(NamedTuple):
    """Per-element read-only data of the loop: the problem (``fns_of`` turns it
    into the objective's functions) and the box (fixed parameters pinned)."""

    problem: Any
    lo: jax.Array
    hi: jax.Array
    fixed: jax.Array
    fallback: Optional[jax.Array] = None


def _start(theta) -> _State:
    """The loop's state before the first iteration at ``theta`` (P,)."""
    inf = jnp.asarray(jnp.inf, theta.dtype)
    return _State(theta, inf, jnp.zeros_like(theta), jnp.int32(0), jnp.zeros((), bool), jnp.int32(1),
                  jnp.zeros((), bool), inf)


def _iteration(fns_of, structure, options, kinks, ctx: _Context, s: _State) -> _State:
    """One projected Newton iteration (line search included) of one element."""
    derivatives, value = fns_of(ctx.problem)
    lo, hi, fixed = ctx.lo, ctx.hi, ctx.fixed
    # derivatives at the current iterate (the only place they are traced)
    f, g, Y = derivatives(s.theta)
    finite = jnp.isfinite(f) & jnp.all(jnp.isfinite(g)) & jnp.all(jnp.isfinite(Y))
    hdiag = jnp.abs(_entries(Y, structure.flat_diag))
    scale = jnp.where(hdiag > 0, hdiag, jnp.maximum(jnp.max(hdiag), 1.0))
    at_lo, at_hi = _active_bounds(s.theta, g, scale, lo, hi)
    at_kink = _at_kink(value, s.theta, fixed, kinks)
    free = ~(fixed | at_lo | at_hi | at_kink | (lo >= hi))
    d, dec, indefinite = newton_direction(g, Y, free, structure)
    # where the Hessian was indefinite the shifted step's decrement understates
    # how far the minimum is (a ridge: three normfactors of one sample near 0
    # stopped 2e-6 of 2NLL short): the gradient in the units of the Hessian's
    # diagonal must be small too
    ddec = jnp.sum(jnp.where(free, g * g / scale, 0.0))
    tol = options.tol_abs + options.tol_rel * jnp.abs(f)
    small = 0.5 * jnp.where(indefinite, jnp.maximum(dec, ddec), dec) <= tol
    # converged onto a possible saddle: once per fit, step off the bound and go on
    stuck = _stuck_on_bounds(s.theta, g, free, lo, hi)
    kick = small & finite & jnp.any(stuck) & ~s.kicked & (s.it < options.max_iter)
    # a start where the objective is not finite: go on from the fallback, once
    restart = jnp.zeros((), bool) if ctx.fallback is None else (
        ~finite & (s.it == 0) & jnp.any(s.theta != ctx.fallback))
    stop = ((small & ~kick) | ~finite | (s.it >= options.max_iter)) & ~restart
    snap_lo, snap_hi = at_lo & ~fixed, at_hi & ~fixed
    cand, ok, n_ls, fc = _line_search(value, s.theta, f, g, d, lo, hi, snap_lo, snap_hi, at_kink, options,
                                      stop | kick | restart)
    # fallback when the Newton direction fails: a diagonally scaled
    # projected gradient step (always a descent direction)
    d_grad = jnp.where(free, -g / scale, 0.0)
    cand2, ok2, _, fc2 = _line_search(value, s.theta, f, g, d_grad, lo, hi, snap_lo, snap_hi, at_kink,
                                      options, stop | kick | restart | ok)
    cand = jnp.where(ok, cand, cand2)
    fc = jnp.where(ok, fc, fc2)
    ok = ok | ok2
    step = ok & ~stop
    # a full Newton step from a nearly converged point finishes the job
    pred = 0.5 * dec  # the quadratic model's decrease for a full Newton step
    mismatch = (f - fc) - pred
    quadratic = ((pred <= options.tol_quad) & (QUAD_SAFETY * 4.5 * mismatch * mismatch <= tol * dec)
                 & (pred * pred * pred <= tol * s.pred * s.pred))
    final = step & ~indefinite & (n_ls == 1) & ((pred <= options.tol_step) | quadratic)
    status = jnp.where(
        (small & finite & ~kick) | final, 0,
        jnp.where(~finite, 2, jnp.where(s.it >= options.max_iter, 1, jnp.where(ok, 1, 3))),
    ).astype(jnp.int32)
    theta = jnp.where(kick, _kicked(s.theta, stuck, lo, hi), jnp.where(step, cand, s.theta))
    if ctx.fallback is not None:
        theta = jnp.where(restart, ctx.fallback, theta)
    return _State(
        theta=theta,
        # the objective at the new iterate (the line search computed it), so
        # that a solution's f is its theta's without another evaluation
        f=jnp.where(step, fc, jnp.where(jnp.isfinite(f), f, s.f)),
        g=jnp.where(finite, g, s.g),
        it=s.it + (step | kick).astype(jnp.int32),
        done=(stop | ~ok | final) & ~kick & ~restart,
        status=status,
        kicked=s.kicked | kick,
        pred=jnp.where(kick, jnp.inf, jnp.where(step, pred, s.pred)),
    )


def minimize(
    fns_of: Callable,
    problem: Any,
    theta0: jax.Array,
    lo: jax.Array,
    hi: jax.Array,
    fixed: jax.Array,
    structure: HessianStructure,
    options: SolverOptions = SolverOptions(),
    kinks: Optional[np.ndarray] = None,
    start: Optional[jax.Array] = None,
) -> Solution:
    """Minimise ``f`` over the box ``[lo, hi]`` with ``fixed`` parameters held.

    Args:
        fns_of: ``problem -> (derivatives, value)``: ``derivatives`` maps
            ``theta -> (f, grad (P,), Y (P, n_seeds))`` with
            ``Y = H @ structure.seeds``; ``value`` maps ``theta -> f`` (for
            the line search). It must not close over traced values.
        problem: pytree of the objective's data (batched under vmap).
        theta0: (P,) start; clipped into the box (fixed entries stay as given).
        lo, hi: (P,) bounds; fixed: (P,) bool.
        structure: the Hessian's sparsity (static).
        kinks: optional static (P,) bool mask of parameters whose objective
            has a slope jump at 0 (piecewise interpolation codes). One of them
            within ``KINK_EPS`` of 0 whose one-sided slopes both point at the
            kink (upper side ascending, lower side descending towards it) is
            held at exactly 0, like a parameter at an active bound: the
            Newton step on it would only bounce across the kink.
        start: optional (P,) first iterate (clipped into the box; fixed
            entries from ``theta0``), with ``theta0`` the fallback: where the
            objective or its derivatives are not finite at ``start`` the fit
            goes on from ``theta0`` (the first iteration's derivatives tell,
            at no extra cost). ``theta0`` alone sets the fixed values and the
            box, so a batch of starts leaves those unbatched.

    The loop is an :func:`~nextstat_jax.element_loop.element_while`: under
    ``vmap`` each element costs about its own iterations, not the batch's
    slowest.
    """
    # fixed parameters stay at theta0 even outside their bounds
    lo = jnp.where(fixed, theta0, lo)
    hi = jnp.where(fixed, theta0, hi)
    theta = jnp.clip(theta0, lo, hi)
    fallback = None
    if start is not None:
        fallback, theta = theta, jnp.clip(start, lo, hi)  # fixed entries: lo == hi == theta0
    body = functools.partial(_iteration, fns_of, structure, options, kinks)
    out = element_while(lambda s: ~s.done, body, _Context(problem, lo, hi, fixed, fallback), _start(theta))
    converged = out.status == 0
    return Solution(out.theta, out.f, out.g, converged, out.it, out.status)
