"""The batched faces (API.md §4): ``make_vector_env`` (gymnasium VectorEnv) and
``make_sb3_vec_env`` (Stable-Baselines3 VecEnv).

* the vector env reproduces gymnasium's ``SyncVectorEnv`` of single
  ``HistFactoryEnv``s in ``AutoresetMode.SAME_STEP`` exactly: observations,
  rewards, flags, infos, ``final_obs``/``final_info``, partial resets;
* the SB3 VecEnv reproduces SB3's ``DummyVecEnv`` of single envs;
* the Gymnasium, vector, SB3 and gymnax faces give identical trajectories
  for the same actions (across autoresets, with reset noise);
* no NaN under random, extreme and NaN actions (NaN -> 0 on the batched faces,
  as on gymnax);
* SB3 PPO trains on 1024 envs of one ``make_sb3_vec_env``.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import gymnasium
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import jax
import nextstat_jax as nsj
import nextstat_jax.gym as nsg
from nextstat_jax.datasets import seed_workspace

N_ENVS, N_BINS, T = 3, 8, 11
KW = dict(reward_metric="q0", max_steps=4, action_scale=0.05, init_noise=0.05)
SEED = 21


@pytest.fixture(scope="module")
def ws():
    return seed_workspace()


@pytest.fixture(scope="module")
def actions():
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (T, N_ENVS, N_BINS)).astype(np.float32)


def _singles(ws):
    return [lambda: nsg.make_histfactory_env(ws, "SR", "signal", **KW) for _ in range(N_ENVS)]


def _assert_infos_equal(ours: dict, ref: dict):
    keys = set(ref) - {"reward_metric", "_reward_metric"}
    assert set(ours) == keys, (set(ours) ^ keys)
    for k in keys:
        if isinstance(ref[k], dict):
            _assert_infos_equal(ours[k], ref[k])
        elif ref[k].dtype == object:  # final_obs
            for x, y in zip(ours[k], ref[k]):
                assert (x is None) == (y is None)
                if x is not None:
                    np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_array_equal(ours[k], ref[k], err_msg=k)
            assert ours[k].dtype == ref[k].dtype, k


def test_vector_env_equals_sync_vector_env(ws, actions):
    venv = nsg.make_vector_env(ws, N_ENVS, "SR", "signal", **KW)
    sync = SyncVectorEnv(_singles(ws), autoreset_mode=AutoresetMode.SAME_STEP)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert venv.single_observation_space == sync.single_observation_space
    assert venv.single_action_space == sync.single_action_space
    assert venv.observation_space == sync.observation_space
    o1, i1 = venv.reset(seed=SEED)
    o2, i2 = sync.reset(seed=SEED)
    np.testing.assert_array_equal(o1, o2)
    _assert_infos_equal(i1, i2)
    n_done = 0
    for t in range(T):
        r1, r2 = venv.step(actions[t]), sync.step(actions[t])
        for x, y in zip(r1[:4], r2[:4]):
            np.testing.assert_array_equal(x, y)
            assert x.dtype == y.dtype
        assert r1[0] in venv.observation_space
        _assert_infos_equal(r1[4], r2[4])
        n_done += int(r1[3].any())
    assert n_done == 2  # two autoresets crossed
    # partial reset with a mask, and a list of seeds
    mask = np.array([True, False, True])
    o1, i1 = venv.reset(options={"reset_mask": mask})
    o2, i2 = sync.reset(options={"reset_mask": mask})
    np.testing.assert_array_equal(o1, o2)
    _assert_infos_equal(i1, i2)
    np.testing.assert_array_equal(venv.reset(seed=[5, None, 7])[0], sync.reset(seed=[5, None, 7])[0])
    venv.close()
    sync.close()


def test_sb3_vec_env_equals_dummy_vec_env(ws, actions):
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.vec_env import DummyVecEnv

    ours = nsg.make_sb3_vec_env(ws, N_ENVS, "SR", "signal", obs_dtype=np.float64, **KW)
    ref = DummyVecEnv(_singles(ws))
    assert ours.observation_space == ref.observation_space and ours.action_space == ref.action_space
    ours.seed(SEED)
    ref.seed(SEED)
    np.testing.assert_array_equal(ours.reset(), ref.reset())
    for t in range(T):
        ours.step_async(actions[t])
        o1, r1, d1, i1 = ours.step_wait()
        o2, r2, d2, i2 = ref.step(actions[t])
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(r1, r2)
        assert r1.dtype == r2.dtype == np.float32
        np.testing.assert_array_equal(d1, d2)
        for a, b in zip(i1, i2):
            for k in ("metric", "converged", "TimeLimit.truncated"):
                assert a[k] == b[k], k
            np.testing.assert_array_equal(a["yields"], b["yields"])
            assert ("terminal_observation" in a) == ("terminal_observation" in b)
            if "terminal_observation" in a:
                np.testing.assert_array_equal(a["terminal_observation"], b["terminal_observation"])
        for a, b in zip(ours.reset_infos, ref.reset_infos):
            assert a["metric"] == b["metric"]


def test_four_faces_identical_trajectories(ws, actions):
    """gymnax (reset with episode_key), Gymnasium, vector and SB3 (float32 obs;
    left out where stable-baselines3 is not installed)."""
    genv, params = nsg.make_gymnax_env(ws, "SR", "signal", **KW)
    singles = [nsg.make_histfactory_env(ws, "SR", "signal", **KW) for _ in range(N_ENVS)]
    venv = nsg.make_vector_env(ws, N_ENVS, "SR", "signal", **KW)
    sb3 = None
    if importlib.util.find_spec("stable_baselines3") is not None:
        sb3 = nsg.make_sb3_vec_env(ws, N_ENVS, "SR", "signal", **KW)
        assert sb3.observation_space.dtype == np.float32

    g_states, episode = [], [0] * N_ENVS
    for i, s in enumerate(singles):
        obs, _ = s.reset(seed=SEED + i)
        g_obs, g_state = genv.reset(nsg.episode_key(SEED + i, 0), params)
        np.testing.assert_array_equal(np.asarray(g_obs), obs)
        g_states.append(g_state)
    v_obs, _ = venv.reset(seed=SEED)
    if sb3 is not None:
        sb3.seed(SEED)
        np.testing.assert_array_equal(sb3.reset(), v_obs.astype(np.float32))

    for t in range(T):
        v_obs, v_r, _, v_tr, v_info = venv.step(actions[t])
        if sb3 is not None:
            sb3.step_async(actions[t])
            s_obs, s_r, s_done, s_info = sb3.step_wait()
        for i, s in enumerate(singles):
            obs, r, _, tr, info = s.step(actions[t, i])
            g_obs, g_state, g_r, _, g_tr, g_info = genv.step(jax.random.key(t), g_states[i], actions[t, i], params)
            assert r == float(g_r) == v_r[i]
            assert tr == bool(g_tr) == v_tr[i]
            np.testing.assert_array_equal(obs, np.asarray(g_info["final_observation"]))
            if sb3 is not None:
                assert np.float32(r) == s_r[i] and tr == s_done[i]
            if tr:
                np.testing.assert_array_equal(v_info["final_obs"][i], obs)
                if sb3 is not None:
                    np.testing.assert_array_equal(s_info[i]["terminal_observation"], obs.astype(np.float32))
                episode[i] += 1
                obs, _ = s.reset()
                g_obs, g_state = genv.reset(nsg.episode_key(SEED + i, episode[i]), params)
                np.testing.assert_array_equal(np.asarray(g_obs), obs)
            g_states[i] = g_state
            np.testing.assert_array_equal(v_obs[i], obs)
            if sb3 is not None:
                np.testing.assert_array_equal(s_obs[i], obs.astype(np.float32))
            assert v_info["metric"][i] == float(g_state.metric)
    assert sum(episode) == 2 * N_ENVS


@pytest.mark.parametrize("kind", ["extreme", "nan"])
def test_batched_faces_no_nan(ws, kind):
    venv = nsg.make_vector_env(ws, N_ENVS, "SR", "signal", **KW)
    twin = nsg.make_vector_env(ws, N_ENVS, "SR", "signal", **KW)
    venv.reset(seed=0)
    twin.reset(seed=0)
    rng = np.random.default_rng(1)
    for t in range(6):
        a = rng.choice([-1e6, 1e6, -np.inf, np.inf, 0.3], size=(N_ENVS, N_BINS))
        if kind == "nan":
            a = np.where(rng.uniform(size=a.shape) < 0.5, np.nan, a)
        obs, r, te, tr, info = venv.step(a)
        assert np.all(np.isfinite(obs)) and np.all(np.isfinite(r)) and np.all(np.isfinite(info["metric"]))
        clean = np.clip(np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=-1.0), -1, 1)
        np.testing.assert_array_equal(twin.step(clean)[0], obs)


def test_wrong_action_shape_raises(ws):
    venv = nsg.make_vector_env(ws, N_ENVS, "SR", "signal", **KW)
    with pytest.raises(gymnasium.error.ResetNeeded):
        venv.step(np.zeros((N_ENVS, N_BINS)))
    venv.reset(seed=0)
    for bad in (np.zeros((N_ENVS, N_BINS - 1)), np.zeros(N_BINS), np.zeros((N_ENVS + 1, N_BINS))):
        with pytest.raises(nsj.InvalidInput, match=r"\(3, 8\)"):
            venv.step(bad)
    with pytest.raises(nsj.InvalidInput):
        nsg.make_vector_env(ws, 0, "SR", "signal")


def test_make_vec_through_registration(ws):
    venv = gymnasium.make_vec(nsg.ENV_ID, num_envs=N_ENVS, workspace=ws, channel="SR", sample="signal", **KW)
    assert isinstance(venv, nsg.HistFactoryVectorEnv) and venv.num_envs == N_ENVS
    obs, _ = venv.reset(seed=SEED)
    assert obs.shape == (N_ENVS, N_BINS) and obs.dtype == np.float64


def test_sb3_vec_env_api_and_ppo_on_1024_envs(ws):
    pytest.importorskip("stable_baselines3")
    pytest.importorskip("matplotlib")  # env_method("render")
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecCheckNan, VecMonitor

    venv = nsg.make_sb3_vec_env(ws, 1024, "SR", "signal", reward_metric="q0", max_steps=2, action_scale=0.02,
                                init_noise=0.01)
    assert venv.num_envs == 1024
    assert venv.get_attr("reward_metric", [0, 5]) == ["q0", "q0"]
    assert venv.get_attr("metric", 0) == [None]  # before the first reset
    assert venv.env_is_wrapped(gymnasium.Wrapper) == [False] * 1024
    assert venv.has_attr("render_mode") and not venv.has_attr("no_such_attribute")
    with pytest.raises(nsj.InvalidInput):
        venv.set_attr("foo", 1, indices=[0])
    venv.set_attr("foo", 1)
    assert venv.get_attr("foo", [3]) == [1]

    wrapped = VecMonitor(VecCheckNan(venv, raise_exception=True))
    agent = PPO("MlpPolicy", wrapped, n_steps=2, batch_size=512, n_epochs=1, seed=0, device="cpu")
    agent.learn(total_timesteps=2 * 1024)
    assert agent.num_timesteps == 2 * 1024
    assert len(agent.ep_info_buffer) > 0  # episodes of 2 steps completed
    metrics = venv.get_attr("metric", [0, 1023])
    assert all(np.isfinite(m) for m in metrics)
    (frame,) = venv.env_method("render", indices=[0])
    assert frame.dtype == np.uint8 and frame.ndim == 3
    action, _ = agent.predict(venv.reset()[:4], deterministic=True)
    assert action.shape == (4, N_BINS)
