"""Check: what of an input can still be found in its output.

`check_pair(input, output)` collects the input's identifying values at every depth, file meta
included (the attributes of the patient identity, contact, staff, institution, device and UID
categories, every person name and its components, the text of private elements), skipping the
attributes the policy keeps as they are, and searches the output's bytes for each in every
encoding that could hold it (the input's bytes, UTF-8, upper and lower case; a deflated data
set inflated). A hit (a whole word: no letter or digit beside it) is a finding naming the
input attribute, the output element that holds it, and whether it is the same attribute
(survived) or another one (echo; for private values, only the private element itself counts:
their words elsewhere are seldom an identity); hits inside Pixel Data count only for long
values. It also checks that the output reads, that its file meta names its SOP Instance and
Class, that its UIDs are valid (PS3.5 9.1), and that Pixel Data changed only
where the output says its pixels were cleaned. A `Checker` does this for the pairs of a run and
checks that the old → new UID map is a function and one-to-one across all of them.

The checker is its own oracle: it reuses the scanner to read files, nothing of the run's
decisions. No finding carries the value it found (the report is kept beside the data).
"""

from __future__ import annotations

import mmap
import os
import re
from bisect import bisect_right
from itertools import islice
from typing import NamedTuple

from ._lean import field, record
from .categories import category_of, sensitive_tags
from .charsets import Charset
from .elements import (KIND_ELEMENT, KIND_FRAGMENTS, KIND_ITEM, MEDIA_SOP_CLASS,
                       MEDIA_SOP_INSTANCE, PIXEL_DATA, SOP_CLASS, SOP_INSTANCE, dictionary_vr,
                       is_private, is_private_creator, keyword, tag_text)
from .errors import FastanonError
from .policy import as_policy
from .scan import parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

MIN_NEEDLE = 4              # shorter values are too common to search for
PIXEL_NEEDLE = 12           # inside Pixel Data, only values this long count
IDENTIFYING = frozenset({"patient identity", "contact", "staff", "institution", "device",
                         "uids"})
TEXT_VRS = frozenset({"AE", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UT",
                      "UI", "UR", "IS", "DS"})
PRIVATE_TEXT_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
WELL_KNOWN = "1.2.840.10008."           # SOP classes, transfer syntaxes, coding schemes
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
CLEAN_PIXEL_DATA = b"113101"            # CID 7050: Clean Pixel Data Option
# Code Value, Coding Scheme Designator and Version, Long and URN Code Value (PS3.3 8.8): a part
# of a name found inside one of them is a word of a code, not the person.
CODE_TAGS = frozenset({0x00080100, 0x00080102, 0x00080103, 0x00080119, 0x00080120})


@record
class Finding:
    """One thing found: kind (survived, echo, in-pixels, unreadable, meta, invalid-uid,
    uid-map, pixels-changed, text-in-pixels, text-unchecked), the input attribute and the
    output element it concerns."""

    kind: str
    input_path: str = ""
    output_path: str = ""
    category: str = ""
    detail: str = ""

    def fields(self) -> tuple[str, str, str, str, str]:
        return (self.kind, self.input_path, self.output_path, self.category, self.detail)

    def as_dict(self) -> dict:
        names = ("kind", "input_path", "output_path", "category", "detail")
        return {k: v for k, v in zip(names, self.fields()) if v}

    def __str__(self) -> str:
        where = " -> ".join(p for p in (self.input_path, self.output_path) if p)
        text = f"{self.kind}: {where}" if where else self.kind
        if self.category:
            text += f" ({self.category})"
        return f"{text}: {self.detail}" if self.detail else text


@record
class PairReport:
    input: str
    output: str
    findings: list = field(factory=list)
    uids: dict = field(factory=dict)       # old UID -> (new UID, path)

    def as_dict(self) -> dict:
        return {"input": self.input, "output": self.output,
                "findings": [f.as_dict() for f in self.findings]}


