"""Toy-based hypothesis tests (pyhf's ``ToyCalculator``, spec §6.7), in JAX.

Pseudo-data are sampled from the full pdf at the fixed-POI fits to the
observed data (signal+background at the tested mu; background at 0, or 1 for
q0): main bins ``~ Poisson(nu)``, Gaussian auxdata ``~ N(theta_hat_hat, sigma)``,
Poisson auxdata ``~ Poisson(gamma * tau)``.  Toy ``i`` of a hypothesis uses
``fold_in(key_h, i)``, so results do not depend on chunking or sharding.
Each chunk of toys is fitted in one vmapped, jitted call; with several devices
the chunk is sharded across all of them along the toy axis.

p-values count ``q_toy >= q_obs`` (inclusive, as pyhf); the expected set takes
the 2.275/15.87/50/84.13/97.72 percentiles (linear interpolation) of the
p-values obtained by treating each background toy as the observation.
"""

from __future__ import annotations

import functools
import sys
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .asymptotics import HypotestResult, expected_full
from .fits import _Problem, _solve, fix_poi
from .solver import SolverOptions
from .teststats import statistic

__all__ = ["sample_toys", "hypotest_toys", "toy_statistics", "NORMAL_PERCENTILES"]

NORMAL_PERCENTILES = (2.27501319, 15.86552539, 50.0, 84.13447461, 97.72498681)


def sample_toys(key, model, theta, index):
    """Pseudo-data (B + A,) number ``index`` drawn at parameters ``theta``."""
    k_main, k_gauss, k_pois = jax.random.split(jax.random.fold_in(key, index), 3)
    lay = model.layout
    prep = model.prepare()
    exp = expected_full(model, theta)
    nu = jnp.clip(exp[: lay.n_main], 0.0)
    main = jax.random.poisson(k_main, nu, dtype=jnp.int64).astype(theta.dtype)
    aux_mean = exp[lay.n_main :]
    gauss = aux_mean + prep.width * jax.random.normal(k_gauss, aux_mean.shape, theta.dtype)
    pois = jax.random.poisson(
        k_pois, jnp.where(lay.aux_poisson, jnp.clip(aux_mean, 0.0), 0.0), dtype=jnp.int64
    ).astype(theta.dtype)
    aux = jnp.where(lay.aux_poisson, pois, gauss)
    return jnp.concatenate([main, aux])


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _toy_chunk(prob: _Problem, theta, mu, kind, poi, options, key, indices):
    """Test statistic and convergence of toys ``indices`` (vmapped)."""

    def one(i):
        data = sample_toys(key, prob.model, theta, i)
        out = statistic(prob._replace(data=data), mu, kind, poi, options)
        return out.value, out.converged

    return jax.vmap(one)(indices)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _observed_statistic(prob: _Problem, mu, kind, poi, options):
    return statistic(prob, mu, kind, poi, options).value


@functools.partial(jax.jit, static_argnums=(2, 3))
def _hypothesis_pars(prob: _Problem, mu, poi, options):
    return _solve(fix_poi(prob, poi, mu), options).theta


