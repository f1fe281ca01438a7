"""Masks in JPEG Lossless, JPEG-LS Lossless and JPEG 2000 Lossless Pixel Data keep the transfer
syntax (the codecs extra): the frames a mask touches are decoded, blanked and encoded again
losslessly; every pixel outside the masks is the input's (checked with dcmtk's decoders where
dcmtk has one), the other frames' fragments are the input's bytes."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames

import fastanon
from fastanon import Mask, PolicyError
from fastanon import pixels
from conftest import TEST_FILES_DIR, blank_bytes
from realfiles import pydicom_data_dir

imagecodecs = pytest.importorskip("imagecodecs", reason="the codecs extra is not installed")

TEST_FILES = Path(TEST_FILES_DIR)
DECODERS = {"1.2.840.10008.1.2.4.81": imagecodecs.jpegls_decode,
            "1.2.840.10008.1.2.4.91": imagecodecs.jpeg2k_decode,
            "1.2.840.10008.1.2.4.70": imagecodecs.jpeg8_decode,
            "1.2.840.10008.1.2.4.57": imagecodecs.jpeg8_decode,
            "1.2.840.10008.1.2.4.80": imagecodecs.jpegls_decode,
            "1.2.840.10008.1.2.4.90": imagecodecs.jpeg2k_decode}
DCMTK = {"1.2.840.10008.1.2.4.70": "dcmdjpeg", "1.2.840.10008.1.2.4.57": "dcmdjpeg",
         "1.2.840.10008.1.2.4.80": "dcmdjpls", "1.2.840.10008.1.2.4.81": "dcmdjpls"}

# (file, where, the stored bit pattern of black in the decoded frame)
FILES = [
    ("SC_rgb_jpeg_gdcm.dcm", "pydicom", 0),              # JPEG Lossless SV1, RGB
    ("MR_small_jpeg_ls_lossless.dcm", "pydicom", 0x8000),  # JPEG-LS, signed 16-bit
    ("MR_small_jp2klossless.dcm", "pydicom", -32768),    # JPEG 2000, signed components
    ("GDCMJ2K_TextGBR.dcm", "pydicom", 0),               # JPEG 2000, YBR_RCT
    ("J2K_pixelrep_mismatch.dcm", "pydicom", 0x1000),    # signed header, unsigned stream, 13 bits
    ("JPEG-LL.dcm", "pydicom-data", 0x8000),
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", "pydicom-data", 0),
    ("US1_J2KR.dcm", "pydicom-data", 0),
    ("emri_small_jpeg_2k_lossless.dcm", "pydicom-data", 0),   # 10 frames
    ("emri_small_jpeg_ls_lossless.dcm", "pydicom-data", 0),   # 10 frames
    ("JPEGLSNearLossless_08.dcm", "pydicom", 0),         # near-lossless: encoded again with NEAR 0
    ("SC_rgb_jls_lossy_sample.dcm", "pydicom", 0),
    ("JPEG2000.dcm", "pydicom", -32768),                 # lossy JPEG 2000, signed
    ("SC_rgb_gdcm_KY.dcm", "pydicom", 0),
    ("MR2_J2KI.dcm", "pydicom-data", 0),
    ("RG3_J2KI.dcm", "pydicom-data", 1023),              # MONOCHROME1, 10 bits: black is white
]


def _path(name: str, where: str) -> Path:
    if where == "pydicom":
        return TEST_FILES / name
    folder = pydicom_data_dir()
    if folder is None or not (folder / name).is_file():
        pytest.skip("pydicom-data is not installed")
    return folder / name


def _count(ds) -> int:
    return int(ds.get("NumberOfFrames", 1) or 1)


def _fragments(ds) -> list[bytes]:
    return list(generate_frames(ds.PixelData, number_of_frames=_count(ds)))


@pytest.mark.parametrize("name, where, black", FILES, ids=[f[0] for f in FILES])
def test_masks_keep_the_lossless_syntax_and_every_other_pixel(name, where, black, tmp_path):
    raw = _path(name, where).read_bytes()
    before = pydicom.dcmread(io.BytesIO(raw))
    syntax = str(before.file_meta.TransferSyntaxUID)
    last = _count(before) - 1
    masks = [Mask(2, 3, 20, 10, frames=[0]), Mask(0, 0, 4, 4, frames=[last])]
    out, report = blank_bytes(raw, masks, name)
    after = pydicom.dcmread(io.BytesIO(out))
    assert str(after.file_meta.TransferSyntaxUID) == syntax and not report.decompressed
    assert report.reencoded == len({0, last})
    old, new = _fragments(before), _fragments(after)
    assert len(new) == len(old) and new[1:last] == old[1:last]
    decode = DECODERS[syntax]
    for frame, (x0, y0, x1, y1) in ((0, (2, 3, 22, 13)), (last, (0, 0, 4, 4))):
        if frame == last and last == 0:
            continue
        a, b = decode(old[frame]), decode(new[frame])
        outside = np.ones(a.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        if frame == 0 and last == 0:
            outside[0:4, 0:4] = False
        assert np.array_equal(a[outside], b[outside])
        assert (b[y0:y1, x0:x1] == black).all()
    assert after.get("PatientName") == before.get("PatientName")
    tool = shutil.which(DCMTK.get(syntax, "")) if syntax in DCMTK else None
    if tool:                 # an independent decoder reads the same pixels
        (tmp_path / "out.dcm").write_bytes(out)
        done = subprocess.run([tool, str(tmp_path / "out.dcm"), str(tmp_path / "native.dcm")],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        native = pydicom.dcmread(tmp_path / "native.dcm")
        frames = native.pixel_array.reshape(_count(native), native.Rows, native.Columns, -1)
        first = decode(new[0]).reshape(native.Rows, native.Columns, -1)
        assert np.array_equal(frames[0].view(first.dtype) if frames.dtype.itemsize ==
                              first.dtype.itemsize else frames[0], first)


def test_a_frame_in_several_fragments_is_found_by_its_start_marker():
    """Without an offset table, the frames of JPEG fragments begin where a codestream does."""
    ds = pydicom.dcmread(_path("emri_small_jpeg_ls_lossless.dcm", "pydicom-data"))
    frames = _fragments(ds)
    pieces = []
    for frame in frames:                # each frame cut in two fragments, even lengths
        cut = len(frame) // 2 & ~1
        pieces += [frame[:cut], frame[cut:]]
    ds.PixelData = encapsulate(pieces, fragments_per_frame=1, has_bot=False)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    out, report = blank_bytes(buffer.getvalue(), [Mask(0, 0, 8, 8, frames=[4])])
    after = pydicom.dcmread(io.BytesIO(out))
    assert report.reencoded == 1
    new = _fragments(after)             # the output has a Basic Offset Table: frames are known
    assert len(new) == 10 and new[3] == frames[3] and new[5] == frames[5]
    assert (imagecodecs.jpegls_decode(new[4])[:8, :8] == 0).all()


def test_without_the_codecs_the_mask_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(pixels, "codecs_available", lambda: False)
    raw = (TEST_FILES / "MR_small_jpeg_ls_lossless.dcm").read_bytes()
    with pytest.raises(PolicyError, match=r"JPEG-LS Lossless Pixel Data need its codecs: "
                                          r"pip install 'fastanon\[codecs\]'"):
        fastanon.anonymize(raw, {}, [Mask(0, 0, 4, 4)])
    assert not pixels.masks_keep_syntax("1.2.840.10008.1.2.4.80")


def test_other_syntaxes_are_still_refused_without_decompress():
    from conftest import unmaskable

    with pytest.raises(PolicyError, match="decompress"):
        fastanon.anonymize(unmaskable(), {}, [Mask(0, 0, 4, 4)])
    assert pixels.masks_keep_syntax("1.2.840.10008.1.2.4.90")
    assert pixels.masks_keep_syntax("1.2.840.10008.1.2.4.91")
    assert not pixels.masks_keep_syntax("1.2.840.10008.1.2.4.201")


def test_jpeg_2000_with_the_irreversible_colour_transform_is_refused():
    raw = _path("US1_J2KI.dcm", "pydicom-data").read_bytes()
    with pytest.raises(PolicyError, match="YBR_ICT.*--decompress"):
        fastanon.anonymize(raw, {}, [Mask(0, 0, 4, 4)])


def test_the_cli_masks_jpeg_2000_in_its_syntax(tmp_path):
    from conftest import cli_masked

    ds = cli_masked(tmp_path, TEST_FILES / "MR_small_jp2klossless.dcm")
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    assert (imagecodecs.jpeg2k_decode(_fragments(ds)[0])[:8, :8] == -32768).all()
