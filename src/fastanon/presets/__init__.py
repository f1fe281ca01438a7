"""Presets are data: TOML policies built on the generated PS3.15 Annex E table, and the categories.

A preset or policy file says, in words a data-protection officer reads, what happens:

    extends = "research"            # start from a preset (or another file, by path)
    [options]                       # PS3.15 Table E.1-1 option columns as switches
    retain_long_modified_dates = true
    [categories]                    # a whole category at once
    device = "keep"
    [tags]                          # single attributes, by keyword or "(gggg,eeee)"
    PatientAge = "keep"

Keys: `name`, `description`, `extends`, `profile = "basic"` (start from Table E.1-1's Basic
Profile column), `[options]`, `[compound]` (how a compound code such as X/Z/D resolves for one
attribute), `hide = [categories]` (each attribute of those categories gets its default action from
categories.toml), `[categories]`, `[tags]`, `private = "remove" | "keep" | "safe"`, `overlays`,
`curves` (the 60xx and 50xx repeating groups), `group_lengths`, `clean_echoes`, `clean_preamble`,
`mark_deidentified` (write PatientIdentityRemoved and DeidentificationMethod, PS3.15 E.1).
Actions resolve in this order, later wins: profile, hide, categories, tags.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .._dictionary import DICTIONARY
from ..elements import FASTANON_UID, dictionary_entry, is_private, parse_tag, tag_text
from ..errors import PolicyError
from ..policy import Action, Policy
from ..values import text_value
from ._profile_table import EDITION, OPTIONS, PROFILE, SAFE_PRIVATE

HERE = Path(__file__).resolve().parent

# PS3.16 CID 7050 "De-identification Method": the profile and each option (PS3.15 E.1.1).
CID_7050 = {
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    "clean_pixel_data": ("113101", "Clean Pixel Data Option"),
    "clean_graphics": ("113103", "Clean Graphics Option"),
    "clean_structured_content": ("113104", "Clean Structured Content Option"),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
    "retain_long_full_dates": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "retain_long_modified_dates": ("113107",
                                   "Retain Longitudinal Temporal Information Modified Dates Option"),
    "retain_patient_characteristics": ("113108", "Retain Patient Characteristics Option"),
    "retain_device_identity": ("113109", "Retain Device Identity Option"),
    "retain_uids": ("113110", "Retain UIDs Option"),
    "retain_safe_private": ("113111", "Retain Safe Private Option"),
    "retain_institution_identity": ("113112", "Retain Institution Identity Option"),
}
# How an option's "C" (clean) is carried out; options not listed here have no cleaning: remove.
_CLEANING = {"retain_long_modified_dates": "shift", "clean_descriptors": "clean",
             "retain_safe_private": "safe"}

OVERLAYS = (0xFFE10000, 0x60000000)     # even groups 6000-601E (PS3.3 C.9.2)
CURVES = (0xFFE10000, 0x50000000)       # even groups 5000-501E (retired curves)
GROUP_LENGTH = (0x0000FFFF, 0x00000000)
_WILDCARDS = {"50xxxxxx": CURVES, "60xx4000": (0xFFE1FFFF, 0x60004000),
              "60xx3000": (0xFFE1FFFF, 0x60003000)}

# Instance UIDs (PS3.6 VR UI) that Table E.1-1 does not list: they point at instances, frames of
# reference or records of the clinic as much as the U rows do, so the basic profile remaps them
# too (and Retain UIDs keeps them). Class, transfer syntax and coding scheme UIDs are not here.
UNLISTED_INSTANCE_UIDS = (
    0x00041432,   # PrivateRecordUID
    0x00081167,   # MultiFrameSourceSOPInstanceUID
    0x00083012,   # RadiopharmaceuticalAdministrationEventUID
    0x0018991E,   # TargetFrameOfReferenceUID
    0x00200242,   # SOPInstanceUIDOfConcatenationSource
    0x00209312,   # VolumeFrameOfReferenceUID
    0x00209313,   # TableFrameOfReferenceUID
    0x00280304,   # ReferencedColorPaletteInstanceUID (standard palettes keep their UIDs)
    0x0040A021,   # FindingsGroupUIDTrial
    0x0040A022,   # ReferencedFindingsGroupUIDTrial
    0x0040E011,   # RetrieveLocationUID
    0x00440102,   # AssertionUID
    0x00440108,   # ReferencedAssertionUID
    0x0070031B,   # ReferencedFiducialUID
    0x00701209,   # VolumetricPresentationInputSetUID
    0x300A0675,   # EquipmentFrameOfReferenceUID
)

PATIENT_IDENTITY_REMOVED, DEID_METHOD, DEID_CODES = 0x00120062, 0x00120063, 0x00120064
LONGITUDINAL_MODIFIED = 0x00280303


# -- categories ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Category:
    """A group of sensitive attributes a user reasons about, with the actions it allows."""

    name: str
    title: str
    description: str
    default: str
    alternatives: tuple[str, ...]


@lru_cache(maxsize=None)
def _categories_spec() -> dict:
    with open(HERE / "categories.toml", "rb") as handle:
        return tomllib.load(handle)


@lru_cache(maxsize=None)
def categories() -> dict[str, Category]:
    """The categories, in the order they claim attributes."""
    spec = _categories_spec()
    return {name: Category(name, c["title"], c["description"], c["default"],
                           tuple(c["alternatives"]))
            for name in spec["order"] for c in [spec["category"][name]]}


@lru_cache(maxsize=None)
def _rules():
    spec = _categories_spec()
    listed, rules = {}, []
    for name in spec["order"]:
        entry = spec["category"][name]
        for key in entry.get("tags", ()):
            listed.setdefault(parse_tag(key), name)
        words = entry.get("words", ())
        pattern = (re.compile(r"(?<![\w'])(" + "|".join(re.escape(w) for w in words) + r")(?![\w])")
                   if words else None)
        rules.append((name, pattern, frozenset(entry.get("vrs", ()))))
    return listed, rules


def _classify(tag: int, name: str, vr: str | None) -> str:
    listed, rules = _rules()
    if tag in listed:
        return listed[tag]
    for category, pattern, vrs in rules:
        if pattern is not None and pattern.search(name):
            return category
    for category, _, vrs in rules:
        if vr in vrs:
            return category
    return "other"


@lru_cache(maxsize=None)
def sensitive_tags() -> dict[int, str]:
    """{tag: category} for every concrete attribute of Table E.1-1 and every attribute listed in
    categories.toml: the sensitive-tag table users read (`fastanon presets --categories`)."""
    table = {}
    for tag, name, *_ in PROFILE:
        if isinstance(tag, int):
            entry = dictionary_entry(tag)
            table[tag] = _classify(tag, name, entry[0] if entry else None)
    for tag in _rules()[0]:
        if tag not in table:
            entry = dictionary_entry(tag)
            table[tag] = _classify(tag, entry[1] if entry else "", entry[0] if entry else None)
    return table


def category_of(tag: int, vr: str | None = None) -> str | None:
    """The category of any tag: from the table, "private tags", or by VR for dates, UIDs and
    person names the table does not list; None for attributes that are not sensitive."""
    found = sensitive_tags().get(tag)
    if found is not None:
        return found
    if is_private(tag):
        return "private tags"
    if tag >> 16 in (0x6000, 0x5000) or (tag >> 16) & 0xFFE1 in (0x6000, 0x5000):
        return "other"
    vr = vr or (dictionary_entry(tag) or ("",))[0]
    return {"DA": "dates and times", "DT": "dates and times", "TM": "dates and times",
            "UI": "uids", "PN": "staff"}.get(vr)


def tags_in(category: str) -> list[int]:
    """The tags of one category (raises PolicyError for an unknown category)."""
    if category not in categories():
        raise PolicyError(f"unknown category {category!r}; expected one of "
                          f"{', '.join(categories())}")
    return sorted(tag for tag, c in sensitive_tags().items() if c == category)


def default_action(tag: int) -> str:
    """The action hiding this attribute's category gives it."""
    defaults = {parse_tag(k): v for k, v in _categories_spec().get("defaults", {}).items()}
    if tag in defaults:
        return defaults[tag]
    return categories()[category_of(tag) or "other"].default


