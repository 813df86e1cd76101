"""Load and validate JSON inputs: workspaces, patchsets and JSON Patches.

:func:`load_json` turns a dict, JSON text or a path into a plain ``dict``;
:func:`validate` checks it against one of the JSON Schemas shipped in
``nextstat_jax/schemas/`` and, on failure, raises an error whose message names
the place (``channels[0].samples[1].modifiers[2].data``), the channel, sample
and modifier it belongs to, and the reason.  Pure Python + NumPy (no JAX).
"""

from __future__ import annotations

import copy
import functools
import json
import numbers
import os
from collections.abc import Mapping
from importlib import resources

import jsonschema
import numpy as np
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from .errors import InvalidPatch, InvalidPatchSet, InvalidSpecification

__all__ = [
    "SCHEMA_VERSION",
    "MODIFIER_TYPES",
    "load_json",
    "validate",
    "validate_jsonpatch",
]

SCHEMA_VERSION = "1.0.0"
MODIFIER_TYPES = ("histosys", "lumi", "normfactor", "normsys", "shapefactor", "shapesys", "staterror")

_BASE_URI = "https://nextstat-jax/schemas/1.0.0/"
_SCHEMA_FILES = ("workspace.json", "patchset.json", "jsonpatch.json")
_POINTER_PATTERN = "^(/([^~/]|~[01])*)*$"

# schema name -> (schema URI relative to _BASE_URI, what to call the document, error class)
_SCHEMAS = {
    "workspace": ("workspace.json", "workspace", InvalidSpecification),
    "model": ("workspace.json#/$defs/model", "model spec", InvalidSpecification),
    "measurement": ("workspace.json#/$defs/measurement", "measurement", InvalidSpecification),
    "patchset": ("patchset.json", "patchset", InvalidPatchSet),
    "jsonpatch": ("jsonpatch.json", "JSON Patch", InvalidPatch),
}

# An item of one of these arrays is named in error messages by its "name" key.
_ITEM_KINDS = {
    "channels": "channel",
    "samples": "sample",
    "modifiers": "modifier",
    "observations": "observation",
    "measurements": "measurement",
    "parameters": "parameter",
    "patches": "patch",
    "patch": "operation",
}


# --------------------------------------------------------------------------- loading


def load_json(spec, what: str = "workspace") -> dict:
    """Return a JSON object as a fresh ``dict``.

    Accepts a ``dict`` (any Mapping; deep-copied), JSON text (a ``str`` that
    starts with ``{`` or ``[`` after stripping), or a path to a JSON file
    (any other ``str``, or an ``os.PathLike``).  ``what`` names the document in
    error messages.

    Raises:
        InvalidSpecification: the file does not exist or cannot be read, the
            text is not JSON, the top-level value is not an object, or ``spec``
            has an unsupported type.
    """
    if isinstance(spec, Mapping):
        return copy.deepcopy(dict(spec))
    if isinstance(spec, str) and spec.lstrip().startswith(("{", "[")):
        value = _parse(spec, f"{what} JSON text")
    elif isinstance(spec, (str, os.PathLike)):
        path = os.fspath(spec)
        value = _parse(_read(path, what), f"{what} file {path!r}")
    else:
        raise InvalidSpecification(
            f"cannot load a {what} from a {type(spec).__name__}; "
            "expected a dict, JSON text or a path to a JSON file"
        )
    if not isinstance(value, dict):
        raise InvalidSpecification(f"a {what} must be a JSON object, got a JSON {_json_type(value)}")
    return value


