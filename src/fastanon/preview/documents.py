"""The files the page works on, held in memory, and what it asks of them: rows, previews, saves.

A Document is one uploaded file: its bytes, its scan, and the last anonymized output. Choices are
what the page sends with each request (preset, per-tag overrides, masks), turned into a Policy and
Masks here, once. Everything goes through the same engine as the CLI (fastanon.anonymize,
fastanon.inspect); nothing is written to disk.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field

from functools import lru_cache

from .. import presets
from ..categories import category_of
from ..echoes import CLEANED_VRS
from ..elements import KIND_FRAGMENTS, PIXEL_DATA, keyword, parse_tag, tag_text
from ..errors import FastanonError, PolicyError
# walk/value_preview: the paths and value previews inspect shows, so before → after rows line up.
from ..inspect import inspect, summarize, value_preview, walk
from ..masks import Mask, MaskRules
from ..pipeline import anonymize
from ..plan import ACTIONS, Action
from ..policy import Policy
from ..scan import NATIVE_SYNTAXES, Parsed, parse

# Attributes a saved mask rule matches on (what identifies a device's screen layout).
RULE_MATCH = (("Modality", 0x00080060), ("Manufacturer", 0x00080070),
              ("ManufacturerModelName", 0x00081090), ("Rows", 0x00280010),
              ("Columns", 0x00280011))
_SUMMARY = (("modality", 0x00080060), ("manufacturer", 0x00080070),
            ("model", 0x00081090), ("rows", 0x00280010), ("columns", 0x00280011),
            ("frames", 0x00280008), ("photometric", 0x00280004), ("bits", 0x00280100))
ACTION_LABELS = {"keep": "keep", "remove": "remove", "empty": "empty",
                 "replace": "replace with ANONYMIZED", "uid": "new UID", "shift": "shift date",
                 "hash": "pseudonym", "clean": "clean echoes"}
# Text VRs whose values can repeat the patient's name or IDs (the clean action's, echoes.py).
CLEANED_TEXT_VRS = CLEANED_VRS - {"OB", "UN"}


@lru_cache(maxsize=None)
def _labels(options: tuple[str, ...], vr: str) -> dict[str, str]:
    """The menu entries of a row that say more than the action's name (action_label)."""
    return {a: label for a in options
            if (label := action_label(a, vr)) != ACTION_LABELS.get(a, a)}


def action_label(action: str, vr: str) -> str:
    """What an action's menu entry says for an attribute of this VR: replace names the value
    it writes (a dummy date for a date, zeros for numbers)."""
    if action != "replace":
        return ACTION_LABELS.get(action, action)
    from ..values import replacement

    if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN", "US", "SS", "UL", "SL", "FL", "FD",
              "AT", "UV", "SV"):
        return "replace with zeros"
    try:
        written = replacement(vr, False, None).decode("ascii").rstrip("\0 ")
    except (FastanonError, UnicodeDecodeError):
        return ACTION_LABELS["replace"]
    return f"replace with {written}" if written else "replace with an empty value"


@dataclass(frozen=True)
class Choices:
    """What the page asks for: a preset, per-tag overrides ({tag: action}) and masks."""

    preset: str = "research"
    overrides: tuple[tuple[int, str], ...] = ()
    masks: tuple[Mask, ...] = ()
    lookup: object = None           # a lookup.Lookup the page loaded (server.tables)

    @classmethod
    def from_json(cls, body: dict) -> Choices:
        """Choices from the page's JSON; PolicyError (a 400) for anything malformed."""
        if not isinstance(body, dict):
            raise PolicyError("the request body must be a JSON object")
        preset = body.get("preset", "research")
        if preset not in presets.names():
            raise PolicyError(f"unknown preset {preset!r}; expected one of "
                              f"{', '.join(presets.names())}")
        overrides = body.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise PolicyError("overrides must be an object {\"(gggg,eeee)\": action}")
        pairs = []
        for key, action in overrides.items():
            tag = parse_tag(key)
            if not isinstance(action, str):
                raise PolicyError(f"{key}: an action is a string ({', '.join(ACTIONS)})")
            pairs.append((tag, Action.of(action).name))
        masks = []
        for item in body.get("masks") or ():
            if not isinstance(item, dict):
                raise PolicyError("a mask is {x, y, width, height, frames}")
            frames = item.get("frames")
            try:
                masks.append(Mask(item.get("x"), item.get("y"), item.get("width"),
                                  item.get("height"), frames if frames else None))
            except TypeError as exc:
                raise PolicyError(f"mask {item}: {exc}") from None
        return cls(preset, tuple(sorted(pairs)), tuple(masks))

    def policy(self) -> Policy:
        base = Policy.preset(self.preset)
        policy = base.override(dict(self.overrides)) if self.overrides else base
        if self.lookup is not None:
            from ..policy import trial_policy

            policy = trial_policy(policy, None, self.lookup)
        return policy

    def with_lookup(self, lookup) -> "Choices":
        return Choices(self.preset, self.overrides, self.masks, lookup)

    def without_lookup(self) -> "Choices":
        return Choices(self.preset, self.overrides, self.masks)


