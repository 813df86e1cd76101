"""From a pyhf model spec to a :class:`Model` (NumPy, pyhf 0.7.6 semantics).

The layout rules follow ``histfactory-spec.md`` §2-§4: channels, samples and
(name, type) modifiers are sorted; parameter sets are grouped by modifier type
in pyhf's fixed order and, within a type, by first encounter in the sorted
walk (staterror: by name); constrained sets contribute auxdata in that order.
Every inconsistency raises an :class:`InvalidModel` subclass naming the place.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional

import jax.numpy as jnp
import numpy as np

from ._layout import Layout
from ._x64 import x64
from .errors import InvalidInterpCode, InvalidModel, InvalidModifier, InvalidNameReuse
from .interp import HISTOSYS_CODES, NORMSYS_CODES
from .model import Model

__all__ = ["build_model", "check_model_spec", "DEFAULT_MODIFIER_SETTINGS", "MODIFIER_TYPES"]

# pyhf's histfactory_set key order: the order of parameter-set groups.
MODIFIER_TYPES = ("histosys", "lumi", "normfactor", "normsys", "shapefactor", "shapesys", "staterror")
DEFAULT_MODIFIER_SETTINGS = {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}
# Class defaults pyhf falls back to when a user dict omits a type (spec §3.2).
_FALLBACK_CODES = {"normsys": "code1", "histosys": "code0"}

# config keys each type accepts on top of name (spec §2.4)
_CONFIG_KEYS = {
    "normfactor": {"inits", "bounds", "fixed"},
    "shapefactor": {"inits", "bounds", "fixed"},
    "normsys": {"inits", "bounds", "fixed", "auxdata"},
    "histosys": {"inits", "bounds", "fixed", "auxdata"},
    "lumi": {"inits", "bounds", "fixed", "auxdata", "sigmas"},
    "staterror": {"inits", "bounds", "fixed", "auxdata", "sigmas"},
    "shapesys": {"inits", "bounds", "fixed", "auxdata", "factors"},
}
_CONSTRAINT = {
    "normfactor": None,
    "shapefactor": None,
    "normsys": "normal",
    "histosys": "normal",
    "lumi": "normal",
    "staterror": "normal",
    "shapesys": "poisson",
}
_DEFAULT_BOUNDS = {
    "normfactor": (0.0, 10.0),
    "shapefactor": (0.0, 10.0),
    "normsys": (-5.0, 5.0),
    "histosys": (-5.0, 5.0),
    "staterror": (1e-10, 10.0),
    "shapesys": (1e-10, 10.0),
}
_DEFAULT_INIT = {"normfactor": 1.0, "shapefactor": 1.0, "normsys": 0.0, "histosys": 0.0,
                 "staterror": 1.0, "shapesys": 1.0}
_VECTOR_TYPES = {"shapefactor", "shapesys", "staterror"}


def _where(channel: str, sample: Optional[str] = None, modifier: Optional[str] = None,
           mtype: Optional[str] = None) -> str:
    parts = [f"channel {channel!r}"]
    if sample is not None:
        parts.append(f"sample {sample!r}")
    if modifier is not None:
        parts.append(f"modifier {modifier!r}" + (f" ({mtype})" if mtype else ""))
    return ", ".join(parts)


def resolve_interp_codes(modifier_settings: Optional[dict]) -> tuple[str, str]:
    """(normsys code, histosys code) from pyhf-style ``modifier_settings``.

    A user dict replaces pyhf's default dict wholesale; a type it omits falls
    back to pyhf's class default (code1 / code0), exactly as pyhf does."""
    settings = DEFAULT_MODIFIER_SETTINGS if modifier_settings is None else modifier_settings
    if not isinstance(settings, dict):
        raise InvalidInterpCode(f"modifier_settings must be a dict, got {type(settings).__name__}")
    unknown = set(settings) - {"normsys", "histosys"}
    if unknown:
        raise InvalidInterpCode(
            f"modifier_settings has unknown modifier type(s) {sorted(unknown)}; "
            "only 'normsys' and 'histosys' take an interpcode"
        )
    codes = {}
    for mtype, allowed in (("normsys", NORMSYS_CODES), ("histosys", HISTOSYS_CODES)):
        entry = settings.get(mtype, {})
        if not isinstance(entry, dict) or set(entry) - {"interpcode"}:
            raise InvalidInterpCode(
                f"modifier_settings[{mtype!r}] must be a dict like {{'interpcode': ...}}, got {entry!r}"
            )
        code = entry.get("interpcode", _FALLBACK_CODES[mtype])
        if code not in allowed:
            raise InvalidInterpCode(
                f"interpcode {code!r} is not valid for {mtype}; choose one of {list(allowed)}"
            )
        codes[mtype] = code
    return codes["normsys"], codes["histosys"]


