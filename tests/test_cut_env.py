"""The cut environment (nextstat_jax.cuts.env): dynamics, rewards, the
minimum-events rule, invalid actions, and identical trajectories on the
gymnax, Gymnasium and vector faces. Tiny event samples; x64 flag off.
"""

from __future__ import annotations

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nextstat_jax as nsj
from nextstat_jax.cuts import (
    make_cut_env,
    make_cut_gymnax_env,
    make_cut_model,
    make_cut_vector_env,
    synthetic_benchmark,
)
from nextstat_jax.gym import episode_key

KW = dict(max_steps=5, action_scale=0.1, init_noise=0.2, min_events=150)
# the faces are compared on a task with every option on: terminations,
# delta rewards, yields and metric in the observation
FACE_KW = dict(KW, on_min_events="terminate", reward_mode="delta", observe_yields=True, observe_metric=True,
               min_events=60, action_scale=0.3)


@pytest.fixture(scope="module")
def cm():
    return make_cut_model(synthetic_benchmark(seed=3, n_signal=300, n_background=800, n_bins=3))


@pytest.fixture(scope="module")
def task(cm):
    return make_cut_gymnax_env(cm, **KW)


def _actions(seed, n, kind="random"):
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, (n, 3))
    if kind == "nan":
        a = np.where(rng.uniform(size=a.shape) < 0.4, np.nan, a * 1e6)
    return a.astype(np.float32)


def _finite(tree):
    for leaf in jax.tree_util.tree_leaves(tree):
        arr = np.asarray(leaf)
        if arr.dtype.kind == "f":
            assert np.all(np.isfinite(arr))


def test_dynamics_and_reward(cm, task):
    env, params = task
    assert env.action_space(params).shape == (3,) and env.observation_space(params).shape == (3,)
    obs, state = env.reset(jax.random.key(0), params)
    lo, hi = np.asarray(cm.low), np.asarray(cm.high)
    assert obs.dtype == jnp.float64 and np.all((np.asarray(obs) >= lo) & (np.asarray(obs) <= hi))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the float64 space samples and compares in float64 (x64 off here)
        assert env.observation_space(params).contains(obs)
        assert env.observation_space(params).sample(jax.random.key(3)).dtype == jnp.float64
    a = np.array([0.5, -1.0, 0.25], np.float32)
    obs2, state2, r, term, trunc, info = env.step(jax.random.key(1), state, a, params)
    expect = np.clip(np.asarray(obs) + 0.1 * (hi - lo) * a, lo, hi)
    np.testing.assert_allclose(np.asarray(obs2), expect, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(info["thresholds"]), expect, rtol=1e-12)
    z = float(cm.z0(expect))
    assert float(info["metric"]) == pytest.approx(z, rel=1e-9)
    nb = float(cm.n_background(expect))
    assert float(info["n_events"]) == nb
    assert float(r) == pytest.approx(z if nb >= KW["min_events"] else -1.0, rel=1e-9)
    np.testing.assert_allclose(np.asarray(info["yields"]), np.asarray(cm.yields(expect)), rtol=1e-12)
    # clipping at the ranges (a larger action scale is just another params value)
    big = dataclasses.replace(params, action_scale=np.asarray(2.0))
    _, s, *_ = env.step(jax.random.key(2), state2, np.array([1, -1, 1], np.float32), big)
    np.testing.assert_array_equal(np.asarray(s.thresholds), [hi[0], lo[1], hi[2]])


def test_min_events_penalty_and_termination(cm, task):
    # penalty mode (the default): numeric settings are params, no recompilation
    env, params = task
    # (float64 NumPy leaves: same dtypes as the built params, so the compiled step is reused)
    params = dataclasses.replace(params, action_scale=np.asarray(1.0), min_events=np.asarray(10.0),
                                 penalty=np.asarray(2.5), init_noise=np.asarray(0.0))
    _, state = env.reset(jax.random.key(0), params)
    assert float(state.n_events) >= 10
    a = np.array([1.0, -1.0, 1.0], np.float32)  # pt >= 150, iso <= 0, score >= 4: nothing left
    obs, _, r, term, trunc, info = env.step(jax.random.key(1), state, a, params)
    np.testing.assert_array_equal(np.asarray(info["thresholds"]), [cm.high[0], cm.low[1], cm.high[2]])
    assert bool(info["too_few_events"]) and float(r) == -2.5 and float(info["n_events"]) == 0
    assert np.isfinite(float(info["metric"])) and not bool(term)
    # terminate mode: the episode ends (gymnax autoreset: back to the start)
    genv, gparams = make_cut_gymnax_env(cm, **FACE_KW)
    gparams = dataclasses.replace(gparams, action_scale=np.asarray(1.0), init_noise=np.asarray(0.0))
    _, state = genv.reset(jax.random.key(0), gparams)
    obs, _, r, term, trunc, info = genv.step(jax.random.key(1), state, a, gparams)
    assert bool(term) and bool(info["too_few_events"]) and float(r) == -1.0
    np.testing.assert_array_equal(np.asarray(obs)[:3], np.asarray(gparams.init_thresholds))


def test_invalid_actions_never_nan(task):
    env, params = task
    for kind in ("random", "nan"):
        _, s = env.reset(jax.random.key(0), params)
        for k, a in enumerate(_actions(3, 7, kind)):
            o, s, r, te, tr, info = env.step(jax.random.key(k), s, a, params)
            _finite((o, s, r, info))
    # NaN entries act as 0
    _, s0 = env.reset(jax.random.key(5), params)
    a = np.array([np.nan, 0.3, np.nan], np.float32)
    o1, *_ = env.step(jax.random.key(0), s0, a, params)
    o2, *_ = env.step(jax.random.key(0), s0, np.nan_to_num(a), params)
    np.testing.assert_array_equal(np.asarray(o1), np.asarray(o2))


