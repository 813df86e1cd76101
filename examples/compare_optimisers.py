"""Compare ways of optimising the signal shape on the seed task, and write
docs/results.md with a figure.

The seed task: the seed workspace, q0 reward on Asimov data (expected data of
the current yields), total signal held at the nominal budget, 64 steps of
action scale 0.2 (``make_gymnax_env(ws, channel="SR", sample="signal",
reward_metric="q0", data="asimov", yield_budget="nominal", max_steps=64,
action_scale=0.2)``). Nominal shape: q0 = 3.55; optimum (all signal in the
last bin): q0 = 20.44. Methods:

1. a random policy;
2. SB3 PPO on the Gymnasium adapter with ``make_vec_env`` (4 envs, 20k steps,
   as in the seed notebook);
3. SB3 PPO on the batched SB3 VecEnv (1024 envs);
4. the pure-JAX PPO (``nextstat_jax.rl.train_ppo``, default config);
5. gradient ascent on softmax logits (``nextstat_jax.shape_opt``);

and, for reference, the seed's original setting (observed data, no budget),
where there is nothing to learn.

    python examples/compare_optimisers.py [--quick] [--out docs/results.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np
from _results_md import write_section  # examples/_results_md.py

import nextstat_jax as nsj
from nextstat_jax.datasets import seed_workspace
from nextstat_jax.rl import PPOConfig, evaluate, random_policy, train_ppo
from nextstat_jax.shape_opt import asimov_q0, optimise_shape

TASK = dict(channel="SR", sample="signal", reward_metric="q0", data="asimov", yield_budget="nominal",
            max_steps=64, action_scale=0.2)


def final_q0_sb3(agent, workspace, n_episodes=4, **task):
    env = nsj.gym.make_histfactory_env(workspace, **task)
    finals = []
    for ep in range(n_episodes):
        obs, info = env.reset(seed=1000 + ep)
        done = False
        while not done:
            action, _ = agent.predict(obs, deterministic=True)
            obs, reward, term, trunc, info = env.step(action)
            done = term or trunc
        finals.append(float(info["metric"]))
    return float(np.mean(finals))


def run_sb3(workspace, timesteps, batched, task):
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    if batched:
        venv = nsj.gym.make_sb3_vec_env(workspace, num_envs=batched, **task)
        agent = PPO("MlpPolicy", venv, n_steps=64, batch_size=4096, n_epochs=4, verbose=0, seed=0)
    else:
        venv = make_vec_env(lambda: nsj.gym.make_histfactory_env(workspace, **task), n_envs=4, seed=0)
        agent = PPO("MlpPolicy", venv, learning_rate=3e-4, n_steps=128, batch_size=64, n_epochs=10,
                    verbose=0, seed=0)
    t0 = time.perf_counter()
    agent.learn(total_timesteps=timesteps)
    seconds = time.perf_counter() - t0
    return agent, seconds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny budgets (smoke test)")
    ap.add_argument("--out", default="docs/results.md")
    ap.add_argument("--figure", default="docs/results.png")
    args = ap.parse_args(argv)
    q = args.quick
    ws = seed_workspace()
    model = nsj.from_pyhf(ws)
    nominal = np.asarray(model.sample_yields("SR", "signal"))
    best = np.full_like(nominal, 1e-12)
    best[-1] = nominal.sum()
    q_opt = float(asimov_q0(model, "SR", "signal", best))
    q_nom = float(asimov_q0(model, "SR", "signal", nominal))
    env, params = nsj.gym.make_gymnax_env(ws, **TASK)
    rows, curves = [], {}

    def row(name, q0, seconds, steps, note=""):
        rate = steps / seconds if seconds > 0 else float("nan")
        rows.append([name, f"{q0:.3f}", f"{np.sqrt(max(q0, 0)):.3f}", f"{100 * q0 / q_opt:.1f}%",
                     f"{seconds:.1f}", f"{steps:,}", f"{rate:,.0f}", note])
        print(rows[-1])

    # 1. random policy
    t0 = time.perf_counter()
    rnd = evaluate(env, params, random_policy(nominal.size), jax.random.key(0), 256, keyed=True)
    row("random policy", float(np.mean(rnd["final_metric"])), time.perf_counter() - t0, 256 * 64,
        "mean over 256 episodes")

    # 2./3. SB3 PPO
    try:
        ts = 2_000 if q else 20_000
        agent, sec = run_sb3(ws, ts, 0, TASK)
        row("SB3 PPO, Gymnasium adapter (make_vec_env, 4 envs)", final_q0_sb3(agent, ws, **TASK), sec, ts,
            "seed notebook's settings")
        ts = 64 * 64 if q else 64 * 1024 * 8
        agent, sec = run_sb3(ws, ts, 64 if q else 1024, TASK)
        row(f"SB3 PPO, SB3 VecEnv ({64 if q else 1024} envs)", final_q0_sb3(agent, ws, **TASK), sec, ts)
    except ImportError as err:
        print(f"skipping SB3 rows: {err}")

    # 4. pure-JAX PPO
    # --quick: 8 updates of 128 envs x 32 steps, in two logged chunks (a smoke run: compile-bound)
    smoke = dict(total_timesteps=128 * 32 * 8, num_envs=128)
    cfg = PPOConfig(**smoke) if q else PPOConfig()
    out = train_ppo(env, params, cfg, jax.random.key(0))
    ev = evaluate(env, params, out.policy, jax.random.key(1), 8)
    row(f"pure-JAX PPO ({cfg.num_envs} envs, jit+vmap)", float(np.mean(ev["final_metric"])), out.seconds,
        out.env_steps, "training time includes compilation")
    curves["pure-JAX PPO"] = out.metrics
    ppo_yields = np.asarray(ev["yields"][0])

    # 5. gradient ascent
    res = optimise_shape(model, "SR", "signal", steps=50 if q else 300)
    row("gradient ascent (Adam on softmax logits, 8 vmapped restarts)", res.q0, res.seconds, res.evaluations,
        "evaluations = q0+gradient calls; nominal-shape start stalls at "
        f"{res.restart_q0[res.init_names.index('nominal shape')]:.2f}")

    # reference: the seed's original setting (observed data, absolute reward, no budget)
    env_o, params_o = nsj.gym.make_gymnax_env(ws, channel="SR", sample="signal", reward_metric="q0",
                                               max_steps=64, action_scale=0.2)
    rnd_o = evaluate(env_o, params_o, random_policy(nominal.size), jax.random.key(0), 64, keyed=True)
    ref = smoke if q else dict(total_timesteps=64 * 256 * 8, num_envs=256)
    out_o = train_ppo(env_o, params_o, PPOConfig(**ref, start_noise=None, progress=False), jax.random.key(0))
    ev_o = evaluate(env_o, params_o, out_o.policy, jax.random.key(1), 8)

    table = ["| method | final q0 | Z0 | % of optimum | wall time (s) | env steps | steps/s | note |",
             "|---|---|---|---|---|---|---|---|"] + ["| " + " | ".join(r) + " |" for r in rows]
    text = f"""## Optimising the signal shape (yield environment)

