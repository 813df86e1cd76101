"""The ``nextstat-jax`` command line.

Subcommands take a pyhf JSON workspace file (or ``-`` for standard input) and
print rich tables, or JSON with ``--json``::

    nextstat-jax inspect WS            channels, samples, modifiers, parameters
    nextstat-jax fit WS [--gof]        best fit (and saturated-model goodness of fit)
    nextstat-jax hypotest WS --mu 1    asymptotic CLs
    nextstat-jax limit WS [--plot P]   observed/expected upper limits (Brazil band)
    nextstat-jax rank WS --top 10      impacts on the POI (ranking plot)
    nextstat-jax toys WS --n 10000     toy-based CLs (progress bar)
    nextstat-jax demo --output DIR     the README's tour: fits, limits, RL, plots

Errors print one line, ``nextstat-jax <command>: error: ...``, on standard
error and exit with status 2 (1 for an unexpected internal error; set
``NSJ_DEBUG=1`` to see its traceback); ``--help`` works on every command.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

__all__ = ["main"]

# points of the plotted CLs curves and scans (one grid length: one compilation)
GRID_POINTS = 41


class CLIError(Exception):
    """A user error found by the command line itself (exit status 2)."""


# ------------------------------------------------------------------ helpers
def _read_spec(path: str):
    """The workspace as a dict (stdin) or a path for ``from_pyhf``."""
    if path == "-":
        text = sys.stdin.read()
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise CLIError(f"standard input is not valid JSON: {err}") from None
    return path


def _load(args):
    """(Workspace, Model) of the command's workspace and measurement."""
    import nextstat_jax as nsj

    ws = nsj.Workspace(_read_spec(args.workspace))
    return ws, ws.model(measurement_name=args.measurement)


