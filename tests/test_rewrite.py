"""The rewriter on every bundled file pydicom reads: keeping everything gives the input back byte
for byte; each action on automatically chosen targets gives a file pydicom reads fully, with the
target gone / empty / replaced at every depth and every other element unchanged."""

from __future__ import annotations

import io
import os
import warnings

import pydicom
import pytest
from pydicom import config
from pydicom.dataelem import RawDataElement
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

import fastanon
from fastanon.rewrite import DIRECTORY_OFFSETS
import cases
from cases import CASES
from conftest import ALIGNMENT_PADDING, drop_alignment_padding, encoded, hex2bytes, pydicom_reads_fully, read_bytes, read_raw, readable_files

READABLE = readable_files()
UNDEFINED = 0xFFFFFFFF
SOP_INSTANCE = 0x00080018
MEDIA_SOP_INSTANCE = 0x00020003
TEXT_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"}
# Values fastanon's `replace` writes where free text is not valid (PS3.15 E.1: valid for the VR).
DUMMIES = {"DA": "19000101", "TM": "000000", "DT": "19000101000000.000000", "AS": "000D",
           "DS": "0", "IS": "0", "UI": "2.25.0"}
MAX_CHARS = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64}


# --- pydicom's view of a file, flattened -------------------------------------------------------

def flatten(ds, path=()) -> dict:
    """{(path, tag): (VR, raw value bytes | item count)} at every depth; path is a tuple of
    (sequence tag, item number). Raw values are read before conversion (get_item)."""
    out = {}
    for tag in list(ds.keys()):
        elem = ds.get_item(tag)
        if ds[tag].VR == "SQ":
            items = ds[tag].value
            out[(path, int(tag))] = ("SQ", len(items))
            for number, item in enumerate(items):
                out.update(flatten(item, path + ((int(tag), number),)))
        else:   # the VR as pydicom resolves it; the value as it is in the file when still raw
            value = elem.value if isinstance(elem, RawDataElement) else encoded(elem, ds)[1]
            out[(path, int(tag))] = (str(ds[tag].VR), value)
    return out


def _under(key, tag: int) -> bool:
    """The element at key is tag, or lies inside an element with that tag."""
    path, t = key
    return t == tag or any(seq == tag for seq, _ in path)


def _read(raw: bytes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(raw), force=True)


# --- targets ----------------------------------------------------------------------------------

def choose_targets(raw: bytes) -> dict[str, int]:
    """Tags to edit in this file, by what they exercise; only those the file has."""
    _, meta, data = read_raw(raw)
    flat = flatten(data)
    top = [(t, v[0]) for (p, t), v in flat.items() if not p]
    top_tags = {t for t, _ in top}
    targets = {}
    for tag, vr in top:
        if vr in TEXT_VRS and tag != 0x00080005 and tag & 0xFFFF:
            targets["top text"] = tag
            break
    undefined_items = _item_kinds(data)
    for (path, tag), (vr, _) in flat.items():
        if path and tag not in top_tags and vr != "SQ" and tag & 0xFFFF:
            kind = "nested in undefined item" if undefined_items[path] else "nested in defined item"
            targets.setdefault(kind, tag)
    for tag, vr in top:
        if vr == "SQ":
            targets["sequence"] = tag
            break
    if top:
        targets["last"] = top[-1][0]
    groups_with_length = {t >> 16 for t, _ in top if t & 0xFFFF == 0}
    for tag, vr in top:
        if tag >> 16 in groups_with_length and tag & 0xFFFF and vr != "SQ":
            targets["in a group with a group length"] = tag
            break
    if SOP_INSTANCE in top_tags and MEDIA_SOP_INSTANCE in meta:
        targets["SOPInstanceUID"] = SOP_INSTANCE
    for tag in (0x00020013, 0x00020016, 0x00020012):
        if tag in meta:
            targets["file meta"] = tag
            break
    return targets


def _item_kinds(ds, path=(), out=None) -> dict:
    """{item path: True when the item has undefined length}."""
    out = {} if out is None else out
    for tag in list(ds.keys()):
        if ds[tag].VR == "SQ":
            for number, item in enumerate(ds[tag].value):
                p = path + ((int(tag), number),)
                out[p] = getattr(item, "is_undefined_length_sequence_item", False)
                _item_kinds(item, p, out)
    return out


