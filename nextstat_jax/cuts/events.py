"""Event-level samples: the input of a cut optimisation.

An analysis chooses *selections* (thresholds on event-level observables); the
histograms, systematic templates and MC statistical uncertainties of the
HistFactory model are then computed from the events that pass. This module
holds the input format and its validation; :mod:`nextstat_jax.cuts.model`
turns (events, thresholds) into a :class:`~nextstat_jax.Model`.

Python objects
--------------
:class:`EventSample` — one MC sample:

* ``name``; ``features`` (N, F) float array (one column per entry of the
  workspace's ``feature_names``); ``weights`` (N,) per-event weights
  (default 1);
* ``variations``: ``{name: (w_up (N,), w_down (N,))}`` per-event weights of a
  systematic variation (absolute weights, not ratios). Each becomes a
  ``histosys`` modifier ``name`` whose templates are the selected
  histograms of ``w_up`` / ``w_down``; samples that share a name share the
  nuisance parameter;
* ``modifiers``: pyhf modifier dicts that do *not* depend on the events
  (``normfactor``, ``normsys``, ``lumi``, ``shapefactor``), e.g.
  ``{"name": "mu", "type": "normfactor", "data": None}``; ``histosys``,
  ``staterror`` and ``shapesys`` are derived from the events and refused here;
* ``staterror`` (default True): the sample carries the channel's staterror
  ``staterror_<channel>``, with per-bin uncertainty sqrt(sum of squared
  selected weights), as pyhf combines it over the carrying samples;
* ``allow_negative_weights`` (default False): negative nominal or variation
  weights are an error unless allowed (NLO generators). Selected yields
  below ``yield_floor`` are raised to it in the model (module doc of
  :mod:`nextstat_jax.cuts.model`), so negative bins never reach the
  likelihood.

:class:`Cut` — ``feature`` name, ``direction`` (``">"``: keep events with
``x >= t``; ``"<"``: keep ``x <= t``; inclusive, so the loosest threshold
keeps every event) and ``range`` ``(low, high)``, the
interval a threshold moves in (default: the feature's min and max over all
samples).

:class:`EventWorkspace` — ``feature_names``; ``samples``; ``cuts``;
``binning_feature`` and ``bin_edges`` (strictly increasing; events are
assigned to bins as :func:`numpy.histogram` does: half-open bins, the last
one closed, events outside dropped); ``channel`` (default ``"SR"``);
``measurement`` (a pyhf measurement dict; default
``{"name": "meas", "config": {"poi": "mu", "parameters": []}}``);
``observed``: None (the model's data are Asimov: expected data at mu = 1 and
nominal nuisance parameters of the current selection) or an (M, F) array of
observed events (unit weights), histogrammed with the same selection.

JSON form (:meth:`EventWorkspace.to_dict` / :meth:`EventWorkspace.from_dict`)
-----------------------------------------------------------------------------
::

    {"feature_names": ["m", "pt", ...],
     "binning": {"feature": "m", "edges": [110, 115, ...]},
     "cuts": [{"feature": "pt", "direction": ">", "range": [0, 200]}, ...],
     "channel": "SR",
     "measurement": {"name": "meas", "config": {"poi": "mu", "parameters": []}},
     "samples": [{"name": "signal",
                  "features": [[...F values...], ...],     # N rows
                  "weights": [...],                        # N (optional)
                  "variations": {"jes": {"up": [...], "down": [...]}},
                  "modifiers": [{"name": "mu", "type": "normfactor", "data": null}],
                  "staterror": true, "allow_negative_weights": false}, ...],
     "observed": null}                                     # or {"features": [[...]]}

Validation happens once, in Python: every problem raises a
:class:`~nextstat_jax.NextStatJaxError` subclass naming the sample, the
feature and the event index (:class:`InvalidEvents` for array contents and
shapes, :class:`~nextstat_jax.InvalidModifier` for modifiers).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..errors import InvalidInput, InvalidModel, InvalidModifier

__all__ = ["EventSample", "Cut", "EventWorkspace", "InvalidEvents", "DERIVED_MODIFIERS", "ALLOWED_MODIFIERS"]

DERIVED_MODIFIERS = ("histosys", "staterror", "shapesys")
ALLOWED_MODIFIERS = ("normfactor", "normsys", "lumi", "shapefactor")
_DEFAULT_MEASUREMENT = {"name": "meas", "config": {"poi": "mu", "parameters": []}}


class InvalidEvents(InvalidModel):
    """Event arrays that are inconsistent (lengths, shapes, NaN, negative
    weights where not allowed) or a cut/binning that does not fit them."""


def _array(values, what: str, ndim: int) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidEvents(f"{what} must be a numeric array, got {type(values).__name__}") from None
    if arr.ndim != ndim:
        raise InvalidEvents(f"{what} must be {ndim}-dimensional, got shape {arr.shape}")
    return arr


def _finite(arr: np.ndarray, what: str, columns: Optional[Sequence[str]] = None) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = np.argwhere(bad)[0]
        where = f"event {int(idx[0])}"
        if columns is not None and arr.ndim == 2:
            where += f", feature {columns[int(idx[1])]!r}"
        raise InvalidEvents(f"{what} has a non-finite value ({arr[tuple(idx)]}) at {where}")


@dataclasses.dataclass
class EventSample:
    """One MC sample: per-event features, weights and variation weights (module doc)."""

    name: str
    features: Any
    weights: Any = None
    variations: Mapping[str, tuple] = dataclasses.field(default_factory=dict)
    modifiers: list = dataclasses.field(default_factory=list)
    staterror: bool = True
    allow_negative_weights: bool = False

    def validated(self, n_features: int, feature_names: Sequence[str]) -> "EventSample":
        """A copy with float64 arrays, checked against ``n_features`` (raises)."""
        where = f"sample {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise InvalidEvents(f"a sample name must be a non-empty string, got {self.name!r}")
        x = _array(self.features, f"{where}: features", 2)
        if x.shape[1] != n_features:
            raise InvalidEvents(
                f"{where}: features have {x.shape[1]} columns but the workspace has {n_features} "
                f"feature_names {list(feature_names)} (features must be (n_events, n_features))"
            )
        n = x.shape[0]
        if n == 0:
            raise InvalidEvents(f"{where} has no events")
        _finite(x, f"{where}: features", feature_names)
        w = np.ones(n) if self.weights is None else _array(self.weights, f"{where}: weights", 1)
        if w.shape != (n,):
            raise InvalidEvents(f"{where}: weights have length {w.shape[0]} but features have {n} events")
        _finite(w, f"{where}: weights")
        self._check_sign(w, f"{where}: weights")
        if not isinstance(self.variations, Mapping):
            raise InvalidEvents(f"{where}: variations must be a dict name -> (w_up, w_down)")
        variations = {}
        for vname, pair in self.variations.items():
            vwhere = f"{where}, variation {vname!r}"
            if not isinstance(vname, str) or not vname:
                raise InvalidEvents(f"{where}: variation names must be non-empty strings, got {vname!r}")
            if isinstance(pair, Mapping):
                pair = (pair.get("up"), pair.get("down"))
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise InvalidEvents(f"{vwhere}: expected a pair (w_up, w_down) of per-event weights")
            arrs = []
            for label, values in zip(("up", "down"), pair):
                if values is None:
                    raise InvalidEvents(f"{vwhere}: missing {label} weights")
                a = _array(values, f"{vwhere}: {label} weights", 1)
                if a.shape != (n,):
                    raise InvalidEvents(
                        f"{vwhere}: {label} weights have length {a.shape[0]} but features have {n} events")
                _finite(a, f"{vwhere}: {label} weights")
                self._check_sign(a, f"{vwhere}: {label} weights")
                arrs.append(a)
            variations[vname] = tuple(arrs)
        if not isinstance(self.modifiers, (list, tuple)):
            raise InvalidModifier(f"{where}: modifiers must be a list of pyhf modifier dicts")
        mods = []
        for i, m in enumerate(self.modifiers):
            mwhere = f"{where}, modifiers[{i}]"
            if not isinstance(m, Mapping) or "name" not in m or "type" not in m:
                raise InvalidModifier(f"{mwhere}: a modifier is a dict with 'name', 'type' and 'data', got {m!r}")
            if m["type"] in DERIVED_MODIFIERS:
                raise InvalidModifier(
                    f"{mwhere} ({m['type']} {m['name']!r}): {m['type']} is derived from the events; give "
                    "per-event weights in `variations` (histosys) or the `staterror` flag instead")
            if m["type"] not in ALLOWED_MODIFIERS:
                raise InvalidModifier(
                    f"{mwhere}: unknown modifier type {m['type']!r}; allowed: {list(ALLOWED_MODIFIERS)}")
            if m["name"] in variations:
                raise InvalidModifier(
                    f"{mwhere}: modifier name {m['name']!r} is also a variation of this sample")
            mods.append({"name": m["name"], "type": m["type"], "data": copy.deepcopy(m.get("data"))})
        return EventSample(self.name, x, w, variations, mods, bool(self.staterror), bool(self.allow_negative_weights))

    def _check_sign(self, w: np.ndarray, what: str) -> None:
        if not self.allow_negative_weights and (w < 0).any():
            i = int(np.argmax(w < 0))
            raise InvalidEvents(
                f"{what} has a negative weight ({w[i]}) at event {i}; pass allow_negative_weights=True "
                "for this sample if negative weights are intended")

    @property
    def n_events(self) -> int:
        return int(np.shape(self.features)[0])

    def to_dict(self) -> dict:
        d = {"name": self.name, "features": np.asarray(self.features).tolist()}
        if self.weights is not None:
            d["weights"] = np.asarray(self.weights).tolist()
        d["variations"] = {k: {"up": np.asarray(u).tolist(), "down": np.asarray(v).tolist()}
                           for k, (u, v) in self.variations.items()}
        d["modifiers"] = copy.deepcopy(list(self.modifiers))
        d["staterror"] = bool(self.staterror)
        d["allow_negative_weights"] = bool(self.allow_negative_weights)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "EventSample":
        if not isinstance(d, Mapping) or "name" not in d or "features" not in d:
            raise InvalidEvents(f"a sample is a dict with at least 'name' and 'features', got {str(d)[:80]!r}")
        unknown = set(d) - {"name", "features", "weights", "variations", "modifiers", "staterror",
                            "allow_negative_weights"}
        if unknown:
            raise InvalidEvents(f"sample {d['name']!r}: unknown key(s) {sorted(unknown)}")
        variations = {k: (v["up"], v["down"]) if isinstance(v, Mapping) else tuple(v)
                      for k, v in dict(d.get("variations", {})).items()}
        return cls(d["name"], d["features"], d.get("weights"), variations, list(d.get("modifiers", [])),
                   bool(d.get("staterror", True)), bool(d.get("allow_negative_weights", False)))


@dataclasses.dataclass
class Cut:
    """A threshold on ``feature``: keep ``x >= t`` (``">"``) or ``x <= t`` (``"<"``);
    ``range`` (low, high) bounds the threshold (None: the feature's data range)."""

    feature: str
    direction: str = ">"
    range: Optional[tuple] = None

    @property
    def sign(self) -> float:
        return 1.0 if self.direction == ">" else -1.0

    @property
    def loosest(self) -> float:
        """The threshold that selects everything in range: low for ">", high for "<"."""
        return float(self.range[0] if self.direction == ">" else self.range[1])

    def to_dict(self) -> dict:
        d = {"feature": self.feature, "direction": self.direction}
        if self.range is not None:
            d["range"] = [float(self.range[0]), float(self.range[1])]
        return d

    @classmethod
    def from_dict(cls, d) -> "Cut":
        if isinstance(d, Cut):
            return d
        if isinstance(d, str):
            return cls(d)
        if isinstance(d, (tuple, list)):
            return cls(*d)
        if not isinstance(d, Mapping) or "feature" not in d:
            raise InvalidEvents(f"a cut is a dict {{'feature', 'direction', 'range'}}, got {d!r}")
        rng = d.get("range")
        return cls(d["feature"], d.get("direction", ">"), None if rng is None else tuple(rng))


@dataclasses.dataclass
class EventWorkspace:
    """Event samples + binning + cuts + HistFactory measurement (module doc).

    Construction validates everything and stores float64 arrays; errors are
    :class:`InvalidEvents` / :class:`~nextstat_jax.InvalidModifier` naming the
    sample, feature and event."""

    feature_names: Sequence[str]
    samples: Sequence[EventSample]
    cuts: Sequence[Any]
    binning_feature: str
    bin_edges: Any
    channel: str = "SR"
    measurement: Optional[Mapping] = None
    observed: Any = None

    def __post_init__(self):
        names = list(self.feature_names)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise InvalidEvents(f"feature_names must be a non-empty list of strings, got {self.feature_names!r}")
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise InvalidEvents(f"duplicate feature names {dup}")
        self.feature_names = tuple(names)
        F = len(names)
        if not isinstance(self.channel, str) or not self.channel:
            raise InvalidEvents(f"channel must be a non-empty string, got {self.channel!r}")
        samples = list(self.samples)
        if not samples:
            raise InvalidEvents("an event workspace needs at least one sample")
        samples = [s if isinstance(s, EventSample) else EventSample.from_dict(s) for s in samples]
        seen = set()
        for s in samples:
            if s.name in seen:
                raise InvalidEvents(f"duplicate sample name {s.name!r}")
            seen.add(s.name)
        self.samples = tuple(s.validated(F, names) for s in samples)
        # binning
        if self.binning_feature not in names:
            raise InvalidEvents(f"binning_feature {self.binning_feature!r} is not one of the features {names}")
        edges = _array(self.bin_edges, "bin_edges", 1)
        if edges.size < 2:
            raise InvalidEvents(f"bin_edges needs at least 2 entries (one bin), got {edges.size}")
        _finite(edges, "bin_edges")
        if not np.all(np.diff(edges) > 0):
            raise InvalidEvents(f"bin_edges must be strictly increasing, got {edges.tolist()}")
        self.bin_edges = edges
        # observed events
        if self.observed is not None:
            obs = self.observed
            if isinstance(obs, Mapping):
                obs = obs.get("features")
            obs = _array(obs, "observed events", 2)
            if obs.shape[1] != F:
                raise InvalidEvents(
                    f"observed events have {obs.shape[1]} columns but the workspace has {F} features {names}")
            _finite(obs, "observed events", names)
            self.observed = obs
        # cuts
        cuts = [Cut.from_dict(c) for c in self.cuts]
        if not cuts:
            raise InvalidEvents("at least one cut is needed")
        seen_cuts = set()
        out = []
        for i, c in enumerate(cuts):
            where = f"cuts[{i}] ({c.feature!r})"
            if c.feature not in names:
                raise InvalidEvents(f"{where}: unknown feature; features are {names}")
            if c.direction not in (">", "<"):
                raise InvalidEvents(f"{where}: direction must be '>' or '<', got {c.direction!r}")
            if (c.feature, c.direction) in seen_cuts:
                raise InvalidEvents(f"{where}: the same feature and direction is cut twice")
            seen_cuts.add((c.feature, c.direction))
            j = names.index(c.feature)
            if c.range is None:
                col = np.concatenate([s.features[:, j] for s in self.samples])
                rng = (float(col.min()), float(col.max()))
            else:
                try:
                    rng = (float(c.range[0]), float(c.range[1]))
                except (TypeError, ValueError, IndexError):
                    raise InvalidEvents(f"{where}: range must be (low, high), got {c.range!r}") from None
            if not (np.isfinite(rng[0]) and np.isfinite(rng[1]) and rng[0] < rng[1]):
                raise InvalidEvents(f"{where}: range must be finite with low < high, got {rng}")
            out.append(Cut(c.feature, c.direction, rng))
        self.cuts = tuple(out)
        # measurement / POI
        meas = copy.deepcopy(dict(_DEFAULT_MEASUREMENT if self.measurement is None else self.measurement))
        if "name" not in meas or "config" not in meas or "poi" not in meas.get("config", {}):
            raise InvalidEvents(f"measurement must look like {_DEFAULT_MEASUREMENT}, got {meas!r}")
        meas["config"].setdefault("parameters", [])
        self.measurement = meas
        poi = self.poi
        if not any(m["type"] == "normfactor" and m["name"] == poi for s in self.samples for m in s.modifiers):
            raise InvalidModifier(
                f"the parameter of interest {poi!r} must be a normfactor of at least one sample "
                f"(e.g. modifiers=[{{'name': {poi!r}, 'type': 'normfactor', 'data': None}}] on the signal)")

    # ------------------------------------------------------------------ views
    @property
    def poi(self) -> str:
        return self.measurement["config"]["poi"]

    @property
    def n_bins(self) -> int:
        return int(self.bin_edges.size - 1)

    @property
    def n_cuts(self) -> int:
        return len(self.cuts)

    @property
    def sample_names(self) -> tuple:
        return tuple(s.name for s in self.samples)

    @property
    def background_mask(self) -> np.ndarray:
        """(S,) bool: samples that do not carry the POI normfactor (background)."""
        poi = self.poi
        return np.asarray([not any(m["type"] == "normfactor" and m["name"] == poi for m in s.modifiers)
                           for s in self.samples])

    @property
    def cut_ranges(self) -> np.ndarray:
        """(C, 2) threshold ranges."""
        return np.asarray([c.range for c in self.cuts], dtype=np.float64)

    @property
    def loosest_thresholds(self) -> np.ndarray:
        """(C,) thresholds selecting everything in range."""
        return np.asarray([c.loosest for c in self.cuts], dtype=np.float64)

    def feature_index(self, name: str) -> int:
        if name not in self.feature_names:
            raise InvalidInput(f"unknown feature {name!r}; features are {list(self.feature_names)}")
        return self.feature_names.index(name)

    def bin_index(self, x) -> np.ndarray:
        """Bin of each value of the binning observable (-1 outside), as numpy.histogram."""
        x = np.asarray(x, np.float64)
        e = self.bin_edges
        idx = np.searchsorted(e, x, side="right") - 1
        idx = np.where(x == e[-1], e.size - 2, idx)
        return np.where((x < e[0]) | (x > e[-1]), -1, idx)

    # ------------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        return {
            "feature_names": list(self.feature_names),
            "binning": {"feature": self.binning_feature, "edges": self.bin_edges.tolist()},
            "cuts": [c.to_dict() for c in self.cuts],
            "channel": self.channel,
            "measurement": copy.deepcopy(self.measurement),
            "samples": [s.to_dict() for s in self.samples],
            "observed": None if self.observed is None else {"features": np.asarray(self.observed).tolist()},
        }

    @classmethod
    def from_dict(cls, d: Any) -> "EventWorkspace":
        """From a dict, a JSON string or a path to a JSON file (module doc)."""
        if isinstance(d, Path) or (isinstance(d, str) and not d.lstrip().startswith("{")):
            try:
                d = Path(d).read_text()
            except OSError as exc:
                raise InvalidEvents(f"cannot read event workspace {str(d)[:80]!r}: {exc}") from None
        if isinstance(d, str):
            try:
                d = json.loads(d)
            except json.JSONDecodeError as exc:
                raise InvalidEvents(f"event workspace is not valid JSON: {exc}") from None
        if not isinstance(d, Mapping):
            raise InvalidEvents(f"an event workspace is a JSON object, got {type(d).__name__}")
        missing = {"feature_names", "binning", "cuts", "samples"} - set(d)
        if missing:
            raise InvalidEvents(f"event workspace misses key(s) {sorted(missing)}")
        binning = d["binning"]
        if not isinstance(binning, Mapping) or "feature" not in binning or "edges" not in binning:
            raise InvalidEvents(f"binning must be {{'feature': name, 'edges': [...]}}, got {binning!r}")
        return cls(
            feature_names=list(d["feature_names"]),
            samples=[EventSample.from_dict(s) for s in d["samples"]],
            cuts=[Cut.from_dict(c) for c in d["cuts"]],
            binning_feature=binning["feature"],
            bin_edges=binning["edges"],
            channel=d.get("channel", "SR"),
            measurement=d.get("measurement"),
            observed=d.get("observed"),
        )
