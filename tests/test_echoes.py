"""Identity echoes: the patient's name, IDs and accession number copied into other attributes,
private blocks, free text, UIDs and folder names, as real exports do. After `research` or
`internal` none of them may survive, and the flags a file carries must say what was done.

The inputs are built by echo_files.py; pydicom reads every output back (the oracle).
"""

from __future__ import annotations

import io
import itertools
import re
import zlib
from pathlib import Path

import pydicom
import pytest
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.filereader import read_dataset
from pydicom.multival import MultiValue
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

import fastanon
import echo_files as ef
from conftest import pydicom_reads_fully
from test_cli import invoke

KEY = b"echo-test-key-2024"
PRESETS = ("research", "internal")
PIXEL_DATA = 0x7FE00010
# The text VRs pydicom decodes into str (PS3.5 Table 6.2-1); other values are searched as bytes.
TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                      "TM", "UC", "UI", "UR", "UT"})
NAME_KEYWORDS = ("PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName")
VALUE_KEYWORDS = ("PatientID", "OtherPatientIDs", "AccessionNumber", "PatientBirthDate",
                  "PatientAddress", "PatientTelephoneNumbers")
NAME_MIN = 3                     # shorter name components are too common to search for
UID = re.compile(r"(0|[1-9]\d*)(\.(0|[1-9]\d*))*")      # PS3.5 §9.1

syntaxes = pytest.mark.parametrize("syntax", ef.SYNTAXES, ids=ef.SYNTAX_IDS)
presets = pytest.mark.parametrize("preset", PRESETS)


def anonymize(raw: bytes, preset="internal", **kwargs) -> bytes:
    return fastanon.anonymize(raw, preset, key=KEY, **kwargs)


def read(raw: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(raw))


# -- the leak checker ---------------------------------------------------------------------------

def values_of(ds, keyword: str) -> list[str]:
    """The non-empty values of one attribute as text (PN in all its component groups)."""
    value = ds.get(keyword)
    if value is None:
        return []
    values = list(value) if isinstance(value, MultiValue) else [value]
    return [str(v).strip() for v in values if str(v).strip()]


def identifying_values(raw: bytes) -> list[str]:
    """What identifies the patient of a file: every component (>= 3 characters) of the names,
    split on ^ (components), = (component groups) and \\ (values); the IDs, the accession number,
    the birth date, the address and the telephone numbers."""
    ds = read(raw)
    found = set()
    for keyword in NAME_KEYWORDS:
        for value in values_of(ds, keyword):
            found.update(p.strip() for p in re.split(r"[\^=\\]", value) if len(p.strip()) >= NAME_MIN)
    for keyword in VALUE_KEYWORDS:
        found.update(values_of(ds, keyword))
    return sorted(found)


def inflated(raw: bytes) -> bytes:
    """The file with a Deflated data set inflated (raw deflate after the file meta, PS3.5 A.5)."""
    fp = io.BytesIO(raw)
    fp.seek(132)
    meta = read_dataset(fp, is_implicit_VR=False, is_little_endian=True,
                        stop_when=lambda tag, vr, length: tag >> 16 != 2)
    meta.set_original_encoding(False, True, "iso8859")
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return raw
    end = fp.tell()
    return raw[:end] + zlib.decompressobj(-zlib.MAX_WBITS).decompress(raw[end:])


def charsets(ds) -> list[str]:
    value = ds.get("SpecificCharacterSet")
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def decoded_texts(ds, encodings: list[str], prefix: str = ""):
    """(path, text) of every value at every depth, file meta included by the caller: text VRs as
    pydicom decodes them, byte values (private elements read without a VR are UN) decoded with
    the file's character set. Pixel Data is left out."""
    for elem in ds:
        if elem.tag == PIXEL_DATA:
            continue
        path = prefix + (elem.keyword or str(elem.tag).replace(", ", ","))
        value = elem.value
        if elem.VR == "SQ":
            for i, item in enumerate(value):
                yield from decoded_texts(item, encodings, f"{path}[{i}].")
        elif isinstance(value, bytes):
            yield path, decode_bytes(value, encodings, set(b"\\^=\r\n\t\f"))
        elif elem.VR in TEXT_VRS and value is not None:
            for v in (value if isinstance(value, MultiValue) else [value]):
                yield path, str(v)