TARGETS = {name: choose_targets(read_bytes(name)) for name in READABLE}


def _cases():
    for name in READABLE:
        for what, tag in TARGETS[name].items():
            yield name, what, tag


def test_targets_cover_every_kind():
    """Across the bundled files, every kind of target is exercised many times."""
    kinds = {}
    for name in READABLE:
        for what in TARGETS[name]:
            kinds[what] = kinds.get(what, 0) + 1
    assert set(kinds) == {"top text", "nested in undefined item", "nested in defined item",
                          "sequence", "last", "in a group with a group length", "SOPInstanceUID",
                          "file meta"}, kinds
    assert min(kinds.values()) >= 2, kinds


# --- keep everything --------------------------------------------------------------------------

@pytest.mark.parametrize("name", READABLE)
def test_keep_all_is_byte_identical(name, tmp_path):
    raw = read_bytes(name)
    assert fastanon.anonymize(raw, policy={}) == raw
    src = tmp_path / "in.dcm"
    src.write_bytes(raw)
    report = fastanon.anonymize_file(src, tmp_path / "out" / "out.dcm", policy={})
    assert (tmp_path / "out" / "out.dcm").read_bytes() == raw
    assert report.bytes_out == len(raw)
    assert os.listdir(tmp_path / "out") == ["out.dcm"]


# --- each action on each target ---------------------------------------------------------------

def _actions(vr: str) -> list[str]:
    if vr == "SQ":
        return ["remove", "empty"]
    actions = ["remove", "empty", "replace"]
    if vr in TEXT_VRS:
        actions.append("replace:FAKE TEXT")
    return actions


@pytest.mark.parametrize("name", READABLE)
def test_actions(name, tmp_path):
    raw = read_bytes(name)
    parsed_before = read_raw(raw)
    encapsulated = {((), t) for t in [0x7FE00010] if _undefined_length(parsed_before[2], t)}
    wrong_before = _wrong_group_lengths(raw, *parsed_before)
    before = {**flatten(parsed_before[1]), **flatten(parsed_before[2])}
    context = (before, wrong_before, encapsulated)
    for what, tag in TARGETS[name].items():
        vr = next(v[0] for (p, t), v in before.items() if t == tag)
        for action in _actions(vr):
            out = fastanon.anonymize(raw, policy={tag: action})
            label = f"{name}: {action} {what} ({tag:08X})"
            _check_output(label, context, out, tag, action)
    # The file path gives the same bytes as the in-memory path.
    tag, action = next(iter(TARGETS[name].values())), "remove"
    src, dst = tmp_path / "in.dcm", tmp_path / "out.dcm"
    src.write_bytes(raw)
    fastanon.anonymize_file(src, dst, policy={tag: action})
    assert dst.read_bytes() == fastanon.anonymize(raw, policy={tag: action})
    assert src.read_bytes() == raw


def _check_output(label, context, out, tag, action):
    before, wrong_before, encapsulated = context
    parsed_after = read_raw(out)
    assert pydicom_reads_fully(out, parsed_after[0]), f"{label}: pydicom cannot read the output"
    _check_group_lengths(label, wrong_before, out, parsed_after)    # before flatten converts
    _, meta_after, data_after = parsed_after
    drop_alignment_padding(any(((), t) in before for t in ALIGNMENT_PADDING), meta_after)
    after = {**flatten(meta_after), **flatten(data_after)}
    ignored = {MEDIA_SOP_INSTANCE} if tag == SOP_INSTANCE else set()
    ignored |= DIRECTORY_OFFSETS      # a DICOMDIR's record offsets follow the records (PS3.3 F.3.2.1)

    def others(flat):
        return {k: v for k, v in flat.items()
                if not _under(k, tag) and k[1] & 0xFFFF and k[1] not in ignored}

    assert others(after) == others(before), f"{label}: other elements changed"
    old = {k: v for k, v in before.items() if k[1] == tag and not any(s == tag for s, _ in k[0])}
    new = {k: v for k, v in after.items() if k[1] == tag}
    assert old, label
    if action == "remove":
        assert not new, f"{label}: still there"
    else:
        assert new.keys() == old.keys(), f"{label}: occurrences differ"
        for key, (new_vr, value) in new.items():
            if action == "empty" or (action.startswith("replace") and key in encapsulated):
                # policy.decide: `replace` on encapsulated Pixel Data empties it
                assert value in (b"", 0), f"{label}: {value!r} not empty"   # 0: no items
            else:
                _check_replaced(label, key, new_vr, value, action)
    if tag == SOP_INSTANCE and action != "remove":
        assert after[((), MEDIA_SOP_INSTANCE)][1] == after[((), SOP_INSTANCE)][1], label


