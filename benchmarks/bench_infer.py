"""Inference speed: nextstat_jax vs NextStat (Rust) vs pyhf, in the same run.

Rows (median of repeats, float64, every q0 from two converged fits):
* one fit and one asymptotic hypotest (latency) on the seed model and on the
  201-parameter model;
* q0 for N signal-yield vectors (throughput): ours one jit+vmap call;
  NextStat its fastest way (a loop of ``q0_like_loss_and_grad_nominal``, which
  also returns the gradient); pyhf a loop (timed on a subset);
* q0 plus its gradient w.r.t. the yields for the same N vectors;
* toys/s for the q~_mu CLs (both hypotheses' toys counted) on both models
  (pyhf 0.7.6's toy calculator fails with numpy 2.x, so no pyhf row).

Throughput rows time our call and NextStat's in turns (``timeit_interleaved``),
NextStat's toys at the same number of toys as ours.

    python benchmarks/bench_infer.py [--n 4096] [--toys 2000]
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import pyhf  # noqa: E402

import nextstat_jax as nsj  # noqa: E402
from nextstat_jax.datasets import benchmark_workspace, seed_workspace  # noqa: E402

from _common import default, fmt, table, timeit, timeit_interleaved, write  # noqa: E402

MODELS = (
    ("seed (2 par)", seed_workspace, "SR", "signal"),
    ("201 par", benchmark_workspace, "ch07", "signal"),
)


def yield_vectors(nominal, n, seed=0):
    rng = np.random.default_rng(seed)
    return nominal * np.exp(0.3 * rng.standard_normal((n, nominal.size)))


def pyhf_q0(spec, channel, sample, y):
    spec = json.loads(json.dumps(spec))
    for c in spec["channels"]:
        if c["name"] == channel:
            for s in c["samples"]:
                if s["name"] == sample:
                    s["data"] = list(map(float, y))
    ws = pyhf.Workspace(spec)
    m = ws.model()
    return float(pyhf.infer.test_statistics.q0(0.0, ws.data(m), m, m.config.suggested_init(),
                                               m.config.suggested_bounds(), m.config.suggested_fixed()))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=default(4096, 16), help="yield vectors of the q0 rows")
    ap.add_argument("--toys", type=int, default=default(2000, 50), help="toys per hypothesis")
    ap.add_argument("--pyhf-subset", type=int, default=default(16, 1),
                    help="yield vectors pyhf computes (timed and scaled; agreement column)")
    args = ap.parse_args(argv)
    import nextstat  # the [bench] extra; imported here so that --help works without it
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())
    lat_rows, thr_rows = [], []
    for name, make, ch, smp in MODELS:
        spec = make()
        js = json.dumps(spec)
        model = nsj.from_pyhf(spec)
        ns_model = nextstat.HistFactoryModel.from_workspace(js)
        mle = nextstat.MaximumLikelihoodEstimator()
        ws = pyhf.Workspace(spec)
        pm = ws.model()
        pdata = ws.data(pm)

        # ---- latency: one fit, one hypotest
        t_fit = timeit(lambda: jax.block_until_ready(nsj.fit(model)), number=20)
        t_fit_ns = timeit(lambda: nextstat.fit(ns_model), number=20)
        t_fit_py = timeit(lambda: pyhf.infer.mle.fit(pdata, pm), number=3)
        t_ht = timeit(lambda: jax.block_until_ready(nsj.hypotest(model, 1.0)), number=20)
        t_ht_ns = timeit(lambda: nextstat.hypotest(1.0, ns_model), number=20)
        t_ht_py = timeit(lambda: pyhf.infer.hypotest(1.0, pdata, pm, return_expected_set=True), number=3)
        for label, ours, ns, py in (("fit", t_fit, t_fit_ns, t_fit_py), ("hypotest (asymptotic)", t_ht, t_ht_ns, t_ht_py)):
            lat_rows.append([name, label, fmt(ours * 1e3), fmt(ns * 1e3), fmt(py * 1e3),
                             fmt(ns / ours), fmt(py / ours)])

        # ---- throughput: q0 and q0 + gradient for N yield vectors
        nominal = np.asarray(model.sample_yields(ch, smp))
        ys = yield_vectors(nominal, args.n)
        q0_batch = jax.jit(jax.vmap(lambda y: nsj.q0(model.with_yields(ch, smp, y))))
        qg_batch = jax.jit(jax.vmap(jax.value_and_grad(lambda y: nsj.q0(model.with_yields(ch, smp, y)))))
        yj = jnp.asarray(ys)
        sub = ys[: min(args.n, 512)]
        # 4 warm-up rounds: the first calls after a compile run up to 2x
        # slower (measured 8-10 ms, then ~5 ms, for the seed q0 batch)
        t_q0, t_qg, t_ns = timeit_interleaved([
            lambda: q0_batch(yj).block_until_ready(),
            lambda: jax.block_until_ready(qg_batch(yj)),
            lambda: [mle.q0_like_loss_and_grad_nominal(ns_model, channel=ch, sample=smp, nominal=list(map(float, y)))
                     for y in sub],
        ], warmup=4)
        t_ns = t_ns / len(sub) * args.n
        psub = ys[: args.pyhf_subset]
        t_py = timeit(lambda: [pyhf_q0(spec, ch, smp, y) for y in psub], repeat=1, warmup=0) / len(psub) * args.n
        # agreement with pyhf on the subset
        ours = np.asarray(q0_batch(yj))[: len(psub)]
        # the reference at a tight tolerance (scipy's default leaves ~1e-4 in q0 on the 201-parameter model)
        pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-12))
        ref = np.array([pyhf_q0(spec, ch, smp, y) for y in psub])
        pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())
        agree = float(np.max(np.abs(ours - ref)))
        thr_rows.append([name, f"q0 × {args.n}", fmt(args.n / t_q0), fmt(args.n / t_ns), fmt(args.n / t_py),
                         fmt(t_ns / t_q0), fmt(t_py / t_q0), f"{agree:.1e}"])
        thr_rows.append([name, f"q0 + ∂q0/∂y × {args.n}", fmt(args.n / t_qg), fmt(args.n / t_ns), "n/a",
                         fmt(t_ns / t_qg), "n/a", ""])

        # ---- toys (q~mu CLs), both models
        key = jax.random.key(0)
        # the same number of toys for both (NextStat's rate grows ~10% from 250 to 2,000 toys)
        t_toy, t_toy_ns = timeit_interleaved([
            lambda: jax.block_until_ready(
                nsj.hypotest(model, 1.0, calculator="toybased", n_toys=args.toys, key=key, progress=False)),
            lambda: nextstat.hypotest_toys(1.0, ns_model, n_toys=args.toys, seed=1),
        ], repeat=default(7, 1) if name.startswith("seed") else default(3, 1))
        ours_rate, ns_rate = 2 * args.toys / t_toy, 2 * args.toys / t_toy_ns
        thr_rows.append([name, "toys/s (q~mu CLs)", fmt(ours_rate), fmt(ns_rate), "n/a",
                         fmt(ours_rate / ns_rate), "n/a", ""])

    body = "### Latency (ms per call)\n\n" + table(
        ["model", "call", "nextstat_jax", "NextStat", "pyhf", "× NextStat", "× pyhf"], lat_rows)
    body += "\n\n### Throughput (per second)\n\n" + table(
        ["model", "workload", "nextstat_jax", "NextStat", "pyhf", "× NextStat", "× pyhf", "max |Δq0| vs pyhf"],
        thr_rows)
    body += ("\n\nNextStat's q0 rows use `MaximumLikelihoodEstimator.q0_like_loss_and_grad_nominal` in a "
             "Python loop (it returns q0 with its gradient; NextStat has no cheaper q0-only call), timed on "
             "512 vectors and scaled; pyhf rows are `pyhf.infer.test_statistics.q0` on a rebuilt model per "
             "vector, timed on a subset and scaled. NextStat's toys use all cores (Rayon), as many toys as ours. "
             "Throughput rows: ours and NextStat's calls timed in turns (median of 7 rounds; toys on the "
             "201-parameter model 3), so that the machine's drift reaches both. "
             "× columns: how many times faster nextstat_jax is.")
    write("bench_infer", "Inference: fits, hypotests, q0 throughput, toys", body)


if __name__ == "__main__":
    main()