def _clean(obj):
    """JSON-safe: NaN/inf -> None, NumPy scalars -> Python."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "shape", None) == ():
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _emit_json(obj) -> None:
    print(json.dumps(_clean(obj), indent=2))


def _console():
    from rich.console import Console

    return Console()


def _table(title: str, columns: Sequence[str], rows, justify_left: int = 1):
    from rich.table import Table

    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i < justify_left else "right")
    for row in rows:
        table.add_row(*[_fmt(v) for v in row])
    return table


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return "" if v is None else str(v)


def _print_kv(title: str, out: dict, skip=()) -> None:
    rows = [(k, v) for k, v in out.items() if k not in skip]
    _console().print(_table(title, ("quantity", "value"), rows))


def _savefig(fig, path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _use_agg() -> None:
    """Plots from the command line never need a display."""
    try:
        import matplotlib
    except ImportError:
        raise CLIError("plots need matplotlib: pip install 'nextstat-jax[plot]'") from None
    matplotlib.use("Agg")


def _plot():
    from nextstat_jax import plot

    return plot


def _floats(x) -> list:
    return [float(v) for v in x]


# ---------------------------------------------------------------- commands
def _cmd_inspect(args) -> int:
    from nextstat_jax.interpret import prefit_uncertainties

    ws, model = _load(args)
    spec = ws.spec
    lay = model.layout
    par_type = {}
    for name, (a, b), kind in zip(lay.par_order, lay.par_slices, lay.par_types):
        for i in range(a, b):
            par_type[i] = kind
    init, bounds = model.suggested_init(), model.suggested_bounds()
    fixed, prefit = model.suggested_fixed(), prefit_uncertainties(model)
    channels = []
    for ch in sorted(spec["channels"], key=lambda c: c["name"]):
        channels.append({
            "name": ch["name"],
            "n_bins": len(ch["samples"][0]["data"]),
            "samples": [{"name": s["name"], "yield": float(sum(s["data"])),
                         "modifiers": [{"name": m["name"], "type": m["type"]} for m in s["modifiers"]]}
                        for s in ch["samples"]],
        })
    parameters = [
        {"name": n, "type": par_type.get(i, ""), "init": float(init[i]),
         "bounds": _floats(bounds[i]), "fixed": bool(fixed[i]), "prefit_uncertainty": float(prefit[i])}
        for i, n in enumerate(model.par_names)
    ]
    out = {
        "workspace": args.workspace,
        "measurements": ws.measurement_names,
        "measurement": args.measurement or ws.measurement_names[0],
        "poi": model.poi_name,
        "n_params": model.n_params,
        "n_main_bins": model.nmaindata,
        "n_auxdata": model.nauxdata,
        "channels": channels,
        "parameters": parameters,
    }
    if args.json:
        _emit_json(out)
        return 0
    con = _console()
    con.print(_table(f"workspace {args.workspace}", ("quantity", "value"), [
        ("measurements", ", ".join(out["measurements"])), ("measurement", out["measurement"]),
        ("POI", out["poi"]), ("parameters", out["n_params"]), ("main bins", out["n_main_bins"]),
        ("auxiliary data", out["n_auxdata"]),
    ]))
    con.print(_table("channels", ("channel", "bins", "samples", "observed"), [
        (c["name"], c["n_bins"], ", ".join(s["name"] for s in c["samples"]),
         float(sum(ws.observations.get(c["name"], [])))) for c in channels
    ], justify_left=1))
    con.print(_table("samples and modifiers", ("channel", "sample", "yield", "modifiers"), [
        (c["name"], s["name"], s["yield"], ", ".join(f"{m['name']} ({m['type']})" for m in s["modifiers"]))
        for c in channels for s in c["samples"]
    ], justify_left=2))
    con.print(_table("parameters", ("parameter", "type", "init", "bounds", "fixed", "pre-fit σ"), [
        (p["name"], p["type"], p["init"], p["bounds"], p["fixed"], p["prefit_uncertainty"]) for p in parameters
    ], justify_left=2))
    return 0


def _cmd_fit(args) -> int:
    import nextstat_jax as nsj

    _, model = _load(args)
    res = nsj.fit(model)
    out = {
        "title": f"maximum-likelihood fit of {args.workspace}",
        "parameters": [
            {"name": n, "value": float(v), "uncertainty": float(u)}
            for n, v, u in zip(model.par_names, res.bestfit, res.uncertainties)
        ],
        "twice_nll": float(res.twice_nll),
        "converged": bool(res.converged),
        "n_iter": int(res.n_iter),
    }
    if args.gof:
        from nextstat_jax.scans import goodness_of_fit

        g = goodness_of_fit(model)
        out["goodness_of_fit"] = {"delta_twice_nll": float(g.delta_twice_nll), "dof": int(g.dof),
                                  "p_value": float(g.p_value)}
    if args.json:
        _emit_json(out)
        return 0
    con = _console()
    con.print(_table(out["title"], ("parameter", "value", "uncertainty"),
                     [(p["name"], p["value"], p["uncertainty"]) for p in out["parameters"]]))
    con.print(f"twice_nll: {out['twice_nll']:.8g}   converged: {out['converged']}   "
              f"iterations: {out['n_iter']}")
    if args.gof:
        g = out["goodness_of_fit"]
        con.print(f"goodness of fit (saturated model): -2ΔlnL = {g['delta_twice_nll']:.4g}, "
                  f"dof = {g['dof']}, p-value = {g['p_value']:.4g}")
    return 0


def _cmd_hypotest(args) -> int:
    import nextstat_jax as nsj

    _, model = _load(args)
    r = nsj.hypotest(model, args.mu, test_stat=args.test_stat)
    out = {
        "mu": args.mu,
        "test_stat": args.test_stat,
        "CLs_obs": float(r.cls_obs),
        "CLsb_obs": float(r.clsb_obs),
        "CLb_obs": float(r.clb_obs),
        "CLs_exp": _floats(r.cls_exp),
        "converged": bool(r.converged),
    }
    if args.json:
        _emit_json(out)
    else:
        _print_kv(f"asymptotic hypothesis test of {model.poi_name} = {args.mu:g}", out)
    return 0


def _limit_grid(model, obs: float, exp, points: int):
    """POI grid for the Brazil band: 0 .. ~1.3x the largest limit, within bounds."""
    import numpy as np

    lo, hi = (float(x) for x in np.asarray(model.suggested_bounds())[model.poi_index])
    top = 1.3 * max(float(obs), float(np.max(np.asarray(exp))))
    top = min(hi, top) if math.isfinite(top) and top > 0 else hi
    return np.linspace(max(lo, 0.0), top, points)


def _cmd_limit(args) -> int:
    import nextstat_jax as nsj

    if not 0.0 < args.level < 1.0:
        raise CLIError(f"--level must be in (0, 1), got {args.level}")
    if args.points < 2:
        raise CLIError(f"--points must be >= 2, got {args.points}")
    if args.plot:
        _use_agg()
    _, model = _load(args)
    obs, exp = nsj.upper_limit(model, level=args.level, test_stat=args.test_stat)
    out = {"level": args.level, "test_stat": args.test_stat, "observed": float(obs), "expected": _floats(exp)}
    if args.plot:
        from nextstat_jax import plot
        from nextstat_jax.scans import cls_curve

        curve = cls_curve(model, _limit_grid(model, obs, exp, args.points), level=args.level,
                          test_stat=args.test_stat)
        out["plot"] = str(_savefig(plot.brazil_band(curve, limit=(obs, exp)), args.plot))
    if args.json:
        _emit_json(out)
        return 0
    _print_kv(f"{100 * (1 - args.level):g}% CL upper limits on {model.poi_name}", out, skip=("plot",))
    if args.plot:
        print(f"wrote {out['plot']}")
    return 0


def _cmd_rank(args) -> int:
    from nextstat_jax.interpret import rank_impact

    if args.top is not None and args.top < 1:
        raise CLIError(f"--top must be >= 1, got {args.top}")
    if args.plot:
        _use_agg()
    _, model = _load(args)
    rows = rank_impact(model, top_n=args.top, method=args.method)
    out = {"method": args.method, "poi": model.poi_name, "ranking": rows}
    if args.plot:
        from nextstat_jax import plot

        out["plot"] = str(_savefig(plot.ranking(rows), args.plot))
    if args.json:
        _emit_json(out)
        return 0
    _console().print(_table(
        f"impact on {model.poi_name} ({args.method})",
        ("rank", "parameter", "Δμ up", "Δμ down", "total", "pull", "constraint"),
        [(r["rank"], r["name"], r["delta_mu_up"], r["delta_mu_down"], r["total_impact"], r["pull"],
          r["constraint"]) for r in rows], justify_left=2))
    if args.plot:
        print(f"wrote {out['plot']}")
    return 0


def _toy_progress(args) -> bool:
    """The toys' rich progress bar draws on standard output: shown unless
    ``--no-progress``, and with ``--json`` only on a terminal (a pipe gets
    clean JSON)."""
    if args.no_progress:
        return False
    return not args.json or sys.stdout.isatty()


def _cmd_toys(args) -> int:
    import jax

    import nextstat_jax as nsj

    if args.n < 1:
        raise CLIError(f"--n must be >= 1, got {args.n}")
    _, model = _load(args)
    t0 = time.perf_counter()
    r = nsj.hypotest(model, args.mu, test_stat=args.test_stat, calculator="toybased", n_toys=args.n,
                     key=jax.random.key(args.seed), progress=_toy_progress(args))
    out = {
        "mu": args.mu,
        "test_stat": args.test_stat,
        "n_toys": args.n,
        "seed": args.seed,
        "CLs_obs": float(r.cls_obs),
        "CLsb_obs": float(r.clsb_obs),
        "CLb_obs": float(r.clb_obs),
        "CLs_exp": _floats(r.cls_exp),
        "test_stat_obs": float(r.test_stat),
        "converged": bool(r.converged),
        "seconds": time.perf_counter() - t0,
    }
    if args.json:
        _emit_json(out)
    else:
        _print_kv(f"toy-based hypothesis test of {model.poi_name} = {args.mu:g} ({args.n} toys per hypothesis)",
                  out)
    return 0


def _ppo_config(steps: int):
    """A PPO configuration of about ``steps`` environment steps (64-step episodes)."""
    from nextstat_jax.rl import PPOConfig

    num_steps = min(64, steps)
    num_envs = max(1, min(64, steps // num_steps))
    batch = num_envs * num_steps
    total = max(batch, (steps // batch) * batch)
    minibatches = 4 if batch % 4 == 0 and batch >= 16 else 1
    return PPOConfig(total_timesteps=total, num_envs=num_envs, num_steps=num_steps, num_minibatches=minibatches,
                     update_epochs=4, learning_rate=1e-3, log_every=8)


def _cmd_demo(args) -> int:
    import jax
    import numpy as np

    import nextstat_jax as nsj
    from nextstat_jax.datasets import seed_workspace
    from nextstat_jax.interpret import rank_impact
    from nextstat_jax.rl import evaluate, train_ppo
    from nextstat_jax.scans import cls_curve, goodness_of_fit, profile_scan

    if args.rl_steps < 1:
        raise CLIError(f"--rl-steps must be >= 1, got {args.rl_steps}")
    try:
        _use_agg()
        plotting = True
    except CLIError:
        plotting = False
        print("matplotlib is not installed: the demo writes no plots (pip install 'nextstat-jax[plot]')")

    outdir = Path(args.output)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []

    def save(draw, name):
        """Draw (a function returning a Figure) and write it, when plotting."""
        if plotting:
            written.append(_savefig(draw(), outdir / name))
            print(f"wrote {written[-1]}")

    spec = seed_workspace()
    (outdir / "workspace.json").write_text(json.dumps(spec, indent=1))
    written.append(outdir / "workspace.json")
    model = nsj.from_pyhf(spec)
    print(f"model: {model}")
    t0 = time.perf_counter()
    res = nsj.fit(model)
    print("best fit: " + ", ".join(f"{n}={v:.4f}±{u:.4f}"
                                   for n, v, u in zip(model.par_names, res.bestfit, res.uncertainties)))
    gof = goodness_of_fit(model)
    print(f"goodness of fit: -2ΔlnL = {float(gof.delta_twice_nll):.4g}, dof = {int(gof.dof)}, "
          f"p = {float(gof.p_value):.4g}")
    q0 = float(nsj.q0(model))
    print(f"discovery: q0 = {q0:.4f}, Z0 = {q0 ** 0.5:.3f} sigma (observed)")
    asimov = nsj.hypotest(model, 1.0)
    print(f"CLs(mu=1) = {float(asimov.cls_obs):.4g}, expected median {float(asimov.cls_exp[2]):.4g}")
    obs, exp = nsj.upper_limit(model)
    print(f"95% CL upper limit on mu: observed {float(obs):.4f}, expected {float(exp[2]):.4f} "
          f"[{float(exp[1]):.4f}, {float(exp[3]):.4f}] (±1σ)")

    # plots of the statistical analysis
    curve = cls_curve(model, _limit_grid(model, obs, exp, GRID_POINTS))
    save(lambda: _plot().brazil_band(curve, limit=(obs, exp)), "brazil_band.png")
    mu_hat, mu_unc = float(res.bestfit[model.poi_index]), float(res.uncertainties[model.poi_index])
    lo, hi = (float(b) for b in np.asarray(model.suggested_bounds())[model.poi_index])
    scan = profile_scan(model, np.linspace(max(lo, mu_hat - 2.5 * mu_unc), min(hi, mu_hat + 2.5 * mu_unc),
                                          GRID_POINTS))
    save(lambda: _plot().profile_scan(scan), "profile_scan.png")
    rows = rank_impact(model)
    save(lambda: _plot().ranking(rows), "ranking.png")

    def yields_figure():
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
        _plot().stacked_yields(model, ax=axes[0])
        _plot().stacked_yields(model, pars=res, ax=axes[1])
        fig.tight_layout()
        return fig

    save(yields_figure, "yields.png")
    stats_seconds = time.perf_counter() - t0

    # a short vectorised PPO run that reshapes the signal to maximise q0
    env, params = nsj.gym.make_gymnax_env(spec, channel="SR", sample="signal", reward_metric="q0", data="asimov",
                                          yield_budget="nominal", max_steps=64, action_scale=0.2)
    cfg = _ppo_config(args.rl_steps)
    print(f"training PPO: {cfg.total_timesteps} environment steps in {cfg.num_envs} parallel environments ...")
    trained = train_ppo(env, params, cfg, jax.random.key(args.seed))
    ev = evaluate(env, params, trained.policy, jax.random.key(args.seed + 1), n_episodes=1)
    q0_nominal = float(params.reset_metric)
    q0_final = float(ev["final_metric"][0])
    print(f"PPO: {trained.env_steps} steps in {trained.seconds:.1f} s; Asimov q0 of the signal shape "
          f"{q0_nominal:.3f} (nominal) -> {q0_final:.3f} (policy)")
    save(lambda: _plot().learning_curves(trained.metrics), "learning_curves.png")
    save(lambda: _plot().yield_evolution(np.asarray(ev["yields"][0]), nominal=np.asarray(params.nominal)),
         "yield_evolution.png")

    summary = {
        "par_names": model.par_names,
        "bestfit": _floats(res.bestfit),
        "uncertainties": _floats(res.uncertainties),
        "goodness_of_fit": {"delta_twice_nll": float(gof.delta_twice_nll), "dof": int(gof.dof),
                            "p_value": float(gof.p_value)},
        "q0": q0,
        "z0": q0 ** 0.5,
        "cls_mu1": float(asimov.cls_obs),
        "upper_limit": {"observed": float(obs), "expected": _floats(exp)},
        "ranking": rows,
        "rl": {"env_steps": int(trained.env_steps), "seconds": float(trained.seconds),
               "q0_nominal": q0_nominal, "q0_final": q0_final,
               "final_yields": _floats(np.asarray(ev["yields"][0][-1]))},
        "seconds": stats_seconds,
    }
    (outdir / "summary.json").write_text(json.dumps(_clean(summary), indent=2))
    written.append(outdir / "summary.json")
    print(f"wrote {outdir / 'workspace.json'} and {outdir / 'summary.json'}")
    print(f"summary: mu = {mu_hat:.3f} ± {mu_unc:.3f}, Z0 = {q0 ** 0.5:.2f}σ, CLs(mu=1) = "
          f"{float(asimov.cls_obs):.3f}, 95% CL limit {float(obs):.3f} (expected {float(exp[2]):.3f}); "
          f"PPO raised the Asimov q0 of the signal shape from {q0_nominal:.2f} to {q0_final:.2f}")
    print(f"demo finished: {len(written)} files in {outdir.resolve()}")
    return 0


# ------------------------------------------------------------------ parser
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nextstat-jax",
        description="JAX HistFactory inference on pyhf JSON workspaces (fits, limits, ranking, toys, RL demo).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def ws_command(name, help_, fn):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("workspace", help="pyhf JSON workspace file, or - for standard input")
        sp.add_argument("--measurement", default=None, help="measurement name (default: the first)")
        sp.add_argument("--json", action="store_true", help="print JSON instead of tables")
        sp.set_defaults(func=fn)
        return sp

    ws_command("inspect", "channels, samples, modifiers and parameters of a workspace", _cmd_inspect)
    f = ws_command("fit", "maximum-likelihood fit: best-fit values and uncertainties", _cmd_fit)
    f.add_argument("--gof", action="store_true", help="also the saturated-model goodness of fit")
    h = ws_command("hypotest", "asymptotic CLs hypothesis test at a POI value", _cmd_hypotest)
    h.add_argument("--mu", type=float, default=1.0, help="tested POI value (default 1)")
    h.add_argument("--test-stat", default="qtilde", choices=["qtilde", "q", "q0"], help="test statistic")
    lim = ws_command("limit", "observed and expected CLs upper limits on the POI", _cmd_limit)
    lim.add_argument("--level", type=float, default=0.05, help="CLs level (default 0.05: 95%% CL)")
    lim.add_argument("--test-stat", default="qtilde", choices=["qtilde", "q"], help="test statistic")
    lim.add_argument("--plot", metavar="PATH", default=None, help="write the Brazil-band plot (PNG, PDF, ...)")
    lim.add_argument("--points", type=int, default=GRID_POINTS,
                     help=f"POI values in the plotted CLs curve (default {GRID_POINTS})")
    r = ws_command("rank", "impacts of the nuisance parameters on the POI, highest first", _cmd_rank)
    r.add_argument("--top", type=int, default=None, metavar="N", help="show the N highest impacts only")
    r.add_argument("--method", default="postfit", choices=["postfit", "prefit"],
                   help="shift parameters by post-fit (default) or pre-fit uncertainties")
    r.add_argument("--plot", metavar="PATH", default=None, help="write the ranking plot")
    t = ws_command("toys", "toy-based CLs hypothesis test (vmapped toy fits)", _cmd_toys)
    t.add_argument("--n", type=int, default=1000, help="toys per hypothesis (default 1000)")
    t.add_argument("--mu", type=float, default=1.0, help="tested POI value (default 1)")
    t.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    t.add_argument("--test-stat", default="qtilde", choices=["qtilde", "q", "q0"], help="test statistic")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    d = sub.add_parser(
        "demo", help="the tour on the bundled seed workspace: statistics, RL and plots",
        description="Fit the bundled seed workspace, compute q0, CLs and limits, train a short vectorised PPO "
                    "agent that reshapes the signal, and write plots and a summary to a folder.")
    d.add_argument("--output", default="nextstat_jax_demo", help="folder for the outputs (default nextstat_jax_demo)")
    d.add_argument("--rl-steps", type=int, default=262_144, help="PPO environment steps (default 262144)")
    d.add_argument("--seed", type=int, default=0, help="PRNG seed of the RL run (default 0)")
    d.set_defaults(func=_cmd_demo)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .errors import NextStatJaxError

    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `nextstat-jax fit ws.json --json | head`: stop quietly
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 1
    except (NextStatJaxError, CLIError, OSError, json.JSONDecodeError) as err:
        msg = " ".join(str(err).split()) or type(err).__name__
        print(f"nextstat-jax {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nextstat-jax {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # never a traceback, unless asked for
        if os.environ.get("NSJ_DEBUG"):
            raise
        msg = " ".join(str(err).split())
        print(f"nextstat-jax {args.command}: error: unexpected {type(err).__name__}: {msg} "
              f"(set NSJ_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
