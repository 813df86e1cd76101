"""Loading and schema validation of workspaces (nextstat_jax.schema)."""

import copy
import importlib.resources
import json

import jsonschema
import numpy as np
import pytest

from nextstat_jax import schema
from nextstat_jax.errors import InvalidPatch, InvalidPatchSet, InvalidSpecification

MINIMAL = {
    "channels": [
        {"name": "SR", "samples": [{"name": "signal", "data": [5.0], "modifiers": []}]}
    ],
    "observations": [{"name": "SR", "data": [5.0]}],
    "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
    "version": "1.0.0",
}

EVERY_MODIFIER = {
    "channels": [
        {
            "name": "SR",
            "samples": [
                {
                    "name": "signal",
                    "data": [5.0, 2.0],
                    "modifiers": [
                        {"name": "mu", "type": "normfactor", "data": None},
                        {"name": "lumi", "type": "lumi", "data": None},
                    ],
                },
                {
                    "name": "bkg",
                    "data": [50.0, 60.0],
                    "modifiers": [
                        {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
                        {"name": "shape", "type": "histosys", "data": {"hi_data": [52.0, 62.0], "lo_data": [48.0, 58.0]}},
                        {"name": "staterror_SR", "type": "staterror", "data": [1.0, 2.0]},
                        {"name": "uncorr", "type": "shapesys", "data": [3.0, 4.0]},
                        {"name": "sf", "type": "shapefactor", "data": None},
                    ],
                },
            ],
        }
    ],
    "observations": [{"name": "SR", "data": [55.0, 62.0]}],
    "measurements": [
        {
            "name": "meas",
            "config": {
                "poi": "mu",
                "parameters": [
                    {"name": "lumi", "auxdata": [1.0], "sigmas": [0.02], "bounds": [[0.9, 1.1]], "inits": [1.0]},
                    {"name": "mu", "bounds": [[0.0, 10.0]], "fixed": False},
                ],
            },
        }
    ],
    "version": "1.0.0",
}


def modified(edit, base=EVERY_MODIFIER):
    """A deep copy of ``base`` after ``edit(copy)``."""
    spec = copy.deepcopy(base)
    edit(spec)
    return spec


def bkg_modifier(spec, index):
    return spec["channels"][0]["samples"][1]["modifiers"][index]


def invalid(spec, *fragments, schema_name="workspace", error=InvalidSpecification):
    """Assert that validation fails with ``error`` and a message containing every fragment."""
    with pytest.raises(error) as info:
        schema.validate(spec, schema_name)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# --------------------------------------------------------------------------- valid input


def test_schema_files_are_valid_json_schemas():
    for name in ("workspace", "patchset", "jsonpatch"):
        text = (importlib.resources.files("nextstat_jax") / "schemas" / f"{name}.json").read_text()
        jsonschema.Draft202012Validator.check_schema(json.loads(text))


def test_minimal_workspace_is_valid():
    assert schema.validate(MINIMAL) is None


def test_workspace_with_every_modifier_type_is_valid():
    assert schema.validate(EVERY_MODIFIER) is None


def test_numpy_arrays_and_scalars_are_accepted():
    def edit(spec):
        spec["channels"][0]["samples"][1]["data"] = np.array([50.0, 60.0])
        bkg_modifier(spec, 0)["data"]["hi"] = np.float32(1.1)

    schema.validate(modified(edit))


def test_model_and_measurement_schemas():
    model = {"channels": EVERY_MODIFIER["channels"], "parameters": []}
    schema.validate(model, "model")
    schema.validate(EVERY_MODIFIER["measurements"][0], "measurement.json")
    invalid({"channels": MINIMAL["channels"], "parameters": [{"name": "x", "fixed": "yes"}]},
            "parameters[0].fixed", "parameter 'x'", "expected boolean", schema_name="model")


def test_unknown_schema_name():
    with pytest.raises(ValueError, match="unknown schema"):
        schema.validate(MINIMAL, "nope")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_agrees_with_pyhf_on_valid_specs():
    pyhf = pytest.importorskip("pyhf")
    for spec in (MINIMAL, EVERY_MODIFIER):
        pyhf.schema.validate(spec, "workspace.json")


# --------------------------------------------------------------------------- load_json


def test_load_json_from_dict_returns_a_deep_copy():
    loaded = schema.load_json(MINIMAL)
    assert loaded == MINIMAL
    loaded["channels"][0]["name"] = "changed"
    assert MINIMAL["channels"][0]["name"] == "SR"


def test_load_json_from_text_str_path_and_pathlike(tmp_path):
    path = tmp_path / "ws.json"
    path.write_text(json.dumps(MINIMAL))
    assert schema.load_json("  " + json.dumps(MINIMAL)) == MINIMAL
    assert schema.load_json(str(path)) == MINIMAL
    assert schema.load_json(path) == MINIMAL


def test_load_json_not_json_string():
    with pytest.raises(InvalidSpecification, match=r"not valid JSON.*line 1, column 15"):
        schema.load_json('{"channels": [}')


def test_load_json_not_json_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "channels": [\n    1,\n  ]\n}')
    with pytest.raises(InvalidSpecification) as info:
        schema.load_json(path)
    message = str(info.value)
    assert "broken.json" in message and "not valid JSON" in message and "line 4" in message


