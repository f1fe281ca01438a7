"""Masks on RLE Lossless Pixel Data keep the transfer syntax: the frames a mask touches are
decoded, blanked and encoded again by the kernel; decoded by pydicom and by dcmtk, the masked
rectangle is black and every other pixel is the input's; the other frames' fragments are the
input's bytes; offset tables follow the new fragment lengths."""

from __future__ import annotations

import io
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate_extended, generate_frames
from pydicom.pixels.decoders.rle import _rle_decode_frame
from pydicom.uid import RLELossless

import fastanon
from fastanon import Mask, MalformedError, PolicyError, _core
from fastanon.pixels import masks_keep_syntax
from conftest import TEST_FILES_DIR, blank_bytes
from realfiles import pydicom_data_dir

TEST_FILES = Path(TEST_FILES_DIR)
DCMDRLE = shutil.which("dcmdrle")

# (file, black stored value of the first sample)
FILES = [
    ("MR_small_RLE.dcm", -32768),            # MONOCHROME2, signed 16-bit
    ("SC_rgb_rle.dcm", 0),                   # RGB 8-bit
    ("SC_rgb_rle_2frame.dcm", 0),
    ("SC_rgb_rle_16bit.dcm", 0),
    ("SC_rgb_rle_16bit_2frame.dcm", 0),
    ("SC_rgb_rle_32bit.dcm", 0),
    ("SC_rgb_rle_32bit_2frame.dcm", 0),
    ("rtdose_rle.dcm", 0),                   # 32-bit, 15 frames
    ("rtdose_rle_1frame.dcm", 0),
]


def _path(name: str) -> Path:
    if name == "emri_small_RLE.dcm":
        folder = pydicom_data_dir()
        if folder is None or not (folder / name).is_file():
            pytest.skip("pydicom-data is not installed")
        return folder / name
    return TEST_FILES / name


def _frames(ds) -> np.ndarray:
    count = int(ds.get("NumberOfFrames", 1) or 1)
    return ds.pixel_array.reshape(count, ds.Rows, ds.Columns, -1)


def _fragments(ds) -> list[bytes]:
    return list(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1) or 1)))


@pytest.mark.parametrize("name, black", FILES + [("emri_small_RLE.dcm", 0)])
def test_masks_keep_rle_and_touch_only_their_rectangle_and_frames(name, black):
    raw = _path(name).read_bytes()
    before = pydicom.dcmread(io.BytesIO(raw))
    count = int(before.get("NumberOfFrames", 1) or 1)
    masks = [Mask(2, 3, 5, 4, frames=[0]), Mask(0, 0, 2, 2, frames=[count - 1])]
    out, report = blank_bytes(raw, masks, name)
    after = pydicom.dcmread(io.BytesIO(out))
    assert after.file_meta.TransferSyntaxUID == RLELossless and not report.decompressed
    assert report.applied == 2 and report.reencoded == len({0, count - 1})
    expected = _frames(before).copy()
    expected[0, 3:7, 2:7] = black if expected.shape[-1] == 1 else 0
    expected[count - 1, 0:2, 0:2] = black if expected.shape[-1] == 1 else 0
    assert np.array_equal(_frames(after), expected)
    old, new = _fragments(before), _fragments(after)
    assert len(new) == count
    for frame in range(1, count - 1):           # frames without masks: the same bytes
        assert new[frame] == old[frame]
    assert all(len(f) % 2 == 0 for f in new)
    assert after.PatientName == before.PatientName and after.SOPInstanceUID == before.SOPInstanceUID


