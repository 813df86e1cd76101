"""Proximal Policy Optimisation in pure JAX for gymnax environments with a
continuous (Box) action space.

The whole update — rollout of ``num_steps`` in ``num_envs`` vmapped
environments, GAE, ``update_epochs`` x ``num_minibatches`` gradient steps — is
one jitted function; updates run as a ``lax.scan`` in chunks, with the
progress bar updated on the host between chunks; ``num_seeds > 1`` trains
several seeds at once with ``vmap``.  Design notes:

* Gaussian policy with a state-independent log-std; actions are sampled
  unclipped (log-probabilities stay exact) and the environment clips them.
* Every episode here ends by truncation: GAE bootstraps a truncated step from
  ``V(info["final_observation"])`` and stops the advantage recursion at
  episode boundaries, so time limits are not treated as terminal states.
* Observations are normalised with running statistics, rewards scaled by the
  running std of the discounted return (as SB3's VecNormalize).
* Networks and the update run in float32; the environment keeps its own
  precision (float64 statistics for nextstat_jax's environments). The whole
  training function is traced in JAX's float64 mode (``nextstat_jax.float64``),
  so that vmapping/scanning the environment never transforms float64 code
  outside it; every PPO array has an explicit float32 dtype.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._x64 import x64
from ..errors import InvalidInput
from .networks import ActorCritic
from .normalize import RunningStats, init_stats, normalize, update_stats

__all__ = ["PPOConfig", "TrainOutput", "train_ppo", "make_policy"]


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO settings; every default trains the seed task (see the docs).

    Batch: ``num_envs * num_steps`` transitions per update, split into
    ``num_minibatches`` for ``update_epochs`` epochs. ``num_updates`` and
    ``minibatch_size`` are derived. ``log_every``: updates per jitted chunk
    (progress bar refresh).

    ``start_noise``: exploration by randomised starts. The seed task's
    landscape is a staircase of local optima (all signal in bin 4, 5, 6, 7:
    q0 12.0, 14.5, 17.3, 20.4), and per-step Gaussian action noise rarely
    climbs it; training episodes therefore start from the nominal yields times
    ``exp(N(0, start_noise))`` (the environment's ``init_noise`` parameter,
    raised for training only; evaluation uses the env's own parameters).
    None keeps the environment's setting (and is required for environments
    without an ``init_noise`` parameter)."""

    total_timesteps: int = 4_194_304
    num_envs: int = 1024
    num_steps: int = 32
    update_epochs: int = 4
    num_minibatches: int = 8
    learning_rate: float = 3e-4
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: tuple = (64, 64)
    activation: str = "tanh"
    log_std_init: float = 0.0
    normalize_obs: bool = True
    log_obs: bool = False
    normalize_reward: bool = True
    start_noise: Optional[float] = 4.0
    num_seeds: int = 1
    log_every: int = 4
    progress: Optional[bool] = None

    def __post_init__(self):
        checks = {
            "total_timesteps": self.total_timesteps >= self.num_envs * self.num_steps,
            "num_envs": self.num_envs >= 1,
            "num_steps": self.num_steps >= 1,
            "num_minibatches": self.num_minibatches >= 1
            and (self.num_envs * self.num_steps) % self.num_minibatches == 0,
            "update_epochs": self.update_epochs >= 1,
            "learning_rate": self.learning_rate > 0,
            "gamma": 0.0 <= self.gamma <= 1.0,
            "gae_lambda": 0.0 <= self.gae_lambda <= 1.0,
            "clip_eps": self.clip_eps > 0,
            "activation": self.activation in ("tanh", "relu"),
            "num_seeds": self.num_seeds >= 1,
            "log_every": self.log_every >= 1,
            "start_noise": self.start_noise is None or (math.isfinite(self.start_noise) and self.start_noise >= 0),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise InvalidInput(f"invalid PPOConfig field(s) {bad}: {self}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_size

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches


class _Train(NamedTuple):
    params: Any
    opt_state: Any
    obs_stats: RunningStats
    ret_stats: RunningStats
    env_state: Any
    obs: jax.Array
    disc_return: jax.Array  # (num_envs,) running discounted return (reward scaling)
    ep_return: jax.Array  # (num_envs,) undiscounted return of the running episode
    last_return: jax.Array  # () mean return of the episodes finished last
    last_metric: jax.Array  # () mean final metric of the episodes finished last
    key: jax.Array
    step: jax.Array


def _features(obs, config: "PPOConfig"):
    """Network input before normalisation: float32, log-transformed with
    ``log_obs`` (for positive observations spanning decades, such as yields)."""
    obs = jnp.asarray(obs)
    if config.log_obs:
        obs = jnp.log(jnp.clip(obs, 1e-12, None))
    return obs.astype(jnp.float32)


def _logp(x, mean, log_std):
    return jnp.sum(-0.5 * ((x - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)


def _masked_mean(x, mask, fallback):
    n = jnp.sum(mask)
    return jnp.where(n > 0, jnp.sum(jnp.where(mask, x, 0.0)) / jnp.maximum(n, 1), fallback)


def _make(env, env_params, config: PPOConfig):
    action_dim = int(np.prod(env.action_space(env_params).shape))
    obs_shape = env.observation_space(env_params).shape
    net = ActorCritic(action_dim, config.hidden, config.activation, config.log_std_init)
    n_opt_steps = config.num_updates * config.update_epochs * config.num_minibatches
    lr = (optax.linear_schedule(config.learning_rate, 0.0, max(n_opt_steps, 1))
          if config.anneal_lr else config.learning_rate)
    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(lr, eps=1e-5))
    step_envs = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    reset_envs = jax.vmap(env.reset, in_axes=(0, None))

    def norm_obs(stats, obs):
        return normalize(stats, _features(obs, config)) if config.normalize_obs else _features(obs, config)

    def init_network(key):
        """Network parameters of the seed ``key`` (the first of its three subkeys)."""
        return net.init(jax.random.split(key, 3)[0], jnp.zeros(obs_shape, jnp.float32))

    def init(key, params) -> _Train:
        _, k_env, key = jax.random.split(key, 3)
        obs, env_state = reset_envs(jax.random.split(k_env, config.num_envs), env_params)
        zeros = jnp.zeros((config.num_envs,), jnp.float32)
        return _Train(params, tx.init(params), init_stats(obs_shape), init_stats(()), env_state, obs,
                      zeros, zeros, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32), key,
                      jnp.zeros((), jnp.int32))

    def rollout_step(carry, _):
        s: _Train = carry
        key, k_act, k_env = jax.random.split(s.key, 3)
        obs_n = norm_obs(s.obs_stats, s.obs)
        mean, log_std, value = net.apply(s.params, obs_n)
        action = mean + jnp.exp(log_std) * jax.random.normal(k_act, mean.shape, mean.dtype)
        logp = _logp(action, mean, log_std)
        obs, env_state, reward, term, trunc, info = step_envs(
            jax.random.split(k_env, config.num_envs), s.env_state, action, env_params)
        reward = reward.astype(jnp.float32)
        done = term | trunc
        disc = s.disc_return * config.gamma + reward
        ep_ret = s.ep_return + reward
        metric = info.get("metric", reward).astype(jnp.float32)
        s = s._replace(
            env_state=env_state, obs=obs, key=key,
            disc_return=jnp.where(done, 0.0, disc), ep_return=jnp.where(done, 0.0, ep_ret),
            last_return=_masked_mean(ep_ret, done, s.last_return),
            last_metric=_masked_mean(metric, done, s.last_metric),
        )
        out = dict(obs=obs_n, raw_obs=obs, action=action, logp=logp, value=value, reward=reward,
                   disc=disc, term=term, trunc=trunc, final_obs=info["final_observation"], metric=metric)
        return s, out

    def loss_fn(params, batch):
        mean, log_std, value = net.apply(params, batch["obs"])
        logp = _logp(batch["action"], mean, log_std)
        ratio = jnp.exp(logp - batch["logp"])
        adv = batch["adv"]
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg = -jnp.mean(jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - config.clip_eps, 1 + config.clip_eps) * adv))
        vf = 0.5 * jnp.mean((value - batch["target"]) ** 2)
        ent = jnp.mean(jnp.sum(log_std + 0.5 * (1.0 + math.log(2 * math.pi)), axis=-1))
        total = pg + config.vf_coef * vf - config.ent_coef * ent
        return total, dict(policy_loss=pg, value_loss=vf, entropy=ent,
                           approx_kl=jnp.mean((ratio - 1) - jnp.log(ratio)))

    def update(s: _Train, _):
        s, traj = jax.lax.scan(rollout_step, s, None, length=config.num_steps)
        # reward scaling by the std of the discounted return
        ret_stats = update_stats(s.ret_stats, traj["disc"].reshape(-1)) if config.normalize_reward else s.ret_stats
        scale = jnp.sqrt(ret_stats.var + 1e-8) if config.normalize_reward else jnp.float32(1.0)
        reward = traj["reward"] / scale
        # values for bootstrapping: next obs, or the final obs of a truncated episode
        last_v = net.apply(s.params, norm_obs(s.obs_stats, s.obs))[2]
        final_v = net.apply(s.params, norm_obs(s.obs_stats, traj["final_obs"]))[2]
        next_v = jnp.concatenate([traj["value"][1:], last_v[None]], axis=0)
        next_v = jnp.where(traj["term"], 0.0, jnp.where(traj["trunc"], final_v, next_v))
        delta = (reward + config.gamma * next_v - traj["value"]).astype(jnp.float32)
        cont = 1.0 - (traj["term"] | traj["trunc"]).astype(jnp.float32)

        def gae_step(acc, x):
            d, c = x
            acc = d + config.gamma * config.gae_lambda * c * acc
            return acc, acc

        _, adv = jax.lax.scan(gae_step, jnp.zeros_like(delta[0]), (delta, cont), reverse=True)
        batch = dict(obs=traj["obs"], action=traj["action"], logp=traj["logp"], adv=adv,
                     target=adv + traj["value"])
        batch = jax.tree_util.tree_map(lambda x: x.reshape((config.batch_size,) + x.shape[2:]), batch)

        def epoch(carry, key):
            params, opt_state = carry
            perm = jax.random.permutation(key, config.batch_size)
            mbs = jax.tree_util.tree_map(
                lambda x: x[perm].reshape((config.num_minibatches, config.minibatch_size) + x.shape[1:]), batch)

            def minibatch(carry, mb):
                params, opt_state = carry
                (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, mb)
                updates, opt_state = tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), aux

            return jax.lax.scan(minibatch, (params, opt_state), mbs)

        key, k_epochs = jax.random.split(s.key)
        (params, opt_state), aux = jax.lax.scan(
            epoch, (s.params, s.opt_state), jax.random.split(k_epochs, config.update_epochs))
        obs_stats = (update_stats(s.obs_stats, _features(traj["raw_obs"], config).reshape((-1,) + obs_shape))
                     if config.normalize_obs else s.obs_stats)
        s = s._replace(params=params, opt_state=opt_state, obs_stats=obs_stats, ret_stats=ret_stats,
                       key=key, step=s.step + 1)
        metrics = {k: jnp.mean(v) for k, v in aux.items()}
        metrics.update(episode_return=s.last_return, metric=s.last_metric,
                       reward=jnp.mean(traj["reward"]), timesteps=s.step * config.batch_size)
        metrics = {k: v.astype(jnp.float32) for k, v in metrics.items()}
        return s, metrics

    return net, init_network, init, update


