"""JSON Patches (RFC 6902) and HEPData patchsets.

:func:`apply_patch` applies one patch to a copy of a spec;
:class:`PatchSet` reads a HEPData patchset (the signal grid published next to a
background-only workspace), checks that a workspace is the one it was made for
(:meth:`PatchSet.verify`) and applies one of its patches (:meth:`PatchSet.apply`).
Pure Python + NumPy (no JAX).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping

import jsonpatch
import jsonpointer
import numpy as np

from .errors import InvalidPatch, InvalidPatchSet, PatchSetVerificationError
from .schema import load_json, validate, validate_jsonpatch

__all__ = ["apply_patch", "digest", "Patch", "PatchSet"]

_MAX_LISTED = 10  # patch names listed in a "not in patchset" message


def apply_patch(spec: dict, patch) -> dict:
    """Apply a JSON Patch to a deep copy of ``spec`` and return the copy (a plain dict).

    ``patch`` is a list of RFC 6902 operations, a :class:`jsonpatch.JsonPatch`
    (pyhf's ``Patch`` included), a patchset entry ``{"metadata": ..., "patch": [...]}``
    or a :class:`Patch`.  Neither ``spec`` nor ``patch`` is modified, and the
    result shares no objects with them.

    Raises:
        InvalidPatch: an operation is malformed, or does not apply (missing
            path, failed ``test``, index out of range); the message names the
            operation's index, op and path.
    """
    operations, name = _operations(patch)
    prefix = f"patch {name!r}: " if name else ""
    try:
        validate_jsonpatch(operations)
    except InvalidPatch as exc:
        raise InvalidPatch(prefix + str(exc)) from None
    # dict(...): return a plain dict even for dict subclasses such as pyhf.Workspace
    document = copy.deepcopy(dict(spec) if isinstance(spec, Mapping) else spec)
    # Copy the operations too: jsonpatch inserts "value" objects by reference.
    # One operation at a time, so that a failure names the operation.
    for index, operation in enumerate(copy.deepcopy(list(operations))):
        try:
            document = jsonpatch.JsonPatch([operation]).apply(document, in_place=True)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise InvalidPatch(f"{prefix}operation {index} ({_show(operation)}) does not apply: {_why(exc)}") from None
    return document


def _operations(patch) -> tuple[list, str | None]:
    """The operation list of any accepted patch form, and the patch's name if it has one."""
    if isinstance(patch, Patch):
        return patch.operations, patch.name
    if isinstance(patch, jsonpatch.JsonPatch):
        return list(patch.patch), getattr(patch, "name", None)
    if isinstance(patch, Mapping):
        if "patch" not in patch:
            raise InvalidPatch(
                "a patch given as a dict must be a patchset entry {'metadata': ..., 'patch': [...]}; "
                "wrap a single operation in a list"
            )
        metadata = patch.get("metadata")
        name = metadata.get("name") if isinstance(metadata, Mapping) else None
        return patch["patch"], name if isinstance(name, str) else None
    if isinstance(patch, (list, tuple)):
        return list(patch), None
    raise InvalidPatch(
        f"cannot apply a {type(patch).__name__} as a patch; expected a list of JSON Patch "
        "operations, a jsonpatch.JsonPatch or a patchset entry"
    )


def _show(operation: Mapping) -> str:
    if operation["op"] in ("move", "copy"):
        return f"{operation['op']!r} from {operation['from']!r} to {operation['path']!r}"
    return f"{operation['op']!r} at {operation['path']!r}"


def _why(exc: Exception) -> str:
    text = str(exc)
    if isinstance(exc, jsonpatch.JsonPatchTestFailed):
        text = "test failed: " + text
    return text if len(text) <= 200 else text[:200] + "..."


def digest(spec, algorithm: str = "sha256") -> str:
    """Hex digest of a spec exactly as pyhf computes it (``pyhf.utils.digest``).

    The hash of ``json.dumps(spec, sort_keys=True, ensure_ascii=False)``
    encoded as UTF-8; NumPy arrays and scalars are serialised as lists and numbers.
    """
    text = json.dumps(spec, sort_keys=True, ensure_ascii=False, default=_jsonable)
    return hashlib.new(algorithm, text.encode("utf8")).hexdigest()


def _jsonable(value):
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _spec_of(workspace) -> Mapping:
    """The spec dict of a workspace given as a dict or as an object with ``.spec``."""
    spec = getattr(workspace, "spec", workspace)
    if not isinstance(spec, Mapping):
        raise InvalidPatchSet(
            f"expected a workspace spec (dict) or an object with a .spec dict, got {type(workspace).__name__}"
        )
    return spec


class Patch:
    """One entry of a :class:`PatchSet`: ``metadata`` (with ``name`` and
    ``values``) and ``operations`` (the RFC 6902 operation list)."""

    def __init__(self, entry: Mapping):
        self.metadata: dict = entry["metadata"]
        self.operations: list = entry["patch"]

    @property
    def name(self) -> str:
        return self.metadata["name"]

    @property
    def values(self) -> tuple:
        """The point in the patchset's label space, one value per label."""
        return tuple(self.metadata["values"])

    def apply(self, spec: dict) -> dict:
        """Apply this patch to a copy of ``spec`` (no digest check); see :func:`apply_patch`."""
        return apply_patch(spec, self)

    def __repr__(self) -> str:
        return f"Patch({self.name!r}, values={self.values})"


class PatchSet:
    """A HEPData patchset: a grid of signal patches for one background-only workspace.

    Built from a dict, JSON text or a path (see :func:`~nextstat_jax.schema.load_json`),
    validated against ``schemas/patchset.json``.  Patches are looked up by name
    or by values (list or tuple): ``patchset["sbottom_1000_131"]``,
    ``patchset[1000, 131]``.

    Raises:
        InvalidSpecification: the input is not a JSON object (not JSON, no such file).
        InvalidPatchSet: schema violation; a patch whose ``values`` length
            differs from ``labels``; two patches with the same name or values.
    """

    def __init__(self, spec):
        spec = load_json(spec, what="patchset")
        validate(spec, "patchset")
        self.metadata: dict = spec["metadata"]
        self.version: str = spec["version"]
        self.patches: list[Patch] = [Patch(entry) for entry in spec["patches"]]
        self._by_name: dict[str, Patch] = {}
        self._by_values: dict[tuple, Patch] = {}
        for patch in self.patches:
            self._register(patch)

    def _register(self, patch: Patch) -> None:
        if len(patch.values) != len(self.labels):
            raise InvalidPatchSet(
                f"patch {patch.name!r} has {len(patch.values)} values {list(patch.values)} "
                f"but the patchset has {len(self.labels)} labels {self.labels}"
            )
        if patch.name in self._by_name:
            raise InvalidPatchSet(f"patchset has two patches named {patch.name!r}")
        other = self._by_values.get(patch.values)
        if other is not None:
            raise InvalidPatchSet(
                f"patches {other.name!r} and {patch.name!r} have the same values {list(patch.values)}"
            )
        self._by_name[patch.name] = patch
        self._by_values[patch.values] = patch

    @property
    def description(self) -> str:
        return self.metadata["description"]

    @property
    def digests(self) -> dict:
        """``{"sha256": ..., "md5": ...}`` (one or both) of the background-only workspace."""
        return self.metadata["digests"]

    @property
    def labels(self) -> list:
        """Names of the dimensions of the signal grid, e.g. ``["mass_stop", "mass_lsp"]``."""
        return self.metadata["labels"]

    @property
    def references(self) -> dict:
        """E.g. ``{"hepdata": "ins1234567"}``; empty if the patchset has none."""
        return self.metadata.get("references", {})

    def __len__(self) -> int:
        return len(self.patches)

    def __iter__(self):
        return iter(self.patches)

    def __getitem__(self, key) -> Patch:
        """The patch with this name (str) or these values (list, tuple or 1-d array)."""
        if isinstance(key, np.ndarray):
            key = key.tolist()
        if isinstance(key, str):
            found, shown = self._by_name.get(key), repr(key)
        elif isinstance(key, (list, tuple)):
            try:
                found = self._by_values.get(tuple(key))
            except TypeError:  # unhashable item: cannot be a patch's values
                found = None
            shown = f"with values {tuple(key)}"
        else:
            raise InvalidPatchSet(
                f"look a patch up by its name (str) or its values (list or tuple), not a {type(key).__name__}"
            )
        if found is None:
            raise InvalidPatchSet(f"patch {shown} not in patchset; available: {self._available()}")
        return found

    def _available(self) -> str:
        names = [f"{p.name} {p.values}" for p in self.patches[:_MAX_LISTED]]
        if len(self.patches) > _MAX_LISTED:
            names.append(f"... ({len(self.patches) - _MAX_LISTED} more)")
        return ", ".join(names)

    def verify(self, workspace) -> None:
        """Check that ``workspace`` (a spec dict, or an object with ``.spec``) is the
        background-only workspace this patchset was made for.

        Recomputes every digest listed in ``metadata.digests`` as pyhf does.

        Raises:
            PatchSetVerificationError: a digest differs (names the algorithm and both digests).
        """
        spec = _spec_of(workspace)
        for algorithm, expected in self.digests.items():
            actual = digest(spec, algorithm)
            if actual != expected.lower():
                raise PatchSetVerificationError(
                    f"the workspace is not the one this patchset was made for: {algorithm} digest "
                    f"expected {expected}, got {actual}"
                )

    def apply(self, workspace, key) -> dict:
        """Verify ``workspace`` (see :meth:`verify`), apply the patch ``key`` (name or
        values) to a copy of its spec and return the patched spec dict.

        The result is not validated; build a workspace from it to do so.
        """
        patch = self[key]
        spec = _spec_of(workspace)
        self.verify(spec)
        return apply_patch(spec, patch)

    def __repr__(self) -> str:
        return f"PatchSet({self.description!r}, {len(self)} patches, labels={self.labels})"
