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