def _device_sharding(n_chunk: int):
    devices = jax.devices()
    if len(devices) < 2:
        return None, n_chunk
    n_chunk = -(-n_chunk // len(devices)) * len(devices)
    mesh = Mesh(np.asarray(devices), ("toys",))
    return NamedSharding(mesh, PartitionSpec("toys")), n_chunk


def toy_statistics(prob, theta, mu, kind, poi, options, key, n_toys, chunk_size, progress=None, label=""):
    """(n_toys,) test statistics of toys drawn at ``theta`` and (n_toys,) bool
    convergence, fitted ``chunk_size`` at a time (sharded over devices)."""
    sharding, chunk = _device_sharding(max(1, min(chunk_size, n_toys)))
    values, conv = [], []
    bar = _progress(progress, n_toys, label)
    for start in range(0, n_toys, chunk):
        idx = np.arange(start, start + chunk, dtype=np.uint32)  # last chunk padded
        idx = jnp.asarray(idx) if sharding is None else jax.device_put(idx, sharding)
        v, c = _toy_chunk(prob, theta, mu, kind, poi, options, key, idx)
        take = min(chunk, n_toys - start)
        values.append(np.asarray(v)[:take])
        conv.append(np.asarray(c)[:take])
        if bar is not None:
            bar.update(take)
    if bar is not None:
        bar.close()
    return jnp.asarray(np.concatenate(values)), jnp.asarray(np.concatenate(conv))


class _RichBar:
    def __init__(self, total: int, label: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from rich.console import Console

        self._p = Progress(
            TextColumn(f"toys {label}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            transient=True, console=Console(stderr=True),
        )
        self._p.start()
        self._task = self._p.add_task("toys", total=total)

    def update(self, n: int):
        self._p.advance(self._task, n)

    def close(self):
        self._p.stop()


def _progress(progress: Optional[bool], total: int, label: str):
    if progress is None:
        progress = total >= 5000 and sys.stderr.isatty()
    return _RichBar(total, label) if progress else None


def _pvalue(samples, value):
    return jnp.mean((samples >= value).astype(samples.dtype))


def hypotest_toys(prob: _Problem, mu, kind: str, poi: int, options: SolverOptions, key,
                  n_toys: int, chunk_size: int = 1024, progress: Optional[bool] = None) -> HypotestResult:
    """Toy-based hypothesis test at ``mu`` with ``n_toys`` toys per hypothesis."""
    q_obs = _observed_statistic(prob, mu, kind, poi, options)
    mu_b = jnp.asarray(1.0 if kind == "q0" else 0.0, prob.init.dtype)
    theta_sb = _hypothesis_pars(prob, mu, poi, options)
    theta_b = _hypothesis_pars(prob, mu_b, poi, options)
    k_sb, k_b = jax.random.split(key)
    q_sb, c_sb = toy_statistics(prob, theta_sb, mu, kind, poi, options, k_sb, n_toys, chunk_size, progress, "s+b")
    q_b, c_b = toy_statistics(prob, theta_b, mu, kind, poi, options, k_b, n_toys, chunk_size, progress, "b")
    return _toy_result(q_obs, q_sb, q_b, c_sb & c_b, kind)


@functools.partial(jax.jit, static_argnums=(4,))
def _toy_result(q_obs, q_sb, q_b, conv, kind):
    clsb = _pvalue(q_sb, q_obs)
    clb = _pvalue(q_b, q_obs)
    # p-values of every background toy taken as the observation (sorted trick:
    # mean(q >= v) for all v at once)
    sb_sorted = jnp.sort(q_sb)
    b_sorted = jnp.sort(q_b)
    dtype = q_obs.dtype
    clsb_j = 1.0 - jnp.searchsorted(sb_sorted, q_b, side="left").astype(dtype) / q_sb.shape[0]
    clb_j = 1.0 - jnp.searchsorted(b_sorted, q_b, side="left").astype(dtype) / q_b.shape[0]
    cls_j = clsb_j / jnp.where(clb_j > 0, clb_j, 1.0)
    pct = jnp.asarray(NORMAL_PERCENTILES, dtype)
    # clipped: 1 - k/n can round to -1e-16
    clsb_exp = jnp.clip(jnp.percentile(clsb_j, pct, method="linear"), 0.0, 1.0)
    clb_exp = jnp.clip(jnp.percentile(clb_j, pct, method="linear"), 0.0, 1.0)
    cls_exp = jnp.clip(jnp.percentile(cls_j, pct, method="linear"), 0.0, 1.0)
    cls = clsb / jnp.where(clb > 0, clb, 1.0)
    if kind == "q0":
        cls, cls_exp = clsb, clsb_exp
    return HypotestResult(cls, clsb, clb, cls_exp, clsb_exp, clb_exp, q_obs,
                          jnp.zeros_like(q_obs), jnp.all(conv))
