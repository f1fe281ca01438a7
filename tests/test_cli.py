"""The `fastanon run` command on a real tree, in process (click's CliRunner) and as `python -m`."""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from fastanon.cli import main
from fastanon.pipeline import TEMP_SUFFIX

ROOT = "1.2.826.0.1.3680043.9.7777"     # the UIDs of the inputs
KEY = "test-key-0123456789"


def write_file(path: Path, index: int, rows: int = 16, series: int = 0) -> None:
    """One small CT image written by pydicom, with identifying values to hide."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = f"{ROOT}.{index + 1}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = f"{ROOT}.{index + 1}"
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "PID-123"
    ds.PatientBirthDate = "19700101"
    ds.AccessionNumber = "ACC-77"
    ds.StudyInstanceUID = f"{ROOT}.1000"
    ds.SeriesInstanceUID = f"{ROOT}.200{series}"
    ds.StudyDate = "20200101"
    ds.Modality = "CT"
    ds.InstanceNumber = index + 1
    ds.Rows = ds.Columns = rows
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelRepresentation = 0
    ds.PixelData = bytes((index + i) & 0xFF for i in range(rows * rows * 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_tree(root: Path, count: int = 50) -> dict[str, Path]:
    """count valid files in nested folders named like a patient, a text file, a truncated file."""
    for i in range(count):
        sub = f"DOE_JANE/series{i % 2}" + ("/more" if i % 5 == 0 else "")
        write_file(root / sub / f"IM{i:04d}.dcm", i, series=i % 2)
    text = root / "README.txt"
    text.write_text("not a DICOM file\n")
    whole = (root / "DOE_JANE/series1/IM0001.dcm").read_bytes()
    broken = root / "DOE_JANE/broken.dcm"
    broken.write_bytes(whole[:-100])
    return {"text": text, "broken": broken}


def patient_dir(key: str = KEY) -> str:
    """The output folder of the input folder DOE_JANE, which holds the patient's name: a name
    that could be a File ID component (PS3.10 §8.2) becomes an 8-character keyed pseudonym of
    itself (the same in every file)."""
    from fastanon.uids import pseudonym
    return pseudonym(key.encode(), "file-id:DOE_JANE", 8)


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def outputs(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("input") / "export"
    write_tree(root)
    return root


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


def subprocess_run(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "fastanon", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=120, **kwargs)


def check_tree_result(tree: Path, dst: Path, code: int, stderr: str, before: dict) -> None:
    assert code == 1, stderr
    files = outputs(dst)
    assert len(files) == 50
    for path in files:
        ds = pydicom.dcmread(path)
        assert ds.PatientName != "DOE^JANE" and not ds.SOPInstanceUID.startswith(ROOT)
        ds.pixel_array           # the pixels read too
    assert str(tree / "DOE_JANE/broken.dcm") in stderr
    assert "1 failed" in stderr and "1 skipped (not DICOM)" in stderr and "50 written" in stderr
    assert not (dst / "README.txt").exists() and not (dst / "DOE_JANE/broken.dcm").exists()
    assert tree_hashes(tree) == before           # the input is never modified


def test_tree_in_process(tree, tmp_path):
    before = tree_hashes(tree)
    result = invoke("run", "--workers", "2", "--key", KEY, tree, tmp_path / "out")
    check_tree_result(tree, tmp_path / "out", result.exit_code, result.stderr, before)
    # paths mirrored, but for the patient's name in the folder name
    assert (tmp_path / f"out/{patient_dir()}/series0/more/IM0000.dcm").exists()
    assert not (tmp_path / "out/DOE_JANE").exists()


def test_tree_subprocess(tree, tmp_path):
    before = tree_hashes(tree)
    proc = subprocess_run("run", "--workers", "2", tree, tmp_path / "out")
    check_tree_result(tree, tmp_path / "out", proc.returncode, proc.stderr, before)
    assert proc.stdout == ""


def test_workers_give_identical_outputs(tree, tmp_path):
    for workers in (1, 2):
        invoke("run", "-q", "--workers", workers, "--key", KEY, tree, tmp_path / f"w{workers}")
    one, two = tree_hashes(tmp_path / "w1"), tree_hashes(tmp_path / "w2")
    assert len(one) == 50 and one == two
    invoke("run", "-q", "--workers", 2, "--key", "another key", tree, tmp_path / "other")
    other = tree_hashes(tmp_path / "other")
    assert {k.replace(patient_dir("another key"), "") for k in other} == \
        {k.replace(patient_dir(), "") for k in one}
    assert set(other.values()).isdisjoint(one.values())


def test_key_sources_agree(tree, tmp_path):
    key_file = tmp_path / "site.key"
    key_file.write_text(KEY + "\n")
    invoke("run", "-q", "--key", KEY, tree, tmp_path / "a")
    invoke("run", "-q", "--key-file", key_file, tree, tmp_path / "b")
    invoke("run", "-q", tree, tmp_path / "c", env={"FASTANON_KEY": KEY})
    assert tree_hashes(tmp_path / "a") == tree_hashes(tmp_path / "b") == tree_hashes(tmp_path / "c")
    result = invoke("run", "--key", KEY, "--key-file", key_file, tree, tmp_path / "d")
    assert result.exit_code == 2 and "not both" in result.stderr


def test_rerun_skips_and_overwrite_replaces(tree, tmp_path):
    dst = tmp_path / "out"
    invoke("run", "-q", "--key", KEY, tree, dst)
    first = tree_hashes(dst)
    target = dst / patient_dir() / "series0/IM0002.dcm"
    target.write_bytes(b"changed by hand")
    result = invoke("run", "--key", KEY, tree, dst)
    assert "50 already there" in result.stderr and "0 written" in result.stderr
    assert target.read_bytes() == b"changed by hand"
    result = invoke("run", "--overwrite", "--key", KEY, tree, dst)
    assert "50 written" in result.stderr and tree_hashes(dst) == first


def test_destination_inside_source_is_refused(tree, tmp_path):
    before = tree_hashes(tree)
    for dst in (tree / "anon", tree):
        result = invoke("run", tree, dst)
        assert result.exit_code == 2 and "source" in result.stderr
    assert tree_hashes(tree) == before and not (tree / "anon").exists()
    result = invoke("run", "--audit", tree / "audit.csv", tree, tmp_path / "out")
    assert result.exit_code == 2 and not (tree / "audit.csv").exists()


def test_usage_errors_exit_2(tree, tmp_path):
    cases = [("--preset", "nope"), ("--mask", "1,2,3"), ("--burned-in-annotation", "no"),
             ("--workers", "0"), ("--preset", "research", "--policy", __file__)]
    for extra in cases:
        result = invoke("run", *extra, tree, tmp_path / "out")
        assert result.exit_code == 2, (extra, result.output)
    assert invoke("run", tree / "missing", tmp_path / "out").exit_code == 2
    assert not (tmp_path / "out").exists()


def test_single_file(tree, tmp_path):
    src = tree / "DOE_JANE/series0/more/IM0000.dcm"
    assert invoke("run", "-q", src, tmp_path / "one.dcm").exit_code == 0
    assert pydicom.dcmread(tmp_path / "one.dcm").PatientName == ""
    assert invoke("run", "-q", src, str(tmp_path / "folder") + "/").exit_code == 0
    assert (tmp_path / "folder/IM0000.dcm").exists()
    result = invoke("run", tree / "README.txt", tmp_path / "readme")
    assert result.exit_code == 0 and "1 skipped" in result.stderr


def test_rename_names_outputs_from_new_uids(tree, tmp_path):
    dst = tmp_path / "out"
    result = invoke("run", "--rename", "--workers", 2, "--key", KEY, tree, dst)
    assert result.exit_code == 1
    files = outputs(dst)
    assert len(files) == 50
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        rel = path.relative_to(dst)
        assert rel == Path(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID + ".dcm")
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert len({p.parent.parent for p in files}) == 1 and len({p.parent for p in files}) == 2
    assert "DOE" not in "".join(str(p) for p in files) and ROOT not in "".join(map(str, files))
    again = invoke("run", "--rename", "--key", KEY, tree, dst)       # resumable: same names
    assert "50 already there" in again.stderr


def test_mapping_only_when_asked(tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    invoke("run", "-q", "--key", KEY, "--audit", "audit.csv", tree, "plain")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.csv", "plain"]
    assert not any(p.suffix == ".csv" for p in (tmp_path / "plain").rglob("*"))
    audit = (tmp_path / "audit.csv").read_text()
    assert ROOT not in audit and "DOE^JANE" not in audit      # the audit holds no identifiers

    result = invoke("run", "--key", KEY, "--mapping", "map.csv", tree, "mapped")
    assert result.exit_code == 1
    assert (tmp_path / "map.csv").stat().st_mode & 0o777 == 0o600
    with open(tmp_path / "map.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 50
    for row in rows:
        out = pydicom.dcmread(row["destination"], stop_before_pixels=True)
        assert row["PatientName"] == "DOE^JANE" and row["PatientID"] == "PID-123"
        assert row["new PatientID"] == out.PatientID != "PID-123"
        assert row["StudyInstanceUID"] == f"{ROOT}.1000"
        for name in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            assert row[f"new {name}"] == out[name].value
    assert "RE-IDENTIFICATION KEY" in invoke("run", "--help").output


def test_audit_rows(tree, tmp_path):
    invoke("run", "-q", "--key", KEY, "--audit", tmp_path / "audit.csv", tree, tmp_path / "out")
    with open(tmp_path / "audit.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 52
    status = {Path(r["source"]).name: r for r in rows}
    assert status["README.txt"]["status"] == "skipped"
    assert status["broken.dcm"]["status"] == "failed" and "past the end" in status["broken.dcm"]["reason"]
    written = status["IM0003.dcm"]
    assert written["status"] == "written" and written["preset"] == "research"
    assert int(written["uid"]) >= 3 and int(written["empty"]) >= 1


def test_masks_rules_and_burned_in_annotation(tree, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "odd series"\nmatch = { SeriesInstanceUID = "*.2001" }\n'
                     'masks = ["0,0,4,2"]\n')
    dst = tmp_path / "out"
    result = invoke("run", "-q", "--workers", 2, "--mask-rules", rules, "--burned-in-annotation",
                    "no", "--audit", tmp_path / "audit.csv", "--keep-paths", tree, dst)
    assert result.exit_code == 1
    for i in range(50):
        path = dst / f"DOE_JANE/series{i % 2}" / ("more" if i % 5 == 0 else "") / f"IM{i:04d}.dcm"
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
        if i % 2:
            assert ds.BurnedInAnnotation == "NO" and not pixels[:2, :4].any() and pixels[2:].any()
        else:
            assert "BurnedInAnnotation" not in ds and pixels[:2, :4].any()
    with open(tmp_path / "audit.csv", newline="") as handle:
        rules_used = {r["mask_rule"] for r in csv.DictReader(handle) if r["status"] == "written"}
    assert rules_used == {"odd series", ""}

    masks = tmp_path / "masks.toml"
    masks.write_text('masks = [{ x = 2, y = 2, width = 2, height = 2 }]\n')
    result = invoke("run", "-q", "--mask", "0,0,1,1", "--masks", masks, "--keep-paths", tree,
                    tmp_path / "all")
    ds = pydicom.dcmread(tmp_path / "all/DOE_JANE/series0/IM0002.dcm")
    assert ds.pixel_array[0, 0] == 0 and not ds.pixel_array[2:4, 2:4].any()
    # research marks what it cleaned: masked pixels are Burned In Annotation NO, code 113101
    assert ds.BurnedInAnnotation == "NO"
    assert [i.CodeValue for i in ds.DeidentificationMethodCodeSequence] == ["113100", "113101"]
    result = invoke("run", "-q", "--preset", "internal", "--mask", "0,0,1,1", "--keep-paths", tree,
                    tmp_path / "in")
    assert "BurnedInAnnotation" not in pydicom.dcmread(tmp_path / "in/DOE_JANE/series0/IM0002.dcm")
    both = invoke("run", "--mask", "0,0,1,1", "--mask-rules", rules, tree, tmp_path / "x")
    assert both.exit_code == 2


def test_policy_file(tree, tmp_path):
    policy = tmp_path / "keep-id.toml"
    policy.write_text('extends = "research"\n[tags]\nPatientID = "keep"\n')
    src = tree / "DOE_JANE/series0/more/IM0000.dcm"
    assert invoke("run", "-q", "--policy", policy, src, tmp_path / "out.dcm").exit_code == 0
    ds = pydicom.dcmread(tmp_path / "out.dcm")
    assert ds.PatientID == "PID-123" and ds.PatientName == ""
    assert invoke("run", "-q", "--preset", "internal", src, tmp_path / "int.dcm").exit_code == 0
    ds = pydicom.dcmread(tmp_path / "int.dcm")
    assert ds.StudyDate == "20200101" and ds.PatientID not in ("", "PID-123")


def test_help_has_an_example_everywhere():
    for command in [[]] + [[name] for name in sorted(main.commands)]:
        result = invoke(*command, "--help")
        assert result.exit_code == 0 and "Example" in result.output, command
    result = invoke("--version")
    assert result.exit_code == 0 and "fastanon, version" in result.output


LEAN = """
import sys
from fastanon.cli import main
try:
    main({args!r})
