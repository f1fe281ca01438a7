"""The built-in mask rules `builtin:ctp`: RSNA CTP's burned-in text signatures, generated from
shared/data/ctp-pixel-signatures.csv (tools/gen_ctp_rules.py), matched as CTP matches them
(first rule only; case-sensitive equals and contains, containsIgnoreCase; file meta for group
0002; multiple values joined with a backslash; inclusive rectangles)."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from fastanon import PolicyError
from fastanon.masks import MaskRules, builtin_rules
from fastanon.scan import parse

ROOT = Path(__file__).resolve().parent.parent
CSV = ROOT.parent / "shared" / "data" / "ctp-pixel-signatures.csv"
CTP = MaskRules.load("builtin:ctp")


def image(rows: int = 512, columns: int = 512, implementation: str | None = None,
          **attributes) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    if implementation:
        ds.file_meta.ImplementationVersionName = implementation
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, columns, 1, \
        "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.full((rows, columns), 200, np.uint8).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _rule(raw: bytes):
    parsed = parse(raw, "test")
    return CTP.select(parsed.dataset, parsed.meta)


def test_the_shipped_rules_are_the_csv_generated_again():
    if not CSV.is_file():
        pytest.skip(f"{CSV} is not beside this checkout")
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gen_ctp_rules
    finally:
        sys.path.pop(0)
    with open(CSV, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    shipped = (ROOT / "src" / "fastanon" / "rules" / "ctp.toml").read_text(encoding="utf-8")
    assert gen_ctp_rules.render(rows) == shipped
    assert len(CTP.rules) == len(rows) == 52
    regions = sum(len(r["regions"].split(";")) for r in rows)
    assert sum(len(rule.masks) for rule in CTP.rules) == regions == 62


@pytest.mark.parametrize("attributes, rows, columns, number, masks", [
    # GE screen capture, 512 rows: the band, one column and row more (CTP is inclusive)
    ({"BurnedInAnnotation": "YES", "Manufacturer": "GE MEDICAL SYSTEMS"}, 512, 512, 5,
     ["0,0,513,26"]),
    # first match: the AW electronic film rule (4) before the 512-row one (5)
    ({"BurnedInAnnotation": "YES", "Manufacturer": "GE MEDICAL SYSTEMS",
      "SeriesDescription": "AW Electronic Film"}, 512, 512, 4, ["0,0,513,81"]),
    # containsIgnoreCase on a multi-valued attribute joined with a backslash
    ({"ImageType": ["DERIVED", "SECONDARY", "VOLREN"]}, 512, 512, 7,
     ["350,0,163,31", "390,80,123,16"]),
    # the OR of rule 9
    ({"Manufacturer": "Vital Images, Inc.", "SeriesDescription": "stent report"}, 1041, 800,
     9, ["0,0,796,151"]),
    ({"Manufacturer": "Vital Images, Inc.", "SeriesDescription": "aaa plan"}, 1041, 800, 9,
     ["0,0,796,151"]),
])
def test_ctp_signatures_match_as_ctp_does(attributes, rows, columns, number, masks):
    rule = _rule(image(rows, columns, **attributes))
    assert rule is not None and rule.name.startswith(f"CTP {number}: ")
    assert [str(m) for m in rule.masks] == masks


@pytest.mark.parametrize("attributes, implementation", [
    ({"Manufacturer": "Vital Images, Inc.", "SeriesDescription": "stent plan"}, None),   # no OR side
    ({"Modality": "us"}, "MINDRAY_1.0"),                 # equals is case-sensitive
    ({"Modality": "US"}, "mindray_1.0"),                 # and contains too
    ({"Modality": "CT", "Manufacturer": "SIEMENS"}, None),
])
def test_ctp_signatures_that_do_not_match(attributes, implementation):
    assert _rule(image(implementation=implementation, **attributes)) is None


def test_a_file_meta_attribute_is_read_from_the_file_meta():
    rule = _rule(image(600, 1229, implementation="MINDRAY_2.1", Modality="US"))
    assert rule is not None and rule.name.startswith("CTP 17: ")


def test_the_cli_runs_builtin_ctp(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "ge.dcm").write_bytes(image(BurnedInAnnotation="YES", Manufacturer="GE MEDICAL SYSTEMS",
                                       PatientName="DOE^JOHN"))
    (src / "plain.dcm").write_bytes(image(Manufacturer="ACME"))
    done = subprocess.run([sys.executable, "-m", "fastanon", "run", "--key", "k",
                           "--mask-rules", "builtin:ctp", "--audit", str(tmp_path / "a.csv"),
                           str(src), str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    masked = pydicom.dcmread(tmp_path / "out" / "ge.dcm").pixel_array
    assert (masked[:26, :] == 0).all() and (masked[26:, :] == 200).all()
    assert (pydicom.dcmread(tmp_path / "out" / "plain.dcm").pixel_array == 200).all()
    audit = (tmp_path / "a.csv").read_text()
    assert "CTP 5: GE screen capture, 512 rows" in audit
    done = subprocess.run([sys.executable, "-m", "fastanon", "run", "--mask-rules", "builtin:nope",
                           str(src), str(tmp_path / "out2")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "builtin:ctp" in done.stderr
    assert not (tmp_path / "out2").exists()


@pytest.mark.parametrize("value, words", [
    ("{ equals = 1 }", "the value is a string"),
    ('{ equals = "a", contains = "b" }', "expected"),
    ('{ startswith = "a" }', "expected"),
    ('{ contains = "a", ignore_case = "yes" }', "ignore_case true or false"),
])
def test_bad_tests_in_rules_are_refused(value, words):
    with pytest.raises(PolicyError, match=words):
        MaskRules.loads(f'[[rule]]\nmatch = {{ Modality = {value} }}\nmasks = ["0,0,1,1"]')


def test_builtin_sets():
    assert builtin_rules() == ["ctp"]
