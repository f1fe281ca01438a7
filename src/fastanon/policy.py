"""What a policy is: actions by tag, built from a preset's text (Table E.1-1, options, categories)
or a mapping, with overrides; Policy.compile makes the Plan that decides per element.

A policy file or preset (TOML, read by presets.spec_of) becomes a Policy here (`build`): Table
E.1-1's codes under the chosen options, then `hide`, `[categories]` and `[tags]`, later winning.
"""

from __future__ import annotations

import os
from _collections_abc import Mapping as _Mapping    # collections.abc's, without collections

from . import presets
from ._lean import field, memo, record
from .categories import default_action, identity_tags, known_identity_tags, tags_in
from .elements import dictionary_entry, is_private, parse_tag, tag_text
from .errors import PolicyError
from .iods import Requirement
from .plan import (CID_7050, DEID_CODES, PATIENT_IDENTITY_REMOVED, Action, Plan,
                   code_item, resolve)
from .values import text_value

TYPE_CHECKING = False     # typing is not imported at run time
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

# How an option's "C" (clean) is carried out; options not listed here have no cleaning: remove.
_CLEANING = {"retain_long_modified_dates": "shift", "clean_descriptors": "clean",
             "retain_safe_private": "safe"}
# `hide` gives a category's default action the form that keeps the file valid (plan.TYPED).
_CONFORMING = {"remove": "X", "empty": "Z"}
OPTIONAL = Requirement("3")

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

DEID_METHOD = 0x00120063
LONGITUDINAL_MODIFIED = 0x00280303


@record(frozen=True)
class Policy:
    """Actions by tag, with rules for private tags and repeating groups; every other element is kept.

    >>> p = Policy.from_mapping({"PatientName": "replace", (0x0010, 0x0020): "empty"})
    >>> p.action_for(0x00100010)
    Action(name='replace', text=None)
    >>> Policy.preset("research").action_for(0x00100010).name   # PatientName: Z, by its Type
    'Z'
    """

    name: str = "custom"
    tags: Mapping[int, Action] = field(factory=dict)
    private: Action = Action("keep")          # private data elements (odd groups)
    private_creator: Action = Action("keep")  # (gggg,0010-00FF) private creators
    masks: tuple[tuple[int, int, Action], ...] = ()   # (mask, value, action): repeating groups
    clean_preamble: bool = False              # zero the 128-byte preamble (PS3.10 §7.1)
    generators: Mapping[str, Callable] = field(factory=dict, compare=False)
    description: str = ""
    options: frozenset = frozenset()          # PS3.15 E.1-1 options in use
    safe_private: bool = False                # keep private attributes of Table E.3.10-1
    clean_echoes: bool = False                # clean kept elements that repeat the identity
    echo_exempt: frozenset = frozenset()      # tags kept verbatim even when they repeat it
    echo_sources: tuple[int, ...] = ()        # more attributes whose values identify the patient
    # Keep conditions consistent with what was removed (a report without its verifying observer
    # is UNVERIFIED); off for a {tag: action} mapping, which applies exactly its actions.
    consistent: bool = False
    # Top-level elements written into every output: (tag, VR, value bytes, or for SQ a list of
    # items, each a list of (tag, VR, value bytes)) — e.g. PatientIdentityRemoved (PS3.15 E.1).
    additions: tuple = ()
    # Values a sponsor prescribes per patient (lookup.Lookup), and whether the Clinical Trial
    # attributes are written (trial_policy): the subject ID then comes from the table.
    lookup: object = None
    trial: bool = False
    reasons: Mapping[int, str] = field(factory=dict, compare=False)
    mask_reasons: tuple[str, ...] = field((), compare=False)
    private_reason: str = field("", compare=False)

    @classmethod
    def from_mapping(cls, mapping: Mapping) -> "Policy":
        """A policy applying exactly the given {tag: action} and keeping everything else."""
        return cls(tags=_tags_of(mapping))

    @classmethod
    def preset(cls, name: str) -> "Policy":
        """A preset shipped with fastanon ("research", "internal"), built once per process.

        >>> Policy.preset("internal").action_for(0x00080020).name   # StudyDate: internal keeps dates
        'keep'
        """
        if name not in presets.names():
            raise PolicyError(f"unknown preset {name!r}; expected one of "
                              f"{', '.join(presets.names())}")
        return _preset(name)

    @classmethod
    def from_file(cls, path) -> "Policy":
        """A policy file (TOML), usually `extends = "research"` plus changes (presets.spec_of)."""
        path = os.fspath(path)
        return _cached(f"file:{os.path.realpath(path)}",
                       lambda read: build(presets.spec_of(path, read=read, file=True)))

    @classmethod
    def from_spec(cls, spec: dict) -> "Policy":
        """A policy from a merged specification (presets.spec_of); the keys: presets/__init__.py."""
        return build(spec)

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
            for category, spec in categories.items():
                action = Action.of(spec)
                if category == "private tags":
                    changes.update(private=action, private_creator=action, safe_private=False,
                                   private_reason=f"override: private tags {action}")
                    continue
                for tag in tags_in(category):
                    tags[tag] = action
                    reasons[tag] = f"override: category {category} {action}"
        for tag, action in _tags_of(mapping or {}).items():
            tags[tag] = action
            reasons[tag] = f"override: {action}"
        return self.replace(tags=tags, reasons=reasons, **changes)

    def compile(self, **context) -> Plan:
        """The Plan of this policy for one run (context: key=...)."""
        return Plan(self, context)


