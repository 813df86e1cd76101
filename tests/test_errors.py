"""Semantic errors: bad input that passes the JSON schema (API.md §6, spec §1.5-1.6).

Each test asserts the exception class and that the message names the place
(channel, sample, modifier, parameter, JSON path, observation index).  Schema-level
errors (not JSON, missing keys, unknown modifier type, ...) live in test_schema.py
and test_patches.py.  The last section checks the inputs that must still load.
"""

import copy
import math
import re

import numpy as np
import pyhf
import pytest

import nextstat_jax as nsj

# spec §7.1
BASE = {
    "channels": [
        {
            "name": "SR",
            "samples": [
                {
                    "name": "signal",
                    "data": [5.0, 10.0],
                    "modifiers": [{"name": "mu", "type": "normfactor", "data": None}],
                },
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

# two channels of different bin counts; "signal" only in SR, "qcd" only in CR
TWO_CHANNELS = {
    "channels": [
        {
            "name": "SR",
            "samples": [
                {
                    "name": "signal",
                    "data": [5.0, 10.0],
                    "modifiers": [{"name": "mu", "type": "normfactor", "data": None}],
                },
                {
                    "name": "background",
                    "data": [50.0, 60.0],
                    "modifiers": [{"name": "staterror_all", "type": "staterror", "data": [5.0, 3.0]}],
                },
            ],
        },
        {
            "name": "CR",
            "samples": [
                {
                    "name": "background",
                    "data": [100.0, 120.0, 80.0],
                    "modifiers": [{"name": "staterror_all", "type": "staterror", "data": [4.0, 4.0, 4.0]}],
                },
                {
                    "name": "qcd",
                    "data": [10.0, 12.0, 8.0],
                    "modifiers": [{"name": "qcd_norm", "type": "normfactor", "data": None}],
                },
            ],
        },
    ],
    "observations": [{"name": "SR", "data": [53.0, 65.0]}, {"name": "CR", "data": [110.0, 130.0, 90.0]}],
    "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
    "version": "1.0.0",
}


def spec_with(edit, base=BASE):
    spec = copy.deepcopy(base)
    edit(spec)
    return spec


def sample(spec, name, channel="SR"):
    ch = next(c for c in spec["channels"] if c["name"] == channel)
    return next(s for s in ch["samples"] if s["name"] == name)


def params(spec, *entries):
    spec["measurements"][0]["config"]["parameters"] = list(entries)


def raises(spec, cls, *fragments, **kwargs):
    """``from_pyhf(spec, **kwargs)`` raises ``cls`` whose message contains every fragment."""
    with pytest.raises(cls) as info:
        nsj.from_pyhf(spec, **kwargs)
    check_message(info, *fragments)
    return info


def check_message(info, *fragments):
    err = info.value
    assert isinstance(err, nsj.NextStatJaxError)
    assert isinstance(err, ValueError)
    msg = str(err)
    for f in fragments:
        assert f in msg, f"{f!r} not in message: {msg}"


def test_error_hierarchy():
    for cls in (
        nsj.InvalidModel,
        nsj.InvalidModifier,
        nsj.InvalidNameReuse,
        nsj.InvalidInterpCode,
        nsj.InvalidInput,
        nsj.InvalidPatch,
    ):
        assert issubclass(cls, nsj.NextStatJaxError)
        assert issubclass(cls, ValueError)


def test_base_spec_loads():
    model = nsj.from_pyhf(BASE)
    assert model.par_names == ["mu", "bkg_norm", "staterror_SR[0]", "staterror_SR[1]"]
    assert float(model.logpdf(model.suggested_init())) == pytest.approx(-3.5913636517043841, rel=1e-12)
    two = nsj.from_pyhf(TWO_CHANNELS)
    assert two.channels == ["CR", "SR"]


# ------------------------------------------------------------------ samples, modifiers


def test_sample_bin_count_differs_from_channel():
    spec = spec_with(lambda s: sample(s, "background").update(data=[50.0, 60.0, 70.0]))
    raises(spec, nsj.InvalidModel, "'SR'", "'background'", "3")


def test_histosys_hi_lo_length_mismatch():
    def edit(s):
        sample(s, "background")["modifiers"].append(
            {"name": "jes", "type": "histosys", "data": {"hi_data": [52.0, 62.0, 1.0], "lo_data": [48.0, 58.0]}}
        )

    raises(spec_with(edit), nsj.InvalidModifier, "'jes'", "'background'", "'SR'", "hi_data")

    def edit_lo(s):
        sample(s, "background")["modifiers"].append(
            {"name": "jes", "type": "histosys", "data": {"hi_data": [52.0, 62.0], "lo_data": [48.0]}}
        )

    raises(spec_with(edit_lo), nsj.InvalidModifier, "'jes'", "'background'", "lo_data")


def test_staterror_data_length_mismatch():
    spec = spec_with(lambda s: sample(s, "background")["modifiers"][1].update(data=[5.0]))
    raises(spec, nsj.InvalidModifier, "staterror", "'staterror_SR'", "'background'", "'SR'")


def test_shapesys_data_length_mismatch():
    def edit(s):
        sample(s, "background")["modifiers"].append({"name": "uncorr", "type": "shapesys", "data": [1.0, 2.0, 3.0]})

    raises(spec_with(edit), nsj.InvalidModifier, "shapesys", "'uncorr'", "'background'", "'SR'")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_yield(bad):
    spec = spec_with(lambda s: sample(s, "signal").update(data=[5.0, bad]))
    info = raises(spec, nsj.InvalidModel, "'signal'", "'SR'", "index 1")
    assert "samples[0]" in str(info.value)


@pytest.mark.parametrize(
    "where",
    ["staterror", "shapesys", "histosys_hi", "histosys_lo"],
)
def test_nan_in_modifier_data(where):
    nan = float("nan")

    def edit(s):
        mods = sample(s, "background")["modifiers"]
        if where == "staterror":
            mods[1]["data"] = [5.0, nan]
        elif where == "shapesys":
            mods.append({"name": "uncorr", "type": "shapesys", "data": [nan, 1.0]})
        elif where == "histosys_hi":
            mods.append({"name": "jes", "type": "histosys", "data": {"hi_data": [nan, 62.0], "lo_data": [48.0, 58.0]}})
        else:
            mods.append({"name": "jes", "type": "histosys", "data": {"hi_data": [52.0, 62.0], "lo_data": [48.0, float("inf")]}})

    name = {"staterror": "'staterror_SR'", "shapesys": "'uncorr'"}.get(where, "'jes'")
    raises(spec_with(edit), nsj.InvalidModifier, name, "background", "SR")


@pytest.mark.parametrize("key,value", [("hi", 0.0), ("hi", -1.1), ("lo", 0.0), ("lo", -0.5), ("hi", float("nan"))])
def test_normsys_factor_not_positive(key, value):
    spec = spec_with(lambda s: sample(s, "background")["modifiers"][0]["data"].update({key: value}))
    raises(spec, nsj.InvalidModifier, "'bkg_norm'", "'background'", "'SR'", f"data.{key}")


# ------------------------------------------------------------------------ observations


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_observation_bad_value(bad):
    spec = spec_with(lambda s: s["observations"][0].update(data=[53.0, bad]))
    with pytest.raises(nsj.InvalidModel) as info:
        nsj.Workspace(spec)
    check_message(info, "observations[0]", "data[1]", "'SR'")


def test_observation_wrong_length():
    spec = spec_with(lambda s: s["observations"][0].update(data=[53.0, 65.0, 1.0]))
    with pytest.raises(nsj.InvalidModel) as info:
        nsj.Workspace(spec)
    check_message(info, "observations[0]", "'SR'", "3", "2")


def test_observation_missing_for_a_channel():
    spec = spec_with(lambda s: s["observations"].pop(1), TWO_CHANNELS)
    with pytest.raises(nsj.InvalidModel) as info:
        nsj.Workspace(spec)
    check_message(info, "CR")


def test_observation_duplicated():
    spec = spec_with(lambda s: s["observations"].append({"name": "SR", "data": [1.0, 2.0]}))
    with pytest.raises(nsj.InvalidModel) as info:
        nsj.Workspace(spec)
    check_message(info, "observations[1]", "'SR'", "observations[0]")


# ----------------------------------------------------------------------- names


def test_duplicate_channel_names():
    def edit(s):
        s["channels"].append(copy.deepcopy(s["channels"][0]))

    with pytest.raises(nsj.InvalidModel) as info:
        nsj.Workspace(spec_with(edit))
    check_message(info, "'SR'", "channels[1]")


def test_duplicate_sample_names_in_a_channel():
    def edit(s):
        s["channels"][0]["samples"].append(copy.deepcopy(sample(s, "signal")))

    with pytest.raises(nsj.InvalidModel) as info:
        nsj.Workspace(spec_with(edit))
    check_message(info, "'signal'", "'SR'", "samples[2]")


# ------------------------------------------------------------------------- POI


def test_poi_absent_in_measurement():
    spec = spec_with(lambda s: s["measurements"][0]["config"].update(poi="nope"))
    with pytest.raises(nsj.InvalidModel) as info:
        nsj.Workspace(spec)
    check_message(info, "'nope'", "measurements[0]", "'meas'")


def test_poi_absent_from_pyhf_override():
    with pytest.raises(nsj.InvalidModel) as info:
        nsj.from_pyhf(BASE, poi="nope")
    check_message(info, "'nope'")


def test_poi_with_several_components():
    def edit(s):
        sample(s, "signal")["modifiers"].append({"name": "sf", "type": "shapefactor", "data": None})

    spec = spec_with(edit)
    raises(spec, nsj.InvalidModel, "'sf'", "2 components", poi="sf")
    spec["measurements"][0]["config"]["poi"] = "sf"
    raises(spec, nsj.InvalidModel, "'sf'", "2 components")


# ------------------------------------------------------------- measurement config


def test_inverted_bounds():
    spec = spec_with(lambda s: params(s, {"name": "mu", "bounds": [[5.0, 1.0]], "inits": [3.0]}))
    raises(spec, nsj.InvalidModel, "'mu'", "inverted", "5.0", "1.0")


def test_inverted_bounds_of_a_vector_component():
    spec = spec_with(lambda s: params(s, {"name": "staterror_SR", "bounds": [[0.5, 2.0], [2.0, 0.5]]}))
    raises(spec, nsj.InvalidModel, "'staterror_SR[1]'", "inverted")


def test_init_outside_bounds():
    spec = spec_with(lambda s: params(s, {"name": "mu", "inits": [20.0]}))
    raises(spec, nsj.InvalidModel, "'mu'", "20.0", "outside", "[0.0, 10.0]")


def test_config_list_of_wrong_length():
    spec = spec_with(lambda s: params(s, {"name": "staterror_SR", "inits": [1.0]}))
    raises(spec, nsj.InvalidModel, "'staterror_SR'", "'inits'", "1", "2")
    spec = spec_with(lambda s: params(s, {"name": "mu", "bounds": [[0.0, 5.0], [0.0, 5.0]]}))
    raises(spec, nsj.InvalidModel, "'mu'", "'bounds'")


def test_config_key_the_type_does_not_accept():
    spec = spec_with(lambda s: params(s, {"name": "bkg_norm", "sigmas": [0.5]}))
    raises(spec, nsj.InvalidModel, "'bkg_norm'", "'sigmas'", "normsys")
    spec = spec_with(lambda s: params(s, {"name": "mu", "auxdata": [1.0]}))
    raises(spec, nsj.InvalidModel, "'mu'", "'auxdata'", "normfactor")


def test_lumi_without_config():
    def edit(s):
        sample(s, "signal")["modifiers"].append({"name": "lumi", "type": "lumi", "data": None})

    raises(spec_with(edit), nsj.InvalidModel, "lumi", "'inits'", "'sigmas'")

    def edit_partial(s):
        edit(s)
        params(s, {"name": "lumi", "inits": [1.0], "bounds": [[0.5, 1.5]]})

    raises(spec_with(edit_partial), nsj.InvalidModel, "'lumi'", "auxdata", "sigmas")


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan"), float("inf")])
def test_config_sigma_not_positive_finite(bad):
    # a zero/negative/NaN Gaussian width makes logpdf NaN: reject it (API.md §6: no NaN for valid input)
    spec = spec_with(lambda s: params(s, {"name": "staterror_SR", "sigmas": [0.1, bad]}))
    raises(spec, nsj.InvalidModel, "'staterror_SR'", "sigmas")

    def lumi(s):
        sample(s, "signal")["modifiers"].append({"name": "lumi", "type": "lumi", "data": None})
        params(s, {"name": "lumi", "inits": [1.0], "bounds": [[0.5, 1.5]], "auxdata": [1.0], "sigmas": [bad]})

    raises(spec_with(lumi), nsj.InvalidModel, "'lumi'", "sigmas")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_config_auxdata_not_finite(bad):
    spec = spec_with(lambda s: params(s, {"name": "bkg_norm", "auxdata": [bad]}))
    raises(spec, nsj.InvalidModel, "'bkg_norm'", "auxdata")


def test_duplicate_parameter_config_entries():
    spec = spec_with(lambda s: params(s, {"name": "mu", "inits": [1.0]}, {"name": "mu", "inits": [2.0]}))
    raises(spec, nsj.InvalidModel, "'mu'", "parameters[1]", "twice")


# ------------------------------------------------------------------------- sharing


def test_normfactor_and_normsys_share_a_name():
    def edit(s):
        sample(s, "background")["modifiers"][0]["name"] = "mu"

    raises(spec_with(edit), nsj.InvalidNameReuse, "'mu'", "normfactor", "normsys", "'signal'", "'background'")


def test_shapesys_shared_by_two_samples():
    def edit(s):
        sample(s, "signal")["modifiers"].append({"name": "uncorr", "type": "shapesys", "data": [1.0, 1.0]})
        sample(s, "background")["modifiers"].append({"name": "uncorr", "type": "shapesys", "data": [2.0, 2.0]})

    raises(spec_with(edit), nsj.InvalidModel, "'uncorr'", "'signal'", "'background'", "'SR'")


def test_staterror_in_different_channel_sets():
    # background carries staterror_all in SR and CR, qcd only in CR
    def edit(s):
        sample(s, "qcd", "CR")["modifiers"].append({"name": "staterror_all", "type": "staterror", "data": [1.0, 1.0, 1.0]})

    raises(spec_with(edit, TWO_CHANNELS), nsj.InvalidModel, "'staterror_all'", "'qcd'", "'background'", "'CR'", "'SR'")


def test_shapefactor_shared_by_channels_of_different_bin_counts():
    def edit(s):
        sample(s, "signal", "SR")["modifiers"].append({"name": "sf", "type": "shapefactor", "data": None})
        sample(s, "qcd", "CR")["modifiers"].append({"name": "sf", "type": "shapefactor", "data": None})

    raises(spec_with(edit, TWO_CHANNELS), nsj.InvalidModel, "'sf'", "'SR'", "'CR'", "2 bins", "3 bins")


# -------------------------------------------------------------- modifier_settings


def test_modifier_settings_unknown_code():
    raises(BASE, nsj.InvalidInterpCode, "'code9'", "normsys", modifier_settings={"normsys": {"interpcode": "code9"}})
    raises(BASE, nsj.InvalidInterpCode, "'code1'", "histosys", modifier_settings={"histosys": {"interpcode": "code1"}})


def test_modifier_settings_unknown_type():
    raises(BASE, nsj.InvalidInterpCode, "shapesys", modifier_settings={"shapesys": {"interpcode": "code0"}})


# --------------------------------------------------------------------------- patches


def test_workspace_patch_op_that_does_not_apply():
    ws = nsj.Workspace(BASE)
    with pytest.raises(nsj.InvalidPatch) as info:
        ws.patch([{"op": "replace", "path": "/channels/3/samples/0/data", "value": [1.0, 2.0]}])
    check_message(info, "/channels/3/samples/0/data", "operation 0", "replace")


def test_workspace_patch_that_breaks_the_model():
    ws = nsj.Workspace(BASE)
    with pytest.raises(nsj.InvalidModel) as info:
        ws.patch([{"op": "replace", "path": "/channels/0/samples/1/data", "value": [1.0, 2.0, 3.0]}])
    check_message(info, "'background'", "'SR'")


# ---------------------------------------------------------------------- runtime input


@pytest.fixture(scope="module")
def two():
    return nsj.from_pyhf(TWO_CHANNELS)


def test_with_yields_unknown_channel(two):
    with pytest.raises(nsj.InvalidInput) as info:
        two.with_yields("VR", "background", [1.0, 2.0])
    check_message(info, "'VR'", "SR", "CR")


def test_with_yields_unknown_sample(two):
    with pytest.raises(nsj.InvalidInput) as info:
        two.with_yields("SR", "ttbar", [1.0, 2.0])
    check_message(info, "'ttbar'", "'SR'")


def test_with_yields_sample_absent_from_channel(two):
    with pytest.raises(nsj.InvalidInput) as info:
        two.with_yields("SR", "qcd", [1.0, 2.0])
    check_message(info, "'qcd'", "'SR'", "background", "signal")


def test_with_yields_wrong_length(two):
    with pytest.raises(nsj.InvalidInput) as info:
        two.with_yields("CR", "qcd", [1.0, 2.0])
    check_message(info, "'qcd'", "'CR'", "(3,)", "(2,)")


def test_logpdf_wrong_parameter_length():
    model = nsj.from_pyhf(BASE)
    with pytest.raises(nsj.InvalidInput) as info:
        model.logpdf([1.0, 0.0, 1.0])
    check_message(info, "(4,)", "(3,)", "par")


def test_logpdf_wrong_data_length():
    model = nsj.from_pyhf(BASE)
    init = np.asarray(model.suggested_init())
    with pytest.raises(nsj.InvalidInput) as info:
        model.logpdf(init, [53.0, 65.0, 0.0, 1.0])
    check_message(info, "(5,)", "(4,)", "2 main", "3 aux")


def test_unknown_measurement_name():
    ws = nsj.Workspace(BASE)
    with pytest.raises((nsj.InvalidModel, nsj.InvalidInput)) as info:
        ws.get_measurement("other")
    check_message(info, "'other'", "meas")
    with pytest.raises((nsj.InvalidModel, nsj.InvalidInput)) as info:
        nsj.from_pyhf(BASE, measurement="other")
    check_message(info, "'other'", "meas")


# ------------------------------------------------------------- things that must load


def pyhf_logpdf(spec, pars):
    ws = pyhf.Workspace(spec)
    model = ws.model()
    return float(model.logpdf(np.asarray(pars, dtype=float), ws.data(model))[0])


def test_negative_sample_yields_load_and_match_pyhf():
    def edit(s):
        s["channels"][0]["samples"].append({"name": "fakes", "data": [-1.5, -2.0], "modifiers": []})

    spec = spec_with(edit)
    model = nsj.from_pyhf(spec)
    for pars in ([1.0, 0.0, 1.0, 1.0], [1.2, 0.5, 0.98, 1.03]):
        ours = float(model.logpdf(np.asarray(pars)))
        assert math.isfinite(ours)
        assert ours == pytest.approx(pyhf_logpdf(spec, pars), rel=1e-10)


def test_config_for_unused_parameter_warns():
    spec = spec_with(lambda s: params(s, {"name": "ghost", "inits": [1.0]}))
    with pytest.warns(UserWarning, match="'ghost'"):
        model = nsj.from_pyhf(spec)
    assert "ghost" not in model.par_names


def test_observation_for_unknown_channel_warns():
    spec = spec_with(lambda s: s["observations"].append({"name": "CR", "data": [1.0, 2.0, 3.0]}))
    with pytest.warns(UserWarning, match=re.escape("observations[1]") + ".*'CR'"):
        model = nsj.from_pyhf(spec)
    assert model.channels == ["SR"]
    assert np.asarray(model.data).tolist() == [53.0, 65.0, 0.0, 1.0, 1.0]


def test_duplicated_modifier_on_a_sample_warns_and_last_wins():
    def edit(s):
        sample(s, "background")["modifiers"].append(
            {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.3, "lo": 0.8}}
        )

    spec = spec_with(edit)
    with pytest.warns(UserWarning, match="'bkg_norm'.*'background'.*'SR'"):
        model = nsj.from_pyhf(spec)
    for pars in ([1.0, 0.5, 1.0, 1.0], [1.2, -1.3, 0.98, 1.03]):
        ours = float(model.logpdf(np.asarray(pars)))
        assert ours == pytest.approx(pyhf_logpdf(spec, pars), rel=1e-10)
    # and it differs from using the first one
    assert ours != pytest.approx(pyhf_logpdf(BASE, pars), rel=1e-6)


def test_numpy_scalars_in_modifier_data_load():
    # the schema accepts NumPy scalars (test_schema.py); the semantic checks must too
    def edit(s):
        s["channels"][0]["samples"][1]["modifiers"][0]["data"] = {"hi": np.float32(1.1), "lo": np.float64(0.95)}

    model = nsj.from_pyhf(spec_with(edit))
    ref = nsj.from_pyhf(BASE)
    pars = np.array([1.2, 0.5, 0.98, 1.03])
    assert float(model.logpdf(pars)) == pytest.approx(float(ref.logpdf(pars)), rel=1e-6)
