"""Pixel masks on native Pixel Data, every layout: pydicom decodes the output; masked pixels are
black for the photometric interpretation, every other pixel and every byte outside the Pixel Data
value are those of the input (policy={} changes nothing else)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import pack_bits, pixel_array
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
)

import fastanon
from fastanon import Mask, PolicyError
from conftest import blank_bytes
from fastanon.scan import parse

TEST_FILES = Path(os.path.dirname(pydicom.data.__file__)) / "test_files"


# ---------------------------------------------------------------------------------------------
# Helpers

def pixel_span(raw: bytes) -> tuple[int, int]:
    """(start, end) of the Pixel Data value, as fastanon's scanner sees it."""
    region = parse(raw).dataset
    element = region.element(region.table.find(0x7FE00010, -1))
    return element.vstart, element.vstart + element.vlen


def decoded(raw: bytes) -> np.ndarray:
    """Stored values as (frames, rows, cols, samples); YBR kept as YBR (raw=True)."""
    ds = pydicom.dcmread(io.BytesIO(raw))
    arr = pixel_array(ds, raw=True)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return arr.reshape(frames, ds.Rows, ds.Columns, ds.SamplesPerPixel)


def lut_darkest(ds: Dataset) -> int:
    """Oracle for PALETTE COLOR black: the index pydicom maps to the darkest colour."""
    from pydicom.pixels import apply_color_lut
    first = ds.RedPaletteColorLookupTableDescriptor[1]
    entries = ds.RedPaletteColorLookupTableDescriptor[0] or 65536
    indices = np.arange(first, first + entries, dtype=np.uint16 if ds.BitsAllocated > 8 else np.uint8)
    rgb = apply_color_lut(indices, ds).astype(np.int64)
    luma = 299 * rgb[:, 0] + 587 * rgb[:, 1] + 114 * rgb[:, 2]
    return first + int(np.argmin(luma))


def expected_black(raw: bytes) -> tuple[int, ...]:
    ds = pydicom.dcmread(io.BytesIO(raw))
    pi, bits = ds.PhotometricInterpretation, ds.BitsStored
    signed = ds.get("PixelRepresentation", 0) == 1
    if pi == "MONOCHROME2":
        return (-(1 << (bits - 1)) if signed else 0,)
    if pi == "MONOCHROME1":
        return ((1 << (bits - 1)) - 1 if signed else (1 << bits) - 1,)
    if pi == "RGB":
        return (0, 0, 0)
    if pi.startswith("YBR_FULL"):
        return (0, 1 << (bits - 1), 1 << (bits - 1))
    if pi == "PALETTE COLOR":
        return (lut_darkest(ds),)
    raise AssertionError(pi)


def check_masked(raw: bytes, masks, widen422: bool = False) -> bytes:
    """Mask raw with policy={} and check every byte and pixel of the result."""
    out = fastanon.anonymize(raw, policy={}, masks=masks)
    start, end = pixel_span(raw)
    assert len(out) == len(raw)
    assert out[:start] == raw[:start] and out[end:] == raw[end:]
    before, after = decoded(raw), decoded(out)
    expected = before.copy()
    frames, rows, cols, _ = before.shape
    black = expected_black(raw)
    for mask in masks:
        x0, x1 = max(mask.x, 0), min(mask.x + mask.width, cols)
        if widen422:
            x0, x1 = x0 - x0 % 2, x1 + x1 % 2
        chosen = range(frames) if mask.frames is None else mask.frames
        for f in chosen:
            expected[f, max(mask.y, 0):mask.y + mask.height, x0:x1] = black
    assert np.array_equal(after, expected)
    assert not np.array_equal(after, before)
    return out


