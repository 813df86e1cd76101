"""The task as a gymnax environment: pure, jittable, vmappable, scannable.

``make_gymnax_env(workspace, channel=..., sample=..., ...)`` returns
``(env, params)``. The model lives in ``params`` (a pytree), so one compiled
``step`` serves every workspace of the same structure; ``env`` holds only the
static settings, and two envs with equal settings compare equal and hash
alike, so they share gymnax's compiled ``step``/``reset`` (jitted with
``self`` static).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from gymnax.environments import spaces

from .._x64 import x64
from ..workspace import Workspace
from .core import (TaskParams, TaskState, make_task, observation_bounds, task_reset,
                   task_step)
from .gymnax_base import ConfiguredEnvironment, Float64Box

__all__ = ["HistFactoryGymnaxEnv", "make_gymnax_env", "model_from"]


def model_from(workspace: Any):
    """A :class:`Model` from a Model, a Workspace, or anything ``Workspace``
    accepts (dict, JSON string, path)."""
    from ..model import Model

    if isinstance(workspace, Model):
        return workspace
    if not isinstance(workspace, Workspace):
        workspace = Workspace(workspace)
    return workspace.model()


class HistFactoryGymnaxEnv(ConfiguredEnvironment):
    """Reshape one sample's yields to optimise a HistFactory statistic.

    Observation: the current yields (float64, ``n_bins``). Action: float
    vector in [-1, 1]^n_bins (NaN -> 0, out of range clipped). Episodes end by
    truncation at ``params.max_steps_in_episode`` (``terminated`` is always
    False). ``info``: ``yields``, ``metric``, ``converged`` (plus gymnax's
    ``terminated``, ``truncated``, ``final_observation``). See
    :mod:`nextstat_jax.gym.core` for the dynamics and rewards.
    """

    def __repr__(self) -> str:
        c = self.config
        return (f"HistFactoryGymnaxEnv(channel={c.channel!r}, sample={c.sample!r}, n_bins={c.n_bins}, "
                f"reward_metric={c.reward_metric!r}, data={c.data!r}, budget={c.budget})")

    @property
    def name(self) -> str:
        return "nextstat_jax/HistFactory-v0"

    @x64
    def step_env(self, key, state: TaskState, action, params: TaskParams):
        new, reward, info = task_step(self.config, params, state, action)
        return new.yields, new, reward, jnp.zeros((), bool), info

    @x64
    def reset_env(self, key, params: TaskParams):
        state = task_reset(self.config, params, key)
        return state.yields, state

    def get_obs(self, state: TaskState, params=None, key=None):
        return state.yields

    @property
    def num_actions(self) -> int:
        return self.config.n_bins

    def action_space(self, params: TaskParams = None) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (self.config.n_bins,), jnp.float32)

    def observation_space(self, params: TaskParams = None) -> spaces.Box:
        params = self._params if params is None else params
        lo, hi = observation_bounds(self.config, params)
        return Float64Box(lo, hi, (self.config.n_bins,))

    def state_space(self, params: TaskParams = None) -> spaces.Dict:
        params = self._params if params is None else params
        n = self.config.n_bins
        lo, hi = observation_bounds(self.config, params)
        return spaces.Dict({
            "yields": Float64Box(lo, hi, (n,)),
            "time": spaces.Discrete(int(params.max_steps_in_episode) + 1),
        })


@x64
def make_gymnax_env(workspace: Any, channel: str, sample: str, **kwargs):
    """``(env, params)`` for the yield-reshaping task (pure JAX, gymnax API).

    ``workspace``: a pyhf workspace (dict, JSON string, path), a
    :class:`~nextstat_jax.Workspace` or a :class:`~nextstat_jax.Model`.
    Keyword arguments and defaults as NextStat's ``make_histfactory_env``
    (``reward_metric="nll"``, ``mu_test=5.0``, ``max_steps=128``,
    ``action_scale=0.05``, ``action_mode="logmul"``, ``init_noise=0.0``,
    ``clip_min=1e-12``, ``clip_max=1e12``) plus ``reward_mode``, ``data``,
    ``yield_budget`` and solver ``options`` (:mod:`nextstat_jax.gym.core`).
    """
    config, params = make_task(model_from(workspace), channel, sample, **kwargs)
    return HistFactoryGymnaxEnv(config, params), params