def _read(path, what: str) -> str:
    try:
        # utf-8-sig: tolerate a byte-order mark left by some editors
        with open(path, encoding="utf-8-sig") as handle:
            return handle.read()
    except FileNotFoundError:
        raise InvalidSpecification(
            f"{what} file not found: {path!r} (a string is read as JSON text "
            "only when it starts with '{' or '[')"
        ) from None
    except IsADirectoryError:
        raise InvalidSpecification(f"{what} path {path!r} is a directory, not a JSON file") from None
    except UnicodeDecodeError as exc:
        raise InvalidSpecification(f"{what} file {path!r} is not JSON: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise InvalidSpecification(f"cannot read {what} file {path!r}: {exc.strerror}") from None


def _parse(text: str, source: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidSpecification(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None


# --------------------------------------------------------------------------- validation


def validate(spec, schema_name: str = "workspace") -> None:
    """Validate ``spec`` against a bundled JSON Schema; return ``None`` if valid.

    ``schema_name`` is one of ``"workspace"`` (default), ``"model"``
    (``{"channels", "parameters"}``), ``"measurement"``, ``"patchset"`` or
    ``"jsonpatch"`` (a ``.json`` suffix is ignored).  Like pyhf, NumPy arrays
    and scalars are accepted wherever the schema wants arrays and numbers.

    Raises:
        InvalidSpecification: workspace, model or measurement schema violation.
        InvalidPatchSet: patchset schema violation.
        InvalidPatch: JSON Patch schema violation.
    """
    name = schema_name.removesuffix(".json")
    if name not in _SCHEMAS:
        raise ValueError(f"unknown schema {schema_name!r}; expected one of {', '.join(_SCHEMAS)}")
    _, what, error_class = _SCHEMAS[name]
    error = _most_relevant(_validator(name).iter_errors(spec))
    if error is not None:
        raise error_class(_describe(error, spec, what)) from None


def validate_jsonpatch(operations) -> None:
    """Validate an RFC 6902 operation list; raises :class:`InvalidPatch` naming the bad operation."""
    validate(operations, "jsonpatch")


def _is_array(checker, instance) -> bool:
    return isinstance(instance, (list, tuple)) or (isinstance(instance, np.ndarray) and instance.ndim >= 1)


def _is_number(checker, instance) -> bool:
    if isinstance(instance, (bool, np.bool_)):
        return False
    if isinstance(instance, np.ndarray):  # 0-d arrays, as a backend may hand out
        return instance.ndim == 0 and instance.dtype.kind in "iuf"
    return isinstance(instance, numbers.Real)  # not complex


@functools.cache
def _registry() -> Registry:
    folder = resources.files("nextstat_jax") / "schemas"
    registry = Registry()
    for name in _SCHEMA_FILES:
        schema = json.loads((folder / name).read_text(encoding="utf-8"))
        # Without "$schema", jsonschema keeps our extended validator class (with the
        # NumPy-aware type checker) when following a $ref into this file.
        del schema["$schema"]
        registry = registry.with_resource(schema["$id"], DRAFT202012.create_resource(schema))
    return registry


@functools.cache
def _validator(name: str):
    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine("array", _is_array).redefine("number", _is_number)
    cls = jsonschema.validators.extend(base, type_checker=checker)
    return cls({"$ref": _BASE_URI + _SCHEMAS[name][0]}, registry=_registry())


def _most_relevant(errors):
    """The shallowest error (it says most about what is wrong), first in document order."""
    best = None
    for error in errors:
        if best is None or len(error.absolute_path) < len(best.absolute_path):
            best = error
    return best


# --------------------------------------------------------------------------- messages


def _describe(error, spec, what: str) -> str:
    path = list(error.absolute_path)
    where = _format_path(path)
    context = _context(spec, path)
    if not path and error.validator == "required" and isinstance(error.instance, Mapping):
        missing = [key for key in error.validator_value if key not in error.instance]
        return f"{what} is missing the required key {missing[0]!r}"
    if path == ["version"] and error.validator == "const":
        return f"unsupported {what} version {_short(error.instance)}; expected {error.validator_value!r}"
    if error.validator == "enum" and path[-1:] == ["type"] and path[-3:-2] == ["modifiers"]:
        return (
            f"unknown modifier type {_short(error.instance)} at {where}{context}; "
            f"expected one of {', '.join(MODIFIER_TYPES)}"
        )
    return f"{what} is invalid at {where}{context}: {_reason(error)}"


def _format_path(path) -> str:
    """``['channels', 0, 'samples']`` -> ``'channels[0].samples'`` (pyhf style)."""
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text or "the top level"


def _context(spec, path) -> str:
    """Name the channel, sample, modifier, ... that ``path`` goes through."""
    labels, node, parent = [], spec, None
    for key in path:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
        # a list at the top level is a JSON Patch: its items are operations
        kind = _ITEM_KINDS.get(parent, "operation" if parent is None else None)
        if isinstance(key, int) and kind:
            labels.append(_label(kind, key, node))
        parent = key
    return f" ({', '.join(labels)})" if labels else ""


def _label(kind: str, index: int, item) -> str:
    if not isinstance(item, Mapping):
        return f"{kind} {index}"
    if kind == "operation":
        details = ", ".join(f"{key} {item[key]!r}" for key in ("op", "path") if isinstance(item.get(key), str))
        return f"operation {index}" + (f" ({details})" if details else "")
    owner = item.get("metadata") if kind == "patch" else item  # a patch's name is in its metadata
    name = owner.get("name") if isinstance(owner, Mapping) else None
    label = f"{kind} {name!r}" if isinstance(name, str) else f"{kind} {index}"
    if kind == "modifier" and isinstance(item.get("type"), str):
        label += f" of type {item['type']!r}"
    return label


def _reason(error) -> str:
    """A short reason; jsonschema's own messages repeat the whole (possibly huge) instance."""
    keyword, expected, instance = error.validator, error.validator_value, error.instance
    if keyword == "type":
        types = expected if isinstance(expected, list) else [expected]
        got = "null" if instance is None else f"{_json_type(instance)} {_short(instance)}"
        return f"expected {' or '.join(types)}, got {got}"
    if keyword == "const":
        return f"expected {expected!r}, got {_short(instance)}"
    if keyword == "enum":
        return f"{_short(instance)} is not one of {', '.join(map(repr, expected))}"
    if keyword in ("minItems", "maxItems"):
        low, high = error.schema.get("minItems"), error.schema.get("maxItems")
        if low == high:
            return f"expected exactly {low} items, got {len(instance)}"
        bound = "at least" if keyword == "minItems" else "at most"
        return f"expected {bound} {expected} item{'s' if expected != 1 else ''}, got {len(instance)}"
    if keyword == "additionalProperties" and isinstance(instance, Mapping):
        allowed = error.schema.get("properties", {})
        extra = [key for key in instance if key not in allowed]
        return f"unexpected key{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))} (allowed: {', '.join(allowed)})"
    if keyword == "minProperties":
        return f"expected at least {expected} key{'s' if expected != 1 else ''}, got {len(instance)}"
    if keyword == "pattern" and expected == _POINTER_PATTERN:
        return f"{_short(instance)} is not a JSON Pointer (it must be empty or start with '/', and '~' is only allowed as '~0' or '~1')"
    if keyword == "pattern":
        return f"{_short(instance)} does not match {expected!r}"
    message = error.message
    return message if len(message) <= 300 else message[:300] + "..."


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return "0-d array"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "array"
    if isinstance(value, numbers.Number):
        return "number"
    return type(value).__name__


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