@dataclass
class _ParamSet:
    name: str
    types: list  # modifier types that use this name (normsys+histosys may share)
    size: int
    first_channel: str
    channels: list = field(default_factory=list)  # staterror: channels it covers
    carriers: list = field(default_factory=list)  # (channel, sample, modifier dict)

    @property
    def kind(self) -> str:
        return self.types[0]


def _is_real(v) -> bool:
    """A real number (Python, NumPy scalar or 0-d array), not a bool."""
    if isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, numbers.Real):
        return True
    return isinstance(v, np.ndarray) and v.ndim == 0 and np.issubdtype(v.dtype, np.number)


def _finite(values, what: str, cls=InvalidModel) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise cls(f"{what} has a non-finite value ({arr.flat[bad]}) at index {bad}")
    return arr


class _Builder:
    def __init__(self, spec: dict, poi_name, modifier_settings, observations):
        self.spec = spec
        self.poi_name = poi_name
        self.normsys_code, self.histosys_code = resolve_interp_codes(modifier_settings)
        self.observations = observations

    # -- step 1: channels, samples, modifiers --------------------------------
    def collect(self):
        channels = self.spec["channels"]
        seen = set()
        self.nbins: dict[str, int] = {}
        self.helper: dict[tuple[str, str], tuple[dict, dict]] = {}
        modifiers = set()
        sample_names = set()
        for ci, ch in enumerate(channels):
            cname = ch["name"]
            if cname in seen:
                raise InvalidModel(f"duplicate channel name {cname!r} (channels[{ci}])")
            seen.add(cname)
            nb = len(ch["samples"][0]["data"])
            self.nbins[cname] = nb
            snames = set()
            for si, s in enumerate(ch["samples"]):
                sname = s["name"]
                place = f"channels[{ci}].samples[{si}] ({_where(cname, sname)})"
                if sname in snames:
                    raise InvalidModel(f"duplicate sample name {sname!r} in channel {cname!r} at {place}")
                snames.add(sname)
                if len(s["data"]) != nb:
                    raise InvalidModel(
                        f"sample {sname!r} in channel {cname!r} has {len(s['data'])} bins but the "
                        f"channel has {nb} (the first sample's length) at {place}.data"
                    )
                _finite(s["data"], f"yields of {place}.data")
                moddict: dict[tuple[str, str], dict] = {}
                for mi, m in enumerate(s["modifiers"]):
                    key = (m["type"], m["name"])
                    mplace = f"{place}.modifiers[{mi}] ({m['type']} {m['name']!r})"
                    self._check_modifier_data(m, nb, mplace, cname, sname)
                    if key in moddict:
                        if m["type"] == "shapesys":
                            raise InvalidModel(
                                f"shapesys {m['name']!r} appears twice on sample {sname!r} in "
                                f"channel {cname!r}; a shapesys name can be used only once ({mplace})"
                            )
                        warnings.warn(
                            f"modifier {m['name']!r} ({m['type']}) appears twice on sample "
                            f"{sname!r} in channel {cname!r}; the last one is used, as pyhf does",
                            stacklevel=4,
                        )
                    moddict[key] = m
                    modifiers.add((m["name"], m["type"]))
                self.helper[(cname, sname)] = (s, moddict)
                sample_names.add(sname)
        self.channels = sorted(self.nbins)
        self.samples = sorted(sample_names)
        self.modifiers = sorted(modifiers)  # (name, type), as pyhf
        offsets, start = {}, 0
        for c in self.channels:
            offsets[c] = start
            start += self.nbins[c]
        self.offsets = offsets
        self.n_main = start

    @staticmethod
    def _check_modifier_data(m, nb, place, cname, sname):
        mtype, data = m["type"], m["data"]
        if mtype == "normsys":
            for k in ("hi", "lo"):
                v = data[k]
                if not (_is_real(v) and math.isfinite(float(v)) and float(v) > 0):
                    raise InvalidModifier(
                        f"normsys factor {k}={v!r} must be a finite number > 0 at {place}.data.{k}"
                    )
        elif mtype == "histosys":
            for k in ("hi_data", "lo_data"):
                if len(data[k]) != nb:
                    raise InvalidModifier(
                        f"histosys {k} has {len(data[k])} bins but sample {sname!r} in channel "
                        f"{cname!r} has {nb} at {place}.data.{k}"
                    )
                _finite(data[k], f"{place}.data.{k}", InvalidModifier)
        elif mtype in ("staterror", "shapesys"):
            if len(data) != nb:
                raise InvalidModifier(
                    f"{mtype} data has {len(data)} bins but sample {sname!r} in channel "
                    f"{cname!r} has {nb} at {place}.data"
                )
            _finite(data, f"{place}.data", InvalidModifier)

    # -- step 2: parameter sets in pyhf order --------------------------------
    def paramsets(self):
        by_type: dict[str, dict[str, _ParamSet]] = {t: {} for t in MODIFIER_TYPES}
        shapesys_owner: dict[str, tuple[str, str]] = {}
        for c in self.channels:
            for s in self.samples:
                entry = self.helper.get((c, s))
                if entry is None:
                    continue
                sample, moddict = entry
                for name, mtype in self.modifiers:
                    mod = moddict.get((mtype, name))
                    if mod is None:
                        continue
                    if mtype == "shapesys":
                        if name in shapesys_owner:
                            oc, osm = shapesys_owner[name]
                            raise InvalidModel(
                                f"shapesys {name!r} is used on {_where(oc, osm)} and on "
                                f"{_where(c, s)}; a shapesys modifier cannot be shared"
                            )
                        shapesys_owner[name] = (c, s)
                    ps = by_type[mtype].get(name)
                    if ps is None:
                        size = self.nbins[c] if mtype in ("shapefactor", "shapesys") else 1
                        ps = by_type[mtype][name] = _ParamSet(name, [mtype], size, c)
                    elif mtype == "shapefactor" and self.nbins[c] != ps.size:
                        raise InvalidModel(
                            f"shapefactor {name!r} is shared by channels {ps.first_channel!r} "
                            f"({ps.size} bins) and {c!r} ({self.nbins[c]} bins); shared "
                            "shapefactors need channels of equal bin count"
                        )
                    ps.carriers.append((c, s, mod))
        # staterror: components over the channels it covers, names sorted
        for name in sorted(by_type["staterror"]):
            ps = by_type["staterror"][name]
            per_sample: dict[str, set] = {}
            for c, s, _ in ps.carriers:
                per_sample.setdefault(s, set()).add(c)
            chans = None
            for s, cs in per_sample.items():
                if chans is None:
                    chans, first = cs, s
                elif cs != chans:
                    raise InvalidModel(
                        f"staterror {name!r} is carried by sample {first!r} in channels "
                        f"{sorted(chans)} but by sample {s!r} in channels {sorted(cs)}; every "
                        "sample carrying a staterror must carry it in the same channels"
                    )
            ps.channels = sorted(chans)
            ps.size = sum(self.nbins[c] for c in ps.channels)
        by_type["staterror"] = {n: by_type["staterror"][n] for n in sorted(by_type["staterror"])}

        ordered: dict[str, _ParamSet] = {}
        for mtype in MODIFIER_TYPES:
            for name, ps in by_type[mtype].items():
                if name in ordered:
                    other = ordered[name]
                    if {other.kind, mtype} == {"normsys", "histosys"}:
                        other.types.append(mtype)
                        other.carriers.extend(ps.carriers)
                        continue
                    c0, s0, _ = other.carriers[0]
                    c1, s1, _ = ps.carriers[0]
                    raise InvalidNameReuse(
                        f"parameter name {name!r} is used by a {other.kind} modifier "
                        f"({_where(c0, s0)}) and by a {mtype} modifier ({_where(c1, s1)}); "
                        "only normsys and histosys may share a name"
                    )
                ordered[name] = ps
        if not ordered:
            raise InvalidModel("the model has no parameters (no modifiers on any sample)")
        self.psets = ordered

    # -- step 3: per-component defaults and measurement config ----------------
    def configure(self):
        user = {}
        for i, p in enumerate(self.spec.get("parameters", []) or []):
            if p["name"] in user:
                raise InvalidModel(
                    f"measurement config lists parameter {p['name']!r} twice (parameters[{i}])"
                )
            user[p["name"]] = p
        for name in user:
            if name not in self.psets:
                warnings.warn(
                    f"measurement config has settings for parameter {name!r}, which no "
                    "modifier uses; they are ignored (as pyhf does)",
                    stacklevel=4,
                )
        self.user = user
        start = 0
        self.slices = {}
        for name, ps in self.psets.items():
            cfg = user.get(name, {})
            kind = ps.kind
            allowed = _CONFIG_KEYS[kind]
            for k, v in cfg.items():
                if k != "name" and k not in allowed and v:
                    raise InvalidModel(
                        f"measurement config of parameter {name!r} sets {k!r}, which a {kind} "
                        f"modifier does not use (it accepts {sorted(allowed)})"
                    )
                if isinstance(v, list) and k in allowed and kind != "lumi" and len(v) != ps.size:
                    raise InvalidModel(
                        f"measurement config of parameter {name!r} gives {len(v)} values for "
                        f"{k!r}, expected {ps.size}"
                    )
            for k in ("inits", "auxdata", "sigmas", "factors"):
                if k in cfg:
                    vals = np.asarray(cfg[k], dtype=float)
                    if not np.all(np.isfinite(vals)) or (k in ("sigmas", "factors") and np.any(vals <= 0)):
                        need = "finite and > 0" if k in ("sigmas", "factors") else "finite"
                        raise InvalidModel(
                            f"measurement config of parameter {name!r}: {k!r} = {list(cfg[k])} "
                            f"must be {need}"
                        )
            if kind == "lumi":
                missing = [k for k in ("inits", "bounds", "auxdata", "sigmas") if k not in cfg]
                if missing:
                    raise InvalidModel(
                        f"lumi modifier {name!r} needs 'inits', 'bounds', 'auxdata' and 'sigmas' "
                        f"in the measurement config; missing {missing}"
                    )
                for k in ("inits", "bounds", "auxdata", "sigmas"):
                    if len(cfg[k]) != 1:
                        raise InvalidModel(
                            f"measurement config of lumi {name!r}: {k!r} must have 1 entry, got {len(cfg[k])}"
                        )
            self.slices[name] = (start, start + ps.size)
            start += ps.size
        self.n_params = start

    # -- step 4: arrays --------------------------------------------------------
    def arrays(self):
        P = self.n_params
        S, B = len(self.samples), self.n_main
        sidx = {s: i for i, s in enumerate(self.samples)}
        nominal = np.zeros((S, B))
        for (c, s), (sample, _) in self.helper.items():
            o = self.offsets[c]
            nominal[sidx[s], o : o + self.nbins[c]] = sample["data"]

        init = np.zeros(P)
        bounds = np.zeros((P, 2))
        fixed_base = np.zeros(P, bool)
        fixed_dyn = np.zeros(P, bool)
        par_st = -np.ones(P, np.int32)
        par_sh = -np.ones(P, np.int32)
        par_names: list[str] = []
        aux_rows = []  # (par, poisson, st_comp, sh_comp, value, width, value_dyn, width_dyn)
        st_entries = []  # (comp, sample, bin, unc)
        sh_rows = []  # (sample, bin, unc)
        auxdata_order = []

        for name, ps in self.psets.items():
            a, b = self.slices[name]
            kind, cfg = ps.kind, self.user.get(name, {})
            par_names.extend([name] if kind not in _VECTOR_TYPES else [f"{name}[{i}]" for i in range(ps.size)])
            if kind == "lumi":
                init[a] = cfg["inits"][0]
                bounds[a] = cfg["bounds"][0]
            else:
                init[a:b] = _DEFAULT_INIT[kind]
                bounds[a:b] = _DEFAULT_BOUNDS[kind]
                if "inits" in cfg:
                    init[a:b] = cfg["inits"]
                if "bounds" in cfg:
                    bounds[a:b] = np.asarray(cfg["bounds"], dtype=float).reshape(ps.size, 2)
            if "fixed" in cfg:
                fixed_base[a:b] = bool(cfg["fixed"])

            if kind == "staterror":
                comp0 = self._n_st
                for j in range(ps.size):
                    par_st[a + j] = comp0 + j
                # entries: every sample carrying it, every bin of its channels
                carriers = {}
                for c, s, mod in ps.carriers:
                    carriers[(c, s)] = mod
                j = comp0
                for c in ps.channels:
                    o = self.offsets[c]
                    for lb in range(self.nbins[c]):
                        for (cc, s), mod in carriers.items():
                            if cc == c:
                                st_entries.append((j, sidx[s], o + lb, float(mod["data"][lb])))
                        j += 1
                self._n_st = j
                if "fixed" not in cfg:
                    fixed_dyn[a:b] = True
            if kind == "shapesys":
                (c, s, mod), = ps.carriers
                o = self.offsets[c]
                comp0 = len(sh_rows)
                for lb in range(ps.size):
                    sh_rows.append((sidx[s], o + lb, float(mod["data"][lb])))
                    par_sh[a + lb] = comp0 + lb
                if "fixed" not in cfg:
                    fixed_dyn[a:b] = True

            constraint = _CONSTRAINT[kind]
            if constraint is None:
                continue
            auxdata_order.append(name)
            for j in range(ps.size):
                p = a + j
                st_c = par_st[p]
                sh_c = par_sh[p]
                value = cfg["auxdata"][j] if "auxdata" in cfg else (
                    1.0 if kind == "staterror" else 0.0
                )
                if kind == "lumi":
                    value = cfg["auxdata"][0]
                if "sigmas" in cfg:
                    width = cfg["sigmas"][j]
                elif "factors" in cfg:
                    width = cfg["factors"][j]
                else:
                    width = 1.0
                value_dyn = kind == "shapesys" and "auxdata" not in cfg
                width_dyn = (kind == "staterror" and "sigmas" not in cfg) or (
                    kind == "shapesys" and "factors" not in cfg
                )
                aux_rows.append((p, constraint == "poisson", st_c, sh_c, value, width, value_dyn, width_dyn))

        # bounds and inits must make sense before any fit
        for p in range(P):
            lo, hi = bounds[p]
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise InvalidModel(f"bounds of parameter {par_names[p]!r} are not finite: [{lo}, {hi}]")
            if lo > hi:
                raise InvalidModel(
                    f"bounds of parameter {par_names[p]!r} are inverted: [{lo}, {hi}] (lower > upper)"
                )
            if not (lo <= init[p] <= hi):
                raise InvalidModel(
                    f"initial value {init[p]} of parameter {par_names[p]!r} is outside its bounds [{lo}, {hi}]"
                )

        # multiplicative factors and additive histosys entries
        factor_lists = [[[] for _ in range(B)] for _ in range(S)]
        ns_par, ns_hi, ns_lo = [], [], []
        hs_rows = []  # (par, sample, bin, hi, lo)
        for name, ps in self.psets.items():
            a, _ = self.slices[name]
            for c, s, mod in ps.carriers:
                si, o, nb = sidx[s], self.offsets[c], self.nbins[c]
                mtype = mod["type"]
                if mtype in ("normfactor", "lumi"):
                    for lb in range(nb):
                        factor_lists[si][o + lb].append(a)
                elif mtype in ("shapefactor", "shapesys"):
                    for lb in range(nb):
                        factor_lists[si][o + lb].append(a + lb)
                elif mtype == "staterror":
                    co = sum(self.nbins[cc] for cc in ps.channels[: ps.channels.index(c)])
                    for lb in range(nb):
                        factor_lists[si][o + lb].append(a + co + lb)
                elif mtype == "normsys":
                    inst = len(ns_par)
                    ns_par.append(a)
                    ns_hi.append(float(mod["data"]["hi"]))
                    ns_lo.append(float(mod["data"]["lo"]))
                    for lb in range(nb):
                        factor_lists[si][o + lb].append(P + inst)
                elif mtype == "histosys":
                    for lb in range(nb):
                        hs_rows.append(
                            (a, si, o + lb, float(mod["data"]["hi_data"][lb]), float(mod["data"]["lo_data"][lb]))
                        )
        one = P + len(ns_par)  # index of the constant 1.0 in f_ext
        K = max(1, max(len(f) for row in factor_lists for f in row))
        mult_idx = np.full((K, S, B), one, np.int32)
        for si in range(S):
            for bi in range(B):
                for k, idx in enumerate(factor_lists[si][bi]):
                    mult_idx[k, si, bi] = idx

        def col(rows, i, dtype):
            return np.asarray([r[i] for r in rows], dtype=dtype).reshape(len(rows))

        obs = np.zeros(B)
        if self.observations is not None:
            for c in self.channels:
                o = self.offsets[c]
                obs[o : o + self.nbins[c]] = self.observations[c]

        poi_index = None
        if self.poi_name is not None:
            if self.poi_name not in self.psets:
                raise InvalidModel(
                    f"the parameter of interest {self.poi_name!r} is not a parameter of the "
                    f"model; parameters are {list(self.psets)}"
                )
            a, b = self.slices[self.poi_name]
            if b - a != 1:
                raise InvalidModel(
                    f"the parameter of interest {self.poi_name!r} has {b - a} components; "
                    "a POI must be a single parameter"
                )
            poi_index = a

        sample_in_channel = tuple(
            tuple((c, s) in self.helper for c in self.channels) for s in self.samples
        )
        layout = Layout(
            channels=tuple(self.channels),
            channel_nbins=tuple(self.nbins[c] for c in self.channels),
            samples=tuple(self.samples),
            sample_in_channel=sample_in_channel,
            par_order=tuple(self.psets),
            par_slices=tuple(self.slices[n] for n in self.psets),
            par_types=tuple("+".join(ps.types) for ps in self.psets.values()),
            par_names=tuple(par_names),
            poi_name=self.poi_name,
            poi_index=poi_index,
            auxdata_order=tuple(auxdata_order),
            normsys_code=self.normsys_code,
            histosys_code=self.histosys_code,
            mult_idx=mult_idx,
            ns_par=np.asarray(ns_par, np.int32),
            hs_par=col(hs_rows, 0, np.int32),
            hs_sample=col(hs_rows, 1, np.int32),
            hs_bin=col(hs_rows, 2, np.int32),
            st_comp=col(st_entries, 0, np.int32),
            st_sample=col(st_entries, 1, np.int32),
            st_bin=col(st_entries, 2, np.int32),
            n_st=self._n_st,
            sh_sample=col(sh_rows, 0, np.int32),
            sh_bin=col(sh_rows, 1, np.int32),
            par_st_comp=par_st,
            par_sh_comp=par_sh,
            fixed_dynamic=fixed_dyn,
            fixed_base=fixed_base,
            aux_par=col(aux_rows, 0, np.int32),
            aux_poisson=col(aux_rows, 1, bool),
            aux_st_comp=col(aux_rows, 2, np.int32),
            aux_sh_comp=col(aux_rows, 3, np.int32),
            aux_value_dynamic=col(aux_rows, 6, bool),
            aux_width_dynamic=col(aux_rows, 7, bool),
        )
        arrays = dict(
            nominal=nominal,
            obs_main=obs,
            ns_hi=np.asarray(ns_hi, float),
            ns_lo=np.asarray(ns_lo, float),
            hs_hi=col(hs_rows, 3, float),
            hs_lo=col(hs_rows, 4, float),
            st_unc=col(st_entries, 3, float),
            sh_unc=col(sh_rows, 2, float),
            init=init,
            bounds=bounds,
            aux_base=col(aux_rows, 4, float),
            width_base=col(aux_rows, 5, float),
        )
        return layout, arrays

    def build(self) -> Model:
        self._n_st = 0
        self.collect()
        self.paramsets()
        self.configure()
        layout, arrays = self.arrays()
        leaves = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in arrays.items()}
        return Model(layout=layout, **leaves)


def check_model_spec(spec: dict, *, poi_name: Optional[str] = None,
                     modifier_settings: Optional[dict] = None) -> None:
    """Run every check of :func:`build_model` (NumPy only, no JAX arrays)."""
    b = _Builder(spec, poi_name, modifier_settings, None)
    b._n_st = 0
    b.collect()
    b.paramsets()
    b.configure()
    b.arrays()


@x64
def build_model(
    spec: dict,
    *,
    poi_name: Optional[str] = "mu",
    modifier_settings: Optional[dict] = None,
    observations: Optional[dict[str, Any]] = None,
) -> Model:
    """Build a :class:`Model` from a pyhf *model spec* ``{"channels", "parameters"}``.

    ``observations`` maps channel name to observed main data (optional; zeros
    otherwise). ``poi_name=None`` builds a model without a parameter of interest.
    The spec must already be schema-valid (``Workspace`` does that)."""
    return _Builder(spec, poi_name, modifier_settings, observations).build()
