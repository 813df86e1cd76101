"""Bracketed root finding of several decreasing functions at once, in one
``lax.while_loop`` (so the function is traced twice, not per phase).

``bracket_and_solve(fn, a, b, n)`` finds, for each component ``i`` of the
vector function ``fn(x) -> (n,)``, the root of ``x -> fn(x)[i]``: first the
bracket is widened (``b`` doubled while ``f(b) > 0``, ``a`` halved while
``f(a) < 0``), then Chandrupatla's method (inverse quadratic interpolation
safeguarded by bisection, Chandrupatla 1997) shrinks it.  Each iteration
evaluates ``fn`` once per component (vmapped). Pure and vmap-able.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["RootResult", "bracket_and_solve"]


class RootResult(NamedTuple):
    """root (n,), converged (n,) bool, n_iter () total iterations."""

    root: jax.Array
    converged: jax.Array
    n_iter: jax.Array


def _safe(x):
    return jnp.where(x != 0, x, 1.0)


def bracket_and_solve(fn: Callable, a, b, n: int, *, xtol: float = 1e-10, rtol: float = 1e-9,
                      max_expand: int = 12, max_iter: int = 80) -> RootResult:
    """Roots of the ``n`` components of a decreasing vector function ``fn``."""
    dtype = jnp.result_type(a, b, float)
    a = jnp.full((n,), a, dtype)
    b = jnp.full((n,), b, dtype)
    both = jax.vmap(fn)(jnp.stack([a[0], b[0]]))  # (2, n)
    fa, fb = both[0], both[1]
    ones = jnp.ones((n,), dtype)
    state = dict(
        a=a, b=b, c=a, fa=fa, fb=fb, fc=fa, t=0.5 * ones,
        expanding=(fb > 0) | (fa < 0), n_expand=jnp.zeros((n,), jnp.int32),
        done=jnp.zeros((n,), bool), ok=jnp.zeros((n,), bool), k=jnp.int32(0),
    )

    def cond(s):
        return (~jnp.all(s["done"])) & (s["k"] < max_iter)

    def body(s):
        a, b, c, fa, fb, fc, t = (s[k] for k in ("a", "b", "c", "fa", "fb", "fc", "t"))
        exp = s["expanding"]
        grow_b = fb > 0
        x_exp = jnp.where(grow_b, 2.0 * b, 0.5 * a)
        x = jnp.where(exp, x_exp, a + t * (b - a))
        fx = jnp.diagonal(jax.vmap(fn)(x))

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

        return dict(
            a=pick(ea, na, a), b=pick(eb, nb, b), c=pick(ea, cc, c),
            fa=pick(efa, nfa, fa), fb=pick(efb, nfb, fb), fc=pick(efa, fcc, fc),
            t=pick(0.5 * ones, nt, t),
            expanding=jnp.where(s["done"], exp, exp & still),
            n_expand=n_expand,
            done=s["done"] | jnp.where(exp, gave_up, solved),
            ok=jnp.where(s["done"], s["ok"], jnp.where(exp, False, solved)),
            k=s["k"] + 1,
        )

    out = lax.while_loop(cond, body, state)
    root = jnp.where(jnp.abs(out["fa"]) < jnp.abs(out["fb"]), out["a"], out["b"])
    return RootResult(root, out["ok"], out["k"])
