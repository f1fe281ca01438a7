"""Values a sponsor prescribes: a lookup table keyed by an original value, read once per run.

A trial site does not choose the pseudonyms: the sponsor gives each enrolled patient a subject
ID and says which values the images carry. The table is a CSV file (UTF-8, a byte order mark
allowed, quoted values as the csv module reads them): its first column holds the original
value of the key attribute (PatientID unless the user names another keyword); every other
column is named by a DICOM keyword and gives the value that attribute gets in that patient's
files (PatientID, PatientName, ClinicalTrialSubjectID, ...), or is `date_offset_days`: the
whole days that patient's dates move (instead of the keyed offset). Columns named with a
leading "#" are notes and are not read. Anything else (a misspelt keyword, an attribute that
is no text, a value too long for its VR, a key given twice) refuses the table, saying where.

A file whose key is not in the table is refused (LookupMissing), unless missing is
"pseudonym": then it gets the policy's own keyed values, as without a table.
"""

from __future__ import annotations

import os

from .elements import dictionary_entry, keyword, parse_tag
from .errors import FastanonError, PolicyError
from .values import MAX_CHARS

OFFSET_COLUMN = "date_offset_days"
MISSING = ("refuse", "pseudonym")
# The VRs a prescribed value may have: text (PS3.5 Table 6.2-1; their maximum lengths are
# values.MAX_CHARS, a PN's per component group).
TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                      "TM", "UC", "UT"})


class LookupMissing(FastanonError):
    """A file's key is not in the lookup table (and the table says to refuse it)."""


