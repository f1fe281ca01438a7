"""The one door the shells use: scan → decide → rewrite (+ masks), for bytes and for files.

`prepare(parsed, plan, masks)` is the pure step every caller shares (anonymize, anonymize_file,
batch, inspect, the preview): one decision pass over the file meta and the data set, the
policy's additions, the masks the file gets, and the output as pieces (ranges of the input and
new bytes). `render` joins an Output in memory; `write` writes it to a file atomically, copying
the input's bulk ranges file to file. `open_source` opens an input file once for both.
"""

from __future__ import annotations

import itertools
import mmap
import os
import stat
import struct
import zlib

from ._lean import field, record
from . import rewrite
from .elements import (DIRECTORY_RECORDS, FASTANON_UID, FLAG_BIG, FLAG_IMPLICIT, MEDIA_SOP_INSTANCE,
                       SOP_INSTANCE, TRANSFER_SYNTAX, dictionary_entry)
from .errors import FastanonError, PolicyError
from .confirm import confirm
from .plan import FileContext, Plan
from .policy import as_policy
from .scan import DEFAULT_LIMITS, EXPLICIT_LE, IMPLICIT_LE, Limits, Parsed, Region, parse
from .values import pad

TYPE_CHECKING = False     # typing is not imported at run time
if TYPE_CHECKING:
    from .masks import Mask
    from .pixels import MaskReport

SMALL_FILE = 64 << 10            # files up to this size are read whole; larger ones are mapped
TEMP_SUFFIX = ".fastanon-tmp"   # temporary outputs, renamed into place when complete
BURNED_IN_ANNOTATION = 0x00280301


@record
class Report:
    """What one file went through: sizes and how many elements each action touched."""

    src: str
    dst: str | None
    bytes_in: int
    bytes_out: int
    actions: dict = field(factory=dict)
    mask_rule: str | None = None          # the mask rule that matched, if rules were given
    mask_warnings: list = field(factory=list)
    shared: int = 0                       # bytes_out that share the input's blocks (a reflink)


@record
class Output:
    """One file anonymized but not yet written: what was decided, and the output as pieces."""

    parsed: Parsed
    plan: Plan
    context: FileContext        # the data set's values, as decisions read them
    decisions: dict             # data set: {index: (action code, None or new value)}
    meta_decisions: dict        # the same for the file meta information
    parts: list                 # (offset, length) ranges of parsed.source and new bytes, in order
    actions: dict               # elements changed, by action name
    masks: tuple = ()           # the masks this file gets: given, or its rule's
    rule: str | None = None     # the mask rule that chose them
    decompress: bool = False    # decode compressed Pixel Data so that the masks can apply
    warnings: list = field(factory=list)     # what the audit should say of this file
    # What a re-read of the output must find (confirm.py): every edit of both regions, and the
    # new top-level elements as (input index they go before, tag, value length or -1).
    edits: dict = field(factory=dict)
    meta_edits: dict = field(factory=dict)
    inserted: list = field(factory=list)
    meta_inserted: list = field(factory=list)

    def identifiers(self, tags) -> dict[int, tuple[str, str]]:
        """{tag: (original text, new text)} of top-level data set attributes ('' when absent
        or removed): the new UIDs `--rename` names outputs by, the rows of `--mapping`."""
        data = self.parsed.dataset
        indices = {tag: data.table.find(tag, -1) for tag in tags}
        return {tag: _texts(data, self.context, self.decisions, index) if index >= 0 else ("", "")
                for tag, index in indices.items()}


def _texts(region, context: FileContext, decisions: dict, index: int) -> tuple[str, str]:
    """(original, new) text of one element under the decisions ('' when removed)."""
    old = context.text(region.element(index))
    decided = decisions.get(index)
    if decided is None:
        return old, old
    return old, ("" if decided[1] is None else
                 context.charset.decode(bytes(decided[1])).strip("\0 "))


_PLANS: dict = {}                 # compiled presets, by (name, key)
_PROCESS_KEY: list = []           # the key of calls that give none: random, one per process


def plan_of(policy, key=None) -> Plan:
    """The compiled plan of a call (a Plan is used as it is). Without a key, every call in this
    process shares one random key, so that files anonymized one call at a time still agree on
    their new UIDs and dates (a run, as DESIGN.md says, is the process). Presets are compiled
    once per key."""
    if isinstance(policy, Plan):
        return policy
    if key is None:
        if not _PROCESS_KEY:
            _PROCESS_KEY.append(os.urandom(32))
        key = _PROCESS_KEY[0]
    if isinstance(policy, str):
        cached = _PLANS.get((policy, key))
        if cached is None:
            if len(_PLANS) > 64:
                _PLANS.clear()
            cached = _PLANS[(policy, key)] = as_policy(policy).compile(key=key)
        return cached
    return as_policy(policy).compile(key=key)