def leaks(raw: bytes, out: bytes, values: list[str]) -> list[tuple[str, str]]:
    """(where, value) for each identifying value found in `out`, case-insensitively:
    (a) in its bytes (data set inflated), decoded with the input's character set and as UTF-8
    (for an ISO 2022 input, only the ASCII values: its other bytes depend on escape state);
    (b) in every text pydicom decodes from it, at every depth."""
    found = []
    sets = charsets(read(raw))
    data = inflated(out)
    if any(s.startswith("ISO 2022") for s in sets):
        searches = {"bytes (ASCII)": (data.decode("latin-1"), [v for v in values if v.isascii()])}
    else:
        codec = convert_encodings(sets[-1] if sets else None)[-1]
        searches = {f"bytes ({codec})": (data.decode(codec, "replace"), values),
                    "bytes (UTF-8)": (data.decode("utf-8", "replace"), values)}
    for where, (text, searched) in searches.items():
        text = text.casefold()
        found += [(where, v) for v in searched if v.casefold() in text]
    ds = read(out)
    encodings = convert_encodings(charsets(ds) or sets or None)
    for path, text in itertools.chain(decoded_texts(ds.file_meta, encodings),
                                      decoded_texts(ds, encodings)):
        found += [(path, v) for v in values if v.casefold() in text.casefold()]
    return found


def assert_no_leak(raw: bytes, out: bytes, values: list[str]) -> None:
    """None of `values` survives in `out`, which pydicom reads fully."""
    assert values, "nothing to look for"
    assert pydicom_reads_fully(out), "pydicom cannot read the output"
    found = leaks(raw, out, values)
    assert not found, f"identifying values survive: {found}"


def check(raw: bytes, preset: str, extra=()) -> bytes:
    out = anonymize(raw, preset)
    assert_no_leak(raw, out, identifying_values(raw) + list(extra))
    return out


# -- the checker sees what it must see (on the inputs themselves) ------------------------------

@syntaxes
def test_leak_checker_sees_every_echo(syntax):
    raw = ef.echoed_ids(syntax, "AccessionNumber")
    found = set(leaks(raw, raw, identifying_values(raw)))
    assert {("RequestAttributesSequence[0].ScheduledProcedureStepID", ef.ACCESSION),
            ("StudyID", ef.ACCESSION), ("bytes (UTF-8)", "+49-40-5550199"),
            ("OtherPatientIDs", "OPID88990"), ("PatientName", "TAROU")} <= found
    raw = ef.mitra(syntax, "latin1")
    found = set(leaks(raw, raw, identifying_values(raw)))
    assert {("(0033,1010)", ef.PATIENT_ID), ("(0031,1020)", ef.PATIENT_ID),
            ("bytes (latin_1)", "MÜLLER"), ("bytes (UTF-8)", "MÜLLER")} <= found
    raw = ef.free_text(syntax, "japanese")
    found = set(leaks(raw, raw, identifying_values(raw)))
    assert {("PatientName", "やまだ"), ("StudyDescription", "たろう"), ("ImageComments", "Tarou"),
            ("bytes (ASCII)", "Yamada")} <= found
    assert ("bytes (ASCII)", "やまだ") not in found          # not searched as bytes
    assert "山田" not in identifying_values(raw)              # 2 characters: too short


@syntaxes
def test_inputs_are_valid(syntax):
    # Every builder's file reads fully with pydicom, in the encoding asked for.
    files = [ef.echoed_ids(syntax, "PatientID"), *ef.uid_study(syntax), ef.mitra(syntax),
             ef.animal(syntax), ef.burned_in(syntax),
             *(ef.free_text(syntax, charset_id) for charset_id in ef.CHARSETS)]
    implicit = syntax == ef.SYNTAXES[0]
    for raw in files:
        assert pydicom_reads_fully(raw)
        ds = read(raw)
        assert ds.file_meta.TransferSyntaxUID == syntax
        assert ds.original_encoding == (implicit, syntax != ef.SYNTAXES[2])
    mitra = read(ef.mitra(syntax))
    # no VR in implicit VR, and none in pydicom's private dictionary: UN bytes
    assert (mitra[0x00331010].VR, mitra[0x00331010].value) == (
        ("UN", ef.PATIENT_ID.encode()) if implicit else ("LO", ef.PATIENT_ID))
    japanese = read(ef.free_text(syntax, "japanese"))
    assert japanese.PatientName.phonetic == "やまだ^たろう"
    assert b"\x1b$B" in inflated(ef.free_text(syntax, "japanese"))      # ISO 2022 escapes


