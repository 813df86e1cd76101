"""Batched faces: a ``gymnasium.vector.VectorEnv`` and a Stable-Baselines3 ``VecEnv``.

Both keep the whole batch as one pytree of JAX arrays and step it with one
jitted, vmapped call of the gymnax environment's transition
(:class:`~nextstat_jax.gym.HistFactoryGymnaxEnv`'s ``step_env``/``reset_env``,
the shared pure transition of :mod:`nextstat_jax.gym.core`), so 4096 envs are
one compiled call and no Python object per env.

Autoreset is same-step, as in gymnax: when an env's episode ends, the
returned observation is already the first observation of its next episode.
Unlike gymnax (which computes a reset for every env at every step and
selects), the reset runs inside a ``lax.cond`` only on steps where some env
ended. Seeding follows :mod:`nextstat_jax.gym.gymnasium_env`: env ``i`` of
``reset(seed=s)`` behaves as a :class:`HistFactoryEnv` reset with seed
``s + i``, and every autoreset as its ``reset()`` without a seed, so a batch
reproduces a loop of single envs (``gymnasium.vector.SyncVectorEnv`` with
``autoreset_mode=SAME_STEP``, SB3's ``DummyVecEnv``) exactly, infos included.

gymnasium face (:func:`make_vector_env`), as gymnasium 1.x's
``SyncVectorEnv`` in ``AutoresetMode.SAME_STEP``: ``infos`` is a dict of
batched arrays with ``"_key"`` masks: ``"yields"`` (N, n_bins), ``"metric"``,
``"converged"``, ``"step"`` and the metric under its NextStat name (``"q0"``,
...; every key of the single env's info except the string
``"reward_metric"``); for an env that just ended these describe the
new episode's first state, and on such steps ``infos["final_obs"]`` (object
array, the ended envs' last observations, None elsewhere) and
``infos["final_info"]`` (the ended envs' step infos) are added with their
masks. Observations float64.

SB3 face (:func:`make_sb3_vec_env`), as SB3's ``DummyVecEnv``: ``dones``
(``terminated or truncated``), rewards float32, a list of per-env info dicts
(``"yields"``, ``"metric"``, ``"TimeLimit.truncated"``, plus
``"terminal_observation"`` for an env that ended, where ``"yields"`` and
``"metric"`` describe the ended episode's last state). Observations are
float32 by default: SB3's rollout buffer stores them in the observation
space's dtype and its policies compute in float32, so float64 would only
double the buffer (``obs_dtype=np.float64`` keeps them exact).

Actions: ``(N, n_bins)``; a wrong shape raises
:class:`nextstat_jax.InvalidInput`; NaN entries are treated as 0 and
out-of-range entries clipped (as on the gymnax face: checking would cost a
pass over the batch and SB3's own ``VecCheckNan`` exists for that).
"""

from __future__ import annotations

import functools
from typing import Any, Optional, Sequence

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .._x64 import x64
from ..errors import InvalidInput
from .core import TaskParams, TaskState
from .gymnasium_env import (
    _SEED_MOD,
    RENDER_MODES,
    _check_render_mode,
    _named_metric,
    _seed_int,
    _spaces,
    masked_infos,
    render_frame,
)
from .gymnax_env import HistFactoryGymnaxEnv, make_gymnax_env

__all__ = ["HistFactoryVectorEnv", "make_vector_env", "make_sb3_vec_env"]


def _select(mask, a, b):
    """Per-env ``where(mask, a, b)`` over two batched pytrees."""
    def one(x, y):
        m = mask.reshape(mask.shape + (1,) * (x.ndim - 1))
        return jnp.where(m, x, y)
    return jax.tree_util.tree_map(one, a, b)


def _resets(genv, params, seeds, episodes):
    keys = jax.vmap(lambda s, e: jax.random.fold_in(jax.random.key(s), e))(seeds, episodes)
    return jax.vmap(lambda k: genv.reset_env(k, params)[1])(keys)


def _pack(state: TaskState, *columns):
    """(N, n_bins + 3 + len(columns)) float64: yields, metric, converged,
    time, then ``columns`` (one host transfer per call)."""
    dt = state.yields.dtype
    extra = [state.metric, state.converged, state.time] + list(columns)
    return jnp.concatenate([state.yields, jnp.stack([jnp.asarray(x, dt) for x in extra], axis=1)], axis=1)


def _unpack(block: np.ndarray, n: int):
    """Host view of :func:`_pack`: (yields, metric, converged, time), then the columns."""
    host = (block[:, :n], block[:, n], block[:, n + 1] != 0, block[:, n + 2].astype(np.int64))
    return host, block[:, n + 3:]


