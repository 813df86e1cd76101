"""The Gymnasium face (API.md §4): ``make_histfactory_env`` and
``gymnasium.make("nextstat_jax/HistFactory-v0", ...)``.

* gymnasium's ``check_env`` (render modes included) and SB3's ``check_env``
  pass with no warning at all;
* seeding: ``reset(seed=s)`` is reproducible and corresponds to the gymnax
  face's ``env.reset(episode_key(s, e))``;
* the reward equals ``nsj.q0`` / ``discovery_significance`` / ``qmu`` /
  ``-nll`` of the same yields;
* a wrong-shape, non-numeric or NaN action raises ``InvalidInput`` naming the
  expected shape (the gymnax face sanitises NaN instead); extreme actions
  (+/-1e6, +/-inf) are clipped and give no NaN;
* the metric along random and extreme trajectories (signal scaled 0.01x to
  100x, single bins pushed to clip_max) agrees with pyhf's q0 to 1e-4.

About 6x/7x the nominal signal: NextStat 0.10.1's env raises "Free fit did not
converge" at 6x and returns q0 = 0 from 7x on, where pyhf gives 3.5468 (with
the observed data fixed, scaling the signal only rescales mu_hat, so q0 must
not change until mu_hat reaches its bound 10, i.e. below 0.1x).
``test_metric_agrees_with_pyhf_on_scaled_signal`` checks that ours agrees
with pyhf there.
"""

from __future__ import annotations

import copy
import json
import logging
import warnings

import gymnasium
import jax
import numpy as np
import pytest

import nextstat_jax as nsj
import nextstat_jax.gym as nsg
from nextstat_jax.datasets import seed_workspace

N_BINS = 8
KW = dict(reward_metric="q0", max_steps=6, action_scale=0.05, init_noise=0.05)

logging.getLogger("pyhf").setLevel(logging.CRITICAL)


@pytest.fixture(scope="module")
def ws():
    return seed_workspace()


@pytest.fixture(scope="module")
def env(ws):
    return nsg.make_histfactory_env(json.dumps(ws), channel="SR", sample="signal", **KW)


def _no_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn(*args, **kwargs)
    messages = [str(w.message) for w in caught]
    assert not messages, messages


def test_gymnasium_check_env_no_warnings(ws):
    from gymnasium.utils.env_checker import check_env

    made = gymnasium.make(nsg.ENV_ID, workspace=ws, channel="SR", sample="signal", **KW)
    assert isinstance(made.unwrapped, nsg.HistFactoryEnv)
    # the unwrapped env carries the spec, so check_env also builds and renders
    # the "rgb_array" mode through gymnasium.make (offered where matplotlib is)
    _no_warnings(check_env, made.unwrapped)
    made.close()
    # gymnasium's "module:id" form imports the registering module itself
    again = gymnasium.make("nextstat_jax.gym:" + nsg.ENV_ID, workspace=ws, channel="SR", sample="signal", **KW)
    assert isinstance(again.unwrapped, nsg.HistFactoryEnv)


def test_sb3_check_env_no_warnings(env):
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_checker import check_env

    _no_warnings(check_env, env, warn=True)


def test_spaces_dtypes_and_info(env):
    obs, info = env.reset(seed=0)
    assert isinstance(obs, np.ndarray) and obs.dtype == env.observation_space.dtype == np.float64
    assert obs in env.observation_space
    assert env.action_space.dtype == np.float32 and env.action_space.shape == (N_BINS,)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert type(reward) is float and type(terminated) is bool and type(truncated) is bool
    assert obs.dtype == np.float64 and obs in env.observation_space
    assert {"yields", "metric", "converged", "step", "reward_metric", "q0"} <= set(info)
    assert info["q0"] == info["metric"] == reward and info["reward_metric"] == "q0"
    np.testing.assert_array_equal(info["yields"], obs)
    obs[:] = -1.0  # the env hands out copies
    assert env.yields.min() > 0
    for t in range(2, KW["max_steps"] + 1):
        *_, terminated, truncated, info = env.step(np.zeros(N_BINS))
        assert truncated == (t == KW["max_steps"]) and not terminated
        assert info["step"] == t


