"""Differential tests of the core model against pyhf 0.7.6 (NumPy backend).

For every workspace of ``tests/corpus.py`` and for random workspaces drawn by
``tests/strategies.py`` this compares, with pyhf built from the same spec:

* ``par_names``, ``poi_index``/``poi_name``, ``n_params`` and the suggested
  init/bounds/fixed (exactly equal);
* ``Workspace.data(model)`` and ``model.data`` (1e-12 relative);
* ``expected_data`` and ``logpdf`` at the init and at 3 random points inside
  the bounds (1e-8 relative; an absolute floor of 1e-12 x max|value| on
  expected_data entries that pyhf computes as exactly 0, 1e-10 on logpdf);
* ``with_yields`` against pyhf built from the spec with that sample's data
  replaced (structure, masks, auxdata, expected_data, logpdf);
* ``jax.grad`` w.r.t. parameters and yields against central finite
  differences of pyhf's logpdf; ``jax.vmap`` and ``jax.jit`` against eager
  evaluation; no retrace when a jitted function sees a second ``with_yields``
  model;
* the worked numbers of docs/histfactory-spec.md §3.2, §7.2, §7.3 and §7.7;
* invalid workspaces raise ``NextStatJaxError`` subclasses.

JAX runs with ``jax_enable_x64`` on for this module (restored afterwards);
``test_float64_without_global_x64_flag`` checks the flag-off behaviour in a
subprocess.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
import sys
import textwrap
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

import jax
import pyhf
from hypothesis import HealthCheck, seed, given, note, settings
from hypothesis import strategies as st

import nextstat_jax as nsj

from corpus import (
    CORPUS,
    INVALID_CORPUS,
    INVALID_OPTIONS,
    WITH_YIELDS_CASES,
    get_case,
)
from strategies import random_points, workspace_cases

pyhf.set_backend("numpy")

RTOL = 1e-8  # never loosen
LOGPDF_ATOL = 1e-10
DATA_RTOL = 1e-12
HYPOTHESIS_SETTINGS = dict(
    deadline=None,
    database=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
#: the same examples on every machine and path (hypothesis' derandomize
#: hashes the test's location); NSJ_HYPOTHESIS_RANDOM=1 draws new ones
FIXED_SEED = None if os.environ.get("NSJ_HYPOTHESIS_RANDOM", "0") == "1" else 20261125


def fixed_seed(test):
    return test if FIXED_SEED is None else seed(FIXED_SEED)(test)
CORPUS_NAMES = sorted(CORPUS)


pytestmark = pytest.mark.usefixtures("x64")  # conftest.py


# --------------------------------------------------------------------------
# reference (pyhf) and ours, cached per corpus entry
# --------------------------------------------------------------------------


class Ref:
    """pyhf workspace/model/data for one spec."""

    def __init__(self, spec: dict, options: dict):
        self.spec = copy.deepcopy(spec)
        self.options = dict(options)
        kwargs = {}
        if options.get("measurement_name") is not None:
            kwargs["measurement_name"] = options["measurement_name"]
        if options.get("modifier_settings") is not None:
            kwargs["modifier_settings"] = options["modifier_settings"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.ws = pyhf.Workspace(copy.deepcopy(spec))
            self.model = self.ws.model(**kwargs)
        self.data = np.asarray(self.ws.data(self.model), dtype=float)
        cfg = self.model.config
        self.init = np.asarray(cfg.suggested_init(), dtype=float)
        self.bounds = np.asarray(cfg.suggested_bounds(), dtype=float)
        self.fixed = np.asarray(cfg.suggested_fixed(), dtype=bool)

    def logpdf(self, pars, data=None) -> float:
        data = self.data if data is None else data
        with np.errstate(all="ignore"):
            return float(self.model.logpdf(np.asarray(pars, float), np.asarray(data, float))[0])

    def expected(self, pars, include_auxdata=True):
        return np.asarray(self.model.expected_data(np.asarray(pars, float), include_auxdata=include_auxdata), float)

    def points(self, n=3, seed=0):
        """n random points inside the bounds where pyhf's logpdf is finite."""
        out = []
        for attempt, scale in enumerate([1.0, 1.0, 0.5, 0.25, 0.1, 0.05, 0.02]):
            for p in random_points(self.init, self.bounds, 8 * n, seed=seed + 1000 * attempt, scale=scale):
                if np.isfinite(self.logpdf(p)):
                    out.append(p)
                if len(out) == n:
                    return np.asarray(out)
        raise AssertionError(f"could not find {n} points with finite pyhf logpdf")


