"""Options as data: click's decorators are made from them (_options.to_click), and `fastanon run`
and `fastanon check` parse their arguments with them without loading click (parse, fast), so
that they start at once.

parse() accepts only what click would accept with the same meaning; anything else (--help, an
unknown option, a bad value, a missing argument) returns None, and click parses it instead and
says what is wrong.
"""

from __future__ import annotations

import os

from ..stores import is_url, local


class Opt:
    """One command-line option. kind: "flag", "text", "count" (an integer >= 1), "rules" (a
    file, or builtin:NAME), "file" (an
    existing file, not a folder), "path" (not a folder), "folder" (not a file) or "choice"."""

    __slots__ = ("flags", "dest", "kind", "help", "metavar", "multiple", "choices", "default")

    def __init__(self, flags: tuple[str, ...], dest: str, kind: str, help: str,  # noqa: A002
                 metavar: str | None = None, multiple: bool = False,
                 choices: tuple[str, ...] = (), default: object = None):
        self.flags, self.dest, self.kind, self.help = flags, dest, kind, help
        self.metavar, self.multiple, self.choices, self.default = metavar, multiple, choices, default


POLICY_OPTIONS = (
    Opt(("--preset",), "preset", "text",
        "Preset policy: research (the default: PS3.15 Annex E basic profile, full "
        "de-identification) or internal (hides identity and contact only); see `fastanon "
        "presets`.", metavar="NAME"),
    Opt(("--policy",), "policy_file", "file",
        "A policy file (TOML), usually `extends = \"research\"` plus changes; replaces --preset."),
)

TRIAL_OPTIONS = (
    Opt(("--lookup",), "lookup", "file",
        "A CSV table of the values the sponsor prescribes per patient: the first column holds "
        "the original PatientID (or --lookup-key), the others are named by keywords "
        "(PatientID, PatientName, ClinicalTrialSubjectID, ...) or date_offset_days. Applied "
        "wherever the original values are copied; replaces a policy file's [lookup].",
        metavar="FILE.csv"),
    Opt(("--lookup-key",), "lookup_key", "text",
        "The keyword whose original value the table's first column holds [default: "
        "PatientID].", metavar="KEYWORD"),
    Opt(("--lookup-missing",), "lookup_missing", "choice",
        "A file whose key is not in the table: refuse it (named, nothing written; the "
        "default), or give it the policy's keyed pseudonyms.", choices=("refuse", "pseudonym")),
    Opt(("--trial-sponsor",), "trial_sponsor", "text",
        "Write the Clinical Trial attributes (PS3.3 C.7.1.3, C.7.2.3, C.7.3.2) with this "
        "sponsor name; the subject ID comes from the lookup table.", metavar="NAME"),
    Opt(("--trial-protocol",), "trial_protocol", "text",
        "The trial's protocol ID (with --trial-sponsor, or a policy file's [trial]).",
        metavar="ID"),
    Opt(("--trial-site",), "trial_site", "text", "The site's ID in the trial.", metavar="ID"),
)

KEY_ENV = "FASTANON_KEY"

KEY_OPTIONS = (
    Opt(("--key",), "key", "text",
        f"Secret that keys new UIDs, date shifts and pseudonyms: the same key gives the same "
        f"values in every run. Also ${KEY_ENV}. Without one, a random key for this run.",
        metavar="TEXT"),
    Opt(("--key-file",), "key_file", "file",
        "Read the secret from a file (surrounding white space ignored)."),
)


def parse(argv: list[str], options: tuple[Opt, ...], arguments: tuple[tuple[str, str], ...]
          ) -> dict | None:
    """{dest: value} for argv, as click would pass them to the command; None when click should
    parse argv itself. arguments: (dest, kind) of the positional ones, kind "exists" (a path
    that exists), "source" (that, or an object store's URL) or "text". Paths are given as
    str."""
    by_flag = {flag: opt for opt in options for flag in opt.flags}
    values: dict = {opt.dest: ([] if opt.multiple else opt.default if opt.kind != "flag"
                               else False) for opt in options}
    positional: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if not token.startswith("-") or token == "-":
            positional.append(token)
            continue
        name, equals, value = token.partition("=")
        opt = by_flag.get(name if name.startswith("--") else token)
        if opt is None:
            return None                 # --help, --, -abc, an unknown option: click's to say
        if opt.kind == "flag":
            if equals:
                return None
            values[opt.dest] = True
            continue
        if not equals:
            if i == len(argv):
                return None
            value = argv[i]
            i += 1
        if value.startswith("-"):
            return None                 # a value that looks like an option: let click decide
        checked = _value(opt, value)
        if checked is None:
            return None
        if opt.multiple:
            values[opt.dest].append(checked)
        else:
            values[opt.dest] = checked
    if len(positional) != len(arguments):
        return None
    for (dest, kind), text in zip(arguments, positional):
        if kind == "source" and is_url(text):
            values[dest] = text             # an object store's: the run checks it
        elif kind in ("exists", "source"):
            text = local(text) if kind == "source" else text
            if not text or not os.path.exists(text) or not os.access(text, os.R_OK):
                return None
            values[dest] = text
        else:
            values[dest] = text
    for opt in options:
        if opt.multiple:
            values[opt.dest] = tuple(values[opt.dest])
    return values


def fast(argv: list[str], options: tuple[Opt, ...], arguments: tuple[tuple[str, str], ...],
         body) -> None:
    """body(**values) of argv without click when argv is well formed; returns (having done
    nothing) when click should take it: argv is not, or the body found a usage error before
    it did anything. Other errors of click's kind are shown as click shows them."""
    import sys

    values = parse(argv, options, arguments)
    if values is None:
        return
    try:
        body(**values)
    except Exception as exc:
        if type(exc).__module__.split(".")[0] != "click":
            raise
        import click

        if isinstance(exc, click.UsageError):
            return                      # found before any output: click runs argv and says so
        exc.show()
        sys.exit(exc.exit_code)


def _value(opt: Opt, text: str):
    """The value of an option as click converts it, or None when click would refuse it."""
    if opt.kind == "text":
        return text
    if opt.kind == "count":
        return int(text) if text.isdigit() and text.isascii() and int(text) >= 1 else None
    if opt.kind == "choice":
        return text if text in opt.choices else None
    if opt.kind == "folder":
        return text if text and not os.path.isfile(text) else None
    if not text or os.path.isdir(text):
        return None
    if opt.kind == "rules" and text.startswith("builtin:"):
        return text                 # a set fastanon ships: its name is checked when loaded
    if opt.kind in ("file", "rules") and not (os.path.isfile(text) and os.access(text, os.R_OK)):
        return None
    return text