def make(rows=7, cols=5, frames=1, bits=16, stored=None, signed=False, samples=1, planar=0,
         photometric="MONOCHROME2", syntax=ExplicitVRLittleEndian, seed=0, palette=None) -> bytes:
    """A small secondary capture file with random pixels in the layout asked for."""
    stored = stored or bits
    rng = np.random.default_rng(seed)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = "2.999.1.2.3"
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = "2.999.1.2.3"
    ds.PatientName = "MASK^TEST"
    ds.Modality = "OT"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, samples
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, stored, stored - 1
    ds.PixelRepresentation = int(signed)
    if samples > 1:
        ds.PlanarConfiguration = planar
    if frames > 1:
        ds.NumberOfFrames = frames
    if palette is not None:
        first, red, green, blue = palette
        for color, lut in zip(("Red", "Green", "Blue"), (red, green, blue)):
            setattr(ds, f"{color}PaletteColorLookupTableDescriptor", [len(lut), first, 16])
            setattr(ds, f"{color}PaletteColorLookupTableData",
                    np.asarray(lut, dtype="<u2").tobytes())
    big = syntax == ExplicitVRBigEndian
    if bits == 1:
        values = rng.integers(0, 2, size=frames * rows * cols, dtype=np.uint8)
        data = pack_bits(values)
    else:
        lo, hi = (-(1 << (stored - 1)), 1 << (stored - 1)) if signed else (0, 1 << stored)
        kind = f"{'>' if big else '<'}{'i' if signed else 'u'}{bits // 8}"
        if photometric.endswith("_422"):
            values = rng.integers(lo, hi, size=frames * rows * cols * 2)
        else:
            values = rng.integers(lo, hi, size=frames * rows * cols * samples)
        if palette is not None:
            values = rng.integers(palette[0], palette[0] + len(palette[1]), size=values.size)
        data = values.astype(kind).tobytes()
    ds.PixelData = data + b"\0" * (len(data) % 2)
    ds["PixelData"].VR = "OB" if bits <= 8 else "OW"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Generated layouts

LE, BE, IMPLICIT = ExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

LAYOUTS = {
    "mono2-u8": dict(bits=8),
    "mono2-u16": dict(bits=16),
    "mono2-s16": dict(bits=16, signed=True),
    "mono2-s12-in-16": dict(bits=16, stored=12, signed=True),
    "mono1-u12-in-16": dict(bits=16, stored=12, photometric="MONOCHROME1"),
    "mono1-s16": dict(bits=16, signed=True, photometric="MONOCHROME1"),
    "mono1-u8": dict(bits=8, photometric="MONOCHROME1"),
    "mono2-u32": dict(bits=32),
    "mono2-s32": dict(bits=32, signed=True),
    "mono1-u32-be": dict(bits=32, photometric="MONOCHROME1", syntax=BE),
    "mono2-s16-be": dict(bits=16, signed=True, syntax=BE),
    "mono1-s16-be": dict(bits=16, signed=True, photometric="MONOCHROME1", syntax=BE),
    "mono2-u16-implicit": dict(bits=16, syntax=IMPLICIT),
    "mono2-u16-frames": dict(bits=16, frames=4),
    "mono1-u8-odd-frames": dict(bits=8, rows=5, cols=3, frames=3, photometric="MONOCHROME1"),
    "rgb-8-planar0": dict(bits=8, samples=3, photometric="RGB"),
    "rgb-8-planar1": dict(bits=8, samples=3, planar=1, photometric="RGB"),
    "rgb-16-planar0-be": dict(bits=16, samples=3, photometric="RGB", syntax=BE),
    "rgb-16-planar1-frames": dict(bits=16, samples=3, planar=1, photometric="RGB", frames=3),
    "rgb-8-planar1-be-frames": dict(bits=8, samples=3, planar=1, photometric="RGB", syntax=BE,
                                    frames=2),
    "rgb-32-planar0": dict(bits=32, samples=3, photometric="RGB"),
    "ybr-full-8": dict(bits=8, samples=3, photometric="YBR_FULL"),
    "ybr-full-8-planar1-frames": dict(bits=8, samples=3, planar=1, photometric="YBR_FULL",
                                      frames=2),
    "ybr-full-16-be": dict(bits=16, samples=3, photometric="YBR_FULL", syntax=BE),
    "mono2-1bit": dict(bits=1, rows=6, cols=11),
    "mono1-1bit-frames-unaligned": dict(bits=1, rows=5, cols=7, frames=3,
                                        photometric="MONOCHROME1"),
}


@pytest.mark.filterwarnings("ignore::fastanon.masks.MaskWarning")     # small images clip masks
@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
def test_generated_layout(layout):
    raw = make(**LAYOUTS[layout])
    check_masked(raw, [Mask(1, 2, 3, 4)])


