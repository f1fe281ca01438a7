"""Real files fastanon was not written against: pydicom's character set files (ISO 2022 and
others), PyPI pydicom-data and deid-data (many vendors, JPEG/JPEG-LS/J2K/RLE, big endian, odd
files), and dcmtk's dcmconv re-encoding a sample of them the way another toolkit writes files.
Each must scan as pydicom reads it, come back byte for byte under keep-all, and give research and
internal outputs that pydicom (and dcmdump) read fully, with the same Pixel Data and no identifying
value left; what pydicom cannot read is refused with a FastanonError naming the file."""

from __future__ import annotations

import io
import warnings

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

import cases
import realfiles
from realfiles import DCMCONV, VARIANTS, check_all, check_scan, load, sources
from conftest import TEST_FILES_DIR
from fastanon import anonymize
from fastanon.elements import FLAG_OPEN, KIND_FRAGMENTS
from fastanon.scan import parse

SOURCES = sources()

# dcmconv re-encodes this sample in every VARIANTS way: each vendor and kind of file once (GE, Siemens,
# Philips, Toshiba, ALOKA ultrasound; SR, RT, DICOMDIR; private and UN sequences; ISO 2022 text;
# compressed files only where dcmconv keeps the transfer syntax).
VARIANT_SOURCES = {
    "pydicom/CT_small.dcm": "native",
    "pydicom/MR_small_bigendian.dcm": "native",
    "pydicom/image_dfl.dcm": "native",
    "pydicom/rtplan.dcm": "native",
    "pydicom/reportsi.dcm": "native",
    "pydicom/UN_sequence.dcm": "compressed",
    "pydicom/nested_priv_SQ.dcm": "native",
    "pydicom/priv_SQ.dcm": "native",
    "pydicom/meta_missing_tsyntax.dcm": "native",
    "pydicom/dicomdirtests/DICOMDIR": "native",
    "pydicom/dicomdirtests/98892001/CT2N/6293": "native",
    "pydicom/JPEG2000.dcm": "compressed",
    "pydicom-charsets/chrH31.dcm": "native",
    "pydicom-charsets/chrKoreanMulti.dcm": "native",
    "pydicom-charsets/chrSQEncoding.dcm": "native",
    "pydicom-data/explicit_VR-UN.dcm": "compressed",
    "pydicom-data/OBXXXX1A.dcm": "native",
    "pydicom-data/bad_sequence.dcm": "compressed",
    "pydicom-data/eCT_Supplemental.dcm": "native",
    "pydicom-data/MR-SIEMENS-DICOM-WithOverlays.dcm": "native",
    "pydicom-data/gdcm-US-ALOKA-16.dcm": "native",
    "pydicom-data/emri_small_RLE.dcm": "compressed",
    "deid-data/humans/ctbrain1.dcm": "compressed",
    "deid-data/dicom-cookies/image1.dcm": "compressed",
    "deid-data/ultrasounds/RGB_IMAGE.dcm": "native",
    "made/iso2022-japanese": "native",
    "made/iso2022-korean": "native",
}
KEEP_SYNTAX = ("undefined-lengths", "group-lengths", "padding")


def _made(kind: str) -> bytes:
    """A file pydicom writes with ISO 2022 escape sequences in PN and LO (PS3.5 Annex H, I), a
    public attribute written as UN and a private UN value."""
    charset, name, place = {
        "iso2022-japanese": ("ISO 2022 IR 87", "Yamada^Tarou=山田^太郎=やまだ^たろう", "山田 Clinic"),
        "iso2022-korean": ("ISO 2022 IR 149", "Hong^Gildong=洪^吉洞=홍^길동", "홍 Clinic"),
    }[kind]
    ds = Dataset()
    ds.SpecificCharacterSet = ["", charset]
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.2.1143.77"
    ds.StudyDate, ds.InstitutionName, ds.StudyDescription = "20240102", place, place
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = name, "PID-7731", "19520304"
    ds.add_new(0x00101010, "UN", b"071Y")
    ds.add_new(0x00190010, "LO", "ACME 1.0")
    ds.add_new(0x00191010, "UN", b"SECRET^NAME ")
    ds.Rows = ds.Columns = 2
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = b"\x01\x02\x03\x04"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _source_bytes(name: str) -> bytes | None:
    label, _, rest = name.partition("/")
    if label == "pydicom":
        with open(f"{TEST_FILES_DIR}/{rest}", "rb") as handle:
            return handle.read()
    if label == "made":
        return _made(rest)
    return load(SOURCES[name]) if name in SOURCES else None


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("realfiles")


