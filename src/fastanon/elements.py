"""Shared vocabulary: tags as ints, VR sets, dictionary lookups, and Element (offsets, not values)."""

from __future__ import annotations

import sys
from bisect import bisect_left
from operator import itemgetter

from . import _dictionary
from ._lean import Pattern, memo, packed
from .errors import UnknownTagError
from ._core import (  # noqa: F401  (re-exported vocabulary)
    FLAG_BIG,
    FLAG_IMPLICIT,
    FLAG_LONG,
    FLAG_OPEN,
    FLAG_SWITCHED,
    FLAG_UNDEFINED,
    KIND_ELEMENT,
    KIND_FRAGMENTS,
    KIND_ITEM,
    KIND_SEQUENCE,
)

# PS3.5 Table 6.2-1, grouped by how a value is written.
TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM",
                      "UC", "UR", "UT", "UI"})
BINARY_NUMBER_VRS = {"US": ("H", 2), "SS": ("h", 2), "UL": ("I", 4), "SL": ("i", 4), "FL": ("f", 4),
                     "FD": ("d", 8), "UV": ("Q", 8), "SV": ("q", 8), "AT": ("HH", 4)}
BYTES_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
# Explicit VR headers with 2 reserved bytes and a 32-bit length (PS3.5 Table 7.1-1).
LONG_HEADER_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT",
                             "UV"})

ITEM = 0xFFFEE000
ITEM_END = 0xFFFEE00D
SEQUENCE_END = 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010
EXTENDED_OFFSET_TABLE = 0x7FE00001          # and its lengths: where each frame's fragments are
EXTENDED_OFFSET_TABLE_LENGTHS = 0x7FE00002
TRANSFER_SYNTAX = 0x00020010
MEDIA_SOP_CLASS = 0x00020002
MEDIA_SOP_INSTANCE = 0x00020003
SOP_CLASS = 0x00080016
SOP_INSTANCE = 0x00080018
SPECIFIC_CHARACTER_SET = 0x00080005
DIRECTORY_RECORDS = 0x00041220      # DirectoryRecordSequence: the data set is a DICOMDIR (PS3.3 F.5)

# fastanon's implementation class UID (PS3.10 §7.1), under the 2.25 UUID arc (PS3.5 §B.2).
FASTANON_UID = "2.25.181633216785009617315467106530306958121"

# The dictionary's tags as a sequence of ints, for bisect (native 32-bit, read in place).
_TAGS = memoryview(_dictionary.TAGS if sys.byteorder == "little" else
                   b"".join(_dictionary.TAGS[i:i + 4][::-1]
                            for i in range(0, len(_dictionary.TAGS), 4))).cast("I")
_COUNT = len(_TAGS)