# -- safe private (Table E.3.10-1) --------------------------------------------------------------

@lru_cache(maxsize=None)
def safe_private_creators() -> frozenset[str]:
    return frozenset(creator for creator, _ in SAFE_PRIVATE)


@lru_cache(maxsize=None)
def _safe_keys() -> frozenset:
    return frozenset((creator.upper(), tag) for creator, tag in SAFE_PRIVATE)


def is_safe_private(creator: str, tag: int) -> bool:
    """True when (creator, (gggg,xxee)) is in PS3.15 Table E.3.10-1 (the block byte ignored)."""
    return (creator.strip().upper(), tag & 0xFFFF00FF) in _safe_keys()


# -- presets and policy files -------------------------------------------------------------------

def names() -> list[str]:
    """The presets shipped with fastanon."""
    return sorted(p.stem for p in HERE.glob("*.toml") if p.stem != "categories")


@lru_cache(maxsize=None)
def load(name: str) -> Policy:
    """A shipped preset by name (built once per process).

    >>> load("internal").action_for(0x00080020).name      # StudyDate: internal keeps dates
    'keep'
    """
    if name not in names():
        raise PolicyError(f"unknown preset {name!r}; expected one of {', '.join(names())}")
    return build(spec_of(name))


def load_file(path) -> Policy:
    """A policy file (TOML), resolved against its `extends` chain."""
    return build(spec_of(Path(path)))


