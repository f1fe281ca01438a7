"""One decision pass: every caller goes through pipeline.prepare, and a run reads each input once."""

from __future__ import annotations

import builtins
import csv
import io
import os
import re
import shutil
from pathlib import Path

import pydicom
import pytest

import fastanon
from fastanon import Mask, MaskRules, _core
from fastanon.pipeline import plan_of, prepare, render
from fastanon.scan import parse
from conftest import read_bytes
from test_cli import KEY, invoke, write_file, write_tree

MAPPED = ("PatientName", "PatientID", "AccessionNumber", "StudyInstanceUID", "SeriesInstanceUID",
          "SOPInstanceUID")


def test_run_rename_mapping_opens_and_scans_each_input_once(tmp_path, monkeypatch):
    src = tmp_path / "export"
    write_tree(src, count=12)
    write_file(src / "DOE_JANE/large/IM9999.dcm", 99, rows=256)     # > 64 KiB: mapped
    inputs = sorted(str(p) for p in src.rglob("*") if p.is_file())
    dicom = [p for p in inputs if p.endswith(".dcm")]
    opened: list[str] = []
    scans = []
    real_os_open, real_open, real_scan = os.open, builtins.open, _core.scan

    def os_open(path, *args, **kwargs):
        opened.append(os.fsdecode(path))
        return real_os_open(path, *args, **kwargs)

    def open_(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)):
            opened.append(os.fsdecode(file))
        return real_open(file, *args, **kwargs)

    def scan(buf, *args, **kwargs):
        scans.append(len(buf))
        return real_scan(buf, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(_core, "scan", scan)
    result = invoke("run", "--rename", "--mapping", tmp_path / "map.csv", "--workers", "1",
                    "--key", KEY, src, tmp_path / "out")
    monkeypatch.undo()
    assert result.exit_code == 1 and "13 written" in result.stderr     # the truncated file fails
    assert {p: opened.count(p) for p in inputs} == {p: 1 for p in inputs}
    # Two scans per DICOM input (file meta, data set), and two of each output written (the
    # re-read check, confirm.py): the failed input is scanned once, and has no output.
    assert len(scans) == 2 * len(dicom) + 2 * 13
    with real_open(tmp_path / "map.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 13
    for row in rows:
        ds = pydicom.dcmread(row["destination"])
        assert row["destination"].endswith(f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/"
                                           f"{ds.SOPInstanceUID}.dcm")
        assert row["new SOPInstanceUID"] == ds.SOPInstanceUID != row["SOPInstanceUID"]
        assert row["PatientName"] == "DOE^JANE" and row["new PatientName"] == ds.PatientName


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
                                  "rtplan.dcm"])
def test_identifiers_are_the_values_the_output_holds(name):
    raw = read_bytes(name)
    output = prepare(parse(raw, name), plan_of("research", b"k"))
    tags = [pydicom.datadict.tag_for_keyword(k) for k in MAPPED]
    values = output.identifiers(tags)
    before = pydicom.dcmread(io.BytesIO(raw))
    after = pydicom.dcmread(io.BytesIO(render(output)[0]))
    for keyword, tag in zip(MAPPED, tags):
        old, new = values[tag]
        assert old == str(before.get(keyword, "")).strip()
        assert new == str(after.get(keyword, "")).strip()


def test_prepare_leaves_input_and_parse_alone_and_gives_the_same_output_twice():
    raw = read_bytes("CT_small.dcm")
    parsed = parse(raw, "CT_small.dcm")
    plan = plan_of("research", b"k")
    first, second = render(prepare(parsed, plan))[0], render(prepare(parsed, plan))[0]
    assert first == second == fastanon.anonymize(raw, "research", key=b"k") != raw
    assert raw == read_bytes("CT_small.dcm")


RULES = """
[[rule]]
name = "CT screens"
match = { Modality = "CT" }
masks = ["0,0,8,8"]
"""


@pytest.mark.parametrize("name, masked", [("CT_small.dcm", True), ("MR_small.dcm", False)])
def test_burned_in_annotation_no_only_where_masks_applied(name, masked):
    """BurnedInAnnotation NO is decided in prepare, for the files whose rule gave masks."""
    raw = read_bytes(name)
    output = prepare(parse(raw, name), plan_of({}), MaskRules.loads(RULES), burned_in=True)
    assert (output.rule == "CT screens") is masked and bool(output.masks) is masked
    out, report = render(output)
    ds = pydicom.dcmread(io.BytesIO(out))
    assert (ds.get("BurnedInAnnotation") == "NO") is masked
    assert report.applied == (1 if masked else 0)
    if not masked:
        assert out == raw


def test_masks_must_be_masks():
    with pytest.raises(fastanon.PolicyError, match="is not a fastanon.Mask"):
        prepare(parse(read_bytes("CT_small.dcm")), plan_of({}), [(0, 0, 8, 8)])
    assert prepare(parse(read_bytes("CT_small.dcm")), plan_of({}), [Mask(0, 0, 8, 8)]).masks


