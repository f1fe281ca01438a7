"""Benchmark corpora: generated on demand, never committed, and output checks.

Corpora live in ``$FASTANON_BENCH_DATA`` (default: ``<tmpdir>/fastanon-bench-data``),
one folder per corpus named after a hash of its parameters, with a marker
file ``.complete.json``; a corpus whose marker matches is reused.

``FASTANON_BENCH_SCALE`` (default 1) scales frame and file counts, e.g. 0.05
for a quick smoke run; scaled corpora get their own folders.

``python benchmarks/benchdata.py [big|ct|small|small200 ...]`` generates them ahead of time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

GENERATOR_VERSION = 1
FAKE_ROOT = "2.999.2."  # 2.999: the OID arc reserved for examples

# ---------------------------------------------------------------------------
# Planted fake PHI: the same in every generated file.  Search outputs for
# PHI_STRINGS to see what survived anonymization.
# ---------------------------------------------------------------------------
PHI = {
    "PatientName": "ROE^RICHARD^^^",
    "PatientID": "BENCH-PID-000777",
    "PatientBirthDate": "19621231",
    "PatientSex": "M",
    "PatientAge": "061Y",
    "PatientAddress": "77 BENCHMARK LANE^^FAKETOWN^ZZ^99999",
    "PatientTelephoneNumbers": "555-0199",
    "PatientComments": "Benchmark patient ROE^RICHARD, fake data",
    "ReferringPhysicianName": "REFERRER^FAKE^^DR^",
    "InstitutionName": "BENCHMARK CLINIC (FAKE)",
    "InstitutionAddress": "9 NOWHERE AVENUE, FAKETOWN, ZZ 99999",
    "StationName": "BENCH-STATION-9",
    "DeviceSerialNumber": "SN-BENCH-9999",
    "AccessionNumber": "ACC-BENCH-4242",
    "StudyID": "BENCH01",
    "StudyDescription": "BENCHMARK STUDY (FAKE)",
    "StudyDate": "20230704",
    "StudyTime": "101500",
    "OperatorsName": "OPERATOR^FAKE",
}
PRIVATE_CREATOR = "FASTANON BENCH"
PRIVATE_VALUE = "ROE^RICHARD"  # (0011,1001) LO
REQUESTED_PROCEDURE_ID = "RP-BENCH-31"
PHI_STRINGS = [
    "ROE^RICHARD",
    "BENCH-PID-000777",
    "19621231",
    "77 BENCHMARK LANE",
    "555-0199",
    "REFERRER^FAKE",
    "BENCHMARK CLINIC",
    "BENCH-STATION-9",
    "SN-BENCH-9999",
    "ACC-BENCH-4242",
    "RP-BENCH-31",
]

SCALE = float(os.environ.get("FASTANON_BENCH_SCALE", "1"))
DATA_ROOT = Path(os.environ.get("FASTANON_BENCH_DATA")
                 or Path(tempfile.gettempdir()) / "fastanon-bench-data")

# name -> generation parameters
CORPUS_PARAMS = {
    # ~400 MiB: 1024*1024*2 bytes * 200 frames = 419,430,400 bytes of pixels
    "big": {"kind": "multiframe", "rows": 1024, "cols": 1024,
            "frames": max(1, round(200 * SCALE))},
    # ~150 MiB: one CT series
    "ct": {"kind": "ct", "rows": 512, "cols": 512, "files": max(1, round(300 * SCALE))},
    # per-file overhead: tiny images in 10 folders
    "small": {"kind": "small", "rows": 16, "cols": 16,
              "files": max(1, round(5000 * SCALE)), "folders": 10},
    # ~2 MB: 200 files of ~10 KB (64x64 uint16), Implicit VR Little Endian, in 4 folders
    "small200": {"kind": "small_implicit", "rows": 64, "cols": 64,
                 "files": max(1, round(200 * SCALE)), "folders": 4},
}


@dataclass
class Corpus:
    name: str
    src: Path  # a file (big) or a folder (trees)
    files: list[str]  # relative to src (["."] style not used: for a file, [name])
    nbytes: int
    params: dict
    gen_seconds: float | None = None  # None: reused from an earlier run
    phi: dict = field(default_factory=lambda: dict(PHI))

    @property
    def is_tree(self) -> bool:
        return self.src.is_dir()

    def src_file(self, rel: str) -> Path:
        return self.src / rel if self.is_tree else self.src

    def dst_file(self, dst: Path, rel: str) -> Path:
        return dst / rel if self.is_tree else dst


# ---------------------------------------------------------------------------
# Dataset construction
# ---------------------------------------------------------------------------

def _uid(*parts: object) -> str:
    return generate_uid(FAKE_ROOT, [str(p) for p in parts])


def _header(sop_class: str, sop_uid: str, *, study_key: str, series_key: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = _uid("bench-implementation")
    meta.ImplementationVersionName = "FASTANON_BENCH"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = _uid("study", study_key)
    ds.SeriesInstanceUID = _uid("series", series_key)
    ds.FrameOfReferenceUID = _uid("for", study_key)
    ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = PHI["StudyDate"]
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = "101530"
    ds.Manufacturer = "FAKECORP"
    ds.ManufacturerModelName = "Benchmark Scanner"
    ds.SoftwareVersions = "0.0-bench"
    ds.SeriesNumber = 1
    ds.SeriesDescription = "BENCHMARK SERIES (FAKE)"
    for keyword, value in PHI.items():
        setattr(ds, keyword, value)

    code = Dataset()
    code.CodeValue = "FAKE-BENCH"
    code.CodingSchemeDesignator = "99FAKE"
    code.CodeMeaning = "Fake benchmark procedure"
    ds.ProcedureCodeSequence = Sequence([code])
    request = Dataset()
    request.AccessionNumber = PHI["AccessionNumber"]
    request.RequestedProcedureID = REQUESTED_PROCEDURE_ID
    request.RequestedProcedureDescription = PHI["StudyDescription"]
    ds.RequestAttributesSequence = Sequence([request])
    block = ds.private_block(0x0011, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", PRIVATE_VALUE)
    return ds


def _encode(ds: Dataset) -> bytes:
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _grey16(ds: Dataset, rows: int, cols: int, signed: bool) -> None:
    """Image Pixel module for 16-bit MONOCHROME2 pixels (PS3.3 C.7.6.3)."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = int(signed)