except SystemExit:
    pass
heavy = sorted(m for m in ("pydicom", "numpy") if m in sys.modules)
print("HEAVY", heavy, file=sys.stderr)
"""


@pytest.mark.parametrize("command", [["--help"], ["run", "--help"], ["run"]])
def test_start_up_imports_neither_pydicom_nor_numpy(tree, tmp_path, command):
    if command == ["run"]:
        command = ["run", "-q", "--workers", "1", str(tree), str(tmp_path / "out")]
    proc = subprocess.run([sys.executable, "-c", LEAN.format(args=command)], capture_output=True,
                          text=True, timeout=60)
    assert "HEAVY []" in proc.stderr, proc.stderr
    if command[0] == "run" and len(command) > 2:
        assert len(outputs(tmp_path / "out")) == 50


def test_no_temporary_files_left(tree, tmp_path):
    invoke("run", "-q", "--workers", 2, tree, tmp_path / "out")
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(TEMP_SUFFIX)]


def test_masks_on_compressed_pixels_need_decompress(tmp_path):
    """HTJ2K needs --decompress (refused without); RLE Lossless is masked in its own syntax, or
    decoded to native with --decompress."""
    from conftest import unmaskable
    from pydicom.data import get_testdata_file
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless

    src = tmp_path / "src"
    src.mkdir()
    jpeg = src / "htj2k.dcm"
    jpeg.write_bytes(unmaskable())
    rle = src / "mr-rle.dcm"
    rle.write_bytes(Path(get_testdata_file("MR_small_RLE.dcm", download=False)).read_bytes())
    result = invoke("run", "--mask", "2,3,5,4", src, tmp_path / "refused")
    assert result.exit_code == 1 and str(jpeg) in result.stderr and "1 failed" in result.stderr
    assert "--decompress" in result.stderr
    assert [p.name for p in outputs(tmp_path / "refused")] == ["mr-rle.dcm"]
    ds = pydicom.dcmread(tmp_path / "refused/mr-rle.dcm")
    assert ds.file_meta.TransferSyntaxUID == RLELossless
    assert (ds.pixel_array[3:7, 2:7] == -32768).all() and ds.PatientName == ""
    rle.unlink()
    result = invoke("run", "--mask", "2,3,5,4", "--decompress", src, tmp_path / "out")
    if result.exit_code == 0:       # a decoder is installed
        ds = pydicom.dcmread(tmp_path / "out/htj2k.dcm")
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    rle.write_bytes(Path(get_testdata_file("MR_small_RLE.dcm", download=False)).read_bytes())
    jpeg.unlink()
    result = invoke("run", "--mask", "2,3,5,4", "--decompress", src, tmp_path / "native")
    assert result.exit_code == 0, result.stderr
    ds = pydicom.dcmread(tmp_path / "native/mr-rle.dcm")
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert (ds.pixel_array[3:7, 2:7] == -32768).all() and ds.PatientName == ""


def test_rename_of_a_single_file(tree, tmp_path):
    src = tree / "DOE_JANE/series1/IM0001.dcm"
    result = invoke("run", "-q", "--rename", "--key", KEY, src, tmp_path / "out")
    assert result.exit_code == 0
    (path,) = outputs(tmp_path / "out")
    ds = pydicom.dcmread(path)
    assert path.relative_to(tmp_path / "out") == Path(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID + ".dcm")


def test_progress_line(tree, capsys):
    from fastanon.batch import Outcome
    from fastanon.cli.run import Progress

    progress = Progress(tree, show=True)
    progress.total = 52                        # as the counting thread finds it
    progress.counter = object()                # (not started here)
    progress(Outcome("a", "b", "written", bytes_in=2_000_000))
    progress(Outcome(str(tree / "x.dcm"), "b", "failed", reason="broken somehow"))
    progress.drawn = 0                         # redraw now
    progress(Outcome("c", "d", "written", bytes_in=1_000_000))
    progress.finish()
    err = capsys.readouterr().err
    assert f"error: {tree / 'x.dcm'}: broken somehow\n" in err
    assert "3/52 files" in err and "3.0 MB" in err and "files/s" in err and "ETA" in err
    quiet = Progress(tree, show=False)
    quiet(Outcome("a", "b", "written", bytes_in=1))
    quiet.finish()
    assert capsys.readouterr().err == ""


def test_mask_warnings_are_shown(tree, tmp_path):
    src = tree / "DOE_JANE/series1/IM0001.dcm"
    result = invoke("run", "--mask", "10,10,20,20", src, tmp_path / "out.dcm")   # 16x16 image
    assert result.exit_code == 0 and "warning:" in result.stderr and str(src) in result.stderr
    quiet = invoke("run", "-q", "--overwrite", "--mask", "10,10,20,20", src, tmp_path / "out.dcm")
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_unwritable_destination_is_an_error_not_a_traceback(tree, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = invoke("run", tree / "DOE_JANE/series1/IM0001.dcm", blocker / "out.dcm")
    assert result.exit_code == 1 and "Traceback" not in result.output