class _Side:
    """One file of a pair: its regions (file meta, data set) and their table rows; element
    paths (inspect's form: "SourceImageSequence[0].ReferencedSOPInstanceUID") built only for
    the elements a finding names."""

    def __init__(self, parsed):
        self.parsed = parsed
        self.regions = ([parsed.meta] if parsed.meta is not None else []) + [parsed.dataset]
        self.rows = [region.table.rows() for region in self.regions]
        self._paths: list[dict] = [{} for _ in self.regions]
        self._items: list[dict | None] = [None for _ in self.regions]

    def elements(self):
        """(region number, index, tag, vr, row) of every element with a value, the VR as the
        scanner reads it (the dictionary's for implicit VR and UN)."""
        for number, rows in enumerate(self.rows):
            for index, row in enumerate(rows):
                if row[2] != KIND_ELEMENT:
                    continue
                vr = row[1]
                if not vr or vr == "UN":
                    vr = dictionary_vr(row[0])
                yield number, index, row[0], vr, row

    def value(self, number: int, row) -> bytes:
        vstart = row[7]
        return bytes(self.regions[number].buf[vstart:vstart + min(row[8], row[9] - vstart)])

    def path(self, number: int, index: int) -> str:
        paths = self._paths[number]
        found = paths.get(index)
        if found is not None:
            return found
        rows = self.rows[number]
        tag, _, kind, _, _, parent = rows[index][:6]
        if kind == KIND_ITEM:
            items = self._items[number]
            if items is None:
                items = self._items[number] = _item_numbers(rows)
            path = f"{self.path(number, parent)}[{items[index]}]"
        else:
            name = keyword(tag) or tag_text(tag)
            path = f"{self.path(number, parent)}.{name}" if parent >= 0 else name
        paths[index] = path
        return path


def _item_numbers(rows) -> dict[int, int]:
    """The number of each item in its sequence (from 0)."""
    seen: dict[int, int] = {}
    numbers = {}
    for index, row in enumerate(rows):
        if row[2] == KIND_ITEM:
            numbers[index] = seen.get(row[5], 0)
            seen[row[5]] = numbers[index] + 1
    return numbers


def _charset(parsed) -> Charset:
    raw = parsed.dataset.top_value(0x00080005)
    return Charset.of(raw.decode("ascii", "replace") if raw else "")


def _needles(side: _Side, policy) -> list[tuple[bytes, int, int, str, bool, bool]]:
    """(bytes to look for, region number, index, category, part of a name, all bytes of text)
    of the input's identifying values. What is decided of an attribute (its category, or not searched) and
    the forms of a value are kept for the next file (a study's files share most values)."""
    charset = _charset(side.parsed)
    decided = _decisions(policy)
    formed = _FORMED
    if len(formed) > 8192:
        formed.clear()
    out, seen = [], set()
    for number, index, tag, vr, row in side.elements():
        category = decided.get((tag, vr), "")
        if category == "":
            category = decided[(tag, vr)] = _decide(tag, vr, policy)
        if category is None:
            continue
        raw = side.value(number, row)
        key = (charset.terms, vr, category == "private tags", raw)
        forms = formed.get(key)
        if forms is None:
            forms = formed[key] = _value_forms(charset, vr, category == "private tags", raw)
        for form, part, text in forms:
            if (form, number, index) not in seen:
                seen.add((form, number, index))
                out.append((form, number, index, category, part, text))
    return out


_DECIDED: dict[int, tuple] = {}     # id(policy) -> (policy, {(tag, vr): category or None})
_FORMED: dict[tuple, list] = {}     # (character set, vr, private, raw value) -> forms


def _decisions(policy) -> dict:
    """What is decided of each attribute under policy (held with it: an id is not reused
    while its object is held here)."""
    held = _DECIDED.get(id(policy))
    if held is None or held[0] is not policy:
        if len(_DECIDED) >= 8:
            _DECIDED.clear()
        held = _DECIDED[id(policy)] = (policy, {})
    return held[1]


