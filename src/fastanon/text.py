"""Text burned into the pixels: found by an offline detector (the `ocr` extra).

Masks blank the regions a user or a rule names; what they miss stays. This finds what is left:
each frame looked at is decoded as the preview page decodes it (frames.py: native, or
compressed through pydicom's plugins and the codecs extra), scaled to 8 bits over its own range (burned-in text is
drawn at the brightest value; MONOCHROME1 is turned around, so that it still is), and given to
RapidOCR's PP-OCR models, which run on onnxruntime and ship inside the package (no download,
nothing leaves the machine). Each box found is a TextBox: where (an axis-aligned rectangle in
the frame's pixels), the text read and the detector's confidence.

A multi-frame image is looked at in its first, middle and last frames (burned-in annotations
stay where they are across a cine; FRAMES = "all" looks at every one, at about 0.4 s a frame).
`pip install 'fastanon[ocr]'`; nothing here is imported unless text is asked for.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

from .errors import FastanonError

OCR_PACKAGE = "fastanon[ocr]"
MIN_SCORE = 0.5             # boxes the detector is less sure of are not reported
MIN_CHARACTERS = 2          # a lone character is more often an edge or a marker than a text


class NoDetector(FastanonError):
    """The ocr extra is not installed."""

    def __init__(self, why: str = ""):
        super().__init__(f"detecting text in the pixels needs RapidOCR: pip install "
                         f"'{OCR_PACKAGE}'" + (f" ({why})" if why else ""))


class Unreadable(FastanonError):
    """The file's pixels cannot be decoded here, so they cannot be looked at."""


class TextBox(NamedTuple):
    frame: int
    x: int
    y: int
    width: int
    height: int
    text: str
    score: float

    def as_dict(self) -> dict:
        return {"frame": self.frame, "x": self.x, "y": self.y, "width": self.width,
                "height": self.height, "text": self.text, "score": round(self.score, 3)}

    def where(self) -> str:
        """The box, without its text (for logs and audits, which hold no identifying value)."""
        return (f"frame {self.frame}, x={self.x} y={self.y} {self.width}x{self.height}, "
                f"{len(self.text)} character(s)")


_ENGINE: list = []
_ENGINE_LOCK = threading.Lock()     # one frame at a time (the preview serves from threads)


def available() -> bool:
    """Whether the detector is installed (found, not imported: a run asks before its workers
    start, and each loads its own)."""
    from importlib.util import find_spec

    return find_spec("rapidocr_onnxruntime") is not None


def require() -> None:
    """NoDetector unless the detector is installed: said before a run, check or inspect starts."""
    if not available():
        raise NoDetector()


def _engine():
    """The detector, loaded once per process (its models take some tenths of a second)."""
    with _ENGINE_LOCK:
        if _ENGINE:
            return _ENGINE[0]
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:
            raise NoDetector(str(exc)) from None
        _ENGINE.append(RapidOCR())
    return _ENGINE[0]


def frames_to_look_at(count: int, frames: str = "sample") -> list[int]:
    """The frames looked at: "sample" (the first, middle and last), "all", or "first"."""
    if frames == "all":
        return list(range(count))
    if frames == "first" or count <= 1:
        return [0]
    return sorted({0, count // 2, count - 1})


def detect(data, name: str, frames: str = "sample", min_score: float = MIN_SCORE
           ) -> list[TextBox]:
    """The text boxes in a Part 10 file's (or raw data set's) pixels; [] when it has no Pixel
    Data. Unreadable when the pixels cannot be decoded here, NoDetector without the extra."""
    return _look(data, name, frames, min_score)[0]


def suggest(data, name: str, frames: str = "sample") -> tuple[list[TextBox], list]:
    """The text boxes in a file's pixels and the masks that cover them (suggested_masks)."""
    boxes, rows, columns = _look(data, name, frames, MIN_SCORE)
    return boxes, suggested_masks(boxes, rows, columns)


def _look(data, name: str, frames: str, min_score: float) -> tuple[list[TextBox], int, int]:
    """(boxes, rows, columns) of a file's pixels."""
    from .frames import Frames, NoImage
    from .scan import parse

    engine = _engine()
    parsed = parse(data, name)
    try:
        try:
            decoded = Frames(bytes(data), parsed)
        except NoImage as exc:
            if "has no Pixel Data" in str(exc):
                return [], 0, 0
            raise Unreadable(f"{name}: the pixels cannot be looked at for text: {exc}") \
                from None
        photometric = str(decoded.ds.get("PhotometricInterpretation", "")).upper()
        found: list[TextBox] = []
        for index in frames_to_look_at(decoded.info.frames, frames):
            try:
                frame = decoded.frame(index)
            except (NoImage, FastanonError) as exc:
                raise Unreadable(f"{name}: frame {index} cannot be looked at for text: "
                                 f"{exc}") from None
            found += _boxes(engine, image(frame, photometric), index, min_score)
        return found, decoded.info.rows, decoded.info.columns
    finally:
        parsed.release()


def image(frame, photometric: str = ""):
    """A decoded frame as the 8-bit RGB image the detector reads: grey over the frame's own
    range, light text on dark whatever the photometric interpretation said."""
    import numpy as np

    arr = np.asarray(frame)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        if arr.dtype != np.uint8:
            top = float(arr.max()) or 1.0
            arr = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(arr)
    arr = arr.astype(np.float64)
    low, high = float(arr.min()), float(arr.max())
    grey = np.zeros(arr.shape, np.uint8) if high <= low else \
        ((arr - low) * (255.0 / (high - low))).astype(np.uint8)
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return np.ascontiguousarray(np.stack([grey] * 3, axis=-1))


def _boxes(engine, rgb, frame: int, min_score: float) -> list[TextBox]:
    with _ENGINE_LOCK:
        result, _ = engine(rgb)
    rows, columns = rgb.shape[:2]
    boxes = []
    for quad, text, score in result or ():
        text = str(text).strip()
        if float(score) < min_score or len(text.replace(" ", "")) < MIN_CHARACTERS:
            continue
        xs = [point[0] for point in quad]
        ys = [point[1] for point in quad]
        x0, y0 = max(0, int(min(xs))), max(0, int(min(ys)))
        x1, y1 = min(columns, int(max(xs) + 0.999)), min(rows, int(max(ys) + 0.999))
        if x1 > x0 and y1 > y0:
            boxes.append(TextBox(frame, x0, y0, x1 - x0, y1 - y0, text, float(score)))
    return boxes


def suggested_masks(boxes: list[TextBox], rows: int, columns: int, margin: int = 2) -> list:
    """A Mask for each box, on every frame (burned-in text stays where it is), the same box
    once. A detector's box hugs the glyphs it read: each is grown by margin pixels or an
    eighth of its height, whichever is more (a glyph's faint edge, a stroke below the line),
    and a box that comes nearer an edge of the image than its own height is taken to that
    edge (text cut by the edge is read short: its last glyph is not)."""
    from .masks import Mask

    masks, seen = [], set()
    for box in boxes:
        grow = max(margin, (box.height + 7) // 8)
        x0, y0 = box.x - grow, box.y - grow
        x1, y1 = box.x + box.width + grow, box.y + box.height + grow
        near = box.height
        x0 = 0 if x0 < near else x0
        y0 = 0 if y0 < near else y0
        x1 = columns if columns - x1 < near else x1
        y1 = rows if rows - y1 < near else y1
        key = (x0, y0, x1 - x0, y1 - y0)
        if key not in seen:
            seen.add(key)
            masks.append(Mask(*key))
    return masks
