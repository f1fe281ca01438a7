"""Categories of sensitive attributes (what a user reasons about) and PS3.15's safe private table.

The vocabulary inspect, the presets, the CLI and the preview share: which category an attribute
belongs to (presets/categories.toml, over the generated Table E.1-1), the actions a category
allows, and which private attributes Table E.3.10-1 lists as safe for their creator.
"""

from __future__ import annotations

from ._lean import memo, record
import os

from .elements import dictionary_entry, is_private, parse_tag
from .errors import PolicyError

CATEGORIES_FILE = os.path.join(os.path.dirname(os.path.realpath(__file__)), "presets",
                               "categories.toml")


@record(frozen=True)
class Category:
    """A group of sensitive attributes a user reasons about, with the actions it allows."""

    name: str
    title: str
    description: str
    default: str
    alternatives: tuple[str, ...]


@memo
def _categories_spec() -> dict:
    import tomllib          # read once per process, when a category is first asked for

    with open(CATEGORIES_FILE, "rb") as handle:
        return tomllib.load(handle)


@memo
def categories() -> dict[str, Category]:
    """The categories, in the order they claim attributes."""
    spec = _categories_spec()
    return {name: Category(name, c["title"], c["description"], c["default"],
                           tuple(c["alternatives"]))
            for name in spec["order"] for c in [spec["category"][name]]}


@memo
def _rules():
    import re           # a policy being built: the categories' word patterns

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


def _classify(tag: int, name: str, vr: str | None, rules: list | None = None) -> str:
    """The first category claiming an attribute (of `rules`, by default all of them)."""
    listed, every = _rules()
    rules = every if rules is None else rules
    if tag in listed:
        return listed[tag]
    for category, pattern, vrs in rules:
        if pattern is not None and pattern.search(name):
            return category
    for category, _, vrs in rules:
        if vr in vrs:
            return category
    return "other"


@memo
def sensitive_tags() -> dict[int, str]:
    """{tag: category} for every concrete attribute of Table E.1-1 and every attribute listed in
    categories.toml: the sensitive-tag table users read (`fastanon presets --categories`).
    Built once and kept in fastanon's cache (_cache.py) with the files it comes from: a process
    that only asks for categories (check, inspect) then reads it instead of building it."""
    from . import _cache

    stored = _cache.load(_SENSITIVE)
    if type(stored) is dict:
        return stored
    from .presets._profile_table import PROFILE

    table = {}
    for tag, name, *_ in PROFILE:
        if isinstance(tag, int):
            entry = dictionary_entry(tag)
            table[tag] = _classify(tag, name, entry[0] if entry else None)
    for tag in _rules()[0]:
        if tag not in table:
            entry = dictionary_entry(tag)
            table[tag] = _classify(tag, entry[1] if entry else "", entry[0] if entry else None)
    _cache.store(_SENSITIVE, [CATEGORIES_FILE], table)
    return table


_SENSITIVE = "categories: sensitive tags"


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

@memo
def safe_private_creators() -> frozenset[str]:
    from .presets._profile_table import SAFE_PRIVATE

    return frozenset(creator for creator, _ in SAFE_PRIVATE)


@memo
def _safe_keys() -> frozenset:
    from .presets._profile_table import SAFE_PRIVATE

    return frozenset((creator.upper(), tag) for creator, tag in SAFE_PRIVATE)


def is_safe_private(creator: str, tag: int) -> bool:
    """True when (creator, (gggg,xxee)) is in PS3.15 Table E.3.10-1 (the block byte ignored)."""
    return (creator.strip().upper(), tag & 0xFFFF00FF) in _safe_keys()


_IDENTITY: list = []       # identity_tags(), computed once or given by a cached policy (known)


def known_identity_tags(tags: tuple[int, ...]) -> None:
    """identity_tags() as a cached policy stored it (_cache.py): not computed again."""
    if not _IDENTITY:
        _IDENTITY.append(tuple(tags))


def identity_tags() -> tuple[int, ...]:
    """The attributes of Table E.1-1 that say who the patient is or how to reach them (the
    patient identity and contact categories): what PatientIdentityRemoved YES promises are gone.
    Sequences are not listed: kept, they are recursed into, and their content has rows of its own.
    (Classified by the categories up to the last of the two: every run of research asks, so
    the whole table is not built for it.)"""
    if not _IDENTITY:
        _IDENTITY.append(_identity_tags())
    return _IDENTITY[0]


def _identity_tags() -> tuple[int, ...]:
    from .presets._profile_table import PROFILE

    rules = _rules()[1]
    wanted = ("patient identity", "contact")
    first = rules[:max(i for i, (name, _, _) in enumerate(rules) if name in wanted) + 1]
    out = [tag for tag, name, *_ in PROFILE
           if isinstance(tag, int) and tag != 0x00120062
           and (dictionary_entry(tag) or ("",))[0] != "SQ"
           and _classify(tag, name, None, first) in wanted]
    return tuple(sorted(out))
