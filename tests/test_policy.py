"""The presets on real data: a 3-series study (keyed UIDs, date shifts), every pydicom test file
under research (no identifying value survives) and under internal (nothing else changes).
Outputs are always read back with pydicom."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import warnings
from datetime import date
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import fastanon
from fastanon import categories, presets
from fastanon.policy import Policy

from conftest import ALIGNMENT_PADDING, drop_alignment_padding, read_bytes, readable_files

KEY = "study-key-1"
CT = "1.2.840.10008.5.1.4.1.1.2"


# -- a 50-file, 3-series study --------------------------------------------------------------

def _study(folder: Path) -> list[Path]:
    """50 CT files of one patient: 3 series (17, 17, 16), each image referring to the previous one
    (ReferencedImageSequence, SourceImageSequence), dates a few days apart per series."""
    study, frame = generate_uid(), generate_uid()
    series = [generate_uid() for _ in range(3)]
    instances = [generate_uid() for _ in range(50)]
    paths = []
    for n in range(50):
        s = min(n // 17, 2)
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = CT, instances[n]
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series[s], frame
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", "PID-4242", "19610203"
        ds.StudyDate, ds.SeriesDate = "20230110", f"202301{10 + 3 * s:02d}"
        ds.AcquisitionDateTime = f"202301{10 + 3 * s:02d}0930{n % 60:02d}"
        ds.Modality, ds.InstanceNumber = "CT", n + 1
        if n:
            ref = Dataset()
            ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = CT, instances[n - 1]
            ds.ReferencedImageSequence = Sequence([ref])
            src = Dataset()
            src.ReferencedSOPClassUID, src.ReferencedSOPInstanceUID = CT, instances[0]
            ds.SourceImageSequence = Sequence([src])
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"IM{n:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _uids(path: Path) -> dict:
    ds = pydicom.dcmread(path)
    return {"study": ds.StudyInstanceUID, "series": ds.SeriesInstanceUID,
            "sop": ds.SOPInstanceUID, "media": ds.file_meta.MediaStorageSOPInstanceUID,
            "frame": ds.FrameOfReferenceUID,
            "ref": [i.ReferencedSOPInstanceUID for i in ds.get("ReferencedImageSequence", [])],
            "src": [i.ReferencedSOPInstanceUID for i in ds.get("SourceImageSequence", [])],
            "sop_class": ds.SOPClassUID}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    paths = _study(folder)
    out = tmp_path_factory.mktemp("study_out")
    for path in paths:
        fastanon.anonymize_file(path, out / path.name, policy="research", key=KEY)
    return paths, [out / p.name for p in paths]


def test_study_uids_map_consistently(study):
    inputs, outputs = study
    before = [_uids(p) for p in inputs]
    after = [_uids(p) for p in outputs]
    assert len({a["study"] for a in after}) == 1
    assert after[0]["study"] != before[0]["study"] and after[0]["study"].startswith("2.25.")
    assert len({a["series"] for a in after}) == 3
    old_to_new = {}
    for b, a in zip(before, after):
        for field in ("study", "series", "sop", "frame"):
            assert old_to_new.setdefault(b[field], a[field]) == a[field]
        assert a["media"] == a["sop"] and a["sop_class"] == CT
        assert all(len(u) <= 64 and set(u) <= set("0123456789.") for u in
                   (a["study"], a["series"], a["sop"], a["frame"]))
    sops = [a["sop"] for a in after]
    assert len(set(sops)) == 50
    for n, a in enumerate(after[1:], 1):          # references still point at the right files
        assert a["ref"] == [sops[n - 1]] and a["src"] == [sops[0]]


_CHILD = """
import json, sys, fastanon
from pathlib import Path
key, out = sys.argv[1], Path(sys.argv[2])
for src in sys.argv[3:]:
    fastanon.anonymize_file(src, out / Path(src).name, policy="research", key=key)
