"""Elements → plan: one action per element, decided by tag; touches no bytes.

A Policy says what happens to each attribute. It is compiled once per run into a Plan: sorted
tag → code arrays that the scanner's `select` reads in C, and the Python `decide` that is called
back only for the few elements that are not kept. Values that must be generated (new UIDs,
shifted dates, pseudonyms, cleaned text) come from uids.py and dates.py, keyed by the Plan's key.
"""

from __future__ import annotations

import re
from array import array
from dataclasses import dataclass, field, replace as dc_replace
from typing import Callable, Mapping

from . import dates, uids
from .elements import (
    KIND_ELEMENT,
    KIND_FRAGMENTS,
    KIND_SEQUENCE,
    SPECIFIC_CHARACTER_SET,
    Element,
    is_private,
    is_private_creator,
    parse_tag,
    tag_text,
)
from .errors import PolicyError
from .values import dummy, replacement, text_value

# `clean` keeps a text but blanks the patient's identifying values echoed in it (the name parts,
# IDs and birth date of the same file): the cleaning fastanon does for PS3.15's Clean Descriptors.
ACTIONS = ("keep", "remove", "empty", "replace", "uid", "shift", "hash", "clean")
KEEP = object()          # decide() result: leave the element as it is

PATIENT_NAME, PATIENT_ID, PATIENT_BIRTH_DATE = 0x00100010, 0x00100020, 0x00100030
# Attributes whose values identify the patient when echoed elsewhere (inspect warns, clean blanks).
ECHO_SOURCES = (PATIENT_NAME, PATIENT_ID, PATIENT_BIRTH_DATE, 0x00101000, 0x00101001, 0x00101005,
                0x00101060, 0x00080050)
ECHO_MIN = 3             # shorter name parts or IDs are too common to search for
_CLEANED_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN", "OB", "UN"})
_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR"})
HASH_LENGTH = 16          # fits every text VR (SH, AE, CS: 16 characters)
# What a `replace` text must look like to stay valid for its VR (PS3.5 Table 6.2-1); else a dummy.
_VALID = {
    "DA": re.compile(r"\d{8}"),
    "TM": re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?"),
    "DT": re.compile(r"\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?"),
    "AS": re.compile(r"\d{3}[DWMY]"),
    "IS": re.compile(r"[+-]?\d{1,11}"),
    "DS": re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?"),
    "UI": re.compile(r"(0|[1-9]\d*)(\.(0|[1-9]\d*))*"),
}


@dataclass(frozen=True, slots=True)
class Action:
    """What happens to one attribute: an action name and, for `replace`, the text."""

    name: str
    text: str | None = None

    @classmethod
    def of(cls, spec: "str | Action | tuple") -> "Action":
        """An Action from "remove", ("replace", "TEXT"), "replace:TEXT" or an Action."""
        if isinstance(spec, Action):
            return spec
        if isinstance(spec, tuple) and len(spec) == 2:
            name, text = spec
        elif isinstance(spec, str):
            name, _, text = spec.partition(":")
            text = text or None
        else:
            raise PolicyError(f"not an action: {spec!r}")
        name = name.strip().lower()
        if name not in ACTIONS:
            raise PolicyError(f"unknown action {name!r}; expected one of {', '.join(ACTIONS)}")
        return cls(name, text)

    def __str__(self) -> str:
        return self.name if self.text is None else f"{self.name}:{self.text}"


