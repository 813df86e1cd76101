"""Warm starts of toy fits (``toy_starts.py``) and the solver's fallback start.

* the prediction at the Asimov data of the generating point is that point,
  and its data derivative is the fitted ``bestfit``'s (implicit function
  theorem, through the public ``fit``);
* its error shrinks quadratically with the toy's distance from the Asimov
  data (a Newton step), and the toys' statistics equal fits from the init;
* a start where the objective is not finite falls back to the init, and
  without the fallback that start fails (so the test can fail);
* large models get no prediction (``MAX_GAIN``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nextstat_jax as nsj
from nextstat_jax import toy_starts, toys
from nextstat_jax.asymptotics import expected_full
from nextstat_jax.datasets import benchmark_workspace, seed_workspace
from nextstat_jax.fits import _solve, fix_poi, make_problem
from nextstat_jax.teststats import profile_inits, statistic

from corpus import channel, histosys, normfactor, normsys, sample, shapesys, staterror, workspace

pytestmark = pytest.mark.usefixtures("x64")  # conftest.py
OPTS = nsj.SolverOptions()


def _mixed_spec() -> dict:
    """Two channels; normsys, histosys, staterror and shapesys (Poisson auxdata)."""
    sr = channel("SR", [
        sample("signal", [5.0, 8.0, 3.0], [normfactor()]),
        sample("bkg", [50.0, 40.0, 30.0], [normsys("norm", 1.1, 0.9), histosys("shape", [45, 41, 32], [55, 39, 28]),
                                           staterror("stat_SR", [3.0, 2.5, 2.0])]),
    ])
    cr = channel("CR", [sample("bkg", [100.0, 80.0], [normsys("norm", 1.1, 0.9), shapesys("sys_CR", [8.0, 6.0])])])
    return workspace([sr, cr], {"SR": [57, 47, 33], "CR": [104, 77]})


#: smooth interpolation (no kinks at 0), where the prediction is a true Newton step
SMOOTH = {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}


def _setup(settings):
    model = nsj.from_pyhf(_mixed_spec(), modifier_settings=settings)
    prob = make_problem(model)
    theta_g = _solve(fix_poi(prob, model.poi_index, 1.0), OPTS).theta
    return model, prob, theta_g


@pytest.fixture(scope="module")
def smooth():
    return _setup(SMOOTH)


@pytest.fixture(scope="module")
def mixed():
    """pyhf's default codes: normsys code1 and histosys code0, kinked at 0."""
    return _setup(None)


def _free_and_fixed(prob, poi, mu=1.0):
    return profile_inits(prob, poi, (jnp.asarray(mu),))


def test_prediction_at_asimov_data_and_its_derivative(smooth):
    model, prob, theta_g = smooth
    inits, fixeds = _free_and_fixed(prob, model.poi_index)
    assert toy_starts.predicts(model)
    d0, base, gain = toy_starts._predictor(prob, theta_g, inits, fixeds)
    np.testing.assert_allclose(d0, expected_full(model, theta_g), rtol=1e-15)
    # theta_g is the optimum of both fits on its own Asimov data (mu_g = 1)
    np.testing.assert_allclose(base, jnp.stack([theta_g, theta_g]), rtol=0, atol=1e-12)
    # the free fit's gain is d(bestfit)/d(data) at the Asimov data
    jac = jax.jacfwd(lambda d: nsj.fit(model, d).bestfit)(d0)
    np.testing.assert_allclose(gain[0], jac, rtol=1e-6, atol=1e-9)
    assert np.all(np.asarray(gain[1])[model.poi_index] == 0.0)  # the fixed POI does not move


def test_prediction_error_is_second_order(smooth):
    model, prob, theta_g = smooth
    inits, fixeds = _free_and_fixed(prob, model.poi_index)
    d0 = expected_full(model, theta_g)
    direction = jnp.asarray(np.random.default_rng(3).standard_normal(d0.shape)) * jnp.sqrt(d0)
    errors = []
    for eps in (0.04, 0.02, 0.01):  # the optimum moves by ~8 eps (in sigma units)
        d = d0 + eps * direction
        starts = toy_starts.predicted_starts(prob, theta_g[None], inits, fixeds, d[None, None])[0, 0]
        opt = jnp.stack([_solve(prob._replace(data=d), OPTS).theta,
                         _solve(fix_poi(prob._replace(data=d), model.poi_index, 1.0), OPTS).theta])
        errors.append(np.max(np.abs(np.asarray(starts - opt)), axis=1))
        # the start is far closer to the optimum than theta_g is
        assert np.all(errors[-1] < 0.1 * np.max(np.abs(np.asarray(opt - theta_g)), axis=1))
    ratios = np.asarray(errors[:-1]) / np.asarray(errors[1:])
    assert np.all((ratios > 3.0) & (ratios < 5.0)), ratios  # halving eps quarters the error


