"""Echoes: the patient's identifying values of one file, and the kept elements that repeat them.

Devices and PACS copy the patient's name, IDs and accession number into other attributes (StudyID,
procedure step IDs, descriptions, private blocks, the last component of a UID) and into folder
names. The values are collected from the file's own top-level attributes in its character set,
found first in the header's bytes (one search over the data set, Pixel Data excepted), then
confirmed and cleaned in the decoded value of each element they fall in.
"""

from __future__ import annotations

from ._lean import Pattern, packed

from .charsets import Charset
from .elements import DIRECTORY_RECORDS, KIND_ELEMENT, PIXEL_DATA, is_private, keyword
from .uids import new_uid, number_pseudonym, pseudonym
from .values import MAX_CHARS

ECHO_MIN = 3             # shorter name parts or IDs are too common to search for
ECHO_MAX = 128           # longer values are no name or ID (PN, LO: 64 characters): not searched
SOURCE_MAX = 4096        # bytes of a source value read at all
CJK_MIN = 2              # the same for values in other scripts (one ideograph is a syllable)
UID_ECHO_MIN = 6         # a UID component or IS value repeats an ID only from this length
MANY_NEEDLES = 64        # more values than this are looked up word by word
_WORD = Pattern(rb"[a-z0-9]+")
BULK = 64 << 10          # a top-level value this long is bulk data, not searched for echoes
HASH_LENGTH = 16         # fits every text VR (SH, AE, CS: 16 characters)
# Where the identity lives (PS3.3 C.7.1.1 Patient Module, C.7.2.1 General Study Module).
NAME_SOURCES = (0x00100010, 0x00101001, 0x00101005, 0x00101060, 0x00102297)
VALUE_SOURCES = (0x00100020, 0x00101000, 0x00080050, 0x00100030, 0x00101040, 0x00102154)
ECHO_SOURCES = NAME_SOURCES + VALUE_SOURCES
_TITLES = frozenset({"DR", "MR", "MRS", "MS", "MISS", "PROF"})
# VRs whose value is an identifier: an echo in it makes the whole value a pseudonym.
_ID_VRS = frozenset({"AE", "CS", "SH"})
_ID_WORDS = Pattern(r"(ID|IDs|Number|Numbers|Identifier|Locator)$")
# VRs whose values can repeat text: the `clean` action's, and identifiers (AE, CS) besides.
CLEANED_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN", "OB", "UN"})
_TEXT_VRS = CLEANED_VRS | {"AE", "CS"}
_SEPARATORS = " ,;:-_/^=()[]."
REFERENCED_FILE_ID = 0x00041500
_FILE_ID = Pattern(r"[A-Za-z0-9_]{1,8}")


