"""New values valid for their VR: dummies, fixed texts, padding (PS3.5 §6.2)."""

from __future__ import annotations

import struct

from .elements import BINARY_NUMBER_VRS, BYTES_VRS
from .errors import PolicyError

REPLACEMENT_TEXT = "ANONYMIZED"

# Maximum value lengths in characters (PS3.5 Table 6.2-1); absent: no practical limit.
MAX_CHARS = {"AE": 16, "AS": 4, "CS": 16, "DA": 8, "DS": 16, "DT": 26, "IS": 12, "LO": 64,
              "LT": 10240, "PN": 64, "SH": 16, "ST": 1024, "TM": 14, "UI": 64}

# Dummies for VRs where a free text is not a valid value (PS3.15 E.1: "D" must be valid for the VR).
_DUMMY_TEXT = {"DA": "19000101", "TM": "000000", "DT": "19000101000000.000000", "AS": "000D",
               "DS": "0", "IS": "0", "UI": "2.25.0"}

_BYTES_WIDTH = {"OB": 2, "OW": 2, "UN": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def pad(vr: str, raw: bytes) -> bytes:
    """Pad a value to even length: UI with NUL, OB/UN with NUL, text with a space (PS3.5 §6.2)."""
    if len(raw) % 2 == 0:
        return raw
    return raw + (b"\0" if vr in ("UI", "OB", "UN") or vr in BYTES_VRS else b" ")


def text_value(vr: str, text: str, encoding: str = "ascii") -> bytes:
    """A text value for a string VR, truncated to the VR's maximum length and padded to even length."""
    limit = MAX_CHARS.get(vr)
    if limit is not None:
        text = text[:limit]
    try:
        raw = text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        raise PolicyError(f"replacement {text!r} cannot be written in the file's "
                          f"character set ({encoding})") from None
    return pad(vr, raw)


def dummy(vr: str, big: bool, text: str = REPLACEMENT_TEXT, encoding: str = "ascii") -> bytes:
    """A non-empty value valid for the VR: text for strings, a dummy date/time/number, zero bytes.

    >>> dummy("DA", False), dummy("US", True), dummy("LO", False)
    (b'19000101', b'\\x00\\x00', b'ANONYMIZED')
    """
    if vr in BINARY_NUMBER_VRS:
        fmt, _ = BINARY_NUMBER_VRS[vr]
        return struct.pack((">" if big else "<") + fmt, *([0] * len(fmt)))
    if vr in _BYTES_WIDTH:
        return bytes(_BYTES_WIDTH[vr])
    if vr == "SQ":
        return b""
    return text_value(vr, _DUMMY_TEXT.get(vr, text), encoding)


def replacement(vr: str, big: bool, text: str | None, encoding: str = "ascii") -> bytes:
    """The value of a `replace` action: the given text where the VR takes it, else a dummy."""
    if text is None or vr in BINARY_NUMBER_VRS or vr in _BYTES_WIDTH or vr == "SQ":
        return dummy(vr, big, REPLACEMENT_TEXT, encoding)
    return text_value(vr, text, encoding)
