"""Clinical trials: the values a sponsor prescribes (a lookup table) everywhere the originals
were, the Clinical Trial modules written whole (dciodvfy reads them), dates moved by the
table's offsets, a patient missing from the table refused, the same tree with workers."""

from __future__ import annotations

import filecmp
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from conftest import read_bytes

KEY = "trial-key"
PATIENTS = (            # original PatientID, PatientName, folder name, StudyDate
    ("MRN-1001", "Doe^Jane", "Doe^Jane MRN-1001", "20240611"),
    ("MRN-1002", "Roe^Richard", "MRN-1002", "20240301"),
    ("MRN-1003", "Smith^Ann", "smith_ann", "20231224"),
)
TABLE = (               # written with a byte order mark, quoted values, a UTF-8 name
    '\ufeff"original MRN",PatientID,PatientName,ClinicalTrialSubjectID,"# notes",'
    "date_offset_days\r\n"
    '"MRN-1001",SITE07-0001,"SITE07^Müller, Anna",S07-0001,"enrolled 2024-05-01, arm A",-100\r\n'
    "MRN-1002,SITE07-0002,SITE07^0002,S07-0002,,-200\r\n"
    "MRN-1003,SITE07-0003,SITE07^0003,S07-0003,\"withdrew, kept\",7\r\n")
POLICY = """extends = "research"
[options]
retain_long_modified_dates = true      # dates shifted, not removed: the table's offsets show
[lookup]
file = "subjects.csv"
[trial]
sponsor = "ACME Pharma"
protocol_id = "ACME-301"
protocol_name = "A study of things"
site_id = "SITE07"
site_name = "St Elsewhere"
coordinating_center = "ACME Imaging Core"
"""


def _patient_file(patient_id: str, name: str, date: str, number: int) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(read_bytes("CT_small.dcm")))
    ds.PatientID, ds.PatientName, ds.StudyDate = patient_id, name, date
    ds.StudyID = patient_id                     # a copy of the ID: an echo
    ds.OtherPatientIDs = patient_id
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.2.1125.77.{number}"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _study(root: Path, patients=PATIENTS) -> None:
    for number, (patient_id, name, folder, date) in enumerate(patients):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for image in range(2):
            (root / folder / f"IM{image}.dcm").write_bytes(
                _patient_file(patient_id, name, date, number * 10 + image))


def _site(tmp_path: Path) -> Path:
    (tmp_path / "subjects.csv").write_text(TABLE, encoding="utf-8", newline="")
    (tmp_path / "trial.toml").write_text(POLICY, encoding="utf-8")
    _study(tmp_path / "export")
    return tmp_path


def _moved(date: str, days: int) -> str:
    from datetime import datetime, timedelta

    return (datetime.strptime(date, "%Y%m%d") + timedelta(days=days)).strftime("%Y%m%d")


def _fastanon(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastanon", *args], capture_output=True,
                          text=True, timeout=300, check=False)


def _outputs(root: Path) -> dict[str, pydicom.Dataset]:
    return {str(p.relative_to(root)): pydicom.dcmread(p) for p in sorted(root.rglob("*.dcm"))}