@functools.partial(jax.jit, static_argnums=0)
def _batch_reset(genv: HistFactoryGymnaxEnv, params: TaskParams, seeds, episodes, state, mask):
    """Reset the envs in ``mask`` (others keep ``state``)."""
    new = _select(mask, _resets(genv, params, seeds, episodes), state)
    return new, _pack(new)


@functools.partial(jax.jit, static_argnums=0)
def _batch_step(genv: HistFactoryGymnaxEnv, params: TaskParams, seeds, episodes, state: TaskState, actions):
    """One step of every env with same-step autoreset. Returns (state after
    autoreset, episodes, packed rows: the state after autoreset, then the
    stepped (pre-reset) state's yields/metric/converged/time, reward,
    terminated, truncated)."""
    key = jax.random.key(0)  # unused: the transition is deterministic

    def one(st, a):
        _, new, reward, terminated, _ = genv.step_env(key, st, a, params)
        return new, reward, terminated, genv.is_truncated(new, params)

    stepped, reward, terminated, truncated = jax.vmap(one)(state, actions)
    done = terminated | truncated
    episodes = episodes + done.astype(episodes.dtype)
    out = jax.lax.cond(
        jnp.any(done),
        lambda: _select(done, _resets(genv, params, seeds, episodes), stepped),
        lambda: stepped,
    )
    return out, episodes, jnp.concatenate([_pack(out), _pack(stepped, reward, terminated, truncated)], axis=1)


class _Batch:
    """The batched state of ``num_envs`` envs and its jitted transitions
    (shared by the gymnasium and the SB3 faces)."""

    def __init__(self, genv: HistFactoryGymnaxEnv, params: TaskParams, num_envs: int):
        num_envs = int(num_envs)
        if num_envs < 1:
            raise InvalidInput(f"num_envs must be >= 1, got {num_envs}")
        self.genv, self.params, self.num_envs = genv, params, num_envs
        self.n_bins = genv.config.n_bins
        self.seeds = None  # (N,) int64 base seeds, host
        self.episodes = None  # (N,) int32, device
        self.state: Optional[TaskState] = None
        self.host: Optional[tuple] = None  # (yields, metric, converged, time) of the current states

    @x64
    def reset(self, seeds: Sequence[Optional[int]], mask: np.ndarray, rng: np.random.Generator):
        """Reset the envs in ``mask``: a given seed restarts its env's episode
        count, None continues it (or draws a base seed from ``rng`` the first time)."""
        n = self.num_envs
        if self.seeds is None:  # the first reset resets every env, whatever the mask
            mask = np.ones(n, bool)
            self.seeds = np.zeros(n, np.int64)
            have = np.zeros(n, bool)
            episodes = np.zeros(n, np.int32)
            state = jax.tree_util.tree_map(
                lambda s: jnp.zeros((n,) + s.shape, s.dtype),
                jax.eval_shape(lambda: self.genv.reset_env(jax.random.key(0), self.params)[1]),
            )
        else:
            have = self._have
            episodes = np.asarray(self.episodes).copy()
            state = self.state
        for i in np.flatnonzero(mask):
            s = seeds[i]
            if s is not None:
                self.seeds[i], episodes[i], have[i] = _seed_int(s), 0, True
            elif not have[i]:
                self.seeds[i], episodes[i], have[i] = int(rng.integers(0, _SEED_MOD)), 0, True
            else:
                episodes[i] += 1
        self._have = have
        self._seeds_device = jnp.asarray(self.seeds)
        self.episodes = jnp.asarray(episodes)
        self.state, block = _batch_reset(self.genv, self.params, self._seeds_device, self.episodes, state,
                                         jnp.asarray(mask))
        self.host, _ = _unpack(np.asarray(block), self.n_bins)
        return self.host

    @x64
    def step(self, actions):
        if self.state is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        a = np.asarray(actions, dtype=np.float64)
        if a.shape != (self.num_envs, self.n_bins):
            raise InvalidInput(
                f"the actions must have shape ({self.num_envs}, {self.n_bins}) (num_envs, n_bins), got {a.shape}")
        self.state, self.episodes, block = _batch_step(
            self.genv, self.params, self._seeds_device, self.episodes, self.state, a)
        block = np.asarray(block)
        width = self.n_bins + 3
        self.host, _ = _unpack(block[:, :width], self.n_bins)
        final, cols = _unpack(block[:, width:], self.n_bins)
        return self.host, final, cols[:, 0], cols[:, 1] != 0, cols[:, 2] != 0

    def frames(self, indices):
        nominal = np.asarray(jax.device_get(self.params.nominal))
        out = []
        for i in indices:
            y = nominal if self.host is None else self.host[0][i]
            title = f"env {i}" if self.host is None else f"env {i}  step {int(self.host[3][i])}"
            out.append(render_frame(nominal, y, title=title))
        return out


