"""Bytes → element tables: finds the encoding, runs the scanner, turns its status into an error."""

from __future__ import annotations

import struct
import zlib

from ._lean import record
from . import _core
from .elements import (KIND_ELEMENT, KIND_SEQUENCE, SQ_TAGS, TEXT_VRS, TRANSFER_SYNTAX, Element,
                       dictionary_vr, tag_text)
from .errors import MalformedError

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
DEFLATED_IMAGE_FRAME = "1.2.840.10008.1.2.8.1"  # frames deflated, data set not

_NUMBERS = {"US": "H", "SS": "h", "UL": "I", "SL": "i"}
MAX_DEPTH = 128          # nesting of sequences; deeper input is refused (never a stack overflow)
MAX_INFLATED = 1 << 32   # a deflated data set may not inflate beyond 4 GiB,
INFLATE_RATIO = 1024     # nor beyond 1024 times its deflated size once past INFLATE_FLOOR
INFLATE_FLOOR = 64 << 20


@record(frozen=True, slots=True)
class Limits:
    """How much work one input may cause (run options --max-inflated, --max-inflate-ratio):
    a deflated data set inflates to at most max_inflated bytes, and to at most inflate_ratio
    times its deflated size once past INFLATE_FLOOR."""

    max_inflated: int = MAX_INFLATED
    inflate_ratio: int = INFLATE_RATIO


DEFAULT_LIMITS = Limits()

# VRs pydicom accepts when it guesses explicit VR for a file without meta information.
_KNOWN_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR "
    b"US UT UV".split())

# Native (uncompressed) transfer syntaxes, by name (PS3.5 §10, Annex A); every other one
# encapsulates its Pixel Data.
NATIVE_SYNTAXES = {IMPLICIT_LE: "Implicit VR Little Endian",
                   EXPLICIT_LE: "Explicit VR Little Endian",
                   DEFLATED_LE: "Deflated Explicit VR Little Endian",
                   EXPLICIT_BE: "Explicit VR Big Endian"}

_MESSAGES = {
    _core.SCAN_TRUNCATED_HEADER: "the element header runs past the end of the data",
    _core.SCAN_VALUE_PAST_END: "value length {length:,} runs past the end of the data",
    _core.SCAN_TOO_DEEP: "sequences nested deeper than {limit} levels",
    _core.SCAN_BAD_ITEM: "expected a sequence item (FFFE,E000), found {found}",
    _core.SCAN_NO_DELIMITER: "an undefined-length sequence or item has no delimiter before the "
                             "end of the data",
    _core.SCAN_BAD_UNDEFINED: "undefined length is not allowed for this VR",
    _core.SCAN_STRAY_DELIMITER: "an item delimiter (FFFE,E00D) outside any item",
    _core.SCAN_NO_MEMORY: "out of memory while scanning",
    _core.SCAN_BAD_VR: "unknown value representation '{vr}' (PS3.5 Table 6.2-1)",
    _core.SCAN_REPEATED: "the same element again, right after itself (an attribute occurs once "
                         "in a data set, PS3.5 §7.1)",
    _core.SCAN_HIDDEN_DATA: "a delimiter inside a defined-length item or sequence, with "
                            "{length:,} bytes after it that readers would not see (PS3.5 §7.5)",
}