def _decide(tag: int, vr: str, policy) -> str | None:
    """The category an attribute's values are searched under, or None (not searched)."""
    if vr not in TEXT_VRS:
        return None
    private = is_private(tag) and not is_private_creator(tag)
    category = "private tags" if private else category_of(tag, vr)
    if vr == "PN" and category is None:
        category = "staff"
    if private and vr not in PRIVATE_TEXT_VRS:
        return None                     # numbers and codes of a private block: no identity
    if category not in IDENTIFYING and category != "private tags":
        return None
    if category == "uids" and not private and tag not in sensitive_tags():
        return None                     # a class or implementation UID, not an instance's
    if policy is not None and policy.action_for(tag).name == "keep":
        return None                     # the policy keeps it: not something to find
    return category


def _value_forms(charset: Charset, vr: str, private: bool, raw: bytes
                 ) -> list[tuple[bytes, bool, bool]]:
    """(bytes, whether it is one part of a person name, whether all its bytes are of text) of
    each form a value could be found in: each value of it (and each part of a name), as
    encoded, upper and lower case."""
    text = charset.decode(raw).strip("\0 ")
    values = [v.strip() for v in text.split("\\")]
    whole = len(values)
    if vr == "PN":                      # the name and each of its parts
        values += [part.strip() for v in values for group in v.split("=")
                   for part in group.split("^")]
    out, seen = [], set()
    for count, value in enumerate(values):
        if vr == "UI" and value.startswith(WELL_KNOWN):
            continue
        if private and not any(c.isalpha() for c in value):
            continue
        for form in _forms(value, charset):
            if len(form) >= MIN_NEEDLE and form not in seen:
                seen.add(form)
                out.append((form, count >= whole, not form.translate(None, _TEXT_BYTES)))
    return out


def _forms(value: str, charset: Charset) -> set[bytes]:
    forms = set()
    for text in {value, value.upper(), value.lower()}:
        try:
            forms.add(charset.encode(text))
        except (UnicodeError, LookupError, ValueError):
            pass
        forms.add(text.encode("utf-8"))
    return forms


def check_pair(input_data, output_data, input_name: str = "<input>",
               output_name: str = "<output>", policy="research") -> PairReport:
    """The findings of one input and its output (bytes-like)."""
    report = PairReport(input_name, output_name)
    policy = as_policy(policy) if policy is not None else None
    try:
        before = parse(input_data, input_name)
    except FastanonError as exc:
        report.findings.append(Finding("unreadable-input", detail=str(exc)))
        return report
    try:
        after = parse(output_data, output_name)
    except FastanonError as exc:
        report.findings.append(Finding("unreadable", detail=str(exc)))
        return report
    try:
        _search(before, after, policy, report)
    finally:
        before.release()
        after.release()
    return report


def _search(before, after, policy, report: PairReport) -> None:
    old, new = _Side(before), _Side(after)
    spans = _spans(new)
    searched = _needles(old, policy)
    spans["longest"] = max((len(n[0]) for n in searched), default=0)
    found = set()
    for needle, number, index, category, part, text in searched:
        for buf_index, buf in enumerate(spans["buffers"]):
            for low, high in _windows(spans, buf_index, len(needle), text):
                start = buf.find(needle, low, high)
                while start >= 0:
                    where = _holder(spans, buf_index, start)
                    if where is not None and _word(buf, start, len(needle), *where[4:]):
                        out_number, out_index, pixels, tag = where[:4]
                        path = old.path(number, index)
                        out_path = new.path(out_number, out_index)
                        kind = "in-pixels" if pixels else (
                            "survived" if out_path == path else "echo")
                        if kind != "survived" and category == "private tags":
                            pass        # a private block's words elsewhere: not an identity
                        elif kind == "echo" and part and tag in CODE_TAGS:
                            pass        # one part of a name inside a code ("FAKE-BENCH")
                        elif (kind, path, out_path) not in found:
                            found.add((kind, path, out_path))
                            report.findings.append(Finding(kind, path, out_path, category))
                    start = buf.find(needle, start + 1, high)
    _check_meta(after, report)
    _check_uids(old, new, report)
    _check_pixels(before, after, report)


