"""Text in the pixels (the ocr extra): found in what fastanon reads and writes, flagged or held
back by `run --detect-text`, reported by `check --detect-text` and `inspect --detect-text`;
gone once a mask covers it. The images are drawn here with Pillow's own font and two of
Debian's DejaVu fonts, in the layouts burned-in annotations come in (8-, 12- and 16-bit grey on
dark and mid-grey backgrounds, MONOCHROME1, RGB, multi-frame, RLE)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastanon
from conftest import part10
from fastanon import batch, text

pytest.importorskip("rapidocr_onnxruntime", reason="fastanon[ocr] is not installed")
PIL = pytest.importorskip("PIL.ImageDraw", reason="Pillow is not installed")

KEY = "text-key"
BANNER = (12, 10)       # where the banner's text starts (x, y)


def _drawn(rows: int = 256, columns: int = 320, line: str = "DOE JANE 19700101",
           at=BANNER) -> np.ndarray:
    """A grey image: a dim disc (the 'anatomy') and one line of bright text."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (columns, rows), 0)
    draw = ImageDraw.Draw(image)
    draw.ellipse((columns // 4, rows // 4, columns * 3 // 4, rows * 3 // 4), fill=70)
    draw.text(at, line, fill=255, font=ImageFont.load_default(size=18))
    return np.asarray(image)


def _file(pixels: np.ndarray, *, photometric: str = "MONOCHROME2", bits: int = 8,
          frames: int = 1, syntax: str = "1.2.840.10008.1.2.1") -> bytes:
    """A Secondary Capture image holding pixels (rows x columns, or x 3 for RGB)."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "DOE^JANE", "PID-77", "OT"
    ds.ConversionType = "WSD"
    ds.Rows, ds.Columns = pixels.shape[:2]
    color = pixels.ndim == 3
    ds.SamplesPerPixel = 3 if color else 1
    ds.PhotometricInterpretation = "RGB" if color else photometric
    if color:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    data = pixels
    if bits != 8:
        data = (pixels.astype(np.uint32) * ((1 << bits) - 1) // 255).astype("<u2")
    if photometric == "MONOCHROME1":
        data = data.max() - data            # stored inverted: shown as drawn
    if frames > 1:
        ds.NumberOfFrames = frames
        data = np.stack([data] * frames)
    ds.PixelData = data.tobytes()
    raw = part10(ds)
    if syntax != "1.2.840.10008.1.2.1":
        import pydicom

        read = pydicom.dcmread(io.BytesIO(raw))
        read.compress(syntax, encoding_plugin="pydicom")
        out = io.BytesIO()
        read.save_as(out, enforce_file_format=True)
        raw = out.getvalue()
    return raw


def _banner(boxes) -> list:
    return [b for b in boxes if b.y < 40]


def _cover(boxes) -> list:
    """Masks over every box found (as the preview's "Suggest masks" gives them)."""
    return text.suggested_masks(boxes, 256, 320)


def test_burned_in_text_is_found_where_it_was_drawn():
    boxes = text.detect(_file(_drawn()), "banner.dcm")
    banner = _banner(boxes)
    assert len(banner) == 1, boxes
    box = banner[0]
    assert "JANE" in box.text.upper() and box.frame == 0 and box.score > 0.5
    assert box.x <= BANNER[0] + 2 and box.y <= BANNER[1] + 6
    assert box.x + box.width >= 150 and box.height < 40
    assert "JANE" not in box.where() and "character" in box.where()


@pytest.mark.parametrize("layout", [
    {"bits": 12}, {"photometric": "MONOCHROME1"}, {"frames": 3},
    {"syntax": "1.2.840.10008.1.2.5"}])
def test_every_layout_is_looked_at(layout):
    boxes = _banner(text.detect(_file(_drawn(), **layout), "layout.dcm"))
    assert boxes and all("JANE" in b.text.upper() for b in boxes), boxes
    if layout.get("frames"):
        assert sorted({b.frame for b in boxes}) == [0, 1, 2]   # first, middle and last


DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
FONTS = {"pillow": None, "sans-mono": DEJAVU / "DejaVuSansMono.ttf",
         "serif-bold": DEJAVU / "DejaVuSerif-Bold.ttf"}
LINES = (("SMITH^JOHN", (10, 8)), ("ID 4471203", (10, 190)), ("12/03/1968", (200, 222)))


def _annotated(font: str, size: int, background: int) -> tuple[np.ndarray, np.ndarray]:
    """A 256 x 384 image on a grey background, a brighter disc, and three lines of text in
    the corners (as scanners burn them in); and where the text's ink is (at least halfway
    from the background to white)."""
    from PIL import Image, ImageDraw, ImageFont

    path = FONTS[font]
    if path is not None and not path.exists():
        pytest.skip(f"{path} is not installed (Debian: fonts-dejavu-core)")
    face = ImageFont.load_default(size=size) if path is None else \
        ImageFont.truetype(str(path), size)
    image = Image.new("L", (384, 256), background)
    draw = ImageDraw.Draw(image)
    draw.ellipse((96, 64, 288, 192), fill=background + 50)
    ink = Image.new("1", image.size, 0)
    for line, at in LINES:
        draw.text(at, line, fill=255, font=face)
        ImageDraw.Draw(ink).text(at, line, fill=1, font=face)
    pixels = np.asarray(image)
    return pixels, np.asarray(ink) & (pixels >= (background + 255) // 2)


@pytest.mark.parametrize("font,size,background,bits,frames", [
    ("pillow", 11, 30, 8, 1), ("pillow", 20, 128, 16, 1), ("pillow", 30, 90, 8, 3),
    ("sans-mono", 12, 128, 8, 1), ("sans-mono", 18, 30, 16, 3), ("sans-mono", 28, 90, 8, 1),
    ("serif-bold", 14, 90, 16, 1), ("serif-bold", 22, 128, 8, 1),
    ("serif-bold", 30, 30, 16, 1)])
def test_the_suggested_masks_cover_every_character(font, size, background, bits, frames):
    """Every pixel of ink of every character, in several fonts and sizes, on grey, in 8 and
    16 bits, single- and multi-frame, lies under a suggested mask; once masked, the output
    shows no text."""
    pixels, ink = _annotated(font, size, background)
    raw = _file(pixels, bits=bits, frames=frames)
    boxes, masks = text.suggest(raw, "annotated.dcm")
    assert len({b.frame for b in boxes}) == (3 if frames > 1 else 1)
    covered = np.zeros(ink.shape, bool)
    for mask in masks:
        assert mask.frames is None                      # on every frame
        covered[mask.y:mask.y + mask.height, mask.x:mask.x + mask.width] = True
    left = ink & ~covered
    assert not left.any(), (f"{left.sum()} pixel(s) of ink outside the masks, "
                            f"around {np.argwhere(left)[:3].tolist()}", boxes)
    assert covered.sum() < 0.25 * covered.size          # the text, not the image
    masked = fastanon.anonymize(raw, "research", masks, key=KEY)
    assert text.detect(masked, "masked.dcm", frames="all") == []


def test_a_clean_image_has_no_box():
    pixels, _ = _annotated("pillow", 12, 90)
    plain = np.full_like(pixels, 90)
    plain[64:192, 96:288] = 140
    for bits, frames in ((8, 1), (16, 3)):
        assert text.suggest(_file(plain, bits=bits, frames=frames), "clean.dcm") == ([], [])


def test_rgb_is_looked_at():
    grey = _drawn()
    rgb = np.stack([grey, grey // 2, grey], axis=-1)
    assert _banner(text.detect(_file(rgb), "rgb.dcm"))


def test_a_blank_image_and_an_image_without_pixels_show_no_text():
    assert text.detect(_file(np.zeros((64, 64), np.uint8)), "blank.dcm") == []
    raw = fastanon.anonymize(_file(_drawn()), {(0x7FE0, 0x0010): "remove"})
    assert text.detect(raw, "no-pixels.dcm") == []


def test_masks_over_the_boxes_leave_no_text():
    raw = _file(_drawn())
    boxes = text.detect(raw, "a.dcm")
    assert boxes
    masked = fastanon.anonymize(raw, "research", _cover(boxes), key=KEY)
    assert text.detect(masked, "a-out.dcm") == []


def test_pixels_that_cannot_be_decoded_are_said_so():
    from conftest import unmaskable

    with pytest.raises(text.Unreadable, match="cannot be looked at"):
        text.detect(unmaskable(), "htj2k.dcm")


def _tree(root: Path) -> None:
    (root / "a").mkdir(parents=True)
    (root / "a" / "text.dcm").write_bytes(_file(_drawn()))
    (root / "a" / "clean.dcm").write_bytes(_file(_drawn(line="")))


def _fastanon(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastanon", *args], capture_output=True,
                          text=True, timeout=300, check=False)


def test_run_flags_and_holds_back_outputs_that_show_text(tmp_path):
    _tree(tmp_path / "src")
    flagged = _fastanon("run", "--key", KEY, "--detect-text", "--audit",
                        str(tmp_path / "audit.csv"), str(tmp_path / "src"), str(tmp_path / "out"))
    assert flagged.returncode == 1, flagged.stderr
    assert "text-in-pixels" in flagged.stderr and "out/a/text.dcm" in flagged.stderr
    assert "JANE" not in flagged.stderr                  # where, never what it says
    assert (tmp_path / "out" / "a" / "text.dcm").exists()
    audit = (tmp_path / "audit.csv").read_text()
    assert audit.count("text-in-pixels") == 1 and "JANE" not in audit

    held = _fastanon("run", "--key", KEY, "--detect-text", "--quarantine",
                     str(tmp_path / "held"), str(tmp_path / "src"), str(tmp_path / "out2"))
    assert held.returncode == 1, held.stderr
    assert "1 held back" in held.stderr
    assert not (tmp_path / "out2" / "a" / "text.dcm").exists()
    assert (tmp_path / "out2" / "a" / "clean.dcm").exists()
    kept = (tmp_path / "held" / "a" / "text.dcm").read_bytes()
    assert kept == (tmp_path / "out" / "a" / "text.dcm").read_bytes()   # the anonymized output

    boxes = text.detect((tmp_path / "src" / "a" / "text.dcm").read_bytes(), "text.dcm")
    masks = [str(m) for m in _cover(boxes)]
    clean = _fastanon("run", "--key", KEY, "--detect-text", "--quarantine",
                      str(tmp_path / "held3"), *[a for m in masks for a in ("--mask", m)],
                      str(tmp_path / "src"), str(tmp_path / "out3"))
    assert clean.returncode == 0, clean.stderr
    assert "0 finding(s)" in clean.stderr and not (tmp_path / "held3").exists()


def test_run_options_that_do_not_go_together(tmp_path):
    _tree(tmp_path / "src")
    alone = _fastanon("run", "--quarantine", str(tmp_path / "held"), str(tmp_path / "src"),
                      str(tmp_path / "out"))
    assert alone.returncode == 2 and "--detect-text" in alone.stderr
    inside = _fastanon("run", "--detect-text", "--quarantine", str(tmp_path / "out" / "held"),
                       str(tmp_path / "src"), str(tmp_path / "out"))
    assert inside.returncode == 2 and "inside DST" in inside.stderr
    assert not (tmp_path / "out" / "a").exists()


def test_run_with_workers_finds_the_same(tmp_path):
    _tree(tmp_path / "src")
    seen = []
    summary = batch.run(tmp_path / "src", tmp_path / "out",
                        batch.Job(key=KEY.encode(), workers=2, detect_text=True,
                                  quarantine=str(tmp_path / "held")), seen.append)
    assert (summary.written, summary.held, summary.findings) == (1, 1, 1)
    held = next(o for o in seen if o.status == "held")
    assert held.dst == str(tmp_path / "held" / "a" / "text.dcm")
    assert held.findings[0].startswith("text-in-pixels")


def test_check_and_inspect_report_the_text(tmp_path):
    _tree(tmp_path / "src")
    assert _fastanon("run", "--key", KEY, str(tmp_path / "src"), str(tmp_path / "out")) \
        .returncode == 0
    checked = _fastanon("check", "--detect-text", "--json", str(tmp_path / "report.json"),
                        str(tmp_path / "src"), str(tmp_path / "out"))
    assert checked.returncode == 1, checked.stderr
    report = {Path(r["output"]).name: r for r in json.loads((tmp_path / "report.json")
                                                            .read_text())}
    kinds = [f["kind"] for f in report["text.dcm"]["findings"]]
    assert kinds == ["text-in-pixels"]
    assert not report["clean.dcm"]["findings"]
    plain = _fastanon("check", str(tmp_path / "src"), str(tmp_path / "out"))
    assert plain.returncode == 0, plain.stderr      # without it, pixels are not looked at

    shown = _fastanon("inspect", "--detect-text", str(tmp_path / "src" / "a" / "text.dcm"))
    assert shown.returncode == 0, shown.stderr
    assert "Text in the pixels (1)" in shown.stdout and "JANE" in shown.stdout.upper()
    as_json = json.loads(_fastanon("inspect", "--detect-text", "--json",
                                   str(tmp_path / "src" / "a" / "text.dcm")).stdout)
    assert [b["frame"] for b in as_json["text"]] == [0]


def test_without_the_extra_the_options_say_what_to_install(tmp_path):
    """A Python where the detector cannot be imported: each option is a usage error naming
    the extra, and nothing is written."""
    _tree(tmp_path / "src")
    blocked = ("import sys\nsys.modules['rapidocr_onnxruntime'] = None\n"
               "from fastanon.cli import command\nsys.argv = ['fastanon', *sys.argv[1:]]\n"
               "command()\n")
    for args in (["run", "--detect-text", str(tmp_path / "src"), str(tmp_path / "out")],
                 ["check", "--detect-text", str(tmp_path / "src"), str(tmp_path / "src")],
                 ["inspect", "--detect-text", str(tmp_path / "src" / "a" / "text.dcm")]):
        done = subprocess.run([sys.executable, "-c", blocked, *args], capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 2 and "fastanon[ocr]" in done.stderr, (args, done.stderr)
    assert not (tmp_path / "out").exists()
