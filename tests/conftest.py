"""Shared test data: pydicom's bundled files (listed from disk, never downloaded) and hex helpers."""

from __future__ import annotations

import glob
import io
import os
import re
import warnings
import zlib
from functools import lru_cache

import pydicom
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_data_element
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

TEST_FILES_DIR = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")

# Built policies are cached on disk (_cache.py): the suite (and the runs it starts) keeps its own.
os.environ.setdefault("FASTANON_CACHE", os.path.join(
    os.environ.get("TMPDIR", "/tmp"), f"fastanon-test-cache-{os.getuid()}"))

# Files pydicom only reads leniently because they end early: fastanon refuses them with a
# FastanonError. MR_truncated and rtplan_truncated end inside a value (the rule below would find
# them too); DICOMDIR-nooffset's last item declares 248 bytes where 224 remain, which pydicom does
# not check (test_scan_oracle.test_truncated_list_is_truncated shows each of them).
TRUNCATED = frozenset({"MR_truncated.dcm", "rtplan_truncated.dcm", "dicomdirtests/DICOMDIR-nooffset"})


def all_test_files() -> list[str]:
    """Every file under pydicom/data/test_files, recursively, as paths relative to it."""
    paths = glob.glob(os.path.join(TEST_FILES_DIR, "**", "*"), recursive=True)
    return sorted(os.path.relpath(p, TEST_FILES_DIR) for p in paths if os.path.isfile(p))


def read_bytes(name: str) -> bytes:
    with open(os.path.join(TEST_FILES_DIR, name), "rb") as f:
        return f.read()


def _complete(ds) -> bool:
    """Every raw value at every depth holds as many bytes as its header declares (pydicom reads a
    value cut short by the end of the file without complaint)."""
    for tag in list(ds.keys()):
        elem = ds.get_item(tag)
        if isinstance(elem, pydicom.dataelem.RawDataElement):
            if elem.length != 0xFFFFFFFF and elem.value is not None and len(elem.value) != elem.length:
                return False
        elem = _converted(ds, tag)
        if elem is not None and elem.VR == "SQ" and not all(_complete(i) for i in elem.value):
            return False
    return True


@lru_cache(maxsize=None)
def readable_by_pydicom(name: str) -> bool:
    """The oracle's rule: not a known truncated file, and pydicom_reads_fully."""
    return name not in TRUNCATED and pydicom_reads_fully(read_bytes(name))


def pydicom_reads_fully(raw: bytes, ds=None) -> bool:
    """dcmread(force=True) succeeds, every value at every depth converts, and no raw value is
    shorter than its declared length (that excludes the non-DICOM files too: force=True reads
    them as one garbage element running past the end). ds: dcmread's result, when at hand."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if ds is None:
                ds = pydicom.dcmread(io.BytesIO(raw), force=True)
            if not _complete(ds.file_meta) or not _complete(ds):
                return False
            _touch(ds.file_meta)
            _touch(ds)
        except Exception:
            return False
    return True


def read_raw(raw: bytes):
    """(dataset, file meta, data set): dcmread's dataset finds the encoding; the other two are
    read by pydicom's read_dataset, which leaves values raw (dcmread converts a few at once)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(raw), force=True)
        fp = io.BytesIO(raw)
        fp.seek(132 if raw[128:132] == b"DICM" else 0)
        meta = read_dataset(fp, is_implicit_VR=False, is_little_endian=True,
                            stop_when=lambda tag, vr, length: tag >> 16 != 2)
        meta.set_original_encoding(False, True, "iso8859")
        if ds.file_meta.get("TransferSyntaxUID") == pydicom.uid.DeflatedExplicitVRLittleEndian:
            fp = io.BytesIO(zlib.decompress(fp.read(), -zlib.MAX_WBITS))
        implicit, little = ds.original_encoding
        data = read_dataset(fp, is_implicit_VR=implicit, is_little_endian=little)
        data.set_original_encoding(implicit, little, "iso8859")
    return ds, meta, data


def _touch(ds) -> None:
    for tag in list(ds.keys()):
        elem = _converted(ds, tag)
        if elem is not None and elem.VR == "SQ":
            for item in elem.value:
                _touch(item)
        elif elem is not None:
            elem.value  # noqa: B018  (converting the raw value is the check)


def _converted(ds, tag):
    """ds[tag], or None where pydicom cannot pick 'OB or OW' for Pixel Data in implicit VR
    without BitsAllocated: it lacks an attribute to decode the bytes with, yet read them."""
    try:
        return ds[tag]
    except AttributeError as exc:
        if "Failed to resolve ambiguous VR" not in str(exc):
            raise
        return None


