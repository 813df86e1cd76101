"""Shared test set-up."""

import gc

import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drop JAX's compiled executables after each test module: a single
    process runs hundreds of compilations, and keeping them all holds
    gigabytes of memory."""
    yield
    jax.clear_caches()
    gc.collect()
