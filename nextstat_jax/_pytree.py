"""A minimal frozen-dataclass pytree.

Fields marked ``static_field()`` go into the treedef (they must be hashable and
define the structure); all other fields are leaves.  Kept here, behind our own
classes, so that the pytree mechanism can change without reaching users.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

__all__ = ["pytree_dataclass", "static_field"]


def static_field(**kwargs) -> Any:
    """A dataclass field that is part of the treedef instead of a leaf."""
    metadata = dict(kwargs.pop("metadata", {}))
    metadata["static"] = True
    return dataclasses.field(metadata=metadata, **kwargs)


def pytree_dataclass(cls):
    """Turn ``cls`` into a frozen dataclass registered as a JAX pytree."""
    cls = dataclasses.dataclass(frozen=True, eq=False, repr=False)(cls)
    fields = dataclasses.fields(cls)
    leaf_names = tuple(f.name for f in fields if not f.metadata.get("static"))
    static_names = tuple(f.name for f in fields if f.metadata.get("static"))

    def flatten_with_keys(obj):
        children = tuple(
            (jax.tree_util.GetAttrKey(n), getattr(obj, n)) for n in leaf_names
        )
        aux = tuple(getattr(obj, n) for n in static_names)
        return children, aux

    def flatten(obj):
        return tuple(getattr(obj, n) for n in leaf_names), tuple(
            getattr(obj, n) for n in static_names
        )

    def unflatten(aux, children):
        obj = object.__new__(cls)
        for n, v in zip(leaf_names, children):
            object.__setattr__(obj, n, v)
        for n, v in zip(static_names, aux):
            object.__setattr__(obj, n, v)
        return obj

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
    return cls
