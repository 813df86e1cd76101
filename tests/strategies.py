"""Hypothesis strategies: random valid pyhf workspaces and parameter points.

* :func:`workspaces` draws a random VALID pyhf 1.0.0 workspace dict;
  :func:`workspace_cases` draws ``(workspace, options)`` where ``options`` may
  carry a random ``modifier_settings`` (full, partial or empty dict).
* :func:`points_in_bounds` draws a parameter vector inside the suggested
  bounds; :func:`random_points` is the same with a NumPy generator.

Generated workspaces have 1-3 channels (1-5 bins, JSON order not sorted), 1-3
samples per channel (a sample may be absent from some channels), every
modifier type (normfactor incl. the POI "mu", normsys, histosys -- sometimes
sharing its name with a normsys --, staterror per channel and shared across
channels, shapesys with unique names, shapefactor shared between channels of
equal bin count, lumi with a measurement config), zero-yield bins, positive
(possibly non-integer) observations and random measurement overrides.

Yields, templates and the point ranges are chosen so that every rate pyhf
computes stays positive (so logpdf is finite): nominal yields are >= 0,
histosys templates differ from the nominal by at most 10 % per bin (at most two
histosys per sample), normsys factors are positive, and points keep
|alpha| <= 2.2 (covering the |alpha| > 1 extrapolation branches) and
multiplicative parameters near 1.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

__all__ = ["workspaces", "workspace_cases", "modifier_settings", "points_in_bounds", "random_points", "point_ranges"]

CHANNEL_POOL = ["SR", "CR", "VR", "a_ch", "Z_ch"]
SAMPLE_POOL = ["signal", "bkg_a", "bkg_b", "zz_bkg"]
NORMFACTOR_POOL = ["mu", "norm_a", "norm_b"]
NORMSYS_POOL = ["sys_a", "sys_b", "sys_c"]
HISTOSYS_POOL = ["sys_a", "shape_x", "shape_y"]  # "sys_a" merges with the normsys

_pos = st.floats(min_value=0.1, max_value=200.0, allow_nan=False, allow_infinity=False)


@st.composite
def modifier_settings(draw):
    """None (pyhf defaults), a full dict, a partial dict, or {}."""
    kind = draw(st.sampled_from(["default", "full", "normsys_only", "histosys_only", "empty"]))
    ns = {"interpcode": draw(st.sampled_from(["code1", "code4"]))}
    hs = {"interpcode": draw(st.sampled_from(["code0", "code2", "code4p"]))}
    if kind == "default":
        return None
    if kind == "full":
        return {"normsys": ns, "histosys": hs}
    if kind == "normsys_only":
        return {"normsys": ns}
    if kind == "histosys_only":
        return {"histosys": hs}
    return {}


def _yields(draw, nbins, zero_prob_tenths=1):
    out = []
    for _ in range(nbins):
        if draw(st.integers(0, 9)) < zero_prob_tenths:
            out.append(0.0)
        else:
            out.append(draw(_pos))
    return out


def _rel(draw, nbins, scale=0.1):
    return [draw(st.floats(-scale, scale, allow_nan=False)) for _ in range(nbins)]


@st.composite
def workspaces(draw):
    """A random valid pyhf workspace (dict, schema 1.0.0)."""
    spec, _ = draw(_workspace_and_names())
    return spec


@st.composite
def workspace_cases(draw):
    """(workspace dict, options dict); options may hold ``modifier_settings``."""
    spec, _ = draw(_workspace_and_names())
    settings = draw(modifier_settings())
    options = {} if settings is None else {"modifier_settings": settings}
    return spec, options


@st.composite
def _workspace_and_names(draw):
    n_channels = draw(st.integers(1, 3))
    chan_names = draw(st.permutations(CHANNEL_POOL))[:n_channels]
    nbins = {c: draw(st.integers(1, 5)) for c in chan_names}

    # which samples live in which channel (the first channel always holds "signal")
    members: dict[str, list[str]] = {}
    for i, c in enumerate(chan_names):
        chosen = draw(st.lists(st.sampled_from(SAMPLE_POOL), min_size=1, max_size=3, unique=True))
        if i == 0 and "signal" not in chosen:
            chosen = ["signal", *chosen[:2]]
        members[c] = draw(st.permutations(chosen))

    nominal = {(c, s): _yields(draw, nbins[c]) for c in chan_names for s in members[c]}
    # make sure at least one bin somewhere has a non-zero yield per channel
    for c in chan_names:
        s0 = members[c][0]
        if not any(nominal[(c, s)][b] > 0 for s in members[c] for b in range(nbins[c])):
            nominal[(c, s0)][0] = draw(_pos)

    mods: dict[tuple[str, str], list[dict]] = {k: [] for k in nominal}

    def add(key, m):
        if not any(x["name"] == m["name"] and x["type"] == m["type"] for x in mods[key]):
            mods[key].append(m)

    # POI
    add((chan_names[0], "signal"), {"name": "mu", "type": "normfactor", "data": None})
    has_lumi = False
    used_staterror: dict[str, int] = {}
    used_shapesys: dict[str, int] = {}
    used_normsys: set[str] = set()
    used_histosys: set[str] = set()
    for c in chan_names:
        for s in members[c]:
            key = (c, s)
            n = np.asarray(nominal[key])
            nb = nbins[c]
            # normfactors
            for name in draw(st.lists(st.sampled_from(NORMFACTOR_POOL), max_size=2, unique=True)):
                add(key, {"name": name, "type": "normfactor", "data": None})
            # normsys
            for name in draw(st.lists(st.sampled_from(NORMSYS_POOL), max_size=2, unique=True)):
                hi = draw(st.floats(1.0, 1.4))
                lo = draw(st.floats(0.65, 1.0))
                if draw(st.integers(0, 4)) == 0:  # inverted or same-side variation
                    hi, lo = lo, draw(st.floats(0.9, 1.3))
                add(key, {"name": name, "type": "normsys", "data": {"hi": hi, "lo": lo}})
                used_normsys.add(name)
            # histosys (templates within 10 % of the nominal)
            for name in draw(st.lists(st.sampled_from(HISTOSYS_POOL), max_size=2, unique=True)):
                hi = (n * (1.0 + np.asarray(_rel(draw, nb)))).tolist()
                lo = (n * (1.0 + np.asarray(_rel(draw, nb)))).tolist()
                add(key, {"name": name, "type": "histosys", "data": {"hi_data": hi, "lo_data": lo}})
                used_histosys.add(name)
            # staterror per channel
            if draw(st.booleans()):
                unc = [0.0 if draw(st.integers(0, 9)) == 0 else draw(st.floats(0.01, 0.3)) * max(v, 0.5) for v in n]
                name = f"staterror_{c}"
                add(key, {"name": name, "type": "staterror", "data": unc})
                used_staterror[name] = nb
            # shapesys (unique name per sample and channel)
            if draw(st.integers(0, 3)) == 0:
                unc = [0.0 if draw(st.integers(0, 7)) == 0 else draw(st.floats(0.02, 0.4)) * max(v, 0.5) for v in n]
                name = f"shapesys_{c}_{s}"
                add(key, {"name": name, "type": "shapesys", "data": unc})
                used_shapesys[name] = nb
            # shapefactor, shared between channels of equal bin count
            if draw(st.integers(0, 3)) == 0:
                add(key, {"name": f"sf_{nb}bins", "type": "shapefactor", "data": None})
            # lumi
            if draw(st.integers(0, 3)) == 0:
                add(key, {"name": "lumi", "type": "lumi", "data": None})
                has_lumi = True

    # a staterror shared across channels: every carrying sample carries it in
    # exactly the same channels (pyhf asserts this)
    if n_channels > 1 and draw(st.booleans()):
        k_chans = draw(st.lists(st.sampled_from(chan_names), min_size=2, max_size=n_channels, unique=True))
        common = [s for s in SAMPLE_POOL if all(s in members[c] for c in k_chans)]
        if common:
            carriers = draw(st.lists(st.sampled_from(common), min_size=1, unique=True))
            for c in k_chans:
                for s in carriers:
                    n = nominal[(c, s)]
                    unc = [0.0 if draw(st.integers(0, 9)) == 0 else draw(st.floats(0.01, 0.3)) * max(v, 0.5) for v in n]
                    add((c, s), {"name": "staterror_shared", "type": "staterror", "data": unc})
            used_staterror["staterror_shared"] = sum(nbins[c] for c in k_chans)

    # observations: positive, sometimes non-integer; 0 where nothing is expected
    observations = []
    for c in chan_names:
        tot = np.sum([nominal[(c, s)] for s in members[c]], axis=0)
        integer = draw(st.booleans())
        data = []
        for b in range(nbins[c]):
            if tot[b] <= 0:
                data.append(0.0)
                continue
            v = tot[b] * draw(st.floats(0.7, 1.3))
            data.append(float(max(round(v), 1)) if integer else float(max(v, 0.05)))
        observations.append({"name": c, "data": data})

    # measurement config
    params: list[dict] = []
    if has_lumi:
        rel = draw(st.floats(0.01, 0.1))
        params.append({"name": "lumi", "auxdata": [1.0], "inits": [1.0], "sigmas": [rel], "bounds": [[1 - 5 * rel, 1 + 5 * rel]]})
        if draw(st.integers(0, 3)) == 0:
            params[-1]["fixed"] = True
    if draw(st.integers(0, 2)) == 0:
        params.append({"name": "mu", "inits": [draw(st.floats(0.5, 2.0))], "bounds": [[0.0, draw(st.floats(3.0, 20.0))]]})
    if used_staterror and draw(st.integers(0, 2)) == 0:
        name = draw(st.sampled_from(sorted(used_staterror)))
        cfg: dict = {"name": name, "fixed": draw(st.booleans())}
        if draw(st.booleans()):
            cfg["sigmas"] = [draw(st.floats(0.01, 0.3)) for _ in range(used_staterror[name])]
        if draw(st.booleans()):
            cfg["auxdata"] = [draw(st.floats(0.9, 1.1)) for _ in range(used_staterror[name])]
        params.append(cfg)
    if used_shapesys and draw(st.integers(0, 2)) == 0:
        name = draw(st.sampled_from(sorted(used_shapesys)))
        cfg = {"name": name}
        if draw(st.booleans()):
            cfg["fixed"] = draw(st.booleans())
        if draw(st.booleans()):
            cfg["factors"] = [draw(st.floats(1.0, 400.0)) for _ in range(used_shapesys[name])]
        if draw(st.booleans()):
            cfg["auxdata"] = [draw(st.floats(1.0, 400.0)) for _ in range(used_shapesys[name])]
        params.append(cfg)
    alphas = sorted(used_normsys | used_histosys)
    if alphas and draw(st.integers(0, 2)) == 0:
        name = draw(st.sampled_from(alphas))
        cfg = {"name": name}
        if draw(st.booleans()):
            cfg["auxdata"] = [draw(st.floats(-0.5, 0.5))]
        if draw(st.booleans()):
            cfg["fixed"] = True
        if draw(st.booleans()):
            cfg["inits"] = [draw(st.floats(-1.0, 1.0))]
        params.append(cfg)

    channels = [
        {
            "name": c,
            "samples": [{"name": s, "data": [float(v) for v in nominal[(c, s)]], "modifiers": mods[(c, s)]} for s in members[c]],
        }
        for c in chan_names
    ]
    spec = {
        "channels": channels,
        "observations": draw(st.permutations(observations)),
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": params}}],
        "version": "1.0.0",
    }
    return spec, {"channels": chan_names, "members": members}


# --------------------------------------------------------------------------
# parameter points
# --------------------------------------------------------------------------


def point_ranges(init, bounds, scale: float = 1.0, alpha_cap: float = 2.2):
    """Per-parameter (lo, hi) sampling ranges inside the bounds.

    Around each init, half-width ``0.5 * min(init - lo, hi - init)`` capped at
    ``alpha_cap`` and multiplied by ``scale``: alpha in (-5, 5) -> [-2.2, 2.2],
    gamma / normfactor in (~0, 10) with init 1 -> [0.5, 1.5], lumi
    (0.5, 1.5) -> [0.75, 1.25].  A degenerate or inconsistent range keeps the init.
    """
    init = np.asarray(init, dtype=float)
    bounds = np.asarray(bounds, dtype=float).reshape(-1, 2)
    half = 0.5 * np.minimum(init - bounds[:, 0], bounds[:, 1] - init)
    half = np.clip(np.minimum(half, alpha_cap), 0.0, None) * scale
    return init - half, init + half


def random_points(init, bounds, n: int, seed: int = 0, scale: float = 1.0):
    """(n, P) float64 points drawn uniformly from :func:`point_ranges`."""
    lo, hi = point_ranges(init, bounds, scale)
    rng = np.random.default_rng(seed)
    return lo + (hi - lo) * rng.random((n, lo.size))


def points_in_bounds(init, bounds, scale: float = 1.0):
    """Hypothesis strategy: one parameter vector (np.ndarray) inside the bounds.

    ``init``/``bounds`` may come from a pyhf model (``suggested_init()``,
    ``suggested_bounds()``) or from ours.
    """
    lo, hi = point_ranges(init, bounds, scale)
    elems = [st.floats(float(a), float(b), allow_nan=False) if b > a else st.just(float(a)) for a, b in zip(lo, hi)]
    return st.tuples(*elems).map(lambda t: np.asarray(t, dtype=float))