def test_the_tables_values_everywhere_the_originals_were(tmp_path):
    site = _site(tmp_path)
    done = _fastanon("run", "--key", KEY, "--policy", str(site / "trial.toml"),
                     str(site / "export"), str(site / "sending"))
    assert done.returncode == 0, done.stderr
    outputs = _outputs(site / "sending")
    assert len(outputs) == 6
    expected = {"SITE07-0001": ("SITE07^Müller, Anna", "S07-0001", _moved("20240611", -100)),
                "SITE07-0002": ("SITE07^0002", "S07-0002", _moved("20240301", -200)),
                "SITE07-0003": ("SITE07^0003", "S07-0003", _moved("20231224", 7))}
    seen = set()
    for path, ds in outputs.items():
        name, subject, date = expected[ds.PatientID]
        seen.add(ds.PatientID)
        assert str(ds.PatientName) == name
        assert ds.ClinicalTrialSubjectID == subject
        assert ds.StudyID == ""                           # research: Z (emptied)
        assert ds.OtherPatientIDs == ds.PatientID         # the copy has the sponsor's ID too
        assert ds.StudyDate == date                       # moved by the table's offset
        assert ds.ClinicalTrialSponsorName == "ACME Pharma"
        assert ds.ClinicalTrialProtocolID == "ACME-301"
        assert ds.ClinicalTrialSiteID == "SITE07" and ds.ClinicalTrialSiteName == "St Elsewhere"
        assert ds.ClinicalTrialCoordinatingCenterName == "ACME Imaging Core"
        assert ds.ClinicalTrialTimePointID == ""           # Type 2: present, empty
        for keyword, vr in (("ClinicalTrialSponsorName", "LO"), ("ClinicalTrialSubjectID", "LO"),
                            ("ClinicalTrialTimePointID", "LO")):
            assert ds[keyword].VR == vr
        raw = (site / "sending" / path).read_bytes()
        for patient_id, original, folder, _ in PATIENTS:
            assert patient_id.encode() not in raw and original.split("^")[0].encode() not in raw
        assert ds.SpecificCharacterSet == "ISO_IR 100"    # CT_small's: it holds the ü
    assert seen == set(expected)
    folders = sorted(p.name for p in (site / "sending").iterdir())
    assert "Doe^Jane SITE07-0001" not in folders            # the name goes from paths too
    assert not any("MRN" in f or "Doe" in f or "smith" in f.lower() for f in folders), folders
    assert folders[:2] == ["SITE07-0002", "SITE07_Müller_Anna SITE07-0001"]   # the table's
    assert "_" in folders[2] and len(folders) == 3    # smith_ann: its parts' pseudonyms


def test_copies_kept_by_the_policy_get_the_prescribed_values(tmp_path):
    """internal keeps StudyID: a copy of the PatientID there becomes the sponsor's ID, not a
    pseudonym, and so does a folder named by it."""
    site = _site(tmp_path)
    done = _fastanon("run", "--key", KEY, "--preset", "internal", "--lookup",
                     str(site / "subjects.csv"), str(site / "export"), str(site / "internal"))
    assert done.returncode == 0, done.stderr
    for ds in _outputs(site / "internal").values():
        assert ds.PatientID.startswith("SITE07-")
        assert ds.StudyID == ds.PatientID == ds.OtherPatientIDs
    assert "SITE07-0002" in {p.name for p in (site / "internal").iterdir()}


def test_the_same_tree_with_and_without_workers(tmp_path):
    site = _site(tmp_path)
    for workers in ("1", "2"):
        done = _fastanon("run", "--key", KEY, "--workers", workers, "--policy",
                         str(site / "trial.toml"), str(site / "export"),
                         str(site / f"out{workers}"))
        assert done.returncode == 0, done.stderr
    one = sorted(p.relative_to(site / "out1") for p in (site / "out1").rglob("*.dcm"))
    two = sorted(p.relative_to(site / "out2") for p in (site / "out2").rglob("*.dcm"))
    assert one == two and len(one) == 6
    match, mismatch, errors = filecmp.cmpfiles(site / "out1", site / "out2",
                                               [str(p) for p in one], shallow=False)
    assert not mismatch and not errors


def test_a_patient_missing_from_the_table_is_refused_or_pseudonymized(tmp_path):
    site = _site(tmp_path)
    _study(site / "export", [("MRN-9999", "Late^Comer", "latecomer", "20240101")])
    done = _fastanon("run", "--key", KEY, "--policy", str(site / "trial.toml"),
                     str(site / "export"), str(site / "sending"))
    assert done.returncode == 1
    assert "latecomer/IM0.dcm" in done.stderr and "not in the lookup table" in done.stderr
    assert "MRN-9999" not in done.stderr                     # named by file, not by its ID
    assert not (site / "sending" / "latecomer").exists()
    assert len(list((site / "sending").rglob("*.dcm"))) == 6
    done = _fastanon("run", "--key", KEY, "--policy", str(site / "trial.toml"),
                     "--lookup-missing", "pseudonym", str(site / "export"), str(site / "all"))
    assert done.returncode == 0, done.stderr
    late = [ds for ds in _outputs(site / "all").values() if ds.PatientID.startswith("SITE07")
            is False]
    assert len(late) == 2 and all(ds.PatientID != "MRN-9999" for ds in late)


