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

import re
from bisect import bisect_right
from dataclasses import dataclass, field

from .categories import category_of, sensitive_tags
from .charsets import Charset
from .elements import (KIND_ELEMENT, KIND_FRAGMENTS, MEDIA_SOP_CLASS, MEDIA_SOP_INSTANCE,
                       PIXEL_DATA, SOP_CLASS, SOP_INSTANCE, is_private, is_private_creator)
from .errors import FastanonError
from .policy import as_policy
from .scan import parse

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


@dataclass
class Finding:
    """One thing found: kind (survived, echo, in-pixels, unreadable, meta, invalid-uid,
    uid-map, pixels-changed, text-in-pixels, text-unchecked), the input attribute and the
    output element it concerns."""

    kind: str
    input_path: str = ""
    output_path: str = ""
    category: str = ""
    detail: str = ""

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v}

    def __str__(self) -> str:
        where = " -> ".join(p for p in (self.input_path, self.output_path) if p)
        text = f"{self.kind}: {where}" if where else self.kind
        if self.category:
            text += f" ({self.category})"
        return f"{text}: {self.detail}" if self.detail else text


@dataclass
class PairReport:
    input: str
    output: str
    findings: list[Finding] = field(default_factory=list)
    uids: dict = field(default_factory=dict)       # old UID -> new UID, by path

    def as_dict(self) -> dict:
        return {"input": self.input, "output": self.output,
                "findings": [f.as_dict() for f in self.findings]}


def _elements(parsed):
    """(element, path, region) of every element, file meta first (inspect's paths); the
    region's buffer is what the element's offsets index."""
    from .inspect import walk

    for element, path, _, _, context in walk(parsed):
        yield element, path, context.region


def _charset(parsed) -> Charset:
    raw = parsed.dataset.top_value(0x00080005)
    return Charset.of(raw.decode("ascii", "replace") if raw else "")


def needles(parsed, policy) -> list[tuple[bytes, str, str]]:
    """(bytes to look for, input path, category) of the input's identifying values."""
    charset = _charset(parsed)
    out, seen = [], set()
    for element, path, region in _elements(parsed):
        if element.kind != KIND_ELEMENT or element.vr not in TEXT_VRS:
            continue
        tag = element.tag
        private = is_private(tag) and not is_private_creator(tag)
        category = "private tags" if private else category_of(tag, element.vr)
        if element.vr == "PN" and category is None:
            category = "staff"
        if private and element.vr not in PRIVATE_TEXT_VRS:
            continue                    # numbers and codes of a private block: no identity
        if category not in IDENTIFYING and category != "private tags":
            continue
        if category == "uids" and not private and tag not in sensitive_tags():
            continue                    # a class or implementation UID, not an instance's
        if policy is not None and policy.action_for(tag).name == "keep":
            continue                    # the policy keeps it: not something to find
        raw = region.value(element)
        text = charset.decode(raw).strip("\0 ")
        values = [v.strip() for v in text.split("\\")]
        if element.vr == "PN":          # the name and each of its parts
            values += [part.strip() for v in values for group in v.split("=")
                       for part in group.split("^")]
        for value in values:
            if element.vr == "UI" and value.startswith(WELL_KNOWN):
                continue
            if private and not any(c.isalpha() for c in value):
                continue
            for form in _forms(value, charset):
                if len(form) >= MIN_NEEDLE and (form, path) not in seen:
                    seen.add((form, path))
                    out.append((form, path, category))
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
    out_elements = list(_elements(after))
    spans = _spans(after, out_elements)
    found = set()
    for needle, path, category in needles(before, policy):
        for buf_index, buf in enumerate(spans["buffers"]):
            start = buf.find(needle)
            while start >= 0:
                where = _holder(spans, buf_index, start)
                if where is not None and _word(buf, start, len(needle), *where[2:]):
                    out_path, pixels = where[:2]
                    if not pixels or len(needle) >= PIXEL_NEEDLE:
                        kind = "in-pixels" if pixels else (
                            "survived" if out_path == path else "echo")
                        if kind != "survived" and category == "private tags":
                            pass        # a private block's words elsewhere: not an identity
                        elif (kind, path, out_path) not in found:
                            found.add((kind, path, out_path))
                            report.findings.append(Finding(kind, path, out_path, category))
                start = buf.find(needle, start + 1)
    _check_meta(after, report)
    _check_uids(before, after, out_elements, report)
    _check_pixels(before, after, report)
    return report


