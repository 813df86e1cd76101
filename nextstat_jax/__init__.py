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
from .model import Model
from .patches import PatchSet
from .workspace import Workspace, from_pyhf

__version__ = "0.1.0"

__all__ = [
    "Model",
    "Workspace",
    "PatchSet",
    "from_pyhf",
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