class TrainOutput(NamedTuple):
    """Result of :func:`train_ppo`.

    ``policy_params``: ``{"network": flax params, "obs_stats": RunningStats}``
    of the best seed (highest final metric); ``metrics``: dict of arrays, one
    entry per update (leading seed axis when ``num_seeds > 1``);
    ``all_params``: the policy params of every seed (leading axis) or None;
    ``config``, ``action_dim``, ``seconds``, ``env_steps``."""

    policy_params: Any
    metrics: dict
    config: PPOConfig
    action_dim: int
    seconds: float
    env_steps: int
    all_params: Any = None

    @property
    def policy(self) -> Callable:
        """Deterministic policy ``obs -> action`` (the mean, clipped to [-1, 1]);
        pure, jit- and vmap-able."""
        return make_policy(self.policy_params, self.config, self.action_dim)


def make_policy(policy_params, config: PPOConfig, action_dim: int) -> Callable:
    """The deterministic policy of trained parameters."""
    net = ActorCritic(action_dim, config.hidden, config.activation, config.log_std_init)

    def policy(obs):
        feats = _features(obs, config)
        obs_n = normalize(policy_params["obs_stats"], feats) if config.normalize_obs else feats
        mean, _, _ = net.apply(policy_params["network"], obs_n)
        return jnp.clip(mean, -1.0, 1.0)

    return policy


