"""Findings: per element, category, planned action and why; warnings about what a policy misses.

What `fastanon inspect` prints and the preview page shows. The module reads what
pipeline.prepare decided for the file (the one decision pass) and decides nothing itself.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields

from .elements import (KIND_FRAGMENTS, KIND_ITEM, KIND_SEQUENCE, PIXEL_DATA, is_private, keyword,
                       tag_text)
from .categories import categories, category_of
from .pipeline import Output, plan_of, prepare
from .echoes import BULK, CLEANED_VRS, ECHO_SOURCES
from .plan import FileContext, Plan, resolve
from .policy import as_policy
from .encapsulated import CODECS_PACKAGE, JPEG_DCT
from .pixels import IN_SYNTAX as MASKED_IN_SYNTAX, masks_keep_syntax
from .scan import NATIVE_SYNTAXES, Parsed, parse

BURNED_IN_ANNOTATION, MODALITY = 0x00280301, 0x00080060
# Modalities whose images often carry burned-in text (PS3.15 E.3.1, Clean Pixel Data Option).
BURNED_IN_MODALITIES = frozenset({"US", "SC", "XA", "ES", "OT", "XC", "GM", "RF", "DX", "CR",
                                  "MG", "IO", "PX", "SM", "DOC"})
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
        out = {name: getattr(self, name) for name in _FINDING_FIELDS}    # flat: no deep copy
        out["tag"] = tag_text(self.tag) if self.tag is not None else None
        out["alternatives"] = list(self.alternatives)
        return out


_FINDING_FIELDS = tuple(f.name for f in fields(Finding))


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
    policy = as_policy(policy)
    plan = plan_of(policy, key)
    parsed = parse(data, name)
    output = prepare(parsed, plan)
    findings: list[Finding] = []
    kept_private = 0
    kept_texts = []
    for element, path, action, inherited, context in walk(parsed, output):
        category = category_of(element.tag, element.vr)
        if action == "keep" and is_private(element.tag):
            kept_private += 1
        if action == "keep" and element.vr in CLEANED_VRS and element.kind != KIND_ITEM:
            kept_texts.append((element, path, context))
        if category is None and action == "keep":
            continue
        alternatives = categories()[category].alternatives if category else ()
        reason = inherited or policy.reason_for(element.tag)
        if not inherited and policy.action_for(element.tag).typed:
            requirement = plan.requirement(context, element)
            resolved = resolve(policy.action_for(element.tag), requirement).name
            shown = "dummy content (its structure kept, every value in it a dummy)" if (
                resolved == "dummy" and action == "keep") else resolved
            reason += f"; here {shown}: {requirement}"
        decided = output.decisions.get(element.index) if context is output.context else None
        if decided is not None and decided[0] == plan.echo_code:
            echoes = output.context.echoes
            reason = (f"repeats the patient's {echoes.explain(context.text(element))}: "
                      f"{echoes.how(element)} (the policy alone: {reason})")
        elif decided is not None and plan.lookup_code and decided[0] == plan.lookup_code:
            reason = (f"the lookup table {plan.lookup.path} prescribes its value for this "
                      f"patient (the policy alone: {reason})")
        findings.append(Finding("element", path, element.tag, keyword(element.tag), element.vr,
                                value_preview(context, element), category, action, alternatives,
                                reason))
    findings += _warnings(parsed, plan, output.context, kept_private, kept_texts)
    return findings


def walk(parsed: Parsed, output: Output | None = None):
    """Every element of a file, file meta first, in document order, as
    (element, path, planned action, reason when inherited from a removed sequence, context).
    Paths are depth-aware ("SourceImageSequence[0].ReferencedSOPInstanceUID"); without an
    output every action is "keep"."""
    context = output.context if output is not None else FileContext.of(parsed.dataset,
                                                                         parsed.meta)
    regions = [(parsed.dataset, context, output.decisions if output else {})]
    if parsed.meta is not None:
        regions.insert(0, (parsed.meta, context.of_meta(parsed.meta),
                           output.meta_decisions if output else {}))
    for region, region_context, decisions in regions:
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
                yield element, path, "remove", gone_reason, region_context
                continue
            decided = decisions.get(index)
            if decided is None:
                yield element, path, "keep", "", region_context
                continue
            code, value = decided
            planned = output.plan.actions[code]
            action = ("empty" if value == b"" else "dummy") if planned.typed else planned.name
            if value is None:
                action = "remove"
                gone_until, gone_reason = element.end, f"inside {path}, which is removed"
            elif element.kind in (KIND_SEQUENCE, KIND_FRAGMENTS):
                gone_until, gone_reason = element.end, f"inside {path}, which is emptied"
            yield element, path, action, "", region_context


def value_preview(context: FileContext, element) -> str:
    """A short text of an element's value: the text itself (cut), or what kind of data it holds."""
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
    if plan.marks and plan.identity_kept:
        out.append(_warning("identity-not-removed", "the policy keeps "
                            f"{', '.join(plan.identity_kept)}: the output says Patient Identity "
                            "Removed NO (PS3.15 E.1.1)", "PatientIdentityRemoved", 0x00120062,
                            "patient identity"))
    if not plan.policy.clean_echoes:
        pattern = plan.echoes(context).pattern
        if pattern is not None:
            for element, path, ctx in kept_texts:
                if element.parent == -1 and element.tag in ECHO_SOURCES:
                    continue
                if element.tag == PIXEL_DATA or element.vlen >= BULK:
                    continue            # image or bulk bytes (echoes.BULK): not text
                found = pattern.findall(ctx.text(element))
                if found:
                    shown = ", ".join(sorted({f.upper(): f for f in found}.values()))
                    out.append(_warning("identifying-echo", f"{path} is kept and contains the "
                                        f"patient's identifying value(s) {shown}; give it the "
                                        "action clean (clean echoes: only those words are "
                                        "blanked) or remove it", path, element.tag,
                                        "patient identity"))
    if kept_private:
        out.append(_warning("private-tags-kept", f"{kept_private} private element(s) are kept; "
                            "their content is not described by the standard", "", None,
                            "private tags"))
    pixel = data.table.find(PIXEL_DATA, -1)
    syntax = parsed.transfer_syntax
    if (pixel >= 0 and data.element(pixel).kind == KIND_FRAGMENTS) or \
            (has_pixels and syntax is not None and syntax not in NATIVE_SYNTAXES):
        if syntax in JPEG_DCT:
            text = (f"the pixel data is compressed ({syntax}, JPEG); masks apply in it, in the "
                    "DCT domain: the blocks they touch become black (grown to the MCU grid), "
                    "every other block and frame is kept as it is")
        elif masks_keep_syntax(syntax):
            text = (f"the pixel data is compressed ({syntax}); masks apply in it: the frames "
                    "they touch are decoded and encoded again losslessly, the others kept as "
                    "they are")
        elif syntax in MASKED_IN_SYNTAX:
            text = (f"the pixel data is compressed ({syntax}); masks apply in it with the "
                    f"codecs extra ({CODECS_PACKAGE}), else with --decompress")
        else:
            text = (f"the pixel data is compressed ({syntax}); burned-in text cannot be blanked "
                    "without decompressing it (--decompress)")
        out.append(_warning("compressed-pixel-data", text, "PixelData", PIXEL_DATA))
    return out


def summarize(findings: list[Finding]) -> dict[str, int]:
    """Findings per category (elements only), in the order of the categories table."""
    counts = Counter(f.category for f in findings if f.kind == "element" and f.category)
    return {name: counts[name] for name in categories() if counts[name]}
