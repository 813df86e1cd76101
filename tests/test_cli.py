"""The ``nextstat-jax`` command line, run in-process (``cli.main([...])``) on
the bundled workspaces written to disk: JSON outputs agree with the Python
API, tables name what they show, plots are written, errors are one line on
stderr with exit status 2 and no traceback, ``--help`` works everywhere, and
``demo`` writes its files.

Every command runs on the seed workspace, so the compiled functions are
shared between the commands (and with ``demo``).
"""

from __future__ import annotations

import io
import json

import jax
import numpy as np
import pytest

import nextstat_jax as nsj
from nextstat_jax import cli
from nextstat_jax.datasets import benchmark_workspace, seed_workspace
from nextstat_jax.interpret import rank_impact
from nextstat_jax.scans import goodness_of_fit

COMMANDS = ("inspect", "fit", "hypotest", "limit", "rank", "toys", "demo")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("workspaces")
    seed = seed_workspace()
    two = seed_workspace()
    two["measurements"].append({"name": "narrow", "config": {"poi": "mu", "parameters": [
        {"name": "mu", "bounds": [[0.0, 5.0]]}]}})
    bad_schema = seed_workspace()
    del bad_schema["channels"][0]["samples"][0]["modifiers"]
    bad_model = seed_workspace()
    bad_model["observations"][0]["data"] = [1.0, 2.0]
    paths = {
        "seed": d / "seed.json",
        "bench": d / "bench.json",
        "two": d / "two.json",
        "bad_json": d / "bad.json",
        "bad_schema": d / "bad_schema.json",
        "bad_model": d / "bad_model.json",
    }
    paths["seed"].write_text(json.dumps(seed))
    paths["bench"].write_text(json.dumps(benchmark_workspace(3, 4)))
    paths["two"].write_text(json.dumps(two))
    paths["bad_json"].write_text('{"channels": [')
    paths["bad_schema"].write_text(json.dumps(bad_schema))
    paths["bad_model"].write_text(json.dumps(bad_model))
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture(scope="module")
def model():
    return nsj.from_pyhf(seed_workspace())


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def assert_one_line_error(code, out, err, command, *needles):
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"nextstat-jax {command}: error: ")
    for n in needles:
        assert n in lines[0], lines[0]


# ------------------------------------------------------------------ inspect
def test_inspect(capsys, files, model):
    out = run_json(capsys, "inspect", files["seed"])
    assert out["poi"] == "mu" and out["n_params"] == 2 and out["n_main_bins"] == 8
    (ch,) = out["channels"]
    assert ch["name"] == "SR" and ch["n_bins"] == 8
    assert {s["name"] for s in ch["samples"]} == {"signal", "background"}
    mods = {m["name"]: m["type"] for s in ch["samples"] for m in s["modifiers"]}
    assert mods == {"mu": "normfactor", "bkg_norm": "normsys"}
    pars = {p["name"]: p for p in out["parameters"]}
    assert list(pars) == model.par_names
    assert pars["mu"]["bounds"] == [0.0, 10.0] and pars["bkg_norm"]["prefit_uncertainty"] == 1.0
    assert pars["mu"]["type"] == "normfactor" and not pars["mu"]["fixed"]
    code, text, err = run(capsys, "inspect", files["bench"])
    assert code == 0 and err == ""
    for word in ("channels", "parameters", "ch00", "ch02", "staterror_ch01[3]", "staterror", "normfactor"):
        assert word in text


def test_inspect_measurement_and_stdin(capsys, files, monkeypatch):
    out = run_json(capsys, "inspect", files["two"], "--measurement", "narrow")
    assert out["measurement"] == "narrow" and out["measurements"] == ["meas", "narrow"]
    assert out["parameters"][out["parameters"].index(next(p for p in out["parameters"] if p["name"] == "mu"))][
        "bounds"] == [0.0, 5.0]
    monkeypatch.setattr("sys.stdin", io.StringIO(open(files["seed"]).read()))
    assert run_json(capsys, "inspect", "-")["n_params"] == 2


