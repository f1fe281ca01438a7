"""A mask on every frame of a 100-frame JPEG Baseline ultrasound (640 x 480, YBR_FULL_422),
in process, measured side by side in one run:

* `shutil.copyfile` of the file (the floor);
* fastanon: the mask blanked in the DCT domain, the transfer syntax kept (`anonymize_file`);
* the way the peers that mask JPEG do it: every frame decoded, blanked and encoded again at
  quality 90 (libjpeg-turbo through imagecodecs), then written.

Printed: the times, their ratios, and the output sizes. The file is generated once (imagecodecs
encodes it), with a band of "burned-in text" the mask covers. Nothing is asserted.
"""

from __future__ import annotations

import os
import shutil

import pytest

from test_bench_engine import ROUNDS, WARMUP, need_fastanon

imagecodecs = pytest.importorskip("imagecodecs", reason="the codecs extra is not installed")

FRAMES, ROWS, COLUMNS = 100, 480, 640
MASK = (0, 0, 640, 40)                  # the text band at the top of every frame
GROUP = "jpeg ultrasound: a mask on every frame"
KIND = "jpeg:"


@pytest.fixture(scope="module")
def ultrasound(tmp_path_factory):
    import numpy as np
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import generate_uid

    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:ROWS, 0:COLUMNS]
    cone = ((x - COLUMNS / 2) ** 2 + (y + 60) ** 2 < (ROWS * 1.1) ** 2) & (y > 40)
    frames = []
    for f in range(FRAMES):
        speckle = rng.gamma(2.0, 40.0, (ROWS, COLUMNS)) * cone
        image = np.clip(speckle, 0, 255).astype(np.uint8)
        image[8:32, 20:400] = np.where((x[8:32, 20:400] // 6 + f) % 3 == 0, 255, 0)   # "text"
        rgb = np.repeat(image[:, :, None], 3, axis=2)
        frames.append(imagecodecs.jpeg8_encode(rgb, level=90, subsampling="422"))
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "ECHO^ANNA", "US0001", "US"
    ds.Rows, ds.Columns, ds.NumberOfFrames = ROWS, COLUMNS, FRAMES
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL_422", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.LossyImageCompression, ds.BurnedInAnnotation = "01", "YES"
    ds.PixelData = encapsulate(frames, has_bot=True)
    ds["PixelData"].VR = "OB"
    path = tmp_path_factory.mktemp("jpeg-us") / "us.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _peers_way(src, dst) -> None:
    """Decode every frame, blank, encode again at quality 90, write: what a tool that masks
    compressed frames through pixels does."""
    import pydicom
    from pydicom.encaps import encapsulate, generate_frames

    ds = pydicom.dcmread(src)
    x, y, w, h = MASK
    out = []
    for frame in generate_frames(ds.PixelData, number_of_frames=FRAMES):
        pixels = imagecodecs.jpeg8_decode(frame)
        pixels[y:y + h, x:x + w] = 0
        out.append(imagecodecs.jpeg8_encode(pixels, level=90, subsampling="422"))
    ds.PixelData = encapsulate(out, has_bot=True)
    ds.save_as(dst, enforce_file_format=True)


def _fresh(path):
    def setup():
        if os.path.exists(path):
            os.unlink(path)
    return setup


def _record(bench_results, benchmark, kind: str, dst) -> None:
    median = benchmark.stats.stats.median if benchmark.stats else None
    bench_results[("jpeg", KIND + kind)] = {"median": median, "size": os.path.getsize(dst)}


@pytest.mark.benchmark(group=GROUP)
def test_jpeg_copyfile(benchmark, ultrasound, tmp_path, bench_results):
    dst = tmp_path / "copy.dcm"
    benchmark.pedantic(shutil.copyfile, args=(ultrasound, dst), setup=_fresh(dst),
                       rounds=ROUNDS, warmup_rounds=WARMUP)
    _record(bench_results, benchmark, "copy", dst)


@pytest.mark.benchmark(group=GROUP)
def test_jpeg_fastanon_dct_domain(benchmark, ultrasound, tmp_path, bench_results):
    fastanon = need_fastanon()
    dst = tmp_path / "fastanon.dcm"
    benchmark.pedantic(fastanon.anonymize_file, args=(ultrasound, dst),
                       kwargs={"policy": "research", "masks": [fastanon.Mask(*MASK)], "key": "k"},
                       setup=_fresh(dst), rounds=ROUNDS, warmup_rounds=WARMUP)
    _record(bench_results, benchmark, "fastanon", dst)


@pytest.mark.benchmark(group=GROUP)
def test_jpeg_decode_and_encode_again(benchmark, ultrasound, tmp_path, bench_results):
    dst = tmp_path / "peers.dcm"
    benchmark.pedantic(_peers_way, args=(ultrasound, dst), setup=_fresh(dst), rounds=ROUNDS,
                       warmup_rounds=WARMUP)
    _record(bench_results, benchmark, "reencode", dst)


def summary_lines(results: dict) -> list[str]:
    rows = {kind: results.get(("jpeg", KIND + kind)) for kind in ("copy", "fastanon", "reencode")}
    if not rows["fastanon"]:
        return []
    lines = [f"{FRAMES} frames of {COLUMNS}x{ROWS} JPEG Baseline, a {MASK[2]}x{MASK[3]} mask on "
             "every frame, in process (median s, output MB)"]
    for kind, label in (("copy", "shutil.copyfile"), ("fastanon", "fastanon (DCT domain)"),
                        ("reencode", "decode + encode again (q90)")):
        if rows[kind]:
            lines.append(f"  {label:32s} {rows[kind]['median']:.3f} s  "
                         f"{rows[kind]['size'] / 1e6:.2f} MB")
    if rows["copy"]:
        lines.append(f"  fastanon x copy: {rows['fastanon']['median'] / rows['copy']['median']:.2f}")
    if rows["reencode"]:
        lines.append(f"  fastanon x decode + encode again: "
                     f"{rows['fastanon']['median'] / rows['reencode']['median']:.2f} "
                     "(and nothing outside the mask recompressed)")
    return lines