def _write_multiframe(root: Path, p: dict) -> list[str]:
    """One big multi-frame file, streamed frame by frame.

    pydicom writes everything but Pixel Data (the last element); then the
    (7FE0,0010) OW header with its 4-byte length is written by hand and the
    frames are streamed from numpy, so at most one frame is in memory.
    """
    rows, cols, frames = p["rows"], p["cols"], p["frames"]
    sop_uid = _uid("big", 0)
    ds = _header(MultiFrameGrayscaleWordSecondaryCaptureImageStorage, sop_uid,
                 study_key="big", series_key="big")
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.InstanceNumber = 1
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.NumberOfFrames = frames
    ds.FrameTime = "33.3"
    ds.FrameIncrementPointer = 0x00181063  # (0018,1063) Frame Time
    _grey16(ds, rows, cols, signed=False)
    nbytes = rows * cols * 2 * frames
    if nbytes % 2 or nbytes >= 0xFFFFFFFF:
        raise ValueError("pixel data too large for a 32-bit length")

    y, x = np.mgrid[0:rows, 0:cols].astype(np.uint32)
    base = ((x * 2654435761 + y * 40503) >> 7).astype("<u2")  # busy, not compressible
    name = "MULTIFRAME.dcm"
    with open(root / name, "wb") as f:
        f.write(_encode(ds))
        f.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, nbytes))
        for i in range(frames):
            frame = base ^ np.uint16((i * 257) & 0xFFFF)
            f.write(memoryview(frame).cast("B"))
    return [name]


