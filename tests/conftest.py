"""Shared test set-up."""

import os

# One OpenMP thread for torch (Stable-Baselines3 tests): its libgomp pool and
# XLA's thread pools in one long-lived worker process have been seen to
# deadlock, every thread idle in a futex wait. Set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import gc  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drop JAX's compiled executables after each test module: a single
    process runs hundreds of compilations, and keeping them all holds
    gigabytes of memory."""
    yield
    jax.clear_caches()
    gc.collect()
