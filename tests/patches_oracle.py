"""The edits → patches step as it was written in Python before the kernel took it
(_core.Table.patches): the oracle tests/test_patches.py compares the kernel with."""

from __future__ import annotations

import struct

from fastanon.elements import FLAG_BIG, FLAG_IMPLICIT, FLAG_LONG, FLAG_UNDEFINED, KIND_ITEM, length_offset
from fastanon.errors import PolicyError
from fastanon.rewrite import _HEADER_ONLY, REMOVE, _explicit, _u32


def patches_py(region, edits: dict[int, bytes | None],
            headers: dict[int, str] | None = None) -> list[Patch]:
    """Patches that apply edits to a region, in order, non-overlapping. headers: {index: VR}
    of elements whose implicit VR header is written as an explicit one (explicit_vrs); an
    edited one of them gets its new value under that header."""
    if not edits and not headers:
        return []
    headers = headers or {}
    table = region.table
    row = table.row
    out: list[Patch] = []
    delta: dict[int, int] = {}          # entry index → change of its total size
    own: dict[int, int] = {}            # re-headered, not edited: index → change of its header
    rows: dict[int, tuple] = {}
    skip_until = -1
    for index in sorted(edits.keys() | headers.keys()) if headers else sorted(edits):
        entry = rows[index] = row(index)
        tag, _, kind, flags, _, parent, start, vstart, _, end = entry
        if start < skip_until:
            continue                    # inside an element already removed or replaced
        if kind == KIND_ITEM:
            raise PolicyError(f"entry {index} is a sequence item; only elements can be edited")
        new = edits.get(index, _HEADER_ONLY)
        if new is _HEADER_ONLY:
            change = own[index] = len(_explicit(tag, headers[index], 0, flags & FLAG_BIG)) \
                - (vstart - start)
        else:
            if new is REMOVE:
                out.append((start, end, b""))
                change = start - end
            else:
                vr = headers.get(index) if headers else None
                head = (_header(region.buf, start, flags, len(new)) if vr is None else
                        _explicit(tag, vr, len(new), flags & FLAG_BIG))
                out.append((start, end, head + new))
                change = len(head) + len(new) - (end - start)
            skip_until = end
        if change:
            delta[index] = delta.get(index, 0) + change
            while parent >= 0:
                delta[parent] = delta.get(parent, 0) + change
                if parent not in rows:
                    rows[parent] = row(parent)
                parent = rows[parent][5]
    # Rewritten headers, with the defined length of what they hold once it changed.
    for index, change in own.items():
        tag, _, kind, flags, _, _, start, vstart, vlen, _ = rows[index]
        if not flags & FLAG_UNDEFINED:
            vlen += delta.get(index, 0) - change
        out.append((start, vstart, _explicit(tag, headers[index], vlen, flags & FLAG_BIG)))
    # Defined lengths of enclosing sequences and items.
    groups: dict[tuple[int, int], int] = {}
    for index, change in delta.items():
        tag, _, kind, flags, _, parent, start, vstart, vlen, end = rows[index]
        if not (index in edits or (own and index in own) or flags & FLAG_UNDEFINED):
            offset = length_offset(kind, flags, start)
            out.append((offset, offset + 4, _u32(vlen + change, flags & FLAG_BIG)))
        if kind != KIND_ITEM and tag & 0xFFFF:
            key = (parent, tag >> 16)
            groups[key] = groups.get(key, 0) + change
    # Group lengths (gggg,0000) of the groups that changed size, at the same level.
    for (parent, group), change in groups.items():
        if not change:
            continue
        index = table.find(group << 16, parent)
        if index < 0 or index in edits:
            continue
        element = region.element(index)
        if element.vlen != 4:
            continue
        # Recomputed from the bytes, not by adjusting the old value: that may be wrong already.
        size = _group_end(table, index, parent, group) - element.end
        out.append((element.vstart, element.vstart + 4, _u32(size + change, element.flags & FLAG_BIG)))
    out.sort()
    return out


def _group_end(table, index: int, parent: int, group: int) -> int:
    """End offset of the last element of group at the level of the group length at index."""
    end = table.row(index)[9]
    limit = table.row(parent)[9] if parent >= 0 else None
    for i in range(index + 1, len(table)):
        tag, _, _, _, _, up, start, _, _, stop = table.row(i)
        if limit is not None and start >= limit:
            break
        if up == parent:
            if tag >> 16 != group:
                break
            end = stop
    return end


def _header(buf, start: int, flags: int, length: int) -> bytes:
    """A header like the element's own (same tag, VR and byte order) for a value of length bytes."""
    big = flags & FLAG_BIG
    if flags & FLAG_IMPLICIT:
        return bytes(buf[start:start + 4]) + _u32(length, big)
    head = bytes(buf[start:start + 6])
    if flags & FLAG_LONG:
        return head + b"\0\0" + _u32(length, big)
    if length > 0xFFFF:
        raise PolicyError(f"a {head[4:].decode()} value of {length:,} bytes does not fit its "
                          "16-bit length")
    return head + struct.pack(">H" if big else "<H", length)


