"""JSON Patches and HEPData patchsets (nextstat_jax.patches)."""

import copy
import json

import jsonpatch
import pytest

from nextstat_jax.errors import (
    InvalidPatch,
    InvalidPatchSet,
    InvalidSpecification,
    PatchSetVerificationError,
)
from nextstat_jax.patches import Patch, PatchSet, apply_patch, digest

BKG_ONLY = {
    "channels": [
        {
            "name": "SR",
            "samples": [
                {
                    "name": "bkg",
                    "data": [50.0, 60.0],
                    "modifiers": [{"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}],
                }
            ],
        }
    ],
    "observations": [{"name": "SR", "data": [52.0, 61.0]}],
    "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
    "version": "1.0.0",
}


def signal_patch(name, values, yields):
    """A patchset entry that adds a signal sample with a normfactor 'mu'."""
    sample = {"name": "signal", "data": yields, "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]}
    return {
        "metadata": {"name": name, "values": values},
        "patch": [{"op": "add", "path": "/channels/0/samples/0", "value": sample}],
    }


def make_patchset(patches=None, labels=("mass_stop", "mass_lsp"), digests=None):
    if patches is None:
        patches = [
            signal_patch("stop_500_100", [500, 100], [5.0, 2.0]),
            signal_patch("stop_600_100", [600, 100], [3.0, 1.0]),
        ]
    return {
        "metadata": {
            "description": "test signal grid",
            "digests": digests or {"sha256": digest(BKG_ONLY), "md5": digest(BKG_ONLY, "md5")},
            "labels": list(labels),
            "references": {"hepdata": "ins1234567"},
        },
        "patches": patches,
        "version": "1.0.0",
    }


# --------------------------------------------------------------------------- apply_patch


def test_add_replace_remove_without_mutating_the_input():
    original = copy.deepcopy(BKG_ONLY)
    ops = [
        {"op": "add", "path": "/channels/0/samples/-", "value": {"name": "sig", "data": [1.0, 1.0], "modifiers": []}},
        {"op": "replace", "path": "/observations/0/data", "value": [10.0, 20.0]},
        {"op": "remove", "path": "/channels/0/samples/0/modifiers/0"},
    ]
    patched = apply_patch(BKG_ONLY, ops)
    assert BKG_ONLY == original
    assert [s["name"] for s in patched["channels"][0]["samples"]] == ["bkg", "sig"]
    assert patched["observations"][0]["data"] == [10.0, 20.0]
    assert patched["channels"][0]["samples"][0]["modifiers"] == []
    # the result shares nothing with the operations
    patched["channels"][0]["samples"][1]["data"][0] = 99.0
    assert ops[0]["value"]["data"][0] == 1.0


def test_accepts_jsonpatch_object_and_patchset_entry():
    ops = [{"op": "replace", "path": "/version", "value": "1.0.0"}]
    assert apply_patch(BKG_ONLY, jsonpatch.JsonPatch(ops)) == BKG_ONLY
    entry = signal_patch("sig", [1, 2], [1.0, 2.0])
    assert apply_patch(BKG_ONLY, entry)["channels"][0]["samples"][0]["name"] == "signal"


def test_failing_test_op():
    ops = [
        {"op": "test", "path": "/version", "value": "1.0.0"},
        {"op": "test", "path": "/observations/0/name", "value": "CR"},
    ]
    with pytest.raises(InvalidPatch, match=r"operation 1 \('test' at '/observations/0/name'\).*test failed"):
        apply_patch(BKG_ONLY, ops)


def test_path_that_does_not_exist():
    with pytest.raises(InvalidPatch, match=r"operation 0 \('remove' at '/channels/3'\) does not apply"):
        apply_patch(BKG_ONLY, [{"op": "remove", "path": "/channels/3"}])
    with pytest.raises(InvalidPatch, match=r"operation 0 \('replace' at '/nope/x'\) does not apply"):
        apply_patch(BKG_ONLY, [{"op": "replace", "path": "/nope/x", "value": 1}])


def test_malformed_operation():
    with pytest.raises(InvalidPatch, match=r"operation 0 \(op 'replace', path '/version'\).*'value' is a required"):
        apply_patch(BKG_ONLY, [{"op": "replace", "path": "/version"}])


def test_not_a_patch():
    with pytest.raises(InvalidPatch, match="wrap a single operation in a list"):
        apply_patch(BKG_ONLY, {"op": "remove", "path": "/version"})
    with pytest.raises(InvalidPatch, match="cannot apply a int"):
        apply_patch(BKG_ONLY, 3)


# --------------------------------------------------------------------------- PatchSet


def test_patchset_attributes_and_lookup():
    patchset = PatchSet(make_patchset())
    assert len(patchset) == 2
    assert patchset.labels == ["mass_stop", "mass_lsp"]
    assert patchset.description == "test signal grid"
    assert patchset.references == {"hepdata": "ins1234567"}
    assert patchset.version == "1.0.0"
    assert set(patchset.digests) == {"sha256", "md5"}
    assert [p.name for p in patchset] == ["stop_500_100", "stop_600_100"]
    patch = patchset["stop_600_100"]
    assert isinstance(patch, Patch) and patch.values == (600, 100)
    assert patch.operations[0]["op"] == "add"
    assert patchset[(600, 100)] is patch
    assert patchset[[600.0, 100.0]] is patch
    assert patchset[600, 100] is patch


def test_patchset_from_json_text_and_file(tmp_path):
    text = json.dumps(make_patchset())
    path = tmp_path / "patchset.json"
    path.write_text(text)
    assert len(PatchSet(text)) == len(PatchSet(path)) == len(PatchSet(str(path))) == 2


def test_patchset_unknown_key():
    patchset = PatchSet(make_patchset())
    with pytest.raises(InvalidPatchSet, match=r"patch 'stop_700_100' not in patchset; available: stop_500_100"):
        patchset["stop_700_100"]
    with pytest.raises(InvalidPatchSet, match=r"patch with values \(700, 100\) not in patchset"):
        patchset[700, 100]


def test_patchset_unknown_key_lists_at_most_ten_names():
    patches = [signal_patch(f"p{i}", [i, 0], [1.0, 1.0]) for i in range(25)]
    with pytest.raises(InvalidPatchSet, match=r"p9 \(9, 0\), \.\.\. \(15 more\)$"):
        PatchSet(make_patchset(patches))["nope"]


def test_patchset_values_length_mismatch():
    patches = [signal_patch("stop_500", [500], [5.0, 2.0])]
    with pytest.raises(InvalidPatchSet, match=r"patch 'stop_500' has 1 values \[500\].*2 labels"):
        PatchSet(make_patchset(patches))


def test_patchset_duplicate_names():
    patches = [signal_patch("same", [1, 2], [1.0, 1.0]), signal_patch("same", [3, 4], [1.0, 1.0])]
    with pytest.raises(InvalidPatchSet, match="two patches named 'same'"):
        PatchSet(make_patchset(patches))


def test_patchset_duplicate_values():
    patches = [signal_patch("a", [1, 2], [1.0, 1.0]), signal_patch("b", [1.0, 2.0], [1.0, 1.0])]
    with pytest.raises(InvalidPatchSet, match=r"patches 'a' and 'b' have the same values \[1.0, 2.0\]"):
        PatchSet(make_patchset(patches))


def test_patchset_schema_violation_names_the_patch():
    patchset = make_patchset()
    patchset["patches"][1]["metadata"]["name"] = "bad name"
    with pytest.raises(InvalidPatchSet, match=r"patches\[1\]\.metadata\.name \(patch 'bad name'\)"):
        PatchSet(patchset)


def test_patchset_bad_digest_format():
    with pytest.raises(InvalidPatchSet, match=r"metadata\.digests\.md5"):
        PatchSet(make_patchset(digests={"md5": "xyz"}))


def test_patchset_not_json():
    with pytest.raises(InvalidSpecification, match="patchset JSON text is not valid JSON"):
        PatchSet('{"metadata": ')


def test_wrong_digest():
    patchset = PatchSet(make_patchset(digests={"sha256": "0" * 64}))
    with pytest.raises(PatchSetVerificationError, match=r"sha256 digest expected 0{64}, got [0-9a-f]{64}"):
        patchset.verify(BKG_ONLY)
    with pytest.raises(PatchSetVerificationError):
        patchset.apply(BKG_ONLY, "stop_500_100")


def test_apply_accepts_an_object_with_spec():
    class FakeWorkspace:
        spec = BKG_ONLY

    patched = PatchSet(make_patchset()).apply(FakeWorkspace(), (500, 100))
    assert patched["channels"][0]["samples"][0]["data"] == [5.0, 2.0]
    assert BKG_ONLY["channels"][0]["samples"][0]["name"] == "bkg"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_round_trip_matches_pyhf():
    pyhf = pytest.importorskip("pyhf")
    pyhf_workspace = pyhf.Workspace(BKG_ONLY)
    digests = {
        "sha256": pyhf.utils.digest(pyhf_workspace),
        "md5": pyhf.utils.digest(pyhf_workspace, algorithm="md5"),
    }
    spec = make_patchset(digests=digests)
    ours = PatchSet(spec)
    ours.verify(BKG_ONLY)
    for name in ("stop_500_100", "stop_600_100"):
        expected = pyhf.PatchSet(spec).apply(pyhf_workspace, name)
        assert ours.apply(BKG_ONLY, name) == dict(expected)
        assert ours.apply(pyhf_workspace, name) == dict(expected)
