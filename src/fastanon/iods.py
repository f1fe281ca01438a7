"""Attribute Types per IOD (PS3.3): whether an output must keep an attribute, and in what form.

PS3.15 Annex E's compound actions (X/Z, X/D, X/Z/D, Z/D) depend on the attribute's Type in the
file's IOD: a Type 3 attribute may go, a Type 2 one must stay (empty will do), a Type 1 one must
keep a value (a dummy). The Types come from the generated tables _iod_types.py (per IOD, the top
level) and _iod_paths.py (inside sequences), made from PS3.3's module tables, DICOMDIR records
and the file meta, each loaded the first time a file asks.
"""

from __future__ import annotations

from ._lean import memo, record

DIRECTORY_IOD = "basic-directory"
FILE_META_IOD = "file-meta-information"
DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"      # Media Storage Directory Storage (PS3.4 Annex F)
DIRECTORY_RECORDS = 0x00041220


@record(frozen=True, slots=True)
class Requirement:
    """How much an IOD needs one attribute: kind "1" (a value), "2" (present, may be empty), "3"
    (may be absent) or None (unknown: no table says), with the Type and module that say so."""

    kind: str | None
    type: str = ""
    module: str = ""
    iod: str = ""

    def __str__(self) -> str:
        if self.kind is None:
            return (f"not known at this place in the {self.iod} IOD" if self.iod
                    else "the IOD is not known (SOP Class not in PS3.3)")
        if not self.module:
            return f"not in the {self.iod} IOD" if self.iod else "optional"
        where = f" of the {self.iod} IOD" if self.iod else ""
        return f"Type {self.type} in the {self.module} module{where}"


UNKNOWN = Requirement(None)


def _kind(type_: str) -> str:
    return type_[0]


class Iod:
    """One IOD's modules and, per attribute, where it sits and with which Type."""

    def __init__(self, name: str):
        from . import _iod_types

        self.name = name
        self.title, modules = _iod_types.IODS[name]
        self.modules = frozenset(modules)
        self._module_titles = _iod_types.MODULES
        self._records = frozenset(_iod_types.RECORD_TYPES) if name == DIRECTORY_IOD else frozenset()
        self._top: dict[int, tuple] = {}        # tag → (Type, module number), or () if nested only
        for entry in _iod_types.TOP[name].split():
            tag, _, rest = entry.partition(":")
            type_, _, module = rest.partition(":")
            self._top[int(tag, 16)] = (type_, int(module)) if module else ()
        self._entries: dict[int, tuple] = {}
        self._optional = Requirement("3", "3", "", self.title)

    def __repr__(self) -> str:
        return f"Iod({self.name!r})"

    def entries(self, tag: int) -> tuple:
        """((path, Type, module number), ...) of the attribute in this IOD's modules (the
        generated table of paths is loaded the first time a nested place is asked for)."""
        found = self._entries.get(tag)
        if found is None:
            from . import _iod_paths

            found = self._entries[tag] = tuple(
                (path, type_, module) for module, path, type_ in _iod_paths.TYPES.get(tag, ())
                if module in self.modules)
        return found

    def _requirement(self, entries) -> Requirement:
        """The strictest of some entries (1 before 2 before 3)."""
        _, type_, module = min(entries, key=lambda e: (_kind(e[1]), len(e[0])))
        return Requirement(_kind(type_), type_, self._module_titles[module], self.title)

    def requirement(self, tag: int) -> Requirement | None:
        """The attribute's requirement when it is the same wherever it may sit — an attribute
        this IOD does not list may be absent anywhere — else None (see requirement_at)."""
        if self._records or tag in self._top:
            return None
        return self._optional

    def requirement_at(self, tag: int, path: tuple) -> Requirement:
        """The requirement of the attribute at one place: path holds the tags of the enclosing
        sequences from the top (for a DICOMDIR record, (0004,1220) and the record's type)."""
        top = self._top.get(tag)
        if top is None:
            if self._records and path and path[-1] not in self._records:
                return Requirement(None, iod=self.title)
            return self._optional
        if not path:
            if not top:
                return Requirement(None, iod=self.title)
            type_, module = top
            return Requirement(_kind(type_), type_, self._module_titles[module], self.title)
        entries = self.entries(tag)
        for candidate in _candidates(path):
            here = [e for e in entries if e[0] == candidate]
            if here:
                return self._requirement(here)
        if self._records and len(path) == 2 and path[1] in self._records:
            return Requirement("3", "3", "", self.title)   # "any other attribute" (PS3.3 F.5)
        return Requirement(None, iod=self.title)


def _candidates(path: tuple):
    """The path itself, then with recursive sequences (ContentSequence in ContentSequence)
    collapsed, then without a DICOMDIR record's type (the record's own attributes)."""
    yield path
    collapsed = tuple(p for i, p in enumerate(path) if i == 0 or p != path[i - 1])
    if collapsed != path:
        yield collapsed
    if len(path) >= 2 and isinstance(path[1], str):
        yield (path[0],) + path[2:]


@memo
def _iod(name: str) -> Iod:
    return Iod(name)


def iod_of(sop_class: str | None) -> Iod | None:
    """The IOD of a SOP Class UID (a DICOMDIR's Media Storage Directory Storage included), or None
    when PS3.3's tables do not know it.

    >>> iod_of("1.2.840.10008.5.1.4.1.1.481.5").title
    'RT Plan'
    >>> str(iod_of("1.2.840.10008.5.1.4.1.1.481.5").requirement_at(0x00081070, ()))
    'Type 2 in the RT Series module of the RT Plan IOD'
    """
    if not sop_class:
        return None
    from . import _iod_types

    name = DIRECTORY_IOD if sop_class == DIRECTORY_STORAGE else _iod_types.SOP_CLASSES.get(sop_class)
    return _iod(name) if name else None


def file_meta() -> Iod:
    """The file meta information's "IOD" (PS3.10 Table 7.1-1)."""
    return _iod(FILE_META_IOD)
