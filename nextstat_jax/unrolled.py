"""``vmap`` for functions of small arrays, as one fused pass over the batch.

``jax.vmap(f)`` turns every operation of ``f`` on a small array (a model's 8
bins, a 2x2 Hessian) into one kernel over a (batch, 8) or (batch, 2, 2) array;
every reduction, broadcast and gather between them ends a fused loop, so a
Newton iteration of the seed model runs ~100 separate passes over the batch.
:func:`unrolled_vmap` instead traces ``f`` for one element and re-executes its
jaxpr with every array *entry* as its own (batch,) vector: a sum over 8 bins
becomes 7 vector additions, an index or reshape becomes a Python-level
rearrangement of entries (no work at all), a 2x2 solve becomes scalar
formulas. Everything left is elementwise on equally shaped vectors, which XLA
fuses into a few loops. Measured on the seed model (8,192 fits, 2 cores): a
fixed 5-iteration Newton fit written over (batch, 8) arrays 2.5 ms, the same
written over per-bin vectors 1.1 ms.

Semantics are ``jax.vmap``'s, up to the rounding of reductions (entries are
summed left to right). Loops inside ``f`` run as a loop over the whole batch
whose elements stop individually (as under ``vmap``); ``lax.cond`` evaluates
every branch and selects per element; ``scan`` and ``fori_loop`` with a static
trip count are unrolled. Only for small elements: the unrolled program grows
with the number of entries (``MAX_ENTRIES``). A primitive that has no unrolled
form here (linear algebra decompositions, sorting, a gather whose indices
depend on the element) raises :class:`Unsupported` at trace time, and callers
fall back to ``jax.vmap``.

Constant entries (from closed-over NumPy data) stay NumPy values and are
folded at trace time, so structural zeros of a model cost nothing; a trace-time
constant 0 also decides a product (``x*0 = 0`` even for infinite ``x``: JAX's
symbolic-zero rule, which the zero entries of derivative seeds rely on). A
value used more than once behind a long chain of cheap operations is
divided by a runtime 1 so that XLA computes it once instead of inside every
consumer (``MATERIALIZE_COST``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jex_core

from . import fastlog

__all__ = ["unrolled_vmap", "Unsupported", "MAX_ENTRIES"]

#: the largest number of entries (summed over the outputs of every equation,
#: nested jaxprs counted once) that a function may unroll into. XLA's compile
#: time grows with it: the seed model's solver iteration has ~2,800 (4096
#: fits compile in 7.3 s unrolled, 4.4 s vmapped), a 6-parameter model with
#: kinked interpolation ~15,000 (27.6 s vs 16.6 s, and the fits run in 103 ms
#: instead of 485 ms)
MAX_ENTRIES = 16_000


#: cheap elementwise operations (add, multiply, select, ...) in the fused
#: chain behind a value used twice or more, from which it is computed once
#: and stored instead of being recomputed inside each consumer (XLA's CPU
#: fusion duplicates cheap producers freely; the seed model's normsys
#: polynomial and rates were recomputed in ~8 kernels per iteration).
#: Measured on seed q0 x 4096: 7.2 ms without, 6.5 ms at 32 (16: 6.6, 64: 6.5).
MATERIALIZE_COST = 32


class Unsupported(Exception):
    """The function cannot be unrolled (unknown primitive, dynamic indexing,
    or too large); use ``jax.vmap``."""


_ELEMENTWISE = {
    "add", "sub", "mul", "div", "rem", "pow", "integer_pow", "neg", "sign", "floor", "ceil", "round",
    "is_finite", "exp", "exp2", "log", "log1p", "expm1", "tanh", "logistic", "sin", "cos", "tan", "asin",
    "acos", "atan", "atan2", "sinh", "cosh", "asinh", "acosh", "atanh", "lgamma", "digamma", "erf", "erfc",
    "erf_inv", "sqrt", "rsqrt", "cbrt", "abs", "max", "min", "and", "or", "not", "xor", "eq", "ne", "lt",
    "le", "gt", "ge", "select_n", "convert_element_type", "square", "nextafter", "clamp", "copy", "copy_p",
    "reduce_precision", "igamma", "igammac", "polygamma", "zeta", "shift_left", "shift_right_logical",
    "shift_right_arithmetic", "stop_gradient", "add_any",
}
#: operations XLA does not duplicate into several consumers
_EXPENSIVE = {"div", "exp", "exp2", "log", "log1p", "expm1", "pow", "sqrt", "rsqrt", "cbrt", "tanh",
              "logistic", "atan2", "lgamma", "digamma", "erf", "erfc", "erf_inv", "rem", "sin", "cos", "tan",
              "igamma", "igammac", "polygamma", "zeta"}
_INLINE = {"pjit": "jaxpr", "jit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
           "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr",
           "custom_vjp_call_jaxpr": "fun_jaxpr", "custom_vmap_call": "call_jaxpr",
           "remat": "jaxpr", "checkpoint": "jaxpr", "custom_lin": None}
_REDUCE = {"reduce_sum": lax.add, "reduce_max": lax.max, "reduce_min": lax.min,
           "reduce_prod": lax.mul, "reduce_and": lax.bitwise_and, "reduce_or": lax.bitwise_or}
_CUMULATIVE = {"cumsum": lax.add, "cumprod": lax.mul, "cummax": lax.max, "cummin": lax.min}
#: primitive names of the lax functions reductions apply (for identity folding)
_LAX_NAMES = {lax.add: "add", lax.mul: "mul", lax.max: "max", lax.min: "min"}


def _is_unrolled(v) -> bool:
    return isinstance(v, np.ndarray) and v.dtype == object


def _objects(v) -> np.ndarray:
    """An object array of entries (a concrete array becomes one of NumPy scalars)."""
    if _is_unrolled(v):
        return v
    v = np.asarray(v)
    out = np.empty(v.shape, object)
    for idx in np.ndindex(v.shape):
        out[idx] = v[idx]
    return out


class _Run:
    """One unrolled execution: batch length ``n`` and the entry budget."""

    def __init__(self, n: int, stop_at: int = 0):
        self.n = n
        self.stop_at = stop_at  # the first (outermost) while loop's, then 0
        self.entries = 0
        self.one = None  # a (n,) vector of ones XLA cannot fold (materialize)
        # id(entry) -> (entry, the cheap operations XLA would fuse into each
        # use: a frozenset of their ids, or None once MATERIALIZE_COST or more)
        self.cost = {}

    # ---- entries
    def vec(self, e, dtype):
        """Entry as a jax value of ``dtype``: () or (n,)."""
        if _traced(e):
            return e if e.dtype == dtype else lax.convert_element_type(e, dtype)
        return jnp.asarray(np.asarray(e, dtype))

    def full(self, e, dtype):
        e = self.vec(e, dtype)
        return e if e.shape == (self.n,) else jnp.broadcast_to(e, (self.n,))

    def count(self, k: int):
        self.entries += k
        if self.entries > MAX_ENTRIES:
            raise Unsupported(f"more than {MAX_ENTRIES} unrolled entries")

    # ---- jaxpr evaluation
    def jaxpr(self, closed, args: Sequence) -> list:
        jaxpr = closed.jaxpr if hasattr(closed, "jaxpr") else closed
        consts = closed.consts if hasattr(closed, "consts") else ()
        env = {}

        def read(v):
            if isinstance(v, jex_core.Literal):
                return np.asarray(v.val, v.aval.dtype)
            return env[v]

        for var, val in zip(jaxpr.constvars, consts):
            env[var] = val if _is_unrolled(val) else self._const(val)
        for var, val in zip(jaxpr.invars, args):
            env[var] = val
        uses = {}
        for eqn in jaxpr.eqns:
            for v in eqn.invars:
                if not isinstance(v, jex_core.Literal):
                    uses[v] = uses.get(v, 0) + 1
        for eqn in jaxpr.eqns:
            ins = [read(v) for v in eqn.invars]
            outs = self.eqn(eqn, ins)
            if not eqn.primitive.multiple_results:
                outs = [outs]
            for var, val in zip(eqn.outvars, outs):
                if uses.get(var, 0) >= 2 and _is_unrolled(val):
                    val = self.materialize(val)
                env[var] = val
        return [read(v) for v in jaxpr.outvars]

    def materialize(self, arr):
        """Entries that XLA would recompute in each of their uses (chains of
        at least ``MATERIALIZE_COST`` cheap operations) divided by a runtime
        1: XLA does not duplicate a division into its consumers, so the chain
        runs once (x / 1 == x exactly, inf and NaN included)."""
        if self.one is None:
            return arr
        out = arr.reshape(-1).copy()
        for i, e in enumerate(out):
            if _traced(e) and e.shape == (self.n,) and jnp.issubdtype(e.dtype, jnp.floating) \
                    and self.chain(e) is None:
                out[i] = self.note(lax.div(e, self.one.astype(e.dtype)), frozenset())
        return out.reshape(arr.shape)

    def note(self, e, chain):
        self.cost[id(e)] = (e, chain)
        return e

    def chain(self, e):
        """The cheap operations behind entry ``e`` (a set: shared producers
        count once, as XLA computes them once per fusion), None if at least
        ``MATERIALIZE_COST``."""
        return self.cost.get(id(e), (None, frozenset()))[1] if _traced(e) else frozenset()

    def grown(self, e, es):
        """The chain of ``e``, a cheap operation on entries ``es``."""
        chain = {id(e)}
        for x in es:
            c = self.chain(x)
            if c is None:
                return None
            chain |= c
        return frozenset(chain) if len(chain) < MATERIALIZE_COST else None

    def _const(self, val):
        if isinstance(val, jax.core.Tracer):
            return _objects_of_traced(val)
        return np.asarray(val)

    def eqn(self, eqn, ins):
        prim, params = eqn.primitive, dict(eqn.params)
        name = prim.name
        if eqn.effects:  # callbacks, prints: would run at trace time, once
            raise Unsupported(f"{name} has side effects")
        if not any(_is_unrolled(v) for v in ins) and name not in ("while", "cond", "scan"):
            with jax.ensure_compile_time_eval():
                out = prim.bind(*[jnp.asarray(v) for v in ins], **params)
            if prim.multiple_results:
                return [np.asarray(o) for o in out]
            return np.asarray(out)
        for v in eqn.outvars:
            self.count(int(np.prod(v.aval.shape)))
        if name in _INLINE:
            key = _INLINE[name]
            if key is None or key not in params:
                raise Unsupported(name)
            return self.jaxpr(params[key], ins)
        if name in _ELEMENTWISE:
            return self.elementwise(prim, params, ins, eqn.outvars[0].aval)
        handler = getattr(self, "p_" + name.replace("-", "_"), None)
        if handler is None:
            raise Unsupported(f"primitive {name!r}")
        return handler(eqn, params, ins)

    # ---- elementwise
    def elementwise(self, prim, params, ins, aval):
        shape = aval.shape
        objs = [np.broadcast_to(_objects(v), shape) for v in ins]
        out = np.empty(shape, object)
        in_dtypes = [np.asarray(v).dtype if not _is_unrolled(v) else None for v in ins]
        bind = lambda *vs: prim.bind(*vs, **params)
        if prim.name == "log" and aval.dtype == np.float64 and jax.default_backend() == "cpu":
            bind = fastlog.log  # XLA's CPU log is a scalar call per entry; this one vectorises
        for idx in np.ndindex(shape):
            es = [o[idx] for o in objs]
            dts = [e.dtype if _traced(e) else (dt if dt is not None else np.asarray(e).dtype)
                   for e, dt in zip(es, in_dtypes)]
            out[idx] = self.entry(prim.name, bind, es, dts, aval.dtype)
        return out

    def entry(self, name: str, fn, es: list, dts: list, dtype):
        """``fn`` (primitive ``name``) on one position's entries ``es`` taken
        as ``dts``, giving ``dtype``: evaluated at trace time when all are
        constants, decided by :meth:`identity` where a constant settles it,
        else bound on (n,)/() vectors (its fused-chain cost noted)."""
        if not any(_traced(e) for e in es):
            with jax.ensure_compile_time_eval():
                return np.asarray(fn(*[jnp.asarray(e, dt) for e, dt in zip(es, dts)]))
        folded = self.identity(name, es, dtype)
        if folded is not None:
            return folded
        vs = [self.vec(e, dt) for e, dt in zip(es, dts)]
        if any(v.shape == (self.n,) for v in vs):
            vs = [v if v.shape == (self.n,) else jnp.broadcast_to(v, (self.n,)) for v in vs]
        out = fn(*vs)
        return self.note(out, frozenset() if name in _EXPENSIVE else self.grown(out, es))

    # ---- structure (rearrangements of entries: no work)
    def p_broadcast_in_dim(self, eqn, params, ins):
        x = _objects(ins[0])
        shape, dims = params["shape"], params["broadcast_dimensions"]
        expanded = [1] * len(shape)
        for d, s in zip(dims, x.shape):
            expanded[d] = s
        return np.broadcast_to(x.reshape(expanded), shape).copy()

    def p_reshape(self, eqn, params, ins):
        return _objects(ins[0]).reshape(params["new_sizes"])

    def p_squeeze(self, eqn, params, ins):
        return np.squeeze(_objects(ins[0]), axis=tuple(params["dimensions"]))

    def p_expand_dims(self, eqn, params, ins):
        return np.expand_dims(_objects(ins[0]), tuple(params["dimensions"]))

    def p_transpose(self, eqn, params, ins):
        return np.transpose(_objects(ins[0]), params["permutation"]).copy()

    def p_slice(self, eqn, params, ins):
        strides = params["strides"] or (1,) * len(params["start_indices"])
        sl = tuple(slice(a, b, s) for a, b, s in zip(params["start_indices"], params["limit_indices"], strides))
        return _objects(ins[0])[sl].copy()

    def p_rev(self, eqn, params, ins):
        return np.flip(_objects(ins[0]), tuple(params["dimensions"])).copy()

    def p_concatenate(self, eqn, params, ins):
        return np.concatenate([_objects(v) for v in ins], axis=params["dimension"])

    def p_stack(self, eqn, params, ins):
        return np.stack([_objects(v) for v in ins], axis=params["axis"])

    def p_split(self, eqn, params, ins):
        x = _objects(ins[0])
        cuts = np.cumsum(params["sizes"])[:-1]
        return [part.copy() for part in np.split(x, cuts, axis=params["axis"])]

    def p_gather(self, eqn, params, ins):
        operand, indices = ins
        if _is_unrolled(indices):
            raise Unsupported("gather with element-dependent indices")
        x = _objects(operand)
        pos = np.arange(x.size, dtype=np.int64).reshape(x.shape)
        p = dict(params, fill_value=-1)
        with jax.ensure_compile_time_eval():
            idx = np.asarray(eqn.primitive.bind(jnp.asarray(pos), jnp.asarray(indices), **p))
        fill = params.get("fill_value")
        if fill is None:
            dt = eqn.outvars[0].aval.dtype
            fill = (np.nan if jnp.issubdtype(dt, jnp.inexact) else
                    True if dt == np.bool_ else np.iinfo(dt).min)
        flat = np.concatenate([x.reshape(-1), np.array([np.asarray(fill, eqn.outvars[0].aval.dtype)], object)])
        return flat[np.where(idx < 0, x.size, idx)]

    def p_dynamic_slice(self, eqn, params, ins):
        operand, starts = ins[0], ins[1:]
        if any(_is_unrolled(s) for s in starts):
            raise Unsupported("dynamic_slice at an element-dependent position")
        x = _objects(operand)
        sizes = params["slice_sizes"]
        st = [int(np.clip(int(s), 0, d - k)) for s, d, k in zip(starts, x.shape, sizes)]
        return x[tuple(slice(a, a + k) for a, k in zip(st, sizes))].copy()

    def p_dynamic_update_slice(self, eqn, params, ins):
        operand, update, starts = ins[0], ins[1], ins[2:]
        if any(_is_unrolled(s) for s in starts):
            raise Unsupported("dynamic_update_slice at an element-dependent position")
        x, u = _objects(operand).copy(), _objects(update)
        st = [int(np.clip(int(s), 0, d - k)) for s, d, k in zip(starts, x.shape, u.shape)]
        x[tuple(slice(a, a + k) for a, k in zip(st, u.shape))] = u
        return x

    def p_pad(self, eqn, params, ins):
        operand, value = ins
        x = _objects(operand)
        pos = np.arange(1, x.size + 1, dtype=np.int64).reshape(x.shape)
        with jax.ensure_compile_time_eval():
            idx = np.asarray(lax.pad(jnp.asarray(pos), np.int64(0), params["padding_config"]))
        flat = np.concatenate([np.array([_objects(value)[()]], object), x.reshape(-1)])
        return flat[idx]

    def p_iota(self, eqn, params, ins):
        with jax.ensure_compile_time_eval():
            return np.asarray(eqn.primitive.bind(**params))

    def _scatter(self, eqn, params, ins, combine):
        operand, indices, updates = ins
        if _is_unrolled(indices):
            raise Unsupported("scatter at element-dependent positions")
        x, u = _objects(operand), _objects(updates)
        # which update entries land on which operand entries: scatter a basis
        basis = np.eye(u.size, dtype=np.int32).reshape((u.size,) + u.shape)
        zeros = np.zeros(x.shape, np.int32)
        add = lambda e: lax.scatter_add(zeros, indices, e, params["dimension_numbers"],
                                        indices_are_sorted=params["indices_are_sorted"],
                                        unique_indices=params["unique_indices"], mode=params["mode"])
        with jax.ensure_compile_time_eval():
            hits = np.asarray(jax.vmap(add)(jnp.asarray(basis))).reshape(u.size, x.size)
        out = x.reshape(-1).copy()
        uf = u.reshape(-1)
        dt = eqn.outvars[0].aval.dtype
        for j in range(x.size):
            src = np.nonzero(hits[:, j])[0]
            if src.size == 0:
                continue
            if combine is None:  # overwrite: the last update wins
                out[j] = uf[src[-1]]
                continue
            acc = out[j]
            for k in src:
                for _ in range(int(hits[k, j])):
                    acc = self._binary(combine, acc, uf[k], dt)
            out[j] = acc
        return out.reshape(x.shape)

    def p_scatter_add(self, eqn, params, ins):
        return self._scatter(eqn, params, ins, lax.add)

    def p_scatter(self, eqn, params, ins):
        return self._scatter(eqn, params, ins, None)

    # ---- reductions and contractions
    def identity(self, name: str, es: list, dtype):
        """The result of primitive ``name`` on entries ``es`` (some traced)
        where a constant operand decides it, else None: ``x*0 = 0/x = 0``
        (a structural zero, as JAX's symbolic zeros: NaN or inf in ``x``
        does not make it NaN), ``x*1 = x/1 = x+0 = x-0 = x``, ``select_n``
        with a constant selector or equal cases."""
        if name == "select_n":
            which, cases = es[0], es[1:]
            if not _traced(which):
                return self._as(cases[int(which)], dtype)
            return self._as(cases[0], dtype) if all(c is cases[0] for c in cases) else None
        if len(es) != 2:
            return None
        a, b = es
        if name == "mul":
            if _const(a, 0) or _const(b, 0):
                return np.zeros((), dtype)
            if _const(a, 1):
                return self._as(b, dtype)
            if _const(b, 1):
                return self._as(a, dtype)
        elif name in ("add", "add_any"):
            if _const(a, 0):
                return self._as(b, dtype)
            if _const(b, 0):
                return self._as(a, dtype)
        elif name == "sub" and _const(b, 0):
            return self._as(a, dtype)
        elif name == "div":
            if _const(a, 0):
                return np.zeros((), dtype)
            if _const(b, 1):
                return self._as(a, dtype)
        return None

    def _as(self, e, dtype):
        return self.vec(e, dtype) if _traced(e) else np.asarray(e, dtype)

    def _binary(self, op, a, b, dtype):
        """``op(a, b)`` (``lax.add``, ``lax.mul``, ...) on two entries of ``dtype``."""
        return self.entry(_LAX_NAMES.get(op, ""), op, [a, b], [dtype, dtype], dtype)

    def _fold(self, op, entries, dtype):
        acc = entries[0]
        for e in entries[1:]:
            acc = self._binary(op, acc, e, dtype)
        return acc

    def _reduce(self, eqn, params, ins, op):
        x = _objects(ins[0])
        axes = tuple(params["axes"])
        keep = [d for d in range(x.ndim) if d not in axes]
        xt = np.transpose(x, keep + list(axes)).reshape([x.shape[d] for d in keep] + [-1])
        dtype = eqn.outvars[0].aval.dtype
        out = np.empty(xt.shape[:-1], object)
        for idx in np.ndindex(out.shape):
            out[idx] = self._fold(op, list(xt[idx]), dtype)
        return out

    def _cumulative(self, eqn, params, ins, op):
        x = np.moveaxis(_objects(ins[0]), params["axis"], -1)
        if params.get("reverse"):
            x = np.flip(x, -1)
        dtype = eqn.outvars[0].aval.dtype
        out = np.empty(x.shape, object)
        for idx in np.ndindex(x.shape[:-1]):
            acc = x[idx][0]
            out[idx + (0,)] = acc
            for k in range(1, x.shape[-1]):
                acc = self._binary(op, acc, x[idx][k], dtype)
                out[idx + (k,)] = acc
        if params.get("reverse"):
            out = np.flip(out, -1)
        return np.moveaxis(out, -1, params["axis"]).copy()

    def p_dot_general(self, eqn, params, ins):
        (lc, rc), (lb, rb) = params["dimension_numbers"]
        lhs, rhs = _objects(ins[0]), _objects(ins[1])
        lf = [d for d in range(lhs.ndim) if d not in lc and d not in lb]
        rf = [d for d in range(rhs.ndim) if d not in rc and d not in rb]
        L = np.transpose(lhs, list(lb) + lf + list(lc))
        R = np.transpose(rhs, list(rb) + rf + list(rc))
        nb, nk = [lhs.shape[d] for d in lb], int(np.prod([lhs.shape[d] for d in lc]))
        L = L.reshape(nb + [lhs.shape[d] for d in lf] + [nk])
        R = R.reshape(nb + [rhs.shape[d] for d in rf] + [nk])
        dtype = eqn.outvars[0].aval.dtype
        out = np.empty(tuple(nb) + tuple(lhs.shape[d] for d in lf) + tuple(rhs.shape[d] for d in rf), object)
        n_lf = len(lf)
        for idx in np.ndindex(out.shape):
            b, i, j = idx[:len(nb)], idx[len(nb):len(nb) + n_lf], idx[len(nb) + n_lf:]
            terms = [self._binary(lax.mul, L[b + i + (k,)], R[b + j + (k,)], dtype) for k in range(nk)]
            out[idx] = self._fold(lax.add, terms, dtype) if terms else np.zeros((), dtype)
        return out

    # ---- control flow
    def p_cond(self, eqn, params, ins):
        index, ops = ins[0], ins[1:]
        branches = params["branches"]
        if not _is_unrolled(index):
            return self.jaxpr(branches[int(np.clip(int(index), 0, len(branches) - 1))], ops)
        results = [self.jaxpr(b, ops) for b in branches]
        outs = []
        for k, var in enumerate(eqn.outvars):
            cases = [r[k] for r in results]
            sel = self.elementwise(lax.select_n_p, {}, [index] + cases, var.aval)
            outs.append(sel)
        return outs

    def p_while(self, eqn, params, ins):
        cn, bn = params["cond_nconsts"], params["body_nconsts"]
        cconsts, bconsts, init = ins[:cn], ins[cn:cn + bn], ins[cn + bn:]
        avals = [v.aval for v in eqn.outvars]
        shapes = [a.shape for a in avals]
        flat0 = [self.full(e, a.dtype) for v, a in zip(init, avals) for e in _objects(v).reshape(-1)]
        sizes = [int(np.prod(s)) for s in shapes]

        def unflatten(flat):
            out, k = [], 0
            for s, m in zip(shapes, sizes):
                out.append(_object_array(flat[k:k + m], s))
                k += m
            return out

        # a vmapped while_loop keeps a batched predicate (shape S, a prefix of
        # every carry's shape): it runs while any entry is true, and a carry
        # entry at (s, r) takes the body's value only where predicate entry s
        # is true (as XLA's lowering of such a loop does)
        pred_shape = params["cond_jaxpr"].out_avals[0].shape
        lead = [[idx[:len(pred_shape)] for idx in np.ndindex(s)] for s in shapes]

        def predicate(flat):
            (c,) = self.jaxpr(params["cond_jaxpr"], list(cconsts) + unflatten(flat))
            c = _objects(c)
            return {idx: self.full(c[idx], np.bool_) for idx in np.ndindex(pred_shape)}

        def keep_going(flat):
            return functools.reduce(jnp.logical_or, predicate(flat).values())

        def body(flat):
            go = predicate(flat)
            new = self.jaxpr(params["body_jaxpr"], list(bconsts) + unflatten(flat))
            new_flat = [self.full(e, a.dtype) for v, a in zip(new, avals) for e in _objects(v).reshape(-1)]
            gates = [go[idx] for var_lead in lead for idx in var_lead]
            return [jnp.where(g, a, b) for g, a, b in zip(gates, new_flat, flat)]

        limit, self.stop_at = self.stop_at, 0  # nested loops run to the end
        go_on = (lambda f: jnp.any(keep_going(f))) if limit == 0 else (
            lambda f: jnp.sum(keep_going(f).astype(jnp.int32)) > limit)
        out = lax.while_loop(go_on, body, flat0)
        return unflatten(out)

    def p_scan(self, eqn, params, ins):
        nc, ncarry = params["num_consts"], params["num_carry"]
        consts, carry, xs = ins[:nc], list(ins[nc:nc + ncarry]), ins[nc + ncarry:]
        length = params["length"]
        if length > 64:
            raise Unsupported("scan longer than 64 steps")
        order = range(length - 1, -1, -1) if params["reverse"] else range(length)
        ys_steps = {}
        for t in order:
            x_t = [_objects(x)[t] if _is_unrolled(x) else np.asarray(x)[t] for x in xs]
            out = self.jaxpr(params["jaxpr"], list(consts) + carry + x_t)
            carry, ys_steps[t] = list(out[:ncarry]), out[ncarry:]
        ys = []
        for k in range(len(eqn.outvars) - ncarry):
            steps = [ys_steps[t][k] for t in range(length)]
            if all(not _is_unrolled(s) for s in steps):
                ys.append(np.stack([np.asarray(s) for s in steps]))
            else:
                ys.append(np.stack([_objects(s) for s in steps]))
        return carry + ys


for _name, _op in _REDUCE.items():
    setattr(_Run, "p_" + _name, lambda self, eqn, params, ins, _op=_op: self._reduce(eqn, params, ins, _op))
for _name, _op in _CUMULATIVE.items():
    setattr(_Run, "p_" + _name, lambda self, eqn, params, ins, _op=_op: self._cumulative(eqn, params, ins, _op))


def _size(jaxpr) -> int:
    """Entries an unrolled run of ``jaxpr`` creates (nested jaxprs counted once)."""
    total = 0
    for eqn in jaxpr.eqns:
        total += sum(int(np.prod(v.aval.shape)) for v in eqn.outvars)
        for p in eqn.params.values():
            for sub in (p if isinstance(p, (tuple, list)) else (p,)):
                if hasattr(sub, "eqns"):
                    total += _size(sub)
                elif hasattr(sub, "jaxpr") and hasattr(sub.jaxpr, "eqns"):
                    total += _size(sub.jaxpr)
    return total


def _traced(e) -> bool:
    return isinstance(e, (jax.Array, jax.core.Tracer))


def _const(e, value) -> bool:
    """``e`` is a constant entry equal to ``value``."""
    return not _traced(e) and bool(np.asarray(e) == value)


def _object_array(items: Sequence, shape) -> np.ndarray:
    out = np.empty((len(items),), object)
    for i, e in enumerate(items):
        out[i] = e
    return out.reshape(shape)


def _objects_of_traced(x) -> np.ndarray:
    """Entries of a traced array shared by the whole batch: () tracers."""
    flat = x.reshape(-1)
    return _object_array([flat[i] for i in range(flat.shape[0])], x.shape)


def unrolled_vmap(fun: Callable, in_axes: Any = 0, stop_at: int = 0) -> Callable:
    """``jax.vmap(fun, in_axes)`` (``out_axes`` 0) executed entry by entry
    (module doc). Raises :class:`Unsupported` at trace time where ``fun``
    cannot be unrolled.

    ``stop_at`` > 0: the outermost ``while_loop`` of ``fun`` stops as soon as
    at most ``stop_at`` elements would go on (their states are returned
    as they are, mid-loop), so that a caller can finish those few in a
    smaller batch."""

    def run(*args):
        leaves, tree = jax.tree_util.tree_flatten(args)
        axes = _leaf_axes(in_axes, args)
        batched = [a is not None for a in axes]
        if not any(batched):
            raise ValueError("unrolled_vmap needs at least one batched argument")
        leaves = [jnp.moveaxis(x, a, 0) if a is not None else x for x, a in zip(leaves, axes)]
        n = next(x.shape[0] for x, b in zip(leaves, batched) if b)
        elem = [jax.ShapeDtypeStruct(x.shape[1:] if b else jnp.shape(x), jnp.result_type(x))
                for x, b in zip(leaves, batched)]
        closed, out_shape = jax.make_jaxpr(lambda *ls: fun(*jax.tree_util.tree_unflatten(tree, ls)),
                                           return_shape=True)(*elem)
        if _size(closed.jaxpr) > MAX_ENTRIES:
            raise Unsupported(f"more than {MAX_ENTRIES} unrolled entries")
        runner = _Run(n, stop_at)
        floats = [x for x, b in zip(leaves, batched) if b and jnp.issubdtype(x.dtype, jnp.floating)]
        if floats:  # ones at run time: true | false, which XLA does not fold for floats
            e = floats[0].reshape((n, -1))[:, 0]
            runner.one = lax.convert_element_type((e == e) | (e != e), e.dtype)
        ins = []
        for x, b in zip(leaves, batched):
            if b:
                flat = x.reshape((n, -1))
                ins.append(_object_array([flat[:, i] for i in range(flat.shape[1])], x.shape[1:]))
            elif isinstance(x, jax.core.Tracer):
                ins.append(_objects_of_traced(x))
            else:
                ins.append(np.asarray(x))
        outs = runner.jaxpr(closed, ins)
        out_leaves, out_tree = jax.tree_util.tree_flatten(out_shape)
        result = []
        for o, s in zip(outs, out_leaves):
            entries = [runner.full(e, s.dtype) for e in _objects(o).reshape(-1)]
            if not entries:
                result.append(jnp.zeros((n,) + tuple(s.shape), s.dtype))
            else:
                result.append(jnp.stack(entries, axis=-1).reshape((n,) + tuple(s.shape)))
        return jax.tree_util.tree_unflatten(out_tree, result)

    return run


def _leaf_axes(in_axes, args) -> list:
    """Per leaf of ``args``, its batch axis or None (``in_axes``: an int or
    None for all, or one entry per argument, each an int, None or a pytree of
    them shaped like the argument)."""
    if isinstance(in_axes, (int, type(None))):
        in_axes = (in_axes,) * len(args)
    out = []
    for spec, arg in zip(in_axes, args):
        n = len(jax.tree_util.tree_leaves(arg))
        if isinstance(spec, (int, type(None))):
            out += [spec] * n
        else:
            try:  # spec's None leaves and the argument's empty (None) nodes alike
                flat = jax.tree_util.tree_structure(arg).flatten_up_to(spec)
            except (ValueError, TypeError) as e:
                raise ValueError("in_axes does not match the arguments' structure") from e
            out += flat
    return out