def test_identifying_values_of_a_file():
    raw = ef.free_text(ExplicitVRLittleEndian, "korean")
    assert identifying_values(raw) == sorted([
        "Hong", "Gildong", "KOBAYASHI", "TAROU", "NAKAMURA", "KENTAROU", "SUZUKI", "HANAKO",
        ef.PATIENT_ID, "OPID55667", "OPID88990", ef.ACCESSION, "19380417",
        "12 LINDENWEG, HAMBURG", "+49-40-5550199"])


# -- echo patterns, each in every encoding ------------------------------------------------------

@presets
@syntaxes
@pytest.mark.parametrize("source", ["PatientID", "AccessionNumber"])
def test_ids_echoed_in_study_and_procedure_ids(preset, syntax, source):
    # StudyID (0020,0010) = PatientID or AccessionNumber; AccessionNumber copied into Requested
    # Procedure ID (0040,1001), Scheduled Procedure Step ID (0040,0009, in two sequences) and
    # Performed Procedure Step ID (0040,0253).
    check(ef.echoed_ids(syntax, source), preset)


@presets
@syntaxes
def test_accession_appended_to_study_uid(preset, syntax):
    # The Study Instance UID ends with the accession number (13 digits). internal keeps UIDs,
    # but this one must change, to one valid UID (PS3.5 §9.1) used by every reference to the
    # study in every file; other references stay intact.
    files = ef.uid_study(syntax)
    outs = [read(check(raw, preset)) for raw in files]
    images, kos = outs[:3], outs[3]
    references = [ds.ReferencedStudySequence[0] for ds in images if "ReferencedStudySequence" in ds]
    if preset == "internal":           # research removes the sequence (X in Table E.1-1)
        assert len(references) == 3
    study_uids = {ds.StudyInstanceUID for ds in outs}
    study_uids |= {item.ReferencedSOPInstanceUID for item in references}
    study_uids.add(kos.CurrentRequestedProcedureEvidenceSequence[0].StudyInstanceUID)
    assert len(study_uids) == 1, study_uids
    new = study_uids.pop()
    assert new != ef.UID_WITH_ACCESSION and UID.fullmatch(new) and len(new) <= 64
    series = kos.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == images[0].SeriesInstanceUID
    assert series.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == images[0].SOPInstanceUID


@presets
@syntaxes
@pytest.mark.parametrize("charset_id", ["ascii", "latin1"])
def test_name_and_id_in_mitra_private_blocks(preset, syntax, charset_id):
    # "MITRA OBJECT UTF8 ATTRIBUTES 1.0" (0033,xx13) name in UTF-8, (0033,xx10) PatientID;
    # "MITRA LINKED ATTRIBUTES 1.0" (0031,xx20) PatientID. internal keeps private blocks; in
    # implicit VR these elements have no VR to tell that they hold text.
    check(ef.mitra(syntax, charset_id), preset)


@presets
@syntaxes
@pytest.mark.parametrize("charset_id", list(ef.CHARSETS))
def test_name_in_free_text(preset, syntax, charset_id):
    # AdditionalPatientHistory, StudyDescription, ImageComments, PatientComments hold the name
    # (other case, other order) and the ID; Specific Character Set (0008,0005): none,
    # ISO_IR 100, ISO_IR 192, ISO 2022 IR 87 (Japanese), ISO 2022 IR 149 (Korean), PS3.3 C.12.1.1.2.
    check(ef.free_text(syntax, charset_id), preset)


@presets
@syntaxes
def test_owner_of_an_animal(preset, syntax):
    # Responsible Person (0010,2297) and Responsible Organization (0010,2299) identify the
    # owner of a veterinary or research subject: internal hides them as patient identity.
    check(ef.animal(syntax), preset, ["BRANDT", "HEIKE", ef.OWNER_ORGANIZATION])


# -- consistency across a study -----------------------------------------------------------------

@syntaxes
def test_study_ids_consistent_under_internal(syntax):
    files = ef.study(syntax)
    raw_outs = [anonymize(raw, "internal") for raw in files]
    outs = [read(out) for out in raw_outs]
    originals = read(files[0])
    for keyword in ("StudyID", "RequestedProcedureID", "PerformedProcedureStepID"):
        new = {ds.get(keyword) for ds in outs}
        assert len(new) == 1, (keyword, new)
        value = new.pop()
        assert value and value != originals.get(keyword), (keyword, value)
    for ds in outs:
        assert ds.StudyID == ds.PatientID               # StudyID was the PatientID
        assert ds.RequestedProcedureID == ds.AccessionNumber     # was the accession number
    for raw, out in zip(files, raw_outs):
        assert_no_leak(raw, out, identifying_values(raw))