def spec_of(source, seen: tuple = ()) -> dict:
    """The merged specification of a preset name or a TOML path, with `extends` resolved."""
    if isinstance(source, Path) or (isinstance(source, str) and source.endswith(".toml")):
        path = Path(source)
    elif source in names():
        path = HERE / f"{source}.toml"
    else:
        raise PolicyError(f"unknown preset {source!r}; expected one of {', '.join(names())} "
                          "or the path of a .toml file")
    if path.resolve() in seen:
        raise PolicyError(f"{path}: `extends` loops back to itself")
    try:
        with open(path, "rb") as handle:
            spec = tomllib.load(handle)
    except OSError as exc:
        raise PolicyError(f"{path}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML ({exc})") from None
    base = spec.pop("extends", None)
    if base is None:
        return spec
    if isinstance(base, str) and base.endswith(".toml") and not Path(base).is_absolute():
        base = path.parent / base
    merged = spec_of(base, seen + (path.resolve(),))
    for key, value in spec.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    merged.setdefault("name", path.stem)
    return merged


_KNOWN_KEYS = {"name", "description", "profile", "options", "compound", "hide", "categories",
               "tags", "private", "overlays", "curves", "group_lengths", "clean_echoes",
               "clean_preamble", "mark_deidentified", "deidentification_method"}


