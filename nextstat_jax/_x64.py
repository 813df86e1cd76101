"""The float64 boundary.

HistFactory likelihoods need float64 (pyhf agreement to 1e-8 is impossible in
float32), but a library must not flip ``jax_enable_x64`` globally at import.
Public entry points are decorated with :func:`public`:

* the function body runs inside ``jax.enable_x64(True)``, so every array it
  creates is float64; float64 arrays keep their dtype when they later flow
  through a user's ``jax.jit`` even with the global flag off;
* with the user's flag off, reverse-mode differentiation (``jax.grad``) would
  transpose our operations *outside* that context, where JAX creates float32
  zeros that clash with our float64 arrays.  So the call goes through a
  ``jax.custom_vjp`` whose backward pass re-enters the float64 context.
  Forward-mode (``jax.jvp``/``jacfwd``/``hessian``) of a public function then
  needs the user's x64 flag on; with it on, nothing is wrapped at all.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["public", "x64", "f64"]


def _x64_on() -> bool:
    return bool(jax.config.read("jax_enable_x64"))


def x64(fn: F) -> F:
    """Decorator: run ``fn`` with float64 enabled (no differentiation shim)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if _x64_on():
            return fn(*args, **kwargs)
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _is_dynamic(leaf) -> bool:
    if isinstance(leaf, (bool, np.bool_)):
        return False
    return isinstance(leaf, (jax.Array, np.ndarray, float, np.floating))


def _to_f64(ct):
    if hasattr(ct, "dtype") and ct.dtype == jnp.float32:
        return ct.astype(jnp.float64)
    return ct


def _is_options(x) -> bool:
    """A NamedTuple of Python scalars (``SolverOptions``, configs): static,
    hashed into compile keys, so kept whole and never traced."""
    return (isinstance(x, tuple) and hasattr(x, "_fields")
            and all(v is None or isinstance(v, (bool, int, float, str)) for v in x))


def _through_vjp_boundary(fn, args, kwargs):
    leaves, treedef = jax.tree_util.tree_flatten((args, kwargs), is_leaf=_is_options)
    dynamic = [i for i, leaf in enumerate(leaves) if _is_dynamic(leaf)]
    # concrete inputs: nothing can be differentiated, so no boundary (it would
    # cost a trace per call)
    if not any(isinstance(leaves[i], jax.core.Tracer) for i in dynamic):
        return fn(*args, **kwargs)

    def call(*dyn):
        full = list(leaves)
        for i, v in zip(dynamic, dyn):
            full[i] = v
        a, k = jax.tree_util.tree_unflatten(treedef, full)
        return fn(*a, **k)

    @jax.custom_vjp
    def boundary(*dyn):
        return call(*dyn)

    def fwd(*dyn):
        with jax.enable_x64(True):
            return jax.vjp(call, *dyn)

    def bwd(pullback, ct):
        with jax.enable_x64(True):
            return pullback(jax.tree_util.tree_map(_to_f64, ct))

    boundary.defvjp(fwd, bwd)
    return boundary(*(leaves[i] for i in dynamic))


def public(fn: F) -> F:
    """Decorator for public entry points: float64 inside, whatever the user's
    ``jax_enable_x64``; reverse-mode gradients stay float64 too (module doc)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if _x64_on():
            return fn(*args, **kwargs)
        with jax.enable_x64(True):
            return _through_vjp_boundary(fn, args, kwargs)

    return wrapper  # type: ignore[return-value]


def f64(x, what: str = "input") -> jax.Array:
    """Convert ``x`` to a float64 JAX array (call inside a float64 context);
    a non-numeric ``x`` raises :class:`InvalidInput` naming ``what``."""
    if isinstance(x, jax.Array):
        return x if x.dtype == jnp.float64 else x.astype(jnp.float64)
    try:
        return jnp.asarray(np.asarray(x, dtype=np.float64))
    except (TypeError, ValueError):
        pass
    try:  # e.g. a list of tracers
        return jnp.asarray(x, dtype=jnp.float64)
    except (TypeError, ValueError):
        from .errors import InvalidInput

        raise InvalidInput(f"{what} must be numeric, got {type(x).__name__} {str(x)[:60]!r}") from None