# -- paths --------------------------------------------------------------------------------------

TREE = {   # relative path: (series, index)
    "PID4711X/YAMADA_TAROU/series1/IM0001.dcm": (1, 0),
    "PID4711X/YAMADA_TAROU/series1/IM0002.dcm": (1, 1),
    "PID4711X/YAMADA_TAROU/series2/IM0001.dcm": (2, 0),
    "PID4711X/YAMADA_TAROU/series2/Yamada_Tarou_0002.dcm": (2, 1),
}


def write_export(root: Path) -> dict[tuple[int, int], bytes]:
    """The export tree of TREE; {(SeriesNumber, InstanceNumber): file bytes}."""
    files = {}
    for rel, (series, index) in TREE.items():
        raw = ef.encode(ef.image(index, series), ExplicitVRLittleEndian)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(raw)
        files[series, index + 1] = raw
    return files


def outputs_by_instance(dst: Path) -> dict[tuple[int, int], Path]:
    found = {}
    for path in sorted(p for p in dst.rglob("*") if p.is_file()):
        ds = pydicom.dcmread(path)
        found[int(ds.SeriesNumber), int(ds.InstanceNumber)] = path.relative_to(dst)
    return found


def shared_depth(a: Path, b: Path) -> int:
    """How many leading folders two relative file paths share."""
    return sum(1 for _ in itertools.takewhile(lambda p: p[0] == p[1],
                                              zip(a.parent.parts, b.parent.parts)))


def test_paths_hide_identity_under_internal(tmp_path):
    src, dst = tmp_path / "export", tmp_path / "out"
    files = write_export(src)
    result = invoke("run", "--preset", "internal", "--workers", "1", "--key", KEY.decode(),
                    src, dst)
    assert result.exit_code == 0, result.output
    out = outputs_by_instance(dst)
    assert out.keys() == files.keys()                   # every file written, none twice
    for instance, rel in out.items():
        values = identifying_values(files[instance])
        found = [(part, v) for part in rel.parts for v in values if v.casefold() in part.casefold()]
        assert not found, f"{rel}: {found}"
        assert pydicom_reads_fully((dst / rel).read_bytes())
    inputs = {(series, index + 1): Path(rel) for rel, (series, index) in TREE.items()}
    for a, b in itertools.combinations(sorted(inputs), 2):
        # files that shared folders still share as many (the tree stays a tree)
        assert shared_depth(inputs[a], inputs[b]) == shared_depth(out[a], out[b]), (a, b)


def test_keep_paths_keeps_the_original_paths(tmp_path):
    src, dst = tmp_path / "export", tmp_path / "out"
    write_export(src)
    result = invoke("run", "--preset", "internal", "--workers", "1", "--keep-paths",
                    "--key", KEY.decode(), src, dst)
    assert result.exit_code == 0, result.output
    assert sorted(str(p) for p in outputs_by_instance(dst).values()) == sorted(TREE)


# -- honest flags (PS3.15 E.1.1; CID 7050 codes) ------------------------------------------------

def method_codes(ds) -> list[str]:
    return [item.CodeValue for item in ds.get("DeidentificationMethodCodeSequence", [])]


def test_research_says_identity_removed():
    out = read(anonymize(ef.encode(ef.image(), ExplicitVRLittleEndian), "research"))
    assert out.PatientIdentityRemoved == "YES"
    assert "113100" in method_codes(out)                # Basic Application Confidentiality Profile


def test_kept_name_is_not_claimed_removed():
    raw = ef.encode(ef.image(), ExplicitVRLittleEndian)
    policy = fastanon.Policy.preset("research").override({"PatientName": "keep"})
    out = read(fastanon.anonymize(raw, policy, key=KEY))
    assert out.PatientName == ef.PATIENT_NAME           # the policy was applied as asked
    assert out.PatientIdentityRemoved == "NO"
    assert "113100" not in method_codes(out)
    warnings = [f for f in fastanon.inspect(raw, policy, key=KEY) if f.kind == "warning"]
    assert "identity-not-removed" in [f.code for f in warnings]


