"""The task as a ``gymnasium.Env``: a drop-in for NextStat's ``nextstat.gym``.

``make_histfactory_env(workspace, channel=..., sample=..., ...)`` takes the same
arguments and defaults as ``nextstat.gym.make_histfactory_env`` and returns a
real :class:`gymnasium.Env` (so SB3's ``make_vec_env``/``DummyVecEnv`` and
gymnasium's ``check_env`` accept it). Every step is one jitted float64 call of
the shared pure transition (:mod:`nextstat_jax.gym.core`), compiled once per
task structure and shared by all envs of that structure.

Spaces:

* observation: ``Box(clip_min, clip_max, (n_bins,), float64)``; the
  observation is the current yields as a fresh NumPy float64 array. With a
  ``yield_budget`` the rescaling to the budget may take a bin below
  ``clip_min``, so the lower bound is then 0 (and the upper bound
  ``max(clip_max, budget)``).
* action: ``Box(-1, 1, (n_bins,), float32)`` (float32 as SB3 recommends;
  NextStat declares float64; any float dtype is accepted).

Actions: an action of the wrong shape, a non-numeric action or one with a NaN
entry raises :class:`nextstat_jax.InvalidInput` (a ``ValueError``) naming the
expected shape; finite entries outside [-1, 1] and +/-inf are clipped into
[-1, 1] (NextStat applies them unclipped, which overflows ``exp`` for
extreme entries). The gymnax face instead maps NaN entries to 0, because a
jitted function cannot raise.

Rewards are Python floats; ``info`` holds ``"yields"`` (float64 array),
``"metric"`` (float), ``"converged"`` (bool: the fits behind the metric
converged), ``"step"`` (int), ``"reward_metric"`` (str) and the metric under its
NextStat name: ``"nll"``, ``"q0"`` (also for ``"z0"``, with ``"z0"``), ``"qmu"``
(also for ``"zmu"``, with ``"zmu"``).

Seeding and the correspondence with the gymnax face
---------------------------------------------------
``reset(seed=s)`` seeds :attr:`np_random` (gymnasium's rule) and sets the base
JAX key ``jax.random.key(s)``; episode ``e`` after it (``e = 0`` for that
reset, then +1 for every ``reset()`` without a seed) starts from
``task_reset`` with the key ``jax.random.fold_in(jax.random.key(s), e)``
(:func:`episode_key`), i.e. exactly the state of the gymnax face's
``env.reset(episode_key(s, e), params)``. Before any seeded reset the base
key is drawn from :attr:`np_random`. Seeds are reduced modulo 2**63. The
vector faces follow the same rule per env, with env ``i`` of
``reset(seed=s)`` seeded ``s + i`` (gymnasium's and SB3's convention), so they
reproduce a loop of single envs exactly.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any, Optional

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces

from .._x64 import x64
from ..errors import InvalidInput
from ..solver import SolverOptions
from .core import TaskConfig, TaskParams, TaskState, observation_bounds
from .gymnax_env import HistFactoryGymnaxEnv, make_gymnax_env

__all__ = ["HistFactoryEnv", "make_histfactory_env", "episode_key"]

_SEED_MOD = 2**63
# "rgb_array" is offered where matplotlib (an optional dependency) is installed
RENDER_MODES = ["rgb_array"] if importlib.util.find_spec("matplotlib") is not None else []


# --------------------------------------------------------------------------
# keys, spaces, infos: shared with the vector faces
# --------------------------------------------------------------------------


def _seed_int(seed) -> int:
    try:
        s = int(seed)
    except (TypeError, ValueError):
        raise InvalidInput(f"seed must be an int or None, got {seed!r}") from None
    if s < 0:
        raise InvalidInput(f"seed must be >= 0, got {s}")
    return s % _SEED_MOD


def next_episode(env: gymnasium.Env, seed) -> tuple[int, int]:
    """``(base_seed, episode)`` after ``env.reset(seed=seed)`` (gymnasium's
    ``super().reset`` already called): a seed starts episode 0 of that seed;
    no seed continues with the next episode, the first one drawn from
    ``env.np_random``. Reads ``env._base_seed`` / ``env._episode``."""
    if seed is not None:
        return _seed_int(seed), 0
    if env._base_seed is None:
        return int(env.np_random.integers(0, _SEED_MOD)), 0
    return env._base_seed, env._episode + 1


def masked_infos(fields: dict, mask) -> dict:
    """gymnasium vector ``infos``: each field (num_envs, ...) with its
    ``"_" + key`` mask; entries outside ``mask`` zeroed."""
    mask = np.asarray(mask, bool)
    infos = {}
    for key, arr in fields.items():
        arr = np.asarray(arr)
        if not mask.all():
            arr = np.where(mask.reshape(mask.shape + (1,) * (arr.ndim - 1)), arr, np.zeros_like(arr))
        infos[key] = np.array(arr)
        infos["_" + key] = mask.copy()
    return infos


@x64
def episode_key(seed: int, episode: int = 0) -> jax.Array:
    """The gymnax reset key of episode ``episode`` after ``reset(seed=seed)``
    (see the module doc): ``jax.random.fold_in(jax.random.key(seed), episode)``."""
    return jax.random.fold_in(jax.random.key(_seed_int(seed)), int(episode))


def _spaces(config: TaskConfig, params: TaskParams, obs_dtype=np.float64):
    """(observation_space, action_space) of one env."""
    n = config.n_bins
    lo, hi = observation_bounds(config, params)
    obs = spaces.Box(np.full(n, lo, obs_dtype), np.full(n, hi, obs_dtype), (n,), obs_dtype)
    act = spaces.Box(np.full(n, -1.0, np.float32), np.full(n, 1.0, np.float32), (n,), np.float32)
    return obs, act


def _named_metric(reward_metric: str, metric: float) -> dict:
    """NextStat's info keys for the metric value."""
    if reward_metric == "z0":
        return {"q0": metric * metric, "z0": metric}
    if reward_metric == "zmu":
        return {"qmu": metric * metric, "zmu": metric}
    return {reward_metric: metric}