def build_ours(spec: dict, options: dict):
    ws = nsj.Workspace(copy.deepcopy(spec))
    model = ws.model(measurement_name=options.get("measurement_name"), modifier_settings=options.get("modifier_settings"))
    return ws, model


@functools.lru_cache(maxsize=None)
def ref_case(name: str) -> Ref:
    spec, options = get_case(name)
    return Ref(spec, options)


@functools.lru_cache(maxsize=None)
def our_case(name: str):
    spec, options = get_case(name)
    return build_ours(spec, options)


def seed_of(name: str) -> int:
    return zlib.crc32(name.encode()) % (2**31)


# --------------------------------------------------------------------------
# comparison helpers
# --------------------------------------------------------------------------


def _np(x):
    return np.asarray(jax.device_get(x))


def assert_logpdf(ours, ref: float, what: str):
    ours = _np(ours)
    assert ours.shape == (), f"{what}: logpdf shape {ours.shape}, expected a scalar"
    assert ours.dtype == np.float64, f"{what}: logpdf dtype {ours.dtype}"
    np.testing.assert_allclose(float(ours), ref, rtol=RTOL, atol=LOGPDF_ATOL, err_msg=f"{what}: logpdf ours vs pyhf")


def assert_vec(ours, ref, what: str, rtol=RTOL):
    ours = _np(ours).astype(float)
    ref = np.asarray(ref, float)
    assert ours.shape == ref.shape, f"{what}: shape ours {ours.shape} vs pyhf {ref.shape}"
    atol = 1e-12 * max(1.0, float(np.max(np.abs(ref)))) if ref.size else 0.0
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=atol, err_msg=f"{what}: ours vs pyhf")


def compare_structure(ref: Ref, ws, model, what: str):
    cfg = ref.model.config
    assert list(model.par_names) == list(cfg.par_names), f"{what}: par_names"
    assert model.n_params == cfg.npars, f"{what}: n_params"
    assert model.poi_index == cfg.poi_index, f"{what}: poi_index ours {model.poi_index} vs pyhf {cfg.poi_index}"
    if cfg.poi_index is not None:
        assert model.poi_name == cfg.poi_name, f"{what}: poi_name"
    init = _np(model.suggested_init())
    bounds = _np(model.suggested_bounds())
    fixed = _np(model.suggested_fixed())
    assert init.shape == ref.init.shape and bounds.shape == ref.bounds.shape and fixed.shape == ref.fixed.shape, what
    np.testing.assert_array_equal(init.astype(float), ref.init, err_msg=f"{what}: suggested_init")
    np.testing.assert_array_equal(bounds.astype(float), ref.bounds, err_msg=f"{what}: suggested_bounds")
    assert fixed.dtype == np.bool_, f"{what}: suggested_fixed dtype {fixed.dtype}"
    np.testing.assert_array_equal(fixed, ref.fixed, err_msg=f"{what}: suggested_fixed")
    assert_vec(ws.data(model), ref.data, f"{what}: ws.data(model)", rtol=DATA_RTOL)
    assert_vec(model.data, ref.data, f"{what}: model.data", rtol=DATA_RTOL)


def compare_values(ref: Ref, model, points, what: str):
    data = ref.data
    for i, p in enumerate(points):
        tag = f"{what} @ point {i} {np.array2string(np.asarray(p), precision=6, max_line_width=10**6)}"
        assert_vec(model.expected_data(p), ref.expected(p), f"{tag}: expected_data")
        assert_vec(model.expected_data(p, include_auxdata=False), ref.expected(p, False), f"{tag}: expected_data(no aux)")
        assert_logpdf(model.logpdf(p, data), ref.logpdf(p, data), tag)


def full_compare(ref: Ref, ws, model, seed: int, what: str):
    compare_structure(ref, ws, model, what)
    points = np.vstack([ref.init[None, :], ref.points(3, seed)])
    compare_values(ref, model, points, what)
    return points


