"""pyhf JSON workspaces: loading, validation, patching, and building models.

``Workspace(spec)`` accepts a dict, a JSON string or a path.  It validates the
structure against the bundled pyhf 1.0.0 schema and then the meaning (bin
counts, unique names, observations, measurements, POI), raising a
:class:`~nextstat_jax.errors.NextStatJaxError` subclass that names the place.
Everything here is plain Python/NumPy; JAX enters only in the :class:`Model`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Iterable, Optional

import jax
import jax.numpy as jnp

from . import schema
from ._builder import build_model, check_model_spec
from ._x64 import x64
from .errors import InvalidInput, InvalidModel
from .model import Model
from .patches import PatchSet, apply_patch

__all__ = ["Workspace", "from_pyhf"]


class Workspace:
    """A validated pyhf workspace (format version 1.0.0).

    Args:
        spec: dict, JSON string, or path (``str``/``Path``) of a JSON file.
        validate: check schema and semantics (default True).
    """

    def __init__(self, spec: Any, *, validate: bool = True):
        spec = schema.load_json(spec, what="workspace")
        if validate:
            schema.validate(spec, "workspace")
            _check_workspace(spec)
        self._spec = spec

    # ---------------------------------------------------------------- access
    @property
    def spec(self) -> dict:
        """The workspace as a JSON-compatible dict (do not mutate it)."""
        return self._spec

    @property
    def version(self) -> str:
        return self._spec["version"]

    @property
    def channels(self) -> list[str]:
        """Channel names, sorted (pyhf's order)."""
        return sorted(c["name"] for c in self._spec["channels"])

    @property
    def samples(self) -> list[str]:
        """Sample names across channels, sorted."""
        return sorted({s["name"] for c in self._spec["channels"] for s in c["samples"]})

    @property
    def modifiers(self) -> list[tuple[str, str]]:
        """Sorted (name, type) pairs of every modifier."""
        return sorted(
            {(m["name"], m["type"]) for c in self._spec["channels"] for s in c["samples"] for m in s["modifiers"]}
        )

    @property
    def channel_nbins(self) -> dict[str, int]:
        return {c["name"]: len(c["samples"][0]["data"]) for c in sorted(self._spec["channels"], key=lambda c: c["name"])}

    @property
    def observations(self) -> dict[str, list[float]]:
        """Observed main data per channel."""
        return {o["name"]: list(o["data"]) for o in self._spec["observations"]}

    @property
    def measurement_names(self) -> list[str]:
        return [m["name"] for m in self._spec["measurements"]]

    def __repr__(self) -> str:
        return (
            f"Workspace(channels={self.channels}, samples={self.samples}, "
            f"measurements={self.measurement_names})"
        )

    def __eq__(self, other) -> bool:
        return isinstance(other, Workspace) and self._spec == other._spec

    __hash__ = None  # mutable-content container, like a dict

    def get_measurement(
        self, measurement_name: Optional[str] = None, measurement_index: Optional[int] = None
    ) -> dict:
        """The measurement named ``measurement_name`` (or at ``measurement_index``,
        or the first one, as pyhf)."""
        ms = self._spec["measurements"]
        if measurement_name is not None:
            for m in ms:
                if m["name"] == measurement_name:
                    return m
            raise InvalidModel(
                f"no measurement named {measurement_name!r}; measurements are {self.measurement_names}"
            )
        if measurement_index is not None:
            if not -len(ms) <= measurement_index < len(ms):
                raise InvalidModel(
                    f"measurement_index {measurement_index} out of range; the workspace has {len(ms)} measurement(s)"
                )
            return ms[measurement_index]
        if len(ms) > 1:
            warnings.warn(
                f"the workspace has {len(ms)} measurements; using the first, {ms[0]['name']!r}",
                stacklevel=3,
            )
        return ms[0]

    # ------------------------------------------------------------------ models
    def model(
        self,
        measurement_name: Optional[str] = None,
        measurement_index: Optional[int] = None,
        *,
        poi_name: Any = ...,
        modifier_settings: Optional[dict] = None,
        patches: Optional[Iterable] = None,
    ) -> Model:
        """Build the :class:`Model` of a measurement.

        ``poi_name`` defaults to the measurement's POI (``None`` for no POI);
        ``modifier_settings`` replaces pyhf's default interpolation codes
        (normsys code4, histosys code4p); ``patches`` are JSON Patches applied
        in order to the model spec ``{"channels", "parameters"}``, as pyhf's
        ``Workspace.model(patches=...)``."""
        meas = self.get_measurement(measurement_name, measurement_index)
        mspec = {"channels": self._spec["channels"], "parameters": meas["config"]["parameters"]}
        if patches:
            for p in patches:
                mspec = apply_patch(mspec, p)
            schema.validate(mspec, "model")
        poi = meas["config"]["poi"] if poi_name is ... else poi_name
        poi = poi or None  # pyhf: an empty POI name means a model without POI
        obs = self.observations
        return build_model(
            mspec,
            poi_name=poi,
            modifier_settings=modifier_settings,
            observations={c: obs[c] for c in obs if c in {ch["name"] for ch in mspec["channels"]}},
        )

    @x64
    def data(self, model: Model, include_auxdata: bool = True) -> jax.Array:
        """Observed data for ``model``: main bins in the model's channel order,
        then (optionally) the model's auxdata. Shape (B + A,) or (B,)."""
        obs = self.observations
        missing = [c for c in model.channels if c not in obs]
        if missing:
            raise InvalidInput(f"the workspace has no observations for channel(s) {missing}")
        main = jnp.asarray([x for c in model.channels for x in obs[c]], dtype=jnp.float64)
        if not include_auxdata:
            return main
        return jnp.concatenate([main, model.auxdata])

    # ----------------------------------------------------------------- patches
    def patch(self, patch: Any, key: Any = None) -> "Workspace":
        """A new, validated workspace with ``patch`` applied.

        ``patch`` is a JSON Patch (list of operations), a HEPData patchset entry
        (``{"metadata": ..., "patch": [...]}``), or a :class:`PatchSet` together
        with ``key`` (a patch name or its values), which is digest-verified first."""
        if isinstance(patch, PatchSet):
            if key is None:
                raise InvalidInput("patching with a PatchSet needs a key: a patch name or its values")
            return Workspace(patch.apply(self._spec, key))
        if key is not None:
            raise InvalidInput("key is only used with a PatchSet")
        return Workspace(apply_patch(self._spec, patch))


def _check_workspace(spec: dict) -> None:
    """Semantic checks beyond the schema (spec §1.6)."""
    nbins = {}
    for ci, ch in enumerate(spec["channels"]):
        nbins.setdefault(ch["name"], len(ch["samples"][0]["data"]))
    seen: dict[str, int] = {}
    for oi, o in enumerate(spec["observations"]):
        name = o["name"]
        if name in seen:
            raise InvalidModel(
                f"observations[{oi}] repeats channel {name!r} (first at observations[{seen[name]}])"
            )
        seen[name] = oi
        if name not in nbins:
            warnings.warn(
                f"observations[{oi}] is for channel {name!r}, which the workspace does not have; "
                "it is ignored (as pyhf does)",
                stacklevel=3,
            )
            continue
        data = o["data"]
        if len(data) != nbins[name]:
            raise InvalidModel(
                f"observations[{oi}] for channel {name!r} has {len(data)} bins, the channel has {nbins[name]}"
            )
        for bi, x in enumerate(data):
            if not math.isfinite(x) or x < 0:
                raise InvalidModel(
                    f"observations[{oi}].data[{bi}] for channel {name!r} is {x}; observed counts "
                    "must be finite and >= 0"
                )
    missing = [c for c in nbins if c not in seen]
    if missing:
        raise InvalidModel(f"no observations for channel(s) {sorted(missing)}")

    names = [m["name"] for m in spec["measurements"]]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise InvalidModel(f"duplicate measurement name(s) {sorted(dup)}")
    modifier_names = {m["name"] for ch in spec["channels"] for s in ch["samples"] for m in s["modifiers"]}
    for mi, meas in enumerate(spec["measurements"]):
        poi = meas["config"]["poi"] or None  # "" means no POI, as in pyhf
        if poi is not None and poi not in modifier_names:
            raise InvalidModel(
                f"measurements[{mi}] ({meas['name']!r}): the POI {poi!r} is not a parameter of the "
                f"model; modifier names are {sorted(modifier_names)}"
            )
        try:
            check_model_spec(
                {"channels": spec["channels"], "parameters": meas["config"]["parameters"]}, poi_name=poi
            )
        except InvalidModel as err:
            if len(spec["measurements"]) > 1:
                raise type(err)(f"{err} (measurement {meas['name']!r})") from None
            raise


def from_pyhf(
    spec: Any,
    measurement: Optional[str] = None,
    poi: Any = ...,
    modifier_settings: Optional[dict] = None,
    *,
    patches: Optional[Iterable] = None,
    validate: bool = True,
) -> Model:
    """Load a pyhf workspace (dict, JSON string or path) and build its model.

    The returned :class:`Model` carries the observed data (``model.data``).
    ``measurement`` picks a measurement by name (default: the first); ``poi``
    overrides its POI; ``modifier_settings`` as in pyhf."""
    ws = Workspace(spec, validate=validate)
    return ws.model(
        measurement_name=measurement,
        poi_name=poi,
        modifier_settings=modifier_settings,
        patches=patches,
    )
