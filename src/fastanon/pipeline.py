"""The only calls the shells make: scan → plan → rewrite, for bytes and for files."""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import secrets
import struct
import tempfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import rewrite
from .elements import (
    FASTANON_UID,
    FLAG_BIG,
    FLAG_IMPLICIT,
    KIND_ITEM,
    MEDIA_SOP_INSTANCE,
    SOP_INSTANCE,
)
from .errors import FastanonError
from .policy import KEEP, FileContext, Plan, as_policy
from .scan import Parsed, Region, parse
from .values import pad

SMALL_FILE = 64 << 10            # files up to this size are read whole; larger ones are mapped
TEMP_SUFFIX = ".fastanon-tmp"   # temporary outputs, renamed into place when complete


@dataclass
class Report:
    """What one file went through: sizes and how many elements each action touched."""

    src: str
    dst: str | None
    bytes_in: int
    bytes_out: int
    actions: Counter = field(default_factory=Counter)
    mask_rule: str | None = None          # the mask rule that matched, if rules were given
    mask_warnings: list = field(default_factory=list)


@dataclass
class _Output:
    parsed: Parsed
    parts: list           # (offset, length) ranges of parsed.source and bytes, in order
    actions: Counter


_PLANS: dict = {}                 # compiled presets, by (name, key)
_PROCESS_KEY: list = []           # the key of calls that give none: random, one per process


def _plan(policy, key) -> Plan:
    """The compiled plan of a call. Without a key, every call in this process shares one random
    key, so that files anonymized one call at a time still agree on their new UIDs and dates
    (a run, as DESIGN.md says, is the process). Presets are compiled once per key."""
    if key is None:
        if not _PROCESS_KEY:
            _PROCESS_KEY.append(secrets.token_bytes(32))
        key = _PROCESS_KEY[0]
    if isinstance(policy, str):
        cached = _PLANS.get((policy, key))
        if cached is None:
            if len(_PLANS) > 64:
                _PLANS.clear()
            cached = _PLANS[(policy, key)] = as_policy(policy).compile(key=key)
        return cached
    return as_policy(policy).compile(key=key)


def _edits(region: Region, plan: Plan, context: FileContext, actions: Counter) -> dict:
    edits = {}
    skip_until = -1
    static = plan.static
    names = [action.name for action in plan.actions]
    row = region.table.row
    for index, code in region.table.select(*plan.selection):
        if code in static:                      # remove / empty: no per-element decision
            _, _, kind, _, _, _, start, _, _, end = row(index)
            if start < skip_until or kind == KIND_ITEM:
                continue
            result = static[code]
        else:
            element = region.element(index)
            start, end = element.start, element.end
            if start < skip_until:
                continue
            result = plan.decide(context, element, code)
            if result is KEEP:
                continue
        edits[index] = result
        actions[names[code]] += 1
        skip_until = end
    return edits


def _build(parsed: Parsed, plan: Plan) -> _Output:
    data = parsed.dataset
    context = FileContext.of(data)
    actions: Counter = Counter()
    edits = _edits(data, plan, context, actions)
    inserts = _additions(data, plan, edits) if plan.additions else []
    meta_patches: list = []
    if parsed.meta is not None:
        meta = parsed.meta
        meta_context = FileContext(meta, False, "ascii", context.cache)
        meta_edits = _edits(meta, plan, meta_context, actions)
        _follow_sop_instance(parsed, edits, meta_edits)
        meta_patches = rewrite.patches(meta, meta_edits)
    if plan.clean_preamble and parsed.meta_start == 132 and any(parsed.source[:128]):
        meta_patches.insert(0, (0, 128, bytes(128)))
    data_patches = rewrite.patches(data, edits)
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
    else:
        directory = data.table.find(rewrite.DIRECTORY_RECORDS, -1) >= 0     # a DICOMDIR
        if directory and (data_patches or meta_patches):
            data_patches = sorted(data_patches
                                  + rewrite.directory_offsets(data, meta_patches + data_patches))
        data_parts = list(rewrite.pieces(source, parsed.dataset_start, len(source), data_patches))
        if parsed.meta is not None and not directory:     # padding would move the records
            meta_patches = _align_bulk(parsed, meta_patches, data_parts)
        parts = list(rewrite.pieces(source, 0, parsed.dataset_start, meta_patches)) + data_parts
    return _Output(parsed, parts, actions)


