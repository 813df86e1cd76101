"""Assemble ``docs/benchmarks.md`` from the tables the benchmark scripts wrote
to ``benchmarks/results/`` (run them first):

    python benchmarks/bench_logpdf.py
    python benchmarks/bench_infer.py
    python benchmarks/bench_env.py
    python benchmarks/make_docs.py
"""

from __future__ import annotations

from pathlib import Path

from _common import RESULTS

ORDER = ("bench_logpdf", "bench_infer", "bench_env")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"

INTRO = """# Benchmarks

Measured by the scripts in `benchmarks/`, which run the peers in the same
process on the same inputs: pyhf 0.7.6 (numpy backend with scipy's optimiser,
and its JAX backend where stated) and NextStat (the Rust engine, PyPI
`nextstat`). Every table says which machine produced it. Tests check
correctness, not time; these numbers are measurements, rerun them with

```bash
python benchmarks/bench_logpdf.py && python benchmarks/bench_infer.py && python benchmarks/bench_env.py && python benchmarks/make_docs.py
```

Models: *seed* is the seed notebook's workspace (8 bins, 2 parameters:
`mu` and one background normsys); *201 par* is `nextstat_jax.datasets.benchmark_workspace()`
(50 channels x 4 bins; a signal with the shared POI `mu` and a background
with a staterror per channel: 201 parameters, a sparse block-arrow Hessian). Compilation is excluded from throughput (one warm-up call), and
reported separately where it matters (first call of an environment).

**GPU.** No GPU was lent to the sessions that produced these tables, so every
number here is CPU. The code has no host round trips on the hot path (fits,
toys and the environment step are single jitted programs), so the same
scripts run unchanged on a GPU and print the device in each table's machine
line.

{sections}
## Reading the numbers

Status against the issues' targets, from the run of 2026-11-25 on the 2-core
CPU above (rerunning the scripts rewrites the tables, not this paragraph):

| target | measured | status |
|---|---|---|
| q0 throughput, seed model, >= 30x NextStat | ~11x | not met |
| q0 throughput, 201-parameter model, >= 25x NextStat | ~12x | not met |
| q0 + gradient costs no more than q0 | equal within noise | met |
| toys/s >= 10x NextStat (which uses every core) | 1.5x seed, 5.4x 201 par | not met |
| batched gymnax env >= 50x NextStat's single env | ~16x | not met |
| single-call latency stated honestly | NextStat ~9x faster on the seed fit and ~4x on the seed hypotest; we are ~3x (fit) and ~9x (hypotest) faster on 201 parameters | stated |

On two CPU cores a batch of fits is bounded by arithmetic, not dispatch: each
q0 is two converged Newton fits (3-6 iterations, each an exact structured
Hessian), and NextStat's Rust loop pays no Python overhead either. The
remaining factor would have to come from cheaper iterations (fewer line-search
evaluations, a Gauss-Newton Hessian for the Poisson part) or from a GPU, where
the same programs run unchanged.

* Single small fits are latency-bound: NextStat's Rust fit of the 2-parameter
  seed model is faster than one dispatch of a jitted JAX program from Python.
  nextstat_jax is built for the batched case (`jax.vmap` over yields, data or
  toys), where one compiled program fits thousands of models at once.
* The agreement column is measured in the same run: max |q0(nextstat_jax) -
  q0(pyhf)| over the pyhf subset, pyhf at tolerance 1e-12 (at scipy's default
  tolerance, which the pyhf timing rows use, pyhf itself is off by up to ~1e-4
  in q0 on the 201-parameter model).
"""


def main() -> None:
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