# --- the files as they come -------------------------------------------------------------------

def test_sources_are_there():
    """pydicom's character set files always; the two PyPI packages with the test extra."""
    labels = {name.partition("/")[0] for name in SOURCES}
    assert "pydicom-charsets" in labels
    missing = {"pydicom-data", "deid-data"} - labels
    if missing:
        pytest.skip(f"not installed: {', '.join(sorted(missing))} (pip install -e '.[test]')")
    assert len(SOURCES) >= 90


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_real_file(name, work):
    check_all(load(SOURCES[name]), name, work)


@pytest.mark.parametrize("kind", ["iso2022-japanese", "iso2022-korean"])
def test_made_file(kind, work):
    raw = _made(kind)
    check_all(raw, kind, work)
    out = pydicom.dcmread(io.BytesIO(anonymize(raw, "internal", key="k")))
    assert str(out.PatientName) != str(pydicom.dcmread(io.BytesIO(raw)).PatientName)
    # internal keeps the institution, but not the patient's family name in it (山田, two
    # ideographs, is searched; 홍, one, is too common to be)
    assert out.InstitutionName == {"iso2022-japanese": "Clinic",
                                   "iso2022-korean": "홍 Clinic"}[kind]


# --- the same files as dcmconv writes them ----------------------------------------------------

VARIANT_CASES = [(variant, name) for name, kind in VARIANT_SOURCES.items() for variant in VARIANTS
                 if kind == "native" or variant in KEEP_SYNTAX]


@pytest.mark.skipif(DCMCONV is None, reason="dcmtk's dcmconv is not installed (apt-get install dcmtk)")
@pytest.mark.parametrize("variant,name", VARIANT_CASES, ids=[f"{v}:{n}" for v, n in VARIANT_CASES])
def test_dcmconv_variant(variant, name, work):
    raw = _source_bytes(name)
    if raw is None:
        pytest.skip(f"{name.partition('/')[0]} is not installed")
    src = work / (name.replace("/", "__") + ".src")
    dst = work / variant / name.replace("/", "__")
    dst.parent.mkdir(exist_ok=True)
    src.write_bytes(raw)
    assert realfiles.dcmconv(src, dst, VARIANTS[variant]), f"dcmconv {VARIANTS[variant]} {name}"
    check_all(dst.read_bytes(), f"{variant}:{name}", work, dump=False)


# --- regressions, as commented hex (tests/cases) ----------------------------------------------

def test_open_fragments_are_read_and_closed_on_output():
    """Encapsulated Pixel Data ending the file without its sequence delimiter: read (dcmtk does;
    pydicom silently keeps nothing), given back as it is under keep-all, and closed by the
    delimiter in any output that changes."""
    raw = cases.OPEN_FRAGMENTS
    pixel = parse(raw).dataset.elements()[-3]
    assert pixel.kind == KIND_FRAGMENTS and pixel.flags & FLAG_OPEN and pixel.end == len(raw)
    closed = raw + bytes.fromhex("FE FF DD E0 00 00 00 00")
    check_scan(raw, "open_fragments", closed)
    assert anonymize(raw, policy={}) == raw
    name = bytes.fromhex("10 00 10 00 50 4E 08 00 44 4F 45 5E 4A 4F 48 4E")   # (0010,0010)
    assert anonymize(raw, policy={"PatientName": "remove"}) == closed.replace(name, b"")
    assert anonymize(raw, policy={"PixelData": "remove"}) == raw[:pixel.start]   # no stray delimiter
    assert pydicom.dcmread(io.BytesIO(closed)).PixelData.endswith(b"\xff\xd8\x01\x02\xff\xd9")


def test_implicit_private_matches_pydicom():
    """dcmconv +ti of a GE file: an empty SQ, a private SQ and an empty private value pydicom
    types by its private dictionary, an odd group's group length: the oracle's normalisations."""
    check_scan(cases.IMPLICIT_PRIVATE, "implicit_private")
    check_all(cases.IMPLICIT_PRIVATE, "implicit_private", None, dump=False)