@pytest.mark.parametrize("layout", ["mono2-u16-frames", "rgb-16-planar1-frames",
                                    "mono1-1bit-frames-unaligned", "mono1-u8-odd-frames"])
def test_chosen_frames_only(layout):
    raw = make(**LAYOUTS[layout])
    frames = LAYOUTS[layout]["frames"]
    check_masked(raw, [Mask(0, 1, 2, 2, frames={frames - 1}), Mask(1, 0, 1, 3, frames=[0])])


def test_whole_image_and_overlapping_masks():
    raw = make(bits=16, rows=4, cols=6, frames=2)
    check_masked(raw, [Mask(0, 0, 6, 4), Mask(2, 1, 2, 2)])


def test_ybr_full_422_widens_to_whole_blocks_and_reports():
    raw = make(bits=8, rows=4, cols=8, samples=3, photometric="YBR_FULL_422", frames=2)
    with pytest.warns(fastanon.masks.MaskWarning, match="4:2:2"):
        out, report = blank_bytes(raw, [Mask(3, 1, 2, 2)], "ybr.dcm")
    assert report.warnings == ["ybr.dcm: mask 3,1,2,2 cuts 2-pixel 4:2:2 blocks of YBR_FULL_422; "
                               "widened to columns 2-5"]
    with pytest.warns(fastanon.masks.MaskWarning):
        assert check_masked(raw, [Mask(3, 1, 2, 2)], widen422=True) == out


def test_ybr_full_422_aligned_mask_has_no_warning(recwarn):
    raw = make(bits=8, rows=4, cols=8, samples=3, photometric="YBR_FULL_422")
    check_masked(raw, [Mask(2, 0, 4, 2)])
    assert not recwarn.list


def test_palette_color_uses_the_darkest_entry():
    red = [200, 180, 30, 90, 250, 10, 70, 120]
    green = [200, 90, 20, 90, 250, 200, 60, 120]
    blue = [200, 60, 40, 90, 250, 200, 10, 120]
    raw = make(bits=8, photometric="PALETTE COLOR", palette=(3, red, green, blue))
    ds = pydicom.dcmread(io.BytesIO(raw))
    assert lut_darkest(ds) == 3 + 2
    check_masked(raw, [Mask(0, 0, 2, 2)])


def test_palette_color_without_lut_uses_index_0_and_warns():
    raw = make(bits=8, photometric="PALETTE COLOR")
    with pytest.warns(fastanon.masks.MaskWarning, match="index 0"):
        out, report = blank_bytes(raw, [Mask(0, 0, 2, 2)], "p.dcm")
    assert decoded(out)[0, :2, :2].max() == 0
    assert len(report.warnings) == 1


# ---------------------------------------------------------------------------------------------
# pydicom's own native test files

NATIVE_FILES = [
    "CT_small.dcm",                      # 16-bit signed
    "MR_small_implicit.dcm",
    "MR_small_expb.dcm",                 # big endian
    "MR_small_bigendian.dcm",
    "ExplVR_BigEnd.dcm",                 # RGB planar 1, big endian
    "SC_rgb_small_odd.dcm",              # RGB planar 0, 3×3
    "SC_rgb_small_odd_big_endian.dcm",   # 8-bit RGB in big endian OW words
    "SC_ybr_full_422_uncompressed.dcm",
    "examples_rgb_color.dcm",
    "examples_overlay.dcm",              # 12 of 16 bits
    "examples_palette.dcm",
    "rtdose.dcm",                        # 32-bit, 15 frames, implicit VR
    "rtdose_expb.dcm",                   # 32-bit, 15 frames, big endian
    "liver_1frame.dcm",                  # bit-packed
    "liver_expb_1frame.dcm",
]