def build(spec: dict) -> Policy:
    """A Policy from a (merged) specification; see the module docstring for the keys."""
    unknown = set(spec) - _KNOWN_KEYS
    if unknown:
        raise PolicyError(f"unknown policy key(s): {', '.join(sorted(unknown))}")
    name = spec.get("name", "custom")
    options = _options(spec.get("options", {}))
    tags: dict[int, Action] = {}
    reasons: dict[int, str] = {}
    masks, mask_reasons = [], []
    private = creator = Action("keep")
    private_reason = "private tags kept"
    safe = False

    def group_rule(key: str, rule: tuple[int, int], what: str):
        if key in spec:
            masks.append((*rule, _action(spec[key], key)))
            mask_reasons.append(f"policy {name}: {what} {spec[key]}")

    group_rule("overlays", OVERLAYS, "overlays (groups 60xx)")
    group_rule("curves", CURVES, "curves (groups 50xx)")

    profile = spec.get("profile")
    if profile not in (None, "basic"):
        raise PolicyError(f"unknown profile {profile!r}; only \"basic\" (PS3.15 Table E.1-1)")
    if profile == "basic":
        compound = {_tag(k): v for k, v in spec.get("compound", {}).items()}
        for tag, row_name, _, _, basic, row_options in PROFILE:
            code, why, option = _resolve(basic, row_options, options, compound.get(tag))
            if tag == "private":
                if code == "C":
                    safe = True
                    private = creator = Action("remove")
                else:
                    private = creator = _code_action(code, None, option)
                private_reason = why
            elif isinstance(tag, str):
                masks.append((*_WILDCARDS[tag], _code_action(code, None, option)))
                mask_reasons.append(f"{why} ({row_name})")
            else:
                entry = dictionary_entry(tag)
                tags[tag] = _code_action(code, entry[0] if entry else None, option)
                reasons[tag] = why
        if "retain_uids" not in options:
            for tag in UNLISTED_INSTANCE_UIDS:
                tags.setdefault(tag, Action("uid"))
                reasons.setdefault(tag, "an instance UID Table E.1-1 does not list: new UID, "
                                        "like its U rows, so references stay consistent")

    for category in spec.get("hide", ()):
        if category == "private tags":
            private = creator = Action("remove")
            private_reason = f"policy {name}: hides private tags"
            safe = False
            continue
        for tag in _tags_in(category):
            tags[tag] = Action.of(default_action(tag))
            reasons[tag] = f"policy {name}: hides {category} ({tags[tag]})"
    for category, value in spec.get("categories", {}).items():
        action = _action(value, f"category {category!r}")
        if category == "private tags":
            private = creator = action
            private_reason = f"policy {name}: private tags {action}"
            safe = False
            continue
        for tag in _tags_in(category):
            tags[tag] = action
            reasons[tag] = f"policy {name}: category {category} {action}"
    for key, value in spec.get("tags", {}).items():
        tag = _tag(key)
        tags[tag] = _action(value, key)
        reasons[tag] = f"policy {name}: {key} {tags[tag]}"

    if "private" in spec:
        value = spec["private"]
        safe = value == "safe"
        private = creator = Action("remove") if safe else _action(value, "private")
        private_reason = (f"policy {name}: private tags "
                          + ("kept when PS3.15 Table E.3.10-1 lists them safe" if safe else value))
    if spec.get("group_lengths"):
        tags.setdefault(0x00020000, Action("keep"))    # the meta group length stays (PS3.10 §7.1)
        masks.append((*GROUP_LENGTH, _action(spec["group_lengths"], "group_lengths")))
        mask_reasons.append(f"policy {name}: group lengths (gggg,0000) {spec['group_lengths']} "
                            "(retired, PS3.5 §7.2)")
    additions = _additions(spec, name, options, safe) if spec.get("mark_deidentified") else ()
    for tag, *_ in additions:
        tags.pop(tag, None)
    return Policy(name=name, tags=tags, private=private, private_creator=creator,
                  masks=tuple(masks), clean_preamble=bool(spec.get("clean_preamble")),
                  description=spec.get("description", ""), options=frozenset(options),
                  safe_private=safe, clean_echoes=bool(spec.get("clean_echoes")),
                  additions=additions, reasons=reasons, mask_reasons=tuple(mask_reasons),
                  private_reason=private_reason)


def _tag(key: str) -> int:
    try:
        return parse_tag(key)
    except KeyError as exc:
        raise PolicyError(str(exc.args[0])) from None


def _tags_in(category: str) -> list[int]:
    return tags_in(category)


def _action(value, where: str) -> Action:
    try:
        return Action.of(value)
    except PolicyError as exc:
        raise PolicyError(f"{where}: {exc}") from None


