"""Encapsulated Pixel Data (PS3.5 A.4): its fragments grouped into frames, the element written
again with some frames replaced, and the lossless codecs that decode and encode a frame.

A frame is found from the Extended Offset Table, else the Basic Offset Table, else one fragment
a frame, else the fragments that begin with the codestream's start marker (PS3.5 A.4: a frame
may span fragments; a fragment holds one frame at most). The element written again keeps every
frame not replaced as its input bytes, one fragment for each replaced frame, and offset tables
for the new fragment lengths: a Basic Offset Table when the input had one (or a frame spans
fragments), the Extended Offset Table and its lengths rewritten in place when the file has them.

The lossless codecs come from the `codecs` extra (imagecodecs: libjpeg-turbo, CharLS, OpenJPEG),
imported only when a frame is decoded. RLE Lossless needs none of it (the kernel's _rle.pxi).
"""

from __future__ import annotations

import struct

from .elements import (EXTENDED_OFFSET_TABLE, EXTENDED_OFFSET_TABLE_LENGTHS, ITEM, SEQUENCE_END,
                       tag_text)
from .errors import MalformedError, PolicyError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .scan import Region

_ITEM = struct.pack("<HH", ITEM >> 16, ITEM & 0xFFFF)          # an item's tag, little endian
_SEQUENCE_END = struct.pack("<HHI", SEQUENCE_END >> 16, SEQUENCE_END & 0xFFFF, 0)

RLE_LOSSLESS = "1.2.840.10008.1.2.5"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"           # Process 1: 8-bit sequential DCT, Huffman
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"           # Processes 2 and 4 (8-bit ones: as baseline)
JPEG_DCT = frozenset({JPEG_BASELINE, JPEG_EXTENDED})
JPEG_START = b"\xff\xd8"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"            # Process 14, any predictor
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"        # Process 14, selection value 1
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"       # reversible wavelet only

JPEG_LS_NEAR = "1.2.840.10008.1.2.4.81"             # near-lossless: NEAR 0 is lossless in it
JPEG_2000 = "1.2.840.10008.1.2.4.91"                # lossy or lossless

# The syntaxes a frame is decoded, masked and encoded again in, losslessly (a lossy one loses
# nothing more than it had): syntax → (what the codestream starts with, the codec's words).
CODECS = {
    JPEG_LOSSLESS: (b"\xff\xd8", "JPEG Lossless"),
    JPEG_LOSSLESS_SV1: (b"\xff\xd8", "JPEG Lossless, first-order prediction"),
    JPEG_LS_LOSSLESS: (b"\xff\xd8", "JPEG-LS Lossless"),
    JPEG_2000_LOSSLESS: (b"\xff\x4f\xff\x51", "JPEG 2000 Lossless"),
    JPEG_LS_NEAR: (b"\xff\xd8", "JPEG-LS near-lossless"),
    JPEG_2000: (b"\xff\x4f\xff\x51", "JPEG 2000"),
}
CODECS_PACKAGE = "pip install 'fastanon[codecs]'"


def codecs_available() -> bool:
    """Whether the codecs extra (imagecodecs) can be imported here."""
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        return False
    return True


