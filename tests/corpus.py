"""A corpus of HistFactory workspaces for differential tests against pyhf 0.7.6.

Every entry of :data:`CORPUS` is a plain function that returns a fresh pyhf
JSON workspace (schema version 1.0.0) as a Python dict.  Options needed to
build the model (``modifier_settings``, ``measurement_name``) live in
:data:`OPTIONS` under the same key; :func:`get_case` returns both.

The workspaces reconstruct, in our own compact code, the models of pyhf's test
and validation suites (``tests/test_validation.py``, ``tests/test_pdf.py``,
``tests/test_modifiers.py``, ``tests/test_simplemodels.py``,
``tests/test_workspace.py``, ``tests/test_export``, ``tests/test_patchset`` and
the XML-imported workspaces of pyhf's ``validation/`` directory) plus edge
cases from ``docs/histfactory-spec.md`` (§7.1 and §7.7 verbatim, masking,
couplings, interpolation codes, measurement overrides, a 201-parameter
50-channel model and the seed notebook workspace).
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np

__all__ = ["CORPUS", "OPTIONS", "get_case", "workspace", "channel", "sample", "mod", "shaped_signal_workspace"]

CORPUS: dict[str, Callable[[], dict]] = {}
OPTIONS: dict[str, dict[str, Any]] = {}

# interpolation settings used by pyhf's tests/test_validation.py (normsys only:
# histosys silently falls back to code0, see spec §3.2 / pitfall 4)
VALIDATION_SETTINGS = {"normsys": {"interpcode": "code1"}}


def register(name: str, **options):
    """Decorator: add a workspace constructor to the corpus."""

    def deco(fn: Callable[[], dict]) -> Callable[[], dict]:
        if name in CORPUS:
            raise KeyError(f"duplicate corpus entry {name!r}")
        CORPUS[name] = fn
        OPTIONS[name] = dict(options)
        return fn

    return deco


def get_case(name: str) -> tuple[dict, dict]:
    """(fresh workspace dict, options) for a corpus entry."""
    return CORPUS[name](), copy.deepcopy(OPTIONS[name])


# --------------------------------------------------------------------------
# small builders
# --------------------------------------------------------------------------


def _f(xs) -> list[float]:
    return [float(x) for x in np.asarray(xs, dtype=float).ravel()]


def mod(name: str, type_: str, data=None) -> dict:
    """One modifier.  ``data``: None, {"hi","lo"}, (lo_data, hi_data) or a list."""
    if type_ == "normsys":
        data = {"hi": float(data[0]), "lo": float(data[1])} if isinstance(data, (tuple, list)) else data
    elif type_ == "histosys":
        if isinstance(data, (tuple, list)):
            lo, hi = data
            data = {"hi_data": _f(hi), "lo_data": _f(lo)}
    elif type_ in ("staterror", "shapesys"):
        data = _f(data)
    else:
        data = None
    return {"name": name, "type": type_, "data": data}


def normfactor(name="mu"):
    return mod(name, "normfactor")


def normsys(name, hi, lo):
    return {"name": name, "type": "normsys", "data": {"hi": float(hi), "lo": float(lo)}}


def histosys(name, lo_data, hi_data):
    return {"name": name, "type": "histosys", "data": {"hi_data": _f(hi_data), "lo_data": _f(lo_data)}}


def staterror(name, data):
    return mod(name, "staterror", data)


def shapesys(name, data):
    return mod(name, "shapesys", data)


def shapefactor(name):
    return mod(name, "shapefactor")


def lumi():
    return mod("lumi", "lumi")


def sample(name: str, data, modifiers=()) -> dict:
    return {"name": name, "data": _f(data), "modifiers": list(modifiers)}


def channel(name: str, samples) -> dict:
    return {"name": name, "samples": list(samples)}


def lumi_config(L=1.0, rel=0.1, bounds=None, fixed=None) -> dict:
    """Measurement config of the lumi parameter, pyhf readxml convention."""
    cfg = {
        "name": "lumi",
        "auxdata": [float(L)],
        "inits": [float(L)],
        "sigmas": [float(L * rel)],
        "bounds": bounds if bounds is not None else [[L - 5 * L * rel, L + 5 * L * rel]],
    }
    if fixed is not None:
        cfg["fixed"] = fixed
    return cfg


def workspace(channels, observations: dict, poi="mu", parameters=(), measurements=None) -> dict:
    """Assemble a workspace.  ``observations``: {channel name: data}.

    ``measurements``: optional list of (name, poi, parameters) triples; default
    one measurement "meas".
    """
    if measurements is None:
        measurements = [("meas", poi, list(parameters))]
    return {
        "channels": list(channels),
        "observations": [{"name": k, "data": _f(v)} for k, v in observations.items()],
        "measurements": [
            {"name": n, "config": {"poi": p, "parameters": copy.deepcopy(list(ps))}}
            for n, p, ps in measurements
        ],
        "version": "1.0.0",
    }


# XML-import (readxml) measurement configs used by pyhf's validation/ workspaces
def _xml_params(poi="SigXsecOverSM", poi_bounds=(0.0, 10.0), extra=()):
    return [
        {"name": "lumi", "auxdata": [1.0], "bounds": [[0.5, 1.5]], "inits": [1.0], "sigmas": [0.1], "fixed": True},
        {"name": poi, "bounds": [list(map(float, poi_bounds))], "inits": [1.0]},
        *extra,
    ]


# ==========================================================================
# pyhf tests/test_validation.py and validation/data/*.json
# (models built with modifier_settings={"normsys": {"interpcode": "code1"}})
# ==========================================================================


def _single(sig, bkg, bkg_mods, obs, ch="singlechannel"):
    return workspace(
        [channel(ch, [sample("signal", sig, [normfactor()]), sample("background", bkg, bkg_mods)])],
        {ch: obs},
    )


@register("val_1bin_shapesys", modifier_settings=VALIDATION_SETTINGS)
def val_1bin_shapesys():
    return _single([10.0], [50.0], [shapesys("uncorr_bkguncrt", [7.0])], [55.0])


@register("val_1bin_shapesys_q0", modifier_settings=VALIDATION_SETTINGS)
def val_1bin_shapesys_q0():
    return _single([25.0], [50.0], [shapesys("uncorr_bkguncrt", [7.0])], [80.0])


@register("val_1bin_lumi", modifier_settings=VALIDATION_SETTINGS)
def val_1bin_lumi():
    ch = channel(
        "channel1",
        [
            sample("signal", [20.0], [normfactor()]),
            sample("background1", [100.0], [lumi()]),
            sample("background2", [0.0], [lumi()]),
        ],
    )
    params = [{"auxdata": [1.0], "bounds": [[0.0, 10.0]], "inits": [1.0], "name": "lumi", "sigmas": [0.1]}]
    return workspace([ch], {"channel1": [55.0]}, parameters=params)


@register("val_1bin_normsys", modifier_settings=VALIDATION_SETTINGS)
def val_1bin_normsys():
    # "1bin" in pyhf's name, but the source file has two bins
    return _single([30.0, 95.0], [100.0, 150.0], [normsys("bkg_norm", 1.10, 0.90)], [120.0, 180.0])


@register("val_1bin_histosys", modifier_settings=VALIDATION_SETTINGS)
def val_1bin_histosys():
    return _single([30.0], [100.0], [histosys("bkg_norm", [90.0], [110.0])], [120.0])


@register("val_2bin_histosys", modifier_settings=VALIDATION_SETTINGS)
def val_2bin_histosys():
    # validation/data/2bin_histosys_example2.json
    return _single([30.0, 95.0], [100.0, 150.0], [histosys("bkg_norm", [98, 100], [102, 190])], [120.0, 180.0])


@register("val_2bin_histosys_example1", modifier_settings=VALIDATION_SETTINGS)
def val_2bin_histosys_example1():
    # validation/data/2bin_histosys.json
    return _single([30.0, 95.0], [100.0, 150.0], [histosys("bkg_norm", [90, 100], [110, 190])], [120.0, 180.0])


@register("val_2bin_shapesys", modifier_settings=VALIDATION_SETTINGS)
def val_2bin_shapesys():
    # validation/data/2bin_example1.json
    return _single([30.0, 95.0], [100.0, 150.0], [shapesys("uncorr_bkguncrt", [15.0, 20.0])], [120.0, 180.0])


@register("val_2bin_statex")
def val_2bin_statex():
    # validation/data/2bin_statex.json; staterror over two samples (quadrature),
    # bkg3 without the modifier (tests/test_pdf.py::test_pdf_integration_staterror
    # uses bkg1err = 12)
    ch = channel(
        "firstchannel",
        [
            sample("mu", [10.0, 10.0], [normfactor()]),
            sample("bkg1", [50.0, 70.0], [staterror("stat_firstchannel", [10.0, 10.0])]),
            sample("bkg2", [30.0, 20.0], [staterror("stat_firstchannel", [5.0, 5.0])]),
            sample("bkg3", [20.0, 15.0]),
        ],
    )
    return workspace([ch], {"firstchannel": [100.0, 100.0]})


def _two_channel(sig_samples, ctrl_samples, obs_sig, obs_ctrl):
    return workspace(
        [channel("signal", sig_samples), channel("control", ctrl_samples)],
        {"signal": obs_sig, "control": obs_ctrl},
    )


@register("val_2bin_2channel", modifier_settings=VALIDATION_SETTINGS)
def val_2bin_2channel():
    return _two_channel(
        [
            sample("signal", [10.0, 35.0], [normfactor()]),
            sample("background", [100.0, 150.0], [shapesys("uncorr_bkguncrt_signal", [10.0, 10.0])]),
        ],
        [sample("background", [200.0, 350.0], [shapesys("uncorr_bkguncrt_control", [5.0, 10.0])])],
        [110.0, 155.0],
        [205.0, 345.0],
    )


@register("val_2bin_2channel_couplednorm", modifier_settings=VALIDATION_SETTINGS)
def val_2bin_2channel_couplednorm():
    return _two_channel(
        [
            sample("signal", [10.0, 35.0], [normfactor()]),
            sample("bkg1", [100.0, 100.0], [normsys("coupled_normsys", 1.1, 0.9)]),
            sample("bkg2", [50.0, 100.0], [normsys("coupled_normsys", 1.5, 0.5)]),
        ],
        [sample("background", [100.0, 100.0], [normsys("coupled_normsys", 1.1, 0.9)])],
        [105.0, 220.0],
        [110.0, 105.0],
    )


@register("val_2bin_2channel_coupledhistosys", modifier_settings=VALIDATION_SETTINGS)
def val_2bin_2channel_coupledhistosys():
    return _two_channel(
        [
            sample("signal", [30.0, 35.0], [normfactor()]),
            sample("bkg1", [100.0, 100.0], [histosys("coupled_histosys", [90, 90], [110, 110])]),
            sample("bkg2", [50.0, 120.0], [histosys("coupled_histosys", [45, 45], [55, 55])]),
        ],
        [sample("background", [105.0, 100.0], [histosys("coupled_histosys", [95, 90], [110, 115])])],
        [170.0, 220.0],
        [110.0, 105.0],
    )


@register("val_2bin_2channel_coupledshapefactor", modifier_settings=VALIDATION_SETTINGS)
def val_2bin_2channel_coupledshapefactor():
    return _two_channel(
        [
            sample("signal", [20.0, 20.0], [normfactor()]),
            sample("bkg1", [100.0, 70.0], [shapefactor("coupled_shapefactor")]),
        ],
        [sample("background", [100.0, 100.0], [shapefactor("coupled_shapefactor")])],
        [220.0, 230.0],
        [200.0, 300.0],
    )


# ==========================================================================
# pyhf validation/ XML workspaces (structure and numbers of pyhf.readxml output)
# ==========================================================================

_F7 = 7.000000029802322  # float32 round trips as produced by readxml
_F5 = 5.000000074505806
_F10 = 10.000000149011612


@register("xml_multibin_histfactory")
def xml_multibin_histfactory():
    ch = channel(
        "channel1",
        [
            sample("signal", [10.0, 0.0], [normfactor("SigXsecOverSM")]),
            sample("bkg", [50.0, 0.0], [lumi(), shapesys("uncorrshape", [_F7, 0.0])]),
        ],
    )
    return workspace([ch], {"channel1": [55.0, 0.0]}, poi="SigXsecOverSM", parameters=_xml_params())


@register("xml_multibin_histfactory_p0")
def xml_multibin_histfactory_p0():
    ch = channel(
        "channel1",
        [
            sample("signal", [25.0, 0.0], [normfactor("SigXsecOverSM")]),
            sample("bkg", [50.0, 0.0], [lumi(), shapesys("uncorrshape", [_F7, 0.0])]),
        ],
    )
    return workspace([ch], {"channel1": [80.0, 0.0]}, poi="SigXsecOverSM", parameters=_xml_params())


@register("xml_multichan_coupledhistosys")
def xml_multichan_coupledhistosys():
    # also validation/xmlimport_input2
    c1 = channel(
        "channel1",
        [
            sample("signal", [30.0, 35.0], [normfactor("SigXsecOverSM")]),
            sample("bkg1", [100.0, 100.0], [lumi(), histosys("coupled_histosys", [90, 90], [110, 110])]),
            sample("bkg2", [50.0, 120.0], [lumi(), histosys("coupled_histosys", [45, 45], [55, 55])]),
        ],
    )
    c2 = channel("channel2", [sample("bkg1", [105.0, 100.0], [lumi(), histosys("coupled_histosys", [95, 90], [110, 115])])])
    return workspace(
        [c1, c2], {"channel1": [170.0, 220.0], "channel2": [110.0, 105.0]}, poi="SigXsecOverSM", parameters=_xml_params()
    )


@register("xml_multichan_coupledoverall")
def xml_multichan_coupledoverall():
    c1 = channel(
        "channel1",
        [
            sample("signal", [10.0, 35.0], [normfactor("SigXsecOverSM")]),
            sample("bkg1", [100.0, 100.0], [lumi(), normsys("coupled_overall", 1.1, 0.9)]),
            sample("bkg2", [50.0, 100.0], [lumi(), normsys("coupled_overall", 1.5, 0.5)]),
        ],
    )
    c2 = channel("channel2", [sample("bkg1", [100.0, 100.0], [lumi(), normsys("coupled_overall", 1.1, 0.9)])])
    return workspace(
        [c1, c2], {"channel1": [105.0, 220.0], "channel2": [110.0, 105.0]}, poi="SigXsecOverSM", parameters=_xml_params()
    )


@register("xml_multichannel_histfactory")
def xml_multichannel_histfactory():
    c1 = channel(
        "channel1",
        [
            sample("signal", [10.0, 35.0], [normfactor("SigXsecOverSM")]),
            sample("bkg", [100.0, 150.0], [lumi(), shapesys("uncorrshape_signal", [_F10, 10.000000521540642])]),
        ],
    )
    c2 = channel("channel2", [sample("bkg", [200.0, 350.0], [lumi(), shapesys("uncorrshape_control", [_F5, 10.000000055879354])])])
    return workspace(
        [c1, c2], {"channel1": [110.0, 155.0], "channel2": [205.0, 345.0]}, poi="SigXsecOverSM", parameters=_xml_params()
    )


@register("xml_overallsys_histfactory")
def xml_overallsys_histfactory():
    ch = channel(
        "channel1",
        [
            sample("signal", [30.0, 95.0], [normfactor("SigXsecOverSM")]),
            sample("bkg", [100.0, 150.0], [lumi(), normsys("norm", 1.1, 0.9)]),
        ],
    )
    return workspace([ch], {"channel1": [120.0, 180.0]}, poi="SigXsecOverSM", parameters=_xml_params())


@register("xml_shared_nuispar_across_types")
def xml_shared_nuispar_across_types():
    # normsys and histosys with the same name share one alpha (spec §2.5)
    ch = channel(
        "channel1",
        [
            sample("signal", [3.0, 1.0], [normfactor("SigXsecOverSM")]),
            sample(
                "background",
                [12.0, 13.0],
                [normsys("sharednuis", 1.05, 0.95), histosys("sharednuis", [10, 11], [14, 15])],
            ),
        ],
    )
    return workspace([ch], {"channel1": [15.0, 16.0]}, poi="SigXsecOverSM", parameters=_xml_params(poi_bounds=(0, 3)))


@register("xml_shared_nuispar_notshared")
def xml_shared_nuispar_notshared():
    ch = channel(
        "channel1",
        [
            sample("signal", [3.0, 1.0], [normfactor("SigXsecOverSM")]),
            sample(
                "background",
                [12.0, 13.0],
                [normsys("firstsyst", 1.05, 0.95), histosys("secondsyst", [10, 11], [14, 15])],
            ),
        ],
    )
    return workspace([ch], {"channel1": [15.0, 16.0]}, poi="SigXsecOverSM", parameters=_xml_params(poi_bounds=(0, 3)))


def _xmlimport_input_channels():
    return [
        channel(
            "channel1",
            [
                sample("signal", [20.0, 10.0], [normsys("syst1", 1.05, 0.95), normfactor("SigXsecOverSM")]),
                sample(
                    "background1",
                    [100.0, 0.0],
                    [lumi(), staterror("staterror_channel1", [_F5, 0.0]), normsys("syst2", 1.05, 0.95)],
                ),
                sample(
                    "background2",
                    [0.0, 100.0],
                    [lumi(), staterror("staterror_channel1", [0.0, 10.0]), normsys("syst3", 1.05, 0.95)],
                ),
            ],
        )
    ]


def _xmlimport_input(syst_cfg_name):
    params = _xml_params(poi_bounds=(0, 3), extra=[{"name": syst_cfg_name, "fixed": True}])
    meas = [(n, "SigXsecOverSM", params) for n in ("GaussExample", "GammaExample", "LogNormExample", "ConstExample")]
    return workspace(_xmlimport_input_channels(), {"channel1": [122.0, 112.0]}, measurements=meas)


@register("xml_xmlimport_input")
def xml_xmlimport_input():
    # four measurements; the first is used by default.  "syst1" is fixed by config.
    return _xmlimport_input("syst1")


@register("xml_xmlimport_input_const_measurement", measurement_name="ConstExample")
def xml_xmlimport_input_const_measurement():
    ws = _xmlimport_input("syst1")
    # make the chosen measurement distinguishable from the default one
    cfg = ws["measurements"][3]["config"]["parameters"]
    cfg[1]["bounds"] = [[0.0, 5.0]]
    cfg[1]["inits"] = [2.0]
    cfg.append({"name": "syst2", "inits": [0.5]})
    return ws


@register("patchset_example_bkgonly")
def patchset_example_bkgonly():
    # tests/test_patchset/example_bkgonly.json: the config names "alpha_syst1",
    # which matches no modifier and is silently ignored by pyhf
    return _xmlimport_input("alpha_syst1")


@register("xml_xmlimport_input3")
def xml_xmlimport_input3():
    ch = channel(
        "channel1",
        [
            sample("signal", [20.0, 10.0], [normsys("syst1", 1.05, 0.95), normfactor("SigXsecOverSM")]),
            sample(
                "background1",
                [100.0, 9.999999747378752e-05],
                [lumi(), shapesys("bkg1Shape", [_F10, 1.500000021711456e-05])],
            ),
            sample(
                "background2",
                [9.999999747378752e-05, 100.0],
                [lumi(), shapesys("bkg2Shape", [4.99999994819518e-06, 20.000000298023224])],
            ),
        ],
    )
    params = _xml_params(poi_bounds=(0, 3), extra=[{"name": "syst1", "fixed": True}])
    return workspace([ch], {"channel1": [122.0, 112.0]}, poi="SigXsecOverSM", parameters=params)


@register("xml_shapesys_masked")
def xml_shapesys_masked():
    # validation/xmlimport_input/config/examples/example_ShapeSys.xml
    ch = channel(
        "channel1",
        [
            sample("signal", [20.0, 10.0], [normsys("syst1", 1.05, 0.95), normfactor("SigXsecOverSM")]),
            sample("background1", [100.0, 0.0], [lumi(), shapesys("bkg1Shape", [_F10, 0.0])]),
            sample("background2", [0.0, 100.0], [lumi(), shapesys("bkg2Shape", [0.0, 20.000000298023224])]),
        ],
    )
    params = _xml_params(poi_bounds=(0, 3), extra=[{"name": "syst1", "fixed": True}])
    return workspace([ch], {"channel1": [122.0, 112.0]}, poi="SigXsecOverSM", parameters=params)


@register("xml_datadriven")
def xml_datadriven():
    # validation/xmlimport_input/config/examples/example_DataDriven.xml:
    # shapefactor shared by a signal and a control region, two staterrors,
    # a normsys coupled across channels, POI bounds (0.2, 1.5)
    s4 = 4.4721360206604
    sr = channel(
        "signalRegion",
        [
            sample("signal", [10.0, 80.0], [normsys("syst_signal", 1.05, 0.95), normfactor("SigXsecOverSM")]),
            sample(
                "background1",
                [20.0, 20.0],
                [lumi(), staterror("staterror_signalRegion", [s4, s4]), normsys("bkg1CrossSection", 1.05, 0.95)],
            ),
            sample(
                "background2", [1.0, 1.0], [normsys("syst_bkg2Extrapolation", 1.05, 0.95), shapefactor("Bkg2Shape")]
            ),
        ],
    )
    cr = channel(
        "controlRegion",
        [
            sample(
                "background1",
                [20.0, 20.0],
                [lumi(), staterror("staterror_controlRegion", [s4, s4]), normsys("bkg1CrossSection", 1.05, 0.95)],
            ),
            sample("background2", [1.0, 1.0], [shapefactor("Bkg2Shape")]),
        ],
    )
    params = _xml_params(poi_bounds=(0.2, 1.5), extra=[{"name": "syst1", "fixed": True}])
    return workspace(
        [sr, cr], {"signalRegion": [90.0, 110.0], "controlRegion": [75.0, 35.0]}, poi="SigXsecOverSM", parameters=params
    )


# ==========================================================================
# pyhf tests/test_pdf.py, test_modifiers.py, test_workspace.py, test_export,
# test_simplemodels.py
# ==========================================================================


@register("pdf_minimum_model_spec")
def pdf_minimum_model_spec():
    return workspace([channel("channel", [sample("goodsample", [1.0], [normfactor()])])], {"channel": [2.0]})


@register("pdf_basicapi_uncorrelated")
def pdf_basicapi_uncorrelated():
    # tests/test_pdf.py::test_pdf_basicapi_tests (simplemodels.uncorrelated_background)
    return _single([10.0], [50.0], [shapesys("uncorr_bkguncrt", [7.0])], [55.0])


@register("pdf_shapesys_zeros")
def pdf_shapesys_zeros():
    # zero nominal, zero uncertainty and tiny (0.1/0.1 -> tau = 1) bins
    ch = channel(
        "channel1",
        [
            sample("signal", [20.0, 10.0, 5.0, 3.0, 2.0, 1.0], [normfactor()]),
            sample("background1", [100.0, 90, 0.0, 70, 0.1, 50], [shapesys("syst", [10, 9, 1, 0.0, 0.1, 5])]),
        ],
    )
    return workspace([ch], {"channel1": [118, 103, 4, 75, 3, 49]})


@register("pdf_override_paramset_defaults")
def pdf_override_paramset_defaults():
    # tests/test_pdf.py::test_override_paramset_defaults (inits/bounds on shapesys;
    # values moved so that the inits lie inside the bounds)
    ws = _single([30.0, 95.0], [100.0, 150.0], [shapesys("bkg_norm", [10, 10])], [120.0, 180.0])
    ws["measurements"][0]["config"]["parameters"] = [
        {"name": "bkg_norm", "inits": [1.2, 0.9], "bounds": [[0.5, 1.5], [0.6, 1.6]]}
    ]
    return ws


@register("pdf_lumi_np_scaling")
def pdf_lumi_np_scaling():
    ch = channel(
        "channel1",
        [
            sample("signal", [20.0, 10.0], [normfactor("SigXsecOverSM"), lumi()]),
            sample("background1", [100.0, 0.0]),
            sample("background2", [0.0, 100.0], [lumi()]),
        ],
    )
    params = [{"auxdata": [1.0], "bounds": [[0.0, 10.0]], "inits": [1.0], "name": "lumi", "sigmas": [0.1]}]
    return workspace([ch], {"channel1": [125.0, 105.0]}, poi="SigXsecOverSM", parameters=params)


@register("pdf_fixed_poi")
def pdf_fixed_poi():
    ch = channel(
        "channel",
        [
            sample("sample", [10.0], [normfactor("unfixed")]),
            sample("another_sample", [5.0], [normfactor("mypoi")]),
        ],
    )
    return workspace([ch], {"channel": [14.0]}, poi="mypoi", parameters=[{"name": "mypoi", "inits": [1], "fixed": True}])


@register("pdf_fixed_shapesys")
def pdf_fixed_shapesys():
    ch = channel(
        "channel",
        [
            sample("sample", [10.0] * 3, [normfactor("unfixed"), shapesys("uncorr", [1.5] * 3)]),
            sample("another_sample", [5.0] * 3, [normfactor("mypoi")]),
        ],
    )
    params = [{"name": "uncorr", "inits": [1.0, 2.0, 3.0], "fixed": True}]
    return workspace([ch], {"channel": [16.0, 24.0, 36.0]}, poi="mypoi", parameters=params)


@register("pdf_par_names_scalar_nonscalar")
def pdf_par_names_scalar_nonscalar():
    ch = channel("channel", [sample("goodsample", [1.0], [normfactor("scalar"), shapesys("nonscalar", [1.0])])])
    return workspace([ch], {"channel": [2.0]}, poi="scalar")


@register("pdf_make_model_with_tensors")
def pdf_make_model_with_tensors():
    # tests/test_pdf.py::test_make_model_with_tensors: every modifier type, a
    # shapefactor and histosys shared by two channels, an inverted normsys
    # (hi < 1 < lo), histosys templates equal to the nominal
    nom = [60.0, 62.0]

    def mods(extra):
        return [
            normfactor(),
            lumi(),
            shapefactor("mod_name"),
            histosys("corr_bkguncrt2", nom, nom),
            *extra,
            normsys("norm", 0.95, 1.05),
        ]

    c1 = channel("achannel", [sample("background", nom, mods([staterror("staterror2", [5.0, 5.0])]))])
    c2 = channel(
        "secondchannel",
        [sample("background", nom, mods([shapesys("uncorr_bkguncrt2", [5.0, 5.0]), staterror("staterror", [5.0, 5.0])]))],
    )
    params = [{"name": "lumi", "auxdata": [1.0], "bounds": [[0.5, 1.5]], "inits": [1.0], "sigmas": [0.2]}]
    return workspace([c1, c2], {"achannel": [58.0, 65.0], "secondchannel": [61.0, 60.0]}, parameters=params)


@register("pdf_clipping_histosys")
def pdf_clipping_histosys():
    # tests/test_pdf.py::test_pdf_clipping (negative rates possible at alpha < 0)
    hs = lambda n: histosys(n, [175.0, 10.0], [125.0, 75.0])  # noqa: E731
    hs2 = lambda n: histosys(n, [1200.0], [15500.0])  # noqa: E731
    c1 = channel("ch1", [sample("signal", [100.0, 100.0], [normfactor("mu_sig"), hs("np_1"), hs("np_2")])])
    c2 = channel("ch2", [sample("signal", [15000.0], [normfactor("mu_sig"), hs2("np_1"), hs2("np_2")])])
    return workspace([c1, c2], {"ch1": [100.0, 100.0], "ch2": [10.0]}, poi="mu_sig")


@register("pdf_reproducible_model_spec")
def pdf_reproducible_model_spec():
    ch = channel("SR", [sample("Signal", [10.0], [normfactor()])])
    return workspace([ch], {"SR": [12.0]}, parameters=[{"bounds": [[0, 5]], "inits": [1], "name": "mu"}])


@register("mod_shapefactor_build")
def mod_shapefactor_build():
    ch = channel(
        "channel",
        [
            sample("sample", [10.0] * 3, [normfactor()]),
            sample("another_sample", [5.0] * 3, [shapefactor("freeshape")]),
        ],
    )
    return workspace([ch], {"channel": [14.0, 16.0, 15.5]})


@register("mod_staterror_holes")
def mod_staterror_holes():
    # zero-nominal and zero-uncertainty staterror bins (masked, fixed)
    c1 = channel(
        "channel1",
        [sample("another_sample", [50, 0, 0, 70], [normfactor(), staterror("staterror_1", [5, 0, 5, 5])])],
    )
    c2 = channel("channel2", [sample("another_sample", [50, 0, 10, 70], [staterror("staterror_2", [5, 0, 5, 5])])])
    return workspace([c1, c2], {"channel1": [52, 0, 0, 66], "channel2": [47, 0, 12, 73]})


@register("mod_shapesys_holes")
def mod_shapesys_holes():
    c1 = channel(
        "channel1",
        [sample("another_sample", [50, 60, 0, 70], [normfactor(), shapesys("freeshape1", [5, 0, 5, 5])])],
    )
    c2 = channel("channel2", [sample("another_sample", [50, 60, 0, 70], [shapesys("freeshape2", [5, 0, 5, 5])])])
    return workspace([c1, c2], {"channel1": [52, 61, 0, 66], "channel2": [47, 58, 0, 73]})


@register("mod_issue1720_shapesys_poi")
def mod_issue1720_shapesys_poi():
    # a one-component shapesys as POI, observed 0
    ch = channel("channel", [sample("signal", [5.0]), sample("bkg", [1.0], [shapesys("NP", [1.5])])])
    return workspace([ch], {"channel": [0.0]}, poi="NP")


@register("mod_issue1720_staterror_poi")
def mod_issue1720_staterror_poi():
    ch = channel("channel", [sample("signal", [5.0]), sample("bkg", [1.0], [staterror("NP", [1.5])])])
    return workspace([ch], {"channel": [0.0]}, poi="NP")


@register("mod_combined_modifiers")
def mod_combined_modifiers():
    # tests/test_combined_modifiers.py-like: 3 bins, several histosys/normsys per
    # sample (deltas add, factors multiply), lumi, two staterrors
    c1 = channel(
        "chan1",
        [
            sample(
                "signal",
                [10.0, 11.0, 12.0],
                [
                    normfactor("mu1"),
                    histosys("hello", [9, 8, 7], [11, 12, 13]),
                    histosys("world", [5, 6, 7], [10, 10, 10]),
                    normsys("nhello", 1.1, 0.9),
                    normsys("nworld", 1.3, 0.7),
                    lumi(),
                    staterror("staterror_chan1", [1.0, 1.2, 1.3]),
                ],
            ),
            sample(
                "background",
                [20.0, 20.0, 20.0],
                [
                    normfactor("mu2"),
                    histosys("hello", [19, 18, 17], [21, 22, 23]),
                    normsys("nhello", 1.2, 0.8),
                    normsys("nworld", 1.4, 0.6),
                    lumi(),
                    staterror("staterror_chan1", [2.0, 2.0, 2.0]),
                ],
            ),
        ],
    )
    c2 = channel(
        "chan2",
        [
            sample(
                "background",
                [30.0, 25.0, 20.0],
                [normfactor("mu2"), shapesys("shapesys1", [3.0, 2.5, 4.0]), staterror("staterror_chan2", [1, 1.2, 1.3])],
            )
        ],
    )
    params = [lumi_config(1.0, 0.05)]
    return workspace([c1, c2], {"chan1": [31, 33, 35], "chan2": [28, 26, 21]}, poi="mu1", parameters=params)


@register("ws_poiless")
def ws_poiless():
    # tests/test_workspace/poiless.json: measurement poi "" means no POI
    ws = _single([12.0, 11.0], [50.0, 52.0], [shapesys("uncorr_bkguncrt", [3, 7])], [51.0, 48.0])
    ws["measurements"][0]["config"]["poi"] = ""
    return ws


@register("export_integer_data")
def export_integer_data():
    ws = _single([5.0], [50.0], [shapesys("uncorr_bkguncrt", [6.0])], [50.0])
    ws["measurements"][0]["config"]["parameters"] = [
        {"bounds": [[0, 10]], "fixed": False, "inits": [1], "name": "mu"},
        {"bounds": [[1e-10, 10]], "fixed": False, "inits": [1], "name": "uncorr_bkguncrt"},
    ]
    ws["observations"][0]["data"] = [50]
    ws["channels"][0]["samples"][0]["data"] = [5]
    ws["channels"][0]["samples"][1]["data"] = [50]
    return ws


@register("export_no_parameter_bounds")
def export_no_parameter_bounds():
    ch = channel("ch", [sample("signal", [1000.0], [normfactor("mu_sig"), normsys("unc", 1.5, 0.5)])])
    return workspace([ch], {"ch": [1000.0]}, poi="mu_sig", parameters=[{"name": "mu_sig", "inits": [5]}])


@register("export_no_parameter_inits")
def export_no_parameter_inits():
    ch = channel("ch", [sample("signal", [1000.0], [normfactor("mu_sig"), normsys("unc", 1.5, 0.5)])])
    return workspace([ch], {"ch": [1000.0]}, poi="mu_sig", parameters=[{"name": "mu_sig", "bounds": [[-5, 5]]}])


@register("simplemodels_correlated_background")
def simplemodels_correlated_background():
    ch = channel(
        "single_channel",
        [
            sample("signal", [12.0, 11.0], [normfactor()]),
            sample("background", [50.0, 52.0], [histosys("correlated_bkg_uncertainty", [55.0, 47.0], [45.0, 57.0])]),
        ],
    )
    return workspace([ch], {"single_channel": [51.0, 48.0]})


@register("simplemodels_uncorrelated_background")
def simplemodels_uncorrelated_background():
    return _single([12.0, 11.0], [50.0, 52.0], [shapesys("uncorr_bkguncrt", [3.0, 7.0])], [51.0, 48.0])


# ==========================================================================
# spec examples (docs/histfactory-spec.md §7.1 and §7.7, verbatim)
# ==========================================================================


@register("spec_7_1")
def spec_7_1():
    return {
        "channels": [
            {
                "name": "SR",
                "samples": [
                    {"name": "signal", "data": [5.0, 10.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
                    {
                        "name": "background",
                        "data": [50.0, 60.0],
                        "modifiers": [
                            {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.95}},
                            {"name": "staterror_SR", "type": "staterror", "data": [5.0, 3.0]},
                        ],
                    },
                ],
            }
        ],
        "observations": [{"name": "SR", "data": [53.0, 65.0]}],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }


@register("spec_7_1_deficit")
def spec_7_1_deficit():
    ws = spec_7_1()
    ws["observations"][0]["data"] = [45.0, 55.0]
    return ws


@register("spec_7_7")
def spec_7_7():
    b_chan = channel(
        "B_chan",
        [
            sample("sig", [1.0, 2.0], [normfactor("mu"), normfactor("alpha_norm")]),
            sample(
                "bkg",
                [10.0, 0.0],
                [
                    normsys("aaa_sys", 1.1, 0.9),
                    histosys("zz_hist", [9.0, 0.0], [11.0, 0.0]),
                    staterror("staterror_B", [1.0, 0.0]),
                    shapesys("shp", [2.0, 0.0]),
                    shapefactor("sf"),
                ],
            ),
        ],
    )
    a_chan = channel("A_chan", [sample("bkg", [5.0], [normfactor("zeta_norm"), staterror("staterror_A", [0.5])])])
    # JSON order B_chan, A_chan: main data is A_chan first (sorted)
    return workspace([b_chan, a_chan], {"B_chan": [12.0, 1.0], "A_chan": [6.0]})


# ==========================================================================
# our edge cases
# ==========================================================================


@register("edge_staterror_zero_yield_bins")
def edge_staterror_zero_yield_bins():
    # bin 1: all carrying samples zero -> masked; bin 2: zero uncertainty -> masked;
    # bin 3: the only non-zero sample does not carry the staterror -> masked
    ch = channel(
        "SR",
        [
            sample("signal", [3.0, 2.0, 1.0, 4.0], [normfactor()]),
            sample("bkg", [20.0, 0.0, 15.0, 0.0], [staterror("staterror_SR", [2.0, 0.0, 0.0, 0.0])]),
            sample("other", [5.0, 0.0, 1.0, 7.0]),
        ],
    )
    return workspace([ch], {"SR": [27.0, 1.0, 18.0, 12.0]})


@register("edge_staterror_shared_across_channels")
def edge_staterror_shared_across_channels():
    # one staterror name in two channels: separate components per channel bin,
    # concatenated in sorted channel order; two carrying samples in each channel
    def chan(name, b1, b2, u1, u2, s):
        return channel(
            name,
            [
                sample("signal", s, [normfactor()]),
                sample("bkg1", b1, [staterror("stat_shared", u1)]),
                sample("bkg2", b2, [staterror("stat_shared", u2), normsys("b2norm", 1.2, 0.85)]),
            ],
        )

    c_sr = chan("SR", [30.0, 20.0, 10.0], [10.0, 5.0, 0.0], [3.0, 2.5, 2.0], [1.0, 1.0, 0.0], [4.0, 6.0, 3.0])
    c_cr = chan("CR", [100.0, 80.0], [40.0, 0.0], [5.0, 4.0], [2.0, 0.0], [0.5, 0.5])
    return workspace([c_sr, c_cr], {"SR": [45.0, 30.0, 12.0], "CR": [139.0, 84.0]})


@register("edge_staterror_quadrature_three_samples")
def edge_staterror_quadrature_three_samples():
    ch = channel(
        "SR",
        [
            sample("signal", [5.0, 6.0, 7.0], [normfactor(), staterror("staterror_SR", [0.5, 0.7, 0.9])]),
            sample("bkg_a", [40.0, 30.0, 20.0], [staterror("staterror_SR", [4.0, 3.5, 3.0])]),
            sample("bkg_b", [10.0, 20.0, 0.0], [staterror("staterror_SR", [2.0, 2.5, 0.0])]),
            sample("bkg_c", [8.0, 8.0, 8.0], [normsys("c_norm", 1.3, 0.8)]),
        ],
    )
    return workspace([ch], {"SR": [66.0, 60.0, 37.0]})


@register("edge_shapesys_masked_bins")
def edge_shapesys_masked_bins():
    ch = channel(
        "SR",
        [
            sample("signal", [5.0, 3.0, 2.0, 1.0, 0.5], [normfactor()]),
            sample("bkg", [50.0, 0.0, 30.0, 20.0, 0.0], [shapesys("bkg_shape", [5.0, 2.0, 0.0, 4.0, 0.0])]),
            sample("bkg2", [10.0, 10.0, 10.0, 10.0, 10.0], [shapesys("bkg2_shape", [1.0, 2.0, 3.0, 0.0, 1.0])]),
        ],
    )
    return workspace([ch], {"SR": [63.0, 12.0, 41.0, 33.0, 11.0]})


@register("edge_normsys_histosys_same_name")
def edge_normsys_histosys_same_name():
    # "jes" is a normsys on one sample and a histosys on another (and both on a
    # third): one merged alpha
    ch = channel(
        "SR",
        [
            sample("signal", [5.0, 8.0, 4.0], [normfactor(), normsys("jes", 1.08, 0.93)]),
            sample("bkg1", [40.0, 30.0, 20.0], [histosys("jes", [38.0, 29.0, 21.0], [43.0, 31.0, 18.0])]),
            sample(
                "bkg2",
                [10.0, 12.0, 14.0],
                [normsys("jes", 1.02, 0.97), histosys("jes", [9.0, 12.5, 13.0], [11.0, 11.0, 15.5])],
            ),
        ],
    )
    return workspace([ch], {"SR": [57.0, 52.0, 39.0]})


@register("edge_shapefactor_shared_across_channels")
def edge_shapefactor_shared_across_channels():
    # shared by local bin index across channels of equal bin count, and by two
    # samples in one channel
    sr = channel(
        "SR",
        [
            sample("signal", [5.0, 10.0, 3.0], [normfactor()]),
            sample("bkg", [50.0, 40.0, 30.0], [shapefactor("sf_shared")]),
            sample("bkg_other", [10.0, 10.0, 10.0], [shapefactor("sf_shared"), shapefactor("sf_other")]),
        ],
    )
    cr = channel("CR", [sample("bkg", [200.0, 150.0, 100.0], [shapefactor("sf_shared")])])
    vr = channel("VR", [sample("bkg", [80.0, 70.0, 60.0], [shapefactor("sf_shared"), normsys("vr_norm", 1.1, 0.9)])])
    return workspace([sr, cr, vr], {"SR": [68, 61, 44], "CR": [210, 140, 105], "VR": [83, 66, 62]})


@register("edge_negative_sample_yields")
def edge_negative_sample_yields():
    # an interference-like sample with negative yields; total rates stay positive
    ch = channel(
        "SR",
        [
            sample("signal", [5.0, 8.0, 3.0], [normfactor()]),
            sample("interference", [-2.0, -3.0, 0.5], [normfactor("mu_int")]),
            sample("bkg", [50.0, 40.0, 30.0], [normsys("bkg_norm", 1.1, 0.9), staterror("staterror_SR", [3.0, 2.0, 2.0])]),
        ],
    )
    return workspace([ch], {"SR": [53.0, 46.0, 33.0]})


def _interp_ws():
    ch = channel(
        "SR",
        [
            sample("signal", [5.0, 10.0, 4.0], [normfactor(), normsys("sig_theory", 1.15, 0.88)]),
            sample(
                "bkg",
                [50.0, 60.0, 30.0],
                [
                    normsys("bkg_norm", 1.1, 0.95),
                    normsys("bkg_asym", 1.03, 1.01),  # same-side variation
                    histosys("bkg_shape", [45.0, 62.0, 27.0], [53.0, 57.0, 34.0]),
                    histosys("bkg_shape2", [49.0, 58.0, 30.0], [51.5, 61.0, 30.5]),
                ],
            ),
        ],
    )
    cr = channel("CR", [sample("bkg", [200.0, 180.0], [normsys("bkg_norm", 1.08, 0.9), histosys("bkg_shape", [190, 185], [212, 176])])])
    return workspace([ch, cr], {"SR": [57.0, 68.0, 36.0], "CR": [205.0, 178.0]})


_INTERP_SETTINGS = {
    "interp_default": None,
    "interp_code4_code4p_explicit": {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}},
    "interp_code1_code0": {"normsys": {"interpcode": "code1"}, "histosys": {"interpcode": "code0"}},
    "interp_code1_code2": {"normsys": {"interpcode": "code1"}, "histosys": {"interpcode": "code2"}},
    "interp_code4_code2": {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code2"}},
    "interp_code1_code4p": {"normsys": {"interpcode": "code1"}, "histosys": {"interpcode": "code4p"}},
    "interp_partial_normsys_code4": {"normsys": {"interpcode": "code4"}},  # histosys -> code0
    "interp_partial_histosys_code4p": {"histosys": {"interpcode": "code4p"}},  # normsys -> code1
    "interp_empty_settings": {},  # both fall back: code1 / code0
}
for _name, _settings in _INTERP_SETTINGS.items():
    register(_name, **({} if _settings is None else {"modifier_settings": _settings}))(_interp_ws)


@register("edge_lumi_config")
def edge_lumi_config():
    # lumi with readxml-convention config (L = 1, 2% relative), not fixed
    ch = channel(
        "SR",
        [
            sample("signal", [6.0, 9.0], [normfactor(), lumi()]),
            sample("bkg_mc", [40.0, 30.0], [lumi(), normsys("xsec", 1.05, 0.95)]),
            sample("bkg_dd", [20.0, 25.0], [normfactor("dd_norm")]),
        ],
    )
    return workspace([ch], {"SR": [67.0, 66.0]}, parameters=[lumi_config(1.0, 0.02)])


@register("edge_lumi_nominal_two")
def edge_lumi_nominal_two():
    # lumi with a nominal of 2 (inits/auxdata 2, sigma 0.1): rates scale with lambda
    ch = channel("SR", [sample("signal", [3.0, 4.0], [normfactor(), lumi()]), sample("bkg", [20.0, 15.0], [lumi()])])
    return workspace([ch], {"SR": [47.0, 40.0]}, parameters=[lumi_config(2.0, 0.05)])


@register("edge_measurement_overrides")
def edge_measurement_overrides():
    # overrides of inits/bounds/fixed/auxdata/sigmas/factors on every kind
    ch = channel(
        "SR",
        [
            sample("signal", [5.0, 10.0, 6.0], [normfactor(), shapefactor("sig_shape")]),
            sample(
                "bkg",
                [50.0, 60.0, 40.0],
                [
                    normsys("bkg_norm", 1.1, 0.9),
                    histosys("bkg_hist", [48.0, 61.0, 37.0], [52.0, 58.0, 43.0]),
                    staterror("staterror_SR", [5.0, 4.0, 3.0]),
                    lumi(),
                ],
            ),
            sample("bkg2", [20.0, 10.0, 5.0], [shapesys("bkg2_uncorr", [2.0, 2.0, 1.0]), normsys("bkg2_norm", 1.2, 0.8)]),
        ],
    )
    params = [
        {"name": "mu", "inits": [0.5], "bounds": [[-2.0, 5.0]]},
        {"name": "sig_shape", "inits": [1.0, 1.1, 0.9], "bounds": [[0, 5], [0, 5], [0, 5]], "fixed": True},
        {"name": "bkg_norm", "auxdata": [0.3], "inits": [0.2], "bounds": [[-3.0, 3.0]]},
        {"name": "bkg_hist", "fixed": True, "inits": [0.5]},
        {"name": "staterror_SR", "sigmas": [0.2, 0.05, 0.1], "auxdata": [1.0, 0.98, 1.03], "inits": [1.0, 1.0, 1.02]},
        {"name": "bkg2_uncorr", "factors": [90.0, 20.0, 30.0], "auxdata": [100.0, 25.0, 24.0]},
        {"name": "bkg2_norm", "fixed": True},
        lumi_config(1.0, 0.03),
        {"name": "does_not_exist", "inits": [3.0]},  # silently ignored by pyhf
    ]
    return workspace([ch], {"SR": [76.0, 83.0, 52.0]}, parameters=params)


@register("edge_staterror_fixed_false")
def edge_staterror_fixed_false():
    # "fixed": false on staterror/shapesys un-fixes their masked bins (pitfall 22)
    ch = channel(
        "SR",
        [
            sample("signal", [4.0, 3.0, 2.0], [normfactor()]),
            sample("bkg", [30.0, 0.0, 20.0], [staterror("staterror_SR", [3.0, 0.0, 2.0]), shapesys("bkg_shape", [3.0, 1.0, 0.0])]),
        ],
    )
    params = [{"name": "staterror_SR", "fixed": False}, {"name": "bkg_shape", "fixed": False}]
    return workspace([ch], {"SR": [35.0, 2.0, 21.0]}, parameters=params)


@register("edge_staterror_fixed_true")
def edge_staterror_fixed_true():
    ws = edge_staterror_fixed_false()
    ws["measurements"][0]["config"]["parameters"] = [{"name": "staterror_SR", "fixed": True}]
    return ws


@register("edge_unsorted_channels")
def edge_unsorted_channels():
    # channels and samples in reverse-alphabetical JSON order; observations in yet
    # another order
    chans = [
        channel("zz_SR", [sample("zsig", [3.0, 5.0], [normfactor()]), sample("abkg", [30.0, 20.0], [normsys("zz_norm", 1.1, 0.9)])]),
        channel("mm_VR", [sample("zsig", [1.0], [normfactor()]), sample("abkg", [50.0], [staterror("staterror_mm", [4.0])])]),
        channel(
            "aa_CR",
            [
                sample("mbkg", [10.0, 12.0, 14.0], [normfactor("a_norm")]),
                sample("abkg", [100.0, 90.0, 80.0], [normsys("zz_norm", 1.05, 0.97), shapefactor("cr_sf")]),
            ],
        ),
    ]
    obs = {"mm_VR": [52.0], "aa_CR": [112.0, 99.0, 97.0], "zz_SR": [35.0, 24.0]}
    return workspace(chans, obs)


@register("edge_samples_in_some_channels")
def edge_samples_in_some_channels():
    chans = [
        channel("SR", [sample("signal", [5.0, 7.0], [normfactor()]), sample("ttbar", [30.0, 25.0], [normsys("tt_xsec", 1.1, 0.9)])]),
        channel("CR_tt", [sample("ttbar", [200.0], [normsys("tt_xsec", 1.1, 0.9)]), sample("wjets", [50.0], [normfactor("w_norm")])]),
        channel("CR_w", [sample("wjets", [150.0, 120.0], [normfactor("w_norm")]), sample("zjets", [20.0, 10.0])]),
    ]
    return workspace(chans, {"SR": [36, 33], "CR_tt": [251], "CR_w": [172, 128]})


@register("edge_noninteger_observations")
def edge_noninteger_observations():
    ch = channel("SR", [sample("signal", [2.5, 3.5], [normfactor()]), sample("bkg", [10.25, 7.75], [staterror("staterror_SR", [1.5, 1.25])])])
    return workspace([ch], {"SR": [13.37, 9.5]})


@register("edge_zero_observations_and_empty_bin")
def edge_zero_observations_and_empty_bin():
    # a bin where every sample is zero and the observation is zero (nu = 0, x = 0)
    ch = channel("SR", [sample("signal", [1.0, 0.0, 2.0], [normfactor()]), sample("bkg", [4.0, 0.0, 0.5], [normsys("bn", 1.2, 0.8)])])
    return workspace([ch], {"SR": [0.0, 0.0, 3.0]})


@register("edge_histosys_on_zero_nominal")
def edge_histosys_on_zero_nominal():
    ch = channel(
        "SR",
        [
            sample("signal", [2.0, 3.0], [normfactor()]),
            sample("bkg", [10.0, 0.0], [histosys("hs", [9.0, 0.0], [11.5, 0.8])]),
        ],
    )
    return workspace([ch], {"SR": [12.0, 4.0]})


@register("edge_many_systematics_one_sample")
def edge_many_systematics_one_sample():
    mods = [normfactor()]
    for i, (hi, lo) in enumerate([(1.1, 0.9), (1.05, 0.97), (0.96, 1.02), (1.2, 0.85)]):
        mods.append(normsys(f"ns{i}", hi, lo))
    for i, d in enumerate([(-2.0, 1.5, -1.0), (1.0, 0.5, 0.25), (-0.5, -0.5, 1.0)]):
        nom = np.array([20.0, 15.0, 10.0])
        mods.append(histosys(f"hs{i}", nom - np.array(d), nom + np.array(d) * 1.3))
    ch = channel("SR", [sample("signal", [20.0, 15.0, 10.0], mods), sample("bkg", [5.0, 5.0, 5.0], [normsys("ns2", 1.3, 0.6)])])
    return workspace([ch], {"SR": [27.0, 19.0, 16.0]})


@register("edge_multiple_measurements_second_poi", measurement_name="meas_alt")
def edge_multiple_measurements_second_poi():
    ch = channel(
        "SR",
        [
            sample("signal", [5.0, 10.0], [normfactor("mu")]),
            sample("signal2", [2.0, 6.0], [normfactor("mu2")]),
            sample("bkg", [50.0, 60.0], [normsys("bkg_norm", 1.1, 0.9), staterror("staterror_SR", [5.0, 3.0])]),
        ],
    )
    meas = [
        ("meas_default", "mu", []),
        ("meas_alt", "mu2", [{"name": "mu", "fixed": True, "inits": [0.0]}, {"name": "mu2", "bounds": [[-1.0, 20.0]]}]),
    ]
    return workspace([ch], {"SR": [58.0, 75.0]}, measurements=meas)


@register("edge_normsys_inverted_and_one_sided")
def edge_normsys_inverted_and_one_sided():
    ch = channel(
        "SR",
        [
            sample("signal", [5.0, 5.0], [normfactor()]),
            sample(
                "bkg",
                [40.0, 35.0],
                [normsys("inv", 0.9, 1.1), normsys("onesided_up", 1.2, 1.0), normsys("onesided_dn", 1.0, 0.8), normsys("flat", 1.0, 1.0)],
            ),
        ],
    )
    return workspace([ch], {"SR": [44.0, 41.0]})


@register("edge_poi_not_first")
def edge_poi_not_first():
    # spec §2.2 ordering: histosys and lumi precede normfactors, staterrors sorted
    chans = [
        channel(
            "B_chan",
            [
                sample("sig", [3.0, 4.0], [normfactor("mu"), normfactor("alpha_norm")]),
                sample("bkg", [20.0, 30.0], [histosys("zz_hist", [19, 28], [21, 33]), lumi(), staterror("staterror_b", [2.0, 3.0])]),
            ],
        ),
        channel("A_chan", [sample("bkg", [40.0], [normfactor("zeta_norm"), staterror("staterror_a", [4.0])])]),
    ]
    return workspace(chans, {"B_chan": [24.0, 36.0], "A_chan": [41.0]}, parameters=[lumi_config(1.0, 0.04)])


@register("bench_50ch_4bin_201par")
def bench_50ch_4bin_201par():
    """50 channels x 4 bins; one POI normfactor + one staterror per channel
    (4 components each) = 201 parameters; signal and background shapes vary
    smoothly over the channels."""
    rng = np.random.default_rng(20240601)
    chans, obs = [], {}
    x = np.arange(4)
    for i in range(50):
        sig = 2.0 + 3.0 * np.exp(-0.5 * ((x - 1.5 - 0.02 * i) / 1.2) ** 2)
        bkg = (60.0 + i) * np.exp(-0.3 * x)
        unc = 0.05 * bkg + 0.5
        name = f"ch{i:02d}"
        chans.append(
            channel(
                name,
                [
                    sample("signal", np.round(sig, 6), [normfactor()]),
                    sample("background", np.round(bkg, 6), [staterror(f"staterror_{name}", np.round(unc, 6))]),
                ],
            )
        )
        obs[name] = rng.poisson(sig + bkg).astype(float)
    return workspace(chans, obs)


@register("bench_50ch_4bin_full")
def bench_50ch_4bin_full():
    """The 201-parameter model plus a normsys per channel and shared systematics
    (a coupled normsys, a coupled histosys, lumi): 254 parameters."""
    ws = bench_50ch_4bin_201par()
    for i, ch in enumerate(ws["channels"]):
        bkg = np.asarray(ch["samples"][1]["data"])
        ch["samples"][1]["modifiers"] += [
            normsys(f"bkg_norm_{i:02d}", 1.0 + 0.05 + 0.001 * i, 0.95 - 0.001 * i),
            normsys("bkg_xsec", 1.07, 0.94),
            histosys("bkg_shape", bkg * np.array([0.97, 0.99, 1.01, 1.03]), bkg * np.array([1.03, 1.01, 0.99, 0.97])),
            lumi(),
        ]
        ch["samples"][0]["modifiers"].append(lumi())
    ws["measurements"][0]["config"]["parameters"] = [lumi_config(1.0, 0.017)]
    return ws


@register("seed_notebook")
def seed_notebook():
    """The seed notebook workspace (section 1): 8 bins, Gaussian signal,
    exponential background, normsys bkg_norm 1.08/0.92, observed = s + b."""
    n_bins = 8
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    centers = 0.5 * (edges[:-1] + edges[1:])
    width = edges[1] - edges[0]
    signal = 40.0 * np.exp(-0.5 * ((centers - 0.5) / 0.12) ** 2) * width
    background = 200.0 * np.exp(-2.0 * centers) * width
    return {
        "channels": [
            {
                "name": "SR",
                "samples": [
                    {"name": "signal", "data": signal.tolist(), "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
                    {
                        "name": "background",
                        "data": background.tolist(),
                        "modifiers": [{"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.08, "lo": 0.92}}],
                    },
                ],
            }
        ],
        "observations": [{"name": "SR", "data": (signal + background).tolist()}],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }


# --------------------------------------------------------------------------
# handy groupings for the tests
# --------------------------------------------------------------------------

#: entries whose suggested parameter points can produce negative rates in pyhf
#: (NaN logpdf); tests draw points and keep only those where pyhf is finite
NEGATIVE_RATE_RISK = {"pdf_clipping_histosys"}

#: (corpus entry, channel, sample) triples used for with_yields checks
WITH_YIELDS_CASES = [
    ("spec_7_1", "SR", "signal"),
    ("spec_7_1", "SR", "background"),  # staterror sigmas recomputed
    ("spec_7_7", "B_chan", "bkg"),  # staterror + shapesys + masks + histosys
    ("spec_7_7", "A_chan", "bkg"),
    ("val_2bin_2channel", "control", "background"),  # shapesys tau (auxdata) changes
    ("val_2bin_statex", "firstchannel", "bkg2"),  # quadrature staterror
    ("edge_staterror_shared_across_channels", "CR", "bkg1"),
    ("edge_measurement_overrides", "SR", "bkg2"),  # shapesys with factors/auxdata overrides
    ("interp_code1_code2", "SR", "bkg"),  # histosys templates stay
    ("xml_datadriven", "controlRegion", "background2"),
    ("seed_notebook", "SR", "signal"),
    ("bench_50ch_4bin_201par", "ch07", "background"),
]


# ==========================================================================
# invalid workspaces: pyhf 0.7.6 rejects them (InvalidModel, InvalidModifier,
# InvalidNameReuse, InvalidSpecification or a raw TypeError); nextstat_jax must
# raise a NextStatJaxError subclass
# ==========================================================================

INVALID_CORPUS: dict[str, Callable[[], dict]] = {}


def _invalid(name):
    def deco(fn):
        INVALID_CORPUS[name] = fn
        return fn

    return deco


@_invalid("bad_sample_wrong_bins")
def _bad_sample_wrong_bins():
    ws = spec_7_1()
    ws["channels"][0]["samples"][1]["data"] = [50.0, 60.0, 70.0]
    return ws


@_invalid("bad_histosys_length")
def _bad_histosys_length():
    ws = spec_7_1()
    ws["channels"][0]["samples"][1]["modifiers"].append(histosys("hs", [1, 2, 3], [1, 2, 3]))
    return ws


@_invalid("bad_staterror_length")
def _bad_staterror_length():
    ws = spec_7_1()
    ws["channels"][0]["samples"][1]["modifiers"][1]["data"] = [1.0, 2.0, 3.0]
    return ws


@_invalid("bad_shapesys_length")
def _bad_shapesys_length():
    ws = spec_7_1()
    ws["channels"][0]["samples"][0]["modifiers"].append(shapesys("shp", [1.0]))
    return ws


@_invalid("bad_shapesys_shared_two_channels")
def _bad_shapesys_shared_two_channels():
    sr = channel("SR", [sample("Signal", [24.0, 25.0], [shapesys("par", [0.1, 0.2]), normfactor()])])
    cr = channel("CR", [sample("Background", [10.0], [shapesys("par", [0.1])])])
    return workspace([sr, cr], {"SR": [24.0, 24.0], "CR": [10.0]})


@_invalid("bad_shapesys_shared_two_samples")
def _bad_shapesys_shared_two_samples():
    sr = channel(
        "SR",
        [sample("Signal", [50.0], [shapesys("abc", [9.0]), normfactor()]), sample("Background", [150.0], [shapesys("abc", [7.0])])],
    )
    return workspace([sr], {"SR": [160.0]})


@_invalid("bad_name_reuse_normfactor_normsys")
def _bad_name_reuse_normfactor_normsys():
    ch = channel(
        "singlechannel",
        [sample("signal", [5.0], [normfactor("reused_name")]), sample("background", [50.0], [normsys("reused_name", 1.1, 0.9)])],
    )
    return workspace([ch], {"singlechannel": [55.0]}, poi="reused_name")


@_invalid("bad_multi_component_poi")
def _bad_multi_component_poi():
    ch = channel("SR", [sample("Signal", [5.0, 10.0], [shapefactor("mu")])])
    return workspace([ch], {"SR": [5.0, 10.0]})


@_invalid("bad_poi_missing")
def _bad_poi_missing():
    ws = spec_7_1()
    ws["measurements"][0]["config"]["poi"] = "not_a_parameter"
    return ws


@_invalid("bad_override_wrong_length")
def _bad_override_wrong_length():
    ws = _single([30.0, 95.0], [100.0, 150.0], [shapesys("bkg_norm", [10, 10])], [120.0, 180.0])
    ws["measurements"][0]["config"]["parameters"] = [{"name": "bkg_norm", "inits": [1.0, 1.0], "bounds": [[0.5, 1.5]]}]
    return ws


@_invalid("bad_override_key_not_allowed")
def _bad_override_key_not_allowed():
    ws = spec_7_1()
    ws["measurements"][0]["config"]["parameters"] = [{"name": "mu", "sigmas": [0.1]}]
    return ws


@_invalid("bad_duplicate_parameter_config")
def _bad_duplicate_parameter_config():
    ws = spec_7_1()
    ws["measurements"][0]["config"]["parameters"] = [{"name": "mu", "inits": [1.0]}, {"name": "mu", "inits": [2.0]}]
    return ws


@_invalid("bad_lumi_without_config")
def _bad_lumi_without_config():
    ws = spec_7_1()
    ws["channels"][0]["samples"][1]["modifiers"].append(lumi())
    return ws


@_invalid("bad_schema_missing_version")
def _bad_schema_missing_version():
    ws = spec_7_1()
    del ws["version"]
    return ws


@_invalid("bad_schema_unknown_modifier_type")
def _bad_schema_unknown_modifier_type():
    ws = spec_7_1()
    ws["channels"][0]["samples"][0]["modifiers"].append({"name": "x", "type": "fancysys", "data": None})
    return ws


@_invalid("bad_schema_lumi_wrong_name")
def _bad_schema_lumi_wrong_name():
    ws = edge_lumi_config()
    for s in ws["channels"][0]["samples"]:
        for m in s["modifiers"]:
            if m["type"] == "lumi":
                m["name"] = "luminosity"
    return ws


@_invalid("bad_interpcode_normsys")
def _bad_interpcode_normsys():
    return _interp_ws()


INVALID_OPTIONS: dict[str, dict] = {"bad_interpcode_normsys": {"modifier_settings": {"normsys": {"interpcode": "code0"}, "histosys": {"interpcode": "code4p"}}}}


def sr_cr_workspace(signal, signal_modifiers=(), cr_signal_mu: bool = True) -> dict:
    """SR (3 bins): a signal ``signal`` scaled by the POI ``mu`` and by
    ``signal_modifiers`` (copied), beside a background with a normsys and
    per-bin staterrors; CR (2 bins): the same background and a small signal
    (scaled by ``mu`` where ``cr_signal_mu``). Not in the corpus: the solver
    and environment tests build their cases from it."""
    bkg = lambda c, d: {"name": "background", "data": d, "modifiers": [  # noqa: E731
        {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
        {"name": f"stat_{c}", "type": "staterror", "data": [0.1 * x for x in d]}]}
    mu = {"name": "mu", "type": "normfactor", "data": None}
    sig = {"name": "signal", "data": _f(signal), "modifiers": [dict(mu), *copy.deepcopy(list(signal_modifiers))]}
    sig_cr = {"name": "signal", "data": [0.5, 0.2], "modifiers": [dict(mu)] if cr_signal_mu else []}
    return {
        "channels": [{"name": "SR", "samples": [sig, bkg("SR", [20.0, 30.0, 12.0])]},
                     {"name": "CR", "samples": [sig_cr, bkg("CR", [100.0, 80.0])]}],
        "observations": [{"name": "SR", "data": [27.0, 41.0, 14.0]}, {"name": "CR", "data": [103.0, 77.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }


def shaped_signal_workspace(signal, hi, lo) -> dict:
    """:func:`sr_cr_workspace` with a histosys ``sig_shape`` (templates
    ``hi``, ``lo``) and a normsys on the SR signal: the solver tests' cases
    (a tiny signal whose cubic terms couple mu with the shape parameter; a
    signal far from its templates, whose likelihood has two minima)."""
    return sr_cr_workspace(signal, [
        {"name": "sig_shape", "type": "histosys", "data": {"hi_data": _f(hi), "lo_data": _f(lo)}},
        {"name": "sig_norm", "type": "normsys", "data": {"hi": 1.05, "lo": 0.97}}])