_ALNUM = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def _word(buf: bytes, start: int, size: int, low: int, high: int) -> bool:
    """Whether the hit at start is a whole word of the value buf[low:high]: no ASCII letter or
    digit of the value right before or after it ("FAKE" of a name is not in "FAKECORP", UID
    1.2.3 not in 1.2.34)."""
    if start + size > high:
        return False                # runs on past the value: header bytes, not a value
    return (start == low or buf[start - 1] not in _ALNUM) and \
        (start + size == high or buf[start + size] not in _ALNUM)


def _spans(side: _Side) -> dict:
    """The output's searchable buffers; per buffer, the value ranges of its elements and the
    range of its Pixel Data (searched for long values only)."""
    parsed = side.parsed
    source = _searchable(parsed.source)
    data_buf = bytes(parsed.dataset.buf) if parsed.deflated else None
    ranges: list[list] = [[], []]
    meta = len(side.regions) - 1            # 1 when there is file meta, else 0
    for number, rows in enumerate(side.rows):
        into = ranges[0 if number < meta else 1]
        for index, (tag, _, kind, _, depth, _, _, vstart, vlen, end) in enumerate(rows):
            if kind == KIND_ELEMENT or kind == KIND_FRAGMENTS:
                into.append((vstart, end if kind == KIND_FRAGMENTS else vstart + vlen, number,
                             index, tag == PIXEL_DATA and depth == 0, tag))
    if data_buf is None:            # the data set lies in the source after the meta
        buffers, ranges = [source], [sorted(ranges[0] + ranges[1])]
    else:
        meta_buf = source[:parsed.dataset_start] if parsed.meta is not None else b""
        buffers, ranges = [meta_buf, data_buf], [sorted(ranges[0]), sorted(ranges[1])]
    pixels = [next(((r[0], r[1]) for r in each if r[4]), None) for each in ranges]
    return {"buffers": buffers, "ranges": ranges, "pixels": pixels, "windows": {}, "blocks": {},
            "starts": [[r[0] for r in each] for each in ranges]}


def _windows(spans, buf_index: int, size: int, text: bool) -> list[tuple[int, int]]:
    """The stretches of a buffer a value of size bytes is looked for in: all of it but the
    Pixel Data for a short value; for a long one, also the parts of the Pixel Data where it
    could be (see _text_runs; all of it for a value with other bytes than those of text, a
    line break say)."""
    buf, pixels = spans["buffers"][buf_index], spans["pixels"][buf_index]
    if pixels is None:
        return [(0, len(buf))]
    start, end = pixels
    outside = [(0, start), (end, len(buf))]
    if size < PIXEL_NEEDLE:
        return outside
    if not text:
        return outside + [(start, end)]
    windows = spans["windows"].get(buf_index)
    if windows is None:
        windows = spans["windows"][buf_index] = _text_runs(
            _text_blocks(buf, start, end), start, end, spans["longest"])
    return outside + windows


_STRIDE = PIXEL_NEEDLE      # any PIXEL_NEEDLE bytes in a row hold one byte of each residue
_TEXT_BYTES = bytes([0x0E, 0x0F, 0x1B, *range(0x20, 0x100)])     # SO, SI, ESC: ISO 2022
_IS_TEXT = bytes(1 if b in _TEXT_BYTES else 0 for b in range(256))