@record(frozen=True, slots=True)
class Region:
    """One scanned stretch of bytes: a table whose offsets point into buf."""

    buf: object          # bytes-like the offsets refer to
    table: _core.Table
    implicit: bool
    big: bool

    def element(self, index: int) -> Element:
        tag, vr, kind, flags, depth, parent, start, vstart, vlen, end = self.table.row(index)
        if kind == KIND_SEQUENCE:
            vr = "SQ"
        elif not vr or vr == "UN":
            vr = dictionary_vr(tag)     # implicit VR, or UN for a known attribute (PS3.5 §6.2.2)
        return Element(index, tag, vr, kind, flags, depth, parent, start, vstart, vlen, end)

    def elements(self):
        return [self.element(i) for i in range(len(self.table))]

    def value(self, element: Element) -> bytes:
        """The raw value bytes of a non-container element."""
        return bytes(self.buf[element.vstart:element.vstart + min(element.vlen, element.end - element.vstart)])

    def top(self, tag: int) -> Element | None:
        """The top-level element with this tag, or None."""
        index = self.table.find(tag, -1)
        return self.element(index) if index >= 0 else None

    def top_value(self, tag: int) -> bytes | None:
        """The raw value of a top-level element that is not a container; None when absent."""
        element = self.top(tag)
        return self.value(element) if element is not None and element.kind == KIND_ELEMENT else None

    def attribute(self, tag: int) -> str | int | None:
        """A top-level value as text (backslash-joined, padding stripped) or, for US, SS, UL and
        SL, the first number; None when absent or of another VR. What mask rules match on."""
        element = self.top(tag)
        if element is None or element.kind != KIND_ELEMENT:
            return None
        raw = self.value(element)
        code = _NUMBERS.get(element.vr)
        if code is not None:
            if len(raw) < struct.calcsize(code):
                return None
            return struct.unpack_from((">" if self.big else "<") + code, raw)[0]
        if element.vr in TEXT_VRS or element.vr == "UN":
            return raw.decode("latin-1").strip(" \0")
        return None


@record(frozen=True, slots=True)
class Parsed:
    """A whole file: preamble, file meta (if any) and the data set, each with its table."""

    name: str
    source: object              # the input buffer (bytes, memoryview or mmap)
    meta_start: int             # 132 after a preamble, else 0
    meta: Region | None         # file meta information; offsets in source
    dataset_start: int          # where the data set begins in source
    dataset: Region             # offsets in source, or in the inflated bytes when deflated
    transfer_syntax: str | None
    deflated: bool              # the transfer syntax is Deflated: a changed data set is deflated
    stored_plain: bool = False  # ... though this input's data set was not deflated

    def release(self) -> None:
        """Let go of the views parse() made of the input, so that a caller's mmap can close; a
        view still exported (held by a traceback) is left to the garbage collector."""
        for region in (self.meta, self.dataset):
            if region is not None and isinstance(region.buf, memoryview):
                _release_view(region.buf)
        if isinstance(self.source, memoryview):
            _release_view(self.source)


def _release_view(view: memoryview) -> None:
    try:
        view.release()
    except BufferError:
        pass


def looks_like_dicom(head: bytes) -> bool:
    """True for a Part 10 file ('DICM' at 128) or bytes that start with a plausible element.

    >>> looks_like_dicom(bytes(128) + b"DICM"), looks_like_dicom(b"%PDF-1.7 ...")
    (True, False)
    """
    if head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    group_le = head[0] | head[1] << 8
    group_be = head[0] << 8 | head[1]
    return 0x0002 <= group_le <= 0x0030 or 0x0002 <= group_be <= 0x0030


def parse(buf, name: str = "<data>", limits: Limits = DEFAULT_LIMITS) -> Parsed:
    """Scan a DICOM file (or a raw data set, as pydicom's force=True reads it) into tables."""
    view = memoryview(buf).cast("B") if not isinstance(buf, bytes) else buf
    try:
        return _parse(view, name, limits)
    except MalformedError as exc:
        error = exc.with_traceback(None)
    # Out of the except block the traceback's frames, and the views of buf they hold, are gone:
    # release ours too, so that a caller's mmap can close (else BufferError hides this error).
    if isinstance(view, memoryview):
        view.release()
    raise error


def _parse(view, name: str, limits: Limits = DEFAULT_LIMITS) -> Parsed:
    size = len(view)
    if not looks_like_dicom(bytes(view[:132])):
        raise MalformedError(f"{name}: not a DICOM file (no 'DICM' marker at byte 128, "
                             "and the first bytes are not a DICOM element)")
    meta_start = 132 if bytes(view[128:132]) == b"DICM" else 0
    meta = None
    dataset_start = meta_start
    transfer_syntax = None
    if size >= meta_start + 8 and view[meta_start + 1] == 0 and view[meta_start] == 2:
        table = _core.scan(view, meta_start, False, False, SQ_TAGS, MAX_DEPTH, True)
        _raise_status(table, name, "file meta information")
        meta = Region(view, table, False, False)
        dataset_start = table.stop
        transfer_syntax = _meta_transfer_syntax(meta)
    peek = bytes(view[dataset_start:dataset_start + 6])
    implicit, big, deflated = _encoding(transfer_syntax, peek)
    data, start = view, dataset_start
    stored_plain = deflated and _plain_element(peek)    # some writers name Deflated, do not deflate
    if stored_plain:
        data, start = bytes(view[dataset_start:]), 0
    elif deflated:
        data, start = _inflate(view[dataset_start:], name, dataset_start, limits), 0
    table = _core.scan(data, start, implicit, big, SQ_TAGS, MAX_DEPTH, False)
    _raise_status(table, name, "inflated data set" if deflated else "data set")
    return Parsed(name, view, meta_start, meta, dataset_start, Region(data, table, implicit, big),
                  transfer_syntax, deflated, stored_plain)


