"""Asymptotic calculator (Cowan, Cranmer, Gross, Vitells 2011), as pyhf 0.7.6.

For a tested POI value mu: ``q_obs`` on the data, ``q_A`` on the Asimov data
built from a fixed-POI fit to the data at ``mu_A`` (0, or 1 for q0), then the
transformed statistic ``t = sqrt(q) - sqrt(q_A)`` (q~: ``(q - q_A)/(2 sqrt(q_A))``
when ``sqrt(q) > sqrt(q_A)``), ``CLs+b = Phi(-(t + sqrt(q_A)))``,
``CLb = Phi(-t)``, ``CLs = CLs+b / CLb``; the expected set evaluates these at
``t = 2, 1, 0, -1, -2`` (pyhf's order, read as -2 sigma ... +2 sigma).
Ratios are computed from ``log_ndtr`` so deep tails stay finite.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr

from .fits import _implicit, _Problem, _solve, fix_poi
from .solver import SolverOptions
from .teststats import from_fits, profiles, safe_sqrt, test_mu

__all__ = ["HypotestResult", "asimov_data", "asymptotic_pvalues", "hypotest_asymptotic"]

# t-hat values of the expected set: pyhf's [2, 1, 0, -1, -2] (= -2 sigma ... +2 sigma)
EXPECTED_SIGMAS = (2.0, 1.0, 0.0, -1.0, -2.0)


class HypotestResult(NamedTuple):
    """Result of a hypothesis test at one POI value (a pytree).

    ``cls_obs, clsb_obs, clb_obs`` (): observed CLs, CLs+b, CLb. For the q0
    statistic, as in pyhf, the "CLs" fields hold p-values: ``cls_obs =
    clsb_obs = p0``. ``cls_exp, clsb_exp, clb_exp`` (5,): expected values at
    -2, -1, 0, +1, +2 sigma. ``test_stat`` (): observed statistic;
    ``test_stat_asimov`` (): the statistic on Asimov data (asymptotics; 0 for
    toys). ``converged`` (): every fit converged.
    """

    cls_obs: jax.Array
    clsb_obs: jax.Array
    clb_obs: jax.Array
    cls_exp: jax.Array
    clsb_exp: jax.Array
    clb_exp: jax.Array
    test_stat: jax.Array
    test_stat_asimov: jax.Array
    converged: jax.Array


def expected_full(model, theta):
    """(B + A,) expected data at ``theta`` (no argument checks; traced)."""
    prep = model.prepare()
    main = jnp.sum(model._rates_by_sample(theta, prep), axis=0)
    aux = model._expected_aux(theta, prep)
    return jnp.concatenate([main, aux])


def asimov_from_fit(prob: _Problem, poi_index: int, mu_asimov, theta_hat):
    """Asimov data (B + A,) from the solver's fixed-POI fit ``theta_hat`` at
    ``mu_asimov`` (auxdata at the fitted values), with implicit derivatives."""
    fprob = fix_poi(prob, poi_index, mu_asimov)
    return expected_full(prob.model, _implicit(theta_hat, fprob))


def asimov_data(prob: _Problem, poi_index: int, mu_asimov, options: SolverOptions):
    """Asimov data of pyhf (spec §6.3): expected data at the fixed-POI fit to
    ``prob.data`` at ``mu_asimov``. Returns (data (B + A,), converged)."""
    sol = _solve(fix_poi(prob, poi_index, mu_asimov), options)
    return asimov_from_fit(prob, poi_index, mu_asimov, sol.theta), sol.converged


def _that(q, q_asimov, kind: str):
    s, s_a = safe_sqrt(q), safe_sqrt(q_asimov)
    if kind == "qtilde":
        # pyhf routes s <= s_A to the first branch; s_A = 0 too (avoids 0/0)
        first = (s <= s_a) | (s_a <= 0)
        second = (q - q_asimov) / (2.0 * jnp.where(first, 1.0, s_a))
        return jnp.where(first, s - s_a, second), s_a
    return s - s_a, s_a


def asymptotic_pvalues(q, q_asimov, kind: str):
    """(CLs, CLs+b, CLb) observed and (5,) expected from q and q_A."""
    that, s_a = _that(q, q_asimov, kind)
    log_sb = log_ndtr(-(that + s_a))
    log_b = log_ndtr(-that)
    n = jnp.asarray(EXPECTED_SIGMAS, dtype=jnp.result_type(q))
    log_sb_exp = log_ndtr(-(n + s_a))
    log_b_exp = log_ndtr(-n)
    if kind == "q0":
        cls = jnp.exp(log_sb)
        cls_exp = jnp.exp(log_sb_exp)
    else:
        cls = jnp.exp(log_sb - log_b)
        cls_exp = jnp.exp(log_sb_exp - log_b_exp)
    return (cls, jnp.exp(log_sb), jnp.exp(log_b)), (cls_exp, jnp.exp(log_sb_exp), jnp.exp(log_b_exp))


def hypotest_asymptotic(prob: _Problem, mu, kind: str, poi_index: int, options: SolverOptions) -> HypotestResult:
    """Asymptotic hypothesis test at ``mu``: 5 fits in two vmapped solves (the
    three on the data, then the two on the Asimov data). Differentiable."""
    dtype = prob.init.dtype
    mu_test = test_mu(kind, mu, dtype)
    mu_a = jnp.asarray(1.0 if kind == "q0" else 0.0, dtype)
    obs = profiles(prob, poi_index, options, (mu_test, mu_a))
    q_obs = from_fits(obs.twice_nll[0], obs.poi_hat[0], obs.twice_nll[1], mu_test, kind)
    aprob = prob._replace(data=asimov_from_fit(prob, poi_index, mu_a, obs.bestfit[2]))
    asim = profiles(aprob, poi_index, options, (mu_test,))
    q_a = from_fits(asim.twice_nll[0], asim.poi_hat[0], asim.twice_nll[1], mu_test, kind)
    (cls, clsb, clb), (cls_e, clsb_e, clb_e) = asymptotic_pvalues(q_obs, q_a, kind)
    conv = jnp.all(obs.converged) & jnp.all(asim.converged)
    return HypotestResult(cls, clsb, clb, cls_e, clsb_e, clb_e, q_obs, q_a, conv)