@x64
def train_ppo(env, params, config: PPOConfig = PPOConfig(), key=None) -> TrainOutput:
    """Train PPO on the gymnax environment ``env`` with parameters ``params``.

    Args:
        env, params: from :func:`nextstat_jax.gym.make_gymnax_env` (or any
            gymnax environment with a Box action space).
        config: :class:`PPOConfig`.
        key: PRNG key (default ``jax.random.key(0)``).
    """
    key = jax.random.key(0) if key is None else key
    if config.start_noise is not None and hasattr(params, "init_noise"):
        params = dataclasses.replace(params, init_noise=jnp.asarray(config.start_noise, params.init_noise.dtype))
    net, init_network, init, update = _make(env, params, config)
    n_seeds = config.num_seeds
    keys = jax.random.split(key, n_seeds)

    def chunk(state, n):
        return jax.lax.scan(update, state, None, length=n)

    # Network parameters seed by seed, each finished before the next starts:
    # orthogonal initialisation is a QR, and jaxlib's batched CPU QR kernels
    # split their batch over the same thread pool that runs them, so two at
    # once (a vmapped init next to other work) can deadlock a 2-core machine.
    init_net = jax.jit(init_network)
    nets = [jax.block_until_ready(init_net(k)) for k in keys]
    nets = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *nets)
    init_b = jax.jit(jax.vmap(init))
    chunk_b = jax.jit(jax.vmap(chunk, in_axes=(0, None)), static_argnums=1)
    state = init_b(keys, nets)
    total = config.num_updates
    history = []
    bar = _Progress(total, config) if _show(config) else None
    t0 = time.perf_counter()
    done = 0
    while done < total:
        n = min(config.log_every, total - done)
        state, metrics = chunk_b(state, n)
        metrics = jax.device_get(metrics)
        history.append(metrics)
        done += n
        if bar is not None:
            bar.update(done, metrics)
    jax.block_until_ready(state)
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    merged = {k: np.concatenate([h[k] for h in history], axis=1) for k in history[0]}
    best = int(np.argmax(merged["metric"][:, -1]))
    policy_b = {"network": state.params, "obs_stats": state.obs_stats}
    take = lambda i: jax.tree_util.tree_map(lambda x: x[i], policy_b)
    if n_seeds == 1:
        merged = {k: v[0] for k, v in merged.items()}
    action_dim = int(np.prod(env.action_space(params).shape))
    return TrainOutput(take(best), merged, config, action_dim, seconds, total * config.batch_size * n_seeds,
                       policy_b if n_seeds > 1 else None)


def _show(config: PPOConfig) -> bool:
    import sys

    return config.progress if config.progress is not None else sys.stderr.isatty()


class _Progress:
    def __init__(self, total: int, config: PPOConfig):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._p = Progress(TextColumn("PPO"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                           TimeRemainingColumn(), transient=False, console=Console(stderr=True))
        self._p.start()
        self._task = self._p.add_task("", total=total)

    def update(self, done: int, metrics: dict):
        ret = float(np.mean(metrics["episode_return"][..., -1]))
        met = float(np.mean(metrics["metric"][..., -1]))
        self._p.update(self._task, completed=done, description=f"return {ret:9.3f}  metric {met:8.4f}")

    def close(self):
        self._p.stop()
