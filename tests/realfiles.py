"""Real files from other vendors and toolkits: where they come from, and the checks each one must
pass (scan agrees with pydicom, keep-all identity, research/internal outputs read back, no
identifying value left, clean refusal of what pydicom cannot read)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import struct
import subprocess
import tempfile
import warnings
import zipfile
from pathlib import Path

import pydicom
import pytest

import fastanon
from conftest import TEST_FILES_DIR, pydicom_reads_fully, read_raw
from fastanon.elements import FLAG_BIG, FLAG_OPEN
from fastanon.scan import looks_like_dicom, parse
from test_policy import KEY, research_leaks
from test_scan_oracle import _compare, fastanon_elements, pydicom_elements

PIXEL_DATA = 0x7FE00010
DCMCONV = shutil.which("dcmconv")
DCMDUMP = shutil.which("dcmdump")
MAX_SIZE = 16 << 20         # larger files (a 43 MB and a 104 MB ultrasound cine) are left out


# --- sources ----------------------------------------------------------------------------------

def _package_dir(module: str, sub: str) -> Path | None:
    try:
        mod = __import__(module)
    except ImportError:
        return None
    folder = Path(mod.__file__).parent / sub
    return folder if folder.is_dir() else None


def pydicom_data_dir() -> Path | None:
    """PyPI pydicom-data: the extra files pydicom's own tests download (module data_store)."""
    return _package_dir("data_store", "data")


def deid_data_dir() -> Path | None:
    """PyPI deid-data: vendor files with PHI-like content and private tags (pydicom/deid)."""
    return _package_dir("deid_data", "data")


CHARSET_DIR = Path(TEST_FILES_DIR).parent / "charset_files"


def sources() -> dict[str, tuple[Path, str | None]]:
    """{id: (path, zip member or None)}: pydicom's own character set files (ISO 2022 and
    others, not among test_files) and the DICOM files of both packages up to MAX_SIZE."""
    out: dict[str, tuple[Path, str | None]] = {}
    folders = (("pydicom-charsets", CHARSET_DIR), ("pydicom-data", pydicom_data_dir()),
               ("deid-data", deid_data_dir()))
    for label, folder in folders:
        if folder is None or not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.suffix in (".py", ".pyc", ".md", ".txt"):
                continue
            rel = path.relative_to(folder).as_posix()
            if path.suffix == ".zip":
                with zipfile.ZipFile(path) as archive:
                    for info in archive.infolist():
                        if info.file_size <= MAX_SIZE and not info.is_dir():
                            out[f"{label}/{rel}/{info.filename}"] = (path, info.filename)
            elif path.stat().st_size <= MAX_SIZE:
                out[f"{label}/{rel}"] = (path, None)
    return out


def load(source: tuple[Path, str | None]) -> bytes:
    path, member = source
    if member is None:
        return path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        return archive.read(member)


# dcmconv options: each re-encodes a file the way another toolkit writes it.
VARIANTS = {
    "implicit": ["+ti"],                        # implicit VR little endian
    "explicit": ["+te"],                        # explicit VR little endian
    "big": ["+tb"],                             # explicit VR big endian (retired)
    "deflated": ["+td"],                        # deflated explicit VR little endian
    "dataset-implicit": ["-F", "+ti"],          # no preamble, no meta
    "dataset-big": ["-F", "+tb"],
    "undefined-lengths": ["-e"],                # sequences and items with undefined lengths
    "group-lengths": ["+g", "-e"],              # (gggg,0000) everywhere
    "padding": ["+p", "256", "8"],              # (FFFC,FFFC) trailing and item padding
    "no-new-vrs": ["-u", "+te"],                # UN/UT written as OB (pre-1993 VRs)
}


def dcmconv(src: Path, dst: Path, options: list[str]) -> bool:
    """Convert src with dcmconv; False when dcmconv cannot (compressed → uncompressed, ...)."""
    result = subprocess.run([DCMCONV, "-q", *options, str(src), str(dst)], capture_output=True,
                            timeout=60)
    return result.returncode == 0 and dst.exists() and dst.stat().st_size > 0


def dcmdump_reads(raw: bytes, tmp: Path) -> str | None:
    """None when dcmdump reads the whole file without an error; else its complaint."""
    fd, name = tempfile.mkstemp(suffix=".dcm", dir=tmp)
    with os.fdopen(fd, "wb") as handle:
        handle.write(raw)
    try:
        result = subprocess.run([DCMDUMP, "+E", "-dc", "+f", name], capture_output=True,
                                text=True, errors="replace", timeout=60)
    finally:
        os.unlink(name)
    errors = [line for line in result.stderr.splitlines() if line.startswith(("E:", "F:"))]
    if result.returncode != 0 or errors:
        return "; ".join(errors)[-500:] or f"exit {result.returncode}"
    return None


