"""Regression tests for defects found in review: each test names the defect it pins down."""

from __future__ import annotations

import io
import struct

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

import fastanon
from fastanon.elements import is_private
from fastanon.policy import Policy

NAME = "Secretname^Johnny"


def _file(extra=None, implicit: bool = False) -> bytes:
    """A small Part 10 file with a patient name, built by pydicom."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.4.5.6.7.8.999"
    ds.PatientName = NAME
    ds.PatientID = "PID12345"
    if extra:
        extra(ds)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


# --- Odd groups 0001-0007 and FFFF (forbidden by PS3.5 §7.8.1) survived `private = "remove"` ----

@pytest.mark.parametrize("implicit", [False, True])
def test_forbidden_odd_groups_are_removed_with_private_tags(implicit):
    def extra(ds):
        for group in (0x0001, 0x0003, 0x0005, 0x0007):
            ds.add_new((group << 16) | 0x0010, "LO", "Secretname creator")
            ds.add_new((group << 16) | 0x1010, "LO", "Secretname value")
        ds.add_new(0xFFFF1010, "LO", "Secretname value")

    raw = _file(extra, implicit)
    assert raw.count(b"Secretname") == 10
    out = fastanon.anonymize(raw, "research")
    assert b"Secretname" not in out
    ds = pydicom.dcmread(io.BytesIO(out))
    assert not [e.tag for e in ds if e.tag.group & 1]
    # a policy keeping private tags keeps them, byte for byte
    assert fastanon.anonymize(raw, {}) == raw


def test_is_private_covers_every_odd_group():
    assert is_private(0x00011010) and is_private(0x00070010) and is_private(0xFFFF0001)
    assert not is_private(0x00080010) and not is_private(0x00100010)
    assert Policy.preset("research").action_for(0x00031010).name == "remove"


# --- --rename: two inputs with the same UIDs were "already there" (one output silently lost) -----

@pytest.mark.parametrize("workers, overwrite", [(1, False), (1, True), (2, False)])
def test_rename_collision_is_a_failure(tmp_path, workers, overwrite):
    from fastanon.batch import Job, run

    src = tmp_path / "src"
    for i in range(4):     # 0 and 2 differ in content but share every UID; so do 1 and 3
        def extra(ds, i=i):
            ds.SOPInstanceUID = f"1.2.3.{i % 2}"
            ds.StudyDescription = f"copy {i}"
        (src / str(i)).mkdir(parents=True)
        (src / str(i) / "f.dcm").write_bytes(_file(extra))
    job = Job(policy="research", key=b"k", rename=True, workers=workers, overwrite=overwrite)
    summary = run(src, tmp_path / "out", job)
    assert (summary.written, summary.exists, summary.failed) == (2, 0, 2)
    assert all("same output name" in o.reason for o in summary.failures)
    again = run(src, tmp_path / "out", Job(policy="research", key=b"k", rename=True))
    assert (again.exists, again.failed) == (2, 2)       # a rerun says so again


# --- SRC inside DST: the outputs of SRC/<name>/... landed on the inputs SRC/... ---------------

def test_outputs_never_land_inside_the_source(tmp_path):
    from fastanon.batch import check_paths
    from fastanon.errors import FastanonError

    src = tmp_path / "a"
    (src / "a").mkdir(parents=True)
    (src / "a" / "f.dcm").write_bytes(_file())
    (src / "f.dcm").write_bytes(_file(lambda ds: setattr(ds, "StudyDescription", "other")))
    with pytest.raises(FastanonError, match="inside the source tree"):
        check_paths(src, tmp_path)       # tmp/a/a/f.dcm would be written to tmp/a/f.dcm
    check_paths(src / "a", tmp_path / "out")
    (tmp_path / "b").mkdir()
    check_paths(tmp_path / "b", tmp_path)     # the source inside the destination, no overlap


# --- masks with decompress=True: pydicom's own exceptions escaped instead of a FastanonError -----

def test_decompress_of_a_file_pydicom_cannot_decode_is_a_clean_error():
    from conftest import read_bytes

    raw = read_bytes("SC_rgb_rle.dcm")
    no_syntax = fastanon.anonymize(raw, {"TransferSyntaxUID": "remove"})   # fastanon still reads it
    with pytest.raises(fastanon.FastanonError, match="pydicom cannot read"):
        fastanon.anonymize(no_syntax, {}, masks=[fastanon.Mask(1, 1, 5, 5)], decompress=True)


# --- DICOMDIR: record offsets (file positions of items) were not moved with the records --------

@pytest.mark.parametrize("name", ["DICOMDIR", "DICOMDIR-bigEnd", "DICOMDIR-implicit"])
@pytest.mark.parametrize("policy", ["research", "internal"])
def test_dicomdir_record_offsets_follow_the_records(tmp_path, name, policy):
    import warnings

    from conftest import read_bytes
    from pydicom.fileset import FileSet

    from fastanon.elements import KIND_ITEM
    from fastanon.rewrite import DIRECTORY_OFFSETS
    from fastanon.scan import parse

    out = fastanon.anonymize(read_bytes(f"dicomdirtests/{name}"), policy)
    data = parse(out).dataset
    items = {data.element(i).start for i in range(len(data.table))
             if data.element(i).kind == KIND_ITEM}
    offsets = [int.from_bytes(data.value(data.element(i)), "big" if data.big else "little")
               for i, tag in enumerate(data.table.tags()) if tag in DIRECTORY_OFFSETS]
    assert len(offsets) > 50 and all(o == 0 or o in items for o in offsets)
    (tmp_path / "DICOMDIR").write_bytes(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # the referenced image files are not there
        assert len(list(FileSet(tmp_path / "DICOMDIR")._tree)) == 52   # pydicom walks the offsets


# --- research kept three person-name attributes Table E.1-1 does not list ---------------------

def test_research_keeps_no_person_name():
    from fastanon import _dictionary

    research = Policy.preset("research")
    kept = [keyword for tag, (vr, keyword) in _dictionary.DICTIONARY.items()
            if vr == "PN" and research.action_for(tag).name == "keep"]
    assert kept == []


# --- inspect read values as ASCII: echoes of a non-ASCII name went unreported -----------------

def test_inspect_reads_values_in_the_file_character_set():
    def extra(ds):
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName = "Müller"
        ds.PatientID = "12"
        ds.StudyDescription = "Müller knee"        # kept by internal: an echo of the name

    raw = _file(extra)
    assert "Müller".encode("latin-1") in raw
    quiet = fastanon.Policy.preset("internal").replace(clean_echoes=False)
    echoes = [f for f in fastanon.inspect(raw, quiet) if f.code == "identifying-echo"]
    assert echoes and "Müller" in echoes[0].message
    cleaned = [f for f in fastanon.inspect(raw, "internal") if f.path == "StudyDescription"]
    assert cleaned[0].action == "clean" and "'Müller'" in cleaned[0].reason


# --- a folder where an output belongs was counted as an output "already there" -----------------

def test_a_folder_in_the_way_of_an_output_is_a_failure(tmp_path):
    from fastanon.batch import Job, run

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f.dcm").write_bytes(_file())
    (tmp_path / "out" / "f.dcm").mkdir(parents=True)
    summary = run(tmp_path / "src", tmp_path / "out", Job(key=b"k"))
    assert (summary.exists, summary.failed) == (0, 1)
    assert "is not a file" in summary.failures[0].reason