def prepare(parsed: Parsed, plan: Plan, masks=(), *, decompress: bool = False,
            burned_in: bool = False, file_ids=None) -> Output:
    """Decide what happens to every element of a parsed file and lay out the output.

    Parameters
    ----------
    parsed : Parsed
        The scanned input (scan.parse).
    plan : Plan
        The compiled policy (Policy.compile, or plan_of).
    masks : sequence of Mask, or MaskRules
        Rectangles for this file, or rules whose first match (on the input) gives them.
    decompress : bool
        Compressed Pixel Data is decoded when masks apply (render/write do it).
    burned_in : bool
        A file that gets masks is marked Burned In Annotation NO (PS3.3 C.7.6.1.1.8); a plan
        that marks files de-identified does so anyway (and adds the 113101 code).
    file_ids : callable, optional
        For a DICOMDIR whose files are renamed: (new study, series, SOP instance UID) → the
        File ID components the records' ReferencedFileID must name.

    Examples
    --------
    >>> import fastanon
    >>> from fastanon.scan import parse
    >>> from pydicom.data import get_testdata_file
    >>> raw = open(get_testdata_file("CT_small.dcm", download=False), "rb").read()
    >>> output = prepare(parse(raw), plan_of({"PatientName": "remove"}))
    >>> out = fastanon.anonymize(raw, {"PatientName": "remove"})
    >>> dict(output.actions), render(output)[0] == out
    ({'remove': 1}, True)
    """
    data = parsed.dataset
    context = FileContext.of(data, parsed.meta)
    names = [action.name for action in plan.actions]
    decisions = plan.decisions(data, context)
    actions = _count({}, (names[code] for code, _ in decisions.values()))
    chosen, rule = choose_masks(parsed, masks)
    masked = bool(chosen) and (burned_in or plan.marks)
    edits = {index: value for index, (_, value) in decisions.items()}
    if file_ids is not None:
        from .dicomdir import file_references

        for file_id, *uids in file_references(data):
            new = [_texts(data, context, decisions, i)[1] if i is not None else "" for i in uids]
            edits[file_id] = pad("CS", "\\".join(file_ids(*new)).encode("ascii"))
    inserted: list = []
    # A policy built from a specification writes the data set in one encoding: implicit VR
    # headers in an explicit VR data set become explicit (exact mappings change what they say).
    one = plan.policy.consistent
    headers = rewrite.explicit_vrs(data) if one else {}
    extra = plan.file_additions(context)
    inserts = (_additions(data, plan, edits, masked, inserted, one, extra)
               if plan.additions or masked or extra else [])
    meta_decisions: dict = {}
    meta_patches: list = []
    meta_edits: dict = {}
    meta_inserted: list = []
    if parsed.meta is not None:
        meta = parsed.meta
        meta_decisions = plan.decisions(meta, context.of_meta(meta), echoes=False)
        _count(actions, (names[code] for code, _ in meta_decisions.values()))
        meta_edits = {index: value for index, (_, value) in meta_decisions.items()}
        _follow_sop_instance(parsed, edits, meta_edits)
        if one and parsed.transfer_syntax == IMPLICIT_LE and not data.implicit:
            # The data set is explicit VR, as readers take it: the meta says so.
            meta_edits[meta.table.find(TRANSFER_SYNTAX, -1)] = pad("UI", EXPLICIT_LE.encode())
        meta_patches = []
        if one:
            # Written whole: nothing can drift into or out of it. (A {tag: action} mapping
            # changes exactly what it says: its meta is patched.)
            whole = dict(meta_edits)
            inserted_meta = _meta_plan(meta, whole)
            try:
                meta_patches = [(parsed.meta_start, parsed.dataset_start,
                                 _meta_bytes(meta, whole))]
                meta_edits, meta_inserted = whole, inserted_meta
            except PolicyError:     # a value no explicit VR header can hold: patched instead
                pass
        if not meta_patches and meta_edits:
            meta_patches = rewrite.patches(meta, meta_edits)
    parts = _parts(parsed, plan, edits, headers, inserts, meta_patches, meta_edits)
    output = Output(parsed, plan, context, decisions, meta_decisions, parts, actions, chosen,
                    rule, decompress, edits=edits, meta_edits=meta_edits, inserted=inserted,
                    meta_inserted=meta_inserted)
    if masks and not chosen and context.top_text(BURNED_IN_ANNOTATION).upper() == "YES":
        output.warnings.append(f"{parsed.name}: Burned In Annotation is YES and no mask rule "
                               "matched: the text in its pixels is still there")
    return output