@dataclass
class Document:
    """One uploaded file, in memory only."""

    id: str
    name: str
    data: bytes
    parsed: Parsed
    seen: float = field(default_factory=time.monotonic)
    output: bytes | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    recommended: dict = field(default_factory=dict)     # preset -> {path: its action}
    _frames: dict = field(default_factory=dict)

    def frames(self, which: str = "input"):
        """Decoded frames of the input or of the last output (render.Frames, built on demand)."""
        from .render import Frames

        data = self.data if which == "input" else self.output
        if data is None:
            raise FastanonError("no anonymized preview yet: press “Update anonymization preview”")
        found = self._frames.get(which)
        if found is None or found[0] is not data:
            parsed = self.parsed if which == "input" else parse(data, self.name)
            found = self._frames[which] = (data, Frames(data, parsed))
        return found[1]


class Documents:
    """The open documents, by id; dropped on request or after `idle` seconds unseen."""

    def __init__(self, idle: float):
        self.idle = idle
        self._items: dict[str, Document] = {}
        self._lock = threading.Lock()

    def add(self, data: bytes, name: str) -> Document:
        parsed = parse(data, "the uploaded file")
        doc = Document(secrets.token_urlsafe(12), name, data, parsed)
        with self._lock:
            self._items[doc.id] = doc
        return doc

    def get(self, doc_id: str) -> Document | None:
        with self._lock:
            doc = self._items.get(doc_id)
        if doc is not None:
            doc.seen = time.monotonic()
        return doc

    def drop(self, doc_id: str) -> bool:
        with self._lock:
            return self._items.pop(doc_id, None) is not None

    def sweep(self) -> int:
        """Drop the documents unseen for longer than the idle timeout; how many went."""
        limit = time.monotonic() - self.idle
        with self._lock:
            gone = [k for k, d in self._items.items() if d.seen < limit]
            for key in gone:
                del self._items[key]
        return len(gone)

    def __len__(self) -> int:
        return len(self._items)


# ---------------------------------------------------------------------------------------------
# What the page shows.

def summary(doc: Document) -> dict:
    """Transfer syntax, modality, frames, size and the image attributes of one file."""
    region = doc.parsed.dataset
    out = {"name": doc.name, "size": len(doc.data)}
    for label, tag in _SUMMARY:
        value = region.attribute(tag)
        out[label] = value if value not in ("", None) else None
    syntax = doc.parsed.transfer_syntax
    out["transfer_syntax"] = syntax
    out["transfer_syntax_name"] = _syntax_name(syntax, doc.parsed)
    pixel = region.table.find(PIXEL_DATA, -1)
    out["has_pixels"] = pixel >= 0
    out["compressed"] = pixel >= 0 and (region.element(pixel).kind == KIND_FRAGMENTS or
                                        (syntax is not None and syntax not in NATIVE_SYNTAXES))
    out["frames"] = int(out["frames"]) if str(out["frames"] or "").strip().isdigit() else (
        1 if out["has_pixels"] else None)
    return out


def _syntax_name(syntax: str | None, parsed: Parsed) -> str:
    if syntax is None:
        region = parsed.dataset
        return ("raw data set, " + ("implicit VR" if region.implicit else "explicit VR")
                + (" big endian" if region.big else " little endian"))
    if syntax in NATIVE_SYNTAXES:
        return NATIVE_SYNTAXES[syntax]
    try:
        from pydicom.uid import UID
        return UID(syntax).name or syntax
    except Exception:          # an unknown or malformed UID: show it as it is
        return syntax