def test_load_json_nonexistent_path(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(InvalidSpecification, match="not found") as info:
        schema.load_json(str(missing))
    assert str(missing) in str(info.value)


def test_load_json_top_level_not_an_object():
    with pytest.raises(InvalidSpecification, match="must be a JSON object, got a JSON array"):
        schema.load_json("[1, 2]")


def test_load_json_unsupported_type():
    with pytest.raises(InvalidSpecification, match="from a int"):
        schema.load_json(42)


# --------------------------------------------------------------------------- invalid workspaces


@pytest.mark.parametrize("key", ["channels", "observations", "measurements", "version"])
def test_missing_top_level_key(key):
    invalid(modified(lambda spec: spec.pop(key)), f"workspace is missing the required key '{key}'")


def test_wrong_version():
    invalid(modified(lambda spec: spec.update(version="2.0.0")), "version '2.0.0'", "expected '1.0.0'")


def test_unknown_modifier_type():
    message = invalid(
        modified(lambda spec: bkg_modifier(spec, 0).update(type="foo")),
        "unknown modifier type 'foo'",
        "channels[0].samples[1].modifiers[0].type",
        "channel 'SR'", "sample 'bkg'", "modifier 'bkg_norm'",
    )
    assert "histosys, lumi, normfactor, normsys, shapefactor, shapesys, staterror" in message


def test_normsys_data_missing_hi():
    invalid(
        modified(lambda spec: bkg_modifier(spec, 0)["data"].pop("hi")),
        "channels[0].samples[1].modifiers[0].data",
        "(channel 'SR', sample 'bkg', modifier 'bkg_norm' of type 'normsys')",
        "'hi' is a required property",
    )


def test_histosys_data_missing_lo_data():
    invalid(
        modified(lambda spec: bkg_modifier(spec, 1)["data"].pop("lo_data")),
        "channels[0].samples[1].modifiers[1].data",
        "modifier 'shape' of type 'histosys'",
        "'lo_data' is a required property",
    )


def test_lumi_modifier_not_named_lumi():
    invalid(
        modified(lambda spec: spec["channels"][0]["samples"][0]["modifiers"][1].update(name="lumi2")),
        "channels[0].samples[0].modifiers[1].name",
        "sample 'signal', modifier 'lumi2' of type 'lumi'",
        "expected 'lumi'",
    )


def test_bound_pair_with_three_numbers():
    invalid(
        modified(lambda spec: spec["measurements"][0]["config"]["parameters"][1].update(bounds=[[0.0, 5.0, 10.0]])),
        "measurements[0].config.parameters[1].bounds[0]",
        "measurement 'meas', parameter 'mu'",
        "expected exactly 2 items, got 3",
    )


def test_extra_top_level_key():
    invalid(modified(lambda spec: spec.update(extra=1)), "the top level", "unexpected key 'extra'")


def test_sample_without_modifiers():
    invalid(
        modified(lambda spec: spec["channels"][0]["samples"][1].pop("modifiers")),
        "channels[0].samples[1]", "sample 'bkg'", "'modifiers' is a required property",
    )


def test_non_number_in_data():
    invalid(
        modified(lambda spec: spec["channels"][0]["samples"][1]["data"].__setitem__(1, "x")),
        "channels[0].samples[1].data[1]", "sample 'bkg'", "expected number, got string 'x'",
    )


def test_non_number_in_observation():
    invalid(
        modified(lambda spec: spec["observations"][0].update(data=[1.0, None])),
        "observations[0].data[1]", "observation 'SR'",
    )


def test_staterror_with_empty_data():
    invalid(
        modified(lambda spec: bkg_modifier(spec, 2).update(data=[])),
        "modifiers[2].data", "of type 'staterror'", "at least 1 item",
    )


def test_normfactor_with_data():
    invalid(
        modified(lambda spec: spec["channels"][0]["samples"][0]["modifiers"][0].update(data=[1.0])),
        "modifiers[0].data", "modifier 'mu' of type 'normfactor'", "expected null",
    )


def test_top_level_not_an_object():
    invalid([1, 2], "the top level", "expected object")


# --------------------------------------------------------------------------- JSON Patch schema


def test_validate_jsonpatch_accepts_every_op():
    schema.validate_jsonpatch([
        {"op": "add", "path": "/a", "value": 1},
        {"op": "remove", "path": "/a"},
        {"op": "replace", "path": "/b/0", "value": None},
        {"op": "move", "from": "/b", "path": "/c"},
        {"op": "copy", "from": "/c", "path": "/d~1e"},
        {"op": "test", "path": "", "value": {}},
    ])


def test_validate_jsonpatch_missing_value():
    with pytest.raises(InvalidPatch, match=r"\[1\] \(operation 1 \(op 'add', path '/x'\)\).*'value' is a required"):
        schema.validate_jsonpatch([{"op": "remove", "path": "/a"}, {"op": "add", "path": "/x"}])


def test_validate_jsonpatch_bad_pointer_and_op():
    with pytest.raises(InvalidPatch, match="not a JSON Pointer"):
        schema.validate_jsonpatch([{"op": "remove", "path": "channels/0"}])
    with pytest.raises(InvalidPatch, match="'delete' is not one of"):
        schema.validate_jsonpatch([{"op": "delete", "path": "/a"}])


def test_patchset_schema_error_is_invalid_patchset():
    with pytest.raises(InvalidPatchSet, match="patchset is missing the required key 'metadata'"):
        schema.validate({"patches": [], "version": "1.0.0"}, "patchset")