# ==========================================================================
# corpus parity
# ==========================================================================


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_corpus_parity(name):
    ref = ref_case(name)
    ws, model = our_case(name)
    points = full_compare(ref, ws, model, seed_of(name), name)
    # nll = -logpdf on the model's own data
    p = points[-1]
    np.testing.assert_allclose(float(model.nll(p)), -ref.logpdf(p), rtol=RTOL, atol=LOGPDF_ATOL, err_msg=f"{name}: nll")


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_corpus_from_pyhf(name):
    spec, options = get_case(name)
    ref = ref_case(name)
    model = nsj.from_pyhf(
        json.dumps(spec), measurement=options.get("measurement_name"), modifier_settings=options.get("modifier_settings")
    )
    assert list(model.par_names) == list(ref.model.config.par_names), name
    assert model.poi_index == ref.model.config.poi_index, name
    assert_vec(model.data, ref.data, f"{name}: from_pyhf model.data", rtol=DATA_RTOL)
    assert_logpdf(model.logpdf(ref.init, ref.data), ref.logpdf(ref.init), f"{name}: from_pyhf at init")


def test_corpus_size():
    assert len(CORPUS) >= 40
    assert ref_case("bench_50ch_4bin_201par").model.config.npars == 201


def test_from_pyhf_path_and_poi_override(tmp_path):
    spec, _ = get_case("edge_multiple_measurements_second_poi")
    path = tmp_path / "ws.json"
    path.write_text(json.dumps(spec))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pyhf.Workspace(spec).model(measurement_name="meas_default", poi_name="mu2")
    for src in (str(path), Path(path)):
        model = nsj.from_pyhf(src, measurement="meas_default", poi="mu2")
        assert model.poi_name == "mu2" and model.poi_index == ref.config.poi_index
        assert list(model.par_names) == list(ref.config.par_names)


# ==========================================================================
# spec worked examples (docs/histfactory-spec.md)
# ==========================================================================

SPEC_7_3 = [
    ([1.0, 0.0, 1.0, 1.0], [55.0, 70.0], -3.5913636517043841),
    ([1.2, 0.5, 0.98, 1.03], [57.28220168594626, 76.67836865696896], -4.7990388970848672),
    ([0.7, -1.5, 1.05, 0.9], [52.11213679473471, 57.00105498886999], -7.1657822323824814),
    ([2.0, 1.0, 1.0, 1.0], [65.0, 86.0], -7.8571136412870004),
    ([0.0, -1.0, 1.0, 1.0], [47.5, 57.0], -4.7152061078364369),
    ([1.0, 2.3, 1.1, 0.95], [73.48033328947389, 80.97052722727294], -11.870590765176109),
]


