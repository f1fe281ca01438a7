"""Pixel masks: rectangles blacked out in the native Pixel Data of an output, in place.

The output is scanned again (scan.parse), the few Image Pixel attributes a fill needs are decoded
here, and the Cython kernel (_core.blank / _core.blank_bits) writes only the rows a mask covers.
Neither numpy nor pydicom is imported for native data; pydicom decodes compressed Pixel Data
only when asked to (decompress=True).
"""

from __future__ import annotations

import io
import mmap
import os
import re
import struct
import warnings
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from . import _core
from .elements import KIND_FRAGMENTS, PIXEL_DATA, TEXT_VRS, dictionary_vr, parse_tag, tag_text
from .errors import MalformedError, PolicyError
from .scan import EXPLICIT_LE, Parsed, Region, parse

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

# Transfer syntaxes that are always lossy (PS3.5 Table A-1), with the Lossy Image Compression
# Method each implies (PS3.3 C.7.6.1.1.5.1). JPEG 2000 and HTJ2K may be either: left as found.
_LOSSY_METHODS = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1", "1.2.840.10008.1.2.4.51": "ISO_10918_1",
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",
    "1.2.840.10008.1.2.4.100": "ISO_13818_2", "1.2.840.10008.1.2.4.101": "ISO_13818_2",
    "1.2.840.10008.1.2.4.102": "ISO_14496_10", "1.2.840.10008.1.2.4.103": "ISO_14496_10",
    "1.2.840.10008.1.2.4.104": "ISO_14496_10", "1.2.840.10008.1.2.4.105": "ISO_14496_10",
    "1.2.840.10008.1.2.4.106": "ISO_14496_10", "1.2.840.10008.1.2.4.107": "ISO_23008_2",
    "1.2.840.10008.1.2.4.108": "ISO_23008_2",
}


class MaskWarning(UserWarning):
    """A mask was applied, but not exactly as given (clipped, widened, or black guessed)."""


def _frames_text(frames: tuple[int, ...]) -> str:
    parts, i = [], 0
    while i < len(frames):
        j = i
        while j + 1 < len(frames) and frames[j + 1] == frames[j] + 1:
            j += 1
        parts.append(str(frames[i]) if i == j else f"{frames[i]}-{frames[j]}")
        i = j + 1
    return ",".join(parts)


@dataclass(frozen=True, slots=True)
class Mask:
    """A rectangle to black out: column x, row y of its top-left pixel, its size in pixels,
    and the frames it applies to (indices counted from 0; None: every frame).

    Examples
    --------
    >>> Mask(10, 20, 100, 30)
    Mask(x=10, y=20, width=100, height=30, frames=None)
    >>> str(Mask(0, 0, 64, 16, frames=range(3)))
    '0,0,64,16@0-2'
    >>> Mask.parse("0,0,64,16@0-2,5") == Mask(0, 0, 64, 16, frames={0, 1, 2, 5})
    True
    """

    x: int
    y: int
    width: int
    height: int
    frames: tuple[int, ...] | None = None

    def __post_init__(self):
        for label in ("x", "y", "width", "height"):
            value = getattr(self, label)
            if not isinstance(value, int) or isinstance(value, bool):
                raise PolicyError(f"mask {label} must be an integer, not {value!r}")
        if self.width <= 0 or self.height <= 0:
            raise PolicyError(f"mask {self.x},{self.y},{self.width},{self.height}: "
                              "width and height must be positive")
        if self.frames is not None:
            if isinstance(self.frames, (str, bytes)):
                raise PolicyError(f"mask frames must be integers, not {self.frames!r}")
            try:
                frames = tuple(sorted(set(self.frames)))
            except TypeError:
                raise PolicyError(f"mask frames must be integers, not {self.frames!r}") from None
            if not frames:
                raise PolicyError("mask frames is empty (use None for every frame)")
            for f in frames:
                if not isinstance(f, int) or isinstance(f, bool) or f < 0:
                    raise PolicyError(f"mask frame {f!r} is not a frame index (0, 1, 2, ...)")
            object.__setattr__(self, "frames", frames)

    def __str__(self) -> str:
        text = f"{self.x},{self.y},{self.width},{self.height}"
        return text if self.frames is None else f"{text}@{_frames_text(self.frames)}"

    @classmethod
    def parse(cls, text: str) -> Mask:
        """A mask from the CLI form "X,Y,W,H[@FRAMES]", FRAMES like "0,3-5" (from 0)."""
        match = re.fullmatch(r"\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*(?:@(.+))?", text)
        if not match:
            raise PolicyError(f"mask {text!r}: expected X,Y,W,H or X,Y,W,H@FRAMES (e.g. 0,0,64,16@0-3)")
        x, y, w, h = (int(g) for g in match.groups()[:4])
        frames = None
        if match.group(5):
            frames = set()
            for part in match.group(5).split(","):
                span = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
                if not span:
                    raise PolicyError(f"mask {text!r}: frames {match.group(5)!r} are not like 0,3-5")
                lo, hi = int(span.group(1)), int(span.group(2) or span.group(1))
                if hi < lo:
                    raise PolicyError(f"mask {text!r}: frame range {part.strip()} runs backwards")
                frames.update(range(lo, hi + 1))
        return cls(x, y, w, h, frames)

    @classmethod
    def from_toml(cls, item, where: str) -> Mask:
        """A mask from a TOML value: "X,Y,W,H[@FRAMES]" or {x =, y =, width =, height =}."""
        if isinstance(item, str):
            return cls.parse(item)
        if isinstance(item, dict):
            try:
                return cls(**item)
            except TypeError as exc:
                raise PolicyError(f"{where}: mask {item}: {exc}") from None
        raise PolicyError(f"{where}: a mask is \"X,Y,W,H[@FRAMES]\" or "
                          "{x = , y = , width = , height = }")