def readable_files() -> list[str]:
    return [n for n in all_test_files() if readable_by_pydicom(n)]


def unreadable_files() -> list[str]:
    return [n for n in all_test_files() if not readable_by_pydicom(n)]


@pytest.fixture(scope="session")
def pydicom_test_files() -> list[str]:
    """Names (relative to TEST_FILES_DIR) of the bundled files pydicom reads fully."""
    return readable_files()


def encoded(elem, ds) -> tuple[int, bytes]:
    """(length, value bytes) of an element pydicom converted while reading, as pydicom writes it."""
    implicit, little = ds.original_encoding
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = bool(implicit), little is not False
    write_data_element(fp, elem)
    out = fp.getvalue()
    header = 8 if implicit or elem.VR not in EXPLICIT_VR_LENGTH_32 else 12
    return len(out) - header, out[header:]


_HEX_COMMENT = re.compile(r"#.*$", re.M)


def part10(ds, syntax: str = "1.2.840.10008.1.2.1") -> bytes:
    """A pydicom Dataset as a Part 10 file's bytes: a file meta naming its SOP Class and
    Instance, in syntax (default Explicit VR Little Endian)."""
    from pydicom.dataset import FileMetaDataset

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = syntax
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


ALIGNMENT_PADDING = (0x00020100, 0x00020102)   # Private Information Creator UID, Private Information


def drop_alignment_padding(input_had: bool, meta_after) -> None:
    """Remove from meta_after (a pydicom FileMetaDataset) the padding that keeps Pixel Data at
    its page offset (pipeline._align_bulk), after checking that it is fastanon's: its creator
    UID and only zero bytes. Nothing is removed when the input had Private Information."""
    from fastanon.elements import FASTANON_UID

    if input_had:
        return
    if ALIGNMENT_PADDING[1] not in meta_after:
        assert ALIGNMENT_PADDING[0] not in meta_after
        return
    assert meta_after[ALIGNMENT_PADDING[0]].value == FASTANON_UID
    padding = meta_after[ALIGNMENT_PADDING[1]].value or b""
    assert not any(padding)
    for tag in ALIGNMENT_PADDING:
        del meta_after[tag]
    if 0x00020000 in meta_after:    # the group length without them (8 + UI, 12 + OB)
        meta_after[0x00020000].value -= 8 + len(FASTANON_UID) + len(FASTANON_UID) % 2 \
            + 12 + len(padding)


def hex2bytes(text: str) -> bytes:
    """Bytes from commented hex, as pydicom's tests write them: one element per line, '#' comments.

    >>> hex2bytes('''
    ...   08 00 20 00  44 41  08 00  32 30 32 34 30 31 30 31   # (0008,0020) DA 8 '20240101'
    ... ''')
    b'\\x08\\x00 \\x00DA\\x08\\x0020240101'
    """
    return bytes.fromhex(_HEX_COMMENT.sub("", text))


def blank_bytes(raw: bytes, masks, name: str = "<data>", *, decompress: bool = False):
    """Masks alone (a policy that keeps every element) through the public pipeline steps:
    (the output's bytes, the MaskReport saying what masking did)."""
    from fastanon.pipeline import plan_of, prepare, render
    from fastanon.scan import parse

    return render(prepare(parse(raw, name), plan_of({}), masks, decompress=decompress))


HTJ2K = "1.2.840.10008.1.2.4.201"       # a compressed syntax masks do not apply in (without decoding)


def unmaskable() -> bytes:
    """A compressed file of a transfer syntax masks cannot apply in as it is (HTJ2K Lossless:
    pydicom's JPEG 2000 test file relabelled; masks refuse it before anything is decoded)."""
    import pydicom

    ds = pydicom.dcmread(os.path.join(TEST_FILES_DIR, "MR_small_jp2klossless.dcm"))
    ds.file_meta.TransferSyntaxUID = HTJ2K
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def cli_masked(tmp_path, source, mask: str = "0,0,8,8"):
    """`fastanon run --mask MASK` of one file (a tree of it), the output as pydicom reads it."""
    import shutil
    import subprocess
    import sys

    import pydicom

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(source, src / "in.dcm")
    done = subprocess.run([sys.executable, "-m", "fastanon", "run", "-q", "--key", "k",
                           "--mask", mask, str(src), str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return pydicom.dcmread(tmp_path / "out" / "in.dcm")
