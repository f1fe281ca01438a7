"""Masks: the rectangles to black out (Mask) and the rules that choose them per file (MaskRules).

Geometry and choice only: pixels.py fills them into native Pixel Data, and pipeline.prepare picks
a file's masks (given, or those of the first matching rule).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .elements import parse_tag
from .errors import MaskWarning, PolicyError  # noqa: F401  (MaskWarning: the masks' warning)
from .scan import Region


def _frames_text(frames: tuple[int, ...]) -> str:
    parts, i = [], 0
    while i < len(frames):
        j = i
        while j + 1 < len(frames) and frames[j + 1] == frames[j] + 1:
            j += 1
        parts.append(str(frames[i]) if i == j else f"{frames[i]}-{frames[j]}")
        i = j + 1
    return ",".join(parts)


@dataclass(frozen=True, slots=True)
class Mask:
    """A rectangle to black out: column x, row y of its top-left pixel, its size in pixels,
    and the frames it applies to (indices counted from 0; None: every frame).

    Examples
    --------
    >>> Mask(10, 20, 100, 30)
    Mask(x=10, y=20, width=100, height=30, frames=None)
    >>> str(Mask(0, 0, 64, 16, frames=range(3)))
    '0,0,64,16@0-2'
    >>> Mask.parse("0,0,64,16@0-2,5") == Mask(0, 0, 64, 16, frames={0, 1, 2, 5})
    True
    """

    x: int
    y: int
    width: int
    height: int
    frames: tuple[int, ...] | None = None

    def __post_init__(self):
        for label in ("x", "y", "width", "height"):
            value = getattr(self, label)
            if not isinstance(value, int) or isinstance(value, bool):
                raise PolicyError(f"mask {label} must be an integer, not {value!r}")
        if self.width <= 0 or self.height <= 0:
            raise PolicyError(f"mask {self.x},{self.y},{self.width},{self.height}: "
                              "width and height must be positive")
        if self.frames is not None:
            if isinstance(self.frames, (str, bytes)):
                raise PolicyError(f"mask frames must be integers, not {self.frames!r}")
            try:
                frames = tuple(sorted(set(self.frames)))
            except TypeError:
                raise PolicyError(f"mask frames must be integers, not {self.frames!r}") from None
            if not frames:
                raise PolicyError("mask frames is empty (use None for every frame)")
            for f in frames:
                if not isinstance(f, int) or isinstance(f, bool) or f < 0:
                    raise PolicyError(f"mask frame {f!r} is not a frame index (0, 1, 2, ...)")
            object.__setattr__(self, "frames", frames)

    def __str__(self) -> str:
        text = f"{self.x},{self.y},{self.width},{self.height}"
        return text if self.frames is None else f"{text}@{_frames_text(self.frames)}"

    @classmethod
    def parse(cls, text: str) -> Mask:
        """A mask from the CLI form "X,Y,W,H[@FRAMES]", FRAMES like "0,3-5" (from 0)."""
        match = re.fullmatch(r"\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*(?:@(.+))?", text)
        if not match:
            raise PolicyError(f"mask {text!r}: expected X,Y,W,H or X,Y,W,H@FRAMES (e.g. 0,0,64,16@0-3)")
        x, y, w, h = (int(g) for g in match.groups()[:4])
        frames = None
        if match.group(5):
            frames = set()
            for part in match.group(5).split(","):
                span = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
                if not span:
                    raise PolicyError(f"mask {text!r}: frames {match.group(5)!r} are not like 0,3-5")
                lo, hi = int(span.group(1)), int(span.group(2) or span.group(1))
                if hi < lo:
                    raise PolicyError(f"mask {text!r}: frame range {part.strip()} runs backwards")
                frames.update(range(lo, hi + 1))
        return cls(x, y, w, h, frames)

    @classmethod
    def from_toml(cls, item, where: str) -> Mask:
        """A mask from a TOML value: "X,Y,W,H[@FRAMES]" or {x =, y =, width =, height =}."""
        if isinstance(item, str):
            return cls.parse(item)
        if isinstance(item, dict):
            try:
                return cls(**item)
            except TypeError as exc:
                raise PolicyError(f"{where}: mask {item}: {exc}") from None
        raise PolicyError(f"{where}: a mask is \"X,Y,W,H[@FRAMES]\" or "
                          "{x = , y = , width = , height = }")


class MaskRule(NamedTuple):
    """One [[rule]] of a mask rules file."""

    name: str
    match: tuple[tuple[int, object], ...]     # (tag, expected): str (glob), int, or a list of them
    masks: tuple[Mask, ...]


@dataclass(frozen=True, slots=True)
class MaskRules:
    """Mask rules read from TOML; the first rule whose `match` attributes all fit is used.

    ```toml
    [[rule]]
    name = "Acme ultrasound"
    match = { Modality = "US", Manufacturer = "ACME*", Rows = 480,
              SeriesDescription = { contains = "report", ignore_case = true } }
    masks = ["0,0,640,40", { x = 0, y = 440, width = 640, height = 40, frames = [0, 1] }]
    ```
    Strings match as shell-style globs (case-sensitive), integers exactly, { equals = "..." } and
    { contains = "..." } the whole value or a part of it (ignore_case = true: in any case), a
    list any of its items. Values are the file's top-level attributes (group 0002: its file
    meta), several values joined with a backslash. `MaskRules.load("builtin:ctp")` loads the
    rules fastanon ships (rules/: ctp, RSNA CTP's burned-in annotation signatures).

    Examples
    --------
    >>> rules = MaskRules.loads('[[rule]]\\nname = "all"\\nmatch = {}\\nmasks = ["0,0,8,8"]')
    >>> rules.rules[0].masks
    (Mask(x=0, y=0, width=8, height=8, frames=None),)
    """

    rules: tuple[MaskRule, ...]
    source: str = "<rules>"

    def __bool__(self) -> bool:
        return bool(self.rules)

    @classmethod
    def load(cls, path) -> MaskRules:
        """Rules from a TOML file, or builtin:NAME for a set fastanon ships."""
        if str(path).startswith(BUILTIN):
            name = str(path)[len(BUILTIN):]
            if name not in builtin_rules():
                raise PolicyError(f"{path}: no such built-in mask rules (there are: "
                                  f"{', '.join(BUILTIN + n for n in builtin_rules())})")
            path = _RULES / f"{name}.toml"
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"{path}: mask rules cannot be read ({exc.strerror})") from None
        return cls.loads(text, str(path))

    @classmethod
    def loads(cls, text: str, source: str = "<rules>") -> MaskRules:
        import tomllib

        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{source}: not valid TOML ({exc})") from None
        unknown = set(doc) - {"rule"}
        if unknown:
            raise PolicyError(f"{source}: unknown top-level key(s) {sorted(unknown)}; "
                              "expected [[rule]] tables")
        rules = []
        for number, raw in enumerate(doc.get("rule", []), 1):
            label = raw.get("name", f"rule {number}")
            where = f"{source}: {label}"
            extra = set(raw) - {"name", "match", "masks"}
            if extra:
                raise PolicyError(f"{where}: unknown key(s) {sorted(extra)}")
            match = []
            for key, expected in raw.get("match", {}).items():
                try:
                    tag = parse_tag(key)
                except KeyError as exc:
                    raise PolicyError(f"{where}: {exc.args[0]}") from None
                items = expected if isinstance(expected, list) else [expected]
                for item in items:
                    if isinstance(item, dict):
                        _check_test(item, f"{where}: {key}")
                    elif not isinstance(item, (str, int)) or isinstance(item, bool):
                        raise PolicyError(f"{where}: {key} must be a string, an integer, "
                                          "{ equals = ... } or { contains = ... }, or a list")
                match.append((tag, expected))
            masks = [Mask.from_toml(item, where) for item in raw.get("masks", [])]
            if not masks:
                raise PolicyError(f"{where}: no masks")
            rules.append(MaskRule(label, tuple(match), tuple(masks)))
        return cls(tuple(rules), source)

    def select(self, region: Region, meta: Region | None = None) -> MaskRule | None:
        """The first rule whose attributes all match this data set (top level; group 0002
        from the file meta)."""
        for rule in self.rules:
            if all(_matches((meta if tag >> 16 == 2 and meta is not None else region)
                            .attribute(tag), expected) for tag, expected in rule.match):
                return rule
        return None


BUILTIN = "builtin:"
_RULES = Path(__file__).parent / "rules"


def builtin_rules() -> list[str]:
    """The names of the mask rule sets fastanon ships (`--mask-rules builtin:NAME`)."""
    return sorted(p.stem for p in _RULES.glob("*.toml"))


_TESTS = {"equals", "contains"}


def _check_test(item: dict, where: str) -> None:
    tests = _TESTS & set(item)
    if len(tests) != 1 or set(item) - _TESTS - {"ignore_case"}:
        raise PolicyError(f"{where}: expected {{ equals = \"...\" }} or {{ contains = \"...\" }}"
                          f" (and ignore_case = true), not {item}")
    if not isinstance(item[tests.pop()], str) or not isinstance(item.get("ignore_case", False),
                                                                 bool):
        raise PolicyError(f"{where}: {item}: the value is a string, ignore_case true or false")


def _matches(value, expected) -> bool:
    from fnmatch import fnmatchcase

    if value is None:
        return False
    if isinstance(expected, list):
        return any(_matches(value, item) for item in expected)
    if isinstance(expected, dict):
        text, value = str(value), expected.get("equals", expected.get("contains"))
        if expected.get("ignore_case"):
            text, value = text.lower(), value.lower()
        return text == value if "equals" in expected else value in text
    if isinstance(expected, int):
        try:
            return int(value) == expected
        except ValueError:
            return False
    return fnmatchcase(str(value), expected)
