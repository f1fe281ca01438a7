"""Small DICOM files, written by pydicom, in which the patient's identity is echoed where real
exports put it (test_echoes.py): StudyID and procedure step IDs copied from PatientID or
AccessionNumber, the accession number appended to the Study Instance UID, the name and ID in
MITRA private blocks, the name in free text in five character sets, an animal's owner.

Every value is distinctive enough that a new UID (2.25. and ~39 digits) or a keyed pseudonym
(16 characters of base32) cannot contain it by chance. Pixel data is a few zero bytes, or none.
"""

from __future__ import annotations

import io

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
                         ExplicitVRLittleEndian, ImplicitVRLittleEndian)

# Every transfer syntax encoding of a native data set (PS3.5 §A.1, A.2, A.3 (retired), A.5).
SYNTAXES = (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
            DeflatedExplicitVRLittleEndian)
SYNTAX_IDS = ("implicit", "explicit", "big-endian", "deflated")

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
KEY_OBJECT_SELECTION = "1.2.840.10008.5.1.4.1.1.88.59"
DETACHED_STUDY = "1.2.840.10008.3.1.2.3.1"       # ReferencedStudySequence's SOP class (PS3.3 C.4.1)
ROOT = "1.2.826.0.1.3680043.9.7777.42"           # series and instance UIDs: nothing identifying

PATIENT_NAME = "YAMADA^TAROU"
PATIENT_ID = "PID4711X"
ACCESSION = "ACC998877"
NUMERIC_ACCESSION = "2024031588771"               # 13 digits: a UID component
UID_WITH_ACCESSION = f"1.2.826.0.1.3680043.10.543.{NUMERIC_ACCESSION}"
OWNER = "BRANDT^HEIKE"                            # veterinary: the owner (PS3.3 C.7.1.1.1.2)
OWNER_ORGANIZATION = "BRANDT HUNDEZUCHT KG"

# (SpecificCharacterSet, PatientName, the name as free text writes it). For the ISO 2022 sets the
# ideographic groups are too short to search for (< 3 characters); the phonetic kana are not.
CHARSETS = {
    "ascii": (None, PATIENT_NAME, "Tarou Yamada"),
    "latin1": ("ISO_IR 100", "MÜLLER^JÜRGEN", "Jürgen Müller"),
    "utf8": ("ISO_IR 192", "ŁUKASZEWICZ^ŻANETA", "Żaneta Łukaszewicz"),
    "japanese": (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう",
                 "やまだ たろう (yamada tarou, 山田太郎)"),
    "korean": (["", "ISO 2022 IR 149"], "Hong^Gildong=洪^吉洞=홍^길동",
               "hong gildong 홍길동"),
}


def image(index: int = 0, series: int = 1, *, charset=None, name: str = PATIENT_NAME,
          accession: str = ACCESSION, study_uid: str = f"{ROOT}.1", pixels: bool = True,
          **values) -> Dataset:
    """One secondary capture image of the patient, with every identifying attribute filled.

    index numbers the instance within the series; values (keyword=value) are set last."""
    ds = Dataset()
    if charset is not None:
        ds.SpecificCharacterSet = charset      # first: pydicom encodes the values with it
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = f"{ROOT}.{series}.{index + 1}"
    ds.StudyDate = ds.SeriesDate = "20240105"
    ds.StudyTime = "101500"
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.ReferringPhysicianName = "DR^WHO"
    ds.PatientName = name
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19380417"
    ds.PatientSex = "M"
    ds.OtherPatientIDs = ["OPID55667", "OPID88990"]
    ds.OtherPatientNames = "KOBAYASHI^TAROU"
    ds.PatientBirthName = "NAKAMURA^KENTAROU"
    ds.PatientMotherBirthName = "SUZUKI^HANAKO"
    ds.PatientAddress = "12 LINDENWEG, HAMBURG"
    ds.PatientTelephoneNumbers = "+49-40-5550199"
    ds.AccessionNumber = accession
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = f"{ROOT}.{series}"
    ds.SeriesNumber = series
    ds.InstanceNumber = index + 1
    if pixels:
        pixel_module(ds, rows=2)
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def pixel_module(ds: Dataset, rows: int, fill: int = 0) -> None:
    """Native 8-bit MONOCHROME2 pixels, rows x rows, all `fill`."""
    ds.Rows = ds.Columns = rows
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes([fill]) * (rows * rows)