def _options(table: dict) -> set[str]:
    unknown = set(table) - set(OPTIONS)
    if unknown:
        raise PolicyError(f"unknown option(s) {', '.join(sorted(unknown))}; expected some of "
                          f"{', '.join(OPTIONS)}")
    chosen = {name for name, on in table.items() if on}
    if {"retain_long_full_dates", "retain_long_modified_dates"} <= chosen:
        raise PolicyError("the two Retain Longitudinal Temporal options cannot be used together "
                          "(PS3.15 E.3.6)")
    return chosen


def _resolve(basic: str, row_options: dict, options: set, compound: str | None):
    """(code, reason, option) for one row of Table E.1-1 under the chosen options.

    An option cell replaces the basic code; when two chosen options have a cell, K (retain)
    wins over C. Compound codes resolve by the policy's [compound] table (where the attribute's
    type in common IODs is known), X/Z/U* to K (the sequence is kept and the UIDs inside it are
    replaced by their own U rows), and otherwise to their first, strictest letter.
    """
    cells = {o: row_options[o] for o in OPTIONS if o in options and o in row_options}
    if cells:
        option = next((o for o, c in cells.items() if c == "K"), next(iter(cells)))
        code = cells[option]
        return code, f"PS3.15 E.1-1 ({EDITION}) {option} option: {code}", option
    why = f"PS3.15 E.1-1 ({EDITION}) basic profile: {basic}"
    if "/" not in basic:
        return basic, why, None
    if compound:
        return compound, f"{why}, resolved to {compound} (type of the attribute in common IODs)", None
    if basic == "X/Z/U*":
        return "K", f"{why}, kept so the references inside stay (their UIDs are replaced)", None
    return basic[0], f"{why}, resolved to {basic[0]} (the strictest form)", None


def _code_action(code: str, vr: str | None, option: str | None) -> Action:
    if code == "D":
        return Action("uid") if vr == "UI" else Action("replace")   # a new UID is a valid dummy
    if code == "C":
        cleaning = _CLEANING.get(option)
        return Action(cleaning) if cleaning in ("shift", "clean") else Action("remove")
    simple = {"X": "remove", "Z": "empty", "K": "keep", "U": "uid"}
    if code not in simple:
        code_name = code if len(code) == 1 else code[0]
        if code_name in simple:
            return Action(simple[code_name])
        try:
            return Action.of(code)       # an action name given in [compound]
        except PolicyError:
            raise PolicyError(f"unknown PS3.15 action code {code!r}") from None
    return Action(simple[code])


def _additions(spec: dict, name: str, options: set, safe: bool) -> tuple:
    """PatientIdentityRemoved, DeidentificationMethod (+ code sequence, CID 7050) and Longitudinal
    Temporal Information Modified, as PS3.15 E.1.1 asks of a de-identifier."""
    used = sorted(["basic"] + [o for o in OPTIONS if o in options and o in CID_7050],
                  key=lambda o: CID_7050[o][0])
    method = spec.get("deidentification_method") or f"fastanon {name}: PS3.15 E {EDITION}"
    items = [[(0x00080100, "SH", text_value("SH", CID_7050[o][0])),
              (0x00080102, "SH", text_value("SH", "DCM")),
              (0x00080104, "LO", text_value("LO", CID_7050[o][1]))] for o in used]
    out = [(PATIENT_IDENTITY_REMOVED, "CS", text_value("CS", "YES")),
           (DEID_METHOD, "LO", text_value("LO", method)),
           (DEID_CODES, "SQ", items)]
    if "retain_long_modified_dates" in options:
        out.append((LONGITUDINAL_MODIFIED, "CS", text_value("CS", "MODIFIED")))
    elif "retain_long_full_dates" in options:
        out.append((LONGITUDINAL_MODIFIED, "CS", text_value("CS", "UNMODIFIED")))
    return tuple(out)