def _text_blocks(buf: bytes, start: int, end: int):
    """Where in buf[start:end] a long value of text (bytes of _TEXT_BYTES) could be: the offsets
    from start of the bytes of text among every _STRIDE-th byte from the second (PIXEL_NEEDLE
    bytes in a row hold one of them, so a value that long holds one); None when there are many
    (8-bit samples: search all of it) or the Pixel Data is short. In little-endian 16-bit
    samples they are all high bytes, seldom text, so the search skips nearly all of the Pixel
    Data at the cost of one pass over a twelfth of its bytes."""
    if end - start <= _SMALL:
        return None
    sampled = buf[start + 1:end:_STRIDE].translate(_IS_TEXT)
    found, at = [], sampled.find(b"\1")
    while at >= 0:
        found.append(1 + at * _STRIDE)
        if len(found) > _PAIRS:
            return None
        at = sampled.find(b"\1", at + 1)
    return found


def _text_runs(blocks, start: int, end: int, size: int) -> list[tuple[int, int]]:
    """The stretches of the Pixel Data buf[start:end] that may hold a value of up to size bytes
    of text: around each byte of text _text_blocks found (all of it when it is short)."""
    if blocks is None:
        return [(start, end)]
    runs: list[tuple[int, int]] = []
    for offset in blocks:
        low, high = max(start, start + offset - size), min(end, start + offset + size)
        if runs and low <= runs[-1][1] + _GAP:      # one search over a short gap costs less
            runs[-1] = (runs[-1][0], max(high, runs[-1][1]))
        else:
            if len(runs) == _RUNS:
                return [(start, end)]
            runs.append((low, high))
    return runs


_GAP = 4096                 # bytes between two stretches that are searched as one
_SMALL = 1 << 16            # Pixel Data this short is searched whole
_RUNS = 16                  # stretches beyond which all of the Pixel Data is searched
_PAIRS = 1024               # sampled bytes of text beyond which too


def _holder(spans, buf_index: int, offset: int):
    """(region number, index, inside Pixel Data, tag, value start, value end) of the value that
    holds offset, or None (a header). Values do not overlap: the last one starting at or before
    offset is the only one that can hold it."""
    ranges = spans["ranges"][buf_index]
    at = bisect_right(spans["starts"][buf_index], offset) - 1
    if at < 0:
        return None
    start, end, number, index, pixels, tag = ranges[at]
    return (number, index, pixels, tag, start, end) if offset < end else None


def _check_meta(parsed, report: PairReport) -> None:
    if parsed.meta is None:
        return
    for media, own, label in ((MEDIA_SOP_INSTANCE, SOP_INSTANCE, "SOP Instance UID"),
                              (MEDIA_SOP_CLASS, SOP_CLASS, "SOP Class UID")):
        a, b = parsed.meta.top_value(media), parsed.dataset.top_value(own)
        if a is not None and b is not None and a.rstrip(b"\0 ") != b.rstrip(b"\0 "):
            report.findings.append(Finding("meta", f"file meta {label}", label,
                                           detail="the file meta and the data set disagree"))


def _check_uids(old_side: _Side, new_side: _Side, report: PairReport) -> None:
    old = {}
    for number, index, _, vr, row in old_side.elements():
        if vr == "UI":
            old[old_side.path(number, index)] = old_side.value(number, row).decode(
                "ascii", "replace").strip("\0 ")
    for number, index, _, vr, row in new_side.elements():
        if vr != "UI":
            continue
        path = new_side.path(number, index)
        text = new_side.value(number, row).decode("ascii", "replace").strip("\0 ")
        for value in text.split("\\"):
            if value and (len(value) > 64 or not _UID.fullmatch(value)):
                report.findings.append(Finding("invalid-uid", output_path=path,
                                               detail="not a valid UID (PS3.5 9.1)"))
        if path in old and old[path] != text and not text.startswith(WELL_KNOWN):
            report.uids[old[path]] = (text, path)