def rows(doc: Document, choices: Choices) -> dict:
    """The findings under the chosen policy, with what the preset alone recommends per row. A
    file the lookup table has no row for is shown without it, with a warning (its preview and
    download are refused, as `fastanon run` refuses it)."""
    from ..lookup import LookupMissing

    missing = None
    try:
        found = inspect(doc.data, choices.policy(), key=b"preview", name="the uploaded file")
    except LookupMissing as exc:
        missing = str(exc)
        choices = choices.without_lookup()
        found = inspect(doc.data, choices.policy(), key=b"preview", name="the uploaded file")
    if choices.overrides:
        recommended = doc.recommended.get(choices.preset)
        if recommended is None:             # the preset alone: the same for every change
            recommended = doc.recommended[choices.preset] = {
                f.path: f.action for f in inspect(doc.data, choices.preset, key=b"preview",
                                                  name="the uploaded file")
                if f.kind == "element"}
    else:
        recommended = None
    overridden = {tag for tag, _ in choices.overrides}
    elements, warnings, actions = [], [], {}
    for f in found:
        if f.kind == "warning":
            warnings.append({"code": f.code, "message": f.message, "path": f.path,
                             "category": f.category,
                             "tag": tag_text(f.tag) if f.tag is not None else None})
            continue
        row = f.as_dict()
        del row["kind"], row["code"], row["message"]
        row["recommended"] = recommended.get(f.path, f.action) if recommended else f.action
        row["inherited"] = f.reason.startswith("inside ")
        row["overridden"] = f.tag in overridden and not row["inherited"]
        options = [f.action, row["recommended"], *f.alternatives]
        if not f.alternatives:
            options += ["keep", "remove", "empty", "replace"]
        if f.vr in CLEANED_TEXT_VRS:
            options.append("clean")         # blank the patient's identity where it is repeated
        if f.vr == "SQ":
            options = [a for a in options if a not in ("replace", "clean") or a == f.action]
        row["options"] = [a for a in dict.fromkeys(options) if a in ACTIONS]
        row["labels"] = _labels(tuple(row["options"]), f.vr)
        actions[f.action] = actions.get(f.action, 0) + 1
        elements.append(row)
    if missing:
        warnings.insert(0, {"code": "lookup-missing", "message": f"this file: {missing}",
                            "path": "", "category": "patient identity", "tag": None})
    return {"rows": elements, "warnings": warnings, "categories": summarize(found),
            "actions": actions}


def anonymized(doc: Document, choices: Choices, key: bytes) -> bytes:
    """The file as `fastanon run` writes it with this policy, key and masks (decompressing
    compressed Pixel Data only when masks need it and cannot apply in its transfer syntax)."""
    from ..pixels import masks_keep_syntax

    return anonymize(doc.data, choices.policy(), choices.masks, key=key, name="the uploaded file",
                     decompress=bool(choices.masks)
                     and not masks_keep_syntax(doc.parsed.transfer_syntax))


def text_masks(doc: Document) -> dict:
    """Text the detector reads in the file's pixels (the ocr extra) and the masks suggested
    over it: {"boxes": [...], "masks": [...], "frames": [...]}, looked for in the input as
    uploaded (masks are drawn over the original). NoDetector without the ocr extra,
    Unreadable when the pixels cannot be decoded (both a 400 that says so)."""
    from .. import text

    text.require()
    boxes, masks = text.suggest(doc.data, doc.name)
    if boxes:
        looked = sorted({b.frame for b in boxes})
    else:
        with doc.lock:                      # the frames the page shows (decoded already)
            looked = text.frames_to_look_at(doc.frames("input").info.frames)
    return {"boxes": [b.as_dict() for b in boxes], "frames": looked,
            "masks": [{"x": m.x, "y": m.y, "width": m.width, "height": m.height,
                       "text": " / ".join(b.text for b in boxes if _inside(b, m))}
                      for m in masks]}


def _inside(box, mask: Mask) -> bool:
    return (mask.x <= box.x and mask.y <= box.y and box.x + box.width <= mask.x + mask.width
            and box.y + box.height <= mask.y + mask.height)


def _values(data: bytes) -> dict[str, tuple[int, str, str]]:
    """{path: (tag, VR, value preview)} of every element (meta, then data set)."""
    return {path: (element.tag, element.vr, value_preview(context, element))
            for element, path, _, _, context in walk(parse(data, "the anonymized file"))}


def changes(before: list[dict], input_data: bytes, output: bytes) -> list[dict]:
    """Before → after for each row of the table, then the elements the output gained."""
    old, new = _values(input_data), _values(output)
    out, seen = [], set()
    for row in before:
        path = row["path"]
        seen.add(path)
        found = new.get(path)
        value = found[2] if found else None
        if found is None:
            status = "removed"
        elif value == row["value"]:
            status = "kept" if row["action"] == "keep" else "unchanged"
        else:
            status = "changed"
        out.append({"path": path, "tag": row["tag"], "keyword": row["keyword"], "vr": row["vr"],
                    "category": row["category"], "action": row["action"], "before": row["value"],
                    "after": value, "status": status})
    for path, (tag, vr, value) in new.items():
        if path not in old and path not in seen:
            out.append({"path": path, "tag": tag_text(tag), "keyword": keyword(tag), "vr": vr,
                        "category": category_of(tag, vr), "action": "added",
                        "before": None, "after": value, "status": "added"})
    return out