@dataclass(frozen=True)
class Policy:
    """Actions by tag, with rules for private tags and repeating groups; every other element is kept.

    >>> p = Policy.from_mapping({"PatientName": "replace", (0x0010, 0x0020): "empty"})
    >>> p.action_for(0x00100010)
    Action(name='replace', text=None)
    >>> Policy.preset("research").action_for(0x00100010).name
    'empty'
    """

    name: str = "custom"
    tags: Mapping[int, Action] = field(default_factory=dict)
    private: Action = Action("keep")          # private data elements (odd groups)
    private_creator: Action = Action("keep")  # (gggg,0010-00FF) private creators
    masks: tuple[tuple[int, int, Action], ...] = ()   # (mask, value, action): repeating groups
    clean_preamble: bool = False              # zero the 128-byte preamble (PS3.10 §7.1)
    generators: Mapping[str, Callable] = field(default_factory=dict, compare=False)
    description: str = ""
    options: frozenset = frozenset()          # PS3.15 E.1-1 options in use
    safe_private: bool = False                # keep private attributes of Table E.3.10-1
    clean_echoes: bool = False                # blank the patient's identifiers in every kept text
    # Top-level elements written into every output: (tag, VR, value bytes, or for SQ a list of
    # items, each a list of (tag, VR, value bytes)) — e.g. PatientIdentityRemoved (PS3.15 E.1).
    additions: tuple = ()
    reasons: Mapping[int, str] = field(default_factory=dict, compare=False)
    mask_reasons: tuple[str, ...] = field(default=(), compare=False)
    private_reason: str = field(default="", compare=False)

    @classmethod
    def from_mapping(cls, mapping: Mapping) -> "Policy":
        """A policy applying exactly the given {tag: action} and keeping everything else."""
        return cls(tags=_tags_of(mapping))

    @classmethod
    def preset(cls, name: str) -> "Policy":
        """A preset shipped with fastanon ("research", "internal"); see fastanon.presets.names()."""
        from . import presets
        return presets.load(name)

    @classmethod
    def from_file(cls, path) -> "Policy":
        """A policy file (TOML), usually `extends = "research"` plus changes; see presets.load_file."""
        from . import presets
        return presets.load_file(path)

    def action_for(self, tag: int) -> Action:
        action = self.tags.get(tag)
        if action is not None:
            return action
        for mask, value, action in self.masks:
            if tag & mask == value:
                return action
        element = tag & 0xFFFF
        if is_private(tag) and element:
            return self.private_creator if element < 0x100 else self.private
        return Action("keep")

    def reason_for(self, tag: int) -> str:
        """Why action_for(tag) is what it is, in words."""
        if tag in self.tags:
            return self.reasons.get(tag, f"policy {self.name}: {self.tags[tag]}")
        for (mask, value, _), why in zip(self.masks, self.mask_reasons + ("",) * len(self.masks)):
            if tag & mask == value:
                return why or f"policy {self.name}: rule for {tag_text(value)}"
        if is_private(tag):
            return self.private_reason or f"policy {self.name}: private tags {self.private}"
        return "not listed by the policy: kept"

    def override(self, mapping: Mapping | None = None, *, categories: Mapping | None = None
                 ) -> "Policy":
        """A copy with some tags' actions replaced ({tag or keyword: action}), and optionally whole
        categories ({"device": "keep", "private tags": "remove", ...}); tags win over categories.

        >>> p = Policy.preset("research").override({"PatientAge": "keep"}, categories={"device": "keep"})
        >>> p.action_for(0x00101010).name, p.action_for(0x00081010).name
        ('keep', 'keep')
        """
        tags = dict(self.tags)
        reasons = dict(self.reasons)
        changes: dict = {}
        if categories:
            from . import presets
            for category, spec in categories.items():
                action = Action.of(spec)
                if category == "private tags":
                    changes.update(private=action, private_creator=action, safe_private=False,
                                   private_reason=f"override: private tags {action}")
                    continue
                for tag in presets.tags_in(category):
                    tags[tag] = action
                    reasons[tag] = f"override: category {category} {action}"
        for tag, action in _tags_of(mapping or {}).items():
            tags[tag] = action
            reasons[tag] = f"override: {action}"
        return dc_replace(self, tags=tags, reasons=reasons, **changes)

    def compile(self, **context) -> "Plan":
        return Plan(self, context)


def _tags_of(mapping: Mapping) -> dict[int, Action]:
    tags = {}
    for key, spec in mapping.items():
        try:
            tag = parse_tag(key)
        except KeyError as exc:
            raise PolicyError(str(exc.args[0])) from None
        tags[tag] = Action.of(spec)
    return tags


