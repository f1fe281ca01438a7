"""Bytes + edits → output pieces: removes and replaces elements, fixes lengths; decides nothing.

An edit maps an entry index of a Region's table to REMOVE or to new value bytes (b"" empties it;
a sequence given b"" becomes an empty sequence). The output is a list of patches (start, end,
new bytes) over the region's buffer; everything between patches is copied as it is. Lengths of
enclosing defined-length sequences and items, and group length elements (gggg,0000) at the
same level, are patched to match (PS3.5 §7.2, §7.5). Headers may be rewritten too: an implicit
VR header in an explicit VR data set gets an explicit one (explicit_vrs decides the VR).
"""

from __future__ import annotations

import bisect
import itertools
import os
import struct
import sys

from . import _core
from ._dictionary import VR_AMBIGUOUS
from ._lean import packed
from .elements import (BINARY_NUMBER_VRS, FLAG_BIG, FLAG_OPEN, FLAG_SWITCHED, KIND_ELEMENT,
                       KIND_FRAGMENTS, KIND_SEQUENCE, LONG_HEADER_VRS, PIXEL_DATA, dictionary_vr)
from .errors import PolicyError
from .scan import Region

REMOVE = None
_HEADER_ONLY = object()      # patches(): an element whose header alone is rewritten

Patch = tuple[int, int, bytes]


def patches(region: Region, edits: dict[int, bytes | None],
            headers: dict[int, str] | None = None) -> list[Patch]:
    """Patches that apply edits to a region, in order, non-overlapping. headers: {index: VR}
    of elements whose implicit VR header is written as an explicit one (explicit_vrs); an
    edited one of them gets its new value under that header. (The kernel's Table.patches.)"""
    if not edits and not headers:
        return []
    if headers:
        order = sorted(edits.keys() | headers.keys())
        values = [edits.get(index, _HEADER_ONLY) for index in order]
        vrs = bytearray(2 * len(order))
        for k, index in enumerate(order):
            if index in headers:
                code = headers[index].encode("ascii")
                vrs[2 * k:2 * k + 2] = code[::-1] if _NATIVE_LITTLE else code
        vrs = memoryview(vrs).cast("H")
    else:
        order = sorted(edits)
        values = [edits[index] for index in order]
        vrs = _NO_VRS
    result = region.table.patches(region.buf, packed("q", order), values, vrs, _HEADER_ONLY)
    if result[0] == _core.PATCH_OK:
        return result[1]
    status, index, length, vr = result
    if status == _core.PATCH_ITEM:
        raise PolicyError(f"entry {index} is a sequence item; only elements can be edited")
    if status == _core.PATCH_SHORT:
        name = chr(vr >> 8) + chr(vr & 0xFF)
        raise PolicyError(f"a {name} value of {length:,} bytes does not fit its 16-bit length")
    raise PolicyError(f"a length of {length:,} bytes cannot be encoded")


_NATIVE_LITTLE = sys.byteorder == "little"
_NO_VRS = memoryview(b"").cast("H")


