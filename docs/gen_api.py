"""Generate docs/api.md from the package's docstrings.

    python docs/gen_api.py          # rewrites docs/api.md
    python docs/gen_api.py --check  # exits 1 if docs/api.md is out of date
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path

SECTIONS = [
    ("Workspaces and models", "nextstat_jax", ["Workspace", "from_pyhf", "Model", "PatchSet"]),
    ("Inference", "nextstat_jax", ["fit", "fixed_poi_fit", "FitResult", "SolverOptions", "q0", "qmu", "tmu",
                                   "test_statistic", "discovery_significance", "hypotest", "HypotestResult",
                                   "upper_limit", "UpperLimit"]),
    ("Interpretation", "nextstat_jax.interpret", ["rank_impact", "rank_impact_df", "pulls", "correlation_matrix",
                                                   "prefit_uncertainties"]),
    ("Scans and goodness of fit", "nextstat_jax.scans", ["profile_scan", "cls_curve", "goodness_of_fit"]),
    ("Plots", "nextstat_jax.plot", ["ranking", "pulls", "correlation_matrix", "brazil_band", "profile_scan",
                                    "stacked_yields", "learning_curves", "yield_evolution"]),
    ("Environments", "nextstat_jax.gym", ["make_gymnax_env", "HistFactoryGymnaxEnv", "make_histfactory_env",
                                           "HistFactoryEnv", "make_vector_env", "make_sb3_vec_env"]),
    ("Training", "nextstat_jax.rl", ["PPOConfig", "train_ppo", "TrainOutput", "evaluate", "random_policy",
                                      "save", "load"]),
    ("Shape optimisation", "nextstat_jax.shape_opt", ["optimise_shape", "asimov_q0"]),
    ("Bundled workspaces", "nextstat_jax.datasets", ["seed_workspace", "benchmark_workspace"]),
    ("Errors", "nextstat_jax", ["NextStatJaxError", "InvalidSpecification", "InvalidModel", "InvalidModifier",
                                "InvalidNameReuse", "InvalidInterpCode", "InvalidPatch", "InvalidPatchSet",
                                "PatchSetVerificationError", "InvalidInput"]),
]

MODEL_MEMBERS = ["par_names", "par_order", "par_slice", "poi_index", "poi_name", "n_params", "channels",
                 "samples", "channel_nbins", "suggested_init", "suggested_bounds", "suggested_fixed", "data",
                 "auxdata", "expected_data", "expected_actualdata", "expected_by_sample", "logpdf", "nll",
                 "with_yields", "with_observed", "sample_yields"]


def _signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""


def _doc(obj) -> str:
    return inspect.cleandoc(obj.__doc__ or "(no docstring)")


def render() -> str:
    out = ["# API reference", "",
           "Generated from the docstrings by `docs/gen_api.py`; `import nextstat_jax as nsj`.", ""]
    for title, module, names in SECTIONS:
        mod = importlib.import_module(module)
        out += [f"## {title}", ""]
        for name in names:
            obj = getattr(mod, name)
            kind = "class" if inspect.isclass(obj) else "function"
            out += [f"### `{module}.{name}`", "", f"*{kind}* `{name}{_signature(obj)}`", "", _doc(obj), ""]
            if name == "Model":
                out += ["Members:", ""]
                for member in MODEL_MEMBERS:
                    attr = inspect.getattr_static(obj, member)
                    target = attr.fget if isinstance(attr, property) else attr
                    first = _doc(target).split("\n\n")[0].replace("\n", " ")
                    sig = "" if isinstance(attr, property) else _signature(getattr(obj, member))
                    out.append(f"- `{member}{sig}` — {first}")
                out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    path = Path(__file__).resolve().parent / "api.md"
    text = render()
    if args.check:
        if not path.exists() or path.read_text() != text:
            print("docs/api.md is out of date: run python docs/gen_api.py", file=sys.stderr)
            return 1
        return 0
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
