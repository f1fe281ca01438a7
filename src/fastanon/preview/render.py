"""Pixels → PNG for the preview page: one frame, window/levelled to 8 bits.

The frames are decoded by fastanon.frames (the text detector reads the same); the PNG is
written with zlib and struct (PS3.3 C.11.2.1.2 for the window).
"""

from __future__ import annotations

import struct
import zlib

from ..frames import Frames as _Decoded
from ..frames import ImageInfo, NoImage  # noqa: F401  (the page's vocabulary)


class Frames(_Decoded):
    """Decoded frames of one file, and each as a PNG."""

    def png(self, index: int, center: float | None = None, width: float | None = None) -> bytes:
        """One frame as an 8-bit grey or RGB PNG; grey frames under the given window."""
        import numpy as np

        arr = self.frame(index)
        if arr.ndim == 3:                          # RGB: scale the stored range to 8 bits
            top = float(arr.max()) if arr.dtype != np.uint8 else 255.0
            pixels = arr if arr.dtype == np.uint8 else (arr * (255.0 / max(top, 1.0)))
            return encode_png(np.asarray(pixels, dtype=np.uint8))
        center = self.info.center if center is None else center
        width = self.info.width if width is None else max(width, 1.0)
        # PS3.3 C.11.2.1.2.1: linear VOI LUT function.
        scaled = ((arr.astype(np.float64) - (center - 0.5)) / max(width - 1.0, 1.0) + 0.5)
        grey = np.clip(scaled * 255.0, 0, 255).astype(np.uint8)
        if str(self.ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
            grey = 255 - grey
        return encode_png(grey)


def encode_png(pixels) -> bytes:
    """A PNG (8-bit grey for 2-D, RGB for rows×columns×3 uint8 arrays): signature, IHDR, IDAT, IEND.

    >>> encode_png(__import__("numpy").zeros((2, 3), "uint8"))[:8]
    b'\\x89PNG\\r\\n\\x1a\\n'
    """
    import numpy as np

    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    rows, columns = pixels.shape[:2]
    colour_type = 2 if pixels.ndim == 3 else 0
    lines = pixels.reshape(rows, -1)
    raw = np.zeros((rows, lines.shape[1] + 1), dtype=np.uint8)     # filter byte 0 per line
    raw[:, 1:] = lines

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", columns, rows, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 3)) + chunk(b"IEND", b""))
