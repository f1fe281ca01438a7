"""`fastanon inspect` (table and JSON) and `fastanon presets`."""

from __future__ import annotations

import json

import pytest
from pydicom.data import get_testdata_file

from fastanon import presets
from fastanon.policy import Policy
from test_cli import invoke, subprocess_run, write_file

CT_SMALL = get_testdata_file("CT_small.dcm", download=False)     # 223 findings under research


@pytest.fixture(scope="module")
def us_file(tmp_path_factory):
    """A small file whose modality often carries burned-in text, with no BurnedInAnnotation."""
    import pydicom

    path = tmp_path_factory.mktemp("inspect") / "us.dcm"
    write_file(path, 1)
    ds = pydicom.dcmread(path)
    ds.Modality = "US"
    ds.ImageComments = "scan of DOE^JANE"
    ds.save_as(path)
    return path


def test_table_grouped_by_category_with_warnings_first(us_file):
    result = invoke("inspect", us_file)
    assert result.exit_code == 0
    text = result.output
    warnings, patient, uids = text.index("Warnings"), text.index("Patient identity ("), \
        text.index("UIDs (")
    assert warnings < patient < uids
    assert "Burned In Annotation is absent" in text and "DOE^JANE" in text
    row = next(line for line in text.splitlines() if "PatientName" in line)
    assert row.split() == ["(0010,0010)", "PatientName", "PN", "DOE^JANE", "empty"]
    internal = invoke("inspect", "--preset", "internal", us_file).output
    row = next(line for line in internal.splitlines() if "PatientName" in line)
    assert row.split()[-1] == "hash"


def test_table_stops_at_200_rows():
    text = invoke("inspect", CT_SMALL).output
    rows = [line for line in text.splitlines() if line.startswith("  (")]
    assert len(rows) == 200 and "23 more row(s) not shown" in text
    every = invoke("inspect", "--all", CT_SMALL).output
    assert len([line for line in every.splitlines() if line.startswith("  (")]) == 223


def test_json_for_machines(us_file):
    proc = subprocess_run("inspect", "--json", "--preset", "internal", us_file)
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert doc["policy"] == "internal" and doc["summary"]["patient identity"] >= 3
    assert {w["code"] for w in doc["warnings"]} >= {"burned-in-annotation"}
    echo = next(f for f in doc["findings"] if f["keyword"] == "ImageComments")    # "scan of DOE^JANE"
    assert echo["action"] == "clean" and echo["reason"].startswith("repeats the patient's")
    name = next(f for f in doc["findings"] if f["keyword"] == "PatientName")
    assert name["tag"] == "(0010,0010)" and name["action"] == "hash" and name["value"] == "DOE^JANE"
    assert name["category"] == "patient identity" and "remove" in name["alternatives"]


def test_policy_file_and_errors(us_file, tmp_path):
    policy = tmp_path / "p.toml"
    policy.write_text('extends = "research"\n[tags]\nPatientName = "keep"\n')
    text = invoke("inspect", "--policy", policy, us_file).output
    assert next(line for line in text.splitlines()
                if line.startswith("  (0010,0010)")).split()[-1] == "keep"
    assert "the policy keeps PatientName" in text      # and says so: identity not removed
    not_dicom = tmp_path / "notes.txt"
    not_dicom.write_text("hello")
    result = invoke("inspect", not_dicom)
    assert result.exit_code == 1 and "not a DICOM file" in result.output
    assert invoke("inspect", "--preset", "nope", us_file).exit_code == 2
    assert invoke("inspect", tmp_path / "missing.dcm").exit_code == 2


def test_presets_listing():
    result = invoke("presets")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == presets.names() == ["internal", "research"]
    assert all(len(line.split()) > 3 for line in lines)


def test_one_preset_shows_every_rule(tmp_path):
    text = invoke("presets", "research").output
    assert "Categories" in text and "PatientName" in text and "(60xx,3000)" in text
    research = Policy.preset("research")
    rule_rows = [line for line in text.splitlines() if line.startswith("  (") and "  " in line[13:]]
    assert len(rule_rows) >= len(research.tags)
    assert invoke("presets", "nope").exit_code == 2
    policy = tmp_path / "mine.toml"
    policy.write_text('extends = "internal"\n[tags]\nStudyDate = "remove"\n')
    mine = invoke("presets", policy).output
    assert next(line for line in mine.splitlines() if "StudyDate" in line).split()[2] == "remove"