def test_the_command_line_gives_the_same_as_the_policy_file(tmp_path):
    site = _site(tmp_path)
    (site / "plain.toml").write_text('extends = "research"\n[options]\n'
                                     "retain_long_modified_dates = true\n")
    done = _fastanon("run", "--key", KEY, "--policy", str(site / "plain.toml"), "--lookup",
                     str(site / "subjects.csv"), "--trial-sponsor", "ACME Pharma",
                     "--trial-protocol", "ACME-301", "--trial-site", "SITE07",
                     str(site / "export"), str(site / "cli"))
    assert done.returncode == 0, done.stderr
    for ds in _outputs(site / "cli").values():
        assert ds.PatientID.startswith("SITE07-") and ds.ClinicalTrialSiteID == "SITE07"
        assert ds.ClinicalTrialProtocolName == ""        # Type 2 not given: empty


@pytest.mark.parametrize("table,words", [
    ("MRN,PatientNmae\nMRN-1001,X\n", "not a DICOM keyword"),
    ("MRN,Rows\nMRN-1001,1\n", "gives text values only"),
    ("MRN,PatientID\nMRN-1001,A\nMRN-1001,B\n", "in the table already"),
    ("MRN,StudyID\nMRN-1001,ABCDEFGHIJKLMNOPQ\n", "longer than SH allows"),
    ("MRN,PatientID,date_offset_days\nMRN-1001,A,soon\n", "whole number of days"),
    ("MRN,PatientID\nMRN-1001\n", "1 value(s) for 2 column(s)"),
])
def test_a_table_that_cannot_be_used_is_refused_before_anything(tmp_path, table, words):
    _study(tmp_path / "export")
    (tmp_path / "bad.csv").write_text(table)
    done = _fastanon("run", "--key", KEY, "--lookup", str(tmp_path / "bad.csv"),
                     str(tmp_path / "export"), str(tmp_path / "out"))
    assert done.returncode == 2 and words in done.stderr, done.stderr
    assert "bad.csv" in done.stderr and not (tmp_path / "out").exists()


def test_a_trial_needs_its_sponsor_protocol_and_subject_ids(tmp_path):
    _study(tmp_path / "export")
    (tmp_path / "names.csv").write_text("MRN,PatientName\nMRN-1001,A^B\n")
    for args, words in ((["--trial-sponsor", "ACME"], "protocol id"),
                        (["--trial-sponsor", "ACME", "--trial-protocol", "P"],
                         "subject ID comes from the lookup table"),
                        (["--lookup", str(tmp_path / "names.csv"), "--trial-sponsor", "ACME",
                          "--trial-protocol", "P"], "ClinicalTrialSubjectID or PatientID")):
        done = _fastanon("run", "--key", KEY, *args, str(tmp_path / "export"),
                         str(tmp_path / "out"))
        assert done.returncode == 2 and words in done.stderr, (args, done.stderr)
    assert not (tmp_path / "out").exists()


DCIODVFY = shutil.which("dciodvfy")


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) not installed")
def test_the_clinical_trial_modules_pass_dciodvfy(tmp_path):
    """The outputs gain no error from dciodvfy; a file with only part of the modules does (the
    check can fail)."""
    site = _site(tmp_path)
    assert _fastanon("run", "--key", KEY, "--policy", str(site / "trial.toml"),
                     str(site / "export"), str(site / "sending")).returncode == 0

    def errors(path: Path) -> list[str]:
        run = subprocess.run([DCIODVFY, str(path)], capture_output=True, timeout=120)
        return [line for line in (run.stdout + run.stderr).decode("latin-1").splitlines()
                if line.startswith("Error")]

    before = errors(site / "export" / "MRN-1002" / "IM0.dcm")
    for path in sorted((site / "sending").rglob("*.dcm")):
        assert errors(path) == before, path
    partial = pydicom.dcmread(site / "export" / "MRN-1002" / "IM0.dcm")
    partial.ClinicalTrialSponsorName = "ACME Pharma"           # the module begun, not whole
    partial.save_as(tmp_path / "partial.dcm")
    assert [e for e in errors(tmp_path / "partial.dcm") if "Module=<ClinicalTrialSubject>" in e]