_ALNUM = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def _word(buf: bytes, start: int, size: int, low: int, high: int) -> bool:
    """Whether the hit at start is a whole word of the value buf[low:high]: no ASCII letter or
    digit of the value right before or after it ("FAKE" of a name is not in "FAKECORP", UID
    1.2.3 not in 1.2.34)."""
    if start + size > high:
        return False                # runs on past the value: header bytes, not a value
    return (start == low or buf[start - 1] not in _ALNUM) and \
        (start + size == high or buf[start + size] not in _ALNUM)


def _spans(parsed, elements) -> dict:
    """The output's searchable buffers and, per buffer, the value ranges of its elements."""
    meta_buf = bytes(parsed.source[:parsed.dataset_start]) if parsed.meta is not None else b""
    data = parsed.dataset
    data_buf = bytes(data.buf) if parsed.deflated else None
    ranges: list[list] = [[], []]
    for element, path, region in elements:
        if element.kind not in (KIND_ELEMENT, KIND_FRAGMENTS):
            continue
        in_meta = region is parsed.meta
        end = element.end if element.kind == KIND_FRAGMENTS else element.vstart + element.vlen
        ranges[0 if in_meta else 1].append((element.vstart, end, path,
                                            element.tag == PIXEL_DATA and element.depth == 0))
    if data_buf is None:            # the data set lies in the source after the meta
        buffers, ranges = [bytes(parsed.source)], [sorted(ranges[0] + ranges[1])]
    else:
        buffers, ranges = [meta_buf, data_buf], [sorted(ranges[0]), sorted(ranges[1])]
    return {"buffers": buffers, "ranges": ranges,
            "starts": [[r[0] for r in each] for each in ranges]}


def _holder(spans, buf_index: int, offset: int):
    """(output path, inside Pixel Data, value start, value end) of the value that holds
    offset, or None (a header). Values do not overlap: the last one starting at or before
    offset is the only one that can hold it."""
    ranges = spans["ranges"][buf_index]
    at = bisect_right(spans["starts"][buf_index], offset) - 1
    if at < 0:
        return None
    start, end, path, pixels = ranges[at]
    return (path, pixels, start, end) if offset < end else None


def _check_meta(parsed, report: PairReport) -> None:
    if parsed.meta is None:
        return
    for media, own, label in ((MEDIA_SOP_INSTANCE, SOP_INSTANCE, "SOP Instance UID"),
                              (MEDIA_SOP_CLASS, SOP_CLASS, "SOP Class UID")):
        a, b = parsed.meta.top_value(media), parsed.dataset.top_value(own)
        if a is not None and b is not None and a.rstrip(b"\0 ") != b.rstrip(b"\0 "):
            report.findings.append(Finding("meta", f"file meta {label}", label,
                                           detail="the file meta and the data set disagree"))


def _check_uids(before, after, out_elements, report: PairReport) -> None:
    old = {}
    for element, path, region in _elements(before):
        if element.kind == KIND_ELEMENT and element.vr == "UI":
            old[path] = region.value(element).decode("ascii", "replace").strip("\0 ")
    for element, path, region in out_elements:
        if element.kind != KIND_ELEMENT or element.vr != "UI":
            continue
        text = region.value(element).decode("ascii", "replace").strip("\0 ")
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
    same = (bytes(before.dataset.buf[a.vstart:a.end]) == bytes(after.dataset.buf[b.vstart:b.end]))
    if same:
        return
    codes = after.dataset.top(0x00120064)          # De-identification Method Code Sequence
    cleaned = codes is not None and CLEAN_PIXEL_DATA in bytes(after.dataset.buf[codes.vstart:
                                                                                 codes.end])
    if not cleaned:
        report.findings.append(Finding("pixels-changed", "PixelData", "PixelData",
                                       detail="the Pixel Data differs and the output does not "
                                              "say its pixels were cleaned (code 113101)"))


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
        report = check_pair(input_data, output_data, input_name, output_name, self.policy)
        for old, (new, path) in report.uids.items():
            seen = self._forward.setdefault(old, (new, path, output_name))
            back = self._backward.setdefault(new, (old, output_name))
            for wrong, words in ((seen[0] != new, f"the same UID became another one in "
                                                  f"{seen[2]} ({seen[1]}): not a function"),
                                 (back[0] != old, f"two UIDs became the same one (the other "
                                                  f"in {back[1]}): not one-to-one")):
                if wrong:
                    report.findings.append(Finding("uid-map", path, path, detail=words))
        if self.detect_text:
            report.findings += text_findings(output_data, output_name)
        return report