class Plan:
    """A compiled policy: the selection arrays for the scanner and the per-element decision.

    `key` (bytes or text; context key=...) keys new UIDs, date offsets and pseudonyms; without
    one, a random key is drawn for this Plan, so values are consistent within one run only.
    """

    def __init__(self, policy: Policy, context: Mapping):
        self.policy = policy
        self.context = dict(context)
        self.key = uids.key_bytes(self.context.get("key"))
        self.uid_cache: dict[str, str] = {}
        self.actions: list[Action] = [Action("keep")]
        self.special: dict[int, Callable] = {}    # code → handler(file, element) for rules
        codes: dict[object, int] = {Action("keep"): 0}

        def code(action: Action, rule: str | None = None) -> int:
            marker = (rule, action) if rule else action
            if marker not in codes:
                if len(self.actions) == 255:
                    raise PolicyError("a policy may use at most 254 distinct actions")
                codes[marker] = len(self.actions)
                self.actions.append(action)
            return codes[marker]

        masks = list(policy.masks)
        if policy.clean_echoes:      # every other element passes through clean (after the rules)
            masks.append((0, 0, Action("clean")))
        mask_codes = [code(a) for _, _, a in masks]
        if policy.clean_echoes:
            mask_codes[-1] = code(Action("clean"), "echoes")
            self.special[mask_codes[-1]] = self._clean_any
        private_code = code(policy.private)
        creator_code = code(policy.private_creator)
        if policy.safe_private:
            private_code = code(Action("remove"), "safe")
            creator_code = private_code
            self.special[private_code] = self._safe_private
        self._private_codes = (private_code, creator_code)
        items = sorted(policy.tags.items())
        self.selection = (
            array("I", [tag for tag, _ in items]),
            array("B", [code(action) for _, action in items]),
            array("I", [m for m, _, _ in masks]),
            array("I", [v for _, v, _ in masks]),
            array("B", mask_codes),
            private_code,
            creator_code,
        )
        self.clean_preamble = policy.clean_preamble
        self.additions = policy.additions
        # Codes whose result does not depend on the element (remove → None, empty → b""): a
        # caller may apply them without calling decide() per element.
        self.static = {c: (None if a.name == "remove" else b"")
                       for c, a in enumerate(self.actions)
                       if c and c not in self.special and a.name in ("remove", "empty")}
        self.generators = {"uid": _uid, "shift": _shift, "hash": _hash, "clean": _clean,
                           **policy.generators}

    def decide(self, file: "FileContext", element: Element, code: int):
        """KEEP, None (remove) or the new value bytes for a selected element."""
        handler = self.special.get(code)
        if handler is not None:
            return handler(file, element)
        action = self.actions[code]
        name = action.name
        if name == "keep":
            return KEEP
        if name == "remove":
            return None
        if name == "empty" or element.kind in (KIND_SEQUENCE, KIND_FRAGMENTS):
            if element.kind == KIND_SEQUENCE and name not in ("empty", "replace"):
                return KEEP      # uid/shift/hash/clean on a sequence: recurse into it
            return b""
        if name == "replace":
            return _replace(element.vr, file, action.text)
        generator = self.generators.get(name)
        if generator is not None:
            return generator(self, file, element, action)
        raise PolicyError(f"{tag_text(element.tag)}: action {name!r} needs the policy layer "
                          "that generates its values")

    # -- rules with their own handler --------------------------------------------------------

    def _safe_private(self, file: "FileContext", element: Element):
        """Keep a private attribute listed in PS3.15 Table E.3.10-1 for its creator, remove others."""
        from .presets import safe_private_creators, is_safe_private
        tag = element.tag
        if is_private_creator(tag):
            creator = file.text(element)
            return KEEP if creator in safe_private_creators() else None
        block = (tag >> 8) & 0xFF
        creator = file.creator(element.parent, (tag & 0xFFFF0000) | block)
        return KEEP if creator and is_safe_private(creator, tag) else None

    def _clean_any(self, file: "FileContext", element: Element):
        """clean_echoes: the private rule for private tags, echoes blanked in every other kept text."""
        if is_private(element.tag):
            private_code, creator_code = self._private_codes
            code = creator_code if is_private_creator(element.tag) else private_code
            result = self.decide(file, element, code) if code else KEEP
            if result is not KEEP:
                return result
        if element.kind != KIND_ELEMENT or element.vr not in _CLEANED_VRS:
            return KEEP
        return _clean(self, file, element, Action("clean"))


def _replace(vr: str, file: "FileContext", text: str | None) -> bytes:
    pattern = _VALID.get(vr)
    if text is not None and pattern is not None and not all(
            pattern.fullmatch(part) for part in text.split("\\")):
        text = None      # not valid for the VR: the dummy (PS3.15 E.1-1a "D")
    return replacement(vr, file.big, text, file.encoding)


def _uid(plan: Plan, file: "FileContext", element: Element, action: Action):
    if element.vr != "UI":
        return dummy(element.vr, file.big, encoding=file.encoding)
    new = uids.remap_uids(plan.key, file.value(element), plan.uid_cache)
    return KEEP if new is None else new


def _shift(plan: Plan, file: "FileContext", element: Element, action: Action):
    vr = element.vr
    if vr == "TM":
        return KEEP      # whole-day shifts leave the time of day (dates.py)
    raw = file.value(element)
    if vr not in ("DA", "DT"):
        return dummy(vr, file.big, encoding=file.encoding)
    if not raw.strip(b"\0 "):
        return KEEP
    days = file.cache.get("offset")
    if days is None:
        days = file.cache["offset"] = dates.patient_offset(plan.key, file.patient_id())
    new = dates.shift_value(vr, raw, days)
    return dummy(vr, file.big) if new is None else new