def test_a_kept_age_says_what_the_kept_dates_say(tmp_path):
    """An infant (born 2003-10-10, seen 2004-01-19) whose file says 000Y: where the output keeps
    both dates moved alike, the age is 003M; where a policy moves only one, it stays as it was;
    an exact {tag: action} mapping changes nothing it does not name."""
    from fastanon.policy import Policy

    import fastanon

    ds = pydicom.dcmread(io.BytesIO(read_bytes("CT_small.dcm")))
    ds.PatientBirthDate, ds.StudyDate, ds.PatientAge = "20031010", "20040119", "000Y"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    raw = out.getvalue()

    def age(policy_text: str) -> tuple[str, str, str]:
        path = tmp_path / "p.toml"
        path.write_text('extends = "internal"\n[tags]\n' + policy_text)
        result = pydicom.dcmread(io.BytesIO(fastanon.anonymize(raw, Policy.from_file(path),
                                                               key=KEY)))
        return result.PatientAge, result.get("PatientBirthDate", ""), result.StudyDate

    moved = age('StudyDate = "shift"\nPatientBirthDate = "shift"\n')
    assert moved[0] == "003M" and moved[1] != "20031010" and moved[2] != "20040119"
    assert age('PatientBirthDate = "keep"\n') == ("003M", "20031010", "20040119")
    assert age('StudyDate = "shift"\nPatientBirthDate = "keep"\n')[0] == "000Y"
    exact = pydicom.dcmread(io.BytesIO(fastanon.anonymize(raw, {"PatientName": "remove"})))
    assert exact.PatientAge == "000Y"


def test_a_dicomdir_is_not_refused_for_having_no_patient_of_its_own(tmp_path):
    """A DICOMDIR holds its patients in its records, not at its top level: it is cleaned as
    without a table, not refused as a patient missing from it."""
    import fastanon
    from fastanon.lookup import Lookup
    from fastanon.policy import Policy, trial_policy

    (tmp_path / "subjects.csv").write_text(TABLE, encoding="utf-8", newline="")
    policy = trial_policy(Policy.preset("research"), None, Lookup.load(tmp_path / "subjects.csv"))
    out = fastanon.anonymize(read_bytes("dicomdirtests/DICOMDIR"), policy, key=KEY)
    assert pydicom.dcmread(io.BytesIO(out)).DirectoryRecordSequence
    with pytest.raises(fastanon.FastanonError, match="not in the lookup table"):
        fastanon.anonymize(read_bytes("CT_small.dcm"), policy, key=KEY)


def test_a_dicomdirs_records_carry_the_values_its_files_get(tmp_path):
    """A file set with its DICOMDIR (pydicom's dicomdirtests): the patient records get the
    table's values, as the images do, and each record's ReferencedFileID names a file written
    (the folder named by a PatientID gets the sponsor's ID, a valid File ID)."""
    from conftest import TEST_FILES_DIR

    shutil.copytree(Path(TEST_FILES_DIR) / "dicomdirtests", tmp_path / "src",
                    ignore=shutil.ignore_patterns("DICOMDIR-*", "README.txt", "TINY_ALPHA"))
    (tmp_path / "t.csv").write_text("ID,PatientID,PatientName\n77654033,S070001,SITE07^0001\n"
                                    "98890234,S070002,SITE07^0002\n")
    done = _fastanon("run", "--key", KEY, "--lookup", str(tmp_path / "t.csv"),
                     str(tmp_path / "src"), str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    dicomdir = pydicom.dcmread(tmp_path / "out" / "DICOMDIR")
    patients = [(r.PatientID, str(r.PatientName)) for r in dicomdir.DirectoryRecordSequence
                if r.DirectoryRecordType == "PATIENT"]
    assert patients == [("S070001", "SITE07^0001"), ("S070002", "SITE07^0002")]
    referenced = [Path(tmp_path / "out", *r.ReferencedFileID)
                  for r in dicomdir.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
    assert referenced and all(p.exists() for p in referenced)
    assert {pydicom.dcmread(p).PatientID for p in referenced} == {"S070001", "S070002"}
    assert (tmp_path / "out" / "S070001").is_dir()
