"""DICOMDIR records: which study and series each referenced file belongs to (PS3.3 F.3, F.5).

Records are items of the Directory Record Sequence linked by byte offsets (the next record at
the same level, the first record of the level below), not by nesting, and writers need not
keep them in document order: the hierarchy is followed through the offsets.
"""

from __future__ import annotations

import struct

from .elements import DIRECTORY_RECORDS, KIND_ELEMENT, KIND_ITEM

RECORD_TYPE, NEXT_RECORD, LOWER_LEVEL = 0x00041430, 0x00041400, 0x00041420
REFERENCED_FILE_ID, REFERENCED_SOP = 0x00041500, 0x00041511
STUDY_UID, SERIES_UID = 0x0020000D, 0x0020000E


def file_references(region) -> list[tuple[int, int | None, int | None, int]]:
    """(ReferencedFileID index, StudyInstanceUID index, SeriesInstanceUID index, Referenced SOP
    Instance UID in File index) of every record that names a file, from its study and series
    records above it; None where a level is missing."""
    records = region.top(DIRECTORY_RECORDS)
    if records is None:
        return []
    table = region.table
    items: dict[int, int] = {}                  # file offset of an item → its index
    fields: dict[int, dict[int, int]] = {}      # item index → {tag: element index}
    for index in range(records.index + 1, len(table)):
        tag, _, kind, _, _, parent, start, _, _, _ = table.row(index)
        if start >= records.end:
            break
        if kind == KIND_ITEM and parent == records.index:
            items[start] = index
            fields[index] = {}
        elif kind == KIND_ELEMENT and parent in fields:
            fields[parent][tag] = index
    above: dict[int, int] = {}                  # record → the record whose lower level holds it
    for record, own in fields.items():
        child, seen = _offset(region, own.get(LOWER_LEVEL)), set()
        while child in items and child not in seen:
            seen.add(child)
            above.setdefault(items[child], record)
            child = _offset(region, fields[items[child]].get(NEXT_RECORD))
    out = []
    for record, own in fields.items():
        if REFERENCED_FILE_ID not in own or REFERENCED_SOP not in own:
            continue
        study = series = None
        level, seen = above.get(record), set()
        while level is not None and level not in seen:
            seen.add(level)
            kind = region.value(region.element(fields[level][RECORD_TYPE])).strip(b"\0 ") \
                if RECORD_TYPE in fields[level] else b""
            if kind == b"SERIES" and series is None:
                series = fields[level].get(SERIES_UID)
            elif kind == b"STUDY" and study is None:
                study = fields[level].get(STUDY_UID)
            level = above.get(level)
        out.append((own[REFERENCED_FILE_ID], study, series, own[REFERENCED_SOP]))
    return out


def _offset(region, index: int | None) -> int:
    if index is None:
        return 0
    raw = region.value(region.element(index))
    return struct.unpack(">I" if region.big else "<I", raw[:4])[0] if len(raw) >= 4 else 0
