"""Generate src/fastanon/_iod_types.py and _iod_paths.py: the Type (PS3.3) of the attributes fastanon may remove or
empty, in every IOD, from highdicom's tables of PS3.3 plus DICOMDIR records and the file meta.

highdicom (MIT, on PyPI) ships PS3.3's module and IOD tables as JSON (highdicom/_standard/). This
script reads them from an installed highdicom or an unpacked wheel (--highdicom DIR), keeps the
attributes whose Type decides a PS3.15 action (every attribute that Table E.1-1 removes, empties
or replaces, and those of the categories a policy can hide), and writes a compact module that the
header path imports without highdicom, its 22 MB of JSON or pydicom. Directory records (PS3.3
Annex F.5, whose keys highdicom does not list) and the file meta (PS3.10 Table 7.1-1) come from
tools/data.

    pip download --no-deps highdicom==0.28.2 -d /tmp/hd && unzip -q /tmp/hd/*.whl -d /tmp/hd
    python tools/gen_iod_types.py --highdicom /tmp/hd/highdicom
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tools" / "data"
DEFAULT_OUT = REPO / "src" / "fastanon" / "_iod_types.py"
HIGHDICOM = "0.28.2"
DIRECTORY_RECORDS = 0x00041220
DIRECTORY_IOD = "basic-directory"
FILE_META_IOD = "file-meta-information"
# Module names whose words are abbreviations (written in capitals in the titles).
_ACRONYMS = {"rt", "ct", "mr", "sr", "pet", "us", "xa", "xrf", "dx", "cr", "nm", "sc", "ecg", "voi",
             "lut", "sop", "iod", "cda", "pdf", "stl", "obj", "mtl", "ophthalmic", "oct", "ivoct",
             "ivus", "dicos", "hl7", "cad", "mg", "io", "vl", "3d", "2d", "rf", "xrd", "ion", "ps",
             "dose", "roi", "tid", "icc", "octa", "ptv", "cie"}
_KEEP_WORDS = {"dose", "ophthalmic", "ion"}


def title(key: str) -> str:
    """'rt-series' → 'RT Series'."""
    words = key.split("-")
    return " ".join(w.upper() if w in _ACRONYMS and w not in _KEEP_WORDS else w.capitalize()
                    for w in words)


def wanted_tags() -> set[int]:
    """Tags whose Type can change what fastanon writes: every Table E.1-1 row with an X, Z or D
    in any column, and the attributes of the categories a policy may hide."""
    from fastanon.categories import category_of
    from pydicom.datadict import DicomDictionary

    out = set()
    with open(DATA / "ps3.15-e1-1.csv", newline="") as f:
        for row in csv.DictReader(f):
            tag = row["tag"].strip('"')
            if len(tag) != 11 or "x" in tag.lower():
                continue
            codes = "".join(v for k, v in row.items() if k not in ("tag", "name", "retired",
                                                                    "in_std_comp_iod"))
            if any(letter in codes for letter in "XZD"):
                out.add(int(tag[1:5] + tag[6:10], 16))
    for tag in DicomDictionary:
        if category_of(tag) not in (None, "other", "uids"):
            out.add(tag)
    return out


def tables(highdicom: Path) -> tuple[dict, dict, dict]:
    folder = highdicom / "_standard"
    def load(name):
        return json.loads((folder / name).read_text())

    return (load("module_attribute_map.json"), load("iod_module_map.json"),
            load("sop_class_iod_map.json"))


def generate(highdicom: Path) -> tuple[str, str]:
    from pydicom.datadict import tag_for_keyword

    modules, iods, sop_classes = tables(highdicom)
    wanted = wanted_tags()
    with open(DATA / "ps3.3-f5-directory-records.csv", newline="") as f:
        record_rows = list(csv.DictReader(f))
    records = sorted({row["record"] for row in record_rows})
    record_modules = {r: f"{r.lower().replace(' ', '-')}-directory-record" for r in records}
    module_names = sorted(modules) + sorted(record_modules.values()) + [FILE_META_IOD]
    number = {name: i for i, name in enumerate(module_names)}
    types: dict[int, set] = defaultdict(set)

    def add(module: str, path: tuple, keyword: str, kind: str) -> None:
        tag = tag_for_keyword(keyword)
        if tag is None:
            return
        types[tag].add((number[module], path, kind if kind in ("1", "1C", "2", "2C") else "3"))

    for module, attributes in modules.items():
        for attribute in attributes:
            path = tuple(tag_for_keyword(k) for k in attribute["path"])
            if None in path:
                continue
            add(module, path, attribute["keyword"], attribute["type"])
    for row in record_rows:
        add(record_modules[row["record"]], (DIRECTORY_RECORDS, row["record"]), row["keyword"],
            row["type"])
    with open(DATA / "ps3.10-7-1-file-meta.csv", newline="") as f:
        for row in csv.DictReader(f):
            add(FILE_META_IOD, (), row["keyword"], row["type"])
    # Only attributes required somewhere matter: one of Type 3 everywhere is absent (= Type 3).
    types = {tag: found for tag, found in types.items()
             if any(kind != "3" for _, _, kind in found)}

    iod_modules = {name: sorted({number[m["key"]] for m in entries if m["key"] in number})
                   for name, entries in iods.items()}
    iod_modules[DIRECTORY_IOD] = sorted(set(iod_modules.get(DIRECTORY_IOD, ()))
                                        | {number[m] for m in record_modules.values()})
    iod_modules[FILE_META_IOD] = [number[FILE_META_IOD]]

    tops = {}
    for name, found in iod_modules.items():
        members = set(found)
        entries = []
        for tag in sorted(types):
            here = [(kind, m) for m, p, kind in types[tag] if m in members and not p]
            if here:
                kind, m = min(here, key=lambda e: (e[0][0], e[1]))
                entries.append(f"{tag:08X}:{kind}:{m}")
            elif any(m in members for m, _, _ in types[tag]):
                entries.append(f"{tag:08X}:n")     # in this IOD, but only inside sequences
        tops[name] = " ".join(entries)

    head = [
        "# Auto-generated by tools/gen_iod_types.py; do not edit.",
        f'"""Attribute Types (PS3.3) per IOD: highdicom {HIGHDICOM}\'s tables of PS3.3 (module and',
        "IOD maps), PS3.3 Annex F.5 directory record keys and PS3.10 Table 7.1-1 (tools/data).",
        "",
    ]
    lines = head + [
        "MODULES: module titles. IODS: IOD name → (title, module numbers). SOP_CLASSES: SOP Class",
        "UID → IOD name. TOP: IOD name → the attributes Type 1, 1C, 2 or 2C somewhere, each as",
        "\"tag:Type:module\" (its strictest Type at the top level of the data set) or \"tag:n\" (in the",
        "IOD only inside sequences: _iod_paths.py has where, for the attributes a preset may remove",
        "or empty). An attribute not listed is Type 3.",
        '"""',
        "",
        f'SOURCE = "highdicom {HIGHDICOM} (PS3.3), PS3.3 Annex F.5, PS3.10 Table 7.1-1"',
        f"RECORD_TYPES = {tuple(records)!r}",
        "",
        "MODULES = (",
    ]
    lines += [f"    {title(name)!r}," for name in module_names]
    lines += [")", "", "IODS = {"]
    titles = {name: title(name).removesuffix(" Information") for name in iod_modules}
    titles[FILE_META_IOD] = "File Meta Information"
    lines += [f"    {name!r}: ({titles[name]!r}, {tuple(found)!r})," for name, found in
              sorted(iod_modules.items())]
    lines += ["}", "", "SOP_CLASSES = {"]
    lines += [f"    {uid!r}: {name!r}," for uid, name in sorted(sop_classes.items())]
    lines += ["}", "", "TOP = {"]
    lines += [f"    {name!r}: {tops[name]!r}," for name in sorted(tops)]
    lines += ["}", ""]
    paths = head + [
        "TYPES: tag → ((module number, path, Type), ...) for the attributes Type 1, 1C, 2 or 2C",
        "somewhere (absent: Type 3 wherever used); a path is the tags of the enclosing sequences,",
        "for a DICOMDIR record (0004,1220) and its Directory Record Type. Module numbers index",
        "_iod_types.MODULES.",
        '"""',
        "",
        "TYPES = {",
    ]
    # Inside sequences, only the attributes a preset may remove or empty (the paths of all the
    # others would take 4 MB): elsewhere a type-aware code meets an unknown place.
    for tag in sorted(t for t in types if t in wanted):
        entries = sorted(types[tag], key=lambda e: (e[0], len(e[1]), e[1], e[2]))
        body = ", ".join(f"({m}, {_path(p)}, {k!r})" for m, p, k in entries)
        paths.append(f"    0x{tag:08X}: ({body},),")
    paths += ["}", ""]
    return "\n".join(lines), "\n".join(paths)


def _path(path: tuple) -> str:
    parts = [f"0x{p:08X}" if isinstance(p, int) else repr(p) for p in path]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--highdicom", type=Path, help="highdicom package folder (with _standard/)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    folder = args.highdicom
    if folder is None:
        import highdicom

        folder = Path(highdicom.__file__).parent
    types, paths = generate(folder)
    args.out.write_text(types)
    args.out.with_name("_iod_paths.py").write_text(paths)
    print(f"wrote {args.out} and {args.out.with_name('_iod_paths.py')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
