"""What the project's gymnax environments share: static settings that make
equal envs share compiled code, default params, and float64 around gymnax's
jitted ``step``/``reset``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from gymnax.environments import environment, spaces

from .._x64 import x64

__all__ = ["ConfiguredEnvironment", "Float64Box"]


class Float64Box(spaces.Box):
    """gymnax's ``Box`` for float64 observations, whose ``sample`` and
    ``contains`` run in float64 whatever the user's ``jax_enable_x64``
    (gymnax's own would compare float64 observations in float32 and sample
    float32 values, with a truncation warning each call)."""

    def __init__(self, low, high, shape):
        super().__init__(low, high, shape, jnp.float64)

    @x64
    def sample(self, key: jax.Array) -> jax.Array:
        return super().sample(key)

    @x64
    def contains(self, x: jax.Array) -> jax.Array:
        return super().contains(x)


class ConfiguredEnvironment(environment.Environment):
    """A gymnax ``Environment`` defined by a hashable ``config`` (static
    settings) and default ``params`` (a pytree: the model lives there).

    Two envs with equal configs compare equal and hash alike, so gymnax's
    ``step``/``reset`` (jitted with ``self`` static) compile once for both.
    Episodes are truncated at ``params.max_steps_in_episode``; subclasses
    that terminate say so through ``step_env``."""

    def __init__(self, config, params):
        super().__init__()
        self.config = config
        self._params = params

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.config == self.config

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.config))

    @property
    def default_params(self):
        return self._params

    # gymnax's step/reset are jax.jit-ed; entering float64 *around* them makes
    # the tracing and any batching of their jaxprs (vmap of jit) happen in
    # float64 too, whatever the user's jax_enable_x64.
    @x64
    def step(self, key, state, action, params=None):
        return environment.Environment.step(self, key, state, action, params)

    @x64
    def reset(self, key, params=None):
        return environment.Environment.reset(self, key, params)

    def is_truncated(self, state, params) -> jax.Array:
        return state.time >= params.max_steps_in_episode

    def is_terminated(self, state, params) -> jax.Array:
        return jnp.zeros((), bool)
