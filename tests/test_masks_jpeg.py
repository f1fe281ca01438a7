"""Masks in JPEG Baseline blank in the DCT domain (the kernel): the blocks of the MCUs a mask
touches hold black, every other block keeps its quantized coefficients (read back by the
kernel's decoder and checked against libjpeg-turbo's pixels and dcmtk's decoder), the frames
without masks keep their bytes, and the transfer syntax stays."""

from __future__ import annotations

import io
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames

import fastanon
from fastanon import MalformedError, Mask, PolicyError, _core
from conftest import TEST_FILES_DIR, blank_bytes
from realfiles import deid_data_dir, pydicom_data_dir

TEST_FILES = Path(TEST_FILES_DIR)
BASELINE = "1.2.840.10008.1.2.4.50"
DCMDJPEG = shutil.which("dcmdjpeg")
JPEGTRAN, DJPEG = shutil.which("jpegtran"), shutil.which("djpeg")

FILES = [
    ("pydicom", "SC_jpeg_no_color_transform.dcm"),      # RGB, no colour transform (Adobe 0)
    ("pydicom", "SC_rgb_dcmtk_+eb+cr.dcm"),             # RGB component ids
    ("pydicom", "SC_rgb_dcmtk_+eb+cy+n1.dcm"),          # YCbCr 4:2:0
    ("pydicom", "SC_rgb_dcmtk_+eb+cy+s2.dcm"),          # YCbCr 4:2:2
    ("pydicom", "SC_rgb_jpeg_dcmtk.dcm"),               # YCbCr 4:4:4
    ("pydicom", "SC_rgb_jpeg_lossy_gdcm.dcm"),
    ("pydicom", "SC_rgb_small_odd_jpeg.dcm"),           # 3 x 3
    ("pydicom", "examples_ybr_color.dcm"),              # 30 frames
    ("pydicom-data", "color3d_jpeg_baseline.dcm"),      # 120 frames, 640 x 480
    ("deid-data", "humans/ctbrain1.dcm"),
    ("pydicom", "JPEG-lossy.dcm"),                      # Extended, 12 bits, Se written as 0
]


def _path(where: str, name: str) -> Path:
    folder = {"pydicom": TEST_FILES, "pydicom-data": pydicom_data_dir(),
              "deid-data": deid_data_dir()}[where]
    if folder is None or not (folder / name).is_file():
        pytest.skip(f"{where} is not installed")
    return folder / name


def _count(ds) -> int:
    return int(ds.get("NumberOfFrames", 1) or 1)


def _fragments(ds) -> list[bytes]:
    return list(generate_frames(ds.PixelData, number_of_frames=_count(ds)))


def _size(frame: bytes) -> tuple[int, int]:
    """(rows, columns) from the frame header."""
    sof = max(frame.find(b"\xff\xc0"), frame.find(b"\xff\xc1"))
    return int.from_bytes(frame[sof + 5:sof + 7], "big"), int.from_bytes(frame[sof + 7:sof + 9], "big")


def _coefficients(frame: bytes) -> tuple[list, int, int]:
    status, comps, width, height = _core.jpeg_mask_frame(frame, *_size(frame),
                                                         np.zeros(0, np.int64), False, True)
    assert status == 0
    return [np.frombuffer(raw, "<i2").reshape(bh, bw, 64) for bw, bh, raw in comps], width, height


