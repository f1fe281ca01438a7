"""`fastanon check` on the CT study against `fastanon run` of the same study, whole process
(start-up included), both with the default workers, paired round by round; and the text
detector's time per frame (the ocr extra), in process.

Targets (issue text; informative, nothing about speed is asserted): check no slower than run;
OCR time per frame reported. Checked: the run's outputs are clean (check exits 0), and a copy of
an input put among them is found (exit 1).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time

import pytest

from test_bench_engine import ROUNDS, WARMUP, corpora, fastanon_env, fresh, need_fastanon

KIND = "check:"
KEY = "benchmark-key"
CT = corpora("ct", group="check")


def _command(*args) -> list[str]:
    return [sys.executable, "-m", "fastanon", *args]


def _timed(cmd: list[str], env, ok=(0,)) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    seconds = time.perf_counter() - started
    if done.returncode not in ok:
        raise RuntimeError(f"{cmd!r} exited {done.returncode}: "
                           f"{done.stderr.decode(errors='replace')[-2000:]}")
    return seconds


@pytest.mark.parametrize("corpus", CT, indirect=True)
def test_paired_check_over_run(benchmark, corpus, out_dir, bench_results, tmp_path_factory):
    """One round: `fastanon run` into a fresh folder, then `fastanon check` of what it wrote."""
    env = fastanon_env(need_fastanon())
    runs, checks = [], []

    def one_pair():
        fresh(out_dir)()
        runs.append(_timed(_command("run", "--quiet", "--key", KEY, str(corpus.src),
                                    str(out_dir)), env))
        checks.append(_timed(_command("check", "--quiet", str(corpus.src), str(out_dir)), env))

    benchmark.pedantic(one_pair, rounds=ROUNDS, warmup_rounds=WARMUP)
    runs, checks = runs[WARMUP:], checks[WARMUP:]
    ratios = [c / r for r, c in zip(runs, checks)]
    planted = corpus.dst_file(out_dir, corpus.files[0])
    shutil.copyfile(corpus.src / corpus.files[0], planted)       # an input among the outputs
    found = subprocess.run(_command("check", "--quiet", str(corpus.src), str(out_dir)),
                           capture_output=True, text=True, env=env)
    bench_results[(corpus.name, KIND + "paired")] = {
        "median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
        "run": statistics.median(runs), "check": statistics.median(checks),
        "files": len(corpus.files), "rounds": len(ratios),
        "finds_a_copy": found.returncode == 1 and "1 with findings" in found.stderr}


def test_ocr_seconds_per_frame(benchmark, bench_results):
    """The detector on a 512 x 512 frame with three lines of burned-in text, through
    text.detect as run --detect-text calls it (the models loaded before the rounds, as a run's
    worker loads them once)."""
    pytest.importorskip("rapidocr_onnxruntime", reason="fastanon[ocr] is not installed")
    import io

    import numpy as np
    from PIL import Image, ImageDraw, ImageFont
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from fastanon import text

    image = Image.new("L", (512, 512), 40)
    draw = ImageDraw.Draw(image)
    draw.ellipse((96, 96, 416, 416), fill=110)
    font = ImageFont.load_default(size=16)
    for line, at in (("DOE^JANE  F  052Y", (10, 8)), ("ID 4471203  ACC 99812", (10, 30)),
                     ("2024-06-11 10:15", (330, 490))):
        draw.text(at, line, fill=255, font=font)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Rows = ds.Columns = 512
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = np.asarray(image).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    raw = out.getvalue()
    found = text.detect(raw, "frame.dcm")                      # loads the models
    benchmark.pedantic(text.detect, args=(raw, "frame.dcm"), rounds=ROUNDS,
                       warmup_rounds=WARMUP)
    bench_results[("ocr", KIND + "frame")] = {"median": benchmark.stats.stats.median,
                                              "boxes": len(found)}


def summary_lines(results: dict) -> list[str]:
    lines = []
    paired = results.get(("ct", KIND + "paired"))
    if paired:
        lines.append(f"ct: check {paired['check']:.3f} s, run {paired['run']:.3f} s "
                     f"({paired['files']} files, {paired['rounds']} pairs): check / run median "
                     f"{paired['median']:.2f} (min {paired['min']:.2f}, max {paired['max']:.2f})"
                     "  (target <= 1.0)")
        lines.append(f"  an input copied among the outputs is found: {paired['finds_a_copy']}")
    ocr = results.get(("ocr", KIND + "frame"))
    if ocr:
        lines.append(f"text detector: {ocr['median']:.3f} s per 512 x 512 frame "
                     f"({ocr['boxes']} lines of text found)")
    return lines
