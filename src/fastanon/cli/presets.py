"""`fastanon presets [NAME]`: the shipped presets, or every rule of one of them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from ..errors import FastanonError


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("name", required=False)
def presets(name: str | None) -> None:
    """List the presets, one line each; with NAME (a preset, or a policy FILE.toml), show its
    settings, what it does to each category, and every rule with its reason.

    \b
    Examples:
      fastanon presets
      fastanon presets internal
      fastanon presets my-policy.toml | less
    """
    from .. import presets as shipped
    from ..policy import Policy

    if name is None:
        width = max(len(n) for n in shipped.names())
        for preset in shipped.names():
            policy = Policy.preset(preset)
            click.echo(f"{preset.ljust(width)}  {_first_sentence(policy.description)}")
        return
    try:
        if name.endswith(".toml") or Path(name).is_file():
            policy = Policy.from_file(name)
        else:
            policy = Policy.preset(name)
    except FastanonError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    click.echo(_describe(policy))


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    head, dot, _ = text.partition(". ")
    return head + dot.strip()


def _describe(policy) -> str:
    from ..categories import categories, category_of
    from ..elements import keyword, tag_text

    lines = [f"{policy.name}", ""]
    lines += ["  " + line for line in policy.description.strip().splitlines()]
    lines += ["", "Settings",
              f"  private tags: {'safe ones kept (PS3.15 E.3.10-1)' if policy.safe_private else policy.private}",
              f"  PS3.15 E.1-1 options on: {', '.join(sorted(policy.options)) or 'none'}",
              f"  clean echoes of the patient's identifiers in kept text: "
              f"{'yes' if policy.clean_echoes else 'no'}",
              f"  zero the 128-byte preamble: {'yes' if policy.clean_preamble else 'no'}"]
    if policy.additions:
        lines.append("  written into every output: "
                     + ", ".join(keyword(tag) or tag_text(tag) for tag, *_ in policy.additions))
    if any(action.typed for action in policy.tags.values()):
        lines += ["", "Type-aware codes (PS3.15 E.1-1), resolved in each file by the attribute's "
                  "Type in its IOD (PS3.3)",
                  "  X, X/Z, X/D, X/Z/D  removed where Type 3; emptied where Type 2, a dummy where "
                  "Type 1",
                  "  Z, Z/D              emptied; a dummy where Type 1",
                  "  where no table says (unknown SOP Class or place): X removes, X/Z and Z "
                  "empty, the others write a dummy"]
    by_category: dict[str, list] = {}
    for tag, action in sorted(policy.tags.items()):
        by_category.setdefault(category_of(tag) or "other", []).append((tag, action))
    order = list(categories())
    names = sorted(by_category, key=lambda c: order.index(c) if c in order else len(order))
    lines += ["", "Categories (how many attributes get each action)"]
    width = max(len(c) for c in names) if names else 0
    for category in names:
        counts = Counter(str(action) for _, action in by_category[category])
        lines.append(f"  {category.ljust(width)}  "
                     + ", ".join(f"{a} {n}" for a, n in counts.most_common()))
    lines.append(f"  {'private tags'.ljust(width)}  {policy.private}  ({policy.private_reason})")
    if policy.masks:
        lines += ["", "Rules for ranges of tags"]
        reasons = tuple(policy.mask_reasons) + ("",) * len(policy.masks)
        for (mask, value, action), why in zip(policy.masks, reasons):
            lines.append(f"  {_range_text(mask, value)}  {action}  {why}")
    for category in names:
        lines += ["", f"{category.capitalize()} ({len(by_category[category])})"]
        rows = [(tag_text(tag), keyword(tag) or "", str(action), policy.reason_for(tag))
                for tag, action in by_category[category]]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        for row in rows:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[3])
    return "\n".join(lines)


def _range_text(mask: int, value: int) -> str:
    """(gggg,eeee) with x for every hex digit the mask does not fix whole, e.g. (60xx,4000)."""
    digits = []
    for shift in range(28, -4, -4):
        digits.append(f"{(value >> shift) & 0xF:X}" if (mask >> shift) & 0xF == 0xF else "x")
    text = "".join(digits)
    return f"({text[:4]},{text[4:]})"