def _check_blocks(old: bytes, new: bytes, rects, ycc: bool, inverted: bool = False) -> None:
    """Blocks inside the rectangles grown to whole MCUs: black DC, no AC; all others: the
    input's coefficients."""
    before, width, height = _coefficients(old)
    after, _, _ = _coefficients(new)
    factors = _factors(old)
    for c, (a, b) in enumerate(zip(before, after)):
        assert a.shape == b.shape
        inside = np.zeros(a.shape[:2], bool)
        hc, vc = factors[c] if len(before) > 1 else (1, 1)
        for x0, y0, x1, y1 in rects:
            inside[y0 // height * vc:-(-y1 // height) * vc,
                   x0 // width * hc:-(-x1 // width) * hc] = True
        assert np.array_equal(a[~inside], b[~inside]), f"component {c}: a block outside changed"
        assert (b[inside][:, 1:] == 0).all()
        dcs = set(b[inside][:, 0].tolist())
        assert len(dcs) <= 1
        if dcs and ycc and c > 0:
            assert dcs == {0}
        elif dcs:
            assert (next(iter(dcs)) > 0) == inverted


def _factors(frame: bytes) -> list[tuple[int, int]]:
    """Each component's sampling factors, from the frame header (SOF0/SOF1)."""
    at = 2
    while True:
        marker, length = frame[at + 1], int.from_bytes(frame[at + 2:at + 4], "big")
        if marker in (0xC0, 0xC1):
            count = frame[at + 9]
            return [(frame[at + 11 + 3 * c] >> 4, frame[at + 11 + 3 * c] & 15)
                    for c in range(count)]
        at += 2 + length


def _ycc(ds) -> bool:
    return ds.PhotometricInterpretation.startswith("YBR")


@pytest.mark.parametrize("where, name", FILES, ids=[n for _, n in FILES])
def test_jpeg_baseline_masks_in_the_dct_domain(where, name, tmp_path):
    raw = _path(where, name).read_bytes()
    before = pydicom.dcmread(io.BytesIO(raw))
    last = _count(before) - 1
    rows, columns = before.Rows, before.Columns
    first_mask = (min(5, columns - 1), min(7, rows - 1), min(30, columns), min(20, rows))
    masks = [Mask(first_mask[0], first_mask[1], first_mask[2] - first_mask[0],
                  first_mask[3] - first_mask[1], frames=[0]),
             Mask(0, 0, min(4, columns), min(4, rows), frames=[last])]
    out, report = blank_bytes(raw, masks, name)
    after = pydicom.dcmread(io.BytesIO(out))
    assert after.file_meta.TransferSyntaxUID == before.file_meta.TransferSyntaxUID
    assert report.reencoded == len({0, last})
    old, new = _fragments(before), _fragments(after)
    assert len(new) == len(old) and new[1:last] == old[1:last]
    factors = _factors(old[0])
    rects0 = [first_mask] + ([(0, 0, min(4, columns), min(4, rows))] if last == 0 else [])
    ycc = not _rgb_stream(old[0])
    _check_blocks(old[0], new[0], rects0, ycc)
    if last:
        _check_blocks(old[last], new[last], [(0, 0, min(4, columns), min(4, rows))], ycc)
    imagecodecs = pytest.importorskip("imagecodecs")
    a, b = imagecodecs.jpeg8_decode(old[0]), imagecodecs.jpeg8_decode(new[0])
    x0, y0, x1, y1 = first_mask
    assert b[y0:y1, x0:x1].max() <= 2                  # black (chroma upsampled at edges)
    far = np.ones(a.shape[:2], bool)                    # one MCU of margin: upsampling reach
    width, height = 8 * max(h for h, _ in factors), 8 * max(v for _, v in factors)
    if len(factors) == 1:
        width = height = 8
    far[max(0, y0 // height * height - height):-(-y1 // height) * height + height,
        max(0, x0 // width * width - width):-(-x1 // width) * width + width] = False
    if last == 0:
        far[:height * 2, :width * 2] = False
    assert np.array_equal(a[far], b[far])
    if DCMDJPEG:
        (tmp_path / "out.dcm").write_bytes(out)
        done = subprocess.run([DCMDJPEG, str(tmp_path / "out.dcm"), str(tmp_path / "n.dcm")],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr


def _rgb_stream(frame: bytes) -> bool:
    """libjpeg's reading: Adobe transform 0, or component ids R G B without JFIF."""
    adobe = frame.find(b"Adobe")
    if adobe > 0:
        return frame[adobe + 11] == 0
    if b"JFIF\0" in frame[:64]:
        return False
    sof = max(frame.find(b"\xff\xc0"), frame.find(b"\xff\xc1"))
    ids = bytes(frame[sof + 10 + 3 * c] for c in range(3))
    return ids == b"RGB"


def test_a_mask_that_cuts_blocks_is_said_to_grow():
    raw = (TEST_FILES / "SC_rgb_dcmtk_+eb+cy+n1.dcm").read_bytes()      # 16 x 16 MCUs
    with pytest.warns(fastanon.MaskWarning, match=r"mask 3,3,10,10 blacks out the whole 16x16 "
                                                  r"JPEG blocks it touches: 0,0,16,16"):
        blank_bytes(raw, [Mask(3, 3, 10, 10)])


def _jpegtran(frame: bytes, *options: str) -> bytes:
    """libjpeg-turbo's lossless transcoder: the same coefficients, other markers."""
    done = subprocess.run([JPEGTRAN, *options], input=frame, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _with_frames(name: str, frames: list[bytes], **attributes) -> bytes:
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(TEST_FILES / name)
    ds.PixelData = encapsulate(frames, has_bot=True)
    ds.NumberOfFrames = len(frames)
    for keyword, value in attributes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.skipif(JPEGTRAN is None, reason="libjpeg-turbo's jpegtran is not installed")
@pytest.mark.parametrize("restart", ["1B", "3B", "1"])
def test_restart_markers_colour_and_monochrome(restart, tmp_path):
    """Restart intervals (jpegtran -restart: every 1 or 3 MCUs, every MCU row) on a colour file
    of three frames and on monochrome ones (MONOCHROME2 and MONOCHROME1)."""
    frames = _fragments(pydicom.dcmread(TEST_FILES / "examples_ybr_color.dcm"))[:3]
    raw = _with_frames("examples_ybr_color.dcm", [_jpegtran(f, "-restart", restart)
                                                  for f in frames])
    old = _fragments(pydicom.dcmread(io.BytesIO(raw)))
    assert b"\xff\xdd" in old[0] and b"\xff\xd0" in old[0]
    out, _ = blank_bytes(raw, [Mask(10, 10, 30, 20, frames=[1])])
    new = _fragments(pydicom.dcmread(io.BytesIO(out)))
    assert new[0] == old[0] and new[2] == old[2] and b"\xff\xd0" in new[1]
    _check_blocks(old[1], new[1], [(10, 10, 40, 30)], True)
    grey = _jpegtran(frames[0], "-grayscale", "-restart", restart)
    for photometric in ("MONOCHROME2", "MONOCHROME1"):
        raw = _with_frames("examples_ybr_color.dcm", [grey], SamplesPerPixel=1,
                           PhotometricInterpretation=photometric, PlanarConfiguration=None)
        out, _ = blank_bytes(raw, [Mask(8, 8, 16, 16)])
        new = _fragments(pydicom.dcmread(io.BytesIO(out)))[0]
        _check_blocks(grey, new, [(8, 8, 24, 24)], False, inverted=photometric == "MONOCHROME1")
        if DJPEG:               # an independent decoder: the blocks are black (or white)
            done = subprocess.run([DJPEG, "-pnm"], input=new, capture_output=True, timeout=60)
            assert done.returncode == 0
            pixels = _pgm(done.stdout)
            assert (pixels[8:24, 8:24] == (255 if photometric == "MONOCHROME1" else 0)).all()


def _pgm(data: bytes) -> np.ndarray:
    """The pixels of a binary PGM (djpeg -pnm of a grey JPEG)."""
    fields, at = [], 0
    while len(fields) < 4:
        while data[at:at + 1].isspace():
            at += 1
        end = at
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[at:end])
        at = end
    width, height = int(fields[1]), int(fields[2])
    return np.frombuffer(data[at + 1:at + 1 + width * height], np.uint8).reshape(height, width)


def test_random_images_keep_every_block_outside_the_masks():
    """libjpeg-turbo's baseline encoder at several qualities and subsamplings, random rectangles:
    the kernel's output reads back with every block outside them as it was."""
    imagecodecs = pytest.importorskip("imagecodecs")
    rng = random.Random(11)
    for trial in range(40):
        height, width = rng.randint(1, 70), rng.randint(1, 90)
        colour = rng.random() < 0.7
        shape = (height, width, 3) if colour else (height, width)
        image = np.random.default_rng(trial).integers(0, 256, shape, dtype=np.uint8)
        image[: height // 2] //= 8                      # smooth parts: long zero runs
        frame = imagecodecs.jpeg8_encode(image, level=rng.choice([30, 75, 95, 100]),
                                         subsampling=rng.choice(["444", "422", "420"]) if colour
                                         else None)
        rects = []
        for _ in range(rng.randint(1, 3)):
            x0, y0 = rng.randrange(width), rng.randrange(height)
            rects.append((x0, y0, rng.randint(x0 + 1, width), rng.randint(y0 + 1, height)))
        status, new, _, _ = _core.jpeg_mask_frame(frame, height, width,
                                                  np.array(rects, np.int64).ravel(), False)
        assert status == 0, trial
        _check_blocks(frame, new, rects, colour)
        decoded = imagecodecs.jpeg8_decode(new)
        for x0, y0, x1, y1 in rects:
            assert decoded[y0:y1, x0:x1].max() <= 2, trial


@pytest.mark.skipif(JPEGTRAN is None, reason="libjpeg-turbo's jpegtran is not installed")
def test_progressive_jpeg_is_refused_cleanly():
    frame = _fragments(pydicom.dcmread(TEST_FILES / "SC_rgb_jpeg_dcmtk.dcm"))[0]
    progressive = _with_frames("SC_rgb_jpeg_dcmtk.dcm", [_jpegtran(frame, "-progressive")])
    with pytest.raises(PolicyError, match="not a sequential DCT JPEG of 8 or 12 bits.*--decompress"):
        blank_bytes(progressive, [Mask(0, 0, 4, 4)])


def test_a_damaged_stream_is_a_clean_error(tmp_path):
    src = TEST_FILES / "SC_rgb_jpeg_dcmtk.dcm"
    ds = pydicom.dcmread(src)
    frame = _fragments(ds)[0]
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([frame[:200] + b"\xff\xd9"], has_bot=False)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    (tmp_path / "in.dcm").write_bytes(buffer.getvalue())
    with pytest.raises(MalformedError, match="frame 0 of the Pixel Data is not a JPEG stream"):
        fastanon.anonymize_file(tmp_path / "in.dcm", tmp_path / "out.dcm", {},
                                masks=[Mask(0, 0, 4, 4)])
    assert not (tmp_path / "out.dcm").exists()


def test_damaged_streams_never_crash_the_kernel():
    """Random byte changes, cuts and insertions in real frames: a status, never a crash, and
    what is returned as masked still reads back."""
    rng = random.Random(5)
    sources = [_fragments(pydicom.dcmread(TEST_FILES / name))[0] for name in
               ("SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_dcmtk_+eb+cy+n1.dcm", "SC_jpeg_no_color_transform.dcm")]
    statuses = set()
    for trial in range(600):
        frame = bytearray(rng.choice(sources))
        rows, columns = _size(bytes(frame))
        for _ in range(rng.randint(1, 4)):
            kind = rng.random()
            at = rng.randrange(len(frame))
            if kind < 0.6:
                frame[at] = rng.randrange(256)
            elif kind < 0.8:
                del frame[at:at + rng.randint(1, 50)]
            else:
                frame[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
        status, new, _, _ = _core.jpeg_mask_frame(bytes(frame), rows, columns,
                                                  np.array([0, 0, 3, 3], np.int64), False)
        statuses.add(status)
        if status == 0:
            assert _coefficients(new)[0]
    assert statuses <= {_core.JPEG_OK, _core.JPEG_CORRUPT, _core.JPEG_UNSUPPORTED,
                        _core.JPEG_SIZE} and len(statuses) > 1