def _count(counts: dict, names) -> dict:
    """counts with each name's occurrences added (collections.Counter.update)."""
    names = list(names)
    for name in set(names):         # a few distinct actions, many elements: counted in C
        counts[name] = counts.get(name, 0) + names.count(name)
    return counts


def choose_masks(parsed: Parsed, masks) -> tuple[tuple[Mask, ...], str | None]:
    """(masks, rule name) for one input: the given masks, or those of the first matching rule."""
    if not masks:
        return (), None
    from .masks import Mask, MaskRules

    if isinstance(masks, MaskRules):
        rule = masks.select(parsed.dataset, parsed.meta)
        return (tuple(rule.masks), rule.name) if rule else ((), None)
    masks = tuple(masks)
    for mask in masks:
        if not isinstance(mask, Mask):
            raise PolicyError(f"{parsed.name}: {mask!r} is not a fastanon.Mask")
    return masks, None


def _parts(parsed: Parsed, plan: Plan, edits: dict, headers: dict, inserts: list,
           meta_patches: list, meta_edits: dict) -> list:
    """The output as ranges of the input and new bytes, from the edits of both regions (and
    the data set's headers to write in its own encoding)."""
    data = parsed.dataset
    if plan.clean_preamble and parsed.meta_start == 132 and any(parsed.source[:128]):
        meta_patches.insert(0, (0, 128, bytes(128)))
    data_patches = rewrite.patches(data, edits, headers)
    if inserts:
        data_patches = sorted(data_patches + inserts)
    if data_patches or meta_patches:    # an output that differs anyway gets a missing delimiter
        data_patches = sorted(data_patches + rewrite.closing(data, edits))
    source = parsed.source
    if parsed.deflated:
        parts = list(rewrite.pieces(source, 0, parsed.dataset_start, meta_patches))
        if data_patches or (parsed.stored_plain and meta_patches):   # deflate what changes
            inflated = rewrite.join(data.buf, rewrite.pieces(data.buf, 0, len(data.buf), data_patches))
            deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
            parts.append(deflater.compress(inflated) + deflater.flush())
        elif len(source) > parsed.dataset_start:
            parts.append((parsed.dataset_start, len(source) - parsed.dataset_start))
        return parts
    directory = data.table.find(DIRECTORY_RECORDS, -1) >= 0     # a DICOMDIR
    if directory and (data_patches or meta_patches):
        data_patches = sorted(data_patches
                              + rewrite.directory_offsets(data, meta_patches + data_patches))
    data_parts = list(rewrite.pieces(source, parsed.dataset_start, len(source), data_patches))
    if parsed.meta is not None and not directory:     # padding would move the records
        meta_patches = _align_bulk(parsed, meta_patches, data_parts, meta_edits)
    return list(rewrite.pieces(source, 0, parsed.dataset_start, meta_patches)) + data_parts


# A copied range this large (Pixel Data) is kept at its page offset: the kernel then copies whole
# pages, and a file system with reflinks shares all its blocks but the first and the last with
# the input (rewrite.write). The padding costs at most a page of the output; at 128 KiB it buys
# 31 shared or page-copied blocks or more (an MR image of 256 x 256 x 16 bits and up).
ALIGN_BULK = 128 << 10
PAGE = 4096
PRIVATE_INFORMATION_CREATOR = 0x00020100
PRIVATE_INFORMATION = 0x00020102
CREATOR_UID = pad("UI", FASTANON_UID.encode())  # even length (PS3.5 §6.2)
_PADDING_CREATOR = struct.pack("<HH2sH", 2, 0x0100, b"UI", len(CREATOR_UID)) + CREATOR_UID


def _padding(size: int) -> bytes:
    """Private Information Creator UID (fastanon's) and Private Information of size zero
    bytes: the meta elements that pad it (PS3.10 Table 7.1-1)."""
    return _PADDING_CREATOR + struct.pack("<HH2s2xI", 2, 0x0102, b"OB", size) + bytes(size)


