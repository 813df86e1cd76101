"""The gymnax face (API.md §4): pure, jittable, vmappable, scannable.

* a vmapped batch of envs equals the loop of single envs, and ``lax.scan``
  equals the Python loop (across gymnax's same-step autoreset);
* same key -> same trajectory;
* no NaN under random, extreme (+/-1e6, +/-inf) and NaN actions: NaN entries
  are sanitised to 0 (a jitted step cannot raise; the Gymnasium face raises
  instead, see test_gym_gymnasium.py), out-of-range entries clipped to [-1, 1];
* ``yield_budget`` holds the total to 1e-9 relative;
* ``gymnax.make("nextstat_jax/HistFactory-v0", ...)`` and idempotent registration.

Runs with the user's ``jax_enable_x64`` off (JAX's default): the env computes
in float64 anyway.
"""

from __future__ import annotations

import importlib
import warnings

import gymnasium
import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nextstat_jax.gym as nsg
from nextstat_jax.datasets import seed_workspace

KW = dict(reward_metric="q0", max_steps=6, action_scale=0.05, init_noise=0.05)
N_BINS = 8


@pytest.fixture(scope="module")
def task():
    return nsg.make_gymnax_env(seed_workspace(), "SR", "signal", **KW)


@pytest.fixture(scope="module")
def vstep(task):
    """One jitted vmapped step shared by the tests (compiled once)."""
    env, _ = task
    return jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))