@pytest.mark.parametrize("syntax", ef.SYNTAXES[:3], ids=ef.SYNTAX_IDS[:3])   # not Deflated:
def test_masks_clean_pixel_data(syntax):                                    # masks refused there
    raw = ef.burned_in(syntax)
    masked = read(anonymize(raw, "research", masks=[fastanon.Mask(0, 0, 2, 2)]))
    assert masked.BurnedInAnnotation == "NO"
    assert "113101" in method_codes(masked)             # Clean Pixel Data Option
    expected = [[0, 0, 0x80, 0x80]] * 2 + [[0x80] * 4] * 2     # the 2x2 corner is black
    assert masked.pixel_array.tolist() == expected
    plain = read(anonymize(raw, "research"))
    assert plain.BurnedInAnnotation == "YES"
    assert "113101" not in method_codes(plain)


# -- inspect explains the echoes ----------------------------------------------------------------

def test_inspect_reports_study_id_echo():
    raw = ef.echoed_ids(ExplicitVRLittleEndian, "PatientID")
    found = [f for f in fastanon.inspect(raw, "internal", key=KEY)
             if f.kind == "element" and f.keyword == "StudyID"]
    assert len(found) == 1, found
    assert found[0].action != "keep" and "PatientID" in found[0].reason, found[0]


# --- what a policy says of echoes, and the audit of a file whose burned-in text stays -------------

def test_keep_echoes_and_identifying_in_a_policy_file(tmp_path):
    """keep_echoes keeps an attribute verbatim though it repeats the identity; identifying adds
    an attribute whose value is searched like the patient's own (here the Study ID)."""
    raw = ef.echoed_ids(ExplicitVRLittleEndian, "PatientID")
    policy = tmp_path / "p.toml"
    policy.write_text('extends = "internal"\nkeep_echoes = ["StudyID"]\n')
    out = read(anonymize(raw, fastanon.Policy.from_file(policy)))
    assert out.StudyID == ef.PATIENT_ID and out.PatientID != ef.PATIENT_ID
    assert out.RequestedProcedureID != ef.ACCESSION               # the others still cleaned

    ds = read(raw)
    ds.StudyDescription = "study " + ds.StudyID[::-1]             # a value only a policy knows
    ds.add_new(0x00321060, "LO", "RP " + ds.StudyID[::-1])       # RequestedProcedureDescription
    ds.StudyID = ds.StudyID[::-1]
    raw = ef.encode(ds, ExplicitVRLittleEndian)
    policy.write_text('extends = "internal"\nidentifying = ["StudyID"]\n'
                      'keep_echoes = ["StudyID"]\n')
    out = read(anonymize(raw, fastanon.Policy.from_file(policy)))
    assert out.StudyDescription == "study" and out.RequestedProcedureDescription == "RP"
    assert read(anonymize(raw, "internal")).StudyDescription == ds.StudyDescription


def test_burned_in_text_left_where_no_mask_rule_matched_is_audited(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "us.dcm").write_bytes(ef.burned_in())
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "other device"\nmatch = { Manufacturer = "NOBODY" }\n'
                     'masks = ["0,0,2,2"]\n')
    result = invoke("run", "--workers", "1", "--key", "k", "--mask-rules", rules, "--audit",
                    tmp_path / "audit.csv", src, tmp_path / "out")
    assert result.exit_code == 0
    assert "Burned In Annotation is YES and no mask rule matched" in result.stderr
    assert "Burned In Annotation is YES" in (tmp_path / "audit.csv").read_text()
    assert pydicom.dcmread(tmp_path / "out/us.dcm").BurnedInAnnotation == "YES"


# --- what a review of the echo cleaning found ------------------------------------------------------

def _small(**attributes) -> bytes:
    ds = pydicom.Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = ef.SECONDARY_CAPTURE, ef.ROOT + ".9"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = ef.ROOT + ".1", ef.ROOT + ".2"
    for keyword, value in attributes.items():
        if isinstance(value, tuple):
            ds.add_new(*value)
        else:
            setattr(ds, keyword, value)
    return ef.encode(ds, ExplicitVRLittleEndian)


def test_a_match_in_another_case_of_a_non_ascii_name():
    """Turkish dotless ı: 'IŞIK'.lower() is not 'Işık'.lower(); no KeyError, the name goes."""
    raw = _small(SpecificCharacterSet="ISO_IR 148", PatientName="Işık^Ömer", PatientID="TK1234",
                 StudyDescription="IŞIK head")
    found = [f for f in fastanon.inspect(raw, "internal") if f.path == "StudyDescription"]
    assert found[0].action == "clean" and "Işık" in found[0].reason
    assert read(anonymize(raw)).StudyDescription == "head"


