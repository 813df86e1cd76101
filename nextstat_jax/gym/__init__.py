"""Reinforcement-learning environments on HistFactory models.

* :func:`make_gymnax_env` — pure JAX (gymnax API): jit, vmap over thousands of
  envs, scan over steps.
* :func:`make_histfactory_env` — a ``gymnasium.Env``, drop-in for NextStat's
  ``nextstat.gym.make_histfactory_env``; :func:`make_vector_env` and
  :func:`make_sb3_vec_env` — batched versions stepping in one jitted call.

All faces share one pure transition (:mod:`nextstat_jax.gym.core`).
Registered as ``"nextstat_jax/HistFactory-v0"`` with gymnax and gymnasium.
"""

from .core import REWARD_METRICS, TaskConfig, TaskParams, TaskState
from .gymnax_env import HistFactoryGymnaxEnv, make_gymnax_env

__all__ = [
    "REWARD_METRICS",
    "TaskConfig",
    "TaskParams",
    "TaskState",
    "HistFactoryGymnaxEnv",
    "make_gymnax_env",
]
