"""Cut optimisers: a grid scan (what an analyser runs), gradient ascent
through relaxed cuts, and PPO on the cut environment.

All three maximise the expected discovery significance Z0 (Asimov data of
the selection at mu = 1) subject to ``min_events``: at least that many
selected background MC events (unweighted). All report the Z0 of their final
thresholds evaluated with **hard** cuts, the wall time (compilation
included) and the number of statistic evaluations, as a
:class:`CutOptResult`.

* :func:`grid_scan`: a regular grid of thresholds over the cut ranges, every
  point evaluated with hard cuts (vmapped in chunks of ``batch_size``);
  ``objective="s_over_sqrt_b"`` picks the point by the naive figure of merit
  instead (its Z0 is still the profile-likelihood one).
* :func:`gradient_ascent`: thresholds in range units ``u in [0, 1]^C``,
  ``t = low + u (high - low)``; Adam on the relaxed-cut Z0 with the
  temperature annealed geometrically from ``temperature[0]`` to
  ``temperature[1]`` (fractions of the ranges), a quadratic penalty below
  ``min_events`` (soft count), ``n_restarts`` runs at once (vmap; restart 0
  starts from the loosest cuts, the others uniformly at random), each one
  jitted ``lax.scan``; the best restart by hard-cut Z0 wins.
* :func:`ppo_search`: :func:`nextstat_jax.rl.train_ppo` on the gymnax cut
  environment, then one deterministic episode of the trained policy from the
  environment's reset; its final thresholds are the result.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._x64 import f64, x64
from ..errors import InvalidInput
from ..solver import SolverOptions
from ..teststats import safe_sqrt
from .model import CutModel

__all__ = ["CutOptResult", "grid_scan", "gradient_ascent", "ppo_search", "evaluate_hard"]


class CutOptResult(NamedTuple):
    """``method``; ``thresholds`` (C,) found; ``z0`` their hard-cut Z0;
    ``n_background`` selected background MC events there; ``seconds`` wall time
    (compilation included); ``evaluations`` statistic evaluations (gradient
    ascent: value+gradient evaluations; PPO: environment steps);
    ``details``: method-specific extras (dict)."""

    method: str
    thresholds: np.ndarray
    z0: float
    n_background: float
    seconds: float
    evaluations: int
    details: dict


@functools.partial(jax.jit, static_argnames=("options",))
def _hard_eval(cm: CutModel, t, options=SolverOptions()):
    """(z0, n_background, s/sqrt(b), converged) for a batch of thresholds (G, C)."""

    def one(tt):
        q0, conv, nom, nb = cm._evaluate(tt, None, "asimov", options)
        return safe_sqrt(q0), nb, cm._s_over_sqrt_b(tt, None, nom), conv

    return jax.vmap(one)(t)


def _padded_size(n: int, batch_size: int) -> int:
    """Chunk size: ``batch_size`` for large batches, else the next power of
    two >= n (at least 8), so that few shapes are ever compiled."""
    if n > batch_size:
        return batch_size
    return max(8, 1 << max(n - 1, 0).bit_length())


@x64
def evaluate_hard(cm: CutModel, thresholds, *, batch_size: int = 256) -> dict:
    """Hard-cut ``z0``, ``n_background``, ``s_over_sqrt_b`` and ``converged``
    of a batch of thresholds (G, C) (or one (C,)), as NumPy arrays (vmapped
    in chunks of ``batch_size``)."""
    t = np.asarray(thresholds, np.float64)
    single = t.ndim == 1
    t = np.atleast_2d(t)
    if t.shape[1] != cm.n_cuts or not np.all(np.isfinite(t)):
        raise InvalidInput(f"thresholds must be finite with shape (G, {cm.n_cuts}), got {t.shape}")
    size = _padded_size(t.shape[0], int(batch_size))
    outs = []
    for a in range(0, t.shape[0], size):
        chunk = t[a : a + size]
        n = chunk.shape[0]
        if n < size:  # pad with copies: one compiled shape
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - n, axis=0)])
        res = jax.device_get(_hard_eval(cm, f64(chunk)))
        outs.append([np.asarray(r)[:n] for r in res])
    z0, nb, sb, conv = (np.concatenate([o[k] for o in outs]) for k in range(4))
    out = {"z0": z0, "n_background": nb, "s_over_sqrt_b": sb, "converged": conv}
    return {k: v[0] for k, v in out.items()} if single else out


def _grid(cm: CutModel, n_points) -> np.ndarray:
    C = cm.n_cuts
    n = [int(n_points)] * C if np.ndim(n_points) == 0 else [int(k) for k in n_points]
    if len(n) != C or min(n) < 1:
        raise InvalidInput(f"n_points must be an int >= 1 or {C} of them, got {n_points!r}")
    lo, hi = np.asarray(cm.low), np.asarray(cm.high)
    axes = [np.linspace(lo[c], hi[c], n[c]) if n[c] > 1 else np.asarray([float(cm.loosest[c])]) for c in range(C)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, C)


@x64
def grid_scan(cm: CutModel, n_points=8, *, objective: str = "z0", min_events: float = 0.0,
              batch_size: int = 256, grid=None) -> CutOptResult:
    """Evaluate every point of a regular grid (``n_points`` per cut, ends of
    the ranges included; or explicit ``grid`` (G, C)) with hard cuts and
    return the best by ``objective`` (``"z0"`` or ``"s_over_sqrt_b"``) among
    points with at least ``min_events`` background MC events."""
    if objective not in ("z0", "s_over_sqrt_b"):
        raise InvalidInput(f"objective must be 'z0' or 's_over_sqrt_b', got {objective!r}")
    t0 = time.perf_counter()
    pts = _grid(cm, n_points) if grid is None else np.asarray(grid, np.float64)
    ev = evaluate_hard(cm, pts, batch_size=batch_size)
    score = np.where(ev["n_background"] >= min_events, ev[objective], -np.inf)
    if not np.isfinite(score).any():
        raise InvalidInput(f"no grid point keeps min_events={min_events} background MC events")
    best = int(np.argmax(score))
    seconds = time.perf_counter() - t0
    return CutOptResult(
        f"grid scan ({objective})", pts[best], float(ev["z0"][best]), float(ev["n_background"][best]),
        seconds, int(pts.shape[0]),
        {"grid": pts, "z0": ev["z0"], "n_background": ev["n_background"],
         "s_over_sqrt_b": ev["s_over_sqrt_b"], "converged": ev["converged"]},
    )


@functools.partial(jax.jit, static_argnames=("steps", "lr", "options"))
def _ascent(cm: CutModel, u0, temps, min_events, *, steps, lr, options):
    opt = optax.adam(lr)
    width = cm.high - cm.low

    def objective(u, temperature):
        t = cm.low + u * width
        q0, _, _, nb = cm._evaluate(t, temperature, "asimov", options)
        z = safe_sqrt(q0)
        short = jnp.where(min_events > 0, jnp.maximum(1.0 - nb / jnp.maximum(min_events, 1e-12), 0.0), 0.0)
        return -(z - 10.0 * short**2), z

    def one(u_init):
        def step(carry, temperature):
            u, state = carry
            (_, z), g = jax.value_and_grad(objective, has_aux=True)(u, temperature)
            g = jnp.where(jnp.isfinite(g), g, 0.0)
            upd, state = opt.update(g, state, u)
            u = jnp.clip(optax.apply_updates(u, upd), 0.0, 1.0)
            return (u, state), z

        (u, _), hist = jax.lax.scan(step, (u_init, opt.init(u_init)), temps)
        return cm.low + u * width, hist

    return jax.vmap(one)(u0)


@x64
def gradient_ascent(cm: CutModel, *, n_restarts: int = 8, steps: int = 200, lr: float = 0.02,
                    temperature: Sequence[float] = (0.05, 0.005), min_events: float = 0.0,
                    init=None, key=None, options: SolverOptions = SolverOptions()) -> CutOptResult:
    """Adam through relaxed cuts (module doc). ``init``: optional (R, C)
    starting thresholds instead of the default restarts; ``key`` for the
    random restarts (default ``jax.random.key(0)``)."""
    if int(steps) < 1 or int(n_restarts) < 1:
        raise InvalidInput(f"steps and n_restarts must be >= 1, got {steps}, {n_restarts}")
    T0, T1 = (float(v) for v in temperature)
    if not (T0 > 0 and T1 > 0):
        raise InvalidInput(f"temperatures must be > 0, got {temperature}")
    t0 = time.perf_counter()
    lo, hi = np.asarray(cm.low), np.asarray(cm.high)
    if init is None:
        key = jax.random.key(0) if key is None else key
        rnd = np.asarray(jax.random.uniform(key, (int(n_restarts) - 1, cm.n_cuts), jnp.float32), np.float64)
        u0 = np.concatenate([((np.asarray(cm.loosest) - lo) / (hi - lo))[None], rnd])
    else:
        u0 = (np.atleast_2d(np.asarray(init, np.float64)) - lo) / (hi - lo)
        if u0.shape[1] != cm.n_cuts or not np.all(np.isfinite(u0)):
            raise InvalidInput(f"init must be finite with shape (R, {cm.n_cuts}), got {u0.shape}")
        u0 = np.clip(u0, 0.0, 1.0)
    temps = T0 * (T1 / T0) ** (np.arange(int(steps)) / max(int(steps) - 1, 1))
    ts, hist = _ascent(cm, f64(u0), f64(temps), f64(min_events), steps=int(steps), lr=float(lr), options=options)
    ts = np.asarray(ts)
    ev = evaluate_hard(cm, ts)
    score = np.where(ev["n_background"] >= min_events, ev["z0"], -np.inf)
    best = int(np.argmax(score)) if np.isfinite(score).any() else int(np.argmax(ev["z0"]))
    seconds = time.perf_counter() - t0
    return CutOptResult(
        "gradient ascent (relaxed cuts)", ts[best], float(ev["z0"][best]), float(ev["n_background"][best]),
        seconds, int(u0.shape[0]) * int(steps) + int(u0.shape[0]),
        {"restart_thresholds": ts, "restart_z0": ev["z0"], "restart_n_background": ev["n_background"],
         "history": np.asarray(hist), "temperatures": temps},
    )


@x64
def ppo_search(env, params, config=None, key=None) -> CutOptResult:
    """Train :func:`nextstat_jax.rl.train_ppo` on a gymnax cut environment
    (:func:`~nextstat_jax.cuts.make_cut_gymnax_env`) and run the trained
    deterministic policy for one episode from the environment's own reset
    (``params``: its ``init_noise`` as given, normally 0); the final
    thresholds of that episode are the result. ``evaluations`` counts the
    training environment steps."""
    from ..rl import PPOConfig, train_ppo

    config = PPOConfig() if config is None else config
    key = jax.random.key(0) if key is None else key
    t0 = time.perf_counter()
    out = train_ppo(env, params, config, key)
    k_eval = jax.random.fold_in(key, 1)
    traj = _rollout(env, params, out.policy, k_eval, int(params.max_steps_in_episode))
    thresholds = np.asarray(traj["thresholds"][-1])
    seconds = time.perf_counter() - t0
    cm = params.cut_model
    z0, nb = float(cm.z0(thresholds)), float(cm.n_background(thresholds))
    return CutOptResult(
        "PPO (cut environment)", thresholds, z0, nb, seconds,
        int(out.env_steps), {"train": out, "trajectory": {k: np.asarray(v) for k, v in traj.items()}},
    )


@functools.partial(jax.jit, static_argnums=(0, 2, 4))
def _rollout(env, params, policy, key, n_steps):
    obs, state = env.reset(key, params)

    def body(carry, k):
        obs, state = carry
        a = policy(obs)
        obs2, state2, reward, term, trunc, info = env.step(k, state, a, params)
        return (obs2, state2), (info["thresholds"], info["metric"], reward)

    _, (ths, metric, reward) = jax.lax.scan(body, (obs, state), jax.random.split(key, n_steps))
    ths = jnp.concatenate([state.thresholds[None], ths], axis=0)
    return {"thresholds": ths, "metric": metric, "reward": reward}
