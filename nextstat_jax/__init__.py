"""nextstat_jax: JAX-accelerated, differentiable HistFactory likelihoods.

Public surface (see API.md): workspaces and models, inference, environments.
JAX runs in float64 inside the package's functions whatever the user's
``jax_enable_x64`` setting; nothing is changed globally at import.
"""

from .errors import (
    InvalidInput,
    InvalidInterpCode,
    InvalidModel,
    InvalidModifier,
    InvalidNameReuse,
    InvalidPatch,
    InvalidPatchSet,
    InvalidSpecification,
    NextStatJaxError,
    PatchSetVerificationError,
)
from .asymptotics import HypotestResult
from .fits import FitResult, fit, fixed_poi_fit
from .infer import hypotest, upper_limit
from .limits import UpperLimit
from .model import Model
from .solver import SolverOptions
from .teststats import discovery_significance, q0, qmu, test_statistic, tmu
from .patches import PatchSet
from .workspace import Workspace, from_pyhf

__version__ = "0.1.0"

# Subpackages with heavier dependencies load on first use: ``nsj.gym``,
# ``nsj.rl``, ``nsj.interpret``, ``nsj.plot``, ``nsj.datasets``, ``nsj.scans``...
_LAZY = ("gym", "rl", "interpret", "plot", "datasets", "shape_opt", "scans", "cuts")


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "Model",
    "Workspace",
    "PatchSet",
    "from_pyhf",
    "fit",
    "fixed_poi_fit",
    "FitResult",
    "SolverOptions",
    "q0",
    "qmu",
    "tmu",
    "test_statistic",
    "discovery_significance",
    "hypotest",
    "HypotestResult",
    "upper_limit",
    "UpperLimit",
    "NextStatJaxError",
    "InvalidSpecification",
    "InvalidModel",
    "InvalidModifier",
    "InvalidNameReuse",
    "InvalidInterpCode",
    "InvalidPatch",
    "InvalidPatchSet",
    "PatchSetVerificationError",
    "InvalidInput",
    "__version__",
]