def _align_bulk(parsed: Parsed, meta_patches: list, data_parts: list, meta_edits: dict) -> list:
    """Keep a large copied range (Pixel Data) at the same offset within a page as in the input,
    so that the kernel copies whole pages: when the header changed size by other than a multiple
    of a page, the file meta gets Private Information (0002,0100)/(0002,0102) as padding."""
    meta = parsed.meta
    table = meta.table
    out = parsed.dataset_start + sum(len(p[2]) - (p[1] - p[0]) for p in meta_patches)
    for part in data_parts:
        if isinstance(part, tuple) and part[1] >= ALIGN_BULK:
            shift = out - part[0]
            break
        out += len(part) if isinstance(part, bytes) else part[1]
    else:
        return meta_patches
    if shift % PAGE == 0 or shift % 2:
        return meta_patches
    size = -(shift + len(_PADDING_CREATOR) + 12) % PAGE or PAGE     # Type 1C: never empty
    rebuilt = any(p[0] == parsed.meta_start and p[1] == parsed.dataset_start and p[2]
                  for p in meta_patches)
    if rebuilt:                     # written whole: the padding goes in with the rest
        if any(tag >= PRIVATE_INFORMATION_CREATOR and meta_edits.get(i, b"") is not None
               for i, tag in enumerate(table.tags())):
            return meta_patches     # private information that stays
        built = next(p[2] for p in meta_patches
                     if p[0] == parsed.meta_start and p[1] == parsed.dataset_start)
        padding = _padding(size)         # last, after the group length's new value
        length = struct.pack("<I", struct.unpack_from("<I", built, 8)[0] + len(padding))
        if table.find(GROUP_LENGTH_META, -1) == 0:
            meta_edits[0] = length
        return [p for p in meta_patches if p[0] < parsed.meta_start] + [
            (parsed.meta_start, parsed.dataset_start, built[:8] + length + built[12:] + padding)]
    length_index = table.find(0x00020000, -1)
    removed = {(start, end) for start, end, new in meta_patches if not new}
    kept_private = any(e.tag >= PRIVATE_INFORMATION_CREATOR and (e.start, e.end) not in removed
                       for e in meta.elements())
    if length_index != 0 or kept_private:
        return meta_patches     # no group length to fix, or private information that stays
    padding = _padding(size)
    added = len(padding)
    group_length = meta.element(length_index)
    patched = [p for p in meta_patches if p[0] == group_length.vstart]
    old = patched[0][2] if patched else meta.value(group_length)
    value = struct.pack("<I", struct.unpack("<I", old)[0] + added)
    result = [p for p in meta_patches if p[0] != group_length.vstart]
    result.append((group_length.vstart, group_length.vstart + 4, value))
    result.append((parsed.dataset_start, parsed.dataset_start, padding))
    result.sort(key=lambda p: (p[0], p[1]))
    return result




GROUP_LENGTH_META = 0x00020000


def _meta_plan(meta: Region, meta_edits: dict) -> list:
    """Complete the edits of a file meta information that is written whole (PS3.10 §7.1):
    elements the data dictionary does not know are left out, the group length comes first with
    its new value (filled by _meta_bytes). Returns the insertions confirm.py must expect."""
    table = meta.table
    for index, tag in enumerate(table.tags()):
        if index in meta_edits:
            continue
        entry = dictionary_entry(tag)
        if entry is None:
            meta_edits[index] = None
        elif table.row(index)[8] % 2:       # an odd length: padded (PS3.5 §7.1.1)
            element = meta.element(index)
            meta_edits[index] = pad(element.vr, meta.value(element))
    length = table.find(GROUP_LENGTH_META, -1)
    inserted = [(_before(table, tag), tag, len(value)) for tag, (_, value) in _missing(table)]
    if length == 0:
        meta_edits[0] = _NEW_LENGTH
        return inserted
    if length > 0:
        meta_edits[length] = None
    return [(0, GROUP_LENGTH_META, 4)] + inserted


# Type 1 elements of the file meta that fastanon can write when a file lacks them (PS3.10
# Table 7.1-1): the version, and the implementation that wrote the file (fastanon).
_META_TYPE_1 = {0x00020001: ("OB", b"\0\1"),
                0x00020012: ("UI", pad("UI", FASTANON_UID.encode()))}


def _missing(table) -> list:
    tags = set(table.tags())
    return [(tag, found) for tag, found in _META_TYPE_1.items() if tag not in tags]