def _undefined_length(data, tag: int) -> bool:
    elem = data.get_item(tag)
    return isinstance(elem, RawDataElement) and elem.length == UNDEFINED


def _check_replaced(label, key, vr, value, action):
    vr = str(vr)
    raw = value
    assert len(raw) % 2 == 0, f"{label}: odd length"
    if action.startswith("replace:") and vr in TEXT_VRS:
        assert raw.rstrip(b" ").decode() == action.partition(":")[2], label
        return
    if vr in DUMMIES:
        expected = DUMMIES[vr]
    elif vr in TEXT_VRS or vr == "AS":
        expected = "ANONYMIZED"[:MAX_CHARS.get(vr, 64)]
    else:
        assert raw and not any(raw), f"{label}: {raw!r} is not a zero value"
        return
    assert raw.rstrip(b" \0").decode() == expected, f"{label}: {raw!r}"
    # Valid for its VR by pydicom's own validation (PS3.5 Table 6.2-1).
    with config.strict_reading():
        pydicom.DataElement(key[1], vr, raw.rstrip(b" \0").decode(), validation_mode=config.RAISE)


def _check_group_lengths(label, wrong_before: dict, out: bytes, parsed_out) -> None:
    """Every top-level group length (file meta included) equals the bytes of the rest of its
    group, unless the input had the very same wrong value for an untouched group (keeping
    everything else byte for byte wins there)."""
    for group, (declared, actual) in _wrong_group_lengths(out, *parsed_out).items():
        assert wrong_before.get(group) == (declared, actual), (
            f"{label}: ({group:04X},0000) is {declared}, the group has {actual} bytes")


def _wrong_group_lengths(raw: bytes, ds, meta, data) -> dict[int, tuple[int, int]]:
    """{group: (declared, actual)} for top-level group lengths that disagree with the bytes,
    measured from pydicom's value offsets (not for deflated files: those are inflated offsets)."""
    if str(ds.file_meta.get("TransferSyntaxUID", "")) == pydicom.uid.DeflatedExplicitVRLittleEndian:
        return {}
    implicit, little = ds.original_encoding
    starts = []     # (tag, header offset, value offset) in file order
    for dataset, dataset_implicit in ((meta, False), (data, implicit)):
        for tag in list(dataset.keys()):
            elem = dataset.get_item(tag)
            vr = elem.VR if isinstance(elem, RawDataElement) else dataset[tag].VR
            tell = elem.value_tell if isinstance(elem, RawDataElement) else elem.file_tell
            long_header = not dataset_implicit and vr in EXPLICIT_VR_LENGTH_32
            starts.append((int(tag), tell - (12 if long_header else 8), tell))
    wrong = {}
    for i, (tag, start, tell) in enumerate(starts):
        if tag & 0xFFFF:
            continue
        group = tag >> 16
        end = next((s for t, s, _ in starts[i + 1:] if t >> 16 != group), len(raw))
        declared = int.from_bytes(raw[tell:tell + 4], "little" if group == 2 or little else "big")
        if declared != end - (tell + 4):
            wrong[group] = (declared, end - (tell + 4))
    return wrong


