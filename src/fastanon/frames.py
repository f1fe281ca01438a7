"""Decoded frames of a file: native pixels, or compressed ones through pydicom's plugins and the
codecs extra (encapsulated.viewed_frame), rescaled or put through their palette.

What the preview page draws (preview/render.py) and the text detector reads (text.py). pydicom
and numpy are imported here, lazily, when a frame is first asked for (PS3.3 C.7.6.3.1.2 for
photometric interpretations, C.11.2 for the window a file names).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from .elements import PIXEL_DATA
from .errors import FastanonError
from .scan import EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE, Parsed

_RAW_SYNTAX = {(True, False): IMPLICIT_LE, (False, False): EXPLICIT_LE, (False, True): EXPLICIT_BE}


class NoImage(FastanonError):
    """The file has no pixels the page can show (none, or no decoder for them)."""


@dataclass(frozen=True)
class ImageInfo:
    """What the page needs to draw a file's frames and offer a window/level."""

    rows: int
    columns: int
    frames: int
    color: bool
    center: float          # default window, in rescaled units (the file's, or the data's range)
    width: float
    low: float             # the first frame's range (rescaled), for the window sliders
    high: float

    def as_dict(self) -> dict:
        return {"rows": self.rows, "columns": self.columns, "frames": self.frames,
                "color": self.color, "center": self.center, "width": self.width,
                "low": self.low, "high": self.high}


class Frames:
    """Decoded frames of one file, a few kept (the page asks for the same frame repeatedly)."""

    KEEP = 4

    def __init__(self, data: bytes, parsed: Parsed):
        import pydicom

        self._data = data
        self._parsed = parsed
        self._kwargs = {}
        if parsed.meta is None:          # a raw data set: say how it is encoded
            region = parsed.dataset
            self._kwargs["transfer_syntax_uid"] = _RAW_SYNTAX.get((region.implicit, region.big))
        try:
            self.ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
        except Exception as exc:
            raise NoImage(f"the attributes describing the image cannot be read ({exc})") from None
        if parsed.dataset.table.find(PIXEL_DATA, -1) < 0:
            raise NoImage("the file has no Pixel Data")
        self._cache: dict[int, object] = {}
        first = self.frame(0)
        self.info = self._info(first)

    def _decode(self, index: int):
        from pydicom.pixels import apply_color_lut, apply_rescale, pixel_array

        try:
            arr = pixel_array(io.BytesIO(self._data), index=index, **self._kwargs)
        except Exception as exc:
            arr = self._viewed(index, exc)
        photometric = str(self.ds.get("PhotometricInterpretation", "")).upper()
        if photometric == "PALETTE COLOR":
            try:
                arr = apply_color_lut(arr, self.ds)
            except Exception as exc:
                raise NoImage(f"the palette cannot be applied ({_first_line(exc)})") from None
        elif arr.ndim == 2:
            arr = apply_rescale(arr, self.ds)
        return arr

    def _viewed(self, index: int, failed: Exception):
        """A compressed frame pydicom could not decode (it has no plugin for it), decoded by
        the codecs extra; NoImage naming what to install when that cannot either."""
        from .encapsulated import NoCodec, viewed_frame

        parsed = self._parsed
        try:
            arr = viewed_frame(parsed.dataset, parsed.transfer_syntax,
                               int(self.ds.get("NumberOfFrames") or 1), index, parsed.name)
        except NoCodec as exc:
            raise NoImage(f"the pixel data cannot be decoded here ({_first_line(failed)}); "
                          f"{exc}") from None
        except FastanonError as exc:
            raise NoImage(f"the pixel data cannot be decoded ({exc})") from None
        bits = int(self.ds.get("BitsStored") or 0)
        if self.ds.get("PixelRepresentation") == 1 and arr.dtype.kind == "u" and 0 < bits <= 32:
            import numpy as np      # a codec's unsigned bit patterns of signed values

            arr = arr.astype(np.int64) & ((1 << bits) - 1)
            arr = np.where(arr >= 1 << (bits - 1), arr - (1 << bits), arr)
        return arr

    def frame(self, index: int):
        found = self._cache.get(index)
        if found is None:
            frames = int(self.ds.get("NumberOfFrames") or 1)
            if not 0 <= index < frames:
                raise FastanonError(f"frame {index} does not exist (the file has {frames})")
            found = self._decode(index)
            if len(self._cache) >= self.KEEP:
                self._cache.pop(next(iter(self._cache)))
            self._cache[index] = found
        return found

    def _info(self, first) -> ImageInfo:
        import numpy as np

        color = first.ndim == 3
        low, high = float(np.min(first)), float(np.max(first))
        center, width = _file_window(self.ds)
        if color:
            center, width = (low + high) / 2, max(high - low, 1.0)
        elif high <= low and (width is None or width <= 0):
            center, width = low + 1.0, 1.0      # one value throughout: shown as the darkest
        elif width is None or width <= 0:
            center, width = (low + high) / 2, max(high - low, 1.0)
        return ImageInfo(int(first.shape[0]), int(first.shape[1]),
                         int(self.ds.get("NumberOfFrames") or 1), color, center, width, low, high)


def _file_window(ds) -> tuple[float | None, float | None]:
    """The first Window Center / Width of the file (PS3.3 C.11.2), if it has one."""
    try:
        center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
        if center is None or width is None:
            return None, None
        center = center[0] if hasattr(center, "__len__") and not isinstance(center, str) else center
        width = width[0] if hasattr(width, "__len__") and not isinstance(width, str) else width
        return float(center), float(width)
    except (TypeError, ValueError, IndexError):
        return None, None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