def _before(table, tag: int) -> int:
    """The index of the first meta element after tag (the group length aside), or the end."""
    for index, other in enumerate(table.tags()):
        if other > tag and other != GROUP_LENGTH_META:
            return index
    return len(table)


_NEW_LENGTH = b"\0\0\0\0"     # placeholder: the group length _meta_bytes computes


def _meta_bytes(meta: Region, meta_edits: dict) -> bytes:
    """The file meta information written whole in explicit VR little endian (PS3.10 §7.1): its
    elements in their order with the planned new values, the group length computed (first, as
    _align_bulk expects). meta_edits[group length] gets the value written."""
    table = meta.table
    parts = []
    missing = _missing(table)
    for index in range(len(table)):
        tag, vr = table.row(index)[:2]
        while missing and _before(table, missing[0][0]) == index:
            new, (new_vr, value) = missing.pop(0)
            parts.append(rewrite.encode_element(new, new_vr, value, False, False))
        value = meta_edits.get(index, KEEP_VALUE)
        if tag == GROUP_LENGTH_META or value is None:
            continue
        if value is KEEP_VALUE:
            value = meta.value(meta.element(index))
        parts.append(rewrite.encode_element(tag, vr or dictionary_entry(tag)[0],
                                            value, False, False))
    for new, (new_vr, value) in missing:
        parts.append(rewrite.encode_element(new, new_vr, value, False, False))
    body = b"".join(parts)
    length = struct.pack("<I", len(body))
    if table.find(GROUP_LENGTH_META, -1) == 0:
        meta_edits[0] = length
    return rewrite.encode_element(GROUP_LENGTH_META, "UL", length, False, False) + body


KEEP_VALUE = object()


def _additions(region: Region, plan: Plan, edits: dict, masked: bool, inserted: list,
               one: bool, extra: list = ()) -> list:
    """The plan's new top-level elements (e.g. PatientIdentityRemoved, PS3.15 E.1.1; with masks,
    Burned In Annotation NO): an existing element gets the new value, a missing one is inserted
    in tag order; the group length of a group that grows is removed (retired outside group 0002,
    PS3.5 §7.2). inserted gets (index before which, tag, value length or -1) of each new one.
    one: the data set is written in its own encoding (explicit_vrs), and so are they. Else they
    are encoded as the data set's first element is: a data set that switches between implicit
    and explicit VR is read by pydicom (and fastanon) in the first one's encoding, with a
    fallback per element that an implicit length can defeat (one whose low byte is a capital
    reads as a VR); an explicit header reads the same in both. extra: this file's own new
    elements (tag, VR, value), those a lookup table prescribes, encoded here."""
    table = region.table
    implicit, big = (region.implicit, region.big) if one else _encoding_of(table, 0, region)
    by_tag = {tag: vr for tag, vr, _ in (plan.masked_additions if masked else plan.additions)}
    own = {tag: (vr, value) for tag, vr, value in extra if tag not in by_tag}
    by_tag.update((tag, vr) for tag, (vr, _) in own.items())

    def encoded(tag: int, implicit: bool, big: bool) -> tuple[bytes, bytes]:
        if tag in own:
            vr, value = own[tag]
            return (rewrite.encode_value(vr, value, implicit, big),
                    rewrite.encode_element(tag, vr, value, implicit, big))
        return _encoded(plan, masked, implicit, big)[tag]

    missing = []
    for tag in sorted(by_tag):
        index = table.find(tag, -1)
        if index >= 0:
            encoding = (implicit, big) if one else _encoding_of(table, index, region)
            edits[index] = encoded(tag, *encoding)[0]
            continue
        missing.append(tag)
        length = table.find(tag & 0xFFFF0000, -1)
        if length >= 0:
            edits[length] = rewrite.REMOVE
    if not missing:
        return []
    points = rewrite.insertion_points(region, missing)
    new = []
    for tag, at in zip(missing, points):
        value, element = encoded(tag, implicit, big)
        new.append((tag, element))
        inserted.append((at, tag, -1 if by_tag[tag] == "SQ" else len(value)))
    return rewrite.insertions(region, new, points)


def _encoding_of(table, index: int, region: Region) -> tuple[bool, bool]:
    """(implicit VR, big endian) of the element at index (the region's when there is none)."""
    if index < 0 or index >= len(table):
        return region.implicit, region.big
    flags = table.row(index)[3]
    return bool(flags & FLAG_IMPLICIT), bool(flags & FLAG_BIG)