@pytest.mark.skipif(DCMDRLE is None, reason="dcmtk's dcmdrle is not installed")
@pytest.mark.parametrize("name", [n for n, _ in FILES])
def test_dcmtk_decodes_the_masked_file_as_pydicom_does(name, tmp_path):
    raw = _path(name).read_bytes()
    out, _ = blank_bytes(raw, [Mask(1, 1, 6, 3)], name)
    (tmp_path / "in.dcm").write_bytes(out)
    done = subprocess.run([DCMDRLE, str(tmp_path / "in.dcm"), str(tmp_path / "native.dcm")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    native = pydicom.dcmread(tmp_path / "native.dcm")
    assert np.array_equal(native.pixel_array, pydicom.dcmread(io.BytesIO(out)).pixel_array)


def test_the_basic_offset_table_follows_the_new_fragments():
    raw = (TEST_FILES / "SC_rgb_rle_2frame.dcm").read_bytes()
    before = pydicom.dcmread(io.BytesIO(raw))
    from pydicom.encaps import parse_basic_offsets

    assert parse_basic_offsets(before.PixelData) == [0, 8 + 664]     # the input has one
    out, _ = blank_bytes(raw, [Mask(0, 0, 10, 10, frames=[0])])
    after = pydicom.dcmread(io.BytesIO(out))
    first = len(_fragments(after)[0])
    assert parse_basic_offsets(after.PixelData) == [0, 8 + first] and first != 664


def test_an_extended_offset_table_follows_the_new_fragments():
    src = pydicom.dcmread(TEST_FILES / "SC_rgb_rle_2frame.dcm")
    value, offsets, lengths = encapsulate_extended(_fragments(src))
    src.PixelData = value
    src.ExtendedOffsetTable, src.ExtendedOffsetTableLengths = offsets, lengths
    buffer = io.BytesIO()
    src.save_as(buffer, enforce_file_format=True)
    out, _ = blank_bytes(buffer.getvalue(), [Mask(0, 0, 10, 10, frames=[1])])
    after = pydicom.dcmread(io.BytesIO(out))
    fragments = _fragments(after)
    assert np.frombuffer(after.ExtendedOffsetTableLengths, "<u8").tolist() == \
        [len(f) for f in fragments]
    assert np.frombuffer(after.ExtendedOffsetTable, "<u8").tolist() == [0, 8 + len(fragments[0])]
    assert fragments[0] == _fragments(src)[0] and (_frames(after)[1, :10, :10] == 0).all()


def test_through_a_mapped_output_file_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(fastanon.pipeline, "SMALL_FILE", 0)
    src = TEST_FILES / "rtdose_rle.dcm"
    masks = [Mask(0, 0, 4, 4, frames=[3, 4])]
    report = fastanon.anonymize_file(src, tmp_path / "out.dcm", "research", masks=masks, key="k")
    expected = fastanon.anonymize(src.read_bytes(), "research", masks, key="k")
    assert (tmp_path / "out.dcm").read_bytes() == expected
    assert report.bytes_out == len(expected) and report.shared == 0
    assert pydicom.dcmread(tmp_path / "out.dcm").file_meta.TransferSyntaxUID == RLELossless


def _with_fragment(raw: bytes, frame: int, new: bytes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(raw))
    fragments = _fragments(ds)
    fragments[frame] = new
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate(fragments, has_bot=True)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("damage, words", [
    (lambda f: f[:40], "shorter than the 64 bytes"),
    (lambda f: b"\x07" + f[1:], "another number of RLE segments"),
    (lambda f: f[:4] + (10 ** 6).to_bytes(4, "little") + f[8:], "offsets outside the frame"),
    (lambda f: f[:-100], "decodes to fewer bytes"),
])
def test_a_damaged_frame_is_a_clean_error_and_nothing_is_written(tmp_path, damage, words):
    raw = (TEST_FILES / "SC_rgb_rle_2frame.dcm").read_bytes()
    frame = _fragments(pydicom.dcmread(io.BytesIO(raw)))[1]
    bad = _with_fragment(raw, 1, damage(frame) + b"\0" * (len(damage(frame)) & 1))
    (tmp_path / "in.dcm").write_bytes(bad)
    with pytest.raises(MalformedError, match=f"frame 1 of the Pixel Data .*{words}"):
        fastanon.anonymize_file(tmp_path / "in.dcm", tmp_path / "out.dcm", {},
                                masks=[Mask(0, 0, 3, 3)])
    assert not (tmp_path / "out.dcm").exists() and (tmp_path / "in.dcm").read_bytes() == bad
    out, _ = blank_bytes(bad, [Mask(0, 0, 3, 3, frames=[0])])    # that frame untouched: fine
    assert _fragments(pydicom.dcmread(io.BytesIO(out)))[1] == _fragments(
        pydicom.dcmread(io.BytesIO(bad)))[1]


def test_fragments_that_are_not_one_per_frame_are_refused():
    ds = pydicom.dcmread(TEST_FILES / "SC_rgb_rle_2frame.dcm")
    ds.NumberOfFrames = 3
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(PolicyError, match=r"offset table lists 2 frame\(s\), Number of Frames is 3"):
        blank_bytes(buffer.getvalue(), [Mask(0, 0, 3, 3)])


def test_the_syntaxes_masks_apply_in():
    assert masks_keep_syntax(RLELossless) and masks_keep_syntax("1.2.840.10008.1.2.4.50")
    assert not masks_keep_syntax("1.2.840.10008.1.2.4.201") and not masks_keep_syntax(None)


def test_the_kernel_round_trips_any_plane_and_blacks_out_its_rectangles():
    """Random planes (few values: long runs; many: literals), random rectangles: the frame
    decodes to the plane with the rectangles set to the segment's black byte, within the
    worst-case size the kernel reserves."""
    rng = random.Random(7)
    for trial in range(400):
        rows, columns = rng.randint(1, 12), rng.randint(1, 300)
        segments = rng.choice([1, 2, 3, 4, 6])
        planes = [bytes(rng.randrange(rng.choice([1, 2, 3, 256])) for _ in range(rows * columns))
                  for _ in range(segments)]
        frame = _literal_frame(planes)
        rects, expected = [], [bytearray(p) for p in planes]
        black = bytes(rng.randrange(256) for _ in range(segments))
        for _ in range(rng.randint(0, 3)):
            x0, y0 = rng.randrange(columns), rng.randrange(rows)
            x1, y1 = rng.randint(x0 + 1, columns), rng.randint(y0 + 1, rows)
            rects += [x0, y0, x1, y1]
            for s in range(segments):
                for r in range(y0, y1):
                    expected[s][r * columns + x0:r * columns + x1] = bytes([black[s]]) * (x1 - x0)
        status, out = _core.rle_mask_frame(frame, rows, columns, segments,
                                           np.array(rects, dtype=np.int64), black)
        assert status == 0, trial
        header = np.frombuffer(out[:64], "<u4")
        assert header[0] == segments
        bounds = [*header[1:segments + 1].tolist(), len(out)]
        for s in range(segments):
            segment = out[bounds[s]:bounds[s + 1]]
            assert len(segment) % 2 == 0
            assert len(segment) <= rows * (columns + columns // 128 + 2) + 1
            assert _unpack(segment, rows * columns) == bytes(expected[s]), (trial, s)


def _literal_frame(planes: list[bytes]) -> bytes:
    """An RLE frame of literal runs only (a plain encoder, not the kernel's)."""
    segments = []
    for plane in planes:
        body = bytearray()
        for at in range(0, len(plane), 128):
            piece = plane[at:at + 128]
            body += bytes([len(piece) - 1]) + piece
        segments.append(bytes(body) + b"\0" * (len(body) & 1))
    offsets, at = [], 64
    for segment in segments:
        offsets.append(at)
        at += len(segment)
    header = np.array([len(planes), *offsets, *[0] * (15 - len(planes))], "<u4").tobytes()
    return header + b"".join(segments)


def _unpack(segment: bytes, size: int) -> bytes:
    """PackBits as PS3.5 G.3.2 states it, and a check that no run crosses a row (G.3.1)."""
    out, i = bytearray(), 0
    while i < len(segment) and len(out) < size:
        c = segment[i]
        i += 1
        if c < 128:
            out += segment[i:i + c + 1]
            i += c + 1
        elif c > 128:
            out += bytes([segment[i]]) * (257 - c)
            i += 1
    return bytes(out[:size])


def test_pydicom_decodes_the_kernels_frames():
    ds = pydicom.dcmread(TEST_FILES / "SC_rgb_rle_16bit.dcm")
    frame = _fragments(ds)[0]
    status, same = _core.rle_mask_frame(frame, ds.Rows, ds.Columns, 6, np.zeros(0, np.int64),
                                        bytes(6))
    assert status == 0
    assert _rle_decode_frame(same, ds.Rows, ds.Columns, 3, 16) == \
        _rle_decode_frame(frame, ds.Rows, ds.Columns, 3, 16)


def test_the_cli_masks_rle_in_place(tmp_path):
    from conftest import cli_masked

    ds = cli_masked(tmp_path, TEST_FILES / "MR_small_RLE.dcm")
    assert ds.file_meta.TransferSyntaxUID == RLELossless
    assert (ds.pixel_array[:8, :8] == -32768).all() and ds.BurnedInAnnotation == "NO"
