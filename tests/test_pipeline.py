"""pipeline: the file path (read or mapped) equals the bytes path; bulk ranges stay page-aligned."""

import io
import mmap

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

import fastanon
from fastanon import pipeline
from fastanon.scan import parse
from conftest import part10


def _file(rows: int, syntax=ExplicitVRLittleEndian) -> bytes:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["pipeline", str(rows)])
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["pipeline study"])
    ds.PatientName = "ROE^RICHARD"
    ds.PatientID = "PID-123456"
    ds.InstitutionName = "SOMEWHERE CLINIC"
    ds.Modality = "OT"
    ds.Rows, ds.Columns = rows, 256
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = (np.arange(rows * 256, dtype=np.uint16) * 7).tobytes()
    return part10(ds, syntax)


def _pixel_offset(raw) -> int:
    parsed = parse(raw)
    return parsed.dataset.element(parsed.dataset.table.find(0x7FE00010, -1)).vstart


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_file_paths_equal_bytes_path(tmp_path, monkeypatch, syntax):
    raw = _file(64, syntax)
    src = tmp_path / "in.dcm"
    src.write_bytes(raw)
    expected = fastanon.anonymize(raw, policy="research", key=b"k")
    for small in (1 << 30, 1024):          # read whole, and mapped with kernel copies
        monkeypatch.setattr(pipeline, "SMALL_FILE", small)
        report = fastanon.anonymize_file(src, tmp_path / f"out-{small}.dcm", policy="research",
                                         key=b"k")
        assert (tmp_path / f"out-{small}.dcm").read_bytes() == expected
        assert report.bytes_out == len(expected) and report.bytes_in == len(raw)
    assert src.read_bytes() == raw


def test_bulk_pixel_data_keeps_its_page_offset(tmp_path, monkeypatch):
    raw = _file(512)                                   # 256 KiB of Pixel Data
    out = fastanon.anonymize(raw, policy="research", key=b"k")
    assert _pixel_offset(out) % pipeline.PAGE == _pixel_offset(raw) % pipeline.PAGE
    ds = pydicom.dcmread(io.BytesIO(out))
    assert ds.file_meta.PrivateInformationCreatorUID == pipeline.FASTANON_UID
    assert all(len(e.value) % 2 == 0 for e in ds.file_meta.values() if isinstance(e.value, bytes))
    meta = parse(out).meta
    assert all(e.vlen % 2 == 0 for e in meta.elements())           # every value of even length
    meta_end = 132 + 12 + ds.file_meta.FileMetaInformationGroupLength
    assert parse(out).dataset_start == meta_end        # the group length counts the padding
    assert ds.PixelData == pydicom.dcmread(io.BytesIO(raw)).PixelData
    assert ds.PatientName != "ROE^RICHARD"
    # The same through the mapped file path, and a second run changes nothing more.
    src = tmp_path / "in.dcm"
    src.write_bytes(raw)
    monkeypatch.setattr(pipeline, "SMALL_FILE", 1024)
    fastanon.anonymize_file(src, tmp_path / "out.dcm", policy="research", key=b"k")
    assert (tmp_path / "out.dcm").read_bytes() == out


def test_anonymizing_twice_changes_nothing_more():
    """The padding of a first run is removed by research and laid again, identically: the
    second output has the same elements, sizes and Pixel Data offset (keyed values differ,
    since a new UID of a new UID is another UID)."""
    once = fastanon.anonymize(_file(512), policy="research", key=b"k")
    twice = fastanon.anonymize(once, policy="research", key=b"k")
    assert len(twice) == len(once) and _pixel_offset(twice) == _pixel_offset(once)
    shape = lambda raw: [(e.tag, e.vlen) for r in (parse(raw).meta, parse(raw).dataset)  # noqa: E731
                         for e in r.elements()]
    assert shape(twice) == shape(once)


def test_no_padding_when_nothing_changes():
    raw = _file(512)
    assert fastanon.anonymize(raw, policy={}) == raw


def test_calls_without_a_key_agree_within_the_process(tmp_path):
    """One random key per process: a study anonymized one call at a time keeps its links."""
    first, second = _file(8), _file(16)
    study = lambda raw: pydicom.dcmread(io.BytesIO(raw)).StudyInstanceUID  # noqa: E731
    assert study(first) == study(second)
    out_1 = fastanon.anonymize(first)
    src = tmp_path / "b.dcm"
    src.write_bytes(second)
    fastanon.anonymize_file(src, tmp_path / "b-out.dcm")
    out_2 = (tmp_path / "b-out.dcm").read_bytes()
    assert study(out_1) == study(out_2) != study(first)
    assert fastanon.anonymize(first, key=b"other") != out_1


def test_the_padding_is_never_empty():
    """Private Information (0002,0102) is Type 1C: present, it has a value. When the header's
    change of size needs no padding bytes at all, the padding is a whole page."""
    def padded(comment_length: int) -> tuple[bytes, bytes, int]:
        ds = pydicom.dcmread(io.BytesIO(_file(512)))
        ds.PatientComments = "C" * comment_length      # removed by research
        raw = io.BytesIO()
        ds.save_as(raw, enforce_file_format=True)
        out = fastanon.anonymize(raw.getvalue(), policy="research", key=b"k")
        return raw.getvalue(), out, len(pydicom.dcmread(io.BytesIO(out)).file_meta.PrivateInformation)

    _, _, first = padded(2)
    assert 0 < first < pipeline.PAGE
    raw, out, size = padded(2 + pipeline.PAGE - first)     # a header that needs no padding bytes
    assert size == pipeline.PAGE
    assert _pixel_offset(out) % pipeline.PAGE == _pixel_offset(raw) % pipeline.PAGE