def test_spec_7_2_parameters_and_data():
    ws, model = our_case("spec_7_1")
    assert list(model.par_names) == ["mu", "bkg_norm", "staterror_SR[0]", "staterror_SR[1]"]
    assert model.poi_index == 0 and model.n_params == 4 and model.poi_name == "mu"
    np.testing.assert_array_equal(_np(model.suggested_init()), [1.0, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(_np(model.suggested_bounds()), [[0, 10], [-5.0, 5.0], [1e-10, 10.0], [1e-10, 10.0]])
    np.testing.assert_array_equal(_np(model.suggested_fixed()), [False] * 4)
    np.testing.assert_array_equal(_np(ws.data(model)), [53.0, 65.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(_np(model.expected_data(model.suggested_init())), [55.0, 70.0, 0.0, 1.0, 1.0], rtol=1e-14)


@pytest.mark.parametrize("pars,nu,logpdf", SPEC_7_3, ids=[f"theta{i}" for i in range(len(SPEC_7_3))])
def test_spec_7_3_logpdf(pars, nu, logpdf):
    ws, model = our_case("spec_7_1")
    data = np.asarray(ws.data(model), float)
    np.testing.assert_allclose(_np(model.expected_data(pars, include_auxdata=False)), nu, rtol=1e-12)
    np.testing.assert_allclose(float(model.logpdf(pars, data)), logpdf, rtol=1e-12)
    np.testing.assert_allclose(float(model.nll(pars)), -logpdf, rtol=1e-12)


def test_spec_7_3_decomposition():
    ws, model = our_case("spec_7_1")
    init = model.suggested_init()
    np.testing.assert_allclose(-2.0 * float(model.logpdf(init, ws.data(model))), 7.1827273034087682, rtol=1e-12)


def test_spec_7_7_layout_masking_values():
    ws, model = our_case("spec_7_7")
    assert list(model.par_names) == [
        "zz_hist", "zeta_norm", "alpha_norm", "mu", "aaa_sys", "sf[0]", "sf[1]",
        "shp[0]", "shp[1]", "staterror_A[0]", "staterror_B[0]", "staterror_B[1]",
    ]  # fmt: skip
    assert model.poi_index == 3
    F, T = False, True
    np.testing.assert_array_equal(_np(model.suggested_fixed()), [F, F, F, F, F, F, F, F, T, F, F, T])
    expected_bounds = [(-5, 5)] + [(0, 10)] * 3 + [(-5, 5)] + [(0, 10)] * 2 + [(1e-10, 10)] * 5
    np.testing.assert_array_equal(_np(model.suggested_bounds()), np.asarray(expected_bounds, float))
    aux = [0.0, 0.0, 25.0, 1.0, 1.0, 1.0, 1.0]
    data = np.asarray([6.0, 12.0, 1.0] + aux)
    np.testing.assert_array_equal(_np(ws.data(model)), data)
    np.testing.assert_allclose(float(model.logpdf(model.suggested_init(), data)), -8.9631798602377657, rtol=1e-12)
    theta = [0.5, 1.2, 0.8, 1.1, -0.7, 1.1, 0.9, 1.05, 1.0, 0.97, 1.02, 1.0]
    np.testing.assert_allclose(
        _np(model.expected_data(theta)), [5.82, 12.3729289, 1.76, 0.5, -0.7, 26.25, 1.0, 0.97, 1.02, 1.0], rtol=1e-8
    )
    np.testing.assert_allclose(float(model.logpdf(theta, data)), -9.1866260113654583, rtol=1e-12)


_ALPHAS = [-2.0, -1.0, -0.5, 0.0, 0.3, 0.5, 1.0, 1.5, 2.0]
_INTERP_TABLE = {
    "code1": [0.9025, 0.95, 0.974679434480896, 1, 1.0290057594211, 1.04880884817015, 1.1, 1.15368973298717, 1.21],
    "code4": [0.9025, 0.95, 0.972357967368117, 1, 1.02596954597297, 1.04657554461115, 1.1, 1.15368973298717, 1.21],
    "code0": [-4, -2, -1, 0, 0.9, 1.5, 3, 4.5, 6],
    "code4p": [-4, -2, -1.0517578125, 0, 0.8294491875, 1.4482421875, 3, 4.5, 6],
    "code2": [-3, -2, -1.125, 0, 0.795, 1.375, 3, 1.75, 3.5],
}


@pytest.mark.parametrize("code", list(_INTERP_TABLE))
def test_spec_3_2_interpolation_table(code):
    """One-bin models: normsys lo 0.95 / hi 1.1 on nominal 1 -> factor; histosys
    lo 8 / nom 10 / hi 13 -> 10 + delta (spec §3.2 reference table)."""
    is_normsys = code in ("code1", "code4")
    modifier = (
        {"name": "a", "type": "normsys", "data": {"hi": 1.1, "lo": 0.95}}
        if is_normsys
        else {"name": "a", "type": "histosys", "data": {"hi_data": [13.0], "lo_data": [8.0]}}
    )
    nominal = 1.0 if is_normsys else 10.0
    spec = {
        "channels": [
            {
                "name": "c",
                "samples": [
                    {"name": "b", "data": [nominal], "modifiers": [modifier]},
                    {"name": "s", "data": [0.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
                ],
            }
        ],
        "observations": [{"name": "c", "data": [1.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }
    settings_ = {"normsys": {"interpcode": code}} if is_normsys else {"histosys": {"interpcode": code}}
    model = nsj.Workspace(spec).model(modifier_settings=settings_)
    ref = Ref(spec, {"modifier_settings": settings_})
    ia = model.par_names.index("a")
    for alpha, want in zip(_ALPHAS, _INTERP_TABLE[code]):
        pars = np.asarray(model.suggested_init(), float).copy()
        pars[ia] = alpha
        got = float(_np(model.expected_data(pars, include_auxdata=False))[0])
        exp_ref = float(ref.expected(pars, False)[0])
        np.testing.assert_allclose(got, exp_ref, rtol=1e-12, atol=1e-13, err_msg=f"{code} alpha={alpha} vs pyhf")
        np.testing.assert_allclose(got, want + (0.0 if is_normsys else nominal), rtol=1e-11, err_msg=f"{code} alpha={alpha}")


# ==========================================================================
# with_yields
# ==========================================================================


def _replace_yields(spec: dict, channel: str, sample: str, yields) -> dict:
    spec = copy.deepcopy(spec)
    hits = 0
    for ch in spec["channels"]:
        if ch["name"] == channel:
            for s in ch["samples"]:
                if s["name"] == sample:
                    s["data"] = [float(v) for v in yields]
                    hits += 1
    assert hits == 1, (channel, sample)
    return spec


def _sample_data(spec, channel, sample):
    for ch in spec["channels"]:
        if ch["name"] == channel:
            for s in ch["samples"]:
                if s["name"] == sample:
                    return np.asarray(s["data"], float)
    raise KeyError((channel, sample))


def _check_with_yields(name, spec, options, model, channel, sample, new_yields, seed):
    """new model from with_yields vs pyhf built from the modified spec."""
    what = f"{name}: with_yields({channel!r}, {sample!r}, {np.round(new_yields, 4).tolist()})"
    old = _np(model.sample_yields(channel, sample)).copy()
    new_model = model.with_yields(channel, sample, np.asarray(new_yields, float))
    ref2 = Ref(_replace_yields(spec, channel, sample, new_yields), options)
    # purity: the original model is untouched
    np.testing.assert_array_equal(_np(model.sample_yields(channel, sample)), old, err_msg=f"{what}: original modified")
    np.testing.assert_allclose(_np(new_model.sample_yields(channel, sample)), new_yields, rtol=1e-15, err_msg=what)
    # structure, masks, auxdata
    cfg = ref2.model.config
    assert list(new_model.par_names) == list(cfg.par_names), what
    np.testing.assert_array_equal(_np(new_model.suggested_init()).astype(float), ref2.init, err_msg=f"{what}: init")
    np.testing.assert_array_equal(_np(new_model.suggested_bounds()).astype(float), ref2.bounds, err_msg=f"{what}: bounds")
    np.testing.assert_array_equal(_np(new_model.suggested_fixed()), ref2.fixed, err_msg=f"{what}: suggested_fixed")
    assert_vec(new_model.data, ref2.data, f"{what}: model.data (observed + new auxdata)", rtol=DATA_RTOL)
    # values, with the new model's data and with the old data vector
    points = np.vstack([ref2.init[None, :], ref2.points(3, seed)])
    compare_values(ref2, new_model, points, what)
    for p in points[1:2]:
        old_data = ref_case(name).data if name in CORPUS else None
        if old_data is not None:
            assert_logpdf(new_model.logpdf(p, old_data), ref2.logpdf(p, old_data), f"{what}: logpdf with original data")
    return new_model, ref2


@pytest.mark.parametrize("name,channel,sample", WITH_YIELDS_CASES, ids=[f"{n}-{c}-{s}" for n, c, s in WITH_YIELDS_CASES])
def test_with_yields(name, channel, sample):
    spec, options = get_case(name)
    _, model = our_case(name)
    rng = np.random.default_rng(seed_of(name + channel + sample))
    nominal = _sample_data(spec, channel, sample)
    for k in range(2):
        new = np.abs(nominal) * rng.uniform(0.5, 1.5, nominal.size) + rng.uniform(0.05, 2.0, nominal.size)
        _check_with_yields(name, spec, options, model, channel, sample, new, seed_of(name) + k)


@pytest.mark.parametrize(
    "name,channel,sample,new",
    [
        ("spec_7_1", "SR", "background", [50.0, 0.0]),  # staterror bin becomes masked
        ("spec_7_7", "B_chan", "bkg", [10.0, 3.0]),  # masked shp[1] / staterror_B[1] become unmasked
        ("edge_shapesys_masked_bins", "SR", "bkg", [50.0, 7.0, 30.0, 0.0, 2.0]),
        ("edge_staterror_zero_yield_bins", "SR", "bkg", [0.0, 4.0, 15.0, 3.0]),
    ],
    ids=["mask_on", "mask_off", "shapesys_remask", "staterror_remask"],
)
def test_with_yields_remask(name, channel, sample, new):
    """Zero / non-zero yields change the staterror/shapesys masks as in pyhf."""
    spec, options = get_case(name)
    _, model = our_case(name)
    _check_with_yields(name, spec, options, model, channel, sample, np.asarray(new, float), 7)


def test_with_yields_errors():
    _, model = our_case("spec_7_1")
    with pytest.raises(nsj.NextStatJaxError):
        model.with_yields("SR", "signal", [1.0, 2.0, 3.0])
    with pytest.raises(nsj.NextStatJaxError):
        model.with_yields("nope", "signal", [1.0, 2.0])
    with pytest.raises(nsj.NextStatJaxError):
        model.with_yields("SR", "nope", [1.0, 2.0])
    with pytest.raises(nsj.NextStatJaxError):
        model.sample_yields("SR", "nope")


# ==========================================================================
# autodiff, vmap, jit
# ==========================================================================

GRAD_CASES = [
    "spec_7_7",
    "xml_datadriven",
    "mod_combined_modifiers",
    "edge_measurement_overrides",
    "edge_normsys_histosys_same_name",
    "edge_staterror_shared_across_channels",
    "interp_code1_code0",
    "interp_code4_code2",
    "bench_50ch_4bin_full",
]


def _fd_grad(f, x, rel=1e-6):
    x = np.asarray(x, float)
    g = np.empty_like(x)
    for i in range(x.size):
        h = rel * max(1.0, abs(x[i]))
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        g[i] = (f(xp) - f(xm)) / (xp[i] - xm[i])
    return g


@pytest.mark.parametrize("name", GRAD_CASES)
def test_grad_wrt_parameters(name):
    ref = ref_case(name)
    _, model = our_case(name)
    p = ref.points(1, seed_of(name) + 17)[0]
    g = _np(jax.grad(model.logpdf)(jax.numpy.asarray(p), ref.data))
    fd = _fd_grad(ref.logpdf, p)
    scale = max(1.0, abs(ref.logpdf(p)))
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6 * scale, err_msg=f"{name}: d logpdf / d pars, ours vs pyhf FD")


YIELD_GRAD_CASES = [WITH_YIELDS_CASES[i] for i in (1, 2, 4, 5, 7, 8)]


@pytest.mark.parametrize("name,channel,sample", YIELD_GRAD_CASES, ids=[f"{n}-{c}-{s}" for n, c, s in YIELD_GRAD_CASES])
def test_grad_wrt_yields(name, channel, sample):
    spec, options = get_case(name)
    ref = ref_case(name)
    _, model = our_case(name)
    rng = np.random.default_rng(seed_of(name) + 6)
    nominal = _sample_data(spec, channel, sample)
    y0 = np.abs(nominal) * rng.uniform(0.7, 1.3, nominal.size) + rng.uniform(0.5, 1.0, nominal.size)
    # a point where pyhf's logpdf is finite for the new yields (histosys templates
    # stay as they are, so large alphas can make rates negative)
    p = Ref(_replace_yields(spec, channel, sample, y0), options).points(1, seed_of(name) + 5)[0]

    def ours(y):
        return model.with_yields(channel, sample, y).logpdf(p, ref.data)

    g = _np(jax.grad(ours)(jax.numpy.asarray(y0)))

    def theirs(y):
        return Ref(_replace_yields(spec, channel, sample, y), options).logpdf(p, ref.data)

    fd = _fd_grad(theirs, y0)
    scale = max(1.0, abs(theirs(y0)))
    np.testing.assert_allclose(float(ours(y0)), theirs(y0), rtol=RTOL, atol=LOGPDF_ATOL, err_msg=f"{name}: value")
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6 * scale, err_msg=f"{name}: d logpdf / d yields, ours vs pyhf FD")


VMAP_CASES = ["spec_7_7", "bench_50ch_4bin_201par"]


@pytest.mark.parametrize("name", VMAP_CASES)
def test_vmap_and_jit_match_eager(name):
    ref = ref_case(name)
    _, model = our_case(name)
    P = random_points(ref.init, ref.bounds, 16, seed=seed_of(name) + 3, scale=0.5)
    eager = np.asarray([float(model.logpdf(p, ref.data)) for p in P])
    batched = _np(jax.vmap(model.logpdf, in_axes=(0, None))(jax.numpy.asarray(P), ref.data))
    assert batched.shape == (16,)
    np.testing.assert_allclose(batched, eager, rtol=1e-11, err_msg=f"{name}: vmap over pars vs loop")
    np.testing.assert_allclose(eager, [ref.logpdf(p) for p in P], rtol=RTOL, atol=LOGPDF_ATOL, err_msg=f"{name}: vs pyhf")
    jitted = jax.jit(model.logpdf)
    for p in P[:4]:
        np.testing.assert_allclose(float(jitted(p, ref.data)), float(model.logpdf(p, ref.data)), rtol=1e-11, err_msg=f"{name}: jit")
    # vmap over data (e.g. toys) at fixed parameters
    D = np.vstack([ref.data * f for f in (0.9, 1.0, 1.1)])
    bd = _np(jax.vmap(model.logpdf, in_axes=(None, 0))(P[0], jax.numpy.asarray(D)))
    np.testing.assert_allclose(bd, [ref.logpdf(P[0], d) for d in D], rtol=RTOL, atol=LOGPDF_ATOL, err_msg=f"{name}: vmap data")
    # vmap of expected_data
    be = _np(jax.vmap(model.expected_data)(jax.numpy.asarray(P[:3])))
    for k in range(3):
        assert_vec(be[k], ref.expected(P[k]), f"{name}: vmap expected_data row {k}")


def test_with_yields_no_recompile():
    name, channel, sample = "spec_7_7", "B_chan", "bkg"
    ref = ref_case(name)
    _, model = our_case(name)
    traces = []

    @jax.jit
    def f(m, p, d):
        traces.append(1)
        return m.logpdf(p, d)

    p = ref.points(1, 11)[0]
    m1 = model.with_yields(channel, sample, np.asarray([11.0, 2.0]))
    m2 = model.with_yields(channel, sample, np.asarray([8.5, 4.0]))
    v1 = float(f(m1, p, ref.data))
    v2 = float(f(m2, p, ref.data))
    assert len(traces) == 1, f"jitted function retraced for a second with_yields model ({len(traces)} traces)"
    assert v1 != v2
    np.testing.assert_allclose(v2, float(m2.logpdf(p, ref.data)), rtol=1e-11)

    # a jitted function of the yields themselves
    ntr = []

    @jax.jit
    def g(y):
        ntr.append(1)
        return model.with_yields(channel, sample, y).logpdf(p, ref.data)

    g(jax.numpy.asarray([11.0, 2.0]))
    g(jax.numpy.asarray([8.5, 4.0]))
    assert len(ntr) == 1
    np.testing.assert_allclose(float(g(jax.numpy.asarray([8.5, 4.0]))), v2, rtol=1e-11)


def test_with_yields_same_treedef_as_original():
    """The original model and a with_yields model share one compiled function."""
    ref = ref_case("spec_7_1")
    _, model = our_case("spec_7_1")
    traces = []

    @jax.jit
    def f(m, p, d):
        traces.append(1)
        return m.logpdf(p, d)

    f(model, ref.init, ref.data)
    f(model.with_yields("SR", "signal", np.asarray([6.0, 9.0])), ref.init, ref.data)
    f(model.with_yields("SR", "background", np.asarray([40.0, 70.0])), ref.init, ref.data)
    assert jax.tree_util.tree_structure(model) == jax.tree_util.tree_structure(model.with_yields("SR", "signal", [6.0, 9.0]))
    assert len(traces) == 1, f"{len(traces)} traces for the original + two with_yields models"


def test_float64_without_global_x64_flag():
    """With jax_enable_x64 off (the default): eager logpdf on NumPy float64 input,
    jax.jit on float64 jax arrays and jax.vmap still give pyhf's float64 values
    (spec §7.3).  (A user's jax.jit/jax.grad on NumPy inputs canonicalises them
    to float32 before the package sees them; that is not asserted here.)"""
    code = textwrap.dedent(
        f"""
        import json, numpy as np, jax
        assert not jax.config.jax_enable_x64
        import nextstat_jax as nsj
        import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
        from corpus import spec_7_1
        ws = nsj.Workspace(spec_7_1()); model = ws.model()
        data = np.asarray(ws.data(model), dtype=np.float64)
        p = np.asarray([1.2, 0.5, 0.98, 1.03])
        out = {{}}
        out["dtype"] = str(np.asarray(model.logpdf(p, data)).dtype)
        out["eager"] = float(model.logpdf(p, data))
        out["nll"] = float(model.nll(p))
        with jax.enable_x64(True):
            pj, dj = jax.numpy.asarray(p), jax.numpy.asarray(data)
        out["jit_f64_arrays"] = float(jax.jit(model.logpdf)(pj, dj))
        out["vmap"] = float(jax.vmap(model.logpdf, in_axes=(0, None))(np.stack([p, p]), data)[1])
        out["jit_numpy_inputs"] = float(jax.jit(model.logpdf)(p, data))
        print(json.dumps(out))
        """
    )
    env = dict(os.environ)
    env.pop("JAX_ENABLE_X64", None)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=str(Path(__file__).parents[1]))
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["dtype"] == "float64", out
    want = -4.7990388970848672
    np.testing.assert_allclose(out["eager"], want, rtol=1e-12, err_msg="eager, x64 flag off")
    np.testing.assert_allclose(out["nll"], -want, rtol=1e-12, err_msg="nll, x64 flag off")
    np.testing.assert_allclose(out["jit_f64_arrays"], want, rtol=1e-12, err_msg="jit on float64 arrays, x64 flag off")
    np.testing.assert_allclose(out["vmap"], want, rtol=1e-12, err_msg="vmap, x64 flag off")
    # float32 canonicalisation of NumPy inputs by the user's jit: float32 accuracy only
    np.testing.assert_allclose(out["jit_numpy_inputs"], want, rtol=1e-5)


# ==========================================================================
# invalid input
# ==========================================================================


@pytest.mark.parametrize("name", sorted(INVALID_CORPUS))
def test_invalid_workspaces_raise(name):
    spec = INVALID_CORPUS[name]()
    options = INVALID_OPTIONS.get(name, {})
    with pytest.raises(Exception):  # pyhf rejects it too (sanity check of the corpus)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ws = pyhf.Workspace(copy.deepcopy(spec))
            ws.data(ws.model(**options))
    with pytest.raises(nsj.NextStatJaxError):
        ws = nsj.Workspace(copy.deepcopy(spec))
        ws.model(modifier_settings=options.get("modifier_settings"))


def test_logpdf_wrong_lengths_raise():
    ws, model = our_case("spec_7_1")
    data = np.asarray(ws.data(model), float)
    with pytest.raises(nsj.NextStatJaxError):
        model.logpdf(np.ones(3), data)
    with pytest.raises(nsj.NextStatJaxError):
        model.logpdf(np.ones(4), data[:-1])


# ==========================================================================
# random workspaces (hypothesis)
# ==========================================================================


@fixed_seed
@settings(max_examples=int(os.environ.get("NSJ_HYPOTHESIS_EXAMPLES", "40")), **HYPOTHESIS_SETTINGS)
@given(case=workspace_cases(), seed=st.integers(0, 2**31 - 1))
def test_hypothesis_parity(case, seed):
    spec, options = case
    note(f"spec = {json.dumps(spec)}")
    note(f"options = {json.dumps(options)}")
    ref = Ref(spec, options)
    ws, model = build_ours(spec, options)
    full_compare(ref, ws, model, seed, "hypothesis workspace")


@fixed_seed
@settings(max_examples=int(os.environ.get("NSJ_HYPOTHESIS_EXAMPLES_WY", "12")), **HYPOTHESIS_SETTINGS)
@given(case=workspace_cases(), data=st.data())
def test_hypothesis_with_yields(case, data):
    spec, options = case
    note(f"spec = {json.dumps(spec)}")
    note(f"options = {json.dumps(options)}")
    pairs = [(c["name"], s["name"], len(s["data"])) for c in spec["channels"] for s in c["samples"]]
    channel, sample, nb = data.draw(st.sampled_from(pairs))
    new = data.draw(st.lists(st.floats(0.1, 150.0), min_size=nb, max_size=nb))
    note(f"with_yields({channel!r}, {sample!r}, {new})")
    _, model = build_ours(spec, options)
    _check_with_yields("hypothesis workspace", spec, options, model, channel, sample, np.asarray(new, float), 3)