def encode(ds: Dataset, syntax: str) -> bytes:
    """The Part 10 file of ds in the given transfer syntax (pydicom writes it)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    ds.file_meta = meta
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def item(**values) -> Dataset:
    out = Dataset()
    for keyword, value in values.items():
        setattr(out, keyword, value)
    return out


def procedure_ids(ds: Dataset, study_id: str, accession: str) -> Dataset:
    """StudyID given; AccessionNumber copied into every procedure ID, as many RIS/modality
    pairs do: Requested Procedure ID (0040,1001), Scheduled Procedure Step ID (0040,0009) in the
    Scheduled Procedure Step Sequence (0040,0100) and in the Request Attributes Sequence
    (0040,0275, PS3.3 C.7.3.1), Performed Procedure Step ID (0040,0253)."""
    ds.StudyID = study_id
    ds.RequestedProcedureID = accession
    ds.ScheduledProcedureStepSequence = Sequence([item(
        ScheduledProcedureStepID=accession, ScheduledProcedureStepDescription="CHEST")])
    ds.RequestAttributesSequence = Sequence([item(
        RequestedProcedureID=accession, ScheduledProcedureStepID=accession)])
    ds.PerformedProcedureStepID = accession
    return ds


def echoed_ids(syntax: str, study_id_from: str, index: int = 0, series: int = 1) -> bytes:
    """StudyID = PatientID (study_id_from "PatientID") or = AccessionNumber; the procedure IDs
    = AccessionNumber."""
    ds = image(index, series)
    return encode(procedure_ids(ds, getattr(ds, study_id_from), ds.AccessionNumber), syntax)


def study(syntax: str) -> list[bytes]:
    """Three files of one study (two series): StudyID = PatientID, procedure IDs = accession."""
    return [echoed_ids(syntax, "PatientID", index, series)
            for series, index in ((1, 0), (1, 1), (2, 0))]


def uid_study(syntax: str) -> list[bytes]:
    """Three images (two series) and a key object selection of one study whose Study Instance UID
    ends with the (numeric) accession number; the images refer to the study in their
    ReferencedStudySequence (0008,1110), the KOS in its Current Requested Procedure Evidence
    Sequence (0040,A375, PS3.3 C.17.6.2)."""
    files = []
    for series, index in ((1, 0), (1, 1), (2, 0)):
        ds = image(index, series, accession=NUMERIC_ACCESSION, study_uid=UID_WITH_ACCESSION)
        ds.ReferencedStudySequence = Sequence([item(
            ReferencedSOPClassUID=DETACHED_STUDY, ReferencedSOPInstanceUID=UID_WITH_ACCESSION)])
        files.append(encode(ds, syntax))
    kos = image(0, 3, accession=NUMERIC_ACCESSION, study_uid=UID_WITH_ACCESSION, pixels=False)
    kos.SOPClassUID = KEY_OBJECT_SELECTION
    kos.Modality = "KO"
    kos.CurrentRequestedProcedureEvidenceSequence = Sequence([item(
        StudyInstanceUID=UID_WITH_ACCESSION,
        ReferencedSeriesSequence=Sequence([item(
            SeriesInstanceUID=f"{ROOT}.1",
            ReferencedSOPSequence=Sequence([item(ReferencedSOPClassUID=SECONDARY_CAPTURE,
                                                 ReferencedSOPInstanceUID=f"{ROOT}.1.1")]))]))])
    files.append(encode(kos, syntax))
    return files


def mitra(syntax: str, charset_id: str = "latin1") -> bytes:
    """The name and ID in the private blocks MITRA (Agfa) PACS write: "MITRA OBJECT UTF8
    ATTRIBUTES 1.0" in group 0033 (xx13: the name, UTF-8 whatever the character set; xx10: the
    ID, an element pydicom's private dictionary does not list) and "MITRA LINKED ATTRIBUTES 1.0"
    in group 0031 (xx20: Global Patient ID). In implicit VR they carry no VR at all."""
    charset, name, _ = CHARSETS[charset_id]
    ds = image(charset=charset, name=name)
    block = ds.private_block(0x0033, "MITRA OBJECT UTF8 ATTRIBUTES 1.0", create=True)
    block.add_new(0x13, "LO", name.encode("utf-8"))
    block.add_new(0x10, "LO", PATIENT_ID)
    linked = ds.private_block(0x0031, "MITRA LINKED ATTRIBUTES 1.0", create=True)
    linked.add_new(0x20, "LO", PATIENT_ID)
    return encode(ds, syntax)


def free_text(syntax: str, charset_id: str) -> bytes:
    """The name (in other case and order) and ID in the free text attributes internal keeps."""
    charset, name, spoken = CHARSETS[charset_id]
    ds = image(charset=charset, name=name)
    ds.AdditionalPatientHistory = f"Mother of {spoken} reports headaches since 2019"
    ds.StudyDescription = f"CHEST {spoken}"
    ds.ImageComments = f"{PATIENT_ID}: scanned again, {spoken} moved"
    ds.PatientComments = f"{spoken} is claustrophobic"
    return encode(ds, syntax)


def animal(syntax: str) -> bytes:
    """A dog: its name after its owner's family name (PS3.3 C.7.1.1.1.2), the owner as
    Responsible Person (0010,2297) and the breeder as Responsible Organization (0010,2299)."""
    ds = image(name="BRANDT^REXFORD")
    ds.PatientSpeciesDescription = "Canine"
    ds.PatientBreedDescription = "Beagle"
    ds.ResponsiblePerson = OWNER
    ds.ResponsiblePersonRole = "OWNER"
    ds.ResponsibleOrganization = OWNER_ORGANIZATION
    return encode(ds, syntax)


def burned_in(syntax: str = ExplicitVRLittleEndian) -> bytes:
    """An image whose pixels show text: Burned In Annotation YES, 4x4 native 8-bit pixels."""
    ds = image(BurnedInAnnotation="YES", pixels=False)
    pixel_module(ds, rows=4, fill=0x80)
    return encode(ds, syntax)