# --- hand-written byte-level cases (tests/cases) ----------------------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
def test_case_keep_all_and_actions(case):
    raw = CASES[case]
    assert fastanon.anonymize(raw, policy={}) == raw
    parsed = read_raw(raw)
    encapsulated = {((), 0x7FE00010)} if _undefined_length(parsed[2], 0x7FE00010) else set()
    context = (_wrong_group_lengths(raw, *parsed), encapsulated)
    context = ({**flatten(parsed[1]), **flatten(parsed[2])}, *context)
    tags = {t for (_, t) in context[0] if t & 0xFFFF and t >> 16 != 2}
    assert tags, case
    for tag in sorted(tags):            # every element of the case, at whatever depth
        vr = next(v[0] for (p, t), v in context[0].items() if t == tag)
        for action in _actions(vr):
            out = fastanon.anonymize(raw, policy={tag: action})
            _check_output(f"{case}: {action} ({tag:08X})", context, out, tag, action)


def test_defined_lengths_recomputed_3_deep():
    """Removing the innermost element shrinks all six enclosing defined lengths by 16 bytes."""
    out = fastanon.anonymize(cases.DEFINED_NESTED, policy={"TextValue": "remove"})
    assert out == cases.DEFINED_NESTED_WITHOUT_TEXT


def test_fragments_stay_byte_identical():
    out = fastanon.anonymize(cases.ENCAPSULATED, policy={"PatientName": "replace:X", "Rows": "remove"})
    assert out.endswith(cases.FRAGMENTS)
    assert len(out) == len(cases.ENCAPSULATED) - 10 - 6    # Rows gone, 'DOE^JOHN' → 'X '


def test_un_known_sequence_lengths_recomputed():
    out = fastanon.anonymize(cases.UN_KNOWN_SQ, policy={"SeriesInstanceUID": "remove"})
    assert out == cases.part10(cases.EXPLICIT_LE, hex2bytes("""
        08 00 15 11  55 4E 00 00  08 00 00 00             # (0008,1115) UN, 8 bytes
        FE FF 00 E0  00 00 00 00                          #   item, now empty
        10 00 10 00  50 4E  04 00  44 4F 45 5E            # (0010,0010) PN 'DOE^'
    """))


def test_big_endian_replace():
    out = fastanon.anonymize(cases.BIG_ENDIAN, policy={"Rows": "replace", "SeriesInstanceUID": "empty"})
    assert out == cases.part10(cases.EXPLICIT_BE, hex2bytes("""
        00 08 00 16  55 49  00 08  31 2E 32 2E 33 2E 34 00    # (0008,0016) UI '1.2.3.4'
        00 08 11 15  53 51 00 00  00 00 00 10                 # (0008,1115) SQ, 16 bytes
        FF FE E0 00  00 00 00 08                              #   item, 8 bytes
        00 20 00 0E  55 49  00 00                             #   (0020,000E) UI, empty
        00 10 00 10  50 4E  00 08  44 4F 45 5E 4A 4F 48 4E    # (0010,0010) PN 'DOE^JOHN'
        00 28 00 10  55 53  00 02  00 00                      # (0028,0010) Rows US 0
    """))


def test_meta_group_length_and_media_sop_instance_follow():
    out = fastanon.anonymize(cases.IMPLICIT_NESTED, policy={"SOPInstanceUID": "replace:1.2.840.99"})
    meta = pydicom.dcmread(io.BytesIO(out)).file_meta
    assert meta.MediaStorageSOPInstanceUID == "1.2.840.99"
    assert len(out) - len(cases.IMPLICIT_NESTED) == 2 * (10 - 8)
    assert meta.FileMetaInformationGroupLength == _meta_rest(out) == _meta_rest(cases.IMPLICIT_NESTED) + 2


def _meta_rest(raw: bytes) -> int:
    """Bytes of the meta group after its group length element, by walking the headers by hand."""
    pos = 144
    while raw[pos:pos + 2] == b"\x02\x00":
        vr = raw[pos + 4:pos + 6]
        if vr in (b"OB", b"UN", b"SQ", b"UT"):
            pos += 12 + int.from_bytes(raw[pos + 8:pos + 12], "little")
        else:
            pos += 8 + int.from_bytes(raw[pos + 6:pos + 8], "little")
    return pos - 144