@dataclass
class MaskReport:
    """What masking did to one file: the rule that chose the masks, and every warning."""

    name: str
    rule: str | None = None          # the mask rule that matched, when masks came from rules
    applied: int = 0                 # rectangles written (per mask, not per frame)
    warnings: list[str] = field(default_factory=list)
    decompressed: bool = False
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


def _raw(region: Region, tag: int) -> bytes | None:
    index = region.table.find(tag, -1)
    if index < 0:
        return None
    element = region.element(index)
    if element.kind != 0:
        return None
    return region.value(element)


def _us(region: Region, tag: int) -> int | None:
    raw = _raw(region, tag)
    if not raw or len(raw) < 2:
        return None
    return struct.unpack(">H" if region.big else "<H", raw[:2])[0]


def _text(region: Region, tag: int) -> str | None:
    raw = _raw(region, tag)
    if raw is None:
        return None
    return raw.decode("latin-1").strip(" \0")


def read_pixel_module(parsed: Parsed, name: str) -> tuple[PixelModule | None, int]:
    """The pixel module of a parsed file: (module, -1) for native Pixel Data, (None, index of the
    Pixel Data element) when it is encapsulated. Raises PolicyError when masks cannot apply."""
    region = parsed.dataset
    index = region.table.find(PIXEL_DATA, -1)
    if index < 0:
        raise PolicyError(f"{name}: no Pixel Data (7FE0,0010) to mask")
    element = region.element(index)
    if element.kind == KIND_FRAGMENTS:
        return None, index
    values = {}
    for tag, label in ((ROWS, "Rows"), (COLUMNS, "Columns"), (BITS_ALLOCATED, "Bits Allocated")):
        values[label] = _us(region, tag)
        if not values[label]:
            raise PolicyError(f"{name}: {label} {tag_text(tag)} is missing or zero; "
                              "cannot locate pixels to mask")
    photometric = (_text(region, PHOTOMETRIC) or "").upper()
    if not photometric:
        raise PolicyError(f"{name}: Photometric Interpretation (0028,0004) is missing; "
                          "cannot tell what black is")
    frames_text = _text(region, NUMBER_OF_FRAMES)
    try:
        frames = int(frames_text) if frames_text else 1
    except ValueError:
        raise PolicyError(f"{name}: Number of Frames (0028,0008) {frames_text!r} is not a number")
    bits_allocated = values["Bits Allocated"]
    bits_stored = _us(region, BITS_STORED) or bits_allocated
    module = PixelModule(
        rows=values["Rows"], columns=values["Columns"], frames=frames,
        samples=_us(region, SAMPLES_PER_PIXEL) or 1, planar=_us(region, PLANAR_CONFIGURATION) or 0,
        bits_allocated=bits_allocated, bits_stored=bits_stored,
        signed=_us(region, PIXEL_REPRESENTATION) == 1, photometric=photometric, big=region.big,
        swapped=region.big and element.vr == "OW" and bits_allocated == 8,
        offset=element.vstart, length=element.vlen)
    _check(module, element.vr, name)
    return module, -1


