"""Findings: per element, category, planned action and why; warnings about what a policy misses.

What `fastanon inspect` prints and the preview page shows. The module reads a file the way the
pipeline does (scan, then the compiled plan) and decides nothing itself.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

from .elements import (
    KIND_FRAGMENTS,
    KIND_ITEM,
    KIND_SEQUENCE,
    PIXEL_DATA,
    is_private,
    keyword,
    tag_text,
)
from .policy import _CLEANED_VRS, ECHO_SOURCES, KEEP, FileContext, Plan, as_policy, echo_values
from .scan import Region, parse

BURNED_IN_ANNOTATION, MODALITY = 0x00280301, 0x00080060
# Modalities whose images often carry burned-in text (PS3.15 E.3.1, Clean Pixel Data Option).
BURNED_IN_MODALITIES = frozenset({"US", "SC", "XA", "ES", "OT", "XC", "GM", "RF", "DX", "CR",
                                  "MG", "IO", "PX", "SM", "DOC"})
NATIVE_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                             "1.2.840.10008.1.2.1.99"})
_PREVIEW = 64


@dataclass(frozen=True)
class Finding:
    """One element the policy has an opinion on, or a warning (kind == "warning", with a code)."""

    kind: str                       # "element" or "warning"
    path: str                       # depth-aware: "SourceImageSequence[0].ReferencedSOPInstanceUID"
    tag: int | None
    keyword: str
    vr: str
    value: str                      # a short preview of the value
    category: str | None
    action: str                     # planned action: keep, remove, empty, replace, uid, ...
    alternatives: tuple[str, ...]
    reason: str
    code: str = ""                  # warnings: burned-in-annotation, identifying-echo, ...
    message: str = ""

    def as_dict(self) -> dict:
        out = asdict(self)
        out["tag"] = tag_text(self.tag) if self.tag is not None else None
        out["alternatives"] = list(self.alternatives)
        return out


def inspect(data, policy="research", *, key: bytes | str | None = None,
            name: str = "<data>") -> list[Finding]:
    """What the policy does to each sensitive element of one file, and what it may miss.

    Parameters
    ----------
    data : bytes-like
        A DICOM file (Part 10, or a raw data set).
    policy : str, Policy or mapping
        As for anonymize.

    Returns
    -------
    list of Finding
        Elements first (document order: meta, then data set), then warnings.

    Examples
    --------
    >>> import fastanon
    >>> from pydicom.data import get_testdata_file
    >>> raw = open(get_testdata_file("CT_small.dcm", download=False), "rb").read()
    >>> found = {f.keyword: f for f in fastanon.inspect(raw)}
    >>> found["PatientName"].category, found["PatientName"].action
    ('patient identity', 'empty')
    """
    from . import presets
    policy = as_policy(policy)
    plan = policy.compile(key=key)
    parsed = parse(data, name)
    findings: list[Finding] = []
    data_context = FileContext.of(parsed.dataset)
    regions = [(parsed.dataset, data_context)]
    if parsed.meta is not None:
        regions.insert(0, (parsed.meta, FileContext(parsed.meta, False, "ascii", data_context.cache)))
    kept_private = 0
    kept_texts = []
    for region, context in regions:
        for element, path, action, inherited in _walk(region, plan, context):
            category = presets.category_of(element.tag, element.vr)
            if action == "keep" and is_private(element.tag):
                kept_private += 1
            if action == "keep" and element.vr in _CLEANED_VRS and element.kind != KIND_ITEM:
                kept_texts.append((element, path, context))
            if category is None and action == "keep":
                continue
            alternatives = (presets.categories()[category].alternatives if category else ())
            reason = (inherited or policy.reason_for(element.tag))
            findings.append(Finding("element", path, element.tag, keyword(element.tag),
                                    element.vr, _preview(context, element), category, action,
                                    alternatives, reason))
    findings += _warnings(parsed, plan, data_context, kept_private, kept_texts)
    return findings


def _walk(region: Region, plan: Plan, context: FileContext):
    """(element, path, planned action, reason when inherited from a removed sequence)."""
    selected = dict(region.table.select(*plan.selection))
    paths: dict[int, str] = {}
    items_seen: dict[int, int] = {}
    gone_until, gone_reason = -1, ""
    for index in range(len(region.table)):
        element = region.element(index)
        parent = paths.get(element.parent, "")
        if element.kind == KIND_ITEM:
            number = items_seen.get(element.parent, 0)
            items_seen[element.parent] = number + 1
            paths[index] = f"{parent}[{number}]"
            continue
        name = keyword(element.tag) or tag_text(element.tag)
        path = paths[index] = f"{parent}.{name}" if parent else name
        if element.start < gone_until:
            yield element, path, "remove", gone_reason
            continue
        code = selected.get(index, 0)
        if code == 0:
            yield element, path, "keep", ""
            continue
        action = plan.actions[code].name
        result = plan.decide(context, element, code)
        if result is KEEP:
            action = "keep"
        elif result is None:
            action = "remove"
            gone_until, gone_reason = element.end, f"inside {path}, which is removed"
        elif element.kind in (KIND_SEQUENCE, KIND_FRAGMENTS):
            gone_until, gone_reason = element.end, f"inside {path}, which is emptied"
        yield element, path, action, ""


def _preview(context: FileContext, element) -> str:
    if element.kind == KIND_SEQUENCE:
        return "(sequence)"
    if element.kind == KIND_FRAGMENTS:
        return "(encapsulated pixel data)"
    if element.vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN", "US", "SS", "UL", "SL", "FL",
                      "FD", "AT", "UV", "SV") or element.tag == PIXEL_DATA:
        return f"({element.vlen:,} bytes)"
    text = context.text(element)
    return text if len(text) <= _PREVIEW else text[:_PREVIEW - 1] + "…"


def _warning(code: str, message: str, path: str = "", tag: int | None = None,
             category: str | None = None) -> Finding:
    return Finding("warning", path, tag, keyword(tag) if tag is not None else "", "", "",
                   category, "", (), "", code, message)


def _warnings(parsed, plan: Plan, context: FileContext, kept_private: int, kept_texts) -> list:
    out = []
    data = parsed.dataset
    burned = context.top_text(BURNED_IN_ANNOTATION).upper()
    modality = context.top_text(MODALITY).upper()
    has_pixels = data.table.find(PIXEL_DATA, -1) >= 0
    if burned == "YES":
        out.append(_warning("burned-in-annotation", "Burned In Annotation is YES: the pixels show "
                            "text that may identify the patient; blank it with masks",
                            "BurnedInAnnotation", BURNED_IN_ANNOTATION))
    elif not burned and has_pixels and modality in BURNED_IN_MODALITIES:
        out.append(_warning("burned-in-annotation", f"Burned In Annotation is absent and {modality} "
                            "images often carry burned-in text; look at the pixels",
                            "BurnedInAnnotation", BURNED_IN_ANNOTATION))
    if not plan.policy.clean_echoes:
        values = echo_values({tag: context.top_text(tag) for tag in ECHO_SOURCES})
        pattern = context.echo_pattern()
        if pattern is not None:
            for element, path, ctx in kept_texts:
                if element.parent == -1 and element.tag in ECHO_SOURCES:
                    continue
                found = pattern.findall(ctx.value(element))
                if found:
                    shown = ", ".join(sorted({f.decode(ctx.encoding, "replace") for f in found}))
                    out.append(_warning("identifying-echo", f"{path} is kept and contains the "
                                        f"patient's identifying value(s) {shown}; "
                                        "set clean_echoes (or remove it) to blank them",
                                        path, element.tag, "patient identity"))
        del values
    if kept_private:
        out.append(_warning("private-tags-kept", f"{kept_private} private element(s) are kept; "
                            "their content is not described by the standard", "", None,
                            "private tags"))
    pixel = data.table.find(PIXEL_DATA, -1)
    syntax = parsed.transfer_syntax
    if (pixel >= 0 and data.element(pixel).kind == KIND_FRAGMENTS) or \
            (has_pixels and syntax is not None and syntax not in NATIVE_SYNTAXES):
        out.append(_warning("compressed-pixel-data", f"the pixel data is compressed ({syntax}); "
                            "burned-in text cannot be blanked without decompressing it",
                            "PixelData", PIXEL_DATA))
    return out


def summarize(findings: list[Finding]) -> dict[str, int]:
    """Findings per category (elements only), in the order of the categories table."""
    from . import presets
    counts = Counter(f.category for f in findings if f.kind == "element" and f.category)
    return {name: counts[name] for name in presets.categories() if counts[name]}
