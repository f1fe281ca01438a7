"""Text values in a file's Specific Character Set (0008,0005): decoded and encoded (PS3.5 §6.1).

Single-byte sets, UTF-8, GB18030 and GBK are Python codecs; ISO 2022 code extensions switch
character sets inside a value with escape sequences (PS3.3 C.12.1.1.2, PS3.5 §6.1.2.5), so a value
is decoded escape by escape, and encoded back run by run with the sets the file declares.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Defined Terms of Specific Character Set (PS3.3 Table C.12-2, C.12-3, C.12-4, C.12-5).
_CODECS = {"": "ascii", "ISO_IR 6": "ascii", "ISO 2022 IR 6": "ascii",
           "ISO_IR 100": "latin_1", "ISO_IR 101": "iso8859_2", "ISO_IR 109": "iso8859_3",
           "ISO_IR 110": "iso8859_4", "ISO_IR 144": "iso8859_5", "ISO_IR 127": "iso8859_6",
           "ISO_IR 126": "iso8859_7", "ISO_IR 138": "iso8859_8", "ISO_IR 148": "iso8859_9",
           "ISO_IR 203": "iso8859_15", "ISO_IR 13": "shift_jis", "ISO_IR 166": "tis_620",
           "ISO_IR 192": "utf_8", "GB18030": "gb18030", "GBK": "gbk",
           "ISO 2022 IR 100": "latin_1", "ISO 2022 IR 101": "iso8859_2",
           "ISO 2022 IR 109": "iso8859_3", "ISO 2022 IR 110": "iso8859_4",
           "ISO 2022 IR 144": "iso8859_5", "ISO 2022 IR 127": "iso8859_6",
           "ISO 2022 IR 126": "iso8859_7", "ISO 2022 IR 138": "iso8859_8",
           "ISO 2022 IR 148": "iso8859_9", "ISO 2022 IR 203": "iso8859_15",
           "ISO 2022 IR 13": "shift_jis", "ISO 2022 IR 166": "tis_620"}
# Escape sequence → (codec, whether the escape stays in front of the bytes for the codec).
_ESCAPES = {b"\x1b(B": ("ascii", False), b"\x1b(J": ("ascii", False),
            b"\x1b)I": ("shift_jis", False), b"\x1b$B": ("iso2022_jp", True),
            b"\x1b$(D": ("iso2022_jp_2", True), b"\x1b$)C": ("euc_kr", False),
            b"\x1b$)A": ("gb2312", False), b"\x1b-A": ("latin_1", False),
            b"\x1b-B": ("iso8859_2", False), b"\x1b-C": ("iso8859_3", False),
            b"\x1b-D": ("iso8859_4", False), b"\x1b-L": ("iso8859_5", False),
            b"\x1b-G": ("iso8859_6", False), b"\x1b-F": ("iso8859_7", False),
            b"\x1b-H": ("iso8859_8", False), b"\x1b-M": ("iso8859_9", False),
            b"\x1b-T": ("tis_620", False), b"\x1b-b": ("iso8859_15", False)}
# The escape a term designates, for encoding (PS3.3 Table C.12-4, C.12-5).
_TERM_ESCAPES = {"ISO 2022 IR 87": b"\x1b$B", "ISO 2022 IR 159": b"\x1b$(D",
                 "ISO 2022 IR 149": b"\x1b$)C", "ISO 2022 IR 58": b"\x1b$)A",
                 "ISO 2022 IR 13": b"\x1b)I", "ISO 2022 IR 100": b"\x1b-A",
                 "ISO 2022 IR 101": b"\x1b-B", "ISO 2022 IR 109": b"\x1b-C",
                 "ISO 2022 IR 110": b"\x1b-D", "ISO 2022 IR 144": b"\x1b-L",
                 "ISO 2022 IR 127": b"\x1b-G", "ISO 2022 IR 126": b"\x1b-F",
                 "ISO 2022 IR 138": b"\x1b-H", "ISO 2022 IR 148": b"\x1b-M",
                 "ISO 2022 IR 166": b"\x1b-T", "ISO 2022 IR 203": b"\x1b-b"}
_ESCAPE = re.compile(rb"\x1b(?:\$[()]?[@-Z]|[()\-][@-Za-z])")


class Charset:
    """How one file's text values are written: decode(raw) → str, encode(text) → bytes or None.

    >>> Charset.of("ISO_IR 100").decode(b"M\\xfcller"), Charset.of("").encode("Smith")
    ('Müller', b'Smith')
    >>> j = Charset.of("\\\\ISO 2022 IR 87")
    >>> j.decode(j.encode("Yamada=山田"))
    'Yamada=山田'
    """

    def __init__(self, terms: tuple[str, ...]):
        self.terms = terms
        self.extended = any(t.startswith("ISO 2022") for t in terms)
        self.codec = _CODECS.get(terms[0], "ascii") if terms else "ascii"

    @classmethod
    def of(cls, value: str) -> "Charset":
        return _charset(tuple(t.strip() for t in value.strip(" \0").split("\\")))

    def decode(self, raw: bytes) -> str:
        if not self.extended or b"\x1b" not in raw:
            # 8-bit bytes in a file that declares none (or an unknown set) are read as Latin-1,
            # as most such writers meant, rather than lost (PS3.5 §6.1.2.3 permits only ASCII)
            return raw.decode("latin_1" if self.codec == "ascii" else self.codec, "replace")
        out, codec, keep, start = [], self.codec, b"", 0
        for match in _ESCAPE.finditer(raw):
            out.append(_decode(keep + raw[start:match.start()], codec))
            codec, kept = _ESCAPES.get(match.group(), (self.codec, False))
            keep, start = (match.group() if kept else b""), match.end()
        out.append(_decode(keep + raw[start:], codec))
        return "".join(out)

    def encode(self, text: str) -> bytes | None:
        """The bytes of text in this character set; None when it has no way to write it."""
        if not self.extended:
            try:
                return text.encode("latin_1" if self.codec == "ascii" else self.codec)
            except UnicodeEncodeError:     # (Latin-1 back where the file had such bytes)
                return None
        out = []
        for run in re.findall(r"[\x00-\x7f]+|[^\x00-\x7f]+", text):
            if run.isascii():
                out.append(run.encode("ascii"))
                continue
            for term in self.terms:
                escape = _TERM_ESCAPES.get(term)
                codec = _ESCAPES.get(escape, (None, False))[0] if escape else None
                if codec is None:
                    continue
                try:
                    raw = run.encode(codec)
                except UnicodeEncodeError:
                    continue
                out.append(raw if raw.startswith(b"\x1b") else escape + raw)
                if not raw.startswith(b"\x1b"):
                    out.append(b"\x1b(B" if escape.startswith(b"\x1b$") else b"")
                break
            else:
                return None
        return b"".join(out)


def _decode(raw: bytes, codec: str) -> str:
    return raw.decode(codec, "replace") if raw else ""


@lru_cache(maxsize=64)
def _charset(terms: tuple[str, ...]) -> Charset:
    return Charset(terms)