Generated by `python examples/compare_optimisers.py`{' --quick' if q else ''} on
{nsj.__name__} {nsj.__version__}; machine: 2-core CPU (no GPU). Every q0 below is
computed by full profile fits (two per evaluation), in float64.

### The task

The seed workspace (8 bins, Gaussian signal over a falling background, 8%
background normalisation uncertainty). Reward: q0 of the current signal
yields on their own Asimov data; the total signal is held at the nominal
budget; 64 steps of multiplicative actions with scale 0.2. The nominal shape
gives q0 = {q_nom:.2f}; the optimum puts all signal in the last
(lowest-background) bin: q0 = {q_opt:.2f}.

The landscape is a staircase of local optima (all signal in bin 4, 5, 6, 7:
q0 = 12.0, 14.5, 17.3, 20.4). Plain Adam on softmax logits started at the
nominal shape stalls with all signal in bin 4 (q0 ~ 12.0); from an equal split
it reaches the optimum — hence the vmapped restarts. PPO with per-step Gaussian
noise alone also climbs only to bin 4–6; with randomised starts during
training (`PPOConfig.start_noise`, default 4.0; evaluation from the nominal
start) it reaches the optimum.

### Final q0 by method

Final q0 = the metric at the end of an evaluation episode from the nominal
start (deterministic policy), or the best shape found by gradient ascent.

{chr(10).join(table)}

![results]({Path(args.figure).name})

### The seed's original setting, for reference

With the observed data (NextStat's default) and no budget, q0 does not change
when the signal is scaled and is largest at the nominal shape, so "do nothing"
is optimal: random policy final q0 = {float(np.mean(rnd_o['final_metric'])):.3f},
pure-JAX PPO final q0 = {float(np.mean(ev_o['final_metric'])):.3f}
(nominal {float(params_o.reset_metric):.3f}).

### GPU

No GPU was available to this run; the training loop has no host round trips
inside the jitted update (float32 networks, float64 statistics), so it runs
unchanged on a GPU. Where one is at hand, `python examples/compare_optimisers.py`
measures the same rows there.
"""
    write_section(args.out, "compare_optimisers", text)
    print(f"wrote {args.out}")
    _figure(args.figure, curves, rows, ppo_yields, nominal, q_opt)
    print(f"wrote {args.figure}")


def _figure(path, curves, rows, yields, nominal, q_opt):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    m = curves["pure-JAX PPO"]
    axes[0].plot(np.asarray(m["timesteps"]), np.asarray(m["metric"]), color="#D4AF37", lw=2)
    axes[0].axhline(q_opt, color="k", ls="--", lw=0.8, label="optimum")
    axes[0].set_xlabel("environment steps")
    axes[0].set_ylabel("final q0 of training episodes")
    axes[0].set_title("pure-JAX PPO learning curve")
    axes[0].legend()
    names = [r[0].split(" (")[0] for r in rows]
    axes[1].barh(names, [float(r[1]) for r in rows], color="#4477AA")
    axes[1].axvline(q_opt, color="k", ls="--", lw=0.8)
    axes[1].set_xlabel("final q0")
    axes[1].set_title("final q0 by method")
    centers = np.arange(nominal.size)
    axes[2].bar(centers - 0.2, nominal, width=0.4, color="gray", label="nominal")
    axes[2].bar(centers + 0.2, yields[-1], width=0.4, color="#D4AF37", label="PPO, end of episode")
    axes[2].set_xlabel("bin")
    axes[2].set_ylabel("signal yield")
    axes[2].set_title("signal shape")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