"""


def _child(key: str, inputs, folder: Path) -> list[dict]:
    folder.mkdir()
    subprocess.run([sys.executable, "-c", _CHILD, key, str(folder), *map(str, inputs)],
                   check=True, env={**os.environ, "PYTHONHASHSEED": "random"})
    return [_uids(folder / p.name) for p in inputs]


def test_same_key_same_uids_in_another_process(study, tmp_path):
    inputs, outputs = study
    first = [_uids(p) for p in outputs]
    assert _child(KEY, inputs[:5], tmp_path / "same") == first[:5]
    other = _child("another-key", inputs[:5], tmp_path / "other")
    for a, b in zip(first, other):
        assert a["study"] != b["study"] and a["sop"] != b["sop"]
        assert a["sop_class"] == b["sop_class"] == CT


def test_no_key_random_per_plan_but_consistent_within(study):
    inputs, _ = study
    raw = [p.read_bytes() for p in inputs[:3]]
    plan = fastanon.Policy.preset("research").compile()
    other = fastanon.Policy.preset("research").compile()
    one = [pydicom.dcmread(io.BytesIO(_anon(r, plan))).StudyInstanceUID for r in raw]
    assert len(set(one)) == 1
    assert pydicom.dcmread(io.BytesIO(_anon(raw[0], other))).StudyInstanceUID != one[0]


def _anon(raw: bytes, plan) -> bytes:
    from fastanon.pipeline import prepare, render
    from fastanon.scan import parse
    return render(prepare(parse(raw), plan))[0]


def test_date_shift_keeps_intervals(study, tmp_path):
    inputs, _ = study
    spec = {**presets.spec_of("research"), "options": {"retain_long_modified_dates": True}}
    plan = Policy.from_spec(spec).compile(key=KEY)
    pairs = []
    for path in inputs[::7]:
        before = pydicom.dcmread(path)
        after = pydicom.dcmread(io.BytesIO(_anon(path.read_bytes(), plan)))
        pairs.append((before, after))
        assert after.LongitudinalTemporalInformationModified == "MODIFIED"
    day = lambda text: date(int(text[:4]), int(text[4:6]), int(text[6:8]))  # noqa: E731
    offsets = {(day(a.SeriesDate) - day(b.SeriesDate)).days for b, a in pairs}
    offsets |= {(day(a.StudyDate) - day(b.StudyDate)).days for b, a in pairs}
    offsets |= {(day(a.AcquisitionDateTime) - day(b.AcquisitionDateTime)).days for b, a in pairs}
    assert len(offsets) == 1 and -3650 <= offsets.pop() <= -365
    for b, a in pairs:
        assert a.AcquisitionDateTime[8:] == b.AcquisitionDateTime[8:]   # time of day kept
        assert "PatientBirthDate" not in a or a.PatientBirthDate != b.PatientBirthDate


# -- research: no identifying value survives ----------------------------------------------------

def _e11_tags() -> set[int]:
    path = Path(__file__).resolve().parents[1] / "tools" / "data" / "ps3.15-e1-1.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        return {int(r["tag"][1:5] + r["tag"][6:10], 16) for r in csv.DictReader(handle)
                if "x" not in r["tag"].lower() and "gggg" not in r["tag"]}


E11 = _e11_tags()
# Texts fastanon itself writes: a dummy or mark may contain a short input value by chance
# (e.g. a ScheduledProcedureStepID "ANON" inside the dummy "ANONYMIZED").
WRITTEN = ("ANONYMIZED", "19000101", "000000", "FASTANON", "YES", "Basic Application "
           "Confidentiality Profile", "fastanon research: PS3.15 E 2026d")


def _values(ds, out, vrs=("PN", "LO", "SH", "DA", "UI")):
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _values(item, out, vrs)
        elif elem.VR in vrs and elem.value is not None:
            values = elem.value if isinstance(elem.value, (list, pydicom.multival.MultiValue)) \
                else [elem.value]
            out.append((elem.tag, elem.VR, values))
    return out


def _standard_text(ds, out):
    """Values of kept attributes that PS3.15 Table E.1-1 does not list as identifying (public
    tags only): Manufacturer, code meanings, software versions, SOP classes... An input value may
    survive inside one of them (InstitutionName "TOSHIBA" inside Manufacturer "TOSHIBA_MEC").
    And the new UIDs: 38 random digits may hold a short numeric input value by chance."""
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _standard_text(item, out)
        elif elem.VR == "UI" and str(elem.value).startswith("2.25."):
            out.append(str(elem.value))
        elif int(elem.tag) not in E11 and not elem.tag.is_private and \
                elem.tag.group & 0xFFE1 not in (0x5000, 0x6000) and elem.VR not in (
                    "OB", "OW", "OF", "OD", "OL", "OV", "UN"):
            out.append(str(elem.value))
    return out


def _texts(raw: bytes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(raw), force=True)


RESEARCH_FILES = [n for n in readable_files()]


@pytest.mark.parametrize("name", RESEARCH_FILES)
def test_research_leaves_no_identifying_value(name):
    raw = read_bytes(name)
    out = fastanon.anonymize(raw, "research", key=KEY)
    leaks = research_leaks(raw, out)
    assert not leaks, f"{name}: {leaks}"
    assert _texts(out).get("PatientIdentityRemoved") == "YES"


def research_leaks(raw: bytes, out: bytes) -> list:
    """Identifying input values (PN, LO, SH, DA, UI of at least 4 characters) found in the
    research output more often than kept standard text explains."""
    before, after = _texts(raw), _texts(out)
    originals = _values(before.file_meta, []) + _values(before, [])
    allowed = _standard_text(after.file_meta, []) + _standard_text(after, []) + list(WRITTEN)
    leaks = []
    for tag, vr, values in originals:
        for value in values:
            text = str(value).strip()
            if len(text) < 4 or (vr == "UI" and text.startswith("1.2.840.10008.")):
                continue
            found = out.count(text.encode("latin-1", "replace"))
            explained = sum(a.count(text) for a in allowed)
            if found > explained:
                leaks.append((str(tag), vr, text))
    return leaks


# -- internal: only patient identity and contact change -----------------------------------------

HIDDEN = {"patient identity", "contact"}
DIRECTORY_OFFSETS = (0x00041200, 0x00041202, 0x00041400, 0x00041420)


# Group length, version and implementation class UID (PS3.10 Table 7.1-1, Type 1).
META_TYPE_1 = frozenset({0x00020000, 0x00020001, 0x00020012})


def _compare(before, after, where: str, changed: list, echoed: frozenset = frozenset()):
    """Elements outside the hidden categories are unchanged, but for the kept ones whose tag
    inspect reports as repeating the patient's identity (echoed)."""
    for tag in sorted(set(before.keys()) | set(after.keys())):
        if categories.category_of(int(tag)) in HIDDEN:
            if tag in before and tag in after and before[tag].VR != "SQ":
                changed.append(int(tag))
            continue
        if tag.element == 0 and tag.group != 2:
            continue          # a group length follows its group's new size (PS3.5 §7.2)
        if int(tag) in DIRECTORY_OFFSETS and tag in before and tag in after:
            continue          # a DICOMDIR record offset follows its record (PS3.3 F.3.2.1)
        if int(tag) in META_TYPE_1 and tag not in before and tag in after:
            continue          # the meta is written whole, with the Type 1 elements it lacked
        assert tag in before and tag in after, f"{where}{tag} appears or vanishes"
        b, a = before[tag], after[tag]
        if b.VR == "SQ":
            assert len(b.value) == len(a.value), f"{where}{tag}"
            for i, (x, y) in enumerate(zip(b.value, a.value)):
                _compare(x, y, f"{where}{tag}[{i}].", changed, echoed)
        elif int(tag) in echoed and b.value != a.value:
            changed.append(int(tag))
        else:
            assert b.value == a.value, f"{where}{tag}: {b.value!r} became {a.value!r}"


@pytest.mark.parametrize("name", readable_files())
def test_internal_changes_only_identity_and_contact(name):
    raw = read_bytes(name)
    out = fastanon.anonymize(raw, "internal", key=KEY)
    before, after = _texts(raw), _texts(out)
    drop_alignment_padding(any(t in before.file_meta for t in ALIGNMENT_PADDING), after.file_meta)
    changed: list = []
    echoed = frozenset(f.tag for f in fastanon.inspect(raw, "internal", key=KEY)
                       if f.kind == "element" and f.reason.startswith("repeats the patient's"))
    _compare(before.file_meta, after.file_meta, "meta ", changed)
    _compare(before, after, "", changed, echoed)
    name_before = str(before.get("PatientName", "") or "")
    if name_before.strip():
        assert str(after.PatientName) != name_before
    if str(before.get("PatientID", "") or "").strip():
        assert after.PatientID != before.PatientID and len(after.PatientID) == 16
    assert "PatientIdentityRemoved" not in after or \
        after.PatientIdentityRemoved == before.get("PatientIdentityRemoved")