def test_coded_attributes_that_equal_an_id_keep_their_defined_terms():
    raw = _small(PatientID="HFS", PatientPosition="HFS", BurnedInAnnotation="YES",
                 OtherPatientIDs="YES", StudyID="HFS")
    out = read(anonymize(raw))
    assert (out.PatientPosition, out.BurnedInAnnotation) == ("HFS", "YES")
    assert out.StudyID == out.PatientID != "HFS"                    # an identifier is cleaned


def test_a_standard_binary_value_is_not_overwritten():
    document = bytes(range(256)) * 64 + b" Lee " + bytes(64)
    raw = _small(PatientName="Lee^Ann", PatientID="PID4711X",
                 document=(0x00420011, "OB", document))              # EncapsulatedDocument
    assert read(anonymize(raw))[0x00420011].value == read(raw)[0x00420011].value


def test_bulk_values_are_not_searched(tmp_path):
    """A top-level value of 64 KiB or more (Float Pixel Data here) is bulk: not copied into
    memory to be searched, and left as it is."""
    bulk = b"PID4711X" * (1 << 18)                                  # 2 MiB
    raw = _small(PatientID="PID4711X", StudyID="PID4711X", floats=(0x7FE00008, "OF", bulk))
    out = read(anonymize(raw))
    assert out[0x7FE00008].value == bulk and out.StudyID != "PID4711X"


def test_lower_case_file_id_folders_follow_the_dicomdir_records():
    from fastanon.echoes import Echoes
    from fastanon.charsets import Charset
    from fastanon.scan import parse
    raw = _small(PatientID="SMITH")
    echoes = Echoes(parse(raw).dataset, Charset.of(""), KEY)
    assert echoes.clean_component("smith_01") == echoes.clean_component("SMITH_01") != "SMITH_01"
    assert re.fullmatch(r"[A-Z2-7]{8}", echoes.clean_component("smith_01"))


def test_keep_echoes_is_not_called_identity_removed(tmp_path):
    policy = tmp_path / "p.toml"
    policy.write_text('extends = "research"\nkeep_echoes = ["ImageComments"]\n'
                      '[tags]\nImageComments = "keep"\n')
    raw = _small(PatientName="DOE^JOHN", PatientID="PAT4711", ImageComments="Doe John PAT4711")
    chosen = fastanon.Policy.from_file(policy)
    out = read(anonymize(raw, chosen))
    assert out.ImageComments == "Doe John PAT4711" and out.PatientIdentityRemoved == "NO"
    assert "identity-not-removed" in [f.code for f in fastanon.inspect(raw, chosen)]


@pytest.mark.parametrize("charset, name, text", [
    ("\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎", "山田太郎 CT"),
    ("GB18030", "Wang^Xiaoming=王^小明", "王小明 scan"),
    ("ISO_IR 192", "Kim^Minsu=김^민수", "김민수 scan"),
])
def test_ideographic_names_written_as_one_word(charset, name, text):
    raw = _small(SpecificCharacterSet=charset.split("\\") if "\\" in charset else charset,
                 PatientName=name, PatientID="PID4711X", StudyDescription=text)
    assert read(anonymize(raw)).StudyDescription == text.split()[-1]


def test_undeclared_8_bit_names_are_found():
    """No (0008,0005), Latin-1 bytes all the same (as many writers do): read as Latin-1."""
    raw = _small(PatientName="YYYYYY^Hans", PatientID="PID4711X", StudyDescription="XXXXXX knee")
    raw = raw.replace(b"YYYYYY", b"M\xfcller").replace(b"XXXXXX", b"M\xfcller")
    assert raw.count(b"M\xfcller") == 2
    out = anonymize(raw)
    assert b"M\xfcller" not in out and read(out).StudyDescription == "knee"


def test_a_number_that_repeats_a_numeric_id_gets_a_number():
    """IS values are ID-like too (issue: SH/LO/CS/IS): a private IS copy of a numeric PatientID
    becomes a stable number valid for IS (PS3.5 Table 6.2-1); short numbers are left alone."""
    raw = _small(PatientID="4711001", InstanceNumber="4", copy=(0x00091010, "IS", "4711001"),
                 creator=(0x00090010, "LO", "ACME"))
    out = read(anonymize(raw))
    value = str(out[0x00091010].value)
    assert value != "4711001" and value.isdigit() and int(value) < 2 ** 31
    assert value == str(read(anonymize(raw))[0x00091010].value) and out.InstanceNumber == 4