def test_seeding_reproducible_and_gymnax_correspondence(env):
    genv, params = env.gymnax_env, env.params
    o1, _ = env.reset(seed=123)
    a = [env.step(np.full(N_BINS, 0.3)) for _ in range(3)]
    o2, _ = env.reset()  # the next episode of the same seed
    o3, _ = env.reset(seed=123)
    b = [env.step(np.full(N_BINS, 0.3)) for _ in range(3)]
    o4, _ = env.reset()
    np.testing.assert_array_equal(o1, o3)
    np.testing.assert_array_equal(o2, o4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x[0], y[0])
        assert x[1] == y[1]
    assert not np.allclose(o1, o2)
    assert not np.allclose(o1, env.reset(seed=124)[0])
    # episode e after reset(seed=s) starts where gymnax's reset(episode_key(s, e)) starts
    for e, obs in enumerate((o1, o2)):
        g_obs, g_state = genv.reset(nsg.episode_key(123, e), params)
        np.testing.assert_array_equal(np.asarray(g_obs), obs)
    # and steps identically
    _, g_state = genv.reset(nsg.episode_key(123, 0), params)
    for x in a:
        g_obs, g_state, g_r, *_ = genv.step(jax.random.key(0), g_state, np.full(N_BINS, 0.3), params)
        np.testing.assert_array_equal(np.asarray(g_obs), x[0])
        assert float(g_r) == x[1]
    # without any seed the base key comes from np_random
    firsts = []
    for _ in range(2):
        fresh = nsg.make_histfactory_env(seed_workspace(), "SR", "signal", **KW)
        fresh.np_random, _ = gymnasium.utils.seeding.np_random(5)
        firsts.append(fresh.reset()[0])
    np.testing.assert_array_equal(firsts[0], firsts[1])


_METRICS = [
    ("q0", {}, lambda m, mu: nsj.q0(m)),
    ("z0", {}, lambda m, mu: nsj.discovery_significance(m)),
    ("qmu", {"mu_test": 2.0}, lambda m, mu: -nsj.qmu(m, mu)),
    ("zmu", {"mu_test": 2.0}, lambda m, mu: -np.sqrt(nsj.qmu(m, mu))),
    ("nll", {}, lambda m, mu: -m.nll(m.suggested_init())),
]


@pytest.mark.parametrize("metric,extra,ref", _METRICS, ids=[m[0] for m in _METRICS])
def test_reward_equals_inference_of_same_yields(ws, metric, extra, ref):
    e = nsg.make_histfactory_env(ws, "SR", "signal", reward_metric=metric, max_steps=4, action_scale=0.3, **extra)
    model = nsj.from_pyhf(ws)
    e.reset(seed=0)
    rng = np.random.default_rng(1)
    for _ in range(3):
        obs, reward, *_, info = e.step(rng.uniform(-1, 1, N_BINS))
        m = model.with_yields("SR", "signal", obs)
        expected = float(ref(m, extra.get("mu_test")))
        assert reward == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert info[metric] == pytest.approx(abs(expected), rel=1e-9, abs=1e-12)


def test_reward_asimov_data_and_delta_mode(ws):
    e = nsg.make_histfactory_env(ws, "SR", "signal", reward_metric="q0", data="asimov", reward_mode="delta",
                                 max_steps=4, action_scale=0.3)
    model = nsj.from_pyhf(ws)
    _, info = e.reset(seed=0)
    prev = info["metric"]
    for a in (np.linspace(-1, 1, N_BINS), np.ones(N_BINS)):
        obs, reward, *_, info = e.step(a)
        m = model.with_yields("SR", "signal", obs)
        init = np.array(m.suggested_init(), float)
        init[m.poi_index] = 1.0
        q0 = float(nsj.q0(m, data=m.expected_data(init)))
        assert info["metric"] == pytest.approx(q0, rel=1e-9)
        assert reward == pytest.approx(q0 - prev, rel=1e-7, abs=1e-9)
        prev = info["metric"]