def _check_pixels(before, after, report: PairReport) -> None:
    a, b = before.dataset.top(PIXEL_DATA), after.dataset.top(PIXEL_DATA)
    if a is None or b is None:
        return
    if a.end - a.vstart == b.end - b.vstart and _same(_searchable(before.dataset.buf), a.vstart,
                                                      after.dataset.buf, b.vstart, b.end):
        return                      # the same bytes
    codes = after.dataset.top(0x00120064)          # De-identification Method Code Sequence
    cleaned = codes is not None and CLEAN_PIXEL_DATA in bytes(after.dataset.buf[codes.vstart:
                                                                                 codes.end])
    if not cleaned:
        report.findings.append(Finding("pixels-changed", "PixelData", "PixelData",
                                       detail="the Pixel Data differs and the output does not "
                                              "say its pixels were cleaned (code 113101)"))


def _searchable(buf):
    """The bytes or mmap a whole-buffer view stands for (searched where they lie, not copied);
    anything else as bytes."""
    if isinstance(buf, (bytes, mmap.mmap)):
        return buf
    if isinstance(buf, memoryview) and isinstance(buf.obj, (bytes, mmap.mmap)) and \
            buf.nbytes == len(buf.obj):
        return buf.obj
    return bytes(buf)


def _same(first, at: int, second, start: int, end: int) -> bool:
    """Whether first[at:] begins with second[start:end], compared in place (bytes or mmap)."""
    with memoryview(second) as whole, whole[start:end] as part:
        if isinstance(first, bytes):
            return first.startswith(part, at)
        if isinstance(first, mmap.mmap):
            return first.find(part, at, at + (end - start)) == at
        return bytes(first[at:at + (end - start)]) == part


def text_findings(output_data, output_name: str, frames: str = "sample") -> list[Finding]:
    """Text the detector still reads in an output's pixels (text.py; the ocr extra), each box
    named by where it is, not by what it says; pixels that cannot be decoded here are a finding
    too (they could not be looked at)."""
    from .text import Unreadable, detect

    try:
        boxes = detect(output_data, output_name, frames)
    except Unreadable as exc:
        return [Finding("text-unchecked", output_path="PixelData", detail=str(exc))]
    return [Finding("text-in-pixels", output_path="PixelData", detail=box.where())
            for box in boxes]


class Checker:
    """The pairs of a run: each checked, and the old → new UID map over all of them. With
    detect_text, each output's pixels are looked at for text too."""

    def __init__(self, policy="research", detect_text: bool = False):
        self.detect_text = detect_text
        self.policy = as_policy(policy) if policy is not None else None
        self._forward: dict[str, tuple[str, str, str]] = {}     # old -> (new, path, output)
        self._backward: dict[str, tuple[str, str]] = {}         # new -> (old, output)

    def check(self, input_data, output_data, input_name: str, output_name: str) -> PairReport:
        report = self.look(input_data, output_data, input_name, output_name)
        self.mapped(report)
        return report

    def look(self, input_data, output_data, input_name: str, output_name: str) -> PairReport:
        """The findings of one pair on its own (what a worker does)."""
        report = check_pair(input_data, output_data, input_name, output_name, self.policy)
        if self.detect_text:
            report.findings += text_findings(output_data, output_name)
        return report

    def mapped(self, report: PairReport) -> None:
        """Add to report what its UIDs say of the map over the pairs seen so far (in order)."""
        for old, (new, path) in report.uids.items():
            seen = self._forward.setdefault(old, (new, path, report.output))
            back = self._backward.setdefault(new, (old, report.output))
            for wrong, words in ((seen[0] != new, f"the same UID became another one in "
                                                  f"{seen[2]} ({seen[1]}): not a function"),
                                 (back[0] != old, f"two UIDs became the same one (the other "
                                                  f"in {back[1]}): not one-to-one")):
                if wrong:
                    report.findings.append(Finding("uid-map", path, path, detail=words))


class Checked(NamedTuple):
    """One pair of check_files: status "checked" (with its report), "no-output" (the run did
    not write one: skipped or refused), "unreadable" (the input cannot be read; reason says
    why) or "skipped" (the input is no DICOM file)."""

    input: str
    output: str
    status: str
    size: int = 0
    reason: str = ""
    report: PairReport | None = None