class Lookup:
    """A lookup table: key tag, the prescribed columns (tag, VR), and per original key value
    the values (and the date offset, when the table gives one)."""

    def __init__(self, path: str, key: int, columns: tuple, rows: dict, offsets: dict,
                 missing: str = "refuse"):
        if missing not in MISSING:
            raise PolicyError(f"lookup: missing is {' or '.join(MISSING)}, not {missing!r}")
        self.path, self.key, self.columns = path, key, columns
        self.rows, self.offsets, self.missing = rows, offsets, missing

    def __repr__(self) -> str:
        return (f"Lookup({self.path!r}, key={keyword(self.key)}, {len(self.rows)} row(s), "
                f"missing={self.missing})")

    def __eq__(self, other) -> bool:
        return isinstance(other, Lookup) and (
            self.path, self.key, self.columns, self.rows, self.offsets, self.missing) == (
            other.path, other.key, other.columns, other.rows, other.offsets, other.missing)

    def __hash__(self) -> int:
        return hash((self.path, self.key, self.columns, len(self.rows), self.missing))

    @property
    def tags(self) -> tuple[int, ...]:
        return tuple(tag for tag, _ in self.columns)

    def replace(self, missing: str) -> "Lookup":
        return Lookup(self.path, self.key, self.columns, self.rows, self.offsets, missing)

    def values_for(self, original: str) -> dict[int, str] | None:
        """{tag: prescribed text} for a file whose key attribute holds original; None when the
        table has no row for it and says pseudonym; LookupMissing when it says refuse. The
        message names the table, not the value (it is the patient's)."""
        found = self.rows.get(original.strip())
        if found is None:
            if self.missing == "pseudonym":
                return None
            what = f"its {keyword(self.key)} is" if original.strip() else \
                f"it has no {keyword(self.key)}, which is"
            raise LookupMissing(f"{what} not in the lookup table {self.path} "
                                "(--lookup-missing pseudonym gives such files keyed "
                                "pseudonyms instead)")
        return dict(zip(self.tags, found))

    def offset_for(self, original: str) -> int | None:
        return self.offsets.get(original.strip())

    @classmethod
    def load(cls, path, key: str = "PatientID", missing: str = "refuse") -> "Lookup":
        """The table in the CSV file at path (PolicyError naming the file and line for any
        problem)."""
        path = os.fspath(path)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise PolicyError(f"{path}: the lookup table cannot be read ({exc.strerror})") \
                from None
        return cls.parse(data, os.path.abspath(path), key, missing)

    @classmethod
    def parse(cls, data: bytes, path: str, key: str = "PatientID",
              missing: str = "refuse") -> "Lookup":
        """The table in data (a CSV file's bytes; path: its name, for messages)."""
        import csv
        import io

        try:
            key_tag = parse_tag(key)
        except (KeyError, ValueError):
            raise PolicyError(f"lookup key {key!r} is not a DICOM keyword") from None
        entry = dictionary_entry(key_tag)
        if entry is None or entry[0] not in TEXT_VRS:
            raise PolicyError(f"lookup key {key!r}: a lookup is keyed by a text attribute")
        try:
            lines = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
        except UnicodeDecodeError as exc:
            raise PolicyError(f"{path}: the lookup table is not UTF-8 ({exc.reason} at byte "
                              f"{exc.start:,})") from None
        except csv.Error as exc:
            raise PolicyError(f"{path}: the lookup table is not CSV ({exc})") from None
        lines = [line for line in lines if any(cell.strip() for cell in line)]
        if not lines:
            raise PolicyError(f"{path}: the lookup table is empty")
        header = [cell.strip() for cell in lines[0]]
        if len(header) < 2:
            raise PolicyError(f"{path}: a lookup table has the key's column, then at least one "
                              "column of values (a DICOM keyword, or date_offset_days)")
        columns, used, offset_at = [], [], None
        for at, name in enumerate(header[1:], 1):
            if name.startswith("#"):
                continue                        # a note for the people keeping the table
            if name == OFFSET_COLUMN:
                offset_at = at
                continue
            try:
                tag = parse_tag(name)
            except (KeyError, ValueError):
                tag = None
            found = dictionary_entry(tag) if tag is not None else None
            if found is None or found[1] != name:
                raise PolicyError(f"{path}: column {name!r} is not a DICOM keyword (nor "
                                  f"{OFFSET_COLUMN}; a column for notes starts with #)")
            if found[0] not in TEXT_VRS:
                raise PolicyError(f"{path}: column {name}: its VR is {found[0]}; a lookup "
                                  "gives text values only")
            if tag in (t for t, _ in columns):
                raise PolicyError(f"{path}: column {name} is given twice")
            columns.append((tag, found[0]))
            used.append(at)
        if not columns and offset_at is None:
            raise PolicyError(f"{path}: no column of values (a DICOM keyword, or "
                              f"{OFFSET_COLUMN})")
        rows: dict[str, tuple[str, ...]] = {}
        offsets: dict[str, int] = {}
        for number, line in enumerate(lines[1:], 2):
            if len(line) != len(header):
                raise PolicyError(f"{path}, line {number}: {len(line)} value(s) for "
                                  f"{len(header)} column(s)")
            original = line[0].strip()
            if not original:
                raise PolicyError(f"{path}, line {number}: the key ({keyword(key_tag)}) is "
                                  "empty")
            if original in rows:
                raise PolicyError(f"{path}, line {number}: this {keyword(key_tag)} is in the "
                                  "table already")
            values = []
            for (tag, vr), at in zip(columns, used):
                value = line[at].strip()
                _check(value, vr, f"{path}, line {number}, {keyword(tag)}")
                values.append(value)
            rows[original] = tuple(values)
            if offset_at is not None and line[offset_at].strip():
                try:
                    offsets[original] = int(line[offset_at].strip())
                except ValueError:
                    raise PolicyError(f"{path}, line {number}: {OFFSET_COLUMN} is a whole "
                                      "number of days (negative moves dates back)") from None
        return cls(path, key_tag, tuple(columns), rows, offsets, missing)


def _check(value: str, vr: str, where: str) -> None:
    """PolicyError when a prescribed value cannot be written as it is (PS3.5 Table 6.2-1):
    too long for its VR, or with characters no value of it may hold."""
    limit = MAX_CHARS.get(vr)
    parts = value.split("=") if vr == "PN" else value.split("\\")
    if limit is not None and any(len(part) > limit for part in parts):
        raise PolicyError(f"{where}: {len(value)} characters, longer than {vr} allows "
                          f"({limit}): it would be cut")
    if any(c in value for c in "\r\n\t") and vr not in ("LT", "ST", "UT"):
        raise PolicyError(f"{where}: a line break or tab, which {vr} cannot hold")
