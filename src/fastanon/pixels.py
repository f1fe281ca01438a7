"""Pixels: masks blacked out in native Pixel Data, in place, by the kernel's fill loops.

The file is scanned (scan.parse), the Image Pixel attributes a fill needs are read, black is
chosen by the Photometric Interpretation, and _core.blank / _core.blank_bits write only the rows a
mask covers. RLE Lossless frames with masks are decoded, blanked and encoded again by the kernel
(_core.rle_mask_frame), lossless JPEG, JPEG-LS and JPEG 2000 ones by the codecs extra
(encapsulated.py), in their transfer syntax. Neither numpy nor pydicom is imported for native
data and RLE; other compressed Pixel Data is decoded first only when asked to (decompress.py).
"""

from __future__ import annotations

import mmap
import struct
import warnings
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import NamedTuple

from . import _core
from .elements import KIND_FRAGMENTS, PIXEL_DATA, tag_text
from .encapsulated import (CODECS_PACKAGE, JPEG_DCT, JPEG_START, CODECS, RLE_LOSSLESS,
                           Fragments, codecs_available, decode, encode)
from .errors import MalformedError, PolicyError
from .masks import MaskWarning
from .scan import Parsed, Region, parse

# Image Pixel Module, PS3.3 C.7.6.3.
SAMPLES_PER_PIXEL = 0x00280002
PHOTOMETRIC = 0x00280004
PLANAR_CONFIGURATION = 0x00280006
NUMBER_OF_FRAMES = 0x00280008
ROWS = 0x00280010
COLUMNS = 0x00280011
BITS_ALLOCATED = 0x00280100
BITS_STORED = 0x00280101
PIXEL_REPRESENTATION = 0x00280103
PALETTE_DESCRIPTORS = (0x00281101, 0x00281102, 0x00281103)     # red, green, blue
PALETTE_DATA = (0x00281201, 0x00281202, 0x00281203)
SEGMENTED_PALETTE_DATA = (0x00281221, 0x00281222, 0x00281223)


@dataclass
class MaskReport:
    """What masking did to one file: the rule that chose the masks, and every warning."""

    name: str
    rule: str | None = None          # the mask rule that matched, when masks came from rules
    applied: int = 0                 # rectangles written (per mask, not per frame)
    warnings: list[str] = field(default_factory=list)
    decompressed: bool = False
    reencoded: int = 0               # frames decoded, masked and encoded again in their syntax
    size: int | None = None          # the file's new size when decompressing changed it

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        warnings.warn(message, MaskWarning, stacklevel=3)


# --------------------------------------------------------------------------------------------
# Reading the Image Pixel Module (PS3.3 C.7.6.3) from a scanned data set.

