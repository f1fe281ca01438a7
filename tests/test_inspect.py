"""inspect(): findings per element and the warnings."""

import io

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

import fastanon
from conftest import read_bytes


def _file(modality="US", burned=None, syntax=ExplicitVRLittleEndian, extra=None) -> bytes:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.6.1", "1.2.3.4"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Smith^Anna", "MRN778899", "19800512"
    ds.Modality = modality
    ds.ImageComments = "follow-up for Smith, MRN778899"
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = ds.SOPClassUID, "1.2.3.5"
    ds.ReferencedImageSequence = Sequence([ref])
    ds.add_new(0x00090010, "LO", "ACME")
    ds.add_new(0x00091001, "LO", "Anna Smith")
    if burned:
        ds.BurnedInAnnotation = burned
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated, ds.SamplesPerPixel = 8, 1
    ds.PixelData = b"\0" * 4
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _codes(findings):
    return [f.code for f in findings if f.kind == "warning"]


def test_elements_paths_categories_actions():
    found = {f.path: f for f in fastanon.inspect(_file(), "research") if f.kind == "element"}
    name = found["PatientName"]
    assert (name.category, name.action, name.value) == ("patient identity", "empty", "Smith^Anna")
    assert "E.1-1" in name.reason and "hash" in name.alternatives
    nested = found["ReferencedImageSequence[0].ReferencedSOPInstanceUID"]
    assert nested.action == "uid" and nested.category == "uids"
    assert found["(0009,1001)"].action == "remove"
    assert found["(0009,1001)"].category == "private tags"
    assert found["ImageComments"].action == "remove"


def _without_echo_cleaning(name):
    return fastanon.Policy.preset(name).replace(clean_echoes=False)


def test_warnings_internal():
    codes = _codes(fastanon.inspect(_file(), "internal"))
    assert "burned-in-annotation" in codes          # US without BurnedInAnnotation
    assert "private-tags-kept" in codes
    assert "identifying-echo" not in codes          # internal cleans what repeats the identity
    cleaned = {f.path: f for f in fastanon.inspect(_file(), "internal")
               if f.kind == "element" and f.action == "clean"}
    assert set(cleaned) == {"ImageComments", "(0009,1001)"}
    assert "PatientID 'MRN778899'" in cleaned["ImageComments"].reason
    echoes = [f for f in fastanon.inspect(_file(), _without_echo_cleaning("internal"))
              if f.code == "identifying-echo"]
    assert {f.path for f in echoes} == {"ImageComments", "(0009,1001)"}
    assert "MRN778899" in echoes[0].message or "Smith" in echoes[0].message


def test_warnings_research_and_burned_in():
    assert _codes(fastanon.inspect(_file(burned="NO"), "research")) == []
    assert _codes(fastanon.inspect(_file(modality="CT"), "research")) == []
    assert _codes(fastanon.inspect(_file(modality="CT", burned="YES"), "research")) == \
        ["burned-in-annotation"]


def test_clean_echoes_cuts_the_identity_out_of_what_is_kept():
    policy = fastanon.Policy.preset("internal")
    assert policy.clean_echoes
    assert "identifying-echo" not in _codes(fastanon.inspect(_file(), policy))
    out = pydicom.dcmread(io.BytesIO(fastanon.anonymize(_file(), policy, key="k")))
    assert out.ImageComments == "follow-up for"
    # private kept by internal: nothing but the name, so a pseudonym of the value stands there
    assert out[0x00091001].value == fastanon.uids.pseudonym(b"k", "Anna Smith", 16)
    assert out.SOPInstanceUID == "1.2.3.4"


def test_compressed_pixel_data_warning():
    raw = read_bytes("SC_rgb_jpeg_gdcm.dcm")
    assert "compressed-pixel-data" in _codes(fastanon.inspect(raw, "research"))


def test_summary_and_dict():
    findings = fastanon.inspect(read_bytes("CT_small.dcm"))
    summary = fastanon.summarize(findings)
    assert summary["patient identity"] >= 4 and summary["private tags"] > 0
    row = findings[0].as_dict()
    assert set(row) >= {"path", "tag", "keyword", "vr", "value", "category", "action", "reason"}