def _build(workspace, num_envs, channel, sample, kwargs):
    genv, params = make_gymnax_env(workspace, channel, sample, **kwargs)
    return _Batch(genv, params, num_envs)


# --------------------------------------------------------------------------
# gymnasium
# --------------------------------------------------------------------------


class HistFactoryVectorEnv(VectorEnv):
    """``num_envs`` copies of the task stepped in one jitted call (module doc).

    Observations (num_envs, n_bins) float64; rewards float64; terminations
    always False; truncations at ``max_steps``. ``reset(seed=int | list,
    options={"reset_mask": bool array})``.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": list(RENDER_MODES), "render_fps": 4}

    def __init__(
        self,
        workspace: Any,
        num_envs: int,
        channel: str,
        sample: str,
        *,
        render_mode: Optional[str] = None,
        **kwargs,
    ):
        _check_render_mode(render_mode)
        self._batch = _build(workspace, num_envs, channel, sample, kwargs)
        self.gymnax_env, self.params = self._batch.genv, self._batch.params
        self.num_envs = self._batch.num_envs
        self.render_mode = render_mode
        self.reward_metric = self.gymnax_env.config.reward_metric
        self.single_observation_space, self.single_action_space = _spaces(self.gymnax_env.config, self.params)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    def reset(self, *, seed=None, options: Optional[dict] = None):
        n = self.num_envs
        if seed is None:
            seeds = [None] * n
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise InvalidInput(f"a list of seeds must have length num_envs={n}, got {len(seeds)}")
        if isinstance(seed, (int, np.integer)):
            super().reset(seed=int(seed))  # seeds self.np_random
        mask = np.ones(n, bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"])
            if mask.shape != (n,) or mask.dtype != np.bool_:
                raise InvalidInput(f"options['reset_mask'] must be a bool array of shape ({n},)")
        host = self._batch.reset(seeds, mask, self.np_random)
        infos = self._infos(host, mask)
        return host[0].copy(), infos

    def step(self, actions):
        host, final, reward, terminated, truncated = self._batch.step(actions)
        infos = self._infos(host, np.ones(self.num_envs, bool))
        done = terminated | truncated
        if done.any():
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(done):
                final_obs[i] = final[0][i].copy()
            infos["final_obs"], infos["_final_obs"] = final_obs, done.copy()
            infos["final_info"], infos["_final_info"] = self._infos(final, done), done.copy()
        return host[0].copy(), reward.astype(np.float64), terminated, truncated, infos

    def render(self):
        if self.render_mode is None:
            gymnasium.logger.warn("render() called with render_mode=None")
            return None
        return tuple(self._batch.frames(range(self.num_envs)))

    def _infos(self, host, mask) -> dict:
        y, m, c, t = host
        m = m.astype(np.float64)
        fields = {"yields": y.astype(np.float64), "metric": m, "converged": c.astype(bool), "step": t.astype(np.int64)}
        fields.update(_named_metric(self.reward_metric, m))
        return masked_infos(fields, mask)

    def __repr__(self) -> str:
        return f"HistFactoryVectorEnv(num_envs={self.num_envs}, {self.gymnax_env!r})"


def make_vector_env(workspace: Any, num_envs: int, channel: str, sample: str, **kwargs) -> HistFactoryVectorEnv:
    """A :class:`gymnasium.vector.VectorEnv` of ``num_envs`` envs whose batch
    steps in one jitted vmapped call (same-step autoreset, declared in
    ``metadata["autoreset_mode"]``). Keyword arguments as
    :func:`~nextstat_jax.gym.make_histfactory_env`."""
    return HistFactoryVectorEnv(workspace, num_envs, channel, sample, **kwargs)


# --------------------------------------------------------------------------
# Stable-Baselines3
# --------------------------------------------------------------------------


def _sb3_vec_env_base():
    try:
        from stable_baselines3.common.vec_env import VecEnv
    except ImportError as exc:
        raise ImportError(
            "make_sb3_vec_env needs stable-baselines3 (pip install 'nextstat-jax[rl]' or stable-baselines3)"
        ) from exc
    return VecEnv


class _SubEnvView:
    """What ``get_attr``/``env_method`` see as sub-env ``i``: the shared
    settings of the batch plus env ``i``'s current ``yields``/``metric``/
    ``converged``/``step`` and ``render()``."""

    def __init__(self, venv, i: int):
        self._venv, self._i = venv, i

    def __getattr__(self, name):
        host = self._venv._batch.host
        per_env = {"yields": 0, "metric": 1, "converged": 2, "step": 3}
        if name in per_env:
            if host is None:
                return None
            v = host[per_env[name]][self._i]
            return v.copy() if name == "yields" else v.item()
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._venv, name)

    def render(self):
        return self._venv._batch.frames([self._i])[0]


@functools.lru_cache(maxsize=None)
def _sb3_class():
    VecEnv = _sb3_vec_env_base()

    class HistFactorySB3VecEnv(VecEnv):
        """SB3 ``VecEnv`` over one batched state (module doc). ``seed(s)``
        seeds env ``i`` with ``s + i`` at the next ``reset()``."""

        def __init__(self, batch: _Batch, render_mode: Optional[str], obs_dtype):
            self._batch = batch
            self.render_mode = render_mode
            self.gymnax_env, self.params = batch.genv, batch.params
            self.reward_metric = batch.genv.config.reward_metric
            self.obs_dtype = np.dtype(obs_dtype)
            obs_space, act_space = _spaces(batch.genv.config, batch.params, self.obs_dtype)
            self._actions = None
            self._rng = None
            super().__init__(batch.num_envs, obs_space, act_space)

        # -- VecEnv API ------------------------------------------------------

        def reset(self):
            if self._rng is None:
                self._rng = np.random.default_rng()
            host = self._batch.reset(list(self._seeds), np.ones(self.num_envs, bool), self._rng)
            self._reset_seeds()
            self._reset_options()
            self.reset_infos = [self._info(host, i) for i in range(self.num_envs)]
            return host[0].astype(self.obs_dtype)

        def step_async(self, actions: np.ndarray) -> None:
            self._actions = actions

        def step_wait(self):
            host, final, reward, terminated, truncated = self._batch.step(self._actions)
            done = terminated | truncated
            infos = []
            for i in range(self.num_envs):
                if done[i]:
                    info = self._info(final, i)
                    info["terminal_observation"] = final[0][i].astype(self.obs_dtype)
                else:
                    info = self._info(host, i)
                info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                infos.append(info)
            for i in np.flatnonzero(done):
                self.reset_infos[i] = self._info(host, i)
            return host[0].astype(self.obs_dtype), reward.astype(np.float32), done, infos

        def close(self) -> None:
            pass

        def seed(self, seed: Optional[int] = None):
            if seed is not None:
                self._rng = np.random.default_rng(int(seed))
            return super().seed(seed)

        def get_attr(self, attr_name: str, indices=None) -> list:
            return [getattr(_SubEnvView(self, i), attr_name) for i in self._get_indices(indices)]

        def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
            idx = list(self._get_indices(indices))
            if sorted(idx) != list(range(self.num_envs)):
                raise InvalidInput(
                    "the sub-environments share one batched state: set_attr applies to all of them (indices=None)")
            setattr(self, attr_name, value)

        def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list:
            return [getattr(_SubEnvView(self, i), method_name)(*method_args, **method_kwargs)
                    for i in self._get_indices(indices)]

        def env_is_wrapped(self, wrapper_class, indices=None) -> list:
            return [False for _ in self._get_indices(indices)]

        def get_images(self):
            if self.render_mode != "rgb_array":
                return [None] * self.num_envs
            return self._batch.frames(range(self.num_envs))

        @staticmethod
        def _info(host, i: int) -> dict:
            return {"yields": host[0][i].copy(), "metric": float(host[1][i]), "converged": bool(host[2][i])}

        def __repr__(self) -> str:
            return f"HistFactorySB3VecEnv(num_envs={self.num_envs}, {self.gymnax_env!r})"

    return HistFactorySB3VecEnv


def make_sb3_vec_env(
    workspace: Any,
    num_envs: int,
    channel: str,
    sample: str,
    *,
    obs_dtype=np.float32,
    render_mode: Optional[str] = None,
    **kwargs,
):
    """A Stable-Baselines3 ``VecEnv`` of ``num_envs`` envs backed by one
    batched jitted step (module doc); e.g. ``PPO("MlpPolicy",
    make_sb3_vec_env(ws, 1024, "SR", "signal", reward_metric="q0"))``. Wrap it
    in SB3's ``VecMonitor`` for episode statistics. Keyword arguments as
    :func:`~nextstat_jax.gym.make_histfactory_env`."""
    cls = _sb3_class()
    _check_render_mode(render_mode)
    return cls(_build(workspace, num_envs, channel, sample, kwargs), render_mode, obs_dtype)