WORKER_CHUNK = 4            # pairs per message to a worker
WORKER_WINDOW = 16          # messages a worker may be ahead of the pair the caller waits for


def check_files(found: Iterable[tuple[str, str]], checker: Checker, workers: int = 1
                ) -> Iterator[Checked]:
    """Each (input path, output path) checked, in order, as it is done (a tree of any size is
    never held): in this process, or in forked workers (Linux) after the first pair (which
    warms the policy's caches they inherit). The UID map is kept here, over all the pairs."""
    from itertools import chain

    items = iter(found)
    first = next(items, None)
    if first is None:
        return
    yield _mapped(checker, _read_and_check(checker, *first))
    if workers <= 1 or not hasattr(os, "fork"):
        for pair in items:
            yield _mapped(checker, _read_and_check(checker, *pair))
        return
    head = list(islice(items, workers))
    if len(head) < workers:
        for pair in head:
            yield _mapped(checker, _read_and_check(checker, *pair))
        return
    from .workers import Lost, chunked, ordered

    def work(chunk: list) -> list:
        return [_as_fields(_read_and_check(checker, source, output)) for source, output in chunk]

    chunks = chunked(chain(head, items), WORKER_CHUNK)
    try:
        for done in ordered(workers, work, chunks, workers * WORKER_WINDOW):
            for fields in done:
                yield _mapped(checker, _from_fields(fields))
    except Lost as exc:
        raise FastanonError(f"a check worker ended before it answered ({exc}); nothing it "
                            "held was reported: run the check again") from None


def _mapped(checker: Checker, checked: Checked) -> Checked:
    if checked.report is not None:
        checker.mapped(checked.report)
    return checked


def _read_and_check(checker: Checker, source: str, output: str) -> Checked:
    """One pair opened as a run opens its inputs (read whole when small, mapped when larger:
    pipeline.open_source) and checked; never raises for what is in the files."""
    from .pipeline import open_source

    try:
        with open_source(source) as inputs:
            return _check_opened(checker, source, output, inputs)
    except FastanonError as exc:            # the input cannot be opened (what is in it is
        return Checked(source, output, "unreadable", reason=str(exc))   # a finding, below)


def _check_opened(checker: Checker, source: str, output: str, inputs) -> Checked:
    from contextlib import ExitStack

    from .pipeline import open_source
    from .scan import looks_like_dicom

    data = inputs.data
    if data is None or not inputs.size or not looks_like_dicom(bytes(data[:132 + 16])):
        return Checked(source, output, "skipped", inputs.size)
    with ExitStack() as stack:
        try:
            outputs = stack.enter_context(open_source(output))
        except FastanonError:                       # not written: skipped or refused by the run
            return Checked(source, output, "no-output", inputs.size)
        if outputs.data is None:
            return Checked(source, output, "no-output", inputs.size)
        try:
            report = checker.look(data, outputs.data, source, output)
        except FastanonError as exc:        # e.g. the detector's Unreadable outside frames
            report = PairReport(source, output, [Finding("unreadable", detail=str(exc))])
    return Checked(source, output, "checked", inputs.size, report=report)


def _as_fields(checked: Checked) -> tuple:
    """A Checked as plain values (marshal: what goes back from a worker)."""
    report = checked.report
    if report is None:
        return tuple(checked[:5]) + (None,)
    return tuple(checked[:5]) + ((
        [f.fields() for f in report.findings],
        [(old, new, path) for old, (new, path) in report.uids.items()]),)


def _from_fields(fields: tuple) -> Checked:
    *head, body = fields
    if body is None:
        return Checked(*head)
    findings, uids = body
    report = PairReport(head[0], head[1], [Finding(*f) for f in findings],
                        {old: (new, path) for old, new, path in uids})
    return Checked(*head, report=report)