def test_invalid_actions_raise_naming_the_shape(env):
    env.reset(seed=0)
    for bad, words in [
        (np.zeros(N_BINS - 1), "shape (8,)"),
        (np.zeros((1, N_BINS)), "shape (8,)"),
        (0.5, "shape (8,)"),
        ("up", "shape (8,)"),
        (np.r_[np.zeros(N_BINS - 1), np.nan], "NaN at index 7"),
    ]:
        with pytest.raises(nsj.InvalidInput, match=words.replace("(", r"\(").replace(")", r"\)")) as exc:
            env.step(bad)
        assert isinstance(exc.value, ValueError)
        assert "(8,)" in str(exc.value)
    fresh = nsg.make_histfactory_env(seed_workspace(), "SR", "signal", **KW)
    with pytest.raises(gymnasium.error.ResetNeeded):
        fresh.step(np.zeros(N_BINS))


def test_extreme_actions_clipped_no_nan(env):
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    for t in range(12):
        a = rng.choice([-1e6, 1e6, -np.inf, np.inf, 0.5], size=N_BINS)
        obs, reward, terminated, truncated, info = env.step(a)
        assert np.all(np.isfinite(obs)) and np.isfinite(reward) and np.isfinite(info["metric"])
        assert obs in env.observation_space
        if truncated:
            env.reset()
    # +/-1e6 acts as +/-1
    env.reset(seed=2)
    o_big = env.step(np.full(N_BINS, 1e6))[0]
    env.reset(seed=2)
    o_one = env.step(np.ones(N_BINS))[0]
    np.testing.assert_array_equal(o_big, o_one)


def test_yield_budget_holds_the_total(ws):
    e = nsg.make_histfactory_env(ws, "SR", "signal", reward_metric="nll", yield_budget="nominal",
                                 max_steps=1000, action_scale=2.0)
    total = float(np.sum(ws["channels"][0]["samples"][0]["data"]))
    obs, _ = e.reset(seed=0)
    rng = np.random.default_rng(3)
    for t in range(30):
        a = rng.uniform(-1, 1, N_BINS) if t % 2 else rng.choice([-1e6, 1e6], size=N_BINS)
        obs, reward, *_ = e.step(a)
        assert abs(obs.sum() - total) <= 1e-9 * total
        assert np.isfinite(reward) and obs in e.observation_space


def test_render_modes(ws, env):
    pytest.importorskip("matplotlib")
    e = nsg.make_histfactory_env(ws, "SR", "signal", render_mode="rgb_array", max_steps=4)
    e.reset(seed=0)
    f0 = e.render()
    assert isinstance(f0, np.ndarray) and f0.dtype == np.uint8 and f0.ndim == 3 and f0.shape[2] == 3
    e.step(np.linspace(-1, 1, N_BINS))
    assert not np.array_equal(e.render(), f0)
    with pytest.warns(UserWarning, match="render_mode"):
        assert env.render() is None
    with pytest.raises(nsj.InvalidInput):
        nsg.make_histfactory_env(ws, "SR", "signal", render_mode="human")


def test_workspace_forms_and_nextstat_arguments(ws, tmp_path):
    path = tmp_path / "ws.json"
    path.write_text(json.dumps(ws))
    forms = [json.dumps(ws), ws, str(path), path, nsj.Workspace(ws), nsj.from_pyhf(ws)]
    metrics = []
    for form in forms:
        e = nsg.make_histfactory_env(form, channel="SR", sample="signal", reward_metric="q0")
        metrics.append(e.reset(seed=0)[1]["metric"])
    assert len(set(metrics)) == 1
    # NextStat's defaults and extra keywords
    e = nsg.make_histfactory_env(ws, channel="SR", sample="signal", mle_max_iter=50, mle_tol=1e-6, mle_m=10)
    assert e.reward_metric == "nll" and e.max_steps == 128 and e.action_scale == 0.05
    assert e.config.options.max_iter == 50
    with pytest.raises(nsj.InvalidInput, match="fixed_params"):
        nsg.make_histfactory_env(ws, "SR", "signal", fixed_params=[1.0, 0.0])
    with pytest.raises(nsj.NextStatJaxError):
        nsg.make_histfactory_env(ws, "SR", "nope")


# --------------------------------------------------------------------------
# agreement with pyhf along random and extreme trajectories
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pyhf_backend():
    pyhf = pytest.importorskip("pyhf")
    old = pyhf.get_backend()
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-12))
    yield pyhf
    pyhf.set_backend(*old)


