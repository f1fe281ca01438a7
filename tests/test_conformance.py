"""Outputs as conformant as their inputs: dicom3tools' dciodvfy checks the IOD of every real file
the tests use, before and after each preset; the output's error messages must be among the
input's (sets of messages, not counts: removing content also removes errors of the input).

Messages are compared with their values left out (a value changes by design). Files dciodvfy
cannot read whole (it stops early, so the input's list is incomplete) are skipped and say so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

import fastanon
from conftest import TEST_FILES_DIR
from iod_files import pet_image
from realfiles import sources

DCIODVFY = shutil.which("dciodvfy")
pytestmark = pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) not installed; "
                                "`.ci/run` installs it")
KEY = "conformance-test-key"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "study"
_VALUES = [
    (re.compile(r"= <[^>]*>"), "= <>"),
    (re.compile(r"\[\d+\] = .*$"), "[] = <>"),
    (re.compile(r"(value|UID) = .*$"), r"\1 = <>"),
    (re.compile(r"<[\d.]+>"), "<uid>"),
    (re.compile(r"UID [\d.]+$"), "UID <uid>"),
    (re.compile(r'"[^"]*"'), '""'),
]
# What dciodvfy says when it could not read a file to its end: its list of errors is incomplete.
_UNREADABLE = re.compile(r"^Abort|^Error - .*(Tags out of order|trailing garbage|not valid DICOM)")


def _inputs() -> dict[str, tuple]:
    found: dict[str, tuple] = {}
    for path in sorted(Path(TEST_FILES_DIR).rglob("*")):
        if path.is_file() and path.suffix not in (".json", ".txt", ".dump", ".icc", ".gz"):
            found[f"pydicom/{path.relative_to(TEST_FILES_DIR).as_posix()}"] = (path, None)
    found.update(sources())
    for path in sorted(EXAMPLES.rglob("*")):
        if path.is_file() and path.suffix != ".md":
            found[f"example/{path.relative_to(EXAMPLES).as_posix()}"] = (path, None)
    found["generated/pet_image"] = (None, "pet")
    return found


INPUTS = _inputs()


def _read(name: str) -> bytes:
    path, member = INPUTS[name]
    if member == "pet":
        return pet_image()
    if member is not None:
        with zipfile.ZipFile(path) as archive:
            return archive.read(member)
    return path.read_bytes()


def _verify(data: bytes, folder: Path) -> tuple[set[str], list[str]]:
    """(normalized error messages, every line) of dciodvfy on one file."""
    path = folder / "file.dcm"
    path.write_bytes(data)
    run = subprocess.run([DCIODVFY, str(path)], capture_output=True, timeout=120)
    lines = (run.stdout + run.stderr).decode("latin-1").splitlines()
    errors = set()
    for line in lines:
        if line.startswith("Error"):
            for pattern, replacement in _VALUES:
                line = pattern.sub(replacement, line)
            errors.add(line.strip())
    return errors, lines


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_outputs_gain_no_iod_errors(name, tmp_path):
    data = _read(name)
    before, lines = _verify(data, tmp_path)
    unreadable = [line for line in lines if _UNREADABLE.search(line)]
    if unreadable:
        pytest.skip(f"dciodvfy cannot read {name} whole: {unreadable[0][:120]}")
    for preset in ("research", "internal"):
        try:
            out = fastanon.anonymize(data, preset, key=KEY)
        except fastanon.FastanonError:
            continue            # refused cleanly (the real-file tests check which and why)
        after, _ = _verify(out, tmp_path)
        assert after <= before, f"{preset} adds IOD errors to {name}: {sorted(after - before)}"


def test_the_files_cover_the_iods_that_needed_types():
    """The set holds what type-aware actions are for: RT, SR, PET, waveforms, DICOMDIRs, an
    animal (Responsible Person, Type 2C) — so the test above is not vacuous."""
    names = set(INPUTS)
    for needed in ("pydicom/rtplan.dcm", "pydicom/test-SR.dcm", "pydicom/waveform_ecg.dcm",
                   "pydicom/dicomdirtests/DICOMDIR", "generated/pet_image"):
        assert needed in names
    assert any("animals" in n for n in names) or pytest.skip("deid-data not installed")


MASKED = ["MR_small_RLE.dcm", "SC_rgb_rle_2frame.dcm", "rtdose_rle.dcm",          # the kernel
          "SC_rgb_jpeg_dcmtk.dcm", "examples_ybr_color.dcm", "SC_rgb_dcmtk_+eb+cy+n1.dcm",
          "MR_small_jp2klossless.dcm", "SC_rgb_jpeg_gdcm.dcm",                       # the codecs
          "MR_small_jpeg_ls_lossless.dcm"]


@pytest.mark.parametrize("name", MASKED)
def test_masked_compressed_files_gain_no_iod_errors(name, tmp_path):
    """Masks in compressed Pixel Data keep the transfer syntax and the IOD: nothing new for
    dciodvfy, Burned In Annotation NO."""
    import io

    import pydicom

    from fastanon.pixels import masks_keep_syntax

    raw = (Path(TEST_FILES_DIR) / name).read_bytes()
    if not masks_keep_syntax(str(pydicom.dcmread(
            io.BytesIO(raw), stop_before_pixels=True).file_meta.TransferSyntaxUID)):
        pytest.skip("the codecs extra is not installed")
    before, _ = _verify(raw, tmp_path)
    out = fastanon.anonymize(raw, "research", [fastanon.Mask(0, 0, 6, 6)], key=KEY)
    after, _ = _verify(out, tmp_path)
    assert after <= before, sorted(after - before)
    assert pydicom.dcmread(io.BytesIO(out)).BurnedInAnnotation == "NO"