@pytest.mark.parametrize("filename", NATIVE_FILES)
def test_pydicom_native_file(filename, recwarn):
    raw = (TEST_FILES / filename).read_bytes()
    ds = pydicom.dcmread(io.BytesIO(raw))
    y, x = ds.Rows // 3, ds.Columns // 4                      # even: whole 4:2:2 blocks
    masks = [Mask(x - x % 2, y, max(ds.Columns // 3 // 2 * 2, 2), max(ds.Rows // 3, 1))]
    if int(ds.get("NumberOfFrames", 1) or 1) > 2:
        masks.append(Mask(0, 0, 2, 1, frames=range(1, 3)))
    check_masked(raw, masks)


def test_pydicom_small_odd_rgb_clipped_mask_is_reported():
    raw = (TEST_FILES / "SC_rgb_small_odd_big_endian.dcm").read_bytes()
    with pytest.warns(fastanon.masks.MaskWarning, match=r"clipped to 1,0,2,3"):
        check_masked(raw, [Mask(1, -2, 5, 9)])


# ---------------------------------------------------------------------------------------------
# The file path gives the same bytes; refusals write nothing

@pytest.mark.parametrize("layout", ["mono2-u16-frames", "rgb-8-planar1-be-frames", "mono2-1bit"])
def test_file_path_matches_in_memory_path(layout, tmp_path):
    raw = make(**LAYOUTS[layout])
    src = tmp_path / "in.dcm"
    src.write_bytes(raw)
    masks = [Mask(1, 1, 3, 3), Mask(0, 4, 2, 1)]
    fastanon.anonymize_file(src, tmp_path / "out.dcm", policy={}, masks=masks)
    assert (tmp_path / "out.dcm").read_bytes() == fastanon.anonymize(raw, policy={}, masks=masks)
    assert src.read_bytes() == raw


def test_file_path_with_a_header_policy_matches_in_memory(tmp_path):
    src = TEST_FILES / "MR_small.dcm"
    masks = [Mask(5, 5, 20, 10)]
    policy = {"PatientName": "remove", "PatientID": "empty", "SOPInstanceUID": "uid"}
    fastanon.anonymize_file(src, tmp_path / "out.dcm", policy, masks=masks, key="k")
    expected = fastanon.anonymize(src.read_bytes(), policy, masks=masks, key="k")
    assert len(expected) != src.stat().st_size
    assert (tmp_path / "out.dcm").read_bytes() == expected
    assert decoded(expected)[0, 5:15, 5:25].max() == -32768


def test_no_masks_leaves_pixels_alone():
    raw = make(bits=16)
    assert fastanon.anonymize(raw, policy={}, masks=()) == raw


@pytest.mark.parametrize("mask, message", [
    (Mask(5, 0, 3, 3), r"mask 5,0,3,3 lies entirely outside the 5×7 image"),
    (Mask(0, 7, 3, 3), r"mask 0,7,3,3 lies entirely outside"),
    (Mask(-9, 0, 9, 3), r"mask -9,0,9,3 lies entirely outside"),
    (Mask(0, 0, 3, 3, frames={1, 4}), r"mask 0,0,3,3@1,4: frame 4 is past the last frame "
                                      r"\(Number of Frames is 4"),
])
def test_refusals_name_the_file_and_mask(mask, message):
    raw = make(bits=16, frames=4)
    with pytest.raises(PolicyError, match=r"^bad\.dcm: " + message):
        fastanon.anonymize(raw, policy={}, masks=[mask], name="bad.dcm")


def test_refusal_in_the_output_file_writes_nothing(tmp_path):
    src = tmp_path / "bad.dcm"
    src.write_bytes(make(bits=16, frames=4))
    with pytest.raises(PolicyError, match="frame 9 is past the last frame"):
        fastanon.anonymize_file(src, tmp_path / "out" / "bad.dcm", policy={},
                                masks=[Mask(0, 0, 3, 3, frames={9})])
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_compressed_pixel_data_is_refused_and_nothing_written(tmp_path):
    from conftest import unmaskable

    src = tmp_path / "htj2k.dcm"
    src.write_bytes(unmaskable())
    with pytest.raises(PolicyError, match=r"mask 0,0,4,4: the Pixel Data is compressed \("
                                          r"transfer syntax 1\.2\.840\.10008\.1\.2\.4\.201\).*decompress"):
        fastanon.anonymize(src.read_bytes(), policy={}, masks=[Mask(0, 0, 4, 4)])
    with pytest.raises(PolicyError, match="compressed"):
        fastanon.anonymize_file(src, tmp_path / "out.dcm", policy={}, masks=[Mask(0, 0, 4, 4)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["htj2k.dcm"]


def test_deflated_data_set_is_refused():
    raw = (TEST_FILES / "image_dfl.dcm").read_bytes()
    with pytest.raises(PolicyError, match="Deflated"):
        fastanon.anonymize(raw, policy={}, masks=[Mask(0, 0, 4, 4)])


def test_pixel_data_shorter_than_the_module_is_refused():
    raw = bytearray(make(bits=16, frames=2))
    region = parse(bytes(raw)).dataset
    frames = region.element(region.table.find(0x00280008, -1))
    raw[frames.vstart:frames.vstart + frames.vlen] = b"9".ljust(frames.vlen)
    with pytest.raises(PolicyError, match="holds 140 bytes but the pixel module describes 630"):
        fastanon.anonymize(bytes(raw), policy={}, masks=[Mask(0, 0, 1, 1)])


def test_missing_pixel_data_is_refused():
    raw = (TEST_FILES / "rtplan.dcm").read_bytes()
    with pytest.raises(PolicyError, match=r"no Pixel Data \(7FE0,0010\)"):
        fastanon.anonymize(raw, policy={}, masks=[Mask(0, 0, 1, 1)], name="plan.dcm")


@pytest.mark.parametrize("layout", ["mono2-u16-frames", "mono1-1bit-frames-unaligned",
                                    "rgb-16-planar1-frames"])
def test_file_path_in_small_windows_gives_the_same_bytes(layout, tmp_path, monkeypatch):
    """The file path blanks a mapped file window by window of frames and lets each window's pages
    go; with one frame per window the bytes are still those of the in-memory path."""
    monkeypatch.setattr(fastanon.pixels, "WINDOW", 1)
    raw = make(**dict(LAYOUTS[layout], rows=64, cols=70))
    src = tmp_path / "in.dcm"
    src.write_bytes(raw)
    masks = [Mask(3, 5, 60, 50), Mask(0, 60, 9, 4, frames=[1])]
    fastanon.anonymize_file(src, tmp_path / "out.dcm", policy={}, masks=masks)
    assert (tmp_path / "out.dcm").read_bytes() == fastanon.anonymize(raw, policy={}, masks=masks)


# ---------------------------------------------------------------------------------------------
# Property: any layout, any rectangle (inside, partly or wholly outside), any frames

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402


@st.composite
def layouts_and_masks(draw):
    layout = dict(LAYOUTS[draw(st.sampled_from(sorted(LAYOUTS)))])
    layout.update(rows=draw(st.integers(1, 9)), frames=draw(st.integers(1, 3)),
                  seed=draw(st.integers(0, 99)))
    cols = draw(st.integers(1, 9))
    layout["cols"] = cols
    masks = []
    for _ in range(draw(st.integers(1, 3))):
        frames = draw(st.none() | st.sets(st.integers(0, layout["frames"] + 1), min_size=1))
        masks.append(Mask(draw(st.integers(-4, 10)), draw(st.integers(-4, 10)),
                          draw(st.integers(1, 8)), draw(st.integers(1, 8)), frames))
    return layout, masks


@pytest.mark.filterwarnings("ignore::fastanon.masks.MaskWarning")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts_and_masks())
def test_property_any_mask_is_black_exactly_where_it_falls(case):
    layout, masks = case
    raw = make(**layout)
    rows, cols, frames = layout["rows"], layout["cols"], layout["frames"]
    outside = any(m.x >= cols or m.y >= rows or m.x + m.width <= 0 or m.y + m.height <= 0
                  for m in masks)
    past = any(m.frames and m.frames[-1] >= frames for m in masks)
    if outside or past:
        with pytest.raises(PolicyError, match="lies entirely outside|past the last frame"):
            fastanon.anonymize(raw, policy={}, masks=masks)
        return
    out = fastanon.anonymize(raw, policy={}, masks=masks)
    start, end = pixel_span(raw)
    assert out[:start] == raw[:start] and out[end:] == raw[end:]
    expected = decoded(raw).copy()
    for m in masks:
        for f in range(frames) if m.frames is None else m.frames:
            expected[f, max(m.y, 0):m.y + m.height, max(m.x, 0):m.x + m.width] = \
                expected_black(raw)
    assert np.array_equal(decoded(out), expected)
