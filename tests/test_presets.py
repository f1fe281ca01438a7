"""Presets and policy files: loading, extends, options, categories, overrides, errors."""

import io

import pydicom
import pytest

import fastanon
from fastanon import Policy, PolicyError, categories, presets
from conftest import part10, read_bytes


def test_names_and_load():
    assert presets.names() == ["internal", "research"]
    research = Policy.preset("research")
    assert research is Policy.preset("research")          # built once per process
    assert research.description and research.private.name == "remove"
    with pytest.raises(PolicyError, match="unknown preset"):
        Policy.preset("nope")


def test_internal_hides_identity_and_contact_only():
    internal = Policy.preset("internal")
    assert internal.action_for(0x00100010).name == "hash"        # PatientName
    # Type-aware: emptied / removed, unless the file's IOD requires a value (plan.TYPED).
    assert internal.action_for(0x00100030).name == "Z"           # PatientBirthDate
    assert internal.action_for(0x00101040).name == "X"           # PatientAddress
    for kept in (0x00080020, 0x00080080, 0x00081010, 0x0020000D, 0x00081030, 0x00090010):
        assert internal.action_for(kept).name == "keep"


def test_policy_file_extends(tmp_path):
    base = tmp_path / "base.toml"
    base.write_text('extends = "research"\n[options]\nretain_long_modified_dates = true\n'
                    '[tags]\nPatientAge = "keep"\n')
    child = tmp_path / "child.toml"
    child.write_text('extends = "base.toml"\nname = "mine"\n[categories]\ndevice = "keep"\n'
                     '[tags]\nStudyDescription = "replace:CT study"\n"(0008,0080)" = "remove"\n')
    policy = Policy.from_file(child)
    assert policy.name == "mine"
    assert policy.action_for(0x00101010).name == "keep"          # from base
    assert policy.action_for(0x00080020).name == "shift"         # option from base
    assert policy.action_for(0x00081010).name == "keep"          # category device
    assert policy.action_for(0x00081030) == fastanon.Action("replace", "CT study")
    assert policy.action_for(0x00080080).name == "remove"
    assert "device" in policy.reason_for(0x00081010)
    out = pydicom.dcmread(io.BytesIO(fastanon.anonymize(read_bytes("CT_small.dcm"), policy)))
    assert out.StudyDate != "20040119" and len(out.StudyDate) == 8


@pytest.mark.parametrize("text,message", [
    ('extends = "research"\nfoo = 1\n', "unknown policy key"),
    ('extends = "research"\n[tags]\nNoSuchKeyword = "remove"\n', "not a DICOM tag"),
    ('extends = "research"\n[tags]\nPatientName = "explode"\n', "unknown action"),
    ('extends = "research"\n[options]\nretain_long_full_dates = true\n'
     'retain_long_modified_dates = true\n', "cannot be used together"),
    ('extends = "research"\n[categories]\nsecrets = "remove"\n', "unknown category"),
    ('extends = "self.toml"\n', "loops"),
    ('extends = "research"\n[tags\n', "not valid TOML"),
])
def test_policy_file_errors(tmp_path, text, message):
    path = tmp_path / "self.toml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=message):
        Policy.from_file(path)


def test_override_keeps_semantics_and_categories():
    base = Policy.preset("internal")
    p = base.override({"PatientAge": "keep", (0x0008, 0x0080): "remove"})
    assert p.action_for(0x00080080).name == "remove" and base.action_for(0x00080080).name == "keep"
    p = base.override(categories={"private tags": "remove", "dates and times": "shift"})
    assert p.action_for(0x00091001).name == "remove" and p.action_for(0x00080020).name == "shift"
    with pytest.raises(PolicyError):
        base.override({"PatientName": "bogus"})


def test_categories_table():
    table = categories.sensitive_tags()
    assert len(table) >= 653
    assert set(table.values()) <= set(categories.categories())
    assert table[0x00100010] == "patient identity"
    assert table[0x00101040] == "contact"
    assert table[0x00160072] == "coordinates"          # GPSLatitude
    assert table[0x00081010] == "device"               # StationName
    assert table[0x00080080] == "institution"
    assert table[0x00081070] == "staff"                # OperatorsName
    assert table[0x00081030] == "notes and descriptions"
    assert table[0x0020000D] == "uids" and table[0x00080020] == "dates and times"
    assert categories.category_of(0x00091001) == "private tags"
    assert categories.category_of(0x00280010) is None     # Rows: not sensitive
    for category in categories.categories().values():
        assert category.default in category.alternatives or category.name == "other"


def test_replace_is_valid_for_dates_and_numbers():
    policy = {"StudyDate": "replace:yesterday", "StudyTime": "replace", "PatientAge": "replace:abc",
              "SeriesNumber": "replace:XX", "PatientName": "replace:NOBODY",
              "ContentDate": "replace:20000101"}
    out = pydicom.dcmread(io.BytesIO(fastanon.anonymize(read_bytes("CT_small.dcm"),
                                                        {**policy})))
    assert out.StudyDate == "19000101" and out.ContentDate == "20000101"
    assert out.StudyTime == "000000" and out.PatientName == "NOBODY"