def check_action(action, n_bins: int, where: str) -> np.ndarray:
    """``action`` as float64 array of shape ``(n_bins,)``; raises
    :class:`InvalidInput` for a wrong shape, a non-numeric value or NaN."""
    try:
        a = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInput(
            f"{where}: the action must be a float array of shape ({n_bins},), got {type(action).__name__}"
        ) from None
    if a.shape != (n_bins,):
        raise InvalidInput(f"{where}: the action must have shape ({n_bins},) (one entry per bin), got shape {a.shape}")
    bad = np.isnan(a)
    if bad.any():
        raise InvalidInput(
            f"{where}: the action of shape ({n_bins},) has NaN at index {int(np.argmax(bad))}; "
            "expected finite values in [-1, 1]"
        )
    return a


def _check_render_mode(render_mode) -> None:
    if render_mode is None or render_mode in RENDER_MODES:
        return
    if render_mode == "rgb_array":
        raise gymnasium.error.DependencyNotInstalled('render_mode="rgb_array" needs matplotlib (pip install matplotlib)')
    raise InvalidInput(f"render_mode must be None or 'rgb_array', got {render_mode!r}")


def render_frame(nominal, yields, *, title: str = "", size=(480, 320)) -> np.ndarray:
    """An RGB ``uint8`` frame (H, W, 3): the current vs the nominal yields."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib is optional
        raise gymnasium.error.DependencyNotInstalled(
            'render_mode="rgb_array" needs matplotlib (pip install matplotlib)'
        ) from exc
    nominal = np.asarray(nominal, float)
    yields = np.asarray(yields, float)
    w, h = size
    fig = Figure(figsize=(w / 100.0, h / 100.0), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(nominal) + 1)
    ax.stairs(nominal, x, color="0.5", linewidth=1.5, label="nominal")
    ax.stairs(yields, x, color="#D4AF37", linewidth=2.0, label="current")
    lo = min(float(nominal.min()), float(yields.min()))
    hi = max(float(nominal.max()), float(yields.max()))
    if lo > 0 and hi / lo > 100.0:
        ax.set_yscale("log")
    ax.set_xlabel("bin")
    ax.set_ylabel("yield")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


# --------------------------------------------------------------------------
# jitted single-env transition (compiled once per task structure)
# --------------------------------------------------------------------------


def _pack(state: TaskState, *scalars):
    """One float64 row: yields, metric, converged, time, then ``scalars`` (a
    single host transfer per step)."""
    extra = [state.metric, state.converged, state.time] + list(scalars)
    return jnp.concatenate([state.yields, jnp.stack([jnp.asarray(x, state.yields.dtype) for x in extra])])


def _unpack(row: np.ndarray, n: int):
    """Host view of :func:`_pack`: (yields, metric, converged, time), then the scalars."""
    return (row[:n], row[n], bool(row[n + 1]), int(row[n + 2])), row[n + 3:]


@functools.partial(jax.jit, static_argnums=0)
def _reset_one(genv: HistFactoryGymnaxEnv, params: TaskParams, base_key, episode):
    _, state = genv.reset_env(jax.random.fold_in(base_key, episode), params)
    return state, _pack(state)


@functools.partial(jax.jit, static_argnums=0)
def _step_one(genv: HistFactoryGymnaxEnv, params: TaskParams, state: TaskState, action):
    key = jax.random.key(0)  # unused: the transition is deterministic
    _, new, reward, terminated, _ = genv.step_env(key, state, action, params)
    return new, _pack(new, reward, terminated, genv.is_truncated(new, params))


class HistFactoryEnv(gymnasium.Env):
    """Reshape one sample's yields to optimise a HistFactory statistic
    (gymnasium API; module doc for spaces, actions, infos and seeding).

    ``workspace``: pyhf workspace as dict, JSON string or path, a
    :class:`~nextstat_jax.Workspace` or a :class:`~nextstat_jax.Model`.
    Keyword arguments as :func:`make_histfactory_env`.

    Attributes: :attr:`gymnax_env` and :attr:`params` (the same task as a
    gymnax environment), :attr:`nominal` (float64 array).
    """

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 4}

    def __init__(
        self,
        workspace: Any,
        channel: str,
        sample: str,
        *,
        reward_metric: str = "nll",
        mu_test: float = 5.0,
        max_steps: int = 128,
        action_scale: float = 0.05,
        action_mode: str = "logmul",
        init_noise: float = 0.0,
        clip_min: float = 1e-12,
        clip_max: float = 1e12,
        reward_mode: str = "absolute",
        data: str = "observed",
        yield_budget=None,
        render_mode: Optional[str] = None,
        options: SolverOptions = SolverOptions(),
        fixed_params=None,
        mle_max_iter: Optional[int] = None,
        mle_tol: Optional[float] = None,
        mle_m: Optional[int] = None,
    ) -> None:
        super().__init__()
        _check_render_mode(render_mode)
        if fixed_params is not None:
            raise InvalidInput(
                "fixed_params is not supported: the 'nll' metric is evaluated at the model's suggested init"
            )
        # NextStat's L-BFGS settings: ``mle_max_iter`` caps our Newton
        # iterations; ``mle_tol``/``mle_m`` have no counterpart and are ignored.
        del mle_tol, mle_m
        if mle_max_iter is not None:
            options = options._replace(max_iter=int(mle_max_iter))
        self.gymnax_env, self.params = make_gymnax_env(
            workspace, channel, sample,
            reward_metric=reward_metric, mu_test=mu_test, max_steps=max_steps,
            action_scale=action_scale, action_mode=action_mode, init_noise=init_noise,
            clip_min=clip_min, clip_max=clip_max, reward_mode=reward_mode, data=data,
            yield_budget=yield_budget, options=options,
        )
        self.config: TaskConfig = self.gymnax_env.config
        self.channel, self.sample = channel, sample
        self.reward_metric = reward_metric
        self.mu_test = float(mu_test)
        self.max_steps = int(max_steps)
        self.action_scale = float(action_scale)
        self.action_mode = action_mode
        self.init_noise = float(init_noise)
        self.clip_min, self.clip_max = float(clip_min), float(clip_max)
        self.render_mode = render_mode
        self.nominal = np.asarray(jax.device_get(self.params.nominal), np.float64)
        self.observation_space, self.action_space = _spaces(self.config, self.params)
        self._base_seed = None
        self._episode = 0
        self._state: Optional[TaskState] = None
        self._last: Optional[tuple] = None  # host copy: (yields, metric, converged, time)

    # -- gymnasium API -----------------------------------------------------

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        """Start an episode (module doc for the keys); ``options`` is accepted and unused."""
        super().reset(seed=seed)
        self._base_seed, self._episode = next_episode(self, seed)
        self._state, row = self._reset_state(self._base_seed, self._episode)
        self._last, _ = _unpack(np.asarray(row), self.config.n_bins)
        return self._obs(), self._info()

    def step(self, action):
        if self._state is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        a = check_action(action, self.config.n_bins, f"{type(self).__name__}.step")
        self._state, row = self._jit_step(self._state, a)
        self._last, (r, te, tr) = _unpack(np.asarray(row), self.config.n_bins)
        return self._obs(), float(r), bool(te), bool(tr), self._info()

    def render(self):
        if self.render_mode is None:
            gymnasium.logger.warn(
                "render() called with render_mode=None; pass render_mode='rgb_array' to the constructor")
            return None
        yields = self.nominal if self._last is None else self._last[0]
        title = f"{self.channel}/{self.sample}"
        if self._last is not None:
            title += f"  step {int(self._last[3])}  {self.reward_metric}={float(self._last[1]):.4g}"
        return render_frame(self.nominal, yields, title=title)

    def close(self):
        self._state = None

    # -- helpers -----------------------------------------------------------

    @x64
    def _reset_state(self, seed: int, episode: int):
        return _reset_one(self.gymnax_env, self.params, jax.random.key(seed), jnp.asarray(episode, jnp.int32))

    @x64
    def _jit_step(self, state, action):
        return _step_one(self.gymnax_env, self.params, state, action)

    def _obs(self) -> np.ndarray:
        return np.array(self._last[0], dtype=np.float64)

    def _info(self) -> dict:
        y, m, c, t = self._last
        metric = float(m)
        info = {
            "yields": np.array(y, dtype=np.float64),
            "metric": metric,
            "converged": bool(c),
            "step": int(t),
            "reward_metric": self.reward_metric,
        }
        info.update(_named_metric(self.reward_metric, metric))
        return info

    @property
    def yields(self) -> Optional[np.ndarray]:
        """Current yields (a copy), None before the first reset."""
        return None if self._last is None else np.array(self._last[0], dtype=np.float64)

    def __repr__(self) -> str:
        c = self.config
        return (f"<HistFactoryEnv channel={c.channel!r} sample={c.sample!r} n_bins={c.n_bins} "
                f"reward_metric={c.reward_metric!r} data={c.data!r} budget={c.budget}>")


def make_histfactory_env(
    workspace_json: Any,
    channel: str,
    sample: str,
    *,
    reward_metric: str = "nll",
    mu_test: float = 5.0,
    max_steps: int = 128,
    action_scale: float = 0.05,
    action_mode: str = "logmul",
    init_noise: float = 0.0,
    clip_min: float = 1e-12,
    clip_max: float = 1e12,
    reward_mode: str = "absolute",
    data: str = "observed",
    yield_budget=None,
    render_mode: Optional[str] = None,
    options: SolverOptions = SolverOptions(),
    **nextstat_kwargs,
) -> HistFactoryEnv:
    """A :class:`HistFactoryEnv` (a ``gymnasium.Env``); drop-in for
    ``nextstat.gym.make_histfactory_env`` with the same arguments and defaults.

    ``workspace_json``: JSON string (as NextStat), dict, path,
    :class:`~nextstat_jax.Workspace` or :class:`~nextstat_jax.Model`.
    ``reward_metric``: ``"nll"``, ``"q0"``, ``"z0"``, ``"qmu"``, ``"zmu"``;
    ``mu_test`` for qmu/zmu; ``max_steps`` episode length (truncation);
    ``action_scale``/``action_mode`` (``"logmul"``: ``y*exp(scale*a)``,
    ``"add"``: ``y + scale*a``); ``init_noise``: std of the log-normal reset
    noise; ``clip_min``/``clip_max``: yield bounds. Beyond NextStat:
    ``reward_mode`` (``"absolute"`` or ``"delta"``), ``data`` (``"observed"``
    or ``"asimov"``), ``yield_budget`` (None, ``"nominal"`` or a total),
    ``render_mode`` (None or ``"rgb_array"``) and solver ``options``.
    NextStat's ``mle_max_iter`` is honoured, ``mle_tol``/``mle_m`` are
    accepted and ignored, ``fixed_params`` is refused.
    """
    return HistFactoryEnv(
        workspace_json, channel, sample,
        reward_metric=reward_metric, mu_test=mu_test, max_steps=max_steps,
        action_scale=action_scale, action_mode=action_mode, init_noise=init_noise,
        clip_min=clip_min, clip_max=clip_max, reward_mode=reward_mode, data=data,
        yield_budget=yield_budget, render_mode=render_mode, options=options, **nextstat_kwargs,
    )
