"""An RL agent that reshapes a signal histogram to maximise the discovery statistic q0.

The workflow of NextStat's "Gymnasium RL agent" notebook, on nextstat_jax:

1. a one-channel workspace (Gaussian signal over a falling background);
2. the Gymnasium environment (observation: the signal yields; action: a
   multiplicative change per bin; reward: q0 of the current yields);
3. a random agent as the baseline;
4. Stable-Baselines3 PPO trained on ``make_vec_env`` (4 envs), or with
   ``--batched N`` on one ``make_sb3_vec_env`` stepping N envs in one jitted call;
5. evaluation of the trained policy from a fixed seed;
6. the nuisance-parameter ranking of the model (``nextstat_jax.interpret``);
7. a figure: cumulative rewards, the yields along the episode, and the
   initial vs final histogram.

    python examples/02_gymnasium_rl_agent.py [--timesteps 20000] [--batched 0] [--out FILE]

``--timesteps`` defaults to ``$NSJ_EXAMPLE_TIMESTEPS`` or 20000 (CI runs a few
hundred). Needs stable-baselines3 (``pip install "nextstat-jax[rl]"``) and
matplotlib.

Note that with the observed data fixed, q0 is invariant under scaling the
signal, so with this reward the nominal shape is already close to optimal and
PPO has little room to beat the random agent; ``--data asimov --budget`` gives
the harder task where signal must be moved to where it stands out.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np


def build_workspace(n_bins: int = 8) -> dict:
    """A Gaussian signal (POI "mu") over an exponential background with a
    +/-8% normalisation uncertainty; the data are signal + background."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    centers = 0.5 * (edges[:-1] + edges[1:])
    width = np.diff(edges)
    signal = 40.0 * width * np.exp(-0.5 * ((centers - 0.5) / 0.12) ** 2)
    background = 200.0 * width * np.exp(-2.0 * centers)
    return {
        "version": "1.0.0",
        "channels": [{
            "name": "SR",
            "samples": [
                {"name": "signal", "data": signal.tolist(),
                 "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
                {"name": "background", "data": background.tolist(),
                 "modifiers": [{"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.08, "lo": 0.92}}]},
            ],
        }],
        "observations": [{"name": "SR", "data": (signal + background).tolist()}],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
    }


def run_episode(env, policy, seed: int):
    """One episode; returns (cumulative rewards, yields along it, final info)."""
    obs, info = env.reset(seed=seed)
    cumulative, yields, total = [], [obs.copy()], 0.0
    while True:
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        total += reward
        cumulative.append(total)
        yields.append(obs.copy())
        if terminated or truncated:
            return np.array(cumulative), np.array(yields), info


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timesteps", type=int, default=int(os.environ.get("NSJ_EXAMPLE_TIMESTEPS", "20000")))
    ap.add_argument("--batched", type=int, default=0, metavar="N",
                    help="train on one make_sb3_vec_env of N envs instead of make_vec_env (4 envs)")
    ap.add_argument("--episode-steps", type=int, default=64)
    ap.add_argument("--data", choices=("observed", "asimov"), default="observed")
    ap.add_argument("--budget", action="store_true", help="hold the total signal yield fixed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="02_gymnasium_rl_agent.png", help="where to save the figure")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    import nextstat_jax as nsj
    from nextstat_jax.gym import make_histfactory_env, make_sb3_vec_env

    # 1. workspace
    workspace = build_workspace()
    sample = workspace["channels"][0]["samples"]
    s, b = np.array(sample[0]["data"]), np.array(sample[1]["data"])
    print(f"signal      {np.round(s, 2)}\nbackground  {np.round(b, 2)}\nS/sqrt(B) = {s.sum() / np.sqrt(b.sum()):.2f}")

    # 2. environment
    settings = dict(reward_metric="q0", max_steps=args.episode_steps, action_scale=0.02, action_mode="logmul",
                    data=args.data, yield_budget="nominal" if args.budget else None)
    env = make_histfactory_env(workspace, channel="SR", sample="signal", **settings)
    print(f"observation space {env.observation_space}\naction space      {env.action_space}")

    # 3. random agent
    env.action_space.seed(args.seed)
    random_rewards, random_yields, _ = run_episode(env, lambda obs: env.action_space.sample(), seed=42)
    print(f"random agent: total reward {random_rewards[-1]:.3f}")

    # 4. PPO
    t0 = time.perf_counter()
    if args.batched:
        train_env = make_sb3_vec_env(workspace, args.batched, "SR", "signal", init_noise=0.01, **settings)
        n_steps = max(2, min(128, args.timesteps // args.batched))
        batch_size = min(256, n_steps * args.batched)
    else:
        train_env = make_vec_env(lambda: make_histfactory_env(workspace, "SR", "signal", init_noise=0.01, **settings),
                                 n_envs=4, seed=args.seed)
        n_steps, batch_size = 128, 64
    agent = PPO("MlpPolicy", train_env, learning_rate=3e-4, n_steps=n_steps, batch_size=batch_size, n_epochs=10,
                seed=args.seed, device="cpu", verbose=0)
    agent.learn(total_timesteps=args.timesteps)
    train_s = time.perf_counter() - t0
    print(f"PPO: {agent.num_timesteps} timesteps in {train_s:.1f} s ({agent.num_timesteps / train_s:,.0f} steps/s)")

    # 5. evaluation
    eval_env = make_histfactory_env(workspace, "SR", "signal", **settings)
    ppo_rewards, ppo_yields, info = run_episode(eval_env, lambda obs: agent.predict(obs, deterministic=True)[0],
                                                seed=123)
    gain = (ppo_rewards[-1] - random_rewards[-1]) / abs(random_rewards[-1]) * 100.0
    print(f"PPO agent:    total reward {ppo_rewards[-1]:.3f} ({gain:+.1f}% vs random); "
          f"final q0 {info['metric']:.4f} (nominal {float(nsj.q0(nsj.from_pyhf(workspace))):.4f})")

    # 6. ranking
    ranking = []
    try:
        from nextstat_jax.interpret import rank_impact
    except ImportError:
        print("ranking skipped: nextstat_jax.interpret is not available")
    else:
        model = nsj.from_pyhf(workspace)
        final = model.with_yields("SR", "signal", ppo_yields[-1])
        for label, m in (("nominal", model), ("after PPO", final)):
            rows = rank_impact(m, top_n=5)
            print(f"ranking ({label}):")
            for r in rows:
                print(f"  {r['rank']}. {r['name']:<12s} impact on mu {r['total_impact']:.4f}")
            ranking.append((label, rows))

    # 7. figure
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot(random_rewards, color="0.5", label="random")
    axes[0].plot(ppo_rewards, color="#D4AF37", linewidth=2, label="PPO")
    axes[0].set(xlabel="step", ylabel="cumulative reward", title="Reward: random vs PPO")
    axes[0].legend()
    for i in range(ppo_yields.shape[1]):
        axes[1].plot(ppo_yields[:, i], linewidth=0.9, label=f"bin {i}")
    axes[1].set(xlabel="step", ylabel="signal yield", title="Yields along the PPO episode", yscale="log")
    axes[1].legend(fontsize=7, ncol=2)
    x = np.arange(ppo_yields.shape[1])
    axes[2].bar(x - 0.2, ppo_yields[0], width=0.4, color="0.6", label="initial")
    axes[2].bar(x + 0.2, ppo_yields[-1], width=0.4, color="#D4AF37", label="after PPO")
    axes[2].set(xlabel="bin", ylabel="signal yield", title="Initial vs optimised signal")
    axes[2].legend()
    for ax in axes:
        ax.grid(alpha=0.2)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    print(f"figure saved to {out}")
    return {"random": float(random_rewards[-1]), "ppo": float(ppo_rewards[-1]), "timesteps": agent.num_timesteps,
            "ranking": ranking, "figure": str(out)}


if __name__ == "__main__":
    main()