def _encoded(plan: Plan, masked: bool, implicit: bool, big: bool) -> dict:
    """{tag: (value bytes, whole element bytes)} of the plan's additions, encoded once per plan,
    encoding and masked or not."""
    key = (masked, implicit, big)
    found = plan.encoded_additions.get(key)
    if found is None:
        additions = plan.masked_additions if masked else plan.additions
        found = plan.encoded_additions[key] = {
            tag: (rewrite.encode_value(vr, value, implicit, big),
                  rewrite.encode_element(tag, vr, value, implicit, big))
            for tag, vr, value in additions}
    return found


def _follow_sop_instance(parsed: Parsed, edits: dict, meta_edits: dict) -> None:
    """MediaStorageSOPInstanceUID follows a changed SOPInstanceUID (PS3.10 §7.1)."""
    data = parsed.dataset
    index = data.table.find(SOP_INSTANCE, -1)
    if index < 0 or index not in edits or edits[index] is None:
        return
    media = parsed.meta.table.find(MEDIA_SOP_INSTANCE, -1)
    if media >= 0 and media not in meta_edits:
        meta_edits[media] = edits[index]


def anonymize(data, policy="research", masks=(), *, key: bytes | str | None = None,
              name: str = "<data>", decompress: bool = False,
              limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Anonymize one DICOM file held in memory.

    Parameters
    ----------
    data : bytes-like
        The file's bytes (Part 10 file, or a raw data set).
    policy : str, Policy or mapping
        A preset name, a Policy, or {tag: action} applying exactly those actions.
    masks : sequence of Mask, or MaskRules
        Rectangles to black out in the Pixel Data (rules are matched against the input).
    key : bytes or str, optional
        Secret for keyed UIDs, date shifts and pseudonyms; random for this call when absent.
    decompress : bool
        Decode compressed Pixel Data so that masks can be applied (stored uncompressed).
    limits : Limits
        How much a deflated data set may inflate (scan.Limits).

    Returns
    -------
    bytes
        The anonymized file; the input unchanged when the policy changes nothing.

    Examples
    --------
    >>> import fastanon, pydicom, io
    >>> from pydicom.data import get_testdata_file
    >>> raw = open(get_testdata_file("CT_small.dcm", download=False), "rb").read()
    >>> fastanon.anonymize(raw, policy={}) == raw
    True
    >>> out = fastanon.anonymize(raw, policy={"PatientName": "remove"})
    >>> "PatientName" in pydicom.dcmread(io.BytesIO(out))
    False
    """
    try:
        output = prepare(parse(data, name, limits), plan_of(policy, key), masks,
                         decompress=decompress)
        return render(output)[0] if output.masks else _unmasked(output, name)
    except MemoryError:
        raise FastanonError(f"{name}: out of memory while anonymizing it") from None


def render(output: Output, name: str | None = None) -> tuple[bytes, MaskReport]:
    """The output in memory, its masks blanked: (bytes, what masking did; name: for its words)."""
    from .pixels import MaskReport, blank

    name = name or output.parsed.name
    if not output.masks:
        return _unmasked(output, name), MaskReport(name)
    result = rewrite.join(output.parsed.source, output.parts)
    buf = bytearray(result)
    new, report = blank(buf, output.masks, name, decompress=output.decompress)
    report.rule = output.rule
    result = bytes(buf) if new is None else new
    confirm(output, result, name, pixels_new=new is not None)
    return result, report


def _unmasked(output: Output, name: str) -> bytes:
    """The output of a file without masks in memory, checked (render, without the masks'
    machinery)."""
    result = rewrite.join(output.parsed.source, output.parts)
    confirm(output, result, name)
    return result


def anonymize_file(src, dst, policy="research", masks=(), *, key: bytes | str | None = None,
                   overwrite: bool = True, decompress: bool = False,
                   limits: Limits = DEFAULT_LIMITS, clone: bool = True) -> Report:
    """Anonymize the file src into dst without loading it whole: the input is mapped, unchanged
    ranges (Pixel Data above all) are copied file to file, and dst appears only when complete.
    On a file system with reflinks the Pixel Data's blocks are shared with the input rather
    than copied (Report.shared); clone=False always copies.

    Examples
    --------
    >>> import fastanon, tempfile, os
    >>> from pydicom.data import get_testdata_file
    >>> src = get_testdata_file("CT_small.dcm", download=False)
    >>> dst = os.path.join(tempfile.mkdtemp(), "out.dcm")
    >>> fastanon.anonymize_file(src, dst, policy={}).bytes_out == os.path.getsize(src)
    True
    """
    src, dst = os.fspath(src), os.fspath(dst)
    plan = plan_of(policy, key)
    if os.path.exists(dst):
        if os.path.exists(src) and os.path.samefile(src, dst):
            raise FastanonError(f"{dst}: the output would overwrite its own input")
        if not overwrite:
            raise FastanonError(f"{dst}: exists (overwrite not allowed)")
    with open_source(src) as source:
        try:
            parsed = parse(source.contents(), src, limits)
            try:
                return write(source, prepare(parsed, plan, masks, decompress=decompress), dst,
                             clone)
            finally:
                parsed.release()
        except MemoryError:
            raise FastanonError(f"{src}: out of memory while anonymizing it") from None


@record(frozen=True)
class Source:
    """An input file opened once (by open_source): its size, and its bytes."""

    path: str
    fd: int
    size: int
    regular: bool       # a FIFO or device is opened without blocking and not read
    data: object        # bytes (a small file, read whole), an mmap (larger), or None

    @property
    def head(self) -> bytes:
        """The first 132 bytes: preamble and 'DICM' of a Part 10 file."""
        return bytes(self.data[:132]) if self.data is not None else b""

    def contents(self):
        """The bytes to parse; a FastanonError for what cannot hold a DICOM file."""
        if not self.regular or not self.size:
            raise FastanonError(f"{self.path}: {'empty' if self.regular else 'not a regular'} "
                                "file, not DICOM")
        return self.data


class open_source:  # noqa: N801  (a context manager used like a function)
    """Open an input file for reading once; its mapping and descriptor close with the block."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def __enter__(self) -> Source:
        path = self.path
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:
            raise FastanonError(f"{path}: cannot be read ({exc.strerror})") from None
        data = None
        try:
            info = os.fstat(fd)
            regular = stat.S_ISREG(info.st_mode)
            if regular:
                data = (_read_all(fd, info.st_size) if info.st_size <= SMALL_FILE
                        else mmap.mmap(fd, 0, access=mmap.ACCESS_READ))
        except OSError as exc:
            os.close(fd)
            raise FastanonError(f"{path}: cannot be read ({exc.strerror})") from None
        self.fd, self.data = fd, data
        return Source(path, fd, info.st_size, regular, data)

    def __exit__(self, *exc) -> None:
        if isinstance(self.data, mmap.mmap):
            try:
                self.data.close()
            except BufferError:      # a view is still held by an exception's traceback:
                pass                 # the mapping closes when that is collected
        os.close(self.fd)


def _read_all(fd: int, size: int) -> bytes:
    chunks, done = [], 0
    while done < size:
        chunk = os.read(fd, size - done)
        if not chunk:
            break
        chunks.append(chunk)
        done += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def write(source: Source, output: Output, dst, clone: bool = True) -> Report:
    """Write a prepared output to dst atomically (a temporary file beside it, renamed into place):
    a small input in one write, a mapped one with its bulk ranges copied file to file
    (copy_file_range; with clone, shared with the input where the file system has reflinks),
    masks blanked in the written file (copy on write: the input's shared blocks stay as
    they are)."""
    dst = os.fspath(dst)
    warnings: list = []
    shared = 0
    if isinstance(source.data, mmap.mmap):
        with _atomic_output(dst) as fd_out:
            try:
                written, shared = rewrite.write(source.fd, source.data, fd_out, output.parts,
                                                clone)
            except OSError as exc:
                _unchanged(source)
                raise FastanonError(f"{dst}: cannot be written ({exc.strerror or exc})") from None
            _unchanged(source)
            pixels_new = False
            if output.masks:
                written, warnings, pixels_new = _blank_file(fd_out, written, output, str(dst))
                if pixels_new:
                    shared = 0              # decoded and written anew: nothing shared
            with mmap.mmap(fd_out, written, access=mmap.ACCESS_READ) as mapped:
                confirm(output, mapped, str(dst), pixels_new)
    else:
        if output.masks:
            result, report = render(output, str(dst))
            warnings = report.warnings
        else:
            result = _unmasked(output, str(dst))
        with _atomic_output(dst) as fd_out:
            written = rewrite.write_all(fd_out, result)
    return Report(source.path, str(dst), source.size, written, output.actions, output.rule,
                  output.warnings + list(warnings), shared)


def put(source: Source, output: Output, dst: str, store) -> Report:
    """The output rendered in memory, masks blanked and checked, then handed whole to store
    (an object store's single write: the object appears complete or not at all)."""
    result, report = render(output, dst)
    store(result)
    return Report(source.path, dst, source.size, len(result), output.actions, output.rule,
                  output.warnings + list(report.warnings))


def _unchanged(source: Source) -> None:
    """A FastanonError when the input changed size while it was read (a mapped file cut short
    reads as "Bad address")."""
    size = os.fstat(source.fd).st_size
    if size != source.size:
        raise FastanonError(f"{source.path}: changed while it was read ({source.size:,} bytes, "
                            f"now {size:,}); not written")


def _blank_file(fd: int, size: int, output: Output, name: str) -> tuple[int, list, bool]:
    """Blank the masks in an output file just written: mapped, only the rows they cover are
    touched; a decompressed file replaces the file's content. (new size, warnings, whether
    the Pixel Data was decoded)."""
    from .pixels import blank

    if size <= 0:
        raise FastanonError(f"{name}: empty output, nothing to mask")
    with mmap.mmap(fd, size, access=mmap.ACCESS_WRITE) as mapped:
        new, report = blank(mapped, output.masks, name, decompress=output.decompress)
    if new is not None:
        os.ftruncate(fd, 0)
        view, done = memoryview(new), 0
        while done < len(new):
            done += os.pwrite(fd, view[done:], done)
        size = len(new)
    return size, report.warnings, new is not None


class _atomic_output:  # noqa: N801  (a context manager used like a function)
    """An open temporary file that becomes dst when the block succeeds and vanishes otherwise."""

    def __init__(self, dst: str):
        self.dst = dst

    def __enter__(self) -> int:
        self.fd, self.tmp = _open_temp(self.dst)
        return self.fd

    def __exit__(self, kind, value, traceback) -> None:
        try:
            os.close(self.fd)
            if kind is None:
                os.replace(self.tmp, self.dst)
                return
        except BaseException:
            _unlink(self.tmp)
            raise
        _unlink(self.tmp)


_TEMP_NAMES = itertools.count()
# Temporary names say which host and process wrote them (.NAME.HOST.PID-N.fastanon-tmp), so that
# a later run can tell the ones of dead processes (SIGKILL, power loss) and remove them.
_HOST = f"{zlib.crc32(os.uname().nodename.encode()):08x}"
_SWEPT: set[str] = set()       # folders this process has swept
_PID = [os.getpid()]            # this process's (a system call each time otherwise)


def _forked() -> None:
    _PID[0] = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def sweep_temp(folder: str, recursive: bool = False) -> int:
    """Remove the temporary outputs in folder (and below) that a process of this host no longer
    running left behind, or this process itself; those of live processes stay. Returns how many."""
    removed = 0
    stack = [folder]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if recursive and entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.name.endswith(TEMP_SUFFIX) and _abandoned(entry.name):
                        try:
                            os.unlink(entry.path)
                            removed += 1
                        except OSError:
                            pass
        except OSError:
            continue
    return removed


def _abandoned(name: str) -> bool:
    parts = name[:-len(TEMP_SUFFIX)].rsplit(".", 2)
    if len(parts) != 3 or parts[1] != _HOST:
        return False             # another host's, or not one fastanon named: left alone
    pid = parts[2].partition("-")[0]
    if not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False             # alive, another user's
    return False


def _open_temp(dst: str) -> tuple[int, str]:
    """A new file beside dst (same file system, so the final rename is atomic), made with the
    permissions of an ordinary new file; the folder is created when missing."""
    folder, name = os.path.split(dst)
    folder = folder or "."
    if folder not in _SWEPT:
        _SWEPT.add(folder)
        sweep_temp(folder)
    tmp = f"{folder}/.{name}.{_HOST}.{_PID[0]}-{next(_TEMP_NAMES)}{TEMP_SUFFIX}"
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC     # read too: masks map it
    attempts = 3
    while True:
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileNotFoundError:
            attempts -= 1
            if not attempts:
                raise
            # Made here; made again if another thread (the node's forwarding) removed it as
            # empty meanwhile.
            os.makedirs(folder, exist_ok=True)
        except FileExistsError:        # left by an earlier process with the same pid
            import tempfile

            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=TEMP_SUFFIX, dir=folder)
            os.chmod(tmp, 0o644)
            return fd, tmp


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
