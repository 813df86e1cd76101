"""``roots.bracket_and_solve``: several decreasing functions' roots in one
loop, the bracket widened where it does not hold a root (upper limits use it
with the six CLs curves)."""

import numpy as np

import jax
import jax.numpy as jnp

from nextstat_jax.roots import bracket_and_solve

import pytest

pytestmark = pytest.mark.usefixtures("x64")  # conftest.py

TARGETS = np.array([0.7, 1.3, 2.5, 9.0, 30.0, 0.01])  # inside, at the edges, and beyond [0.5, 4]


def _curves(x):
    """(6,) decreasing functions of x, root i at TARGETS[i] (linear, cubic, log, exp)."""
    t = jnp.asarray(TARGETS)
    return jnp.stack([t[0] - x, (t[1] - x) ** 3, jnp.log(t[2] / x), jnp.exp(-x) - jnp.exp(-t[3]),
                      jnp.tanh(t[4] - x), t[5] - x])


def test_roots_inside_and_beyond_the_bracket():
    res = jax.jit(lambda a, b: bracket_and_solve(_curves, a, b, n=6))(0.5, 4.0)
    assert np.all(np.asarray(res.converged)), res
    np.testing.assert_allclose(np.asarray(res.root), TARGETS, rtol=1e-8)
    assert 0 < int(res.n_iter) <= 80


def test_one_function_and_vmap():
    solve = jax.jit(jax.vmap(lambda c: bracket_and_solve(lambda x: jnp.stack([c - x]), 1.0, 2.0, n=1)))
    cs = jnp.asarray([1.5, 0.2, 7.0])  # inside, below (a halved), above (b doubled)
    res = solve(cs)
    assert np.all(np.asarray(res.converged))
    np.testing.assert_allclose(np.asarray(res.root)[:, 0], np.asarray(cs), rtol=1e-8)


def test_no_root_within_the_expansion_budget_is_not_converged():
    res = bracket_and_solve(lambda x: jnp.stack([1e9 - x, 3.0 - x]), 1.0, 2.0, n=2, max_expand=4)
    assert not bool(res.converged[0]) and bool(res.converged[1])
    np.testing.assert_allclose(float(res.root[1]), 3.0, rtol=1e-8)
