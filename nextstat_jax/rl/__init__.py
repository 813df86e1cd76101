"""Pure-JAX reinforcement learning for the nextstat_jax environments:
PPO (``train_ppo``), policy evaluation and checkpoints."""

from .checkpoint import load, save
from .evaluate import evaluate, random_policy
from .ppo import PPOConfig, TrainOutput, make_policy, train_ppo

__all__ = ["PPOConfig", "TrainOutput", "train_ppo", "make_policy", "evaluate", "random_policy", "save", "load"]
