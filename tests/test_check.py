"""`fastanon check`: planted defects are each reported (with their kind, the input attribute and
the output element, never the value), clean outputs of both presets are not, over real files."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

import fastanon
from fastanon.check import Checker, check_pair
from conftest import TEST_FILES_DIR, all_test_files, part10

KEY = "check-key"
NAME = "TESTPERSON^ALICE"


def _study_file(**extra) -> bytes:
    ds = pydicom.dcmread(Path(TEST_FILES_DIR) / "CT_small.dcm")
    ds.PatientName, ds.PatientID = NAME, "ID778899"
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _kinds(report) -> set[tuple[str, str, str]]:
    return {(f.kind, f.input_path, f.output_path) for f in report.findings}


def test_a_clean_output_has_no_findings():
    raw = _study_file()
    for preset in ("research", "internal"):
        out = fastanon.anonymize(raw, preset, key=KEY)
        report = check_pair(raw, out, policy=preset)
        assert not [f for f in report.findings if f.kind in ("survived", "echo")], \
            [str(f) for f in report.findings]


def test_an_identity_kept_is_reported_as_survived_without_its_value():
    raw = _study_file()
    out = fastanon.anonymize(raw, {"PatientID": "remove"}, key=KEY)     # the name stays
    report = check_pair(raw, out)
    assert ("survived", "PatientName", "PatientName") in _kinds(report)
    assert "ALICE" not in json.dumps(report.as_dict()) and "ALICE" not in str(report.findings)


def test_an_identity_copied_elsewhere_is_an_echo():
    raw = _study_file(StudyDescription=f"CT for {NAME}")
    out = fastanon.anonymize(raw, {"PatientName": "remove"}, key=KEY)
    assert ("echo", "PatientName", "StudyDescription") in _kinds(check_pair(raw, out))


def test_a_name_in_a_nested_item_and_in_a_private_element():
    ds = pydicom.dcmread(Path(TEST_FILES_DIR) / "CT_small.dcm")
    item = Dataset()
    item.PersonName = "NESTED^BOB"
    ds.ContentSequence = pydicom.Sequence([item])
    block = ds.private_block(0x0041, "ACME 1.0", create=True)
    block.add_new(0x10, "LO", "PRIVATE NOTE CAROL")
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    raw = buffer.getvalue()
    kinds = _kinds(check_pair(raw, raw))
    assert ("survived", "ContentSequence[0].PersonName", "ContentSequence[0].PersonName") in kinds
    assert ("survived", "(0041,1010)", "(0041,1010)") in kinds
    clean = fastanon.anonymize(raw, "research", key=KEY)
    assert not [f for f in check_pair(raw, clean).findings if f.kind in ("survived", "echo")]


def test_a_name_in_another_encoding_is_found():
    """The input in Latin-1, the output holding the name in UTF-8 (another element)."""
    ds = pydicom.dcmread(Path(TEST_FILES_DIR) / "CT_small.dcm")
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "MÜLLER^JÜRGEN"
    raw = part10(ds, "1.2.840.10008.1.2.1")
    out_ds = pydicom.dcmread(io.BytesIO(raw))
    del out_ds.PatientName
    out_ds.SpecificCharacterSet = "ISO_IR 192"
    out_ds.StudyDescription = "follow-up MÜLLER"
    out = part10(out_ds, "1.2.840.10008.1.2.1")
    assert ("echo", "PatientName", "StudyDescription") in _kinds(check_pair(raw, out, policy=None))


def test_a_deflated_output_is_inflated_before_the_search():
    raw = _study_file()
    ds = pydicom.dcmread(io.BytesIO(raw))
    deflated = part10(ds, "1.2.840.10008.1.2.1.99")
    assert NAME.encode() not in deflated            # not visible without inflating
    assert ("survived", "PatientName", "PatientName") in _kinds(check_pair(raw, deflated))


def test_uid_maps_that_are_not_one_to_one_and_invalid_uids():
    raw_a, raw_b = _study_file(), _study_file()
    a = pydicom.dcmread(io.BytesIO(raw_a))
    b = pydicom.dcmread(io.BytesIO(raw_b))
    b.SOPInstanceUID = b.file_meta.MediaStorageSOPInstanceUID = "1.2.3.44"
    raw_b = part10(b, "1.2.840.10008.1.2.1")
    out_a, out_b = a.copy(), b.copy()
    out_a.StudyInstanceUID = out_b.StudyInstanceUID = "2.25.1234"     # the same study: fine
    out_a.SOPInstanceUID = "2.25.99"
    out_b.SOPInstanceUID = "2.25.99"                # two instances became one: not one-to-one
    out_b.SeriesInstanceUID = "2.25.01"             # a leading zero: invalid
    checker = Checker(policy=None)
    first = checker.check(raw_a, part10(out_a, "1.2.840.10008.1.2.1"), "a", "a-out")
    second = checker.check(raw_b, part10(out_b, "1.2.840.10008.1.2.1"), "b", "b-out")
    assert not [f for f in first.findings if f.kind == "uid-map"]
    words = [f.detail for f in second.findings if f.kind == "uid-map"]
    assert any("not one-to-one" in w for w in words), [str(f) for f in second.findings]
    assert ("invalid-uid", "", "SeriesInstanceUID") in _kinds(second)
    c = a.copy()
    c.StudyInstanceUID = "2.25.777"                 # the same study UID became another
    third = checker.check(raw_a, part10(c, "1.2.840.10008.1.2.1"), "a", "c-out")
    assert any("not a function" in f.detail for f in third.findings if f.kind == "uid-map")


def test_pixels_changed_without_a_record_and_with_one():
    raw = _study_file()
    ds = pydicom.dcmread(io.BytesIO(raw))
    pixels = bytearray(ds.PixelData)
    pixels[100] ^= 0xFF
    ds.PixelData = bytes(pixels)
    out = part10(ds, "1.2.840.10008.1.2.1")
    assert ("pixels-changed", "PixelData", "PixelData") in _kinds(check_pair(raw, out, policy=None))
    masked = fastanon.anonymize(raw, "research", [fastanon.Mask(0, 0, 8, 8)], key=KEY)
    assert "pixels-changed" not in {f.kind for f in check_pair(raw, masked).findings}


def test_the_file_meta_disagreeing_with_the_data_set():
    ds = pydicom.dcmread(io.BytesIO(_study_file()))
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    assert "meta" in {f.kind for f in check_pair(_study_file(), buffer.getvalue(),
                                                 policy=None).findings}


def test_an_unreadable_output():
    raw = _study_file()
    report = check_pair(raw, raw[:-100])            # cut inside its Pixel Data
    assert [f.kind for f in report.findings] == ["unreadable"]


@pytest.mark.parametrize("preset", ["research", "internal"])
def test_no_identity_survives_the_runs_of_every_test_file(preset):
    """Every pydicom test file fastanon writes: no identifying value survives, none is echoed."""
    checked = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in all_test_files():
            raw = (Path(TEST_FILES_DIR) / name).read_bytes()
            try:
                out = fastanon.anonymize(raw, preset, key=KEY)
            except fastanon.FastanonError:
                continue
            report = check_pair(raw, out, name, "out", policy=preset)
            left = [str(f) for f in report.findings if f.kind == "survived"]
            assert not left, (name, left)
            checked += 1
    assert checked > 50


def test_the_cli_pairs_a_tree_and_exits_by_what_it_found(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.dcm").write_bytes(_study_file())
    (src / "b.dcm").write_bytes(_study_file(SOPInstanceUID="1.2.3.4.55"))
    (src / "notes.txt").write_text("not DICOM")
    run = [sys.executable, "-m", "fastanon"]
    assert subprocess.run(run + ["run", "-q", "--key", KEY, str(src), str(tmp_path / "out")],
                          capture_output=True, timeout=120).returncode == 0
    done = subprocess.run(run + ["check", "--json", str(tmp_path / "r.json"), str(src),
                                 str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2 pair(s), 0 with findings" in done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert [Path(r["input"]).name for r in report] == ["a.dcm", "b.dcm"]
    assert all(r["findings"] == [] for r in report)
    (tmp_path / "out" / "b.dcm").write_bytes(_study_file())         # the original, as "output"
    done = subprocess.run(run + ["check", str(src), str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1 and "survived: PatientName -> PatientName" in done.stderr
    assert NAME not in done.stderr and "ALICE" not in done.stderr
    done = subprocess.run(run + ["check", "--preset", "nope", str(src), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2


def test_run_verify_checks_each_output_and_counts_the_findings(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.dcm").write_bytes(_study_file())
    (src / "b.dcm").write_bytes(_study_file(SOPInstanceUID="1.2.3.4.55"))
    run = [sys.executable, "-m", "fastanon", "run", "--key", KEY, "--verify"]
    done = subprocess.run(run + [str(src), str(tmp_path / "clean")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "verified: 0 finding(s) in the 2 output(s) written, none" in done.stderr
    policy = tmp_path / "keeps-name.toml"
    policy.write_text('extends = "research"\n[tags]\nPatientName = "keep"\n')
    done = subprocess.run(run + ["--policy", str(policy), "--audit", str(tmp_path / "a.csv"),
                                 str(src), str(tmp_path / "kept")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr        # what the policy keeps is not a finding
    assert "verified: 0 finding(s)" in done.stderr and "2 written" in done.stderr


def test_run_verify_finds_what_the_policy_did_not_mean_to_keep(tmp_path):
    """A policy that forgets an identifying attribute: the run writes the outputs, --verify says
    where the value survived (research's idea of identity), exit status 1."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.dcm").write_bytes(_study_file(OtherPatientIDs="ID778899"))
    from fastanon import batch

    job = batch.Job(policy={"PatientID": "remove", "PatientName": "remove"}, key=KEY.encode(),
                    verify=True)
    outcomes = []
    summary = batch.run(src, tmp_path / "out", job, outcomes.append,
                        audit=tmp_path / "audit.csv")
    assert summary.written == 1 and summary.findings >= 1
    assert any(f.startswith("echo: PatientID -> OtherPatientIDs") for f in outcomes[0].findings)
    audit = (tmp_path / "audit.csv").read_text()
    assert "check: echo: PatientID -> OtherPatientIDs" in audit and "ID778899" not in audit


def test_a_name_part_inside_another_word_is_not_a_hit():
    raw = _study_file(ReferringPhysicianName="REFERRER^FAKE", Manufacturer="FAKECORP")
    out = fastanon.anonymize(raw, "research", key=KEY)
    assert not [f for f in check_pair(raw, out).findings if f.output_path == "Manufacturer"]
    raw = _study_file(ReferringPhysicianName="REFERRER^FAKE", Manufacturer="FAKE CORP")
    out = fastanon.anonymize(raw, "research", key=KEY)
    assert ("echo", "ReferringPhysicianName", "Manufacturer") in _kinds(check_pair(raw, out))


def _large_image(pixels: bytes, bits: int = 16, **extra) -> bytes:
    """A 256 x 256 image (128 KiB at 16 bits: the Pixel Data is searched by its text bytes),
    with a long name."""
    from pydicom.uid import generate_uid

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "LONGFAMILYNAME^GIVEN", "ID778899", "OT"
    ds.Rows = ds.Columns = 256
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit, ds.PixelRepresentation = bits - 1, 0
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels
    return part10(ds)


@pytest.mark.parametrize("bits", [16, 8])
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_a_long_value_in_the_pixel_bytes_is_found_wherever_it_is(bits, where):
    """Samples of a 16-bit image (their high bytes seldom look like text) and of an 8-bit one
    (nearly all do): a long value planted at the start, in the middle or at the very end of
    the Pixel Data is found; short values there are not looked for."""
    import numpy as np

    rng = np.random.default_rng(7)
    count = 256 * 256
    samples = (rng.normal(900, 150, count).clip(0, 4095).astype("<u2").tobytes() if bits == 16
               else rng.integers(0, 256, count, dtype=np.uint8).tobytes())
    planted = b"LONGFAMILYNAME^GIVEN"
    at = {"start": 0, "middle": len(samples) // 2 + 3, "end": len(samples) - len(planted)}[where]
    pixels = samples[:at] + planted + samples[at + len(planted):]
    raw = _large_image(pixels, bits)
    out = fastanon.anonymize(raw, "research", key=KEY)
    kinds = _kinds(check_pair(raw, out))
    assert ("in-pixels", "PatientName", "PixelData") in kinds, kinds
    clean = fastanon.anonymize(_large_image(samples, bits), "research", key=KEY)
    assert not [k for k in _kinds(check_pair(_large_image(samples, bits), clean))
                if k[0] == "in-pixels"]
    short = samples[:at] + b"ID778899" + samples[at + 8:]        # an ID: shorter than 12
    assert not [k for k in _kinds(check_pair(_large_image(short, bits), fastanon.anonymize(
        _large_image(short, bits), "research", key=KEY))) if k[0] == "in-pixels"]


def test_a_long_value_with_a_line_break_is_looked_for_in_all_the_pixels():
    import numpy as np

    samples = np.random.default_rng(8).normal(900, 150, 256 * 256).clip(0, 4095) \
        .astype("<u2").tobytes()
    address = b"12 Long Street\r\nSpringfield"
    at = 70000
    pixels = samples[:at] + address + samples[at + len(address):]
    raw = _large_image(pixels, PatientAddress="12 Long Street\r\nSpringfield")
    kinds = _kinds(check_pair(raw, fastanon.anonymize(raw, "research", key=KEY)))
    assert ("in-pixels", "PatientAddress", "PixelData") in kinds, kinds


def test_a_part_of_a_name_inside_a_code_is_no_echo():
    """OPERATOR^FAKE and a procedure code FAKE-BENCH: the code's word is not the person; the
    whole name in a code would be."""
    from pydicom.sequence import Sequence

    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = \
        "FAKE-BENCH", "99LOCAL", "Benchmark procedure"
    raw = _study_file(OperatorsName="OPERATOR^FAKE", ProcedureCodeSequence=Sequence([code]))
    out = fastanon.anonymize(raw, "research", key=KEY)
    assert not [k for k in _kinds(check_pair(raw, out)) if k[0] == "echo"]
    code.CodeMeaning = "Scanned by OPERATOR^FAKE"
    raw = _study_file(OperatorsName="OPERATOR^FAKE", ProcedureCodeSequence=Sequence([code]))
    ds = pydicom.dcmread(io.BytesIO(raw))
    del ds.OperatorsName                # the name removed, its copy in the code's meaning kept
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    kinds = _kinds(check_pair(raw, out.getvalue(), policy=None))
    assert ("echo", "OperatorsName", "ProcedureCodeSequence[0].CodeMeaning") in kinds, kinds


def _check_tree(tmp_path) -> tuple[Path, Path]:
    """A tree of 12 inputs and their outputs: two outputs keep the name, one maps a UID that
    another output maps elsewhere (not a function)."""
    src, out = tmp_path / "src", tmp_path / "out"
    for number in range(12):
        folder = src / f"s{number % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{number:02}.dcm").write_bytes(
            _study_file(SOPInstanceUID=f"1.2.3.4.{100 + number}"))
    run = [sys.executable, "-m", "fastanon"]
    assert subprocess.run(run + ["run", "-q", "--key", KEY, str(src), str(out)],
                          capture_output=True, timeout=120).returncode == 0
    for kept in ("s1/04.dcm", "s2/11.dcm"):
        (out / kept).write_bytes((src / kept).read_bytes())
    return src, out


def test_workers_stream_the_same_report_as_one_process(tmp_path):
    src, out = _check_tree(tmp_path)
    run = [sys.executable, "-m", "fastanon", "check"]
    reports = []
    for workers in ("1", "2"):
        target = tmp_path / f"r{workers}.json"
        done = subprocess.run(run + ["--workers", workers, "--json", str(target),
                                     "--html", str(tmp_path / f"r{workers}.html"), str(src),
                                     str(out)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, done.stderr
        assert "12 pair(s), 2 with findings" in done.stderr, done.stderr
        assert not list(tmp_path.glob("*.partial"))
        reports.append(json.loads(target.read_text()))
    assert reports[0] == reports[1]
    assert [Path(r["input"]).name for r in reports[0]] == [f"{n:02}.dcm" for n in
                                                           (0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11)]
    flagged = {Path(r["output"]).name for r in reports[0] if r["findings"]}
    assert flagged == {"04.dcm", "11.dcm"}
    page = (tmp_path / "r2.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and " finding(s) in 2 of 12 output(s)." in page
    assert "s1/04.dcm" in page and "s2/11.dcm" in page and "survived" in page
    assert NAME not in page and "ALICE" not in page and "ID778899" not in page
    assert "outputs with findings</th><td>2<" in page


def test_the_html_report_of_a_clean_tree_says_so(tmp_path):
    src, out = _check_tree(tmp_path)
    for kept in ("s1/04.dcm", "s2/11.dcm"):
        (out / kept).unlink()
    done = subprocess.run([sys.executable, "-m", "fastanon", "check", "--html",
                           str(tmp_path / "r.html"), str(src), str(out)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2 input(s) without an output" in done.stderr
    page = (tmp_path / "r.html").read_text()
    assert "No finding" in page and "inputs without an output</th><td>2<" in page


def test_reports_that_cannot_be_written_and_mappings_without_columns(tmp_path):
    src, out = _check_tree(tmp_path)
    run = [sys.executable, "-m", "fastanon", "check"]
    done = subprocess.run(run + ["--json", str(tmp_path / "no" / "such" / "r.json"), str(src),
                                 str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "r.json: cannot be written" in done.stderr, done.stderr
    (tmp_path / "map.csv").write_text("a,b\nx,y\n")
    done = subprocess.run(run + ["--mapping", str(tmp_path / "map.csv"), "--json",
                                 str(tmp_path / "r.json"), str(src), str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no source and destination columns" in done.stderr
    assert not (tmp_path / "r.json").exists() and not list(tmp_path.glob("*.partial"))


def test_large_files_are_mapped_and_checked_the_same(tmp_path, monkeypatch):
    """With every file mapped (as files over pipeline.SMALL_FILE bytes are), the reports are
    those of files read whole."""
    from fastanon import check, pipeline

    src, out = _check_tree(tmp_path)
    pairs = [(str(p), str(out / p.relative_to(src))) for p in sorted(src.rglob("*.dcm"))]
    read = [c.report.as_dict() for c in check.check_files(pairs, Checker("research"))]
    monkeypatch.setattr(pipeline, "SMALL_FILE", 0)
    mapped = [c.report.as_dict() for c in check.check_files(pairs, Checker("research"))]
    assert mapped == read and any(r["findings"] for r in read)
