"""Bracketed root finding of several decreasing functions at once, in one
``lax.while_loop`` (so the function is traced once, not per phase: the
first iteration evaluates the bracket's ends).

``bracket_and_solve(fn, a, b, n)`` finds, for each component ``i`` of the
vector function ``fn(x) -> (n,)``, the root of ``x -> fn(x)[i]``: first the
bracket is widened (``b`` doubled while ``f(b) > 0``, ``a`` halved while
``f(a) < 0``), then Chandrupatla's method (inverse quadratic interpolation
safeguarded by bisection, Chandrupatla 1997) shrinks it.  Each iteration
evaluates ``fn`` once per component (vmapped; at least two points, so the
first iteration can evaluate both ends). Pure and vmap-able.  One call site
of ``fn`` matters when ``fn`` holds profile fits: each call site is another
solver in the compiled program.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["RootResult", "bracket_and_solve"]


class RootResult(NamedTuple):
    """root (n,), converged (n,) bool, n_iter () iterations after the bracket's evaluation."""

    root: jax.Array
    converged: jax.Array
    n_iter: jax.Array


def _safe(x):
    return jnp.where(x != 0, x, 1.0)


def bracket_and_solve(fn: Callable, a, b, n: int, *, xtol: float = 1e-10, rtol: float = 1e-9,
                      max_expand: int = 12, max_iter: int = 80) -> RootResult:
    """Roots of the ``n`` components of a decreasing vector function ``fn``."""
    dtype = jnp.result_type(a, b, float)
    m = max(n, 2)  # points evaluated per iteration
    a = jnp.full((n,), a, dtype)
    b = jnp.full((n,), b, dtype)
    ends = jnp.concatenate([a[:1], jnp.broadcast_to(b[0], (m - 1,))])  # iteration 0: f(a), f(b)
    zeros, ones = jnp.zeros((n,), dtype), jnp.ones((n,), dtype)
    state = dict(
        a=a, b=b, c=a, fa=zeros, fb=zeros, fc=zeros, t=0.5 * ones,
        expanding=jnp.zeros((n,), bool), n_expand=jnp.zeros((n,), jnp.int32),
        done=jnp.zeros((n,), bool), ok=jnp.zeros((n,), bool), k=jnp.int32(0),
    )

    def cond(s):
        return (~jnp.all(s["done"])) & (s["k"] <= max_iter)  # k = 0 is the bracket's evaluation

    def body(s):
        a, b, c, fa, fb, fc, t = (s[k] for k in ("a", "b", "c", "fa", "fb", "fc", "t"))
        exp = s["expanding"]
        grow_b = fb > 0
        x_exp = jnp.where(grow_b, 2.0 * b, 0.5 * a)
        x = jnp.where(exp, x_exp, a + t * (b - a))
        first = s["k"] == 0
        pts = jnp.where(first, ends, jnp.concatenate([x, jnp.broadcast_to(x[0], (m - n,))]))
        vals = jax.vmap(fn)(pts)  # (m, n)
        fx = jnp.diagonal(vals[:n])

        # --- expansion phase: move the violating end --------------------------
        ea = jnp.where(grow_b, a, x)
        efa = jnp.where(grow_b, fa, fx)
        eb = jnp.where(grow_b, x, b)
        efb = jnp.where(grow_b, fx, fb)
        n_expand = s["n_expand"] + exp.astype(jnp.int32)
        still = ((efb > 0) | (efa < 0)) & (n_expand < max_expand)
        gave_up = exp & ~still & ((efb > 0) | (efa < 0))

        # --- Chandrupatla step --------------------------------------------------
        same = jnp.sign(fx) == jnp.sign(fa)
        cc, fcc = jnp.where(same, a, b), jnp.where(same, fa, fb)
        nb, nfb = jnp.where(same, b, a), jnp.where(same, fb, fa)
        na, nfa = x, fx
        small = jnp.abs(nfa) < jnp.abs(nfb)
        xm, fm = jnp.where(small, na, nb), jnp.where(small, nfa, nfb)
        tol = 2.0 * rtol * jnp.abs(xm) + xtol
        width = jnp.abs(nb - cc)
        tlim = tol / _safe(width)
        solved = (tlim > 0.5) | (fm == 0) | (width <= 0)
        xi = (na - nb) / _safe(cc - nb)
        phi = (nfa - nfb) / _safe(fcc - nfb)
        iqi = (phi**2 < xi) & ((1.0 - phi) ** 2 < 1.0 - xi)
        t_iqi = (nfa / _safe(nfb - nfa) * fcc / _safe(nfb - fcc)
                 + (cc - na) / _safe(nb - na) * nfa / _safe(fcc - nfa) * nfb / _safe(fcc - nfb))
        nt = jnp.clip(jnp.where(iqi, t_iqi, 0.5), tlim, 1.0 - tlim)

        def pick(e_val, c_val, old):
            new = jnp.where(exp, e_val, c_val)
            return jnp.where(s["done"], old, new)

        step = dict(
            a=pick(ea, na, a), b=pick(eb, nb, b), c=pick(ea, cc, c),
            fa=pick(efa, nfa, fa), fb=pick(efb, nfb, fb), fc=pick(efa, fcc, fc),
            t=pick(0.5 * ones, nt, t),
            expanding=jnp.where(s["done"], exp, exp & still),
            n_expand=n_expand,
            done=s["done"] | jnp.where(exp, gave_up, solved),
            ok=jnp.where(s["done"], s["ok"], jnp.where(exp, False, solved)),
        )
        fa0, fb0 = vals[0], vals[1]
        start = dict(s, fa=fa0, fb=fb0, fc=fa0, expanding=(fb0 > 0) | (fa0 < 0))
        out = {key: jnp.where(first, start[key], step[key]) for key in step}
        return dict(out, k=s["k"] + 1)

    out = lax.while_loop(cond, body, state)
    root = jnp.where(jnp.abs(out["fa"]) < jnp.abs(out["fb"]), out["a"], out["b"])
    return RootResult(root, out["ok"], out["k"] - 1)
