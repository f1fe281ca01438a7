"""Text values in a file's Specific Character Set (0008,0005): decoded and encoded (PS3.5 §6.1).

Single-byte sets, UTF-8, GB18030 and GBK are Python codecs; ISO 2022 code extensions switch
character sets inside a value with escape sequences (PS3.3 C.12.1.1.2, PS3.5 §6.1.2.5), so a value
is decoded escape by escape, and encoded back run by run with the sets the file declares.
"""

from __future__ import annotations

from ._lean import Pattern, memo

# ISO 2022 code elements (PS3.3 Tables C.12-3, C.12-4, C.12-5): Defined Term → (escape
# sequence, Python codec, whether the escape stays in front of the bytes for the codec).
_EXTENSIONS = {
    "ISO 2022 IR 6": (b"\x1b(B", "ascii", False), "ISO 2022 IR 13": (b"\x1b)I", "shift_jis", False),
    "ISO 2022 IR 87": (b"\x1b$B", "iso2022_jp", True),
    "ISO 2022 IR 159": (b"\x1b$(D", "iso2022_jp_2", True),
    "ISO 2022 IR 149": (b"\x1b$)C", "euc_kr", False),
    "ISO 2022 IR 58": (b"\x1b$)A", "gb2312", False),
    **{f"ISO 2022 IR {n}": (b"\x1b-" + final, codec, False) for n, final, codec in (
        (100, b"A", "latin_1"), (101, b"B", "iso8859_2"), (109, b"C", "iso8859_3"),
        (110, b"D", "iso8859_4"), (144, b"L", "iso8859_5"), (127, b"G", "iso8859_6"),
        (126, b"F", "iso8859_7"), (138, b"H", "iso8859_8"), (148, b"M", "iso8859_9"),
        (166, b"T", "tis_620"), (203, b"b", "iso8859_15"))}}
_ESCAPES = {escape: (codec, kept) for escape, codec, kept in _EXTENSIONS.values()}
_ESCAPES[b"\x1b(J"] = ("ascii", False)             # JIS X 0201 Roman, read as ASCII
# The first value names the set values start in (PS3.3 Table C.12-2): single-byte sets, with or
# without code extensions, and the sets that do without them.
_CODECS = {"": "ascii", "ISO_IR 192": "utf_8", "GB18030": "gb18030", "GBK": "gbk",
           **{term: codec for term, (_, codec, kept) in _EXTENSIONS.items()
              if not kept and codec not in ("euc_kr", "gb2312")},
           **{term.replace("ISO 2022 IR", "ISO_IR"): codec
              for term, (_, codec, kept) in _EXTENSIONS.items()
              if not kept and codec not in ("euc_kr", "gb2312")}}
_ESCAPE = Pattern(rb"\x1b(?:\$[()]?[@-Z]|[()\-][@-Za-z])")


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
        import re

        for run in re.findall(r"[\x00-\x7f]+|[^\x00-\x7f]+", text):
            if run.isascii():
                out.append(run.encode("ascii"))
                continue
            for term in self.terms:
                if term not in _EXTENSIONS:
                    continue
                escape, codec, _ = _EXTENSIONS[term]
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


@memo(maxsize=64)
def _charset(terms: tuple[str, ...]) -> Charset:
    return Charset(terms)
