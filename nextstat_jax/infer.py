"""Public inference entry points: ``hypotest`` and ``upper_limit``.

Thin compositions of the pieces in ``teststats``, ``asymptotics``, ``toys``
and ``limits``; each jit-compiles once per model structure and options.
"""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np

import jax
import jax.numpy as jnp

from ._x64 import f64, public
from .asymptotics import HypotestResult, hypotest_asymptotic
from .errors import InvalidInput
from .fits import _poi_index, make_problem
from .limits import UpperLimit, scan_limits, solve_limits
from .model import Model
from .solver import SolverOptions

__all__ = ["hypotest", "upper_limit", "HypotestResult", "UpperLimit"]

_problem_entry = jax.jit(make_problem)


@functools.partial(jax.jit, static_argnames=("kind", "options"))
def _hypotest_entry(model, data, init, fixed, bounds, mu, *, kind, options):
    prob = make_problem(model, data, init, fixed, bounds)
    return hypotest_asymptotic(prob, jnp.asarray(mu, prob.init.dtype), kind, _poi_index(model), options)


@functools.partial(jax.jit, static_argnames=("level", "kind", "options"))
def _limits_entry(model, data, init, fixed, bounds, bracket, *, level, kind, options):
    prob = make_problem(model, data, init, fixed, bounds)
    poi = _poi_index(model)
    if bracket is None:
        bracket = (jnp.maximum(prob.bounds[poi, 0], 0.0), prob.bounds[poi, 1])
    return solve_limits(prob, level, kind, poi, options, bracket)


@functools.partial(jax.jit, static_argnames=("level", "kind", "options"))
def _scan_entry(model, data, init, fixed, bounds, scan, *, level, kind, options):
    prob = make_problem(model, data, init, fixed, bounds)
    return scan_limits(prob, scan, level, kind, _poi_index(model), options)


def _check_poi_free(model: Model, fixed) -> int:
    """The POI index; a clear error if the POI is fixed (concrete inputs only)."""
    poi = _poi_index(model)
    if fixed is None:
        is_fixed = bool(model.layout.fixed_base[poi]) and not bool(model.layout.fixed_dynamic[poi])
    elif isinstance(fixed, jax.core.Tracer):
        return poi
    else:
        is_fixed = bool(np.asarray(fixed)[poi])
    if is_fixed:
        raise InvalidInput(
            f"the parameter of interest {model.poi_name!r} is fixed; a hypothesis test needs it free"
        )
    return poi


@public
def hypotest(
    model: Model,
    mu,
    data=None,
    *,
    test_stat: str = "qtilde",
    calculator: str = "asymptotics",
    return_expected_set: bool = True,
    n_toys: int = 2000,
    key: Optional[jax.Array] = None,
    init=None,
    fixed=None,
    bounds=None,
    options: SolverOptions = SolverOptions(),
    chunk_size: Optional[int] = None,
    progress: Optional[bool] = None,
) -> HypotestResult:
    """Hypothesis test of POI value ``mu`` (pyhf's ``infer.hypotest``).

    Args:
        model, mu, data: the model, tested POI value, data (None: observed).
        test_stat: "qtilde" (default), "q" or "q0".
        calculator: "asymptotics" (default) or "toybased".
        return_expected_set: accepted for pyhf familiarity; the expected set
            is always part of the result.
        n_toys, key: toys per hypothesis and PRNG key (toybased only).
        chunk_size: toys per hypothesis fitted in one vmapped call (both
            hypotheses go in the same call); None: the smallest power of
            two holding ``n_toys``, capped to bound memory
            (``toys.auto_chunk``).
        progress: show a progress bar for toys (default: when n_toys >= 5000).

    Returns:
        :class:`HypotestResult` (one type whatever the options; the
        toy-based one holds NumPy arrays, computed on the host from the
        toys' statistics).
    """
    if test_stat not in ("q0", "q", "qtilde"):
        raise InvalidInput(f"test_stat must be 'q0', 'q' or 'qtilde', got {test_stat!r}")
    poi = _check_poi_free(model, fixed)
    if calculator == "asymptotics":
        return _hypotest_entry(model, data, init, fixed, bounds, mu, kind=test_stat, options=options)
    if calculator == "toybased":
        from .toys import hypotest_toys

        if key is None:
            raise InvalidInput("calculator='toybased' needs a PRNG key: key=jax.random.key(0)")
        from .sampling import check_key

        check_key(key)
        if int(n_toys) < 1:
            raise InvalidInput(f"n_toys must be >= 1, got {n_toys}")
        if chunk_size is not None and int(chunk_size) < 1:
            raise InvalidInput(f"chunk_size must be >= 1, got {chunk_size}")
        # assembled in one compiled call (eagerly it costs ~5 ms, more than 1,000 toys of a small model)
        prob = _problem_entry(model, data, init, fixed, bounds)
        return hypotest_toys(prob, f64(mu, "mu"), test_stat, poi, options, key, int(n_toys),
                             None if chunk_size is None else int(chunk_size), progress)
    raise InvalidInput(f"calculator must be 'asymptotics' or 'toybased', got {calculator!r}")


@public
def upper_limit(
    model: Model,
    data=None,
    *,
    level: float = 0.05,
    test_stat: str = "qtilde",
    scan=None,
    bracket=None,
    init=None,
    fixed=None,
    bounds=None,
    options: SolverOptions = SolverOptions(),
) -> UpperLimit:
    """Observed and expected (-2..+2 sigma) upper limits at CLs = ``level``.

    By default the six roots of ``CLs(mu) = level`` are found by bracketed root
    finding (bracket: the POI bounds, widened if needed, or ``bracket=(lo, hi)``),
    to ~1e-9 relative. With ``scan`` (array of mu), pyhf's interpolation mode.
    Differentiable w.r.t. yields and data (implicit function theorem).
    """
    if not 0.0 < float(level) < 1.0:
        raise InvalidInput(f"level must be in (0, 1), got {level}")
    if test_stat not in ("q", "qtilde"):
        raise InvalidInput(f"upper limits use test_stat 'q' or 'qtilde', got {test_stat!r}")
    _check_poi_free(model, fixed)
    if scan is not None:
        scan = f64(scan, "scan")
        if scan.ndim != 1 or scan.shape[0] < 2:
            raise InvalidInput("scan must be a 1-d array of at least 2 POI values")
        return _scan_entry(model, data, init, fixed, bounds, scan, level=float(level), kind=test_stat,
                           options=options)
    if bracket is not None:
        if len(bracket) != 2:
            raise InvalidInput(f"bracket must be (lo, hi), got {bracket!r}")
        bracket = (f64(bracket[0], "bracket"), f64(bracket[1], "bracket"))
    return _limits_entry(model, data, init, fixed, bounds, bracket, level=float(level), kind=test_stat,
                         options=options)
