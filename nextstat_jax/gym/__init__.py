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
from .gymnasium_env import HistFactoryEnv, episode_key, make_histfactory_env
from .vector_env import HistFactoryVectorEnv, make_sb3_vec_env, make_vector_env
from .registration import ENV_ID, register

__all__ = [
    "REWARD_METRICS",
    "TaskConfig",
    "TaskParams",
    "TaskState",
    "HistFactoryGymnaxEnv",
    "make_gymnax_env",
    "HistFactoryEnv",
    "make_histfactory_env",
    "episode_key",
    "HistFactoryVectorEnv",
    "make_vector_env",
    "make_sb3_vec_env",
    "ENV_ID",
    "register",
]