# --- checks -----------------------------------------------------------------------------------

def pydicom_reads(raw: bytes) -> bool:
    """The oracle's rule (conftest.pydicom_reads_fully), with two refinements for real files:
    pydicom's warning that a file ended before a delimiter means it kept nothing (it returns an
    empty data set), and a private value its private dictionary mistypes is read as UN (as
    pydicom's own convert_wrong_length_to_UN does) rather than making the file unreadable."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(io.BytesIO(raw), force=True)
        except Exception:
            return False
    if any("before delimiter" in str(w.message) or "End of file" in str(w.message) for w in caught):
        return False
    with _lenient_private_values():
        return pydicom_reads_fully(raw, ds)


@contextlib.contextmanager
def _lenient_private_values():
    old = pydicom.config.convert_wrong_length_to_UN
    pydicom.config.convert_wrong_length_to_UN = True
    try:
        yield
    finally:
        pydicom.config.convert_wrong_length_to_UN = old


def with_delimiter(raw: bytes) -> bytes:
    """raw, and the sequence delimiter its top-level fragments lack if the scanner found them
    open (FLAG_OPEN): the file as its writer meant it, for pydicom to read."""
    table = parse(raw).dataset
    last = table.elements()[-1] if len(table.table) else None
    while last is not None and last.parent != -1:
        last = table.element(last.parent)
    if last is None or not last.flags & FLAG_OPEN:
        return raw
    return raw + struct.pack(">HHI" if last.flags & FLAG_BIG else "<HHI", 0xFFFE, 0xE0DD, 0)


def check_scan(raw: bytes, name: str, reference: bytes | None = None) -> None:
    """fastanon's tables of raw hold what pydicom reads (of reference, when given), at every
    depth, in the same encoding."""
    parsed = parse(raw, name)
    ds, meta, data = read_raw(raw if reference is None else reference)
    if parsed.meta is None:
        assert len(ds.file_meta) == 0, name
    else:
        _compare(fastanon_elements(parsed.meta), pydicom_elements(meta), f"{name} meta")
    _compare(fastanon_elements(parsed.dataset), pydicom_elements(data), name)
    implicit, little = ds.original_encoding
    assert (parsed.dataset.implicit, parsed.dataset.big) == (implicit, not little), name


def pixel_bytes(raw: bytes) -> bytes | None:
    """The top-level Pixel Data value as the file holds it (fragments and all), via pydicom."""
    _, _, data = read_raw(raw)
    if PIXEL_DATA not in data:
        return None
    elem = data.get_item(PIXEL_DATA)
    return bytes(elem.value) if elem.value is not None else b""


def check_all(raw: bytes, name: str, tmp: Path, dump: bool = True) -> None:
    """Every check for one file. One pydicom cannot read is refused with a FastanonError that
    names it, unless it is such a file only for want of a delimiter fastanon supplies; a raw
    data set whose first group is outside 0002-0030 is refused as not DICOM (scan.looks_like_dicom:
    pydicom's force=True reads any bytes). dump: also have dcmdump read the outputs."""
    with _lenient_private_values():
        _check_all(raw, name, tmp, dump)


def _check_all(raw: bytes, name: str, tmp: Path, dump: bool) -> None:
    reference = raw
    try:
        reference = with_delimiter(raw)
    except fastanon.FastanonError as exc:
        assert str(exc).startswith("<data>: "), exc
        with pytest.raises(fastanon.FastanonError) as info:
            parse(raw, name)
        assert name in str(info.value)
        if not looks_like_dicom(raw[:132]):
            assert "not a DICOM file" in str(info.value)
            return
        assert not pydicom_reads(raw), f"{name}: pydicom reads it, fastanon refuses: {exc}"
        return
    assert pydicom_reads(reference), f"{name}: pydicom cannot read it, fastanon scanned it"
    check_scan(raw, name, reference)
    assert fastanon.anonymize(raw, policy={}) == raw, f"{name}: keep-all changed the bytes"
    pixels = pixel_bytes(reference)
    dump = dump and DCMDUMP is not None and dcmdump_reads(reference, tmp) is None
    for preset in ("research", "internal"):
        out = fastanon.anonymize(raw, preset, key=KEY, name=name)
        label = f"{name} ({preset})"
        assert pydicom_reads(out), f"{label}: pydicom cannot read the output fully"
        assert pixel_bytes(out) == pixels, f"{label}: Pixel Data changed"
        if dump:
            complaint = dcmdump_reads(out, tmp)
            assert complaint is None, f"{label}: dcmdump: {complaint}"
        if preset == "research":
            leaks = research_leaks(reference, out)
            assert not leaks, f"{label}: {leaks}"
