"""The cut-optimisation task as an RL environment: one pure transition, two faces.

Same architecture as the yield environment (:mod:`nextstat_jax.gym`): a
pure transition (:func:`task_reset`, :func:`task_step`) on static settings
(:class:`CutTaskConfig`) and traced numbers (:class:`CutTaskParams`, which
hold the :class:`~nextstat_jax.cuts.CutModel`, so one compiled step serves
every event sample of the same structure), served as

* a gymnax environment (:class:`CutGymnaxEnv`, :func:`make_cut_gymnax_env`):
  pure JAX, jit/vmap/scan, trainable with :func:`nextstat_jax.rl.train_ppo`;
* a ``gymnasium.Env`` (:class:`CutEnv`, :func:`make_cut_env`) and a
  ``gymnasium.vector.VectorEnv`` stepping a batch in one jitted call
  (:class:`CutVectorEnv`, :func:`make_cut_vector_env`).

The task
--------
State: the thresholds (one per cut). Action: a vector in [-1, 1]^n_cuts;
``t <- clip(t + action_scale * (high - low) * a, low, high)`` with each cut's
range ``(low, high)``. Reward: the metric of the new selection,

* ``reward_metric="z0"`` (default): sqrt(q0); ``"q0"``: q0;
* ``data="asimov"`` (default): on the selection's own Asimov data (mu = 1,
  nominal nuisance parameters): the *expected* discovery significance; or
  ``data="observed"``: on the selected observed events (needs them in the
  :class:`~nextstat_jax.cuts.EventWorkspace`);
* ``reward_mode="absolute"`` (default): the metric; ``"delta"``: its change
  since the previous step;

computed with hard cuts (exact yields), or with relaxed cuts at
``temperature`` (a fraction of each range) if given.

Too few events: when the selection keeps fewer than ``min_events``
background MC events (unweighted; samples without the POI), the reward is
``-penalty`` instead, ``info["too_few_events"]`` is True, and with
``on_min_events="terminate"`` the episode ends (``terminated=True``);
with ``"penalty"`` (default) it goes on and the agent can loosen its cuts
again. A selection of nothing never gives NaN (the model floors yields, see
:mod:`nextstat_jax.cuts.model`), only a near-zero metric.

Episodes start at ``init_thresholds`` (default: the loosest cuts, every
event selected) plus, with ``init_noise > 0``, ``init_noise * (high - low) *
N(0, 1)`` (clipped): PPO's ``start_noise`` sets this field for training
(about 0.3 suits the task; the yield task's default 4.0 would pin every
start to a range end). They end by truncation at ``max_steps``.

Observation: the thresholds (n_cuts,), followed with ``observe_yields=True``
by the raw selected yields of every sample (S * B, ``sample_names`` order)
and with ``observe_metric=True`` by the current metric (capped at 1e12 so
that the observation space is bounded); float64. After a
reset, ``state.metric`` is the start's metric only when the task needs it
(``reward_mode="delta"`` or ``observe_metric``), 0 otherwise, so that
gymnax's reset on every step costs no fit (the Gymnasium faces still report
the start's metric in their reset info).

``info`` (every face): ``"thresholds"``, ``"metric"``, ``"converged"`` (the
fits behind the metric converged), ``"n_events"`` (selected background MC
events), ``"too_few_events"``, ``"yields"`` ((S, B) raw selected yields);
the Gymnasium faces add ``"step"``.

Invalid actions: the gymnax face maps NaN entries to 0 and clips the rest
into [-1, 1] (a jitted step cannot raise); the Gymnasium faces raise
:class:`~nextstat_jax.InvalidInput` for a wrong shape, a non-numeric action
or a NaN entry (the vector face for a wrong shape only, as the yield
environment's), and clip finite out-of-range entries.

Seeding (Gymnasium faces) follows :mod:`nextstat_jax.gym.gymnasium_env`:
episode ``e`` after ``reset(seed=s)`` starts as the gymnax face's
``reset(nextstat_jax.gym.episode_key(s, e), params)``; env ``i`` of a vector
``reset(seed=s)`` is seeded ``s + i``. So every face gives the same
trajectory for the same seed and actions (tested).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, Optional

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces as gspaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from gymnax.environments import spaces as xspaces

from .._pytree import pytree_dataclass
from .._x64 import f64, x64
from ..errors import InvalidInput
from ..gym.gymnasium_env import _SEED_MOD, _seed_int, episode_key, masked_infos, next_episode
from ..gym.gymnax_base import ConfiguredEnvironment, Float64Box
from ..solver import SolverOptions
from ..teststats import safe_sqrt
from .model import CutModel, make_cut_model

__all__ = [
    "CutTaskConfig", "CutTaskParams", "CutTaskState", "task_reset", "task_step",
    "CutGymnaxEnv", "make_cut_gymnax_env", "CutEnv", "make_cut_env", "CutVectorEnv", "make_cut_vector_env",
    "CUT_REWARD_METRICS",
]

CUT_REWARD_METRICS = ("z0", "q0")


class CutTaskConfig(NamedTuple):
    """Static settings (hashable): they fix the compiled code."""

    n_cuts: int
    n_samples: int
    n_bins: int
    reward_metric: str = "z0"
    data: str = "asimov"
    reward_mode: str = "absolute"
    relaxed: bool = False
    observe_yields: bool = False
    observe_metric: bool = False
    on_min_events: str = "penalty"
    options: SolverOptions = SolverOptions()

    @property
    def obs_size(self) -> int:
        return self.n_cuts + self.observe_yields * self.n_samples * self.n_bins + int(self.observe_metric)

    @property
    def metric_at_reset(self) -> bool:
        return self.reward_mode == "delta" or self.observe_metric


@pytree_dataclass
class CutTaskParams:
    """Everything numeric about the task (traced)."""

    cut_model: CutModel
    init_thresholds: jax.Array  # (C,)
    action_scale: jax.Array  # () fraction of each range per unit action
    init_noise: jax.Array  # () std of the reset noise, fraction of each range
    temperature: jax.Array  # () relaxed cuts (used when config.relaxed)
    min_events: jax.Array  # ()
    penalty: jax.Array  # ()
    max_steps_in_episode: jax.Array  # () int32
    reset_state: Any  # the noiseless reset state (CutTaskState), computed once


@pytree_dataclass
class CutTaskState:
    thresholds: jax.Array  # (C,)
    time: jax.Array  # () int32
    metric: jax.Array  # ()
    converged: jax.Array  # () bool
    n_events: jax.Array  # () selected background MC events
    yields: jax.Array  # (S, B) raw selected yields


def _temperature(config: CutTaskConfig, params: CutTaskParams):
    return params.temperature if config.relaxed else None


def evaluate_state(config: CutTaskConfig, params: CutTaskParams, t, with_metric: bool = True):
    """(metric, converged, yields (S, B), n_events) at thresholds ``t``."""
    cm = params.cut_model
    T = _temperature(config, params)
    if not with_metric:
        hist = cm._histograms(t, T)
        return jnp.zeros((), t.dtype), jnp.ones((), bool), hist[0], cm._n_background(hist)
    q0, conv, yields, nb = cm._evaluate(t, T, config.data, config.options)
    metric = safe_sqrt(q0) if config.reward_metric == "z0" else q0
    return metric, conv, yields, nb


def observation(config: CutTaskConfig, state: CutTaskState):
    parts = [state.thresholds]
    if config.observe_yields:
        parts.append(state.yields.reshape(-1))
    if config.observe_metric:
        parts.append(jnp.minimum(state.metric, METRIC_OBS_HIGH)[None])
    return jnp.concatenate(parts) if len(parts) > 1 else state.thresholds


def _start(config: CutTaskConfig, params: CutTaskParams, key, noisy: bool) -> CutTaskState:
    cm = params.cut_model
    t = params.init_thresholds
    if noisy:
        # float32 draws: random bits stay uint32 whatever the caller's x64 flag
        noise = jax.random.normal(key, t.shape, jnp.float32).astype(t.dtype)
        t = jnp.clip(t + params.init_noise * (cm.high - cm.low) * noise, cm.low, cm.high)
    metric, conv, yields, nb = evaluate_state(config, params, t, config.metric_at_reset)
    return CutTaskState(t, jnp.zeros((), jnp.int32), metric, conv, nb, yields)


def task_reset(config: CutTaskConfig, params: CutTaskParams, key) -> CutTaskState:
    """The start state (module doc); without noise the precomputed one."""
    return jax.lax.cond(
        params.init_noise > 0,
        lambda k: _start(config, params, k, True),
        lambda k: params.reset_state,
        key,
    )


def sanitize_action(action, dtype):
    """NaN -> 0, everything else clipped into [-1, 1]."""
    a = jnp.asarray(action, dtype)
    return jnp.clip(jnp.where(jnp.isnan(a), 0.0, a), -1.0, 1.0)


def task_step(config: CutTaskConfig, params: CutTaskParams, state: CutTaskState, action):
    """One transition: (new state, reward, terminated, info)."""
    cm = params.cut_model
    a = sanitize_action(action, state.thresholds.dtype)
    t = jnp.clip(state.thresholds + params.action_scale * (cm.high - cm.low) * a, cm.low, cm.high)
    metric, conv, yields, nb = evaluate_state(config, params, t)
    too_few = nb < params.min_events
    base = metric - state.metric if config.reward_mode == "delta" else metric
    reward = jnp.where(too_few, -params.penalty, base)
    terminated = too_few if config.on_min_events == "terminate" else jnp.zeros((), bool)
    new = CutTaskState(t, state.time + 1, metric, conv, nb, yields)
    info = {"thresholds": t, "metric": metric, "converged": conv, "n_events": nb,
            "too_few_events": too_few, "yields": yields}
    return new, reward, terminated, info


def make_cut_task(
    events: Any,
    *,
    reward_metric: str = "z0",
    data: str = "asimov",
    reward_mode: str = "absolute",
    max_steps: int = 32,
    action_scale: float = 0.05,
    init_thresholds=None,
    init_noise: float = 0.0,
    temperature: Optional[float] = None,
    min_events: float = 0.0,
    penalty: float = 1.0,
    on_min_events: str = "penalty",
    observe_yields: bool = False,
    observe_metric: bool = False,
    options: SolverOptions = SolverOptions(),
) -> tuple[CutTaskConfig, CutTaskParams]:
    """Validate the settings and build (config, params) (module doc)."""
    cm = events if isinstance(events, CutModel) else make_cut_model(events)
    if reward_metric not in CUT_REWARD_METRICS:
        raise InvalidInput(f"reward_metric must be one of {list(CUT_REWARD_METRICS)}, got {reward_metric!r}")
    if data not in ("asimov", "observed"):
        raise InvalidInput(f"data must be 'asimov' or 'observed', got {data!r}")
    if data == "observed" and not cm.layout.has_observed:
        raise InvalidInput("data='observed' needs observed events in the EventWorkspace")
    if reward_mode not in ("absolute", "delta"):
        raise InvalidInput(f"reward_mode must be 'absolute' or 'delta', got {reward_mode!r}")
    if on_min_events not in ("penalty", "terminate"):
        raise InvalidInput(f"on_min_events must be 'penalty' or 'terminate', got {on_min_events!r}")
    if not int(max_steps) > 0:
        raise InvalidInput(f"max_steps must be > 0, got {max_steps}")
    for name, v, ok in (("action_scale", action_scale, action_scale > 0), ("init_noise", init_noise, init_noise >= 0),
                        ("min_events", min_events, min_events >= 0), ("penalty", penalty, penalty >= 0)):
        if not (np.isfinite(v) and ok):
            raise InvalidInput(f"{name} must be finite and {'> 0' if name == 'action_scale' else '>= 0'}, got {v}")
    if temperature is not None and not (np.isfinite(temperature) and temperature > 0):
        raise InvalidInput(f"temperature must be None (hard cuts) or finite and > 0, got {temperature}")
    lo, hi = np.asarray(cm.low), np.asarray(cm.high)
    if init_thresholds is None:
        t0 = np.asarray(cm.loosest)
    else:
        t0 = np.asarray(init_thresholds, np.float64)
        if t0.shape != (cm.n_cuts,) or not np.all(np.isfinite(t0)):
            raise InvalidInput(f"init_thresholds must be finite with shape ({cm.n_cuts},), got {t0}")
        t0 = np.clip(t0, lo, hi)
    config = CutTaskConfig(
        cm.n_cuts, cm.layout.n_samples, cm.n_bins, reward_metric, data, reward_mode, temperature is not None,
        bool(observe_yields), bool(observe_metric), on_min_events, options,
    )
    params = CutTaskParams(
        cut_model=cm,
        init_thresholds=f64(t0),
        action_scale=f64(action_scale),
        init_noise=f64(init_noise),
        temperature=f64(1.0 if temperature is None else temperature),
        min_events=f64(min_events),
        penalty=f64(penalty),
        max_steps_in_episode=jnp.asarray(int(max_steps), jnp.int32),
        reset_state=None,
    )
    params = dataclasses.replace(params, reset_state=_jit_start(config, params))
    return config, params


@functools.partial(jax.jit, static_argnums=0)
def _jit_start(config, params):
    return _start(config, params, jax.random.key(0), False)


# --------------------------------------------------------------------------
# gymnax face
# --------------------------------------------------------------------------


METRIC_OBS_HIGH = 1e12  # upper bound of the observed metric (a finite Box bound)


def _obs_bounds(config: CutTaskConfig, params: CutTaskParams):
    """Finite (low, high) of the observation: the cut ranges; each sample's
    yield in a bin lies between the sums of its negative and of its positive
    weights there; the metric (z0 or q0) in [0, 1e12]."""
    cm = params.cut_model
    lo = [np.asarray(cm.low)]
    hi = [np.asarray(cm.high)]
    if config.observe_yields:
        B = config.n_bins
        w = [np.asarray(m)[:, :B] for m in cm.lin]
        lo.append(np.concatenate([np.minimum(x, 0.0).sum(0) for x in w]))
        hi.append(np.concatenate([np.maximum(x, 0.0).sum(0) for x in w]))
    if config.observe_metric:
        lo.append(np.asarray([0.0]))
        hi.append(np.asarray([METRIC_OBS_HIGH]))
    return np.concatenate(lo), np.concatenate(hi)


class CutGymnaxEnv(ConfiguredEnvironment):
    """Optimise analysis cuts (gymnax API; module doc for the task).

    Observation (float64): thresholds [, yields][, metric]. Action: float
    vector in [-1, 1]^n_cuts (NaN -> 0, out of range clipped). ``info``:
    ``thresholds``, ``metric``, ``converged``, ``n_events``,
    ``too_few_events``, ``yields`` (plus gymnax's ``terminated``,
    ``truncated``, ``final_observation``)."""

    def __repr__(self) -> str:
        c = self.config
        return (f"CutGymnaxEnv(n_cuts={c.n_cuts}, reward_metric={c.reward_metric!r}, data={c.data!r}, "
                f"relaxed={c.relaxed}, on_min_events={c.on_min_events!r})")

    @property
    def name(self) -> str:
        return "nextstat_jax/Cuts-v0"

    @x64
    def step_env(self, key, state: CutTaskState, action, params: CutTaskParams):
        new, reward, terminated, info = task_step(self.config, params, state, action)
        return observation(self.config, new), new, reward, terminated, info

    @x64
    def reset_env(self, key, params: CutTaskParams):
        state = task_reset(self.config, params, key)
        return observation(self.config, state), state

    def get_obs(self, state: CutTaskState, params=None, key=None):
        return observation(self.config, state)

    @property
    def num_actions(self) -> int:
        return self.config.n_cuts

    def action_space(self, params=None) -> xspaces.Box:
        return xspaces.Box(-1.0, 1.0, (self.config.n_cuts,), jnp.float32)

    def observation_space(self, params=None) -> xspaces.Box:
        params = self._params if params is None else params
        lo, hi = _obs_bounds(self.config, params)
        return Float64Box(lo, hi, (self.config.obs_size,))


def _to_cut_model(events) -> CutModel:
    if isinstance(events, CutModel):
        return events
    return make_cut_model(events)


@x64
def make_cut_gymnax_env(events: Any, **kwargs):
    """``(env, params)`` for the cut task (pure JAX, gymnax API).

    ``events``: an :class:`~nextstat_jax.cuts.EventWorkspace` (or its dict /
    JSON / path form) or a :class:`~nextstat_jax.cuts.CutModel`. Keyword
    arguments (module doc): ``reward_metric="z0"``, ``data="asimov"``,
    ``reward_mode="absolute"``, ``max_steps=32``, ``action_scale=0.05``,
    ``init_thresholds=None`` (loosest), ``init_noise=0.0``,
    ``temperature=None`` (hard cuts), ``min_events=0``, ``penalty=1.0``,
    ``on_min_events="penalty"``, ``observe_yields=False``,
    ``observe_metric=False``, solver ``options``."""
    config, params = make_cut_task(_to_cut_model(events), **kwargs)
    return CutGymnaxEnv(config, params), params


# --------------------------------------------------------------------------
# Gymnasium faces
# --------------------------------------------------------------------------


def _pack(config: CutTaskConfig, state: CutTaskState, *scalars):
    """One float64 row: obs, thresholds, metric, converged, n_events, time,
    yields, then ``scalars`` (one host transfer per step)."""
    dt = state.thresholds.dtype
    head = [observation(config, state), state.thresholds,
            jnp.stack([state.metric, state.converged.astype(dt), state.n_events, state.time.astype(dt)]),
            state.yields.reshape(-1)]
    tail = [jnp.stack([jnp.asarray(x, dt) for x in scalars])] if scalars else []
    return jnp.concatenate(head + tail)


def _unpack(config: CutTaskConfig, row: np.ndarray):
    """Host view of :func:`_pack` (works on (..., width) blocks)."""
    o, c = config.obs_size, config.n_cuts
    k = config.n_samples * config.n_bins
    obs = row[..., :o]
    th = row[..., o : o + c]
    m, conv, ne, t = (row[..., o + c + i] for i in range(4))
    y = row[..., o + c + 4 : o + c + 4 + k].reshape(row.shape[:-1] + (config.n_samples, config.n_bins))
    rest = row[..., o + c + 4 + k :]
    return {"obs": obs, "thresholds": th, "metric": m, "converged": conv != 0, "n_events": ne,
            "time": t.astype(np.int64), "yields": y}, rest


def _host_info(host: dict, min_events: float) -> dict:
    """The info dict of one env from its host view."""
    ne = float(host["n_events"])
    return {
        "thresholds": np.array(host["thresholds"], np.float64),
        "metric": float(host["metric"]),
        "converged": bool(host["converged"]),
        "n_events": ne,
        "too_few_events": bool(ne < min_events),
        "yields": np.array(host["yields"], np.float64),
        "step": int(host["time"]),
    }


def _start_metric(config: CutTaskConfig, params: CutTaskParams, state: CutTaskState):
    """(metric, converged) of a start state for the reset infos: the state's own
    when the task computes it at reset, else computed here."""
    if config.metric_at_reset:
        return state.metric, state.converged
    metric, conv, _, _ = evaluate_state(config, params, state.thresholds)
    return metric, conv


@functools.partial(jax.jit, static_argnums=0)
def _reset_one(genv: CutGymnaxEnv, params, key):
    _, state = genv.reset_env(key, params)
    metric, conv = _start_metric(genv.config, params, state)
    return state, _pack(genv.config, state, metric, conv)


@functools.partial(jax.jit, static_argnums=0)
def _step_one(genv: CutGymnaxEnv, params, state, action):
    _, new, reward, terminated, _ = genv.step_env(jax.random.key(0), state, action, params)
    return new, _pack(genv.config, new, reward, terminated, genv.is_truncated(new, params))


def _spaces(config: CutTaskConfig, params: CutTaskParams, obs_dtype=np.float64):
    lo, hi = _obs_bounds(config, params)
    obs = gspaces.Box(lo.astype(obs_dtype), hi.astype(obs_dtype), (config.obs_size,), obs_dtype)
    c = config.n_cuts
    act = gspaces.Box(np.full(c, -1.0, np.float32), np.full(c, 1.0, np.float32), (c,), np.float32)
    return obs, act


def _check_action(action, n: int, where: str) -> np.ndarray:
    try:
        a = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInput(f"{where}: the action must be a float array of shape ({n},), "
                           f"got {type(action).__name__}") from None
    if a.shape != (n,):
        raise InvalidInput(f"{where}: the action must have shape ({n},) (one entry per cut), got shape {a.shape}")
    if np.isnan(a).any():
        raise InvalidInput(f"{where}: the action has NaN at index {int(np.argmax(np.isnan(a)))}; "
                           "expected finite values in [-1, 1]")
    return a


class CutEnv(gymnasium.Env):
    """The cut task as a ``gymnasium.Env`` (module doc); every step is one
    jitted float64 call of the shared transition.

    Attributes: :attr:`gymnax_env`, :attr:`params` (the same task as a
    gymnax environment), :attr:`cut_model`, :attr:`thresholds` (current)."""

    metadata = {"render_modes": [], "render_fps": 4}

    def __init__(self, events: Any, *, render_mode: Optional[str] = None, **kwargs):
        super().__init__()
        if render_mode is not None:
            raise InvalidInput(f"render_mode must be None, got {render_mode!r}")
        self.render_mode = None
        self.gymnax_env, self.params = make_cut_gymnax_env(events, **kwargs)
        self.config: CutTaskConfig = self.gymnax_env.config
        self.cut_model = self.params.cut_model
        self.min_events = float(self.params.min_events)
        self.observation_space, self.action_space = _spaces(self.config, self.params)
        self._base_seed = None
        self._episode = 0
        self._state = None
        self._host = None

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        """Start an episode (module doc for the keys); ``options`` is unused."""
        super().reset(seed=seed)
        self._base_seed, self._episode = next_episode(self, seed)
        self._state, row = self._reset(episode_key(self._base_seed, self._episode))
        self._host, (metric, conv) = _unpack(self.config, np.asarray(row))
        info = _host_info(self._host, self.min_events)
        info["metric"], info["converged"] = float(metric), bool(conv)
        return self._host["obs"].copy(), info

    def step(self, action):
        if self._state is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        a = _check_action(action, self.config.n_cuts, f"{type(self).__name__}.step")
        self._state, row = self._step(self._state, a)
        self._host, (r, te, tr) = _unpack(self.config, np.asarray(row))
        return (self._host["obs"].copy(), float(r), bool(te), bool(tr),
                _host_info(self._host, self.min_events))

    @x64
    def _reset(self, key):
        return _reset_one(self.gymnax_env, self.params, key)

    @x64
    def _step(self, state, action):
        return _step_one(self.gymnax_env, self.params, state, f64(action))

    def close(self):
        self._state = None

    @property
    def thresholds(self) -> Optional[np.ndarray]:
        return None if self._host is None else self._host["thresholds"].copy()

    def __repr__(self) -> str:
        return f"<CutEnv {self.gymnax_env!r}>"


def make_cut_env(events: Any, **kwargs) -> CutEnv:
    """A :class:`CutEnv` (``gymnasium.Env``) for the cut task. ``events`` and
    keyword arguments as :func:`make_cut_gymnax_env`."""
    return CutEnv(events, **kwargs)


def _select(mask, a, b):
    def one(x, y):
        return jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 1)), x, y)
    return jax.tree_util.tree_map(one, a, b)


def _keys(seeds, episodes):
    return jax.vmap(lambda s, e: jax.random.fold_in(jax.random.key(s), e))(seeds, episodes)


@functools.partial(jax.jit, static_argnums=0)
def _batch_reset(genv: CutGymnaxEnv, params, seeds, episodes, state, mask):
    def one(k):
        _, st = genv.reset_env(k, params)
        return (st,) + _start_metric(genv.config, params, st)

    fresh, metric, conv = jax.vmap(one)(_keys(seeds, episodes))
    new = _select(mask, fresh, state)
    rows = jax.vmap(lambda s, m, c: _pack(genv.config, s, m, c))(new, metric, conv)
    return new, rows


@functools.partial(jax.jit, static_argnums=0)
def _batch_step(genv: CutGymnaxEnv, params, seeds, episodes, state, actions):
    key = jax.random.key(0)

    def one(st, a):
        _, new, reward, terminated, _ = genv.step_env(key, st, a, params)
        return new, reward, terminated, genv.is_truncated(new, params)

    stepped, reward, terminated, truncated = jax.vmap(one)(state, actions)
    done = terminated | truncated
    episodes = episodes + done.astype(episodes.dtype)

    def with_resets():
        def fresh_one(k):
            st = genv.reset_env(k, params)[1]
            return (st,) + _start_metric(genv.config, params, st)

        fresh, metric, conv = jax.vmap(fresh_one)(_keys(seeds, episodes))
        return (_select(done, fresh, stepped), jnp.where(done, metric, stepped.metric),
                jnp.where(done, conv, stepped.converged))

    out, metric, conv = jax.lax.cond(
        jnp.any(done), with_resets, lambda: (stepped, stepped.metric, stepped.converged))
    rows_out = jax.vmap(lambda s, m, c: _pack(genv.config, s, m, c))(out, metric, conv)
    rows_st = jax.vmap(lambda s, r, te, tr: _pack(genv.config, s, r, te, tr))(stepped, reward, terminated, truncated)
    return out, episodes, rows_out, rows_st


class CutVectorEnv(VectorEnv):
    """``num_envs`` cut tasks stepped in one jitted vmapped call, same-step
    autoreset (as gymnasium's ``SyncVectorEnv`` in ``AutoresetMode.SAME_STEP``).

    ``infos``: dict of batched arrays with ``"_key"`` masks (the single env's
    keys); for an env that just ended they describe its new episode's start
    (its metric included), and ``"final_obs"`` and ``"final_info"`` hold its
    last observation and step info. ``reset(seed=int | list,
    options={"reset_mask": bool array})``."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": [], "render_fps": 4}

    def __init__(self, events: Any, num_envs: int, **kwargs):
        num_envs = int(num_envs)
        if num_envs < 1:
            raise InvalidInput(f"num_envs must be >= 1, got {num_envs}")
        self.gymnax_env, self.params = make_cut_gymnax_env(events, **kwargs)
        self.config: CutTaskConfig = self.gymnax_env.config
        self.num_envs = num_envs
        self.render_mode = None
        self.min_events = float(self.params.min_events)
        self.single_observation_space, self.single_action_space = _spaces(self.config, self.params)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._seeds = None
        self._have = np.zeros(num_envs, bool)
        self._episodes = None
        self._state = None

    def reset(self, *, seed=None, options: Optional[dict] = None):
        n = self.num_envs
        if seed is None:
            seeds = [None] * n
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(n)]
            super().reset(seed=int(seed))
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise InvalidInput(f"a list of seeds must have length num_envs={n}, got {len(seeds)}")
        mask = np.ones(n, bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"])
            if mask.shape != (n,) or mask.dtype != np.bool_:
                raise InvalidInput(f"options['reset_mask'] must be a bool array of shape ({n},)")
        return self._reset(seeds, mask)

    @x64
    def _reset(self, seeds, mask):
        n = self.num_envs
        if self._state is None:
            mask = np.ones(n, bool)
            self._seeds = np.zeros(n, np.int64)
            episodes = np.zeros(n, np.int32)
            state = jax.tree_util.tree_map(lambda s: jnp.zeros((n,) + s.shape, s.dtype),
                                           self.params.reset_state)
        else:
            episodes = np.asarray(self._episodes).copy()
            state = self._state
        for i in np.flatnonzero(mask):
            s = seeds[i]
            if s is not None:
                self._seeds[i], episodes[i], self._have[i] = _seed_int(s), 0, True
            elif not self._have[i]:
                self._seeds[i], episodes[i], self._have[i] = int(self.np_random.integers(0, _SEED_MOD)), 0, True
            else:
                episodes[i] += 1
        self._seeds_dev = jnp.asarray(self._seeds)
        self._episodes = jnp.asarray(episodes)
        self._state, rows = _batch_reset(self.gymnax_env, self.params, self._seeds_dev, self._episodes, state,
                                         jnp.asarray(mask))
        host, rest = _unpack(self.config, np.asarray(rows))
        host["metric"], host["converged"] = rest[:, 0], rest[:, 1] != 0
        return host["obs"].copy(), self._infos(host, mask)

    @x64
    def step(self, actions):
        if self._state is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        a = np.asarray(actions, dtype=np.float64)
        n, c = self.num_envs, self.config.n_cuts
        if a.shape != (n, c):
            raise InvalidInput(f"the actions must have shape ({n}, {c}) (num_envs, n_cuts), got {a.shape}")
        self._state, self._episodes, rows_out, rows_st = _batch_step(
            self.gymnax_env, self.params, self._seeds_dev, self._episodes, self._state, f64(a))
        host, rest_out = _unpack(self.config, np.asarray(rows_out))
        host["metric"], host["converged"] = rest_out[:, 0], rest_out[:, 1] != 0
        final, rest = _unpack(self.config, np.asarray(rows_st))
        reward, terminated, truncated = rest[:, 0], rest[:, 1] != 0, rest[:, 2] != 0
        done = terminated | truncated
        infos = self._infos(host, np.ones(n, bool))
        if done.any():
            final_obs = np.full(n, None, dtype=object)
            for i in np.flatnonzero(done):
                final_obs[i] = final["obs"][i].copy()
            infos["final_obs"], infos["_final_obs"] = final_obs, done.copy()
            infos["final_info"], infos["_final_info"] = self._infos(final, done), done.copy()
        return host["obs"].copy(), reward.astype(np.float64), terminated, truncated, infos

    def _infos(self, host: dict, mask) -> dict:
        fields = {
            "thresholds": host["thresholds"], "metric": np.asarray(host["metric"], np.float64),
            "converged": np.asarray(host["converged"], bool), "n_events": np.asarray(host["n_events"], np.float64),
            "too_few_events": np.asarray(host["n_events"]) < self.min_events, "yields": host["yields"],
            "step": np.asarray(host["time"], np.int64),
        }
        return masked_infos(fields, mask)

    def __repr__(self) -> str:
        return f"CutVectorEnv(num_envs={self.num_envs}, {self.gymnax_env!r})"


def make_cut_vector_env(events: Any, num_envs: int, **kwargs) -> CutVectorEnv:
    """A :class:`CutVectorEnv` (``gymnasium.vector.VectorEnv``) of ``num_envs``
    cut tasks. Keyword arguments as :func:`make_cut_gymnax_env`."""
    return CutVectorEnv(events, num_envs, **kwargs)