def test_serve_refuses_an_empty_key_file(tmp_path):
    empty = tmp_path / "site.key"
    empty.write_text("\n")
    result = invoke("serve", "--no-browser", "--key-file", empty)
    assert result.exit_code == 2 and "is empty" in result.output


# --- a DICOMDIR file set: the records follow the cleaned paths ---------------------------------

DICOMDIR_SET = Path(pydicom.__file__).parent / "data/test_files/dicomdirtests"


def _file_set(tmp_path, reordered: bool = False) -> Path:
    src = tmp_path / "set"
    src.mkdir()
    shutil.copy(DICOMDIR_SET / ("DICOMDIR-reordered" if reordered else "DICOMDIR"),
                src / "DICOMDIR")
    for folder in ("77654033", "98892001", "98892003"):
        shutil.copytree(DICOMDIR_SET / folder, src / folder)
    return src


def _check_file_set(out: Path) -> None:
    """Every record that names a file names one that was written, with its SOP Instance UID,
    by File IDs (PS3.10 §8.2); no output name holds the PatientID 77654033."""
    written = [p.relative_to(out) for p in out.rglob("*") if p.is_file()]
    assert not any("77654033" in str(p) for p in written) and len(written) == 32
    directory = pydicom.dcmread(out / "DICOMDIR")
    references = [r for r in directory.DirectoryRecordSequence if "ReferencedFileID" in r]
    assert len(references) == 31
    for record in references:
        parts = record.ReferencedFileID
        parts = [parts] if isinstance(parts, str) else list(parts)
        assert all(re.fullmatch(r"[A-Z0-9_]{1,8}", p) for p in parts)
        target = pydicom.dcmread(out.joinpath(*parts))
        assert target.SOPInstanceUID == record.ReferencedSOPInstanceUIDInFile
    assert "77654033" not in (out / "DICOMDIR").read_bytes().decode("latin-1")


@pytest.mark.parametrize("preset", ["internal", "research"])
@pytest.mark.parametrize("rename", [False, True])
def test_dicomdir_references_follow_the_written_files(tmp_path, preset, rename):
    """pydicom's file set names one patient's folder by his PatientID (77654033). Mirrored,
    that folder becomes a pseudonym; renamed, every file gets File ID names from its new UIDs.
    Either way the DICOMDIR's ReferencedFileID values name the files written."""
    src = _file_set(tmp_path)
    result = invoke("run", "--preset", preset, "--workers", "1", "--key", KEY,
                    *(["--rename"] if rename else []), src, tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    _check_file_set(tmp_path / "out")


def test_dicomdir_records_out_of_order_under_rename(tmp_path):
    """Records need not be in document order (pydicom's DICOMDIR-reordered): the study and
    series of each file come through the records' offsets."""
    src = _file_set(tmp_path, reordered=True)
    result = invoke("run", "--rename", "--workers", "2", "--key", KEY, src, tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    _check_file_set(tmp_path / "out")


def test_a_dicomdir_below_the_top_with_rename_is_a_named_failure(tmp_path):
    src = tmp_path / "disc"
    shutil.copytree(_file_set(tmp_path), src / "set")
    result = invoke("run", "--rename", "--workers", "1", "--key", KEY, src, tmp_path / "out")
    assert result.exit_code == 1
    assert f"{src / 'set' / 'DICOMDIR'}: a DICOMDIR below the top of SRC" in result.stderr
    assert "31 written" in result.stderr and not list((tmp_path / "out").rglob("DICOMDIR"))


def test_a_large_dicomdir_is_cleaned_in_every_record():
    """A Directory Record Sequence of more than 64 KiB is a sequence, not bulk data: the echoes
    in its records (StudyID = the record's PatientID) are cleaned like those of a small one."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence

    records = []
    for p in range(600):
        for kind, extra in (("PATIENT", {"PatientID": f"P{p:07d}", "PatientName": f"NAME{p}^X"}),
                            ("STUDY", {"StudyID": f"P{p:07d}", "StudyInstanceUID": f"1.2.3.{p}"})):
            record = Dataset()
            record.OffsetOfTheNextDirectoryRecord = 0
            record.RecordInUseFlag = 0xFFFF
            record.OffsetOfReferencedLowerLevelDirectoryEntity = 0
            record.DirectoryRecordType = kind
            for keyword, value in extra.items():
                setattr(record, keyword, value)
            records.append(record)
    ds = Dataset()
    ds.FileSetID = "BIG"
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.FileSetConsistencyFlag = 0
    ds.DirectoryRecordSequence = Sequence(records)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.2.1143.9"
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    raw = io.BytesIO()
    ds.save_as(raw, enforce_file_format=True)
    assert len(raw.getvalue()) > 64 << 10
    out = pydicom.dcmread(io.BytesIO(fastanon.anonymize(raw.getvalue(), "internal", key=b"k")))
    studies = [r for r in out.DirectoryRecordSequence if r.DirectoryRecordType == "STUDY"]
    patients = [r for r in out.DirectoryRecordSequence if r.DirectoryRecordType == "PATIENT"]
    assert [s.StudyID for s in studies] == [p.PatientID for p in patients]
    assert not any(s.StudyID.startswith("P0") for s in studies)
