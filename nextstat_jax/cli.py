"""The ``nextstat-jax`` command line.

Subcommands take a workspace file (or ``-`` for standard input) and print
tables, or JSON with ``--json``. Errors print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

__all__ = ["main"]


def _load_model(path: str, measurement: Optional[str]):
    import nextstat_jax as nsj

    spec = json.load(sys.stdin) if path == "-" else path
    return nsj.from_pyhf(spec, measurement=measurement)


def _print(obj, as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if isinstance(obj, dict) and "parameters" in obj:
        table = Table(title=obj.get("title", "fit"))
        for col in ("parameter", "value", "uncertainty"):
            table.add_column(col, justify="right" if col != "parameter" else "left")
        for row in obj["parameters"]:
            table.add_row(row["name"], f"{row['value']:.6g}", f"{row['uncertainty']:.3g}")
        console.print(table)
        for k, v in obj.items():
            if k not in ("parameters", "title"):
                console.print(f"{k}: {v}")
    else:
        for k, v in obj.items():
            console.print(f"[bold]{k}[/bold]: {v}")


def _cmd_fit(args) -> int:
    import nextstat_jax as nsj

    model = _load_model(args.workspace, args.measurement)
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
    _print(out, args.json)
    return 0


def _cmd_hypotest(args) -> int:
    import nextstat_jax as nsj

    model = _load_model(args.workspace, args.measurement)
    r = nsj.hypotest(model, args.mu, test_stat=args.test_stat)
    out = {
        "mu": args.mu,
        "test_stat": args.test_stat,
        "CLs_obs": float(r.cls_obs),
        "CLsb_obs": float(r.clsb_obs),
        "CLb_obs": float(r.clb_obs),
        "CLs_exp": [float(x) for x in r.cls_exp],
        "converged": bool(r.converged),
    }
    _print(out, args.json)
    return 0


def _cmd_limit(args) -> int:
    import nextstat_jax as nsj

    model = _load_model(args.workspace, args.measurement)
    obs, exp = nsj.upper_limit(model, level=args.level)
    out = {"level": args.level, "observed": float(obs), "expected": [float(x) for x in exp]}
    _print(out, args.json)
    return 0


def _cmd_demo(args) -> int:
    import nextstat_jax as nsj
    from nextstat_jax.datasets import seed_workspace

    outdir = Path(args.output)
    outdir.mkdir(parents=True, exist_ok=True)
    spec = seed_workspace()
    (outdir / "workspace.json").write_text(json.dumps(spec, indent=1))
    model = nsj.from_pyhf(spec)
    print(f"model: {model}")
    t0 = time.perf_counter()
    res = nsj.fit(model)
    print(f"best fit: " + ", ".join(f"{n}={v:.4f}±{u:.4f}" for n, v, u in zip(model.par_names, res.bestfit, res.uncertainties)))
    q0 = float(nsj.q0(model))
    print(f"discovery: q0 = {q0:.4f}, Z0 = {q0 ** 0.5:.3f} sigma (observed)")
    asimov = nsj.hypotest(model, 1.0)
    print(f"CLs(mu=1) = {float(asimov.cls_obs):.4g}, expected median {float(asimov.cls_exp[2]):.4g}")
    obs, exp = nsj.upper_limit(model)
    print(f"95% CL upper limit on mu: observed {float(obs):.4f}, expected {float(exp[2]):.4f} "
          f"[{float(exp[1]):.4f}, {float(exp[3]):.4f}] (±1σ)")
    summary = {
        "par_names": model.par_names,
        "bestfit": [float(x) for x in res.bestfit],
        "uncertainties": [float(x) for x in res.uncertainties],
        "q0": q0,
        "cls_mu1": float(asimov.cls_obs),
        "upper_limit": {"observed": float(obs), "expected": [float(x) for x in exp]},
        "seconds": time.perf_counter() - t0,
    }
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {outdir / 'workspace.json'} and {outdir / 'summary.json'}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nextstat-jax", description="JAX HistFactory inference (pyhf workspaces)")
    sub = p.add_subparsers(dest="command", required=True)

    def ws_command(name, help_, fn):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("workspace", help="pyhf JSON workspace file, or - for stdin")
        sp.add_argument("--measurement", default=None, help="measurement name (default: the first)")
        sp.add_argument("--json", action="store_true", help="print JSON instead of a table")
        sp.set_defaults(func=fn)
        return sp

    ws_command("fit", "maximum-likelihood fit: best-fit values and uncertainties", _cmd_fit)
    h = ws_command("hypotest", "asymptotic CLs hypothesis test at a POI value", _cmd_hypotest)
    h.add_argument("--mu", type=float, default=1.0, help="tested POI value (default 1)")
    h.add_argument("--test-stat", default="qtilde", choices=["qtilde", "q", "q0"])
    lim = ws_command("limit", "observed and expected CLs upper limits on the POI", _cmd_limit)
    lim.add_argument("--level", type=float, default=0.05, help="CLs level (default 0.05)")
    d = sub.add_parser("demo", help="run the demo on the bundled seed workspace",
                       description="fit, discovery significance, CLs and limits on the bundled seed workspace")
    d.add_argument("--output", default="nextstat_jax_demo", help="folder for the demo's outputs")
    d.set_defaults(func=_cmd_demo)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .errors import NextStatJaxError

    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except (NextStatJaxError, OSError, json.JSONDecodeError) as err:
        print(f"nextstat-jax {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