class Echoes:
    """The identifying values of one data set and where else its header repeats them."""

    def __init__(self, region, charset: Charset, key: bytes, extra: tuple[int, ...] = (),
                 prescribed: dict[str, str] | None = None):
        elements = _source_elements(region, ECHO_SOURCES + extra)
        self.sources = frozenset(e.index for e in elements)
        # {an identifying value, lower case: what a lookup table prescribes in its place}
        self.prescribed = prescribed or {}
        signature = (charset.terms, key, tuple((e.tag, e.vr == "PN", region.value(e))
                                               for e in elements))
        identity = _IDENTITIES.get(signature)     # the files of a study share their patient
        if identity is None:
            if len(_IDENTITIES) >= 256:
                _IDENTITIES.clear()
            identity = _IDENTITIES[signature] = _Identity(signature[2], charset)
        self.charset, self.key, self.identity = charset, key, identity
        self.values, self._lowered = identity.values, identity.lowered

    # Compiled only for files where a value is found again (a patient's other files share them).
    pattern = property(lambda self: self.identity.compiled()[0])
    id_pattern = property(lambda self: self.identity.compiled()[1])
    needles = property(lambda self: self.identity.compiled()[2])

    def __bool__(self) -> bool:
        return bool(self.values)

    def _value(self, matched: str) -> tuple[str, int]:
        """(value, source tag) of a case-insensitive match (the same letters, any case; the
        regex folds some letters no lower() does, as Turkish I and ı)."""
        found = self.values.get(matched.lower()) or self.identity.folded.get(matched.casefold())
        if found is None:
            import re

            found = next(v for v in self.values.values()
                         if re.fullmatch(re.escape(v[0]), matched, re.I))
        return found

    def candidates(self, region) -> list[int]:
        """Indices of the elements (any depth) whose value bytes may repeat a value: found in the
        header's bytes outside the source elements themselves and outside bulk values (Pixel
        Data, and any top-level value of BULK bytes or more: documents, waveforms)."""
        if not self._lowered:
            return []
        buf, hits, lo = region.buf, [], 0
        skipped = region.table.spans(BULK)              # Pixel Data, documents, waveforms
        pixel = region.top(PIXEL_DATA)
        if pixel is not None and pixel.end - pixel.vstart < BULK:
            skipped = sorted(skipped + [(pixel.vstart, pixel.end)])
        ranges = []
        for start, end in skipped:
            ranges.append((lo, start))
            lo = end
        ranges.append((lo, len(buf)))
        many = len(self._lowered) > MANY_NEEDLES     # a DICOMDIR of many patients
        words = self.identity.first_words if many else frozenset()
        for lo, hi in ranges:
            text = bytes(buf[lo:hi]).lower()      # needles are lower case: one find each
            if many:                # one pass over the words instead of one find a needle
                hits += [lo + m.start() for m in _WORD.finditer(text) if m.group() in words]
            for needle in self.identity.others if many else self._lowered:
                at = text.find(needle)
                while at >= 0:
                    hits.append(lo + at)
                    at = text.find(needle, at + 1)
        return [i for i in region.table.holding(packed("q", sorted(hits)))
                if i not in self.sources]        # a source repeating itself is no echo

    def explain(self, text: str) -> str:
        """Which identifying values a text repeats, in words."""
        seen = {}
        for match in self.pattern.finditer(text) if self.pattern else ():
            value, tag = self._value(match.group())
            seen.setdefault(value, keyword(tag))
        return ", ".join(f"{source} {value!r}" for value, source in seen.items())

    def how(self, element) -> str:
        """What clean() does to an element, in words."""
        if element.vr == "UI":
            return "a new UID"
        if element.vr == "IS":
            return "a number pseudonym"
        if element.vr in ("UN", "OB"):
            return "the repeated values cut out, or overwritten with X in private binary data"
        if self._identifier(element):
            return "the pseudonym of the value it repeats"
        return "the repeated values cut out (a pseudonym when nothing else is left)"

    @staticmethod
    def _identifier(element) -> bool:
        return element.vr in _ID_VRS or bool(_ID_WORDS.search(keyword(element.tag) or ""))

    @staticmethod
    def _coded(element) -> bool:
        """A standard CS attribute that is not an identifier holds Defined Terms (PatientPosition
        HFS, BurnedInAnnotation YES): an equal ID is a coincidence, not an echo."""
        return (element.vr == "CS" and not is_private(element.tag)
                and not _ID_WORDS.search(keyword(element.tag) or ""))

    def clean(self, element, raw: bytes) -> bytes | None:
        """The element's value with the identity taken out (None: nothing to clean):
        a UID with a repeated ID as a component gets a new UID, an IS value equal to an ID a
        number of 9 digits (IDs of at least UID_ECHO_MIN characters); an identifier (AE, SH, a
        private CS, or an *ID/*Number attribute) a pseudonym, the same as the value it repeats
        when it is all of it; text loses the repeated values (a pseudonym when nothing is
        left); private binary values have them overwritten with X. Standard CS attributes
        (Defined Terms) and standard binary values are left alone."""
        vr = element.vr
        if vr == "UI":
            text = raw.decode("ascii", "replace").strip("\0 ")
            parts = [p for value in text.split("\\") for p in value.split(".")]
            if not any(len(p) >= UID_ECHO_MIN and p.lower() in self.values for p in parts):
                return None
            new = "\\".join(new_uid(self.key, value) for value in text.split("\\"))
            return _pad(new.encode("ascii"), b"\0")
        if vr == "IS":              # a number that repeats a numeric ID: a numeric pseudonym
            # latin-1: every byte of a malformed value comes back as it was
            old = raw.decode("latin-1").strip("\0 ").split("\\")
            new = [number_pseudonym(self.key, v.strip()) if len(v.strip()) >= UID_ECHO_MIN
                   and v.strip().lower() in self.values else v for v in old]
            return None if new == old else _pad("\\".join(new).encode("latin-1"), b" ")
        if vr not in _TEXT_VRS or not self.values or self._coded(element):
            return None
        if element.tag == REFERENCED_FILE_ID:     # a DICOMDIR record: the file's new path
            old = raw.decode("latin-1").strip("\0 ").split("\\")
            new = [self.clean_component(part) for part in old]
            return None if new == old else _pad("\\".join(new).encode("latin-1"), b" ")
        text, encode = self.charset.decode(raw), self.charset.encode
        whole = text.strip("\0 ")
        same = self.values.get(whole.lower()) if "\\" not in whole else None
        if same is not None:        # all of it repeats a value: no regex needed (DICOMDIRs)
            out = encode(self.replacement(same[0], vr))
            return _pad(out, b"\0" if vr in ("UN", "OB") else b" ")
        pattern = self.id_pattern if self._identifier(element) else self.pattern
        if pattern is None:
            return None
        if not pattern.search(text):        # a value written in UTF-8 all the same (PACS blocks)
            try:
                text, encode = raw.decode("utf-8"), _utf8
            except UnicodeDecodeError:
                pass
        if vr in ("UN", "OB") and not _printable(text):
            if not is_private(element.tag) or not self.needles.search(raw):
                return None          # a standard binary value (a document, an icon) stays whole
            return self.needles.sub(lambda m: b"X" * len(m.group()), raw)
        if not pattern.search(text):
            return None
        single = vr in ("LT", "ST", "UT")
        identifier = self._identifier(element)
        values = [text] if single else text.split("\\")
        new = "\\".join(self._clean_value(v.strip("\0 "), identifier, pattern, vr)
                         for v in values)
        out = encode(new)
        if out is None:      # a set the file declares cannot write what is left: pseudonyms only
            out = "\\".join(self._pseudonym(v.strip("\0 ")) for v in values).encode("ascii")
        return _pad(out, b"\0" if vr in ("UN", "OB") else b" ")

    def _clean_value(self, value: str, identifier: bool, pattern, vr: str = "LO") -> str:
        if not value or not pattern.search(value):
            return value
        same = self._value(value) if pattern.fullmatch(value) else None
        if same is not None:
            return self.replacement(same[0], vr)      # as the source's own new value
        if identifier:
            return self._pseudonym(value)
        import re

        cut = re.sub(r"\s{2,}", " ", pattern.sub("", value)).strip(_SEPARATORS)
        return cut if any(c.isalnum() for c in cut) else self._pseudonym(value)

    def _pseudonym(self, value: str) -> str:
        return pseudonym(self.key, value, HASH_LENGTH) if value else value

    def replacement(self, value: str, vr: str = "LO") -> str:
        """What a copy of a whole identifying value becomes: the value a lookup table prescribes
        for it (the sponsor's subject ID for a PatientID) where it fits the copy's VR, else the
        value's keyed pseudonym, as its source's own."""
        new = self.prescribed.get(value.lower())
        if new is not None and len(new) <= MAX_CHARS.get(vr, len(new)):
            return new
        return pseudonym(self.key, value, HASH_LENGTH)

    def clean_path(self, rel: str) -> str:
        """A relative output path with its folder and file names cleaned (clean_component)."""
        return "/".join(self.clean_component(part) for part in rel.split("/"))

    def clean_component(self, part: str) -> str:
        """A folder or file name without the identifying values it holds, the same in every file
        (so a tree stays a tree): a name that is a DICOM File ID component (PS3.10 §8.2: at most
        8 of A-Z, 0-9, _; any case here), as in a DICOMDIR's file set, becomes an 8-character
        pseudonym of itself, so that the records' ReferencedFileID can follow; in any other
        name each value becomes its own pseudonym."""
        if not self.values or not self.identity.may_hold(part) or self.pattern is None \
                or not self.pattern.search(part):
            return part
        if _FILE_ID.fullmatch(part):    # any case: a CD's names may be shown in lower case
            prescribed = self.prescribed.get(part.lower())
            if prescribed is not None and _FILE_ID.fullmatch(prescribed) and \
                    prescribed == prescribed.upper():
                return prescribed       # the sponsor's ID, itself a valid File ID component
            return pseudonym(self.key, "file-id:" + part.upper(), 8)
        return self.pattern.sub(lambda m: _path_safe(self.replacement(self._value(m.group())[0])),
                                part)