class PixelModule(NamedTuple):
    """What a fill needs to know about native Pixel Data; offsets into the region's buffer."""

    rows: int
    columns: int
    frames: int
    samples: int
    planar: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    photometric: str
    big: bool
    swapped: bool       # 8-bit samples in big endian OW words: byte j of the value is at j ^ 1
    offset: int         # first byte of the Pixel Data value
    length: int         # its length

    @property
    def subsampled(self) -> bool:
        """Two pixels share one Cb Cr pair (PS3.3 C.7.6.3.1.2, YBR_*_422)."""
        return self.photometric.endswith("_422")

    @property
    def needed(self) -> int:
        """Bytes of Pixel Data the module describes (PS3.5 §8.1.1: bits packed across frames)."""
        if self.bits_allocated == 1:
            return (self.frames * self.rows * self.columns + 7) // 8
        samples = 2 if self.subsampled else self.samples
        return self.frames * self.rows * self.columns * samples * (self.bits_allocated // 8)


def _typed(region: Region, tag: int, kind: type):
    value = region.attribute(tag)
    return value if isinstance(value, kind) else None


def read_pixel_module(parsed: Parsed, name: str) -> PixelModule | None:
    """The pixel module of a parsed file with native Pixel Data; None when it is encapsulated.
    Raises PolicyError when masks cannot apply."""
    region = parsed.dataset
    element = _pixel_element(region, name)
    if element.kind == KIND_FRAGMENTS:
        return None
    return _module(region, element, name)


def _pixel_element(region: Region, name: str):
    index = region.table.find(PIXEL_DATA, -1)
    if index < 0:
        raise PolicyError(f"{name}: no Pixel Data (7FE0,0010) to mask")
    return region.element(index)


def _module(region: Region, element, name: str) -> PixelModule:
    """The Image Pixel attributes of the data set whose Pixel Data is element (offset and
    length: its value, of native data), checked."""
    values = {}
    for tag, label in ((ROWS, "Rows"), (COLUMNS, "Columns"), (BITS_ALLOCATED, "Bits Allocated")):
        values[label] = _typed(region, tag, int)
        if not values[label]:
            raise PolicyError(f"{name}: {label} {tag_text(tag)} is missing or zero; "
                              "cannot locate pixels to mask")
    photometric = (_typed(region, PHOTOMETRIC, str) or "").upper()
    if not photometric:
        raise PolicyError(f"{name}: Photometric Interpretation (0028,0004) is missing; "
                          "cannot tell what black is")
    frames_text = _typed(region, NUMBER_OF_FRAMES, str)
    try:
        frames = int(frames_text) if frames_text else 1
    except ValueError:
        raise PolicyError(f"{name}: Number of Frames (0028,0008) {frames_text!r} is not a number")
    bits_allocated = values["Bits Allocated"]
    bits_stored = _typed(region, BITS_STORED, int) or bits_allocated
    module = PixelModule(
        rows=values["Rows"], columns=values["Columns"], frames=frames,
        samples=_typed(region, SAMPLES_PER_PIXEL, int) or 1,
        planar=_typed(region, PLANAR_CONFIGURATION, int) or 0,
        bits_allocated=bits_allocated, bits_stored=bits_stored, photometric=photometric,
        signed=_typed(region, PIXEL_REPRESENTATION, int) == 1, big=region.big,
        swapped=region.big and element.vr == "OW" and bits_allocated == 8,
        offset=element.vstart, length=element.vlen)
    _check(module, element.vr, name, native=element.kind != KIND_FRAGMENTS)
    return module


def _check(m: PixelModule, vr: str, name: str, native: bool = True) -> None:
    where = f"{name}: Pixel Data ({m.columns}×{m.rows}, {m.frames} frame(s), {m.photometric}"
    where += f", {m.samples} sample(s), {m.bits_allocated} bits allocated)"
    if m.frames < 1:
        raise PolicyError(f"{where}: Number of Frames must be at least 1")
    if m.bits_allocated not in (1, 8, 16, 32):
        raise PolicyError(f"{where}: masks support Bits Allocated 1, 8, 16 or 32")
    if not 1 <= m.bits_stored <= m.bits_allocated:
        raise PolicyError(f"{where}: Bits Stored {m.bits_stored} does not fit Bits Allocated")
    if m.samples not in (1, 3):
        raise PolicyError(f"{where}: masks support 1 or 3 samples per pixel")
    if m.planar not in (0, 1):
        raise PolicyError(f"{where}: Planar Configuration must be 0 or 1, not {m.planar}")
    if m.bits_allocated == 1:
        if m.samples != 1 or not m.photometric.startswith("MONOCHROME"):
            raise PolicyError(f"{where}: bit-packed pixels must be MONOCHROME1/2 with one sample")
        if m.big and vr == "OW":
            raise PolicyError(f"{where}: bit-packed pixels in big endian OW words are not supported")
    if m.subsampled:
        if m.columns % 2 or m.planar != 0 or m.samples != 3:
            raise PolicyError(f"{where}: 4:2:2 data needs an even number of columns, "
                              "3 samples and Planar Configuration 0")
    if native and m.needed > m.length:
        raise PolicyError(f"{where}: the Pixel Data value holds {m.length:,} bytes but the pixel "
                          f"module describes {m.needed:,}")


# --------------------------------------------------------------------------------------------
# Black, per Photometric Interpretation (PS3.3 C.7.6.3.1.2).

def black_samples(region: Region, m: PixelModule, report: MaskReport) -> tuple[int, ...]:
    """The stored value of each sample of a black pixel (Y, Cb, Cr / R, G, B / one sample)."""
    bits = m.bits_stored
    low, high = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if m.signed else (0, (1 << bits) - 1))
    name, pi = report.name, m.photometric
    expect = 3 if pi == "RGB" or pi.startswith("YBR") else 1
    if m.samples != expect:
        raise PolicyError(f"{name}: {pi} needs {expect} sample(s) per pixel, "
                          f"Samples per Pixel is {m.samples}")
    if pi == "MONOCHROME2":
        return (low,)
    if pi == "MONOCHROME1":
        return (high,)
    if pi == "RGB":
        return (0, 0, 0)
    if pi in ("YBR_FULL", "YBR_FULL_422"):
        return (0, 1 << (bits - 1), 1 << (bits - 1))
    if pi == "YBR_PARTIAL_422":                 # Y from 16 (of 8 bits) up: PS3.3 C.7.6.3.1.2
        return (16 << max(bits - 8, 0), 1 << (bits - 1), 1 << (bits - 1))
    if pi == "PALETTE COLOR":
        return (_darkest_index(region, m, report),)
    raise PolicyError(f"{name}: masks cannot black out native {pi} pixels "
                      "(supported: MONOCHROME1/2, RGB, YBR_FULL, YBR_FULL_422, YBR_PARTIAL_422, "
                      "PALETTE COLOR)")