def _hash(plan: Plan, file: "FileContext", element: Element, action: Action):
    vr = element.vr
    if vr == "UI":
        return _uid(plan, file, element, action)
    if vr in ("DA", "DT", "TM"):
        return _shift(plan, file, element, action)
    if vr not in _TEXT_VRS:
        return dummy(vr, file.big, encoding=file.encoding)
    text = file.text(element)
    if not text:
        return KEEP
    parts = [uids.pseudonym(plan.key, part.strip(), HASH_LENGTH) if part.strip() else ""
             for part in text.split("\\")]
    return text_value(vr, "\\".join(parts))


def _clean(plan: Plan, file: "FileContext", element: Element, action: Action):
    pattern = file.echo_pattern()
    if pattern is None or element.vr not in _CLEANED_VRS:
        return KEEP
    raw = file.value(element)
    cleaned = pattern.sub(lambda m: b"X" * len(m.group()), raw)
    return KEEP if cleaned == raw else cleaned


def echo_values(values: Mapping[int, str]) -> list[str]:
    """The strings that identify the patient, from {tag: text} of ECHO_SOURCES: name parts, IDs, dates.

    >>> echo_values({0x00100010: "Doe^John^^Dr", 0x00100020: "12345", 0x00100030: "19700101"})
    ['12345', '19700101', 'Doe', 'John']
    """
    out = set()
    for tag, text in values.items():
        for part in re.split(r"[\\^=]", text):
            part = part.strip()
            if len(part) >= ECHO_MIN and (tag != PATIENT_NAME or not part.endswith(".")) \
                    and part.upper() not in ("DR", "MR", "MRS", "MS"):
                out.add(part)
    return sorted(out, key=lambda s: (not s[0].isdigit(), s))


# Specific Character Set (0008,0005) → the codec of the values decide() reads and writes; the
# last value of a multi-valued set is the one the text switches to (PS3.3 C.12.1.1.2).
_CHARSETS = {"ISO_IR 192": "utf-8", "ISO_IR 100": "latin-1", "": "ascii", "ISO_IR 6": "ascii"}


@dataclass
class FileContext:
    """What decide() may look at in one file: its values, byte order and character set."""

    region: object
    big: bool
    encoding: str = "ascii"
    cache: dict = field(default_factory=dict)

    @classmethod
    def of(cls, region) -> "FileContext":
        """The context of a scanned data set, in its own character set: what the pipeline, the
        batch look-ahead, inspect and the preview all decide with."""
        encoding = "ascii"
        index = region.table.find(SPECIFIC_CHARACTER_SET, -1)
        if index >= 0:
            raw = region.value(region.element(index)).decode("ascii", "replace").strip(" \0")
            encoding = _CHARSETS.get(raw.split("\\")[-1].strip(), "ascii")
        return cls(region, region.big, encoding)

    def value(self, element: Element) -> bytes:
        if element.kind != KIND_ELEMENT:
            return b""
        return self.region.value(element)

    def text(self, element: Element) -> str:
        return self.value(element).decode(self.encoding, "replace").strip("\0 ")

    def top_text(self, tag: int) -> str:
        """A top-level text value of this region ('' when absent)."""
        index = self.region.table.find(tag, -1)
        return self.text(self.region.element(index)) if index >= 0 else ""

    def patient_id(self) -> str:
        """The original PatientID (cached: the data set is visited before the meta group)."""
        found = self.cache.get("patient_id")
        if found is None:
            found = self.cache["patient_id"] = self.top_text(PATIENT_ID)
        return found

    def echo_pattern(self):
        """A bytes regex of the patient's identifying values, or None when there are none."""
        if "echo" not in self.cache:
            values = echo_values({tag: self.top_text(tag) for tag in ECHO_SOURCES})
            words = sorted((v.encode(self.encoding, "replace") for v in values), key=len,
                           reverse=True)
            self.cache["echo"] = (re.compile(b"|".join(re.escape(w) for w in words), re.I)
                                  if words else None)
        return self.cache["echo"]

    def creator(self, parent: int, creator_tag: int) -> str:
        """The private creator (gggg,00xx) of a block in the same item (PS3.5 §7.8.1)."""
        key = ("creator", parent, creator_tag)
        found = self.cache.get(key)
        if found is None:
            index = self.region.table.find(creator_tag, parent)
            found = self.text(self.region.element(index)) if index >= 0 else ""
            self.cache[key] = found
        return found


def as_policy(policy) -> Policy:
    """A Policy from a Policy, a preset name or a {tag: action} mapping."""
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, str):
        from . import presets
        return presets.load(policy)
    if isinstance(policy, Mapping):
        return Policy.from_mapping(policy)
    raise PolicyError(f"not a policy: {policy!r} (a preset name, a Policy or a mapping)")