class _Identity:
    """What the values of a set of source elements compile to (shared by a patient's files)."""

    def __init__(self, sources: tuple, charset: Charset):
        self.charset = charset
        self.values: dict[str, tuple[str, int]] = {}     # lower case → (text, source tag)
        self.names = set()                                # name parts: only in free text
        for tag, person, raw in sources:
            text = charset.decode(raw[:SOURCE_MAX]).strip("\0 ")
            for value in text.split("\\"):
                self._add(value.strip(), tag)
                if tag in NAME_SOURCES or person:
                    for group in value.split("="):       # alphabetic, ideographic, phonetic
                        parts = [p.strip() for p in group.split("^")]
                        for part in parts:
                            if not part.endswith(".") and part.upper() not in _TITLES:
                                self.names.add(self._add(part, tag))
                        joined = "".join(parts[:2])    # 山田太郎: family and given names as one
                        if not joined.isascii():
                            self.names.add(self._add(joined, tag))
        self.folded = {key.casefold(): found for key, found in self.values.items()}
        words = sorted((v for v, _ in self.values.values()), key=len, reverse=True)
        self.words = words
        needles = set()
        for word in words:
            for form in {word, word.lower(), word.upper(), word.title()}:
                for raw in (charset.encode(form), form.encode("utf-8"), _latin(form)):
                    if raw:
                        needles.add(_without_escapes(raw))
        self.needle_bytes = needles
        self.lowered = sorted({n.lower() for n in needles if n})
        # For many needles: those that begin and end a word are found by their first word (as
        # clean matches them: whole words); the others one by one.
        self.first_words, others = set(), []
        for needle in self.lowered:
            first = _first_word(needle)
            if first and needle.isascii() and needle[:1].isalnum() and needle[-1:].isalnum():
                self.first_words.add(first)
            else:
                others.append(needle)
        self.others = others
        self._compiled = None
        # Lower-case ASCII words, when every word is ASCII: an ASCII text holds a match of the
        # case-insensitive pattern only if it holds one of them (other scripts fold more).
        self.ascii_words = ([w.lower() for w in words] if all(w.isascii() for w in words)
                            else None)

    def may_hold(self, text: str) -> bool:
        """False when text cannot match the pattern (no regex needed to know it)."""
        if self.ascii_words is None or not text.isascii():
            return True
        lowered = text.lower()
        return any(word in lowered for word in self.ascii_words)

    def compiled(self):
        """(pattern, id_pattern, needles): the regexes, built on first use."""
        if self._compiled is None:
            import re

            needles = sorted(self.needle_bytes, key=len, reverse=True)
            self._compiled = (
                _words(self.words),
                _words([w for w in self.words if w.lower() not in self.names]),
                re.compile(b"|".join(re.escape(n) for n in needles), re.I) if needles else None)
        return self._compiled

    def _add(self, value: str, tag: int) -> str:
        shortest = ECHO_MIN if value.isascii() else CJK_MIN   # 2 ideographs make a name part
        if shortest <= len(value) <= ECHO_MAX and any(c.isalnum() for c in value):
            self.values.setdefault(value.lower(), (value, tag))
        return value.lower()