class Fragments:
    """The items of an encapsulated Pixel Data element: the Basic Offset Table's value and each
    fragment's (start, stop) in the region's buffer, grouped into frames."""

    def __init__(self, region: Region, element, frames: int, name: str,
                 starts: bytes = b""):
        self.region, self.element, self.name = region, element, name
        table, items = region.table, []
        for index in range(element.index + 1, len(table)):
            row = table.row(index)
            if row[6] >= element.end:
                break
            if row[5] == element.index:
                items.append((row[7], row[7] + row[8]))
        if not items:
            raise MalformedError(f"{name}: the encapsulated Pixel Data has no items")
        self.basic = items[0][1] > items[0][0]
        self.fragments = items[1:]
        self.frames = self._grouped(frames, starts)

    def _grouped(self, count: int, starts: bytes) -> list[list[tuple[int, int]]]:
        fragments, buf, name = self.fragments, self.region.buf, self.name
        extended = self.region.top(EXTENDED_OFFSET_TABLE)
        problem = None
        if extended is not None or self.basic:
            if extended is not None:
                raw = self.region.value(extended)
                offsets = list(struct.unpack(f"<{len(raw) // 8}Q", raw[:len(raw) // 8 * 8]))
            else:
                item = self.region.element(self.element.index + 1)    # the Basic Offset Table
                raw = bytes(buf[item.vstart:item.vstart + item.vlen])
                offsets = list(struct.unpack(f"<{len(raw) // 4}I", raw[:len(raw) // 4 * 4]))
            try:
                return self._by_offsets(offsets, count)
            except PolicyError as exc:      # a table that is wrong: the fragments may tell
                problem = exc
        if len(fragments) == count:
            return [[fragment] for fragment in fragments]
        if count == 1:
            return [list(fragments)]
        if starts:                      # a frame begins where its codestream does
            frames: list[list[tuple[int, int]]] = []
            for start, stop in fragments:
                if bytes(buf[start:start + len(starts)]) == starts or not frames:
                    frames.append([])
                frames[-1].append((start, stop))
            if len(frames) == count:
                return frames
        if problem is not None:
            raise problem
        raise PolicyError(f"{name}: the encapsulated Pixel Data holds {len(fragments)} "
                          f"fragment(s) for {count} frame(s), without an offset table that says "
                          "which frame is where; masks cannot apply")

    def _by_offsets(self, offsets: list[int], count: int) -> list[list[tuple[int, int]]]:
        """Frames from offsets of their first item, counted from the first fragment's item."""
        if len(offsets) != count:
            raise PolicyError(f"{self.name}: the offset table lists {len(offsets)} frame(s), "
                              f"Number of Frames is {count}; masks cannot apply")
        base = self.fragments[0][0] - 8 if self.fragments else 0
        at = {start - 8 - base: i for i, (start, _) in enumerate(self.fragments)}
        firsts = []
        for offset in offsets:
            if offset not in at:
                raise PolicyError(f"{self.name}: an offset table entry ({offset}) is not where a "
                                  "fragment begins; masks cannot apply")
            firsts.append(at[offset])
        if firsts != sorted(set(firsts)) or (firsts and firsts[0] != 0):
            raise PolicyError(f"{self.name}: the offset table's frames are out of order")
        bounds = firsts + [len(self.fragments)]
        return [self.fragments[bounds[i]:bounds[i + 1]] for i in range(count)]

    def rebuilt(self, buf, replaced: dict[int, bytes]) -> bytes:
        """The file in buf (whose Pixel Data this is) with frames replaced (frame → its new
        codestream, written as one fragment); the other frames as they were."""
        view = memoryview(buf)
        try:
            items: list[list] = []
            for frame, parts in enumerate(self.frames):
                if frame in replaced:
                    items.append([replaced[frame]])
                else:
                    items.append([view[start:stop] for start, stop in parts])
            extended = self.region.top(EXTENDED_OFFSET_TABLE) is not None
            # a Basic Offset Table as the input had, or where frames span fragments; never
            # beside an Extended Offset Table (PS3.5 A.4: the Basic one is empty then)
            basic = not extended and (self.basic or any(len(parts) > 1 for parts in items))
            offsets, lengths, at = [], [], 0
            for parts in items:
                offsets.append(at)
                size = sum(8 + len(p) + (len(p) & 1) for p in parts)
                lengths.append(size - 8 * len(parts))
                at += size
            element = self.element
            pieces = [view[:element.start], view[element.start:element.vstart]]
            table = struct.pack(f"<{len(offsets)}I", *offsets) if basic else b""
            if basic and at > 0xFFFFFFFF:
                raise PolicyError(f"{self.name}: the frames are too large for a Basic Offset Table")
            pieces += [_ITEM, struct.pack("<I", len(table)), table]
            for parts in items:
                for part in parts:
                    pieces += [_ITEM, struct.pack("<I", len(part) + (len(part) & 1)), part]
                    if len(part) & 1:
                        pieces.append(b"\0")
            pieces += [_SEQUENCE_END, view[element.end:]]
            out = bytearray(b"".join(pieces))
            del pieces, items
        finally:
            view.release()
        self._extended(out, offsets, lengths)
        return bytes(out)

    def _extended(self, out: bytearray, offsets: list[int], lengths: list[int]) -> None:
        """The Extended Offset Table and its lengths (before Pixel Data, PS3.3 C.7.6.3), when
        the file has them, written for the new fragments in place (as many frames: as long)."""
        for tag, numbers in ((EXTENDED_OFFSET_TABLE, offsets),
                             (EXTENDED_OFFSET_TABLE_LENGTHS, lengths)):
            found = self.region.top(tag)
            if found is None:
                continue
            if found.vlen != 8 * len(numbers):
                raise PolicyError(f"{self.name}: {tag_text(tag)} holds {found.vlen // 8} value(s) "
                                  f"for {len(numbers)} frame(s); masks cannot keep it right")
            out[found.vstart:found.vstart + found.vlen] = struct.pack(f"<{len(numbers)}Q", *numbers)


def decode(syntax: str, data: bytes, name: str, frame: int):
    """One frame's codestream as an array (rows, columns[, samples]) of its stored values."""
    import imagecodecs

    try:
        if syntax in (JPEG_LOSSLESS, JPEG_LOSSLESS_SV1):
            return imagecodecs.jpeg8_decode(data)
        if syntax in (JPEG_LS_LOSSLESS, JPEG_LS_NEAR):
            return imagecodecs.jpegls_decode(data)
        return imagecodecs.jpeg2k_decode(data)
    except Exception as exc:            # the codec's own words for a stream it cannot read
        raise MalformedError(f"{name}: frame {frame} of the Pixel Data cannot be decoded "
                             f"({CODECS[syntax][1]}): {exc}") from None


def encode(syntax: str, pixels, bits_stored: int, photometric: str, name: str) -> bytes:
    """A frame's array encoded losslessly in syntax (JPEG-LS: NEAR 0, JPEG 2000: the reversible
    wavelet), with the input's precision and colour transform (JPEG 2000: the reversible one for
    YBR_RCT, none for RGB and monochrome)."""
    import imagecodecs

    try:
        if syntax in (JPEG_LOSSLESS, JPEG_LOSSLESS_SV1):
            return imagecodecs.jpeg8_encode(pixels, lossless=True, predictor=1,
                                            bitspersample=bits_stored)
        if syntax in (JPEG_LS_LOSSLESS, JPEG_LS_NEAR):
            return imagecodecs.jpegls_encode(pixels)       # NEAR 0: lossless
        return imagecodecs.jpeg2k_encode(pixels, codecformat="J2K", reversible=True,
                                         mct=photometric == "YBR_RCT", bitspersample=bits_stored)
    except Exception as exc:
        raise PolicyError(f"{name}: a masked frame cannot be encoded again "
                          f"({CODECS[syntax][1]}): {exc}") from None


# What decodes a frame for display (the preview): every syntax above, JPEG Baseline and
# Extended included (libjpeg gives RGB for a YCbCr stream, as a viewer shows it).
_VIEWED = {**CODECS, JPEG_BASELINE: (JPEG_START, "JPEG Baseline"),
           JPEG_EXTENDED: (JPEG_START, "JPEG Extended")}


def viewed_frame(region: Region, syntax: str | None, frames: int, index: int, name: str):
    """Frame index of encapsulated Pixel Data decoded by the codecs extra, as an array of rows x
    columns (x samples): what a viewer shows. NoCodec when this syntax has none here."""
    if syntax not in _VIEWED:
        raise NoCodec(f"no decoder here for transfer syntax {syntax}")
    if not codecs_available():
        raise NoCodec(f"{_VIEWED[syntax][1]} is decoded by the codecs extra: {CODECS_PACKAGE}")
    from .elements import PIXEL_DATA

    element = region.element(region.table.find(PIXEL_DATA, -1))
    found = Fragments(region, element, frames, name, _VIEWED[syntax][0])
    data = b"".join(bytes(region.buf[start:stop]) for start, stop in found.frames[index])
    if syntax in JPEG_DCT:
        import imagecodecs

        try:
            return imagecodecs.jpeg8_decode(data)
        except Exception as exc:
            raise MalformedError(f"{name}: frame {index} cannot be decoded: {exc}") from None
    return decode(syntax, data, name, index)


class NoCodec(PolicyError):
    """No decoder for this compressed Pixel Data here."""