def _check(m: PixelModule, vr: str, name: str) -> None:
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
    if m.needed > m.length:
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
        descriptor, data = _raw(region, descriptor_tag), _raw(region, data_tag)
        if not descriptor or len(descriptor) < 6 or not data:
            segmented = any(_raw(region, t) for t in SEGMENTED_PALETTE_DATA)
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
    name = report.name
    fills = []
    for mask in masks:
        x0, y0 = max(mask.x, 0), max(mask.y, 0)
        x1, y1 = min(mask.x + mask.width, m.columns), min(mask.y + mask.height, m.rows)
        if x0 >= x1 or y0 >= y1:
            raise PolicyError(f"{name}: mask {mask} lies entirely outside the "
                              f"{m.columns}×{m.rows} image")
        if (x0, y0, x1, y1) != (mask.x, mask.y, mask.x + mask.width, mask.y + mask.height):
            report.warn(f"{name}: mask {mask} extends past the {m.columns}×{m.rows} image; "
                        f"clipped to {x0},{y0},{x1 - x0},{y1 - y0}")
        if m.subsampled and (x0 % 2 or x1 % 2):
            wide0, wide1 = x0 - x0 % 2, x1 + x1 % 2
            report.warn(f"{name}: mask {mask} cuts 2-pixel 4:2:2 blocks of {m.photometric}; "
                        f"widened to columns {wide0}-{wide1 - 1}")
            x0, x1 = wide0, wide1
        frames = range(m.frames) if mask.frames is None else mask.frames
        if frames[-1] >= m.frames:
            raise PolicyError(f"{name}: mask {mask}: frame {frames[-1]} is past the last frame "
                              f"(Number of Frames is {m.frames}; frames count from 0)")
        fills.extend(_layout(m, frames, x0, y0, x1 - x0, y1 - y0, black))
        report.applied += 1
    return fills


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


# --------------------------------------------------------------------------------------------
# Mask rules: the first rule whose attributes match gives the masks (a TOML file).

class MaskRule(NamedTuple):
    """One [[rule]] of a mask rules file."""

    name: str
    match: tuple[tuple[int, object], ...]     # (tag, expected): str (glob), int, or a list of them
    masks: tuple[Mask, ...]


@dataclass(frozen=True, slots=True)
class MaskRules:
    """Mask rules read from TOML; the first rule whose `match` attributes all fit is used.

    ```toml
    [[rule]]
    name = "Acme ultrasound"
    match = { Modality = "US", Manufacturer = "ACME*", Rows = 480 }
    masks = ["0,0,640,40", { x = 0, y = 440, width = 640, height = 40, frames = [0, 1] }]
    ```
    Strings match as shell-style globs (case-sensitive), integers exactly, a list any of its items.

    Examples
    --------
    >>> rules = MaskRules.loads('[[rule]]\\nname = "all"\\nmatch = {}\\nmasks = ["0,0,8,8"]')
    >>> rules.rules[0].masks
    (Mask(x=0, y=0, width=8, height=8, frames=None),)
    """

    rules: tuple[MaskRule, ...]
    source: str = "<rules>"

    def __bool__(self) -> bool:
        return bool(self.rules)

    @classmethod
    def load(cls, path) -> MaskRules:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"{path}: mask rules cannot be read ({exc.strerror})") from None
        return cls.loads(text, str(path))

    @classmethod
    def loads(cls, text: str, source: str = "<rules>") -> MaskRules:
        import tomllib

        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{source}: not valid TOML ({exc})") from None
        unknown = set(doc) - {"rule"}
        if unknown:
            raise PolicyError(f"{source}: unknown top-level key(s) {sorted(unknown)}; "
                              "expected [[rule]] tables")
        rules = []
        for number, raw in enumerate(doc.get("rule", []), 1):
            label = raw.get("name", f"rule {number}")
            where = f"{source}: {label}"
            extra = set(raw) - {"name", "match", "masks"}
            if extra:
                raise PolicyError(f"{where}: unknown key(s) {sorted(extra)}")
            match = []
            for key, expected in raw.get("match", {}).items():
                try:
                    tag = parse_tag(key)
                except KeyError as exc:
                    raise PolicyError(f"{where}: {exc.args[0]}") from None
                for item in expected if isinstance(expected, list) else [expected]:
                    if not isinstance(item, (str, int)) or isinstance(item, bool):
                        raise PolicyError(f"{where}: {key} must be a string, an integer or a list")
                match.append((tag, expected))
            masks = [Mask.from_toml(item, where) for item in raw.get("masks", [])]
            if not masks:
                raise PolicyError(f"{where}: no masks")
            rules.append(MaskRule(label, tuple(match), tuple(masks)))
        return cls(tuple(rules), source)

    def select(self, region: Region) -> MaskRule | None:
        """The first rule whose attributes all match this (top-level) data set."""
        for rule in self.rules:
            if all(_matches(_attribute(region, tag), expected) for tag, expected in rule.match):
                return rule
        return None


