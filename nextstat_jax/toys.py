"""Toy-based hypothesis tests (pyhf's ``ToyCalculator``, spec §6.7), in JAX.

Pseudo-data are sampled from the full pdf at the fixed-POI fits to the
observed data (signal+background at the tested mu; background at 0, or 1 for
q0): main bins ``~ Poisson(nu)``, Gaussian auxdata ``~ N(theta_hat_hat, sigma)``,
Poisson auxdata ``~ Poisson(gamma * tau)``.  Toy ``i`` of a hypothesis draws
from the counters ``(i, 0..)`` under the hypothesis' key (``sample_toys``), so
results do not depend on chunking or sharding.
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
from jax.scipy.special import ndtri
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .asymptotics import HypotestResult, expected_full
from .fits import _Problem, _solve, fix_poi
from .sampling import counter_uniforms, poisson_inverting
from .solver import SolverOptions
from .teststats import profile_inits, statistic, test_mu
from .toy_starts import predicted_starts

__all__ = ["sample_toys", "hypotest_toys", "toy_statistics", "auto_chunk", "NORMAL_PERCENTILES"]

NORMAL_PERCENTILES = (2.27501319, 15.86552539, 50.0, 84.13447461, 97.72498681)


#: numbers of toy data and parameters (both hypotheses) one call may hold
CHUNK_NUMBERS = 1 << 22
#: the most toys per hypothesis in one call
MAX_CHUNK = 1 << 16


@functools.lru_cache(maxsize=256)
def _sampling_plan(layout):
    """Static indices: the entries of the data vector drawn from a Poisson
    (main bins, Poisson auxdata), the Gaussian auxdata, and the permutation
    putting [Poisson draws, Gaussian draws] back in data order."""
    nm = layout.n_main
    aux_pois = np.asarray(layout.aux_poisson, bool)
    pois = np.concatenate([np.arange(nm), nm + np.flatnonzero(aux_pois)])
    gauss = nm + np.flatnonzero(~aux_pois)
    order = np.argsort(np.concatenate([pois, gauss]), kind="stable").astype(np.int32)
    return pois.astype(np.int32), gauss.astype(np.int32), order


def sample_toys(key, model, theta, index):
    """Pseudo-data (B + A,) number ``index`` drawn at parameters ``theta``:
    main bins and Poisson auxdata from Poisson distributions (inverting the
    toy's uniforms, :func:`~nextstat_jax.sampling.poisson_inverting`; rates
    above ``TABLE_MAX`` by rejection with ``fold_in(key, index)``), Gaussian
    auxdata from N(expected, width) (the normal quantile of a uniform). The
    uniforms are :func:`~nextstat_jax.sampling.counter_uniforms` of ``key``
    at ``index``: one hash per number, and the same toy whatever the chunk."""
    pois, gauss, order = _sampling_plan(model.layout)
    exp = expected_full(model, theta)
    u = counter_uniforms(key, index, pois.size + gauss.size)
    counts = poisson_inverting(u[: pois.size], jnp.clip(exp[pois], 0.0), lambda: jax.random.fold_in(key, index))
    width = model.prepare().width[gauss - model.layout.n_main]
    smeared = exp[gauss] + width * ndtri(u[pois.size:]).astype(theta.dtype)
    return jnp.concatenate([counts, smeared])[order]


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _toy_chunk(prob: _Problem, thetas, mu, kind, poi, options, keys, indices):
    """(H, n) test statistics and convergence of toys ``indices`` (n,) of each
    hypothesis (generating parameters ``thetas`` (H, P), keys (H,)), all
    fitted in one vmapped batch, each fit (of a small model) from its optimum
    predicted by one Newton step from the generating parameters
    (``toy_starts.py``). Each hypothesis' toys are drawn by their own vmap,
    where the rates are not batched (``sampling.poisson`` then runs only the
    branches they need)."""
    draw = lambda h: jax.vmap(lambda i: sample_toys(keys[h], prob.model, thetas[h], i))(indices)
    data = jnp.stack([draw(h) for h in range(thetas.shape[0])])
    inits, fixeds = profile_inits(prob, poi, (test_mu(kind, mu, thetas.dtype),))
    starts = predicted_starts(prob, thetas, inits, fixeds, data)
    stat = lambda d, s: statistic(prob._replace(data=d), mu, kind, poi, options, starts=s, trust_starts=True)
    out = jax.vmap(jax.vmap(stat))(data, starts)
    return out.value, out.converged


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _setup(prob: _Problem, mu, kind, poi, options):
    """The observed statistic and the generating parameters (2, P) of the
    s+b (POI at ``mu``) and b (0; 1 for q0) hypotheses, in one call."""
    q_obs = statistic(prob, mu, kind, poi, options).value
    mus = jnp.stack([mu, jnp.asarray(1.0 if kind == "q0" else 0.0, mu.dtype)])
    thetas = jax.vmap(lambda m: _solve(fix_poi(prob, poi, m), options).theta)(mus)
    return q_obs, thetas


def _device_sharding(n_chunk: int):
    devices = jax.devices()
    if len(devices) < 2:
        return None, n_chunk
    n_chunk = -(-n_chunk // len(devices)) * len(devices)
    mesh = Mesh(np.asarray(devices), ("toys",))
    return NamedSharding(mesh, PartitionSpec("toys")), n_chunk


def auto_chunk(n_toys: int, n_hyp: int, model) -> int:
    """Toys per hypothesis per call when ``chunk_size`` is not given: the
    smallest power of two holding all ``n_toys`` (so calls with different
    ``n_toys`` share compiled code), at most ``MAX_CHUNK`` and at most what
    keeps the toys' data and parameters under ``CHUNK_NUMBERS`` numbers."""
    lay = model.layout
    width = n_hyp * (lay.n_main + lay.n_aux + lay.n_params)
    cap = max(16, min(MAX_CHUNK, 1 << int(np.log2(max(CHUNK_NUMBERS // width, 1)))))
    return min(cap, 1 << int(np.ceil(np.log2(max(n_toys, 1)))))


def _run_toys(prob, thetas, mu, kind, poi, options, keys, n_toys, chunk_size, progress, label):
    """(H, n_toys) statistics and convergence (NumPy, on the host) of the toys
    of H hypotheses, ``chunk_size`` toys per hypothesis per call (sharded over
    devices)."""
    n_hyp = thetas.shape[0]
    # automatic chunks stay powers of two (padded), so other n_toys reuse the compiled chunk
    chunk = auto_chunk(n_toys, n_hyp, prob.model) if chunk_size is None else max(1, min(chunk_size, n_toys))
    sharding, chunk = _device_sharding(chunk)
    values, conv = [], []
    bar = _progress(progress, n_hyp * n_toys, label)
    for start in range(0, n_toys, chunk):
        idx = np.arange(start, start + chunk, dtype=np.uint32)  # last chunk padded
        idx = jnp.asarray(idx) if sharding is None else jax.device_put(idx, sharding)
        v, c = _toy_chunk(prob, thetas, mu, kind, poi, options, keys, idx)
        take = min(chunk, n_toys - start)
        values.append(np.asarray(v)[:, :take])
        conv.append(np.asarray(c)[:, :take])
        if bar is not None:
            bar.update(n_hyp * take)
    if bar is not None:
        bar.close()
    return np.concatenate(values, axis=1), np.concatenate(conv, axis=1)


def toy_statistics(prob, theta, mu, kind, poi, options, key, n_toys, chunk_size=None, progress=None, label=""):
    """(n_toys,) test statistics of toys drawn at ``theta`` (P,) and (n_toys,)
    bool convergence, fitted ``chunk_size`` at a time (None: ``auto_chunk``)."""
    v, c = _run_toys(prob, theta[None], mu, kind, poi, options, key[None], n_toys, chunk_size, progress, label)
    return jnp.asarray(v[0]), jnp.asarray(c[0])


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
    return np.mean((samples >= value).astype(samples.dtype))


def hypotest_toys(prob: _Problem, mu, kind: str, poi: int, options: SolverOptions, key,
                  n_toys: int, chunk_size: Optional[int] = None, progress: Optional[bool] = None) -> HypotestResult:
    """Toy-based hypothesis test at ``mu`` with ``n_toys`` toys per hypothesis;
    both hypotheses' toys are fitted in the same calls."""
    q_obs, thetas = _setup(prob, mu, kind, poi, options)
    (q_sb, q_b), (c_sb, c_b) = _run_toys(prob, thetas, mu, kind, poi, options, jax.random.split(key),
                                         n_toys, chunk_size, progress, "s+b and b")
    return _toy_result(q_obs, q_sb, q_b, c_sb & c_b, kind)


def _toy_result(q_obs, q_sb, q_b, conv, kind) -> HypotestResult:
    """CLs and its expected set from the toys' statistics, on the host with
    NumPy (where the chunks came back to; XLA's CPU sort of 2,000 floats
    takes ~0.3 ms, NumPy's ~10 us). The fields are NumPy arrays (one
    ``device_put`` per field would cost ~20 us each)."""
    q_obs = np.asarray(q_obs)
    clsb = _pvalue(q_sb, q_obs)
    clb = _pvalue(q_b, q_obs)
    # the p-values of every background toy taken as the observation, from
    # sorted arrays (mean(q >= v) for all v at once); the percentiles do not
    # depend on the order of the toys
    b_sorted = np.sort(q_b)
    clsb_j = 1.0 - np.searchsorted(np.sort(q_sb), b_sorted, side="left") / q_sb.shape[0]
    clb_j = 1.0 - np.searchsorted(b_sorted, b_sorted, side="left") / q_b.shape[0]
    cls_j = clsb_j / np.where(clb_j > 0, clb_j, 1.0)
    # clipped: 1 - k/n can round to -1e-16; clsb_j and clb_j fall as q_b rises
    clsb_exp, clb_exp = _percentiles(clsb_j[::-1]), _percentiles(clb_j[::-1])
    cls_exp = _percentiles(np.sort(cls_j))
    cls = clsb / np.where(clb > 0, clb, 1.0)
    if kind == "q0":
        cls, cls_exp = clsb, clsb_exp
    return HypotestResult(cls, clsb, clb, cls_exp, clsb_exp, clb_exp, q_obs, np.zeros_like(q_obs), np.all(conv))


def _percentiles(ascending):
    """``NORMAL_PERCENTILES`` of a sorted array (NumPy's "linear" method),
    clipped to [0, 1]."""
    n = ascending.shape[0]
    pos = np.asarray(NORMAL_PERCENTILES) / 100.0 * (n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    t = pos - lo
    a, b = ascending[lo], ascending[hi]
    # NumPy's lerp: from the nearer end, so that t = 0 and t = 1 are exact
    out = np.where(t < 0.5, a + (b - a) * t, b - (b - a) * (1.0 - t))
    return np.clip(out, 0.0, 1.0)
