"""Masks on compressed Pixel Data with decompress=True: decoded by pydicom, blanked, written as
native Explicit VR Little Endian with the transfer syntax and image attributes updated."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import get_decoder
from pydicom.uid import ExplicitVRLittleEndian

import fastanon
from fastanon import Mask, PolicyError
from conftest import blank_bytes

TEST_FILES = Path(os.path.dirname(pydicom.data.__file__)) / "test_files"


def frames_of(ds) -> np.ndarray:
    arr = ds.pixel_array
    return arr.reshape(int(ds.get("NumberOfFrames", 1) or 1), ds.Rows, ds.Columns, -1)


@pytest.mark.parametrize("filename, black", [
    ("MR_small_RLE.dcm", -32768),            # MONOCHROME2, signed 16-bit
    ("SC_rgb_rle_2frame.dcm", 0),            # RGB, 2 frames
    ("SC_rgb_rle_16bit.dcm", 0),
    ("rtdose_rle.dcm", 0),                   # 32-bit, 15 frames
])
def test_decompress_masks_and_stores_native(filename, black):
    raw = (TEST_FILES / filename).read_bytes()
    mask = Mask(2, 3, 5, 4)
    out, report = blank_bytes(raw, [mask], filename, decompress=True)
    assert report.decompressed and report.size == len(out) and report.applied == 1
    before, after = pydicom.dcmread(io.BytesIO(raw)), pydicom.dcmread(io.BytesIO(out))
    assert after.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert not after["PixelData"].is_undefined_length
    assert after.SOPInstanceUID == before.SOPInstanceUID
    assert "LossyImageCompression" not in after or after.LossyImageCompression == \
        before.get("LossyImageCompression")                 # RLE is lossless: nothing claimed
    expected = frames_of(before).copy()
    expected[:, 3:7, 2:7] = black
    assert np.array_equal(frames_of(after), expected)
    assert after.PatientName == before.PatientName


def test_decompress_through_the_output_file(tmp_path, monkeypatch):
    """A mapped input (every file, here) is written, then masked in the mapped output file: the
    decoded file replaces what was written."""
    monkeypatch.setattr(fastanon.pipeline, "SMALL_FILE", 0)
    raw = (TEST_FILES / "SC_rgb_rle_2frame.dcm").read_bytes()
    path = tmp_path / "out.dcm"
    masks = [Mask(0, 0, 10, 10, frames=[1])]
    report = fastanon.anonymize_file(TEST_FILES / "SC_rgb_rle_2frame.dcm", path, policy={},
                                     masks=masks, decompress=True)
    expected, _ = blank_bytes(raw, masks, decompress=True)
    assert path.read_bytes() == expected and report.bytes_out == len(expected)


@pytest.mark.parametrize("filename, method", [
    ("SC_rgb_jpeg_dcmtk.dcm", "ISO_10918_1"),        # JPEG baseline: lossy
    ("JPEGLSNearLossless_08.dcm", "ISO_14495_1"),
])
def test_lossy_source_is_marked_lossy_or_refused_clearly(filename, method):
    raw = (TEST_FILES / filename).read_bytes()
    syntax = pydicom.dcmread(io.BytesIO(raw)).file_meta.TransferSyntaxUID
    if not get_decoder(syntax).is_available:
        with pytest.raises(PolicyError, match=rf"{filename}: the compressed Pixel Data "
                                              rf"\(transfer syntax {syntax}\) cannot be decoded"):
            blank_bytes(raw, [Mask(0, 0, 4, 4)], filename, decompress=True)
        return
    out, _ = blank_bytes(raw, [Mask(0, 0, 4, 4)], filename, decompress=True)
    after = pydicom.dcmread(io.BytesIO(out))
    assert after.LossyImageCompression == "01"
    assert method in list(np.atleast_1d(after.LossyImageCompressionMethod))
    assert after.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    if after.SamplesPerPixel == 3:
        assert after.PhotometricInterpretation == "RGB"     # decoded to RGB
        assert frames_of(after)[0, :4, :4].max() == 0


def test_native_data_ignores_decompress():
    raw = (TEST_FILES / "MR_small.dcm").read_bytes()
    assert blank_bytes(raw, [Mask(0, 0, 2, 2)], decompress=True)[0] == \
        blank_bytes(raw, [Mask(0, 0, 2, 2)])[0]