# ---------------------------------------------------------------------- fit
def test_fit(capsys, files, model, monkeypatch):
    out = run_json(capsys, "fit", files["seed"], "--gof")
    res = nsj.fit(model)
    assert [p["name"] for p in out["parameters"]] == model.par_names
    np.testing.assert_allclose([p["value"] for p in out["parameters"]], res.bestfit, rtol=1e-12)
    np.testing.assert_allclose([p["uncertainty"] for p in out["parameters"]], res.uncertainties, rtol=1e-12)
    np.testing.assert_allclose(out["twice_nll"], res.twice_nll, rtol=1e-12)
    assert out["converged"] is True
    g = goodness_of_fit(model)
    assert out["goodness_of_fit"]["dof"] == int(g.dof) == 7
    np.testing.assert_allclose(out["goodness_of_fit"]["p_value"], g.p_value)
    # a table, from standard input
    monkeypatch.setattr("sys.stdin", io.StringIO(open(files["seed"]).read()))
    code, text, err = run(capsys, "fit", "-")
    assert code == 0 and err == ""
    assert "parameter" in text and "bkg_norm" in text and "twice_nll" in text


def test_fit_other_workspace(capsys, files):
    m = nsj.from_pyhf(files["bench"])
    out = run_json(capsys, "fit", files["bench"])
    np.testing.assert_allclose([p["value"] for p in out["parameters"]], nsj.fit(m).bestfit, rtol=1e-10)


# ----------------------------------------------------------------- hypotest
def test_hypotest(capsys, files, model):
    out = run_json(capsys, "hypotest", files["seed"], "--mu", "1.5")
    r = nsj.hypotest(model, 1.5)
    np.testing.assert_allclose(out["CLs_obs"], r.cls_obs, rtol=1e-12)
    np.testing.assert_allclose(out["CLsb_obs"], r.clsb_obs, rtol=1e-12)
    np.testing.assert_allclose(out["CLs_exp"], r.cls_exp, rtol=1e-12)
    assert out["mu"] == 1.5 and out["test_stat"] == "qtilde" and out["converged"] is True
    code, text, _ = run(capsys, "hypotest", files["seed"])
    assert code == 0 and "CLs_obs" in text and "mu = 1" in text


# -------------------------------------------------------------------- limit
def test_limit_with_plot(capsys, files, model, tmp_path):
    png = tmp_path / "plots" / "brazil.png"
    out = run_json(capsys, "limit", files["seed"], "--plot", png)
    obs, exp = nsj.upper_limit(model)
    np.testing.assert_allclose(out["observed"], obs, rtol=1e-12)
    np.testing.assert_allclose(out["expected"], exp, rtol=1e-12)
    assert out["level"] == 0.05 and out["plot"] == str(png)
    assert png.read_bytes()[:4] == b"\x89PNG"
    code, text, _ = run(capsys, "limit", files["seed"])
    assert code == 0 and "observed" in text and "expected" in text


# --------------------------------------------------------------------- rank
def test_rank(capsys, files, model, tmp_path):
    png = tmp_path / "rank.png"
    out = run_json(capsys, "rank", files["seed"], "--top", "1", "--plot", png)
    rows = rank_impact(model, top_n=1)
    assert out["method"] == "postfit" and out["poi"] == "mu"
    assert [r["name"] for r in out["ranking"]] == [r["name"] for r in rows] == ["bkg_norm"]
    for key in ("delta_mu_up", "delta_mu_down", "pull", "constraint"):
        np.testing.assert_allclose(out["ranking"][0][key], rows[0][key], rtol=1e-10, atol=1e-12)
    assert png.read_bytes()[:4] == b"\x89PNG"
    code, text, _ = run(capsys, "rank", files["seed"], "--method", "prefit")
    assert code == 0 and "bkg_norm" in text and "prefit" in text