# ---------------------------------------------------------------------------------------------
# The record a data-protection officer keeps beside the file.

def record(doc: Document, choices: Choices, key: bytes) -> dict:
    """What was done to this file, without any of its values: the row `fastanon run --audit`
    writes for it (source, destination, status, reason, preset, mask rule, elements changed by
    each action), SHA-256 of the input and of the output, the policy (as a file run reads), the
    masks, each attribute's action and what became of it, and the warnings the page showed
    (those that quote a value, by their kind and attribute only)."""
    import hashlib

    from .. import __version__
    from ..batch import Outcome, audit_header, audit_row
    from ..pipeline import plan_of, prepare, render
    from ..pixels import masks_keep_syntax

    decompress = bool(choices.masks) and not masks_keep_syntax(doc.parsed.transfer_syntax)
    output = prepare(parse(doc.data, "the uploaded file"), plan_of(choices.policy(), key),
                     choices.masks, decompress=decompress)
    written, _ = render(output)
    shown = rows(doc, choices)
    stem = doc.name.rsplit(".", 1)[0] if "." in doc.name else doc.name
    warnings = [{"code": w["code"], "attribute": w["path"],
                 "message": w["message"] if w["code"] not in _QUOTING else
                 f"{w['path']} is kept and repeats an identifying value of the patient"}
                for w in shown["warnings"]]
    written_as = Outcome(doc.name, f"{stem or 'file'}-anonymized.dcm", "written",
                         "; ".join(w["message"] for w in warnings), len(doc.data),
                         dict(output.actions))
    preset = choices.preset + (f" + {len(choices.overrides)} change(s)" if choices.overrides
                               else "")
    audit = dict(zip(audit_header(), audit_row(written_as, preset)))
    return {
        "record": "fastanon preview", "version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "audit": audit,
        "input": {"name": doc.name, "size": len(doc.data),
                  "sha256": hashlib.sha256(doc.data).hexdigest()},
        "output": {"name": audit["destination"], "size": len(written),
                   "sha256": hashlib.sha256(written).hexdigest()},
        "policy": {"preset": choices.preset,
                   "overrides": {tag_text(t): a for t, a in choices.overrides},
                   "file": policy_toml(choices)},
        "masks": [{"x": m.x, "y": m.y, "width": m.width, "height": m.height,
                   "frames": "every frame" if m.frames is None else sorted(m.frames)}
                  for m in choices.masks],
        "attributes": [{"path": c["path"], "tag": c["tag"], "category": c["category"],
                        "action": c["action"], "result": c["status"]}
                       for c in changes(shown["rows"], doc.data, written)],
        "warnings": warnings,
    }


_QUOTING = frozenset({"identifying-echo"})      # warnings whose text quotes the values found


def record_html(found: dict) -> str:
    """The record as a page to read and print (no script, no outside resource)."""
    from html import escape as e

    audit = found["audit"]
    counts = ", ".join(f"{a} {audit[a]}" for a in ("remove", "empty", "replace", "uid", "shift",
                                                   "hash", "clean") if audit.get(a))
    facts = [("Input", f"{found['input']['name']} ({found['input']['size']:,} bytes)"),
             ("Input SHA-256", found["input"]["sha256"]),
             ("Output", f"{found['output']['name']} ({found['output']['size']:,} bytes)"),
             ("Output SHA-256", found["output"]["sha256"]),
             ("Policy", audit["preset"]), ("Elements changed", counts or "none"),
             ("Masks", f"{len(found['masks'])}"),
             ("Made", f"{found['created']} by fastanon {found['version']}")]
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts)
    warnings = "".join(f"<li><b>{e(w['code'])}</b>: {e(w['message'])}</li>"
                       for w in found["warnings"]) or "<li>none</li>"
    masks = "".join(f"<li>{m['x']},{m['y']} {m['width']}×{m['height']}, "
                    f"{e(str(m['frames']))}</li>" for m in found["masks"]) or "<li>none</li>"
    overrides = "".join(f"<li><code>{e(t)}</code>: {e(a)}</li>"
                        for t, a in found["policy"]["overrides"].items()) or "<li>none</li>"
    attributes = "".join(
        f"<tr><td>{e(a['path'])}</td><td><code>{e(a['tag'])}</code></td>"
        f"<td>{e(a['category'] or '')}</td><td>{e(a['action'])}</td><td>{e(a['result'])}</td></tr>"
        for a in found["attributes"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>fastanon record: {e(found['input']['name'])}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem;
       color: #1e293b; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: 0.25rem 0.5rem; border-bottom: 1px solid #e2e8f0;
          overflow-wrap: anywhere; vertical-align: top; }}
