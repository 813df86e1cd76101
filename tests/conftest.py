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

import ctypes  # noqa: E402
import ctypes.util  # noqa: E402
import gc  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402


try:
    _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _LIBC.malloc_trim  # glibc only
except (OSError, AttributeError):
    _LIBC = None


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drop JAX's compiled executables after each test module: a single
    process runs hundreds of compilations, and keeping them all holds
    gigabytes of memory."""
    yield
    _release()


#: resident memory (bytes) above which a test's compiled code is dropped
#: before the next test: a module that compiles hundreds of programs
#: (tests/test_parity_infer.py: every corpus and random workspace's fits and
#: test statistics) would otherwise grow a worker past several GB, beside
#: the other worker and the example subprocesses on a 24 GB machine
RSS_LIMIT = int(float(os.environ.get("NSJ_TEST_RSS_LIMIT_GB", "4")) * 2**30)


def _release():
    """Drop JAX's compiled code and hand the freed memory back to the system
    (glibc keeps freed blocks in its arenas: measured, clearing 8 compiled
    hypotests left the RSS at 715 MB until ``malloc_trim`` took it to 294)."""
    jax.clear_caches()
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _rss() -> int:
    """This process's resident set size in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@pytest.fixture(autouse=True)
def _bound_memory():
    """Drop compiled code after a test that leaves the process above
    ``RSS_LIMIT`` (the persistent compilation cache makes a later recompile of
    the same program a disk read)."""
    yield
    if _rss() > RSS_LIMIT:
        _release()


@pytest.fixture(scope="module")
def x64():
    """float64 for a whole module that calls internals (public functions
    enable it themselves); use with ``pytestmark = pytest.mark.usefixtures("x64")``."""
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)