# --------------------------------------------------------------------- toys
def test_toys(capsys, files, model):
    out = run_json(capsys, "toys", files["seed"], "--n", "200", "--seed", "3", "--mu", "1")
    r = nsj.hypotest(model, 1.0, calculator="toybased", n_toys=200, key=jax.random.key(3))
    assert out["n_toys"] == 200 and out["seed"] == 3
    np.testing.assert_allclose(out["CLs_obs"], r.cls_obs, rtol=1e-12)
    np.testing.assert_allclose(out["CLs_exp"], r.cls_exp, rtol=1e-12)
    assert 0.0 <= out["CLs_obs"] <= 1.0
    code, text, err = run(capsys, "toys", files["seed"], "--n", "200", "--seed", "3")  # with the progress bar
    assert code == 0 and "toy-based" in text and "CLs_exp" in text


# --------------------------------------------------------------------- demo
def test_demo(capsys, tmp_path):
    outdir = tmp_path / "demo"
    code, out, err = run(capsys, "demo", "--output", outdir, "--rl-steps", "128")
    assert code == 0, err
    pngs = ["brazil_band.png", "profile_scan.png", "ranking.png", "yields.png", "learning_curves.png",
            "yield_evolution.png"]
    for name in pngs:
        assert (outdir / name).read_bytes()[:4] == b"\x89PNG", name
        assert f"wrote {outdir / name}" in out
    summary = json.loads((outdir / "summary.json").read_text())
    for key in ("bestfit", "q0", "cls_mu1", "upper_limit", "goodness_of_fit", "ranking", "rl"):
        assert key in summary
    assert summary["rl"]["env_steps"] == 128 and len(summary["rl"]["final_yields"]) == 8
    assert json.loads((outdir / "workspace.json").read_text()) == seed_workspace()
    for text in ("best fit:", "Z0 =", "CLs(mu=1)", "upper limit", "PPO", str(outdir.resolve())):
        assert text in out


# ------------------------------------------------------------------- errors
@pytest.mark.parametrize("which, needles", [
    ("missing", ("not found", "nope.json")),
    ("bad_json", ("JSON",)),
    ("bad_schema", ("modifiers",)),
    ("bad_model", ("SR",)),
])
def test_errors_are_one_line(capsys, files, tmp_path, which, needles):
    path = str(tmp_path / "nope.json") if which == "missing" else files[which]
    for command in ("fit", "inspect"):
        code, out, err = run(capsys, command, path)
        assert_one_line_error(code, out, err, command, *needles)


def test_other_errors(capsys, files, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("not json"))
    assert_one_line_error(*run(capsys, "fit", "-"), "fit", "standard input", "JSON")
    assert_one_line_error(*run(capsys, "hypotest", files["two"], "--measurement", "nope"), "hypotest", "nope")
    assert_one_line_error(*run(capsys, "limit", files["seed"], "--level", "2"), "limit", "--level")
    assert_one_line_error(*run(capsys, "toys", files["seed"], "--n", "0"), "toys", "--n")
    assert_one_line_error(*run(capsys, "rank", files["seed"], "--top", "0"), "rank", "--top")
    assert_one_line_error(*run(capsys, "demo", "--rl-steps", "0"), "demo", "--rl-steps")
    # an output path that cannot be written (a file where a folder should be)
    assert_one_line_error(*run(capsys, "demo", "--output", files["seed"]), "demo")


def test_usage_errors_exit_2(capsys):
    for argv in ([], ["fit"], ["nope"], ["hypotest", "x.json", "--mu", "abc"], ["limit", "x", "--test-stat", "q0"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2
        _, err = capsys.readouterr()
        assert "usage: nextstat-jax" in err and "Traceback" not in err


@pytest.mark.parametrize("command", (None,) + COMMANDS)
def test_help(capsys, command):
    argv = ["--help"] if command is None else [command, "--help"]
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 0
    out, _ = capsys.readouterr()
    assert out.startswith("usage: nextstat-jax" + ("" if command is None else f" {command}"))
    if command is None:
        for c in COMMANDS:
            assert c in out
    elif command != "demo":
        assert "--measurement" in out and "--json" in out
