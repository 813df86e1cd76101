"""Evaluation of a policy on a gymnax environment (pure, vmapped episodes)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from .._x64 import x64

__all__ = ["evaluate", "random_policy"]


def random_policy(action_dim: int):
    """A policy drawing uniform actions in [-1, 1] (keyed; for baselines)."""

    def policy(obs, key):
        return jax.random.uniform(key, (action_dim,), jnp.float32, minval=-1.0, maxval=1.0)

    return policy


@x64
def evaluate(env, params, policy, key, n_episodes: int = 16, n_steps=None, keyed: bool = False):
    """Run ``n_episodes`` episodes of ``n_steps`` (default: the episode length)
    with ``policy(obs)`` (or ``policy(obs, key)`` if ``keyed``).

    Returns a dict of NumPy arrays (results to report: host float64, so that
    ``np.mean`` of them stays float64 whatever the user's ``jax_enable_x64``;
    on a jax float64 array with the flag off it would run in float32):
    ``return`` (n_episodes,), ``final_metric`` (n_episodes,), ``metric``
    (n_episodes, n_steps), ``yields`` (n_episodes, n_steps + 1, n_bins)."""
    n_steps = int(params.max_steps_in_episode) if n_steps is None else int(n_steps)
    return jax.device_get(_evaluate(env, params, policy, key, n_episodes, n_steps, keyed))


@partial(jax.jit, static_argnums=(0, 2, 4, 5, 6))
def _evaluate(env, params, policy, key, n_episodes, n_steps, keyed):
    def episode(k):
        k_reset, k_run = jax.random.split(k)
        obs, state = env.reset(k_reset, params)

        def body(carry, k):
            obs, state = carry
            k_act, k_step = jax.random.split(k)
            action = policy(obs, k_act) if keyed else policy(obs)
            obs2, state2, reward, term, trunc, info = env.step(k_step, state, action, params)
            # record the pre-reset observation of the last step
            return (obs2, state2), (reward, info["metric"], info["final_observation"])

        _, (rewards, metrics, obs_seq) = jax.lax.scan(body, (obs, state), jax.random.split(k_run, n_steps))
        yields = jnp.concatenate([obs[None], obs_seq], axis=0)
        return jnp.sum(rewards), metrics[-1], metrics, yields

    ret, final, metric, yields = jax.vmap(episode)(jax.random.split(key, n_episodes))
    return {"return": ret, "final_metric": final, "metric": metric, "yields": yields}