_IDENTITIES: dict = {}


def _path_safe(text: str) -> str:
    """A value as part of a file or folder name (a prescribed name may hold ^ or /)."""
    import re

    return re.sub(r"[^\w.-]+", "_", text).strip("_") or "_"


def _source_elements(region, tags: tuple[int, ...]):
    """The elements the identity is read from: top level, or in a DICOMDIR the same attributes
    in every directory record (PS3.3 F.5), whose patients the file set holds."""
    wanted = frozenset(tags)
    records = region.top(DIRECTORY_RECORDS)
    if records is None:
        found = (region.top(tag) for tag in tags)
        return [e for e in found if e is not None and e.kind == KIND_ELEMENT]
    table, out = region.table, []
    items = {index for index in range(len(table)) if table.row(index)[5] == records.index}
    for index in range(records.index + 1, len(table)):
        tag, _, kind, _, _, parent, start, _, _, _ = table.row(index)
        if start >= records.end:
            break
        if parent in items and kind == KIND_ELEMENT and tag in wanted:
            out.append(region.element(index))
    return out


def _words(words: list[str]):
    """A case-insensitive regex of whole words: a value that starts or ends with a Latin letter
    or digit matches only where no letter or digit goes on (names inside CJK text still do)."""
    if not words:
        return None
    import re

    edge = "[^\\W_]"
    return re.compile("|".join(
        ("(?<!" + edge + ")" if w[0].isascii() and w[0].isalnum() else "") + re.escape(w)
        + ("(?!" + edge + ")" if w[-1].isascii() and w[-1].isalnum() else "") for w in words),
        re.I)


def _without_escapes(raw: bytes) -> bytes:
    """raw without ISO 2022 escape sequences (the searches look for the letters)."""
    if b"\x1b" not in raw:
        return raw
    import re

    return re.sub(rb"\x1b[$()\-]*[@-Za-z]", b"", raw)


def _first_word(needle: bytes) -> bytes:
    """The leading run of lower-case ASCII letters and digits (what [a-z0-9]+ matches there)."""
    end = 0
    while end < len(needle) and (97 <= needle[end] <= 122 or 48 <= needle[end] <= 57):
        end += 1
    return needle[:end]


def _utf8(text: str) -> bytes:
    return text.encode("utf-8")


def _latin(text: str) -> bytes | None:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return None


def _printable(text: str) -> bool:
    body = text.rstrip("\0 ")
    return bool(body) and all(c.isprintable() or c in "\r\n\t\x1b" for c in body)


def _pad(raw: bytes, pad: bytes) -> bytes:
    return raw + pad if len(raw) % 2 else raw
