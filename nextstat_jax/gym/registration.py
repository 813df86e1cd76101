"""Registration of ``"nextstat_jax/HistFactory-v0"`` with gymnasium and gymnax.

* ``gymnasium.make("nextstat_jax/HistFactory-v0", workspace=ws, channel="SR",
  sample="signal", reward_metric="q0", ...)`` -> :class:`HistFactoryEnv`
  (wrapped by gymnasium's usual order-enforcing and passive-checker wrappers);
  ``gymnasium.make_vec(ENV_ID, num_envs=N, workspace=ws, ...)`` ->
  :class:`~nextstat_jax.gym.vector_env.HistFactoryVectorEnv` (the registered
  vector entry point).
* ``gymnax.make(ENV_ID, workspace=ws, channel="SR", sample="signal", ...)``
  -> ``(env, env.default_params)``.

The ids exist once :mod:`nextstat_jax.gym` is imported; without that import,
``gymnasium.make("nextstat_jax.gym:nextstat_jax/HistFactory-v0", ...)`` imports
it first (gymnasium's ``module:id`` form).

No ``max_episode_steps`` is registered: the env truncates itself at
``max_steps``. :func:`register` is idempotent (called on import of
:mod:`nextstat_jax.gym`; calling it again, or reloading, does nothing).
"""

from __future__ import annotations

__all__ = ["ENV_ID", "register"]

ENV_ID = "nextstat_jax/HistFactory-v0"


def _gymnax_factory(workspace, channel: str, sample: str, **kwargs):
    from .gymnax_env import make_gymnax_env

    env, _ = make_gymnax_env(workspace, channel, sample, **kwargs)
    return env


def register() -> None:
    """Register :data:`ENV_ID` with gymnasium and gymnax (if not already)."""
    import gymnasium

    if ENV_ID not in gymnasium.registry:
        gymnasium.register(
            id=ENV_ID,
            entry_point="nextstat_jax.gym.gymnasium_env:HistFactoryEnv",
            vector_entry_point="nextstat_jax.gym.vector_env:HistFactoryVectorEnv",
        )

    try:
        import gymnax
        from gymnax import registration as gymnax_registration
    except ImportError:  # pragma: no cover - gymnax is a dependency
        return
    registered = getattr(gymnax_registration, "registered_envs", ())
    if ENV_ID not in registered and ENV_ID not in getattr(gymnax_registration, "_registry", {}):
        try:
            gymnax.register(ENV_ID, _gymnax_factory)
        except ValueError:  # registered concurrently / by an older copy of this module
            pass


register()
