"""Exceptions raised by nextstat_jax.

Every error a user can trigger with bad input is a subclass of
:class:`NextStatJaxError`, which is itself a :class:`ValueError`, so
``except ValueError`` keeps working for code written against pyhf.  Messages
name the place in the input (channel, sample, modifier, JSON path) so that the
fix is obvious without a debugger.  The class names follow pyhf's where pyhf has
an equivalent (``InvalidSpecification``, ``InvalidModel``, ...).
"""

from __future__ import annotations

__all__ = [
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
]


class NextStatJaxError(ValueError):
    """Base class of every error raised for bad user input."""


class InvalidSpecification(NextStatJaxError):
    """The input is not JSON, or does not follow the pyhf 1.0.0 workspace schema."""


class InvalidModel(NextStatJaxError):
    """The workspace is well-formed JSON but describes an inconsistent model
    (bin counts, duplicate names, missing POI, bad measurement config, ...)."""


class InvalidModifier(InvalidModel):
    """A modifier's data is inconsistent with its sample (length, values)."""


class InvalidNameReuse(InvalidModel):
    """One parameter name is used by modifier types that cannot share it."""


class InvalidInterpCode(InvalidModel):
    """An interpolation code that the modifier type does not support."""


class InvalidPatch(NextStatJaxError):
    """A JSON Patch that is malformed or does not apply to the workspace."""


class InvalidPatchSet(InvalidPatch):
    """A HEPData patchset that is malformed, or a patch not found in it."""


class PatchSetVerificationError(InvalidPatchSet):
    """The workspace's digest does not match the one the patchset expects."""


class InvalidInput(NextStatJaxError):
    """A runtime argument (parameters, data, yields, names) is invalid."""