def _ct_phantom(rows: int, cols: int) -> np.ndarray:
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    cy, cx = (rows - 1) / 2, (cols - 1) / 2
    hu = np.full((rows, cols), -1000.0, dtype=np.float32)
    hu[((x - cx) / (0.44 * cols)) ** 2 + ((y - cy) / (0.34 * rows)) ** 2 <= 1] = 40
    for side in (-1, 1):
        hu[((x - cx - side * 0.19 * cols) / (0.14 * cols)) ** 2
           + ((y - cy) / (0.2 * rows)) ** 2 <= 1] = -850
    hu[(x - cx) ** 2 + (y - cy - 0.22 * rows) ** 2 <= (0.05 * rows) ** 2] = 700
    return hu


def _write_ct(root: Path, p: dict) -> list[str]:
    rows, cols, n = p["rows"], p["cols"], p["files"]
    phantom = _ct_phantom(rows, cols)
    series = root / "CT_SERIES_001"
    series.mkdir()
    ds = _header(CTImageStorage, _uid("ct", 0), study_key="ct", series_key="ct")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Modality = "CT"
    ds.BodyPartExamined = "CHEST"
    ds.KVP = "120"
    ds.SliceThickness = "1.0"
    ds.PatientPosition = "HFS"
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.7, 0.7]
    _grey16(ds, rows, cols, signed=True)
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    names = []
    for i in range(n):
        sop_uid = _uid("ct", i)
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = i + 1
        z = -300.0 + i
        ds.ImagePositionPatient = [-179.2, -179.2, z]
        ds.SliceLocation = z
        noise = np.random.default_rng(i).integers(-15, 16, size=(rows, cols), dtype=np.int16)
        ds.PixelData = (phantom.astype(np.int16) + 1024 + noise).astype("<i2").tobytes()
        rel = f"CT_SERIES_001/IM{i + 1:05d}.dcm"
        ds.save_as(root / rel, enforce_file_format=True)
        names.append(rel)
    return names


def _write_small(root: Path, p: dict) -> list[str]:
    rows, cols, n, folders = p["rows"], p["cols"], p["files"], p["folders"]
    ds = _header(SecondaryCaptureImageStorage, _uid("small", 0),
                 study_key="small", series_key="small")
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    base = np.arange(rows * cols, dtype=np.uint32)
    return _write_series(root, ds, n, folders, "small",
                         lambda i: ((base * 7 + i) & 0xFF).astype(np.uint8).tobytes())


def _write_series(root: Path, ds: Dataset, n: int, folders: int, key: str, pixels) -> list[str]:
    """n files of ds spread over folders, each with its own SOP Instance UID and pixels(i)."""
    names = []
    for f in range(folders):
        (root / f"SERIES{f:03d}").mkdir()
    for i in range(n):
        sop_uid = _uid(key, i)
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = i + 1
        ds.PixelData = pixels(i)
        rel = f"SERIES{i % folders:03d}/IMG{i + 1:05d}.dcm"
        ds.save_as(root / rel, enforce_file_format=True)
        names.append(rel)
    return names


def _write_small_implicit(root: Path, p: dict) -> list[str]:
    """Small 16-bit images encoded Implicit VR Little Endian (data set and transfer syntax)."""
    rows, cols, n, folders = p["rows"], p["cols"], p["files"], p["folders"]
    ds = _header(SecondaryCaptureImageStorage, _uid("small200", 0),
                 study_key="small200", series_key="small200")
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    _grey16(ds, rows, cols, signed=False)
    base = np.arange(rows * cols, dtype=np.uint32)
    return _write_series(root, ds, n, folders, "small200",
                         lambda i: ((base * 131 + i) & 0xFFF).astype("<u2").tobytes())