def test_hash_is_stable_and_keyed():
    raw = read_bytes("CT_small.dcm")
    policy = {"PatientID": "hash", "AccessionNumber": "hash"}
    one = pydicom.dcmread(io.BytesIO(fastanon.anonymize(raw, policy, key="a")))
    two = pydicom.dcmread(io.BytesIO(fastanon.anonymize(raw, policy, key="a")))
    three = pydicom.dcmread(io.BytesIO(fastanon.anonymize(raw, policy, key="b")))
    assert one.PatientID == two.PatientID != three.PatientID and len(one.PatientID) == 16


def test_safe_private_option_is_creator_aware():
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3"
    ds.add_new(0x00190010, "LO", "GEMS_ACQU_01")
    ds.add_new(0x00191023, "DS", "1.5")        # Table Speed: safe for GEMS_ACQU_01
    ds.add_new(0x00191099, "LO", "secret")     # not listed
    ds.add_new(0x00290010, "LO", "OTHER VENDOR")
    ds.add_new(0x00291023, "DS", "2.5")        # same element number, other creator
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    policy = Policy.from_spec({**presets.spec_of("research"), "private": "safe"})
    out = pydicom.dcmread(io.BytesIO(fastanon.anonymize(buf.getvalue(), policy)))
    assert [int(e.tag) for e in out if e.tag.is_private] == [0x00190010, 0x00191023]


def test_additions_in_every_encoding():
    for name in ("MR_small_implicit.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm",
                 "ExplVR_BigEndNoMeta.dcm", "CT_small.dcm"):
        out = fastanon.anonymize(read_bytes(name), "research")
        ds = pydicom.dcmread(io.BytesIO(out), force=True)
        assert ds.PatientIdentityRemoved == "YES", name
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100", name
        assert list(ds.keys()) == sorted(ds.keys()), name
        again = pydicom.dcmread(io.BytesIO(fastanon.anonymize(out, "research")), force=True)
        assert len(again.DeidentificationMethodCodeSequence) == 1, name   # replaced, not doubled


def test_plan_static_codes_match_decide():
    from fastanon.plan import FileContext
    from fastanon.scan import parse
    plan = Policy.preset("research").compile(key="k")
    parsed = parse(read_bytes("CT_small.dcm"))
    context = FileContext(parsed.dataset, False)
    for index, code in parsed.dataset.table.select(*plan.selection):
        if code in plan.static:
            element = parsed.dataset.element(index)
            assert plan.decide(context, element, code) == plan.static[code]


def test_instance_uids_the_table_does_not_list_are_remapped_consistently(tmp_path):
    """A multi-frame file names its source instance by MultiFrameSourceSOPInstanceUID, which
    Table E.1-1 does not list: research maps it to the source's new SOPInstanceUID; Retain UIDs
    keeps both."""
    from pydicom.dataset import Dataset

    def write(**attributes) -> bytes:
        ds = Dataset()
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
        return part10(ds)

    source_uid = "1.2.826.0.1.3680043.99.1.1"
    source = write(SOPClassUID="1.2.840.10008.5.1.4.1.1.2", SOPInstanceUID=source_uid)
    derived = write(SOPClassUID="1.2.840.10008.5.1.4.1.1.2.1", SOPInstanceUID="1.2.826.0.1.3680043.99.1.2",
                    MultiFrameSourceSOPInstanceUID=source_uid,
                    SOPInstanceUIDOfConcatenationSource="1.2.826.0.1.3680043.99.1.3")
    key = b"review key"
    new_source = pydicom.dcmread(io.BytesIO(fastanon.anonymize(source, "research", key=key)))
    new_derived = pydicom.dcmread(io.BytesIO(fastanon.anonymize(derived, "research", key=key)))
    assert new_derived.MultiFrameSourceSOPInstanceUID == new_source.SOPInstanceUID != source_uid
    assert new_derived.SOPInstanceUIDOfConcatenationSource.startswith("2.25.")
    retain = tmp_path / "retain.toml"
    retain.write_text('extends = "research"\n[options]\nretain_uids = true\n')
    kept = pydicom.dcmread(io.BytesIO(fastanon.anonymize(derived, Policy.from_file(retain), key=key)))
    assert kept.MultiFrameSourceSOPInstanceUID == source_uid


def test_identity_tags_are_the_patient_and_contact_rows_of_the_full_table():
    """identity_tags classifies only as far as it needs: the same rows as the full table."""
    from fastanon.elements import dictionary_entry
    from fastanon.presets._profile_table import PROFILE

    table = categories.sensitive_tags()
    expected = sorted(tag for tag, *_ in PROFILE if isinstance(tag, int) and tag != 0x00120062
                      and table.get(tag) in ("patient identity", "contact")
                      and (dictionary_entry(tag) or ("",))[0] != "SQ")
    assert list(categories.identity_tags()) == expected and 0x00100010 in expected