def test_gymnasium_face_matches_gymnax(cm):
    env = make_cut_env(cm, **FACE_KW)
    genv, params = env.gymnax_env, env.params
    acts = _actions(11, 8)
    acts[2] = [1.0, -1.0, 1.0]  # too few events: this episode terminates at step 3
    obs, info = env.reset(seed=7)
    assert {"thresholds", "metric", "converged", "n_events", "too_few_events", "yields", "step"} <= set(info)
    g_obs, g_state = genv.reset(episode_key(7, 0), params)
    np.testing.assert_array_equal(obs, np.asarray(g_obs))
    assert info["metric"] > 0  # the reset info reports the start's metric
    assert obs[-1] == info["metric"] and np.array_equal(obs[3:-1], info["yields"].reshape(-1))
    for k, a in enumerate(acts[:3]):
        obs, r, te, tr, info = env.step(a)
        g_obs, g_state, g_r, g_te, g_tr, g_info = genv.step(jax.random.key(k), g_state, a, params)
        last = np.asarray(g_info["final_observation"])
        np.testing.assert_array_equal(obs, last)
        assert r == float(g_r) and te == bool(g_te) and tr == bool(g_tr)
        assert info["metric"] == float(g_info["metric"]) == obs[-1]
        assert info["step"] == k + 1
    assert te and info["too_few_events"] and r == -1.0
    # the next episode is episode_key(7, 1)
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs, np.asarray(genv.reset(episode_key(7, 1), params)[0]))
    # bad actions raise on this face
    with pytest.raises(nsj.InvalidInput, match=r"NaN at index 1"):
        env.step(np.array([0.0, np.nan, 0.0]))
    with pytest.raises(nsj.InvalidInput, match=r"shape \(3,\)"):
        env.step(np.zeros(4))


def test_vector_face_matches_single_envs(cm):
    n = 3
    venv = make_cut_vector_env(cm, n, **FACE_KW)
    singles = [make_cut_env(cm, **FACE_KW) for _ in range(n)]
    obs, infos = venv.reset(seed=40)
    for i, e in enumerate(singles):
        o, inf = e.reset(seed=40 + i)
        np.testing.assert_array_equal(obs[i], o)
        assert infos["metric"][i] == inf["metric"]
    terminated_any = False
    for k in range(KW["max_steps"] + 2):  # crosses terminations and truncations
        acts = _actions(100 + k, n)
        if k == 1:
            acts[1] = [1.0, -1.0, 1.0]  # env 1 terminates, the others go on
        obs, r, te, tr, infos = venv.step(acts)
        for i, e in enumerate(singles):
            o, ri, tei, tri, inf = e.step(acts[i])
            assert r[i] == ri and te[i] == tei and tr[i] == tri
            if tei or tri:
                np.testing.assert_array_equal(infos["final_obs"][i], o)
                assert infos["final_info"]["metric"][i] == inf["metric"]
                o, inf = e.reset()
            np.testing.assert_array_equal(obs[i], o)
            assert infos["metric"][i] == inf["metric"]
            np.testing.assert_array_equal(infos["thresholds"][i], inf["thresholds"])
            assert infos["too_few_events"][i] == inf["too_few_events"]
        terminated_any |= bool(te.any())
    assert terminated_any
    with pytest.raises(nsj.InvalidInput, match=r"\(3, 3\)"):
        venv.step(np.zeros((2, 3)))


def test_gymnasium_checker_and_options(cm):
    from gymnasium.utils.env_checker import check_env

    env = make_cut_env(cm, **FACE_KW)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert obs.shape == (3 + 2 * cm.n_bins + 1,) and obs in env.observation_space
    start = info["metric"]
    total = 0.0
    for _ in range(3):
        obs, r, te, tr, info = env.step(np.zeros(3))
        total += r
        assert obs in env.observation_space
    assert total == pytest.approx(info["metric"] - start, abs=1e-9)  # delta rewards telescope
    with pytest.raises(nsj.InvalidInput, match="reward_metric"):
        make_cut_env(cm, reward_metric="nll")
    with pytest.raises(nsj.InvalidInput, match="observed events"):
        make_cut_env(cm, data="observed")
    with pytest.raises(nsj.InvalidInput, match="on_min_events"):
        make_cut_env(cm, on_min_events="stop")
    with pytest.raises(nsj.InvalidInput, match="init_thresholds"):
        make_cut_env(cm, init_thresholds=[0.0, 1.0])


def test_relaxed_env_and_ppo_smoke(cm):
    """PPO (the pure-JAX trainer) on a relaxed-cut environment: finite, and
    the rollout's metric is the relaxed Z0 of its thresholds."""
    from nextstat_jax.rl import PPOConfig
    from nextstat_jax.cuts import ppo_search

    T = 0.02
    env, params = make_cut_gymnax_env(cm, max_steps=4, temperature=T, min_events=50)
    cfg = PPOConfig(total_timesteps=64, num_envs=4, num_steps=8, num_minibatches=2, update_epochs=1,
                    start_noise=0.3, progress=False, log_every=2)
    res = ppo_search(env, params, cfg, jax.random.key(0))
    traj = res.details["trajectory"]
    assert res.thresholds.shape == (3,) and res.evaluations == 64
    _finite(traj)
    np.testing.assert_array_equal(traj["thresholds"][-1], res.thresholds)
    assert traj["metric"][-1] == pytest.approx(float(cm.z0(res.thresholds, T)), rel=1e-9)
    assert res.z0 == float(cm.z0(res.thresholds))  # reported with hard cuts