WRITERS = {"multiframe": _write_multiframe, "ct": _write_ct, "small": _write_small,
           "small_implicit": _write_small_implicit}


def get_corpus(name: str) -> Corpus:
    """Generate corpus ``name`` unless a complete copy already exists."""
    params = {**CORPUS_PARAMS[name], "generator_version": GENERATOR_VERSION}
    key = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    folder = DATA_ROOT / f"{name}-{key}"
    marker = folder / ".complete.json"
    gen_seconds = None
    if marker.exists() and json.loads(marker.read_text()).get("params") == params:
        info = json.loads(marker.read_text())
    else:
        DATA_ROOT.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        work = DATA_ROOT / f".{name}-{key}.tmp{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        (work / "src").mkdir(parents=True)
        t0 = time.perf_counter()
        files = WRITERS[params["kind"]](work / "src", params)
        gen_seconds = time.perf_counter() - t0
        nbytes = sum((work / "src" / f).stat().st_size for f in files)
        info = {"params": params, "files": files, "nbytes": nbytes,
                "gen_seconds": round(gen_seconds, 2)}
        (work / ".complete.json").write_text(json.dumps(info, indent=1))
        os.replace(work, folder)
    src = folder / "src"
    if params["kind"] == "multiframe":
        src = src / info["files"][0]
        files = [src.name]
    else:
        files = info["files"]
    return Corpus(name, src, files, info["nbytes"], params, gen_seconds)


# ---------------------------------------------------------------------------
# Checking outputs
# ---------------------------------------------------------------------------

def pixel_region(path: Path) -> tuple[int, int]:
    """(offset, length) of the Pixel Data value, without reading it."""
    ds = dcmread(path, defer_size=1024)
    elem = ds.get_item(0x7FE00010, keep_deferred=True)
    if elem is None:
        raise ValueError(f"{path}: no Pixel Data")
    if getattr(elem, "value_tell", None) is None or elem.length == 0xFFFFFFFF:
        raise ValueError(f"{path}: Pixel Data is not a plain native value")
    return elem.value_tell, elem.length


def pixel_digest(path: Path) -> str:
    """SHA-256 of the Pixel Data value bytes, read in chunks."""
    try:
        offset, length = pixel_region(path)
    except ValueError:
        return hashlib.sha256(dcmread(path).PixelData).hexdigest()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        left = length
        while left:
            chunk = f.read(min(left, 1 << 22))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def check_output(src: Path, dst: Path) -> dict:
    """What the benchmarks record about one anonymized output file."""
    info = {"checked_file": str(dst)}
    try:
        out = dcmread(dst, stop_before_pixels=True)
        name_changed = str(out.get("PatientName", "")) != PHI["PatientName"]
        pixels_equal = pixel_digest(src) == pixel_digest(dst)
        try:
            header_end = pixel_region(dst)[0]
        except ValueError:
            header_end = None
        with open(dst, "rb") as f:
            header = f.read(header_end) if header_end else f.read(1 << 20)
        found = [s for s in PHI_STRINGS if s.encode() in header]
        info.update(name_changed=name_changed, pixels_equal=pixels_equal,
                    phi_strings_found=found, correct=name_changed and pixels_equal)
    except Exception as exc:  # recorded, never raised: benchmarks do not gate
        info.update(correct=False, error=f"{type(exc).__name__}: {exc}")
    return info




def main(argv: list[str] | None = None) -> int:
    """Generate (or find) the corpora ahead of a benchmark run."""
    names = (argv if argv is not None else sys.argv[1:]) or list(CORPUS_PARAMS)
    for name in names:
        c = get_corpus(name)
        how = "reused" if c.gen_seconds is None else f"generated in {c.gen_seconds:.1f} s"
        print(f"{name}: {len(c.files)} file(s), {c.nbytes / 2**20:.1f} MiB, {how}: {c.src}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
