"""The example scripts run end to end (with small budgets) and print what
their docs pages quote."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(script, *args, env=None, timeout=600):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], capture_output=True,
                         text=True, timeout=timeout, env={**os.environ, "MPLBACKEND": "Agg", **(env or {})})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout


def test_gymnasium_rl_agent_example(tmp_path):
    fig = tmp_path / "agent.png"
    stdout = _run("02_gymnasium_rl_agent.py", "--out", str(fig), env={"NSJ_EXAMPLE_TIMESTEPS": "256"})
    assert fig.stat().st_size > 10_000
    for text in ("random agent: total reward", "PPO: ", "PPO agent:", "observation space"):
        assert text in stdout, stdout


def test_optimise_yields_example(tmp_path):
    fig = tmp_path / "shape.png"
    stdout = _run("optimise_yields.py", "--steps", "300", "--plot", str(fig))
    assert fig.stat().st_size > 10_000
    # the best restart reaches the optimum (all signal in the last bin)
    pct = float(re.search(r"([0-9.]+)% of the optimum", stdout).group(1))
    assert pct >= 99.0, stdout


def test_gymnasium_rl_agent_batched_asimov_budget(tmp_path):
    """docs/examples/gymnasium_rl_agent.md's second command (SB3 PPO on 1024
    batched envs, Asimov data, fixed signal budget), with a small budget."""
    fig = tmp_path / "agent.png"
    stdout = _run("02_gymnasium_rl_agent.py", "--batched", "1024", "--data", "asimov", "--budget", "--out", str(fig),
                  env={"NSJ_EXAMPLE_TIMESTEPS": "2048"})
    assert fig.stat().st_size > 10_000
    assert re.search(r"PPO: 2048 timesteps", stdout), stdout
    assert "final q0" in stdout, stdout


def test_compare_optimisers_quick(tmp_path):
    """docs/examples/compare_optimisers.md's smoke run (writes its results
    section and figure where told, not into docs/)."""
    out, fig = tmp_path / "results.md", tmp_path / "results.png"
    stdout = _run("compare_optimisers.py", "--quick", "--out", str(out), "--figure", str(fig))
    assert fig.stat().st_size > 10_000
    text = out.read_text()
    for method in ("random policy", "pure-JAX PPO", "gradient ascent"):
        assert method in text and method in stdout, method
    # gradient ascent reaches the optimum even with the smoke budget
    pct = float(re.search(r"gradient ascent[^\n]*?\|\s*[0-9.]+\s*\|\s*[0-9.]+\s*\|\s*([0-9.]+)%", text).group(1))
    assert pct > 90.0, text


def test_optimise_cuts_quick(tmp_path):
    """docs/examples/optimise_cuts.md's smoke run."""
    out, fig = tmp_path / "results.md", tmp_path / "cuts.png"
    stdout = _run("optimise_cuts.py", "--quick", "--out", str(out), "--figure", str(fig))
    assert fig.stat().st_size > 10_000
    text = out.read_text()
    for method in ("grid scan", "gradient ascent", "PPO"):
        assert method in text, method
    assert f"wrote {out}" in stdout, stdout