def _actions(seed, shape, kind="random"):
    """float32 actions (so that jnp.asarray with x64 off does not round them)."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1.0, 1.0, shape)
    if kind == "extreme":
        a = rng.choice([-1e6, 1e6, -np.inf, np.inf, 0.0], size=shape)
    elif kind == "nan":
        a = np.where(rng.uniform(size=shape) < 0.4, np.nan, a * 1e6)
    return a.astype(np.float32)


def _assert_finite(*trees):
    for leaf in jax.tree_util.tree_leaves(trees):
        arr = np.asarray(leaf)
        if arr.dtype.kind == "f":
            assert np.all(np.isfinite(arr)), arr


def test_types_spaces_and_float64(task):
    env, params = task
    obs, state = env.reset(jax.random.key(0), params)
    assert obs.dtype == jnp.float64 and obs.shape == (N_BINS,)
    obs, state, reward, terminated, truncated, info = env.step(jax.random.key(1), state, jnp.zeros(N_BINS), params)
    assert reward.dtype == jnp.float64 and obs.dtype == jnp.float64
    assert {"yields", "metric", "converged", "final_observation"} <= set(info)
    assert info["yields"].dtype == jnp.float64 and info["metric"].dtype == jnp.float64
    assert not bool(terminated) and not bool(truncated)
    assert env.action_space(params).contains(jnp.zeros(N_BINS, jnp.float32))
    space = env.observation_space(params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gymnax's plain Box truncates float64 to float32, with a warning
        assert space.contains(obs)
        above = np.array(obs)
        above[0] = np.max(np.asarray(space.high)) * (1 + 1e-9)
        assert not space.contains(above)
        sampled = space.sample(jax.random.key(2))
    assert sampled.dtype == jnp.float64 and sampled.shape == (N_BINS,)
    assert env.state_space(params).spaces["yields"].contains(obs)
    assert env.num_actions == N_BINS


def _loop(env, params, keys, actions):
    """Python loop over steps for one env; returns stacked (obs, reward, truncated, metric, final_obs)."""
    obs, state = env.reset(keys[0], params)
    out = []
    for t in range(actions.shape[0]):
        obs, state, r, te, tr, info = env.step(keys[t + 1], state, actions[t], params)
        out.append((obs, r, tr, info["metric"], info["final_observation"]))
    return [np.stack([np.asarray(o[i]) for o in out]) for i in range(5)]


def test_vmap_batch_equals_loop_of_single_envs(task):
    env, params = task
    n_env, T = 3, 9  # crosses the truncation at max_steps=6 (gymnax autoreset)
    keys = jax.random.split(jax.random.key(7), (n_env, T + 1))
    actions = _actions(0, (T, n_env, N_BINS))

    def batched(keys, actions):
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys[:, 0], params)
        outs = []
        for t in range(T):
            obs, state, r, te, tr, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                keys[:, t + 1], state, actions[t], params)
            outs.append((obs, r, tr, info["metric"], info["final_observation"]))
        return outs

    outs = jax.jit(batched)(keys, jnp.asarray(actions))
    batch = [np.stack([np.asarray(o[i]) for o in outs]) for i in range(5)]
    assert batch[2][5].all() and not batch[2][4].any()  # truncation at step 6
    for e in range(n_env):
        single = _loop(env, params, keys[e], actions[:, e])
        for b, s in zip(batch, single):
            np.testing.assert_allclose(b[:, e], s, rtol=1e-12, atol=1e-300)


def test_scan_equals_loop_and_same_key_same_trajectory(task):
    env, params = task
    T = 8
    keys = jax.random.split(jax.random.key(3), T + 1)
    actions = _actions(1, (T, N_BINS))

    @jax.jit
    def scanned(keys, actions):
        obs, state = env.reset(keys[0], params)

        def body(state, xs):
            k, a = xs
            obs, state, r, te, tr, info = env.step(k, state, a, params)
            return state, (obs, r, tr, info["metric"], info["final_observation"])

        return jax.lax.scan(body, state, (keys[1:], actions))[1]

    a = [np.asarray(x) for x in scanned(keys, jnp.asarray(actions))]
    b = [np.asarray(x) for x in scanned(keys, jnp.asarray(actions))]
    loop = _loop(env, params, keys, actions)
    for x, y, z in zip(a, b, loop):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_allclose(x, z, rtol=1e-12, atol=1e-300)
    other = [np.asarray(x) for x in scanned(jax.random.split(jax.random.key(4), T + 1), jnp.asarray(actions))]
    assert not np.allclose(other[0][0], a[0][0])  # reset noise depends on the key


@pytest.mark.parametrize("kind", ["random", "extreme", "nan"])
def test_no_nan_and_nan_actions_sanitised(task, vstep, kind):
    env, params = task
    T, n_env = 10, 3
    actions = jnp.asarray(_actions(11, (T, n_env, N_BINS), kind))
    keys = jax.random.split(jax.random.key(5), n_env)
    step = vstep
    _, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    sanitised_state = state
    for t in range(T):
        obs, state, r, te, tr, info = step(keys, state, actions[t], params)
        _assert_finite(obs, state, r, info)
        # NaN -> 0, everything else clipped into [-1, 1]: the same as the sanitised action
        clean = jnp.clip(jnp.nan_to_num(actions[t], nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
        obs2, sanitised_state, r2, *_ = step(keys, sanitised_state, clean, params)
        np.testing.assert_array_equal(np.asarray(obs), np.asarray(obs2))
        np.testing.assert_array_equal(np.asarray(r), np.asarray(r2))
    nan_only = jnp.full((n_env, N_BINS), jnp.nan)
    obs_nan, st_nan, r_nan, *_ = step(keys, state, nan_only, params)
    obs_zero, st_zero, r_zero, *_ = step(keys, state, jnp.zeros((n_env, N_BINS)), params)
    np.testing.assert_array_equal(np.asarray(obs_nan), np.asarray(obs_zero))


@pytest.mark.parametrize("budget", ["nominal", 50.0])
def test_yield_budget_holds_the_total(budget):
    env, params = nsg.make_gymnax_env(seed_workspace(), "SR", "signal", reward_metric="nll",
                                      max_steps=100, action_scale=0.5, yield_budget=budget)
    total = float(params.budget)
    if budget != "nominal":
        assert total == budget
    step = jax.jit(env.step)
    _, state = env.reset(jax.random.key(0), params)
    actions = np.concatenate([_actions(2, (15, N_BINS)), _actions(3, (15, N_BINS), "extreme"),
                              _actions(4, (10, N_BINS), "nan")])
    for t, a in enumerate(actions):
        obs, state, r, te, tr, info = step(jax.random.key(t), state, jnp.asarray(a), params)
        _assert_finite(obs, r, info)
        assert abs(float(np.sum(np.asarray(obs))) - total) <= 1e-9 * total


def test_gymnax_make_and_idempotent_registration(task):
    env, params = task
    env2, params2 = gymnax.make(nsg.ENV_ID, workspace=seed_workspace(), channel="SR", sample="signal", **KW)
    assert env2 == env and hash(env2) == hash(env)  # shares the compiled step
    o1, _ = env.reset(jax.random.key(0), params)
    o2, _ = env2.reset(jax.random.key(0), params2)
    np.testing.assert_array_equal(np.asarray(o1), np.asarray(o2))
    # registering again (explicitly, or by reloading the module) neither raises nor warns
    import warnings

    from nextstat_jax.gym import registration

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nsg.register()
        importlib.reload(registration)
        registration.register()
    assert nsg.ENV_ID in gymnasium.registry
    assert nsg.ENV_ID in gymnax.registered_envs


def test_warm_started_metric_equals_the_cold_one(task):
    """Each step's fits start from the previous step's optima (state.fits);
    the metric equals the cold-started one of the same yields, and a useless
    candidate start (NaN, far off) changes nothing either."""
    from nextstat_jax.gym.core import metric_value

    env, params = task
    config = env.config
    with jax.enable_x64(True):
        _, state = env.reset(jax.random.key(0), params)
        assert state.fits.shape == (2, params.model.n_params) and state.fits.dtype == jnp.float64
        rng = np.random.default_rng(2)
        for _ in range(4):
            _, state, *_ = env.step(jax.random.key(1), state, jnp.asarray(rng.uniform(-1, 1, N_BINS)), params)
            cold, conv, fits = jax.jit(lambda y: metric_value(config, params, y))(state.yields)
            assert bool(conv) and bool(state.converged)
            np.testing.assert_allclose(float(state.metric), float(cold), rtol=1e-9)
            # parameters agree to the solver tolerance (decrement 1e-10 in NLL: ~1e-5 of their sigma)
            np.testing.assert_allclose(np.asarray(state.fits), np.asarray(fits), atol=1e-5)
        for bad in (jnp.full_like(state.fits, jnp.nan), state.fits + 1e3):
            warm, conv, _ = jax.jit(lambda y, s: metric_value(config, params, y, s))(state.yields, bad)
            assert bool(conv)
            np.testing.assert_allclose(float(warm), float(state.metric), rtol=1e-9)