def _tags_of(mapping: Mapping) -> dict[int, Action]:
    return {parse_tag(key): Action.of(spec) for key, spec in mapping.items()}



@memo
def _preset(name: str) -> Policy:
    return _cached(f"preset:{name}", lambda read: build(presets.spec_of(name, read=read)))


def _cached(key: str, make: Callable[[list], Policy]) -> Policy:
    """The policy make(read) builds (read: a list it fills with the files it reads), loaded
    from the on-disk cache when none of those files, nor fastanon, changed since (_cache.py)."""
    from . import _cache

    data = _cache.load(key)
    if data is not None:
        try:
            policy = _from_data(data["policy"])
            known_identity_tags(data["identity"])
            return policy
        except (KeyError, TypeError, ValueError, PolicyError):
            pass
    read: list = []
    policy = make(read)
    plain = _to_data(policy)
    if plain is not None:
        _cache.store(key, read, {"policy": plain, "identity": identity_tags()})
    return policy


# Policy fields holding actions, and how each is written as plain data (and read back).
_ACTION_FIELDS = {
    "tags": (lambda tags: {t: (a.name, a.text) for t, a in tags.items()},
             lambda tags: {t: Action(*a) for t, a in tags.items()}),
    "private": (lambda a: (a.name, a.text), lambda a: Action(*a)),
    "private_creator": (lambda a: (a.name, a.text), lambda a: Action(*a)),
    "masks": (lambda masks: tuple((m, v, (a.name, a.text)) for m, v, a in masks),
              lambda masks: tuple((m, v, Action(*a)) for m, v, a in masks)),
}


def _to_data(policy: Policy) -> dict | None:
    """A policy as marshal's types; None for one with generators (code, not data)."""
    if policy.generators or policy.lookup is not None:
        return None                 # code, or a table read at each start: not kept
    return {name: (_ACTION_FIELDS[name][0](value) if name in _ACTION_FIELDS else value)
            for name, value in vars(policy).items() if name != "generators"}


def _from_data(data: dict) -> Policy:
    return Policy(**{name: (_ACTION_FIELDS[name][1](value) if name in _ACTION_FIELDS else value)
                     for name, value in data.items()})


_KNOWN_KEYS = {"name", "description", "profile", "options", "compound", "hide", "categories",
               "tags", "private", "overlays", "curves", "group_lengths", "clean_echoes",
               "clean_preamble", "mark_deidentified", "deidentification_method", "keep_echoes",
               "identifying", "lookup", "trial"}


