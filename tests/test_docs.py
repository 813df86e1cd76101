"""Every ```python block in README.md and docs/*.md runs (blocks of one file
share a namespace, in order), and docs/api.md matches the docstrings."""

import re
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text())


@pytest.mark.parametrize("path", [p for p in DOCS if _blocks(p)], ids=lambda p: p.name)
def test_code_blocks_run(path, monkeypatch, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{path.stem}"}
    x64 = jax.config.read("jax_enable_x64")  # the examples set it, as users do: restored for later tests
    try:
        for i, code in enumerate(_blocks(path)):
            try:
                # a truncation to float32 in the examples' own array code is an error here
                with warnings.catch_warnings():
                    warnings.filterwarnings("error", message="Explicitly requested dtype float64")
                    exec(compile(code, f"{path.name}[block {i}]", "exec"), namespace)
            except Exception as err:  # pragma: no cover - the failure message is the point
                pytest.fail(f"{path.name} block {i} failed: {type(err).__name__}: {err}\n{code}")
    finally:
        jax.config.update("jax_enable_x64", x64)


def test_api_reference_is_current():
    out = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_api.py"), "--check"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr


BASH = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
SCRIPT = re.compile(r"python3? ((?:examples|benchmarks)/\S+\.py)(.*)")


def _script_commands():
    """(script, options) for every example/benchmark script a bash block runs."""
    out = []
    for path in DOCS + sorted((ROOT / "docs" / "examples").glob("*.md")):
        for block in BASH.findall(path.read_text()):
            for line in block.splitlines():
                for part in line.split("#")[0].split("&&"):
                    m = SCRIPT.search(part.strip())
                    if m:
                        out.append((m.group(1), tuple(re.findall(r"(--[\w-]+)", m.group(2)))))
    return sorted(set(out))


def test_documented_script_commands_exist_and_take_their_options():
    """Every script a docs bash block runs exists and its ``--help`` lists
    each option the block passes (the runs themselves: tests/test_examples.py,
    with small budgets, and the benchmark command below)."""
    commands = _script_commands()
    assert len(commands) >= 8, commands
    helps = {}
    for script, options in commands:
        assert (ROOT / script).is_file(), script
        if script not in helps:
            out = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True,
                                 cwd=ROOT / script.split("/")[0])
            assert out.returncode == 0, f"{script} --help: {out.stderr[-2000:]}"
            helps[script] = out.stdout
        missing = [o for o in options if o not in helps[script]]
        assert not missing, f"{script}: options {missing} not in its --help"


def test_documented_benchmark_command_runs(tmp_path):
    """The command docs/benchmarks.md gives to rerun the benchmarks runs as
    written, end to end (every peer, every row), in the scripts' smoke mode:
    tiny sizes, tables and the assembled page written to ``tmp_path``, the
    repository's results left alone (benchmarks/_common.py)."""
    import os

    blocks = [b for b in BASH.findall((ROOT / "docs" / "benchmarks.md").read_text()) if "benchmarks/" in b]
    assert len(blocks) == 1, blocks
    committed = {p: p.read_text() for p in [ROOT / "docs" / "benchmarks.md", *(ROOT / "benchmarks" / "results").glob("*.md")]}
    # "python" in the block is this interpreter (a venv's python may not be first on PATH)
    env = dict(os.environ, NEXTSTAT_JAX_BENCH_SMOKE=str(tmp_path),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    out = subprocess.run(["bash", "-euc", blocks[0]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    page = (tmp_path / "benchmarks.md").read_text()
    for section in ("logpdf evaluations per second", "Inference: fits, hypotests, q0 throughput, toys",
                    "Environment steps/s"):
        assert f"## {section}" in page, section
    rows = [line for line in page.splitlines() if line.startswith("| ") and not line.startswith("| model")
            and not line.startswith("| face") and not line.startswith("| target")]
    # every model's rows (logpdf 1 call and batch; fit, hypotest; q0, q0+grad, toys), every env face
    for model in ("seed", "201 par"):
        assert sum(r.startswith(f"| {model}") for r in rows) == 7, (model, rows)
    for face in ("NextStat env", "Gymnasium env", "vector env", "SB3 VecEnv", "gymnax jit+vmap+scan"):
        assert any(r.startswith(f"| {face}") for r in rows), face
    assert {p: p.read_text() for p in committed} == committed, "smoke mode wrote into the repository"