def _pyhf_q0(pyhf, ws, yields, rescale=False):
    """pyhf's q0 of the workspace with the signal yields replaced.

    ``rescale``: evaluate it on the equivalent model whose signal is divided
    by k = sum(yields)/sum(nominal) and whose POI bounds are [0, 10k] (the
    likelihood depends on mu*signal only, so q0 is the same function); pyhf's
    SLSQP fails on the original when one bin holds 1e9..1e12 ("Inequality
    constraints incompatible") but not on the rescaled one.
    """
    spec = copy.deepcopy(ws)
    y = np.asarray(yields, float)
    k = float(y.sum() / np.sum(ws["channels"][0]["samples"][0]["data"])) if rescale else 1.0
    spec["channels"][0]["samples"][0]["data"] = (y / k).tolist()
    if rescale:
        spec["measurements"][0]["config"]["parameters"] = [
            {"name": "mu", "bounds": [[0.0, 10.0 * k]], "inits": [min(1.0, 5.0 * k)]}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = pyhf.Workspace(spec)
        model = w.model()
        data = w.data(model)
        c = model.config
        return float(pyhf.infer.test_statistics.q0(
            0.0, data, model, c.suggested_init(), c.suggested_bounds(), c.suggested_fixed()))


def _close(ours, ref, tol=1e-4):
    """1e-4: absolute below 1, relative above."""
    assert abs(ours - ref) <= tol * max(1.0, abs(ref)), (ours, ref)


def test_metric_agrees_with_pyhf_on_scaled_signal(ws, pyhf_backend):
    # one step of a=+/-1 multiplies the signal by 100**(+/-1)
    e = nsg.make_histfactory_env(ws, "SR", "signal", reward_metric="q0", action_scale=np.log(100.0),
                                 max_steps=100)
    nominal = np.asarray(ws["channels"][0]["samples"][0]["data"])
    e.reset(seed=0)
    current = 1.0
    seen = {}
    for factor in (0.01, 0.03, 0.1, 0.5, 1.0, 3.0, 5.0, 6.0, 7.0, 10.0, 30.0, 100.0):
        a = np.full(N_BINS, np.log(factor / current) / np.log(100.0))
        obs, reward, *_, info = e.step(a)
        current = factor
        np.testing.assert_allclose(obs, factor * nominal, rtol=1e-12)
        ref = _pyhf_q0(pyhf_backend, ws, obs)
        _close(reward, ref)
        assert info["converged"]
        seen[factor] = (reward, ref)
    # the points where NextStat's env fails (6x: raises) or returns 0 (7x on)
    for factor in (6.0, 7.0, 100.0):
        assert seen[factor][0] == pytest.approx(3.5468, abs=1e-4)
    assert seen[0.01][0] < 1.0  # mu_hat at its bound 10: q0 does drop there


def test_metric_agrees_with_pyhf_on_random_trajectory(ws, pyhf_backend):
    e = nsg.make_histfactory_env(ws, "SR", "signal", reward_metric="q0", action_scale=0.5, max_steps=100)
    e.reset(seed=0)
    rng = np.random.default_rng(11)
    for _ in range(8):
        obs, reward, *_ = e.step(rng.uniform(-1, 1, N_BINS))
        _close(reward, _pyhf_q0(pyhf_backend, ws, obs))
        _close(reward, _pyhf_q0(pyhf_backend, ws, obs, rescale=True))


@pytest.mark.parametrize("bin_index", range(N_BINS))
def test_metric_agrees_with_pyhf_single_bin_at_clip_max(ws, pyhf_backend, bin_index):
    e = nsg.make_histfactory_env(ws, "SR", "signal", reward_metric="q0", action_scale=np.log(1e4), max_steps=100)
    e.reset(seed=0)
    a = np.zeros(N_BINS)
    a[bin_index] = 1.0
    for t in range(4):  # x1e4 per step: 1e12 (= clip_max) after 4 steps at most
        obs, reward, *_, info = e.step(a)
        assert np.all(np.isfinite(obs)) and np.isfinite(reward)
        if t in (0, 3) or bin_index in (3, 4):
            _close(reward, _pyhf_q0(pyhf_backend, ws, obs, rescale=True))
    assert obs[bin_index] == 1e12