ALIGN_BULK = 16 << 20       # a copied range this large is kept at its page offset
PAGE = 4096
PRIVATE_INFORMATION_CREATOR = 0x00020100
PRIVATE_INFORMATION = 0x00020102
CREATOR_UID = pad("UI", FASTANON_UID.encode())  # even length (PS3.5 §6.2)


def _align_bulk(parsed: Parsed, meta_patches: list, data_parts: list) -> list:
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
    length_index = table.find(0x00020000, -1)
    removed = {(start, end) for start, end, new in meta_patches if not new}
    kept_private = any(e.tag >= PRIVATE_INFORMATION_CREATOR and (e.start, e.end) not in removed
                       for e in meta.elements())
    if length_index != 0 or kept_private:
        return meta_patches     # no group length to fix, or private information that stays
    creator = struct.pack("<HH2sH", 2, 0x0100, b"UI", len(CREATOR_UID)) + CREATOR_UID
    size = -(shift + len(creator) + 12) % PAGE
    padding = struct.pack("<HH2s2xI", 2, 0x0102, b"OB", size) + bytes(size)
    added = len(creator) + len(padding)
    group_length = meta.element(length_index)
    patched = [p for p in meta_patches if p[0] == group_length.vstart]
    old = patched[0][2] if patched else meta.value(group_length)
    value = struct.pack("<I", struct.unpack("<I", old)[0] + added)
    result = [p for p in meta_patches if p[0] != group_length.vstart]
    result.append((group_length.vstart, group_length.vstart + 4, value))
    result.append((parsed.dataset_start, parsed.dataset_start, creator + padding))
    result.sort(key=lambda p: (p[0], p[1]))
    return result


def _additions(region: Region, plan: Plan, edits: dict) -> list:
    """The policy's new top-level elements (e.g. PatientIdentityRemoved, PS3.15 E.1.1): an
    existing element gets the new value, a missing one is inserted in tag order; the group
    length of a group that grows is removed (retired outside group 0002, PS3.5 §7.2)."""
    implicit, big = region.implicit, region.big
    if len(region.table):       # the encoding the elements really use (some files contradict
        flags = region.table.row(0)[3]      # their transfer syntax; the scanner follows them)
        implicit, big = bool(flags & FLAG_IMPLICIT), bool(flags & FLAG_BIG)
    encoded = _encoded_additions(plan, implicit, big)
    new = []
    for tag, value, element in encoded:
        index = region.table.find(tag, -1)
        if index >= 0:
            edits[index] = value
            continue
        new.append((tag, element))
        length = region.table.find(tag & 0xFFFF0000, -1)
        if length >= 0:
            edits[length] = rewrite.REMOVE
    return rewrite.insertions(region, new)


def _encoded_additions(plan: Plan, implicit: bool, big: bool) -> list:
    """(tag, value bytes, whole element bytes) of the plan's additions, encoded once per run."""
    cache = plan.context.setdefault("_encoded_additions", {})
    key = (implicit, big)
    if key not in cache:
        cache[key] = [(tag, rewrite.encode_value(vr, value, implicit, big),
                       rewrite.encode_element(tag, vr, value, implicit, big))
                      for tag, vr, value in plan.additions]
    return cache[key]


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
              name: str = "<data>", decompress: bool = False) -> bytes:
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
    plan = _plan(policy, key)
    parsed = parse(data, name)
    output = _build(parsed, plan)
    masks, _ = _select_masks(parsed, masks)
    result = rewrite.join(parsed.source, output.parts)
    if masks:
        from .masks import apply_to_bytes
        result = apply_to_bytes(result, masks, name, decompress=decompress)
    return result


def anonymize_file(src, dst, policy="research", masks=(), *, key: bytes | str | None = None,
                   overwrite: bool = True, plan: Plan | None = None,
                   decompress: bool = False) -> Report:
    """Anonymize the file src into dst without loading it whole: the input is mapped, unchanged
    ranges (Pixel Data above all) are copied file to file, and dst appears only when complete.

    Examples
    --------
    >>> import fastanon, tempfile, os
    >>> from pydicom.data import get_testdata_file
    >>> src = get_testdata_file("CT_small.dcm", download=False)
    >>> dst = os.path.join(tempfile.mkdtemp(), "out.dcm")
    >>> fastanon.anonymize_file(src, dst, policy={}).bytes_out == os.path.getsize(src)
    True
    """
    src, dst = Path(src), Path(dst)
    plan = plan or _plan(policy, key)
    if dst.exists():
        if src.exists() and os.path.samefile(src, dst):
            raise FastanonError(f"{dst}: the output would overwrite its own input")
        if not overwrite:
            raise FastanonError(f"{dst}: exists (overwrite not allowed)")
    try:
        fd_in = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise FastanonError(f"{src}: cannot be read ({exc.strerror})") from None
    try:
        size = os.fstat(fd_in).st_size
        if size == 0:
            raise FastanonError(f"{src}: empty file, not DICOM")
        if size <= SMALL_FILE:
            report = _read_and_write(fd_in, size, src, dst, plan, masks, decompress)
        else:
            mapped = mmap.mmap(fd_in, 0, access=mmap.ACCESS_READ)
            try:
                report = _map_and_write(fd_in, mapped, src, dst, plan, masks, decompress)
            finally:
                try:
                    mapped.close()
                except BufferError:      # a view is still held by an exception's traceback:
                    pass                 # the mapping closes when that is collected
    finally:
        os.close(fd_in)
    report.bytes_in = size
    return report


