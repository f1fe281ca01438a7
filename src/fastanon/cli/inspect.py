"""`fastanon inspect FILE`: what a policy would do to one file's sensitive elements, and warnings."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import FastanonError
from ._options import key_options, load_key, load_policy, policy_options

MAX_ROWS = 200
_WIDTHS = {"path": 44, "value": 36}      # longer paths and values are cut with "…"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@policy_options
@key_options
@click.option("--json", "as_json", is_flag=True,
              help="Print every finding and warning as JSON (for scripts), not the table.")
@click.option("--all", "show_all", is_flag=True, help=f"Show every row (else the first {MAX_ROWS}).")
@click.option("--detect-text", is_flag=True,
              help="Also list the text an offline detector reads in the pixels (its box, the "
                   "text, the confidence): pip install 'fastanon[ocr]'.")
def inspect(file: Path, preset: str | None, policy_file: Path | None, key: str | None,
            key_file: Path | None, as_json: bool, show_all: bool, detect_text: bool) -> None:
    """Show what the policy does to FILE: each sensitive element (tag, keyword, VR, a preview of
    its value, the planned action), grouped by category, with warnings first (burned-in text,
    the patient's name echoed in kept text, private tags kept, compressed pixels).

    Nothing is written. Exit status: 0 shown, 1 the file cannot be read as DICOM, 2 usage error.

    \b
    Examples:
      fastanon inspect scan.dcm
      fastanon inspect --preset internal --json scan.dcm > findings.json
    """
    from .. import inspect as inspect_data
    from ..inspect import summarize

    policy, name = load_policy(preset, policy_file)
    secret = load_key(key, key_file) or None
    if detect_text:
        from ..text import NoDetector, require

        try:
            require()
        except NoDetector as exc:
            raise click.UsageError(str(exc)) from None
    try:
        findings = _inspect_file(file, policy, secret, inspect_data)
        boxes, masks, unread = _text(file) if detect_text else ([], [], "")
    except FastanonError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"{file}: cannot be read ({exc.strerror})") from None
    warnings = [f for f in findings if f.kind == "warning"]
    elements = [f for f in findings if f.kind == "element"]
    if as_json:
        import json

        found = {"file": str(file), "policy": name, "summary": summarize(findings),
                 "warnings": [w.as_dict() for w in warnings],
                 "findings": [e.as_dict() for e in elements]}
        if detect_text:
            found["text"] = [box.as_dict() for box in boxes]
            found["suggested_masks"] = [{"x": m.x, "y": m.y, "width": m.width,
                                         "height": m.height} for m in masks]
            if unread:
                found["text_unchecked"] = unread
        click.echo(json.dumps(found, indent=1, ensure_ascii=False))
        return
    click.echo(_table(file, name, warnings, elements, None if show_all else MAX_ROWS))
    if detect_text:
        click.echo(_text_lines(boxes, masks, unread))


def _text(file: Path) -> tuple[list, list, str]:
    """The text boxes in FILE's pixels and the masks over them, or why they could not be
    looked at."""
    from ..pipeline import open_source
    from ..text import Unreadable, suggest

    with open_source(file) as source:
        try:
            return (*suggest(source.contents(), str(file)), "")
        except Unreadable as exc:
            return [], [], str(exc)


def _text_lines(boxes: list, masks: list, unread: str) -> str:
    if unread:
        return f"\nText in the pixels: not looked at ({unread})"
    lines = ["", f"Text in the pixels ({len(boxes)})"]
    lines += [f"  frame {b.frame}  {b.x},{b.y},{b.width},{b.height}  {_cut(b.text, 48)!r}  "
              f"({b.score:.2f})" for b in boxes]
    if masks:
        lines.append("  As masks (a little larger than the boxes): " + " ".join(
            f"--mask {m}" for m in masks))
    return "\n".join(lines)


def _inspect_file(file: Path, policy, key, inspect_data) -> list:
    """Findings of a file opened as a run opens it (a large file is mapped, not read whole)."""
    from ..pipeline import open_source

    with open_source(file) as source:
        return inspect_data(source.contents(), policy, key=key, name=str(file))


def _cut(text: str, width: int) -> str:
    text = text.replace("\n", " ").replace("\r", " ")
    return text if len(text) <= width else text[:width - 1] + "…"


def _table(file: Path, policy: str, warnings: list, elements: list, limit: int | None) -> str:
    from ..categories import categories
    from ..elements import tag_text

    lines = [f"{file}: policy {policy}, {len(elements):,} sensitive element(s), "
             f"{len(warnings)} warning(s)"]
    if warnings:
        lines.append("")
        lines.append("Warnings")
        lines += [f"  ! {w.message}" for w in warnings]
    order = list(categories())
    groups: dict[str, list] = {}
    for finding in elements:
        groups.setdefault(finding.category or "other", []).append(finding)
    shown = 0
    rows: list[tuple[str | None, list]] = []
    for category in sorted(groups, key=lambda c: order.index(c) if c in order else len(order)):
        members = groups[category]
        room = len(members) if limit is None else max(0, min(len(members), limit - shown))
        if room:
            rows.append((category, members[:room]))
            shown += room
    cells = [(tag_text(f.tag) if f.tag is not None else "", _cut(f.path, _WIDTHS["path"]), f.vr,
              _cut(f.value, _WIDTHS["value"]), f.action) for _, members in rows for f in members]
    widths = [max([len(h)] + [len(c[i]) for c in cells])
              for i, h in enumerate(("tag", "keyword", "VR", "value", "action"))]
    at = 0
    titles = {name: cat.title for name, cat in categories().items()}
    for category, members in rows:
        lines.append("")
        lines.append(f"{titles.get(category, category.capitalize())} ({len(groups[category])})")
        for _ in members:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(cells[at], widths)).rstrip())
            at += 1
    if shown < len(elements):
        lines.append("")
        lines.append(f"… {len(elements) - shown:,} more row(s) not shown (--all shows every row, "
                     "--json every detail)")
    return "\n".join(lines)
