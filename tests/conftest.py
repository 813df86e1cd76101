"""Shared test set-up."""

import os

# One OpenMP thread for torch (Stable-Baselines3 tests): its libgomp pool and
# XLA's thread pools in one long-lived worker process have been seen to
# deadlock, every thread idle in a futex wait. Set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

# A persistent compilation cache shared by every process of a test run (both
# xdist workers and the example/CLI subprocesses, which inherit the
# environment): test modules drop their compiled code (below) and later
# modules compile many of the same programs again (fits, q0 and hypotest of
# the seed model). Entries are keyed by the program, options and jax
# version, so reuse across runs is safe. Set before jax is imported.
import tempfile  # noqa: E402

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"nextstat-jax-test-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

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


@pytest.fixture(scope="module")
def x64():
    """float64 for a whole module that calls internals (public functions
    enable it themselves); use with ``pytestmark = pytest.mark.usefixtures("x64")``."""
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)
