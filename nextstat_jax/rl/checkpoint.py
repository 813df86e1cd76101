"""Save and load trained policies (msgpack via flax.serialization)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import flax.serialization
import jax
import numpy as np

from .normalize import RunningStats
from .ppo import PPOConfig, TrainOutput

__all__ = ["save", "load"]


def save(path, out: TrainOutput) -> Path:
    """Write the policy parameters, config and metrics of ``out`` to ``path``."""
    payload = {
        "format": "nextstat_jax.rl/1",
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(out.config).items()},
        "action_dim": out.action_dim,
        "seconds": out.seconds,
        "env_steps": out.env_steps,
        "network": jax.device_get(out.policy_params["network"]),
        "obs_stats": dict(jax.device_get(out.policy_params["obs_stats"])._asdict()),
        "metrics": {k: np.asarray(v) for k, v in out.metrics.items()},
    }
    path = Path(path)
    path.write_bytes(flax.serialization.msgpack_serialize(payload))
    return path


def load(path) -> TrainOutput:
    """Read a :class:`TrainOutput` written by :func:`save` (``all_params`` is None)."""
    payload = flax.serialization.msgpack_restore(Path(path).read_bytes())
    if payload.get("format") != "nextstat_jax.rl/1":
        raise ValueError(f"{path} is not a nextstat_jax policy checkpoint")
    cfg = dict(payload["config"])
    cfg["hidden"] = tuple(cfg["hidden"])
    config = PPOConfig(**cfg)
    stats = RunningStats(**payload["obs_stats"])
    params = {"network": payload["network"], "obs_stats": stats}
    return TrainOutput(params, dict(payload["metrics"]), config, int(payload["action_dim"]),
                       float(payload["seconds"]), int(payload["env_steps"]))
