"""Analysis-cut optimisation on event-level samples.

* :mod:`~nextstat_jax.cuts.events` — the input: :class:`EventSample`,
  :class:`Cut`, :class:`EventWorkspace` (with a JSON form);
* :mod:`~nextstat_jax.cuts.model` — :class:`CutModel`: (events, thresholds)
  -> :class:`~nextstat_jax.Model`, hard or relaxed (differentiable) cuts;
* :mod:`~nextstat_jax.cuts.env` — the cut task as gymnax, Gymnasium and
  vector environments;
* :mod:`~nextstat_jax.cuts.optimise` — grid scan, gradient ascent through
  relaxed cuts, PPO;
* :func:`synthetic_benchmark` — a bundled benchmark.
"""

from .events import Cut, EventSample, EventWorkspace, InvalidEvents
from .model import CutModel, make_cut_model
from .datasets import bkg_systematic, synthetic_benchmark
from .env import (
    CUT_REWARD_METRICS,
    CutEnv,
    CutGymnaxEnv,
    CutTaskConfig,
    CutTaskParams,
    CutTaskState,
    CutVectorEnv,
    make_cut_env,
    make_cut_gymnax_env,
    make_cut_vector_env,
)
from .optimise import CutOptResult, evaluate_hard, gradient_ascent, grid_scan, ppo_search

__all__ = [
    "EventSample",
    "Cut",
    "EventWorkspace",
    "InvalidEvents",
    "CutModel",
    "make_cut_model",
    "synthetic_benchmark",
    "bkg_systematic",
    "CUT_REWARD_METRICS",
    "CutTaskConfig",
    "CutTaskParams",
    "CutTaskState",
    "CutGymnaxEnv",
    "make_cut_gymnax_env",
    "CutEnv",
    "make_cut_env",
    "CutVectorEnv",
    "make_cut_vector_env",
    "CutOptResult",
    "grid_scan",
    "gradient_ascent",
    "ppo_search",
    "evaluate_hard",
]