def _meta_transfer_syntax(meta: Region) -> str | None:
    for index, tag in enumerate(meta.table.tags()):
        if tag == TRANSFER_SYNTAX:
            raw = meta.value(meta.element(index))
            return raw.decode("ascii", "replace").strip("\0 ") or None
    return None


def _encoding(transfer_syntax: str | None, peek: bytes) -> tuple[bool, bool, bool]:
    """(implicit VR, big endian, deflated) for a transfer syntax; guessed without one."""
    if transfer_syntax == IMPLICIT_LE:
        # pydicom's reader, likewise: a data set whose first element has an explicit VR header
        # is read as explicit VR, whatever the meta says (an implicit length would be absurd).
        return not _plain_element(peek), False, False
    if transfer_syntax == EXPLICIT_BE:
        return False, True, False
    if transfer_syntax == DEFLATED_LE:
        return False, False, True
    if transfer_syntax is not None:
        return False, False, False      # every other transfer syntax is explicit VR LE (PS3.5 §10)
    if len(peek) < 6:
        return True, False, False
    if peek[4:6] in _KNOWN_VRS:
        group = peek[0] | peek[1] << 8
        return False, group >= 1024, False
    return True, False, False


def _plain_element(peek: bytes) -> bool:
    """Whether bytes start with an explicit VR LE element of a low group, not deflate output."""
    return len(peek) == 6 and peek[4:6] in _KNOWN_VRS and peek[1] == 0 and 2 <= peek[0] <= 0x30


def _inflate(data, name: str, offset: int, limits: Limits = DEFAULT_LIMITS) -> bytes:
    where = f"{name}: at byte {offset:,}: the deflated data set"
    limit = min(limits.max_inflated, max(INFLATE_FLOOR, limits.inflate_ratio * len(data)))
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)      # raw deflate (RFC 1951, PS3.5 §A.5)
    try:
        out = inflater.decompress(data, limit)
    except zlib.error as exc:
        if len(data) < 2 or data[0] & 0x0F != 8 or ((data[0] << 8) | data[1]) % 31:
            raise MalformedError(f"{where} cannot be inflated ({exc})") from None
        inflater = zlib.decompressobj(zlib.MAX_WBITS)   # some writers add a zlib header (RFC 1950)
        try:
            out = inflater.decompress(data, limit)
        except zlib.error:
            raise MalformedError(f"{where} cannot be inflated ({exc})") from None
    if inflater.unconsumed_tail:
        raise MalformedError(f"{where} ({len(data):,} bytes) inflates beyond {limit:,} bytes "
                             f"(at most {limits.inflate_ratio} times its size past "
                             f"{INFLATE_FLOOR >> 20} MiB, {limits.max_inflated:,} bytes in all: "
                             "--max-inflate-ratio, --max-inflated)")
    if not inflater.eof:
        # zlib returns what a cut stream holds without complaint: a truncated file.
        raise MalformedError(f"{where} ends before its end marker (the file is truncated)")
    return out


def _raise_status(table: _core.Table, name: str, where: str) -> None:
    if table.status == _core.SCAN_OK:
        return
    message = _MESSAGES.get(table.status, "unreadable data (status {status})").format(
        length=table.err_len, limit=MAX_DEPTH, found=tag_text(table.err_tag), status=table.status,
        vr=chr(table.err_len >> 8 & 0x7F) + chr(table.err_len & 0x7F))
    tag = f"{tag_text(table.err_tag)} " if table.err_tag else ""
    raise MalformedError(f"{name}: {tag}at byte {table.err_pos:,} of the {where}: {message}")