def build(spec: dict) -> Policy:
    """A Policy from a (merged) specification; see the module docstring for the keys."""
    from .presets._profile_table import PROFILE  # built policies only

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
        compound = {parse_tag(k): v for k, v in spec.get("compound", {}).items()}
        for tag, row_name, _, _, basic, row_options in PROFILE:
            code, why, option = _resolve(basic, row_options, options, compound.get(tag))
            if tag == "private":
                if code == "C":
                    safe = True
                    private = creator = Action("remove")
                else:
                    private = creator = resolve(_code_action(code, None, option), OPTIONAL)
                private_reason = why
            elif isinstance(tag, str):
                # A whole group goes (curves, overlays): its attributes' Types do not apply.
                masks.append((*_WILDCARDS[tag], resolve(_code_action(code, None, option),
                                                        OPTIONAL)))
                mask_reasons.append(f"{why} ({row_name})")
            else:
                entry = dictionary_entry(tag)
                tags[tag] = _code_action(code, entry[0] if entry else None, option)
                reasons[tag] = why + (", by the attribute's Type in the file's IOD"
                                      if tags[tag].typed else "")
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
        for tag in tags_in(category):
            default = default_action(tag)
            tags[tag] = Action.of(_CONFORMING.get(default, default))
            reasons[tag] = f"policy {name}: hides {category} ({_describe(tags[tag])})"
    for category, value in spec.get("categories", {}).items():
        action = _action(value, f"category {category!r}")
        if category == "private tags":
            private = creator = action
            private_reason = f"policy {name}: private tags {action}"
            safe = False
            continue
        for tag in tags_in(category):
            tags[tag] = action
            reasons[tag] = f"policy {name}: category {category} {action}"
    for key, value in spec.get("tags", {}).items():
        tag = parse_tag(key)
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
    lookup = None
    if "lookup" in spec:
        found = spec["lookup"]
        if not isinstance(found, dict) or not isinstance(found.get("file"), str) or \
                set(found) - {"file", "key", "missing"}:
            raise PolicyError("[lookup] has file = \"table.csv\" and, if need be, key = "
                              "\"PatientID\" and missing = \"refuse\" or \"pseudonym\"")
        from .lookup import Lookup

        lookup = Lookup.load(found["file"], found.get("key", "PatientID"),
                             found.get("missing", "refuse"))
    trial = spec.get("trial")
    if trial is not None and not isinstance(trial, dict):
        raise PolicyError("[trial] is a table: sponsor = \"...\", protocol_id = \"...\", ...")
    policy = Policy(name=name, tags=tags, private=private, private_creator=creator,
                  masks=tuple(masks), clean_preamble=bool(spec.get("clean_preamble")),
                  description=spec.get("description", ""), options=frozenset(options),
                  safe_private=safe, clean_echoes=bool(spec.get("clean_echoes")),
                  echo_exempt=frozenset(parse_tag(k) for k in spec.get("keep_echoes", ())),
                  echo_sources=tuple(parse_tag(k) for k in spec.get("identifying", ())),
                  additions=additions, reasons=reasons, mask_reasons=tuple(mask_reasons),
                  consistent=True,
                  private_reason=private_reason)
    return trial_policy(policy, trial, lookup) if trial or lookup is not None else policy


# The Clinical Trial Subject, Study and Series modules (PS3.3 C.7.1.3, C.7.2.3, C.7.3.2): the
# [trial] key, the attribute, its VR, its Type in the module ("1": a value must be given; "2":
# written empty when not given; "3": written only when given).
TRIAL_ATTRIBUTES = (
    ("sponsor", 0x00120010, "LO", "1"), ("protocol_id", 0x00120020, "LO", "1"),
    ("protocol_name", 0x00120021, "LO", "2"), ("site_id", 0x00120030, "LO", "2"),
    ("site_name", 0x00120031, "LO", "2"), ("time_point_id", 0x00120050, "LO", "2"),
    ("time_point_description", 0x00120051, "ST", "3"),
    ("coordinating_center", 0x00120060, "LO", "2"), ("series_id", 0x00120071, "LO", "3"),
    ("series_description", 0x00120072, "LO", "3"))
CLINICAL_TRIAL_SUBJECT_ID = 0x00120040


def trial_policy(policy: Policy, trial: dict | None = None, lookup=None) -> Policy:
    """policy with a lookup table (lookup.Lookup) and the Clinical Trial attributes of trial
    ({key: text}, TRIAL_ATTRIBUTES' keys) written into every output, kept out of the policy's
    removals; the subject ID (Type 1C) comes from the table's ClinicalTrialSubjectID column, or
    its PatientID column. PolicyError for a trial without sponsor, protocol or a subject ID."""
    lookup = lookup if lookup is not None else policy.lookup
    if not trial and not policy.trial:
        return policy.replace(lookup=lookup)
    trial = {**_trial_of(policy), **(trial or {})}
    known = {key for key, *_ in TRIAL_ATTRIBUTES}
    unknown = set(trial) - known
    if unknown:
        raise PolicyError(f"[trial]: unknown key(s) {', '.join(sorted(unknown))}; expected "
                          f"{', '.join(k for k, *_ in TRIAL_ATTRIBUTES)}")
    for key in ("sponsor", "protocol_id"):
        if not str(trial.get(key) or "").strip():
            raise PolicyError(f"a trial names its {key.replace('_', ' ')} (Type 1 in the Clinical "
                              "Trial Subject module): [trial] " + key + " = \"...\", or "
                              "--trial-" + ("sponsor" if key == "sponsor" else "protocol"))
    tags_given = lookup.tags if lookup is not None else ()
    if CLINICAL_TRIAL_SUBJECT_ID not in tags_given and 0x00100020 not in tags_given:
        raise PolicyError("a trial's subject ID comes from the lookup table: --lookup (or "
                          "[lookup]) with a ClinicalTrialSubjectID or PatientID column")
    additions = list(policy.additions)
    tags = dict(policy.tags)
    for key, tag, vr, kind in TRIAL_ATTRIBUTES:
        text = str(trial.get(key) or "").strip()
        if not text and kind == "3":
            continue
        try:
            value = text_value(vr, text, "ascii")
        except PolicyError:
            raise PolicyError(f"[trial] {key}: written in the default character repertoire "
                              "(ASCII letters, digits and punctuation)") from None
        if vr == "LO" and len(text) > 64:
            raise PolicyError(f"[trial] {key}: {len(text)} characters, longer than LO allows "
                              "(64)")
        additions = [a for a in additions if a[0] != tag] + [(tag, vr, value)]
        tags.pop(tag, None)
    # The subject ID is the table's (written over the policy's action for it): a file the table
    # does not hold, given pseudonyms (missing = "pseudonym"), keeps none from elsewhere.
    return policy.replace(additions=tuple(additions), tags=tags, lookup=lookup, trial=True)