.facts th {{ width: 11rem; }} code {{ font-size: 0.9em; }}
</style></head><body>
<h1>What fastanon did to {e(found['input']['name'])}</h1>
<table class="facts">{rows}</table>
<h2>Policy</h2><p>{e(found['policy']['preset'])} preset; changes:</p><ul>{overrides}</ul>
<h2>Masks</h2><ul>{masks}</ul>
<h2>Warnings shown</h2><ul>{warnings}</ul>
<h2>Attributes</h2>
<table><tr><th>attribute</th><th>tag</th><th>category</th><th>action</th><th>result</th></tr>
{attributes}</table>
<p>No value of the file is in this record: attributes are named, not quoted.</p>
</body></html>
"""


# ---------------------------------------------------------------------------------------------
# What the page saves: files `fastanon run --policy … --mask-rules …` reads as they are.

def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=True)      # a valid TOML basic string


def _toml_key(tag: int) -> str:
    name = keyword(tag)
    if name:
        try:
            if parse_tag(name) == tag:
                return name
        except KeyError:
            pass
    return _toml_string(tag_text(tag))


def policy_toml(choices: Choices) -> str:
    """The preset plus the overrides as a policy file (Policy.from_file reads it)."""
    base = Policy.preset(choices.preset)
    lines = [f"# fastanon policy saved from the preview page: the {choices.preset} preset"
             f" with {len(choices.overrides)} change(s).",
             "# Use it on a whole study:  fastanon run --policy THIS_FILE.toml SRC DST",
             f"extends = {_toml_string(choices.preset)}",
             f"description = {_toml_string(f'{choices.preset}, with changes made in the preview page')}",
             ""]
    if choices.lookup is not None:
        name = os.path.basename(choices.lookup.path)
        lines += ["[lookup]", f"file = {_toml_string(name)}    # keep the table beside this file",
                  f"key = {_toml_string(keyword(choices.lookup.key))}", ""]
    if choices.overrides:
        lines.append("[tags]")
        for tag, action in choices.overrides:
            category = category_of(tag) or "other"
            was = base.action_for(tag)
            lines.append(f"{_toml_key(tag)} = {_toml_string(action)}"
                         f"    # {category}; {choices.preset}: {was}")
    text = "\n".join(lines) + "\n"
    return text


def _glob_literal(text: str) -> str:
    """A shell-style glob that matches exactly text (MaskRules match strings as globs)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def rule_toml(doc: Document, masks: tuple[Mask, ...]) -> str:
    """The masks as one [[rule]] matching this file's device and image size (MaskRules.load)."""
    if not masks:
        raise PolicyError("no masks to save: draw at least one rectangle on the image")
    region = doc.parsed.dataset
    match, label = [], []
    for key, tag in RULE_MATCH:
        value = region.attribute(tag)
        if value in (None, ""):
            continue
        if isinstance(value, int):
            match.append(f"{key} = {value}")
        else:
            match.append(f"{key} = {_toml_string(_glob_literal(value))}")
            label.append(value)
    columns, rows_ = region.attribute(0x00280011), region.attribute(0x00280010)
    if columns and rows_:
        label.append(f"{columns}x{rows_}")
    name = " ".join(label) or "masks from the preview page"
    masks_text = ", ".join(_toml_string(str(m)) for m in masks)
    text = ("# fastanon mask rule saved from the preview page: files whose attributes match get "
            "these masks.\n"
            "# Use it on a whole study:  fastanon run --mask-rules THIS_FILE.toml SRC DST\n"
            "# Masks are X,Y,WIDTH,HEIGHT in pixels, @FRAMES (from 0) when not on every frame.\n"
            "[[rule]]\n"
            f"name = {_toml_string(name)}\n"
            f"match = {{ {', '.join(match)} }}\n"
            f"masks = [{masks_text}]\n")
    MaskRules.loads(text, "the saved rule")           # refuse to hand out a file run cannot read
    return text