def _darkest_index(region: Region, m: PixelModule, report: MaskReport) -> int:
    """The stored index whose palette entry is darkest (luma, ITU-R BT.601 weights)."""
    order = ">" if region.big else "<"
    luts = []
    for descriptor_tag, data_tag in zip(PALETTE_DESCRIPTORS, PALETTE_DATA):
        descriptor, data = region.top_value(descriptor_tag), region.top_value(data_tag)
        if not descriptor or len(descriptor) < 6 or not data:
            segmented = any(region.top_value(t) for t in SEGMENTED_PALETTE_DATA)
            report.warn(f"{report.name}: PALETTE COLOR without "
                        f"{'plain (only segmented)' if segmented else 'a'} lookup table: "
                        "masks use index 0 as black")
            return 0
        entries, first, bits = struct.unpack(order + "HHH", descriptor[:6])
        entries = entries or 65536
        if m.signed and first >= 0x8000:
            first -= 0x10000
        if bits == 8 and len(data) == entries:
            values = list(data)
        else:
            words = array("H", data[:len(data) // 2 * 2])
            if region.big != (struct.pack("=H", 1) == b"\0\1"):
                words.byteswap()
            values = list(words)
        luts.append((first, values[:entries]))
    first = luts[0][0]
    count = min(len(values) for _, values in luts)
    if count == 0:
        report.warn(f"{report.name}: PALETTE COLOR lookup tables are empty: masks use index 0")
        return 0
    red, green, blue = (values for _, values in luts)
    darkest = min(range(count), key=lambda i: 299 * red[i] + 587 * green[i] + 114 * blue[i])
    return first + darkest


def _sample_bytes(value: int, m: PixelModule) -> bytes:
    size = m.bits_allocated // 8
    return (value & ((1 << m.bits_allocated) - 1)).to_bytes(size, "big" if m.big else "little")


# --------------------------------------------------------------------------------------------
# Rectangles → kernel calls.

class _Fill(NamedTuple):
    """One kernel call: rows of one rectangle (one plane) on every chosen frame."""

    frames: array       # the chosen frames, ascending
    starts: array       # of the first byte (bit, when bits) of each frame's first row
    stride: int
    nrows: int
    pattern: bytes      # one pixel / one 4:2:2 block / one sample; b"" for bit-packed pixels
    repeat: int         # patterns per row, or bits per row when bit-packed
    value: int = 0      # the bit value for bit-packed pixels

    def run(self, view, m: PixelModule, name: str, first: int, stop: int) -> None:
        """Fill frames first..stop-1 of view, exactly the Pixel Data value (_check made sure it
        holds m.needed bytes; the kernel checks the extent again)."""
        lo, hi = bisect_left(self.frames, first), bisect_left(self.frames, stop)
        if lo == hi:
            return
        starts = self.starts if (lo, hi) == (0, len(self.starts)) else self.starts[lo:hi]
        if self.pattern:
            status = _core.blank(view, 0, starts, self.stride, self.nrows, self.pattern,
                                 self.repeat, m.swapped)
        else:
            status = _core.blank_bits(view, 0, starts, self.stride, self.nrows, self.repeat,
                                      self.value)
        if status:
            raise MalformedError(f"{name}: a mask fill would leave the Pixel Data (status {status})")


WINDOW = 16 << 20       # bytes of a mapped file's Pixel Data blanked before its pages are let go


def _write(pixels, fills: list[_Fill], m: PixelModule, name: str, mapped=None) -> None:
    """Run the fills; on a mapped file window by window of frames, each window's pages handed
    back to the page cache afterwards (MADV_DONTNEED keeps a shared mapping's writes), so the
    memory used stays flat whatever the file size."""
    pixels_per_frame = m.rows * m.columns
    frame_bytes = max(m.needed // m.frames, 1)
    release = mapped is not None and hasattr(mmap, "MADV_DONTNEED")
    step = max(WINDOW // frame_bytes, 1) if release else m.frames
    for first in range(0, m.frames, step):
        stop = min(first + step, m.frames)
        for fill in fills:
            fill.run(pixels, m, name, first, stop)
        if release:
            if m.bits_allocated == 1:
                lo, hi = first * pixels_per_frame // 8, (stop * pixels_per_frame + 7) // 8
            else:
                lo, hi = first * frame_bytes, stop * frame_bytes
            lo, hi = m.offset + lo, min(m.offset + hi + 1, len(mapped))
            lo -= lo % mmap.PAGESIZE
            mapped.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def plan_fills(m: PixelModule, masks, black: tuple[int, ...], report: MaskReport) -> list[_Fill]:
    """Clip each mask to the image, check its frames, and lay it out for the pixel layout."""
    return [fill for frames, x0, y0, x1, y1 in clipped(m, masks, report)
            for fill in _layout(m, frames, x0, y0, x1 - x0, y1 - y0, black)]


def clipped(m: PixelModule, masks, report: MaskReport, native: bool = True) -> list[tuple]:
    """(frames, x0, y0, x1, y1) of each mask clipped to the image (said when it was), its
    frames checked; in native data, 4:2:2 pixel pairs whole."""
    name = report.name
    out = []
    for mask in masks:
        x0, y0 = max(mask.x, 0), max(mask.y, 0)
        x1, y1 = min(mask.x + mask.width, m.columns), min(mask.y + mask.height, m.rows)
        if x0 >= x1 or y0 >= y1:
            raise PolicyError(f"{name}: mask {mask} lies entirely outside the "
                              f"{m.columns}×{m.rows} image")
        if (x0, y0, x1, y1) != (mask.x, mask.y, mask.x + mask.width, mask.y + mask.height):
            report.warn(f"{name}: mask {mask} extends past the {m.columns}×{m.rows} image; "
                        f"clipped to {x0},{y0},{x1 - x0},{y1 - y0}")
        if native and m.subsampled and (x0 % 2 or x1 % 2):
            wide0, wide1 = x0 - x0 % 2, x1 + x1 % 2
            report.warn(f"{name}: mask {mask} cuts 2-pixel 4:2:2 blocks of {m.photometric}; "
                        f"widened to columns {wide0}-{wide1 - 1}")
            x0, x1 = wide0, wide1
        frames = range(m.frames) if mask.frames is None else mask.frames
        if frames[-1] >= m.frames:
            raise PolicyError(f"{name}: mask {mask}: frame {frames[-1]} is past the last frame "
                              f"(Number of Frames is {m.frames}; frames count from 0)")
        out.append((frames, x0, y0, x1, y1))
        report.applied += 1
    return out


def _layout(m: PixelModule, frames, x: int, y: int, width: int, height: int,
            black: tuple[int, ...]) -> list[_Fill]:
    chosen = array("q", frames)
    if m.bits_allocated == 1:                     # frames packed bit after bit (PS3.5 §8.1.1)
        size = m.rows * m.columns
        starts = array("q", (f * size + y * m.columns + x for f in frames))
        return [_Fill(chosen, starts, m.columns, height, b"", width, black[0] & 1)]
    cell = m.bits_allocated // 8
    samples = [_sample_bytes(v, m) for v in black]
    if m.subsampled:                              # Y Y Cb Cr per two pixels
        stride = m.columns * 2 * cell
        pattern = samples[0] * 2 + samples[1] + samples[2]
        starts = array("q", (f * m.rows * stride + y * stride + x * 2 * cell for f in frames))
        return [_Fill(chosen, starts, stride, height, pattern, width // 2)]
    frame = m.rows * m.columns * m.samples * cell
    if m.planar == 0 or m.samples == 1:           # R G B R G B ...
        stride = m.columns * m.samples * cell
        starts = array("q", (f * frame + y * stride + x * m.samples * cell for f in frames))
        return [_Fill(chosen, starts, stride, height, b"".join(samples), width)]
    stride, plane = m.columns * cell, m.rows * m.columns * cell     # R R ... G G ... B B ...
    return [_Fill(chosen, array("q", (f * frame + s * plane + y * stride + x * cell
                                      for f in frames)),
                  stride, height, samples[s], width) for s in range(m.samples)]


def blank(buf, masks, name: str, *, decompress: bool = False) -> tuple[bytes | None, MaskReport]:
    """Black out masks in the Pixel Data of a DICOM file held in a writable buffer (a bytearray,
    or a writable mmap of an output file), in place: (None, what was done).

    Compressed Pixel Data keeps its transfer syntax, and only the frames with masks change
    (the others are kept byte for byte); the new file is returned: (its bytes, what was done),
    buf left as it was. JPEG Baseline and Extended are blanked in the DCT domain (masks grown
    to the MCU grid); RLE Lossless and, with the codecs extra, JPEG Lossless, JPEG-LS and
    JPEG 2000 frames are decoded, blanked and encoded again losslessly. Other compressed
    Pixel Data is refused unless decompress is true; then the file is decoded and stored again
    as native Explicit VR Little Endian, and the masked new file is returned the same way.

    Examples
    --------
    >>> import pydicom, io
    >>> from pydicom.data import get_testdata_file
    >>> from fastanon import Mask
    >>> raw = bytearray(open(get_testdata_file("MR_small.dcm", download=False), "rb").read())
    >>> new, report = blank(raw, [Mask(0, 0, 8, 4)], "MR_small.dcm")
    >>> new, report.applied, int(pydicom.dcmread(io.BytesIO(raw)).pixel_array[:4, :8].max())
    (None, 1, -32768)
    """
    report = MaskReport(name)
    parsed = parse(buf, name)
    try:
        if parsed.deflated:
            raise PolicyError(f"{name}: mask {masks[0]}: masks in a Deflated Explicit VR "
                              "Little Endian data set are not supported")
        module = read_pixel_module(parsed, name)
        if module is None and not decompress and parsed.transfer_syntax == RLE_LOSSLESS:
            return _blank_rle(buf, parsed, masks, report), report
        if module is None and not decompress and parsed.transfer_syntax in JPEG_DCT:
            return _blank_jpeg(buf, parsed, masks, report), report
        if module is None and not decompress and parsed.transfer_syntax in CODECS:
            return _blank_coded(buf, parsed, masks, report), report
        if module is None and not decompress:
            raise PolicyError(
                f"{name}: mask {masks[0]}: the Pixel Data is compressed (transfer syntax "
                f"{parsed.transfer_syntax or 'unknown'}); masks apply in native pixels, JPEG "
                "Baseline and Extended, RLE, JPEG Lossless, JPEG-LS and JPEG 2000 only: use "
                "--decompress (decompress=True) to decode, mask and store it uncompressed")
        if module is not None:
            fills = plan_fills(module, masks, black_samples(parsed.dataset, module, report), report)
            with memoryview(buf) as view:
                pixels = view[module.offset:module.offset + module.length]
                _write(pixels, fills, module, name, buf if isinstance(buf, mmap.mmap) else None)
                pixels.release()
            return None, report
    finally:
        parsed.release()
    from .decompress import decompressed

    plain = bytearray(decompressed(bytes(buf), name))
    _, inner = blank(plain, masks, name)
    report.warnings.extend(inner.warnings)
    report.applied, report.decompressed, report.size = inner.applied, True, len(plain)
    return bytes(plain), report


# --------------------------------------------------------------------------------------------
# Masks in compressed Pixel Data, without leaving its transfer syntax: JPEG Baseline and
# Extended and RLE Lossless in the kernel, JPEG Lossless, JPEG-LS and JPEG 2000 with the codecs
# extra (encapsulated.py).

IN_SYNTAX = frozenset({RLE_LOSSLESS, *JPEG_DCT, *CODECS})
_RLE_ERRORS = {
    _core.RLE_SHORT_HEADER: "is shorter than the 64 bytes of its RLE header",
    _core.RLE_SEGMENTS: "has another number of RLE segments than the pixel module needs",
    _core.RLE_OFFSETS: "has RLE segment offsets outside the frame or out of order",
    _core.RLE_SHORT_SEGMENT: "has an RLE segment that decodes to fewer bytes than Rows x Columns",
    _core.RLE_NO_MEMORY: "cannot be decoded: out of memory",
}


def masks_keep_syntax(transfer_syntax: str | None) -> bool:
    """Whether masks apply to compressed Pixel Data of this transfer syntax in that syntax:
    RLE Lossless and JPEG Baseline and Extended always (the kernel); JPEG Lossless, JPEG-LS and
    JPEG 2000 with the codecs extra installed."""
    if transfer_syntax == RLE_LOSSLESS or transfer_syntax in JPEG_DCT:
        return True
    return transfer_syntax in CODECS and codecs_available()


def _rectangles(m: PixelModule, masks, report: MaskReport,
                clips: list | None = None) -> dict[int, list[tuple]]:
    """frame → the (x0, y0, x1, y1) of the masks on it (clips: clipped()'s, when made)."""
    out: dict[int, list[tuple]] = {}
    for frames, x0, y0, x1, y1 in clips if clips is not None else clipped(m, masks, report,
                                                                         native=False):
        for frame in frames:
            out.setdefault(frame, []).append((x0, y0, x1, y1))
    return out


def _encapsulated_module(region: Region, name: str, subsampled: bool = False
                         ) -> tuple[object, PixelModule]:
    element = _pixel_element(region, name)
    m = _module(region, element, name)
    if m.bits_allocated not in (8, 16, 32) or (m.subsampled and not subsampled):
        raise PolicyError(f"{name}: compressed Pixel Data with {m.bits_allocated} bits allocated "
                          f"and {m.photometric}: masks in it support 8, 16 or 32 bits, not 4:2:2")
    return element, m


def _blank_rle(buf, parsed: Parsed, masks, report: MaskReport) -> bytes:
    """The file with masks blacked out in its RLE Lossless frames: each frame a mask touches is
    decoded, blanked and encoded again by the kernel (exact outside the masks); the others are
    copied as they are."""
    name, region = report.name, parsed.dataset
    element, m = _encapsulated_module(region, name)
    cell = m.bits_allocated // 8
    if m.samples * cell > 15:
        raise PolicyError(f"{name}: RLE Lossless holds at most 15 segments a frame, the pixel "
                          f"module needs {m.samples * cell}")
    black = bytes((value & ((1 << m.bits_allocated) - 1)) >> (8 * (cell - 1 - b)) & 0xFF
                  for value in black_samples(region, m, report) for b in range(cell))
    fragments = Fragments(region, element, m.frames, name)
    if any(len(parts) != 1 for parts in fragments.frames):
        raise PolicyError(f"{name}: an RLE Lossless frame spans several fragments; masks need "
                          "one fragment per frame (PS3.5 A.4.2)")
    replaced = {}
    with memoryview(buf) as view:
        for frame, rects in _rectangles(m, masks, report).items():
            (start, stop), = fragments.frames[frame]
            status, new = _core.rle_mask_frame(view[start:stop], m.rows, m.columns, len(black),
                                                array("q", [v for r in rects for v in r]), black)
            if status:
                raise MalformedError(f"{name}: frame {frame} of the Pixel Data "
                                     f"{_RLE_ERRORS.get(status, f'cannot be masked ({status})')}")
            replaced[frame] = new
    report.reencoded = len(replaced)
    return fragments.rebuilt(buf, replaced)


def _blank_coded(buf, parsed: Parsed, masks, report: MaskReport) -> bytes:
    """The file with masks blacked out in its JPEG Lossless, JPEG-LS or JPEG 2000 frames: each
    frame a mask touches is decoded, blanked and encoded again losslessly in the same syntax
    (exact outside the masks: a lossy frame loses nothing more); the others are copied as they
    are."""
    name, region, syntax = report.name, parsed.dataset, parsed.transfer_syntax
    if not codecs_available():
        raise PolicyError(f"{name}: masks in {CODECS[syntax][1]} Pixel Data need its "
                          f"codecs: {CODECS_PACKAGE} (or --decompress, to store it uncompressed)")
    element, m = _encapsulated_module(region, name)
    if m.photometric == "YBR_ICT":
        raise PolicyError(f"{name}: JPEG 2000 with YBR_ICT: a frame encoded again losslessly "
                          "would need the reversible transform (YBR_RCT); masks in it need "
                          "--decompress")
    if m.photometric == "YBR_RCT":                  # decoded: RGB, the transform undone
        black = (0, 0, 0)
    else:
        black = black_samples(region, m, report)
    fragments = Fragments(region, element, m.frames, name, CODECS[syntax][0])
    replaced = {}
    with memoryview(buf) as view:
        for frame, rects in _rectangles(m, masks, report).items():
            data = b"".join(view[start:stop] for start, stop in fragments.frames[frame])
            pixels = decode(syntax, data, name, frame)
            shape = (m.rows, m.columns) + ((m.samples,) if m.samples > 1 else ())
            if pixels.shape != shape:
                raise MalformedError(f"{name}: frame {frame} decodes to {pixels.shape}, the pixel "
                                     f"module describes {shape}")
            values = [v if pixels.dtype.kind == "i" or v >= 0 else v & ((1 << m.bits_stored) - 1)
                      for v in black]
            for x0, y0, x1, y1 in rects:
                pixels[y0:y1, x0:x1] = values if m.samples > 1 else values[0]
            replaced[frame] = encode(syntax, pixels, m.bits_stored, m.photometric, name)
    report.reencoded = len(replaced)
    return fragments.rebuilt(buf, replaced)


_JPEG_ERRORS = {
    _core.JPEG_UNSUPPORTED: "is not a sequential DCT JPEG of 8 or 12 bits with Huffman coding "
                            "in one scan (progressive, arithmetic, hierarchical or several scans): "
                            "masks in it need --decompress",
    _core.JPEG_CORRUPT: "is not a JPEG stream that can be read",
    _core.JPEG_SIZE: "is a JPEG image of another size than Rows x Columns",
    _core.JPEG_NO_MEMORY: "cannot be decoded: out of memory",
}


def _blank_jpeg(buf, parsed: Parsed, masks, report: MaskReport) -> bytes:
    """The file with masks blacked out in its JPEG Baseline frames, in the DCT domain
    (_core.jpeg_mask_frame): the blocks of every MCU a mask touches become black, every other
    block keeps its coefficients (nothing else is recompressed); the masks grow to the MCU grid,
    and the report says so. Frames without masks are copied as they are."""
    name, region = report.name, parsed.dataset
    element, m = _encapsulated_module(region, name, subsampled=True)
    fragments = Fragments(region, element, m.frames, name, JPEG_START)
    replaced, grid = {}, None
    clips = clipped(m, masks, report, native=False)
    with memoryview(buf) as view:
        for frame, rects in _rectangles(m, masks, report, clips).items():
            data = b"".join(view[start:stop] for start, stop in fragments.frames[frame])
            status, new, width, height = _core.jpeg_mask_frame(
                data, m.rows, m.columns, array("q", [v for r in rects for v in r]),
                m.photometric == "MONOCHROME1")
            if status:
                error = PolicyError if status == _core.JPEG_UNSUPPORTED else MalformedError
                raise error(f"{name}: frame {frame} of the Pixel Data "
                            f"{_JPEG_ERRORS.get(status, f'cannot be masked ({status})')}")
            replaced[frame] = new
            grid = grid or (width, height)
    if grid:
        width, height = grid
        for _, x0, y0, x1, y1 in clips:
            gx0, gy0 = x0 // width * width, y0 // height * height
            gx1 = min(-(-x1 // width) * width, m.columns)
            gy1 = min(-(-y1 // height) * height, m.rows)
            if (gx0, gy0, gx1, gy1) != (x0, y0, x1, y1):
                report.warn(f"{name}: mask {x0},{y0},{x1 - x0},{y1 - y0} blacks out the whole "
                            f"{width}x{height} JPEG blocks it touches: {gx0},{gy0},{gx1 - gx0},"
                            f"{gy1 - gy0}")
    report.reencoded = len(replaced)
    return fragments.rebuilt(buf, replaced)