def _attribute(region: Region, tag: int):
    """A top-level attribute's value for matching: text (backslash-joined) or an int."""
    index = region.table.find(tag, -1)
    if index < 0:
        return None
    element = region.element(index)
    raw = region.value(element)
    vr = element.vr if element.vr != "UN" else dictionary_vr(tag)
    if vr in ("US", "SS", "UL", "SL") and raw:
        code = {"US": "H", "SS": "h", "UL": "I", "SL": "i"}[vr]
        size = struct.calcsize(code)
        return struct.unpack((">" if region.big else "<") + code, raw[:size])[0]
    if vr in TEXT_VRS or vr == "UN":
        return raw.decode("latin-1").strip(" \0")
    return None


def _matches(value, expected) -> bool:
    from fnmatch import fnmatchcase

    if value is None:
        return False
    if isinstance(expected, list):
        return any(_matches(value, item) for item in expected)
    if isinstance(expected, int):
        try:
            return int(value) == expected
        except ValueError:
            return False
    return fnmatchcase(str(value), expected)


# --------------------------------------------------------------------------------------------
# Entry points (pipeline.py calls them on the output).

def _chosen(parsed: Parsed, masks, report: MaskReport) -> tuple[Mask, ...]:
    if isinstance(masks, MaskRules):
        rule = masks.select(parsed.dataset)
        report.rule = rule.name if rule else None
        return rule.masks if rule else ()
    masks = tuple(masks)
    for mask in masks:
        if not isinstance(mask, Mask):
            raise PolicyError(f"{report.name}: {mask!r} is not a fastanon.Mask")
    return masks


def _prepare(parsed: Parsed, masks, report: MaskReport, decompress: bool):
    """(pixel module, fills) for native data; (None, None) when decompressing must come first."""
    if parsed.deflated:
        raise PolicyError(f"{report.name}: mask {masks[0]}: masks in a Deflated Explicit VR "
                          "Little Endian data set are not supported")
    module, encapsulated = read_pixel_module(parsed, report.name)
    if module is None:
        if not decompress:
            raise PolicyError(
                f"{report.name}: mask {masks[0]}: the Pixel Data is compressed (transfer syntax "
                f"{parsed.transfer_syntax or 'unknown'}); masks need native pixels: use "
                "--decompress (decompress=True) to decode, mask and store it uncompressed")
        return None, None
    black = black_samples(parsed.dataset, module, report)
    return module, plan_fills(module, masks, black, report)


def blank_bytes(data, masks, name: str = "<data>", *, decompress: bool = False
                ) -> tuple[bytes, MaskReport]:
    """Black out masks in a DICOM file held in memory: (new bytes, what was done).

    Examples
    --------
    >>> import fastanon, pydicom, io
    >>> from pydicom.data import get_testdata_file
    >>> raw = open(get_testdata_file("MR_small.dcm", download=False), "rb").read()
    >>> out, report = blank_bytes(raw, [Mask(0, 0, 8, 4)])
    >>> int(pydicom.dcmread(io.BytesIO(out)).pixel_array[:4, :8].max()), report.applied
    (-32768, 1)
    """
    report = MaskReport(name)
    parsed = parse(data, name)
    masks = _chosen(parsed, masks, report)
    if not masks:
        return bytes(data), report
    module, fills = _prepare(parsed, masks, report, decompress)
    if module is None:
        plain = _decompressed(bytes(data), name)
        report.decompressed = True
        out, inner = blank_bytes(plain, masks, name)
        report.warnings.extend(inner.warnings)
        report.applied, report.size = inner.applied, len(out)
        return out, report
    del parsed
    buf = bytearray(data)
    with memoryview(buf) as view:
        pixels = view[module.offset:module.offset + module.length]
        _write(pixels, fills, module, name)
        pixels.release()
    return bytes(buf), report


