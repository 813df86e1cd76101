"""Assemble ``docs/benchmarks.md`` from the tables the benchmark scripts wrote
to ``benchmarks/results/`` (run them first):

    python benchmarks/bench_logpdf.py
    python benchmarks/bench_infer.py
    python benchmarks/bench_env.py
    python benchmarks/make_docs.py
"""

from __future__ import annotations

from pathlib import Path

from _common import RESULTS, SMOKE_DIR

ORDER = ("bench_logpdf", "bench_infer", "bench_env")
# smoke mode (see _common.py) writes the page beside its tables, not into docs/
DOCS = Path(SMOKE_DIR) / "benchmarks.md" if SMOKE_DIR else Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"

INTRO = """# Benchmarks

Measured by the scripts in `benchmarks/`, which run the peers in the same
process on the same inputs: pyhf 0.7.6 (numpy backend with scipy's optimiser,
and its JAX backend where stated) and NextStat (the Rust engine, PyPI
`nextstat`). Every table says which machine produced it. Tests check
correctness, not time; these numbers are measurements, rerun them with

```bash
python benchmarks/bench_logpdf.py && python benchmarks/bench_infer.py && python benchmarks/bench_env.py && python benchmarks/make_docs.py
```

(about twelve minutes on 2 cores, 2026-12-08). With `NEXTSTAT_JAX_BENCH_SMOKE=<dir>` set, the
same command runs every row at tiny sizes and writes the tables and this page
to `<dir>` instead (5-7 minutes beside the rest of the test suite, which runs it that way, so
the command is known to work; those numbers mean nothing).
`python benchmarks/profile_seed.py` is a diagnostic, not a table: where the
seed model's batched time goes (toy sampling, statistics, the pieces of one
Newton iteration, the Newton steps the toys' fits need).

Models: *seed* is the seed notebook's workspace (8 bins, 2 parameters:
`mu` and one background normsys); *201 par* is `nextstat_jax.datasets.benchmark_workspace()`
(50 channels x 4 bins; a signal with the shared POI `mu` and a background
with a staterror per channel: 201 parameters, a sparse block-arrow Hessian). Compilation is excluded from throughput (warm-up calls), and
reported separately where it matters (first call of an environment).

**GPU.** No GPU was lent to the sessions that produced these tables, so every
number here is CPU. The code has no host round trips on the hot path (fits,
toys and the environment step are single jitted programs), so the same
scripts run unchanged on a GPU and print the device in each table's machine
line.

{sections}
## Reading the numbers

Status against the issues' targets. All three tables above are one run of
2026-12-08 on an Intel Xeon @ 2.80GHz with AVX-512 (the machine line names
the CPU since then); the status column also counts the runs of 2026-12-07
on the machine of that day, whose model the tables did not record. Our rates
were about the same on both machines (seed q0 401k/s vs 397k/s, 201-parameter
q0 10.3k/s vs 11.7k/s), NextStat's were 1.6-1.9x higher on the Xeon (seed q0
22.5k/s vs 13.8k/s, 201-parameter q0 490/s vs 275/s, toys 33.2k/s vs
29.2k/s on the seed model, 946/s vs 509/s on 201 par), and both engines'
rates already moved between runs on one machine (NextStat's seed q0 16.5k/s,
10.9k/s and 13.8k/s in the three runs of 2026-12-07). So each ratio is from
one run with both engines side by side, and the throughput rows time our call
and NextStat's in turns (one of each per round, median of 7 rounds after
warm-up rounds, NextStat's toys at as many toys as ours): a drift of the
machine reaches both. A target counts as met only where every run met it
(rerunning the scripts rewrites the tables, not this paragraph):

| target | measured (this run; the runs of 2026-12-07) | status |
|---|---|---|
| q0 throughput, seed model, >= 30x NextStat | 17.8x (401k/s; NextStat 22.5k/s); 28.7x, 37.1x and 24.8x | not met (met in one run of four) |
| q0 throughput, 201-parameter model, >= 25x NextStat | 20.9x (10.3k/s; NextStat 490/s); 42.6x, 29.7x and 32.6x | not met on the Xeon; met in the three runs before |
| q0 + gradient costs no more than q0 | seed 16% dearer (339k/s vs 401k/s); 201 par 4% dearer (9.89k/s vs 10.3k/s); before: seed within noise, 21% and 9% dearer; 201 par 16%, 26% and 15% | not met |
| toys/s >= 10x NextStat (which uses every core) | seed 7.87x (261k/s; NextStat 33.2k/s), 201 par 11.6x (11.0k/s; NextStat 946/s); before: seed 10.2x (9.34x and 8.04x before the predicted starts), 201 par 22.5x, 16.9x and 18.4x | met on 201 par; not on the seed model |
| batched gymnax env >= 50x NextStat's single env | 55.0x (1.25M steps/s at 4096 envs; NextStat 22.7k); before: 63.2x, 84.5x and 65.9x | met |
| single-call latency stated honestly | NextStat ~10x faster on the seed fit (0.0166 vs 0.164 ms) and ~5x on the seed hypotest (0.071 vs 0.354 ms); we are ~1.5x (fit) and ~6.9x (hypotest) faster on 201 parameters | stated |

Toy fits since the second session of 2026-12-07 (docs/design.md): a
hypothesis' toys are drawn at generating parameters whose Asimov data they
scatter around, and one Newton step from there with the Asimov Hessian
predicts each toy's optimum to second order in its data; the fits start
there (the init is the solver's fallback where the NLL is not finite).
Seed toys' free fits need 1.8 instead of 3.1 Newton steps on average, their
fixed-POI fits 1.6 instead of 2.4; a whole hypotest of 2 x 2000 toys, in
turns in one process, 18.0 -> 14.9 ms (median of 7). Models above 4096
numbers per fit's prediction (the 201-parameter model) start from the init
as before: there the dense prediction costs about what it saves.

The gradient of q0 with respect to the yields is exact and needs no extra
fit (envelope theorem), but it is one more linearised pass of the likelihood
per fit at its optimum (the cotangent of every sample's nominal in every bin
of the model), about half a Newton iteration on the 201-parameter model.

Unrolled loops since 2026-12-07 (docs/design.md): the whole-batch loop hands
the last 1/8 of the batch (was 1/64) to its tail loop: a fifth of the seed
toys' free fits need a fourth Newton step, which 1/64 ran on the whole batch
(interleaved, p10: a toy chunk of 2 x 2048 9.74 -> 9.07 ms, seed q0 x 4096
6.43 -> 5.91 ms, 16 steps of 4096 gymnax envs 47.6 -> 41.2 ms).
`benchmarks/profile_seed.py` shows where the rest goes: ~4 Newton iterations
per toy chunk, each half derivatives.

The environment since the eighth session of 2026-12-06: with the `q0`/`z0`
reward on the observed data (NextStat's setting), the background-only fit
cannot depend on the signal's yields where the POI scales the signal and no
staterror or shapesys of the signal reads them, so it is computed once when
the environment is made and each step runs one fit instead of two
(docs/design.md): 1.24M -> 2.06M steps/s at 4096 gymnax envs in isolation.

Batched fits since the seventh session of 2026-12-06 (docs/design.md): the
fitted `twice_nll` is the solver's own last value plus the normalisation
constants (no second evaluation of the likelihood after the loop, which ran as
plain vmapped kernels: a fifth of the seed q0 batch); unrolled loops take their
float64 logs from a vectorised `fastlog.py`, run without compaction stages and
hand the last 1/64 of the batch to a small tail loop; a full Newton step whose
decrease matched the quadratic model's prediction ends a fit without a
confirming iteration. Seed q0 x4096 5.2 -> 3.2-3.6 ms, the gymnax env 775k ->
1.23M steps/s. Toys draw their uniforms from a counter-based Threefry written
out for XLA to fuse, and compute CLs and its expected set on the host (XLA's
CPU sort was 1.5 ms of a seed hypotest): seed toys 315k/s -> 431k/s,
201-parameter toys 12.3k/s -> 15.5k/s.

Toys since the sixth session of 2026-12-06: Poisson draws up to rate 200 are
an inversion by binary search in a table of the cumulative distribution that a
hypothesis' toys share (`sampling.py`, docs/design.md), instead of rejection
sampling with retry passes: 2 x 2000 toys on the seed model 22.1 -> 12.5 ms
per hypotest, on the 201-parameter model 418 -> 338 ms.

Small models since the fifth session of 2026-12-06: the solver's loop runs
unrolled entry by entry for batches of small elements (`unrolled.py`,
docs/design.md): a Newton iteration of the seed model is a few dozen fused
passes over (batch,) vectors instead of ~100 kernels over (batch, 8) arrays.
Seed q0 x4096 328k/s -> 460k/s, gymnax env 537k -> 772k steps/s; the
201-parameter model (too wide to unroll) and the seed's toys (whose time is
outside the fits' loop) are unchanged.

The environment since the fourth session of 2026-12-06: each step's fits
start from the previous step's optima (whichever of them and the usual init
has the lower NLL, so a bad start never hurts); a step moves the yields by a
few percent, so the fits need about one Newton iteration less (4096 envs:
436k -> 537k steps/s). The reward equals `nsj.q0` of the same yields to the
solver's tolerance (~1e-10 relative; tested at 1e-9).

Toys since the fourth session of 2026-12-06: Poisson draws from our own
float64 sampler (`jax.random.poisson` samples in float32 and gets the variance
of its draws 2.8% wrong at rate 1e6; its loop below rate 10 cost the seed
model's toys more than their fits: docs/design.md), both hypotheses' toys in
the same calls in power-of-two chunks, and the per-call setup compiled (it
cost ~5 ms eagerly). Seed toys 75.7k/s -> 135k/s, 201-parameter toys 8.0k/s ->
10.2k/s.

On two CPU cores a batch of fits is bounded by the passes XLA makes over
batch-sized arrays, not by Python dispatch: each q0 is two converged Newton
fits (2-3 iterations each, an exact structured Hessian per iteration), and
NextStat's Rust loop pays no Python overhead either. Since 2026-11-25 a
vmapped fit costs its own iterations rather than the slowest element's
(compaction, docs/design.md), the Hessian blocks follow the model's connected
components and index maps are built from slices (201-parameter q0 6.0k/s ->
10.9k/s; seed q0 per batch 17.9 -> 12.7 ms in isolation). Since the third
session of 2026-12-06 the solver loops over a wide model's batch in
cache-sized pieces (docs/design.md): 201-parameter q0 11.9k/s -> 16.5k/s. The
gradient of q0 (envelope theorem: one reverse pass over the rates at the two
optima) still runs over the whole batch, so on that model it adds 12-17%.

What limits the seed model, measured in that session with XLA's profiler: a
batch of 4096 q0 executes ~650 kernels, ~150 of them 30-500 us each, on arrays
of 8192 x (2..16) numbers (derivatives about half the kernel time, the
Newton step, line search and compaction the rest). Two experiments that were
measured and not kept: hand-written analytic derivatives for the seed model
cut the batch by only ~25% (10.7 -> 8 ms), and forward-over-forward
derivatives from the colour seeds were 2x slower than the current
forward-over-reverse ones. Reaching 30x there needs a solver iteration of a
few fused kernels, not only cheaper derivatives; a GPU, where the same
programs run unchanged, was not lent to this project's sessions so far.

Models with many normsys per sample (not in these tables; realistic ones carry
tens) got faster on 2026-12-06 (second session): their normsys factors are now
multiplied once per channel instead of once per bin. One channel of 6 bins with
a signal normfactor and 11 background normsys: q0 for 4096 yield vectors
2.98 s -> 0.33 s (compile 27.5 -> ~13 s); the same batch had deadlocked on 2
cores above ~2048 elements before (batched LAPACK, fixed: docs/design.md).

* Single small fits are latency-bound: NextStat's Rust fit of the 2-parameter
  seed model is faster than one dispatch of a jitted JAX program from Python.
  nextstat_jax is built for the batched case (`jax.vmap` over yields, data or
  toys), where one compiled program fits thousands of models at once.
* The agreement column is measured in the same run: max |q0(nextstat_jax) -
  q0(pyhf)| over the pyhf subset, pyhf at tolerance 1e-12 (at scipy's default
  tolerance, which the pyhf timing rows use, pyhf itself is off by up to ~1e-4
  in q0 on the 201-parameter model).
"""


def main(argv=None) -> None:
    import argparse

    argparse.ArgumentParser(description="Assemble docs/benchmarks.md from benchmarks/results/*.md").parse_args(argv)
    parts = []
    for name in ORDER:
        path = RESULTS / f"{name}.md"
        if not path.exists():
            raise SystemExit(f"missing {path}: run benchmarks/{name}.py first")
        parts.append(path.read_text().strip() + "\n")
    DOCS.write_text(INTRO.format(sections="\n".join(parts)))
    print(f"wrote {DOCS}")


if __name__ == "__main__":
    main()