def _sq_tags() -> memoryview:
    vrs, found, at = _dictionary.VRS, [], _dictionary.VRS.find("SQ")
    while at >= 0:
        if at % 2 == 0:
            found.append(_TAGS[at // 2])
        at = vrs.find("SQ", at + 1)
    return packed("I", found)


# Sorted SQ tags for the scanner's implicit VR decisions (PS3.5 §7.5, Annex A.1).
SQ_TAGS = _sq_tags()


try:                      # the C accessor collections.namedtuple uses, without collections
    from _collections import _tuplegetter

    def _field(index: int):
        return _tuplegetter(index, None)
except ImportError:
    def _field(index: int):
        return property(itemgetter(index))


class Element(tuple):
    """One entry of a scanned table: where the element lies, not what it holds. A tuple of
    (index, tag, vr, kind, flags, depth, parent, start, vstart, vlen, end), with those names
    (as a named tuple, without the collections module on the run path)."""

    __slots__ = ()
    _fields = ("index", "tag", "vr", "kind", "flags", "depth", "parent", "start", "vstart",
               "vlen", "end")

    def __new__(cls, index: int, tag: int, vr: str, kind: int, flags: int, depth: int,
                parent: int, start: int, vstart: int, vlen: int, end: int):
        return tuple.__new__(cls, (index, tag, vr, kind, flags, depth, parent, start, vstart,
                                   vlen, end))

    def __repr__(self) -> str:
        return "Element(" + ", ".join(f"{n}={v!r}" for n, v in zip(self._fields, self)) + ")"

    index = _field(0)
    tag = _field(1)
    vr = _field(2)        # from the header; the dictionary's for implicit VR ("UN")
    kind = _field(3)      # KIND_ELEMENT, KIND_SEQUENCE, KIND_ITEM or KIND_FRAGMENTS
    flags = _field(4)
    depth = _field(5)
    parent = _field(6)    # index of the enclosing item (or sequence); -1 at the top
    start = _field(7)     # header offset
    vstart = _field(8)    # value offset
    vlen = _field(9)      # declared value length (0xFFFFFFFF: undefined)
    end = _field(10)      # offset after the value, its items and delimiter

    @property
    def undefined(self) -> bool:
        return bool(self.flags & FLAG_UNDEFINED)

    @property
    def length_offset(self) -> int:
        """Offset of the 4-byte length field of this element's header."""
        return length_offset(self.kind, self.flags, self.start)


def length_offset(kind: int, flags: int, start: int) -> int:
    """Offset of the 4-byte length field of an element's header at start: items and implicit VR
    headers after the tag, explicit VR after the VR and 2 reserved bytes or after the VR (PS3.5
    §7.1.2, §7.5). The 2-byte length of a short explicit header is at start + 6 as well."""
    if kind == KIND_ITEM or flags & FLAG_IMPLICIT:
        return start + 4
    return start + 8 if flags & FLAG_LONG else start + 6


def is_private(tag: int) -> bool:
    """Any odd group (PS3.5 §7.8.1). Groups 0001-0007 and FFFF "shall not be used": what a file
    holds there is treated as private (as pydicom does), so that a policy removing private tags
    removes it too."""
    return bool((tag >> 16) & 1)


def is_private_creator(tag: int) -> bool:
    return is_private(tag) and 0x0010 <= (tag & 0xFFFF) <= 0x00FF


_KEYWORDS: list = []      # the keywords, split on first use


@memo(maxsize=1 << 16)        # files choose the tags looked up: memory stays bounded
def dictionary_entry(tag: int) -> tuple[str, str] | None:
    """(VR, keyword) of a standard or repeating-group tag; None when unknown (the tables are
    searched once a tag)."""
    at = bisect_left(_TAGS, tag)
    if at < _COUNT and _TAGS[at] == tag:
        if not _KEYWORDS:
            _KEYWORDS.extend(_dictionary.KEYWORDS_TEXT.split("\n"))
        vr = _dictionary.VRS[2 * at:2 * at + 2]
        return "NONE" if vr == "--" else vr, _KEYWORDS[at]
    if not is_private(tag):
        for mask, value, vr, keyword in _dictionary.REPEATERS:
            if tag & mask == value:
                return vr, keyword
    if tag & 0xFFFF == 0:
        return "UL", "GroupLength"
    if is_private_creator(tag):
        return "LO", "PrivateCreator"
    return None


def dictionary_vr(tag: int) -> str:
    entry = dictionary_entry(tag)
    return entry[0] if entry else "UN"


def keyword(tag: int) -> str:
    entry = dictionary_entry(tag)
    return entry[1] if entry else ""


_TAG_TEXT = Pattern(r"^\(?\s*([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})\s*\)?$")
_TAG_NUMBER = Pattern(r"(0x)?[0-9A-Fa-f]{8}")


def parse_tag(key: int | str | tuple[int, int]) -> int:
    """A tag as an int, from an int, a (group, element) pair, "(gggg,eeee)", "ggggeeee" or a keyword.

    >>> hex(parse_tag("PatientName")), hex(parse_tag("(0008,0080)")), hex(parse_tag((0x10, 0x20)))
    ('0x100010', '0x80080', '0x100020')
    """
    if isinstance(key, int) and not isinstance(key, bool) and 0 <= key <= 0xFFFFFFFF:
        return key
    if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, int) for k in key):
        return (key[0] << 16) | key[1]
    if isinstance(key, str):
        text = key.strip()
        match = _TAG_TEXT.match(text)
        if match:
            return int(match.group(1) + match.group(2), 16)
        if _TAG_NUMBER.fullmatch(text):
            return int(text, 16)
        if text in _dictionary.KEYWORDS:
            return _dictionary.KEYWORDS[text]
    raise UnknownTagError(f"not a DICOM tag or keyword: {key!r}")


def tag_text(tag: int) -> str:
    """'(GGGG,EEEE)', as the standard writes tags."""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