def _read_and_write(fd_in: int, size: int, src: Path, dst: Path, plan: Plan, masks,
                    decompress: bool) -> Report:
    """A small file: one read, the output joined in memory, one write."""
    chunks, done = [], 0
    while done < size:
        chunk = os.read(fd_in, size - done)
        if not chunk:
            break
        chunks.append(chunk)
        done += len(chunk)
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    parsed = parse(data, str(src))
    output = _build(parsed, plan)
    masks, rule = _select_masks(parsed, masks)
    result = rewrite.join(data, output.parts)
    warnings = []
    if masks:
        from .masks import blank_bytes
        result, mask_report = blank_bytes(result, masks, str(dst), decompress=decompress)
        warnings = list(mask_report.warnings)
    with _atomic_output(dst) as fd_out:
        rewrite.write_all(fd_out, result)
    return Report(str(src), str(dst), size, len(result), output.actions, rule, warnings)


def _map_and_write(fd_in, mapped, src: Path, dst: Path, plan: Plan, masks, decompress) -> Report:
    parsed = parse(mapped, str(src))
    try:
        output = _build(parsed, plan)
        masks, rule = _select_masks(parsed, masks)
        written, mask_report = _write_atomic(fd_in, mapped, output.parts, dst, masks, decompress)
    finally:
        parsed.release()
    report = Report(str(src), str(dst), 0, written, output.actions)
    report.mask_rule = rule
    if mask_report is not None:
        report.mask_warnings = list(mask_report.warnings)
        if mask_report.size is not None:
            report.bytes_out = mask_report.size
    return report


def _select_masks(parsed: Parsed, masks) -> tuple[tuple, str | None]:
    """Masks to apply: the given ones, or those of the first mask rule matching the input."""
    if not masks:
        return (), None
    from .masks import MaskRules
    if isinstance(masks, MaskRules):
        rule = masks.select(parsed.dataset)
        return (tuple(rule.masks), rule.name) if rule else ((), None)
    return tuple(masks), None


def _write_atomic(fd_in: int, mapped, parts, dst: Path, masks, decompress: bool):
    """Write to a temporary file beside dst, blank masks in it, then rename it into place."""
    mask_report = None
    with _atomic_output(dst) as fd_out:
        written = rewrite.write(fd_in, mapped, fd_out, parts)
        if masks:
            from .masks import apply_to_fd
            mask_report = apply_to_fd(fd_out, written, masks, str(dst), decompress=decompress)
    return written, mask_report


@contextlib.contextmanager
def _atomic_output(dst: Path):
    """An open temporary file that becomes dst when the block succeeds and vanishes otherwise."""
    fd_out, tmp = _open_temp(dst)
    try:
        try:
            yield fd_out
        finally:
            os.close(fd_out)
        os.replace(tmp, dst)
    except BaseException:
        _unlink(tmp)
        raise


_TEMP_NAMES = itertools.count()


def _open_temp(dst: Path) -> tuple[int, str]:
    """A new file beside dst (same file system, so the final rename is atomic), made with the
    permissions of an ordinary new file; the folder is created when missing."""
    tmp = f"{dst.parent}/.{dst.name}.{os.getpid()}-{next(_TEMP_NAMES)}{TEMP_SUFFIX}"
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC     # read too: masks map it
    try:
        return os.open(tmp, flags, 0o666), tmp
    except FileNotFoundError:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:        # left by an earlier process with the same pid
        fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=TEMP_SUFFIX, dir=dst.parent)
        os.chmod(tmp, 0o644)
        return fd, tmp
    return os.open(tmp, flags, 0o666), tmp


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
