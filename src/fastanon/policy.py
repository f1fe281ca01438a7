"""Elements → plan: one action per element, decided by tag; touches no bytes.

A Policy says what happens to each attribute. It is compiled once per run into a Plan: sorted
tag → code arrays that the scanner's `select` reads in C, and the Python `decide` that is called
back only for the few elements that are not kept.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field, replace as dc_replace
from typing import Callable, Mapping

from .elements import (
    KIND_ELEMENT,
    KIND_FRAGMENTS,
    KIND_SEQUENCE,
    Element,
    parse_tag,
    tag_text,
)
from .errors import PolicyError
from .values import replacement

ACTIONS = ("keep", "remove", "empty", "replace", "uid", "shift", "hash")
KEEP = object()          # decide() result: leave the element as it is


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


@dataclass(frozen=True)
class Policy:
    """Actions by tag, with rules for private tags; every other element is kept.

    >>> p = Policy.from_mapping({"PatientName": "replace", (0x0010, 0x0020): "empty"})
    >>> p.action_for(0x00100010)
    Action(name='replace', text=None)
    """

    name: str = "custom"
    tags: Mapping[int, Action] = field(default_factory=dict)
    private: Action = Action("keep")          # private data elements (odd groups)
    private_creator: Action = Action("keep")  # (gggg,0010-00FF) private creators
    masks: tuple[tuple[int, int, Action], ...] = ()   # (mask, value, action): repeating groups
    clean_preamble: bool = False              # zero the 128-byte preamble (PS3.10 §7.1)
    generators: Mapping[str, Callable] = field(default_factory=dict, compare=False)

    @classmethod
    def from_mapping(cls, mapping: Mapping) -> "Policy":
        """A policy applying exactly the given {tag: action} and keeping everything else."""
        tags = {}
        for key, spec in mapping.items():
            try:
                tag = parse_tag(key)
            except KeyError as exc:
                raise PolicyError(str(exc.args[0])) from None
            tags[tag] = Action.of(spec)
        return cls(tags=tags)

    def action_for(self, tag: int) -> Action:
        action = self.tags.get(tag)
        if action is not None:
            return action
        for mask, value, action in self.masks:
            if tag & mask == value:
                return action
        group, element = tag >> 16, tag & 0xFFFF
        if group & 1 and 0x0008 < group < 0xFFFF and element:
            return self.private_creator if element < 0x100 else self.private
        return Action("keep")

    def override(self, mapping: Mapping) -> "Policy":
        """A copy with some tags' actions replaced ({tag or keyword: action})."""
        tags = dict(self.tags)
        tags.update(Policy.from_mapping(mapping).tags)
        return dc_replace(self, tags=tags)

    def compile(self, **context) -> "Plan":
        return Plan(self, context)


class Plan:
    """A compiled policy: the selection arrays for the scanner and the per-element decision."""

    def __init__(self, policy: Policy, context: Mapping):
        self.policy = policy
        self.context = dict(context)
        self.actions: list[Action] = [Action("keep")]
        codes: dict[Action, int] = {Action("keep"): 0}

        def code(action: Action) -> int:
            if action not in codes:
                if len(self.actions) == 255:
                    raise PolicyError("a policy may use at most 254 distinct actions")
                codes[action] = len(self.actions)
                self.actions.append(action)
            return codes[action]

        items = sorted(policy.tags.items())
        self.selection = (
            array("I", [tag for tag, _ in items]),
            array("B", [code(action) for _, action in items]),
            array("I", [m for m, _, _ in policy.masks]),
            array("I", [v for _, v, _ in policy.masks]),
            array("B", [code(a) for _, _, a in policy.masks]),
            code(policy.private),
            code(policy.private_creator),
        )
        self.clean_preamble = policy.clean_preamble

    def decide(self, file: "FileContext", element: Element, code: int):
        """KEEP, None (remove) or the new value bytes for a selected element."""
        action = self.actions[code]
        name = action.name
        if name == "keep":
            return KEEP
        if name == "remove":
            return None
        if name == "empty" or element.kind in (KIND_SEQUENCE, KIND_FRAGMENTS):
            if element.kind == KIND_SEQUENCE and name not in ("empty", "replace"):
                return KEEP      # uid/shift/hash on a sequence: recurse into it
            return b""
        generator = self.policy.generators.get(name)
        if generator is not None:
            return generator(self, file, element, action)
        if name == "replace":
            return replacement(element.vr, file.big, action.text, file.encoding)
        raise PolicyError(f"{tag_text(element.tag)}: action {name!r} needs the policy layer "
                          "that generates its values")


@dataclass
class FileContext:
    """What decide() may look at in one file: its values, byte order and character set."""

    region: object
    big: bool
    encoding: str = "ascii"
    cache: dict = field(default_factory=dict)

    def value(self, element: Element) -> bytes:
        if element.kind != KIND_ELEMENT:
            return b""
        return self.region.value(element)


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
