"""Shared helpers for the benchmark scripts: timing, the machine description,
and Markdown tables (each script writes ``benchmarks/results/<name>.md``;
``make_docs.py`` assembles ``docs/benchmarks.md``).

Smoke mode: with ``NEXTSTAT_JAX_BENCH_SMOKE=<dir>`` in the environment every
script runs its whole workflow at tiny sizes (the defaults below), times each
call once, and writes its table, and ``make_docs.py`` the assembled page, to
``<dir>`` instead of the repository. tests/test_docs.py runs the documented
command this way, so the command in docs/benchmarks.md is known to work
without the ten minutes of a real run; the numbers it prints mean nothing."""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

SMOKE_DIR = os.environ.get("NEXTSTAT_JAX_BENCH_SMOKE") or None
RESULTS = Path(SMOKE_DIR) if SMOKE_DIR else Path(__file__).resolve().parent / "results"


def default(full, smoke):
    """A command-line default: ``full`` normally, ``smoke`` in smoke mode."""
    return smoke if SMOKE_DIR else full


def timeit(fn: Callable, *, repeat: int = 5, number: int = 1, warmup: int = 1) -> float:
    """Median wall time (s) of ``number`` calls of ``fn``, over ``repeat`` runs
    (one call after one warm-up in smoke mode)."""
    if SMOKE_DIR:
        repeat, number, warmup = 1, 1, min(warmup, 1)
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - t0) / number)
    return statistics.median(runs)


def runs_interleaved(fns: Sequence[Callable], *, repeat: int = 7, warmup: int = 2, calls: int = 1) -> list:
    """Wall times (s) of each of ``fns``, timed in turns: per round ``calls``
    calls of each, ``repeat`` rounds after ``warmup``; one list per function.
    A drift of the machine's speed (this one's rates move by up to 2x within
    minutes) reaches every function alike, so their ratio stays fair."""
    if SMOKE_DIR:
        repeat, warmup, calls = 1, min(warmup, 1), 1
    for _ in range(warmup):
        for fn in fns:
            fn()
    runs = [[] for _ in fns]
    for _ in range(repeat):
        for fn, r in zip(fns, runs):
            for _ in range(calls):
                t0 = time.perf_counter()
                fn()
                r.append(time.perf_counter() - t0)
    return runs


def timeit_interleaved(fns: Sequence[Callable], *, repeat: int = 7, warmup: int = 2) -> list:
    """Median wall time (s) of one call of each of ``fns``, timed in turns
    (:func:`runs_interleaved`)."""
    return [statistics.median(r) for r in runs_interleaved(fns, repeat=repeat, warmup=warmup)]


def _cpu_model() -> str:
    """The CPU's model name (Linux), else the architecture: machines of one
    kind differ (NextStat's seed q0 ran 13.8k/s on one, 22.5k/s on another)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    import jax

    devs = ", ".join(sorted({d.device_kind for d in jax.devices()}))
    return (f"{_cpu_model()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, jax {jax.__version__} on {devs}")


def fmt(x: float, digits: int = 3) -> str:
    if x != x:
        return "n/a"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


def write(name: str, title: str, body: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    text = f"## {title}\n\n_Machine: {machine()}; {time.strftime('%Y-%m-%d')}._\n\n{body}\n"
    path.write_text(text)
    print(text)
    return path
