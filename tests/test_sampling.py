"""``sampling.poisson``: the Poisson sampler of the toys.

* draws follow the Poisson distribution (chi-square goodness of fit, mean and
  variance) on both sides of the switch between inversion and rejection;
* each entry of a mixed vector follows its own rate;
* ``log_pmf`` against 50-digit arithmetic up to rate 1e12 (jax.random.poisson
  samples in float32 and gets the variance 2.8% wrong at rate 1e6);
* the unrolled part of the inversion walk and its loop agree exactly;
* unbatched rates (real branches) and batched rates (selects) give the same
  draws; shapes, zeros, non-finite rates and empty input.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import jax
import jax.numpy as jnp

from nextstat_jax import sampling


pytestmark = pytest.mark.usefixtures("x64")  # conftest.py


N = 200_000


def draws(rate, n=N, seed=1):
    return np.asarray(jax.jit(sampling.poisson)(jax.random.key(seed), jnp.full(n, rate)))


def chi2_pvalue(x, rate, n_bins=40):
    """Goodness of fit of draws ``x`` to Poisson(rate) in ~``n_bins`` bins of
    equal probability (bin i: quantile i-1 < x <= quantile i)."""
    upper = np.unique(stats.poisson.ppf(np.linspace(0, 1, n_bins + 1)[1:-1], rate))
    probs = np.diff(np.concatenate([[0.0], stats.poisson.cdf(upper, rate), [1.0]]))
    observed = np.bincount(np.searchsorted(upper, x, side="left"), minlength=upper.size + 1)
    expected = probs * x.size
    chi2 = np.sum((observed - expected) ** 2 / expected)
    return stats.chi2.sf(chi2, max(upper.size, 1))


@pytest.mark.parametrize("rate", [1e-3, 0.7, 3.0, 9.99, 10.0, 10.5, 37.0, 200.5, 1e3, 1e6, 1e9])
def test_draws_follow_the_poisson_distribution(rate):
    x = draws(rate)
    assert np.all(x == np.round(x)) and np.all(x >= 0)
    se = np.sqrt(rate / x.size)
    assert abs(x.mean() - rate) < 5 * se, f"mean {x.mean()} vs {rate}"
    # variance of the sample variance of a Poisson: (rate + 2 rate^2) / n
    assert abs(x.var() - rate) < 5 * np.sqrt((rate + 2 * rate**2) / x.size), f"variance {x.var()} vs {rate}"
    p = chi2_pvalue(x, rate)
    assert p > 1e-4, f"chi-square p = {p:.2g} at rate {rate}"


def test_log_pmf_is_exact_at_every_rate():
    """log_pmf against 50-digit arithmetic: the naive float64 formula loses
    ~1e-3 at rate 1e12 (terms ~3e13), float32 (jax.random.poisson's) all of it."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    for lam in (10.0, 37.5, 1e3, 1e6, 1e9, 1e12):
        ks = np.unique(np.clip(np.round(lam + np.sqrt(lam) * np.linspace(-8, 8, 41)), 0, None))
        ks = np.concatenate([np.arange(12.0), ks])
        ours = np.asarray(sampling.log_pmf(jnp.asarray(ks), jnp.float64(lam)))
        for k, v in zip(ks, ours):
            m = mpmath.mpf(lam)
            ref = float(-m + mpmath.mpf(k) * mpmath.log(m) - mpmath.loggamma(mpmath.mpf(k) + 1))
            assert abs(v - ref) <= 1e-12 * abs(ref) + 1e-8, (lam, k, v, ref)  # the naive formula: 4e-3 at 1e12


def test_a_wrong_distribution_fails_the_check():
    # the check has power: Poisson(10.5) draws judged against rate 10
    assert chi2_pvalue(draws(10.5), 10.0) < 1e-6


def test_each_entry_follows_its_own_rate():
    rates = jnp.asarray([0.0, 0.5, 9.5, 10.0, 10.5, 50.0, 2e4])
    keys = jax.random.split(jax.random.key(3), 20_000)
    x = np.asarray(jax.jit(jax.vmap(sampling.poisson, in_axes=(0, None)))(keys, rates))
    assert x.shape == (20_000, rates.size)
    for j, r in enumerate(np.asarray(rates)):
        assert abs(x[:, j].mean() - r) < 5 * np.sqrt(max(r, 1e-3) / x.shape[0]) + 1e-12, (r, x[:, j].mean())
    assert np.all(x[:, 0] == 0)


def test_inversion_is_the_exact_quantile_of_its_uniform():
    """Given its uniform, a table draw is the Poisson quantile min{k : F(k) >= u}
    (scipy's ppf), from rate 0 to TABLE_MAX, tails included."""
    stats = pytest.importorskip("scipy.stats")
    rates = jnp.concatenate([jnp.linspace(0.0, sampling.TABLE_MAX, 2001), jnp.asarray([1e-9, 0.5, 199.99])])
    key = jax.random.key(5)
    u = np.asarray(jax.random.uniform(key, rates.shape, rates.dtype))
    ours = np.asarray(jax.jit(sampling._inversion)(jnp.asarray(u), rates))
    ref = stats.poisson.ppf(u, np.asarray(rates))
    assert np.array_equal(ours, np.where(np.asarray(rates) > 0, ref, 0.0))
    # the extreme uniforms, through the table directly
    lam = jnp.asarray([3.0, 150.0])
    start = np.asarray(sampling._window_start(lam))
    for uu in (2**-52, 0.5, 1 - 2**-52):  # the smallest and largest nonzero uniforms
        k = np.asarray(jax.jit(lambda u: _table_quantile(lam, u))(jnp.full(2, uu)))
        assert np.all(k >= start) and np.all(k < start + sampling.TABLE_SIZE)
        np.testing.assert_array_equal(k, stats.poisson.ppf(uu, np.asarray(lam)))


def _table_quantile(lam, u):
    """_inversion's draw for given uniforms."""
    return sampling._inversion(u, lam)


def test_batched_and_unbatched_rates_give_the_same_draws():
    rates = jnp.asarray([0.3, 4.0, 12.0, 80.0])
    keys = jax.random.split(jax.random.key(7), 512)
    shared = jax.jit(jax.vmap(sampling.poisson, in_axes=(0, None)))(keys, rates)  # lax.cond branches
    own = jax.jit(jax.vmap(sampling.poisson))(keys, jnp.broadcast_to(rates, (512, 4)))  # selects
    np.testing.assert_array_equal(np.asarray(shared), np.asarray(own))
    one = np.stack([np.asarray(sampling.poisson(k, rates)) for k in keys[:8]])
    np.testing.assert_array_equal(one, np.asarray(shared)[:8])


def test_shapes_and_special_rates():
    key = jax.random.key(0)
    x = np.asarray(sampling.poisson(key, jnp.asarray([[0.0, 2.0], [30.0, 1e12]])))
    assert x.shape == (2, 2) and x[0, 0] == 0
    assert abs(x[1, 1] - 1e12) < 10 * 1e6
    bad = np.asarray(sampling.poisson(key, jnp.asarray([np.inf, np.nan, 5.0])))
    assert bad[0] == np.inf and np.isnan(bad[1]) and np.isfinite(bad[2])
    assert sampling.poisson(key, jnp.zeros((0,))).shape == (0,)
    only_large = np.asarray(sampling.poisson(key, jnp.full(64, 25.0)))
    only_small = np.asarray(sampling.poisson(key, jnp.full(64, 2.5)))
    assert only_large.mean() > 15 and only_small.mean() < 6



def test_keys_other_than_threefry_are_refused():
    """Vmapped draws with rbg keys stalled for minutes at 200 toys (measured):
    a clear error instead, at trace time."""
    from nextstat_jax.errors import NextStatJaxError

    with pytest.raises(NextStatJaxError, match="threefry"):
        sampling.poisson(jax.random.key(0, impl="rbg"), jnp.ones(3))
    sampling.poisson(jax.random.PRNGKey(0), jnp.ones(3))  # raw uint32 keys are threefry keys
    import nextstat_jax as nsj
    from nextstat_jax.datasets import seed_workspace

    model = nsj.from_pyhf(seed_workspace())
    with pytest.raises(NextStatJaxError, match="threefry"):
        nsj.hypotest(model, 1.0, calculator="toybased", n_toys=4, key=jax.random.key(0, impl="rbg"))


def test_threefry_is_jaxs_bit_for_bit():
    from jax._src.random.threefry2x32 import threefry_2x32

    rng = np.random.default_rng(0)
    for _ in range(3):
        k = rng.integers(0, 2**32, 2, dtype=np.uint32)
        x = rng.integers(0, 2**32, (2, 1000), dtype=np.uint32)
        ref = np.asarray(threefry_2x32(jnp.asarray(k), jnp.asarray(x.reshape(-1))))
        ours = jax.jit(sampling.threefry2x32)(jnp.uint32(k[0]), jnp.uint32(k[1]), jnp.asarray(x[0]), jnp.asarray(x[1]))
        np.testing.assert_array_equal(np.concatenate([np.asarray(o) for o in ours]), ref)


def test_counter_uniforms():
    """In (0, 1), a function of (key, index) only, uniform (moments and a
    Kolmogorov-Smirnov test over 2 x 10^5 numbers), typed and raw keys alike."""
    stats = pytest.importorskip("scipy.stats")
    key = jax.random.key(11)
    draw = jax.jit(jax.vmap(lambda i: sampling.counter_uniforms(key, i, 20)))
    u = np.asarray(draw(jnp.arange(10_000, dtype=jnp.uint32)))
    assert u.shape == (10_000, 20) and u.dtype == np.float64
    assert np.all((u > 0.0) & (u < 1.0))
    np.testing.assert_array_equal(u[7], np.asarray(sampling.counter_uniforms(key, jnp.uint32(7), 20)))
    raw = sampling.counter_uniforms(jax.random.key_data(key), jnp.uint32(7), 20)
    np.testing.assert_array_equal(np.asarray(raw), u[7])
    assert len(np.unique(u)) == u.size  # no repeats across indices or entries
    flat = u.reshape(-1)
    assert abs(flat.mean() - 0.5) < 5 * np.sqrt(1 / 12 / flat.size)
    assert abs(flat.var() - 1 / 12) < 5 * np.sqrt(1 / 180 / flat.size)
    assert stats.kstest(flat, "uniform").pvalue > 1e-4
    # neighbouring entries are not correlated
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 5 / np.sqrt(u.shape[0])
    other = np.asarray(sampling.counter_uniforms(jax.random.key(12), jnp.uint32(7), 20))
    assert not np.any(other == u[7])


def test_poisson_inverting_given_uniforms():
    """Rates <= TABLE_MAX invert the given uniforms (scipy's quantile); larger
    ones are drawn with the rejection key."""
    stats = pytest.importorskip("scipy.stats")
    rates = jnp.asarray([0.0, 0.7, 12.0, 150.0, 1e4])
    u = jnp.asarray([0.3, 0.99, 0.01, 0.5, 0.5])
    x = np.asarray(sampling.poisson_inverting(u, rates, lambda: jax.random.key(0)))
    np.testing.assert_array_equal(x[:4], [0.0] + list(stats.poisson.ppf(np.asarray(u[1:4]), np.asarray(rates[1:4]))))
    y = np.asarray(sampling.poisson_inverting(u, rates, lambda: jax.random.key(1)))
    np.testing.assert_array_equal(y[:4], x[:4])
    assert x[4] != y[4] and abs(x[4] - 1e4) < 600 and abs(y[4] - 1e4) < 600