def _trial_of(policy: Policy) -> dict:
    """The [trial] values a policy already writes ({key: text})."""
    if not policy.trial:
        return {}
    written = {tag: value for tag, _, value, *_ in policy.additions if isinstance(value, bytes)}
    return {key: written[tag].decode("ascii").rstrip("\0 ") for key, tag, *_ in
            TRIAL_ATTRIBUTES if written.get(tag)}


def _action(value, where: str) -> Action:
    try:
        return Action.of(value)
    except PolicyError as exc:
        raise PolicyError(f"{where}: {exc}") from None


def _options(table: dict) -> set[str]:
    from .presets._profile_table import OPTIONS  # built policies only

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
    from .presets._profile_table import EDITION, OPTIONS  # built policies only

    cells = {o: row_options[o] for o in OPTIONS if o in options and o in row_options}
    if cells:
        option = next((o for o, c in cells.items() if c == "K"), next(iter(cells)))
        code = cells[option]
        return code, f"PS3.15 E.1-1 ({EDITION}) {option} option: {code}", option
    why = f"PS3.15 E.1-1 ({EDITION}) basic profile: {basic}"
    if compound:
        return compound, f"{why}, here {compound}", None
    if basic == "X/Z/U*":
        return "K", f"{why}, kept so the references inside stay (their UIDs are replaced)", None
    return basic, why, None


def _describe(action: Action) -> str:
    """An action in words, type-aware codes with what they become."""
    if action.name in ("X", "X/Z", "X/D", "X/Z/D"):
        return f"{action.name}: removed; where the IOD requires it, emptied (Type 2) or a dummy (Type 1)"
    if action.name in ("Z", "Z/D"):
        return f"{action.name}: emptied; a dummy where the IOD requires a value (Type 1)"
    return str(action)


def _code_action(code: str, vr: str | None, option: str | None) -> Action:
    if code == "D":
        return Action("uid") if vr == "UI" else Action("dummy")   # a new UID is a valid dummy
    if code == "C":
        cleaning = _CLEANING.get(option)
        return Action(cleaning) if cleaning in ("shift", "clean") else Action("remove")
    simple = {"K": "keep", "U": "uid"}
    if code in simple:
        return Action(simple[code])
    try:
        return Action.of(code)           # X, Z, a compound code, or an action from [compound]
    except PolicyError:
        raise PolicyError(f"unknown PS3.15 action code {code!r}") from None


def _additions(spec: dict, name: str, options: set, safe: bool) -> tuple:
    """PatientIdentityRemoved, DeidentificationMethod (+ code sequence, CID 7050) and Longitudinal
    Temporal Information Modified, as PS3.15 E.1.1 asks of a de-identifier."""
    from .presets._profile_table import EDITION, OPTIONS  # built policies only

    used = sorted(["basic"] + [o for o in OPTIONS if o in options and o in CID_7050],
                  key=lambda o: CID_7050[o][0])
    method = spec.get("deidentification_method") or f"fastanon {name}: PS3.15 E {EDITION}"
    items = [code_item(o) for o in used]
    out = [(PATIENT_IDENTITY_REMOVED, "CS", text_value("CS", "YES")),
           (DEID_METHOD, "LO", text_value("LO", method)),
           (DEID_CODES, "SQ", items)]
    if "retain_long_modified_dates" in options:
        out.append((LONGITUDINAL_MODIFIED, "CS", text_value("CS", "MODIFIED")))
    elif "retain_long_full_dates" in options:
        out.append((LONGITUDINAL_MODIFIED, "CS", text_value("CS", "UNMODIFIED")))
    return tuple(out)


def as_policy(policy) -> Policy:
    """A Policy from a Policy, a preset name or a {tag: action} mapping."""
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, str):
        return Policy.preset(policy)
    if isinstance(policy, _Mapping):
        return Policy.from_mapping(policy)
    raise PolicyError(f"not a policy: {policy!r} (a preset name, a Policy or a mapping)")