def test_b_only_toys_fixed_fit_starts_from_the_profile_response(smooth):
    """Toys drawn at mu = 0 fitted at mu = 1: the prediction moves the
    nuisances by the profile's linear response and beats both theta_g and the init."""
    model, prob, _ = smooth
    poi = model.poi_index
    theta_b = _solve(fix_poi(prob, poi, 0.0), OPTS).theta
    inits, fixeds = _free_and_fixed(prob, poi)
    keys, idx = jax.random.split(jax.random.key(5)), jnp.arange(64, dtype=jnp.uint32)
    data = jax.vmap(lambda i: toys.sample_toys(keys[1], model, theta_b, i))(idx)
    starts = toy_starts.predicted_starts(prob, theta_b[None], inits, fixeds, data[None])[0, :, 1]
    opt = jax.vmap(lambda d: _solve(fix_poi(prob._replace(data=d), poi, 1.0), OPTS).theta)(data)
    np.testing.assert_array_equal(starts[:, poi], 1.0)
    err = lambda x: np.median(np.max(np.abs(np.asarray(x - opt)), axis=1))
    assert err(starts) < 0.5 * min(err(theta_b.at[poi].set(1.0)[None]), err(inits[1][None]))


def test_toy_statistics_equal_fits_from_the_init(mixed):
    """On pyhf's default (kinked) codes, where fits also start across kinks."""
    model, prob, _ = mixed
    kind = "qtilde"
    poi, mu = model.poi_index, jnp.asarray(1.0)
    q_obs, thetas = toys._setup(prob, mu, kind, poi, OPTS)
    keys, idx = jax.random.split(jax.random.key(11)), jnp.arange(64, dtype=jnp.uint32)
    values, conv = toys._toy_chunk(prob, thetas, mu, kind, poi, OPTS, keys, idx)
    data = jnp.stack([jax.vmap(lambda i: toys.sample_toys(keys[h], model, thetas[h], i))(idx) for h in range(2)])
    ref = jax.vmap(jax.vmap(lambda d: statistic(prob._replace(data=d), mu, kind, poi, OPTS)))(data)
    assert np.all(conv) and np.all(ref.converged)
    np.testing.assert_allclose(values, ref.value, rtol=1e-6, atol=1e-7)


def test_start_where_the_objective_is_not_finite_falls_back_to_the_init():
    """histosys (linear, code0) whose down template empties the bin below
    alpha = -2: a start at alpha = -4 has no finite NLL."""
    spec = workspace([channel("SR", [
        sample("signal", [5.0], [normfactor()]),
        sample("bkg", [20.0], [histosys("shape", [10.0], [30.0])]),
    ])], {"SR": [24.0]})
    model = nsj.from_pyhf(spec)
    prob = make_problem(model)
    alpha = model.par_names.index("shape")
    bad = prob.init.at[alpha].set(-4.0)
    nll = model.logpdf(bad, prob.data)
    assert not np.isfinite(float(nll))
    ref = _solve(prob, OPTS)
    assert bool(ref.converged)
    restarted = _solve(prob._replace(start=bad), OPTS)
    assert bool(restarted.converged)
    np.testing.assert_allclose(restarted.theta, ref.theta, rtol=0, atol=1e-8)
    failed = _solve(prob._replace(init=bad), OPTS)  # the same start without the fallback
    assert not bool(failed.converged) and int(failed.status) == 2


def test_only_small_models_get_predictions():
    assert toy_starts.predicts(nsj.from_pyhf(seed_workspace()))
    big = nsj.from_pyhf(benchmark_workspace())  # 201 parameters x 400 data
    assert not toy_starts.predicts(big)
    prob = make_problem(big)
    inits, fixeds = profile_inits(prob, big.poi_index, (jnp.asarray(1.0),))
    assert toy_starts.predicted_starts(prob, prob.init[None], inits, fixeds, prob.data[None, None]) is None