# Bytes per value of the VRs whose values are whole numbers of fixed-size units (PS3.5 §6.2).
_SIZES = {**{vr: size for vr, (_, size) in BINARY_NUMBER_VRS.items()},
          "OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def explicit_vrs(region: Region) -> dict[int, str]:
    """{index: VR} for the elements of an explicit VR region written with an implicit VR
    header (the scanner's FLAG_SWITCHED), so that the output is in one encoding (PS3.5 §7.1):
    SQ for a sequence, OB for fragments, the dictionary's VR where it has one and the length
    fits its header; UN otherwise (private, unknown, or one of several VRs: nothing guessed,
    PS3.5 §6.2.2), and where the length is not a whole number of the VR's values."""
    table = region.table
    if not table.switched:
        return {}
    out = {}
    for index in range(len(table)):
        tag, _, kind, flags, _, _, _, _, vlen, _ = table.row(index)
        if not flags & FLAG_SWITCHED:
            continue
        if kind == KIND_SEQUENCE:
            vr = "SQ"
        elif kind == KIND_FRAGMENTS:
            vr = "OB"
        elif tag == PIXEL_DATA:
            vr = "OW"               # native Pixel Data in implicit VR is OW (PS3.5 §A.1)
        else:
            vr = "UN" if tag in VR_AMBIGUOUS else dictionary_vr(tag)
            if (vr not in LONG_HEADER_VRS and vlen > 0xFFFF) or vlen % _SIZES.get(vr, 1):
                vr = "UN"
        out[index] = vr
    return out


def closing(region: Region, edits: dict[int, bytes | None]) -> list[Patch]:
    """The sequence delimiter (FFFE,E0DD) that top-level fragments ending the data lack (the
    scanner's FLAG_OPEN), inserted where they end, so that an output is well-formed (PS3.5 §A.4)."""
    table = region.table
    for index in range(len(table) - 1, -1, -1):
        _, _, _, flags, _, parent, _, _, _, end = table.row(index)
        if parent == -1:
            if flags & FLAG_OPEN and index not in edits:
                return [(end, end, struct.pack(">HHI" if flags & FLAG_BIG else "<HHI", 0xFFFE, 0xE0DD, 0))]
            return []
    return []


# A DICOMDIR's Directory Record Sequence and the UL attributes that hold the file offset of a
# record's item (PS3.3 F.3.2.1, Table F.3-3: from the first byte of the file, preamble included).
DIRECTORY_OFFSETS = frozenset({0x00041200, 0x00041202, 0x00041400, 0x00041420})


def directory_offsets(region: Region, patch_list: list[Patch]) -> list[Patch]:
    """Patches that keep a DICOMDIR's record offsets pointing at the same items once patch_list
    (every patch of the file, in file offsets) has moved them. region.buf must be the file."""
    table = region.table
    found = [i for i, tag in enumerate(table.tags()) if tag in DIRECTORY_OFFSETS]
    if not found or not patch_list:
        return []
    by_end = sorted((end, len(new) - (end - start)) for start, end, new in patch_list)
    ends = [end for end, _ in by_end]
    shifts = list(itertools.accumulate(change for _, change in by_end))
    spans = sorted((start, end) for start, end, _ in patch_list if end > start)
    out: list[Patch] = []
    for index in found:
        element = region.element(index)
        if element.kind != KIND_ELEMENT or element.vlen != 4:
            continue
        k = bisect.bisect_right(spans, (element.vstart, 1 << 62)) - 1
        if k >= 0 and spans[k][1] > element.vstart:
            continue                    # removed or replaced with what holds it
        big = element.flags & FLAG_BIG
        old = struct.unpack(">I" if big else "<I", region.value(element))[0]
        k = bisect.bisect_right(ends, old)      # patches ending at or before the record's item
        new = old + (shifts[k - 1] if k else 0)
        if old and new != old:
            out.append((element.vstart, element.vstart + 4, _u32(new, big)))
    return out


def _u32(value: int, big: int) -> bytes:
    if not 0 <= value < 0xFFFFFFFF:
        raise PolicyError(f"a length of {value:,} bytes cannot be encoded")
    return struct.pack(">I" if big else "<I", value)


def _explicit(tag: int, vr: str, length: int, big: int) -> bytes:
    """An explicit VR header (PS3.5 §7.1.2) for a value of length bytes (undefined: 0xFFFFFFFF)."""
    end = ">" if big else "<"
    head = struct.pack(end + "HH", tag >> 16, tag & 0xFFFF) + vr.encode("ascii")
    if vr in LONG_HEADER_VRS:
        return head + b"\0\0" + (struct.pack(end + "I", length) if length == 0xFFFFFFFF
                                  else _u32(length, big))
    if length > 0xFFFF:
        raise PolicyError(f"a {vr} value of {length:,} bytes does not fit its 16-bit length")
    return head + struct.pack(end + "H", length)


def pieces(buf, start: int, end: int, patch_list: list[Patch]):
    """Yield the output as (offset, length) ranges of buf to copy and bytes to insert, in order."""
    pos = start
    for p_start, p_end, new in patch_list:
        if p_start > pos:
            yield (pos, p_start - pos)
        if new:
            yield new
        pos = p_end
    if end > pos:
        yield (pos, end - pos)


def join(buf, parts) -> bytes:
    """The output as one bytes object."""
    view = memoryview(buf)
    return b"".join(part if isinstance(part, bytes) else view[part[0]:part[0] + part[1]]
                    for part in parts)


BULK = 65536     # ranges at least this long are copied file to file; shorter ones are joined
BLOCK = 4096     # a shared range starts on this boundary (a page; file system blocks divide it)
_FICLONERANGE = 0x4020940D      # Linux: _IOW(0x94, 13, struct file_clone_range)


def write(fd_in: int, buf, fd_out: int, parts, clone: bool = True) -> tuple[int, int]:
    """Write the output to fd_out: long copied ranges go file to file, never through Python
    objects; the short pieces between them (headers, new values) are joined and written at
    once. With clone, a long range from its first block boundary on is shared with the input
    where the file system can (a reflink: XFS, btrfs, bcachefs, OpenZFS block cloning) and
    copied where it cannot; without, it is always copied. Returns (bytes written, bytes of them
    shared with the input)."""
    total = shared = 0
    pending: list = []
    view = memoryview(buf)
    size = len(buf)
    for part in parts:
        if isinstance(part, bytes):
            pending.append(part)
            continue
        offset, length = part
        if length < BULK:
            pending.append(view[offset:offset + length])
            continue
        if clone:                       # up to the block boundary with the bytes before it
            head = -offset % BLOCK
            pending.append(view[offset:offset + head])
            offset, length = offset + head, length - head
        if pending:
            total += write_all(fd_out, b"".join(pending))
            pending = []
        if clone and total % BLOCK == 0:
            whole = length if offset + length == size else length - length % BLOCK
            done = _clone_range(fd_in, fd_out, offset, whole, total)
            shared += done
            total += done
            offset, length = offset + done, length - done
        total += _copy_range(fd_in, buf, fd_out, offset, length, clone)
    if pending:
        total += write_all(fd_out, b"".join(pending))
        pending = []
    view.release()
    return total, shared


def write_all(fd: int, data) -> int:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return len(data)


def _clone_range(fd_in: int, fd_out: int, offset: int, length: int, at: int) -> int:
    """Share length bytes of the input from offset as the output's bytes from at (its end):
    the bytes shared, or 0 where the file system cannot (another file system, no reflinks)."""
    if length < BULK or not sys.platform.startswith("linux"):
        return 0
    import fcntl

    try:
        fcntl.ioctl(fd_out, _FICLONERANGE, struct.pack("=qQQQ", fd_in, offset, length, at))
    except OSError:             # EOPNOTSUPP, EXDEV, EINVAL (block size), ...: copied instead
        return 0
    os.lseek(fd_out, at + length, os.SEEK_SET)
    return length


_COPY_FILE_RANGE = hasattr(os, "copy_file_range")
_SENDFILE = sys.platform.startswith("linux")


def _copy_range(fd_in: int, buf, fd_out: int, offset: int, length: int,
                clone: bool = True) -> int:
    """Copy a range of the input to the output's end in the kernel: copy_file_range (which
    a reflink file system may also share), or without clone sendfile (which always copies);
    what the kernel cannot copy is written from the mapping."""
    global _COPY_FILE_RANGE, _SENDFILE
    done = 0
    if length >= BULK:
        try:
            if clone and _COPY_FILE_RANGE:
                while done < length:
                    n = os.copy_file_range(fd_in, fd_out, length - done, offset + done)
                    if n == 0:
                        break
                    done += n
            elif _SENDFILE:
                while done < length:
                    n = os.sendfile(fd_out, fd_in, offset + done, length - done)
                    if n == 0:
                        break
                    done += n
        except OSError:     # e.g. across file systems on older kernels: plain copies from now on
            if clone and _COPY_FILE_RANGE:
                _COPY_FILE_RANGE = False
            else:
                _SENDFILE = False
    if done < length:
        write_all(fd_out, memoryview(buf)[offset + done:offset + length])
    return length


# --- New top-level elements (PS3.15 E.1: PatientIdentityRemoved, DeidentificationMethod, ...) ---

def encode_value(vr: str, value, implicit: bool, big: bool) -> bytes:
    """The value bytes of a new element: bytes as given (even length), or for SQ the encoded items,
    each a list of (tag, vr, value) in ascending tag order, with defined lengths (PS3.5 §7.5)."""
    if vr != "SQ":
        return bytes(value)
    end = ">" if big else "<"
    out = []
    for item in value:
        body = b"".join(encode_element(t, v, x, implicit, big) for t, v, x in item)
        out.append(struct.pack(end + "HHI", 0xFFFE, 0xE000, len(body)) + body)
    return b"".join(out)


def encode_element(tag: int, vr: str, value, implicit: bool, big: bool) -> bytes:
    """One whole element in the data set's encoding (PS3.5 §7.1): header and value.

    >>> encode_element(0x00120062, "CS", b"YES ", False, False).hex(" ")
    '12 00 62 00 43 53 04 00 59 45 53 20'
    >>> encode_element(0x00120062, "CS", b"YES ", True, False).hex(" ")
    '12 00 62 00 04 00 00 00 59 45 53 20'
    """
    value = encode_value(vr, value, implicit, big)
    if len(value) & 1:
        raise PolicyError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}): odd value length {len(value)}")
    if implicit:
        return struct.pack(">HH" if big else "<HH", tag >> 16, tag & 0xFFFF) \
            + _u32(len(value), big) + value
    return _explicit(tag, vr, len(value), big) + value


def insertion_points(region: Region, tags: list[int]) -> list[int]:
    """For new top-level elements (ascending tags), the index of the entry each goes before
    (len(table): the end), in tag order (PS3.5 §7.1)."""
    table = region.table
    pending = list(tags)
    out: list[int] = []
    index, count = 0, len(table)
    while pending and index < count:
        tag, _, _, _, _, parent, _, _, _, _ = table.row(index)
        if parent == -1:             # inside a sequence: only top-level positions count
            while pending and pending[0] < tag:
                pending.pop(0)
                out.append(index)
        index += 1
    return out + [count] * len(pending)


def insertions(region: Region, new: list[tuple[int, bytes]], points: list[int]) -> list[Patch]:
    """Zero-length patches that insert encoded top-level elements (tag, bytes), in ascending tag
    order, before the entries insertion_points gave. The caller must not also add an element
    whose tag is already present, and should remove the group length (gggg,0000) of a group
    that grows."""
    table = region.table
    at: dict[int, list[bytes]] = {}
    for (_, raw), index in zip(new, points):
        position = table.row(index)[6] if index < len(table) else table.stop
        at.setdefault(position, []).append(raw)
    return [(position, position, b"".join(raws)) for position, raws in sorted(at.items())]