def apply_to_bytes(data, masks, name: str = "<data>", *, decompress: bool = False) -> bytes:
    """Black out masks in a DICOM file held in memory (see blank_bytes for the report)."""
    return blank_bytes(data, masks, name, decompress=decompress)[0]


def apply_to_fd(fd: int, size: int, masks, name: str, *, decompress: bool = False) -> MaskReport:
    """Black out masks in place in an open, writable output file of `size` bytes: the file is
    mapped, its headers scanned again, and only the rows the masks cover are written."""
    report = MaskReport(name)
    if size <= 0:
        raise MalformedError(f"{name}: empty output, nothing to mask")
    with mmap.mmap(fd, size, access=mmap.ACCESS_WRITE) as mapped:
        parsed = parse(mapped, name)
        try:
            chosen = _chosen(parsed, masks, report)
            if not chosen:
                return report
            module, fills = _prepare(parsed, chosen, report, decompress)
            if module is not None:
                with memoryview(mapped) as view:
                    pixels = view[module.offset:module.offset + module.length]
                    _write(pixels, fills, module, name, mapped)
                    pixels.release()
                return report
        finally:
            parsed.release()
            del parsed
        data = bytes(mapped)
    plain = _decompressed(data, name)
    del data
    out, inner = blank_bytes(plain, chosen, name)
    os.ftruncate(fd, 0)
    view, done = memoryview(out), 0
    while done < len(out):
        done += os.pwrite(fd, view[done:], done)
    report.decompressed, report.applied, report.size = True, inner.applied, len(out)
    report.warnings.extend(inner.warnings)
    return report


# --------------------------------------------------------------------------------------------
# Compressed Pixel Data: decoded by pydicom (imported only here), stored as Explicit VR LE.

def _decompressed(data: bytes, name: str) -> bytes:
    """The file with its Pixel Data decoded (PS3.5 §A.4 → native Explicit VR Little Endian),
    Photometric Interpretation as decoded, and Lossy Image Compression kept true (PS3.3
    C.7.6.1.1.5): a lossy source stays marked "01" with its method recorded."""
    import pydicom
    from pydicom.pixels import decompress

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        syntax = str(ds.file_meta.TransferSyntaxUID)
    except Exception as exc:           # pydicom's words for a file fastanon could walk
        raise MalformedError(f"{name}: pydicom cannot read the file to decode its compressed "
                             f"Pixel Data for masking: {exc}") from None
    try:
        decompress(ds, generate_instance_uid=False)
    except Exception as exc:           # missing plugin, corrupt stream: the decoder's own words
        raise PolicyError(f"{name}: the compressed Pixel Data (transfer syntax {syntax}) cannot "
                          f"be decoded for masking: {exc}") from None
    method = _LOSSY_METHODS.get(syntax)
    if method:
        ds.LossyImageCompression = "01"
        methods = list(ds.get("LossyImageCompressionMethod") or [])
        if isinstance(ds.get("LossyImageCompressionMethod"), str):
            methods = [ds.LossyImageCompressionMethod]
        if method not in methods:
            methods.append(method)
        ds.LossyImageCompressionMethod = methods if len(methods) > 1 else methods[0]
    out = io.BytesIO()
    try:
        if str(ds.file_meta.TransferSyntaxUID) != EXPLICIT_LE:
            raise ValueError(f"decoded as {ds.file_meta.TransferSyntaxUID}, not {EXPLICIT_LE}")
        ds.save_as(out, enforce_file_format=True)
    except Exception as exc:           # e.g. group 0002 elements inside the data set
        raise MalformedError(f"{name}: the decoded file cannot be written back: {exc}") from None
    return out.getvalue()
