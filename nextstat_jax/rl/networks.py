"""Actor-critic network for continuous actions (flax.linen, float32).

A shared-nothing MLP pair: the actor outputs the mean of a diagonal Gaussian
with a state-independent learned ``log_std``; the critic outputs V(s).
Observations are normalised outside the network (``normalize.py``).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

__all__ = ["ActorCritic"]


class ActorCritic(nn.Module):
    action_dim: int
    hidden: Sequence[int] = (64, 64)
    activation: str = "tanh"
    log_std_init: float = -0.5

    @nn.compact
    def __call__(self, obs):
        act = nn.tanh if self.activation == "tanh" else nn.relu
        x = obs.astype(jnp.float32)
        a = x
        for h in self.hidden:
            a = act(nn.Dense(h, kernel_init=nn.initializers.orthogonal(np.sqrt(2)))(a))
        mean = nn.Dense(self.action_dim, kernel_init=nn.initializers.orthogonal(0.01))(a)
        log_std = self.param("log_std", nn.initializers.constant(self.log_std_init), (self.action_dim,))
        v = x
        for h in self.hidden:
            v = act(nn.Dense(h, kernel_init=nn.initializers.orthogonal(np.sqrt(2)))(v))
        value = nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0))(v)[..., 0]
        return mean, jnp.broadcast_to(log_std, mean.shape), value
