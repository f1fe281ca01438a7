"""Options shared by the commands (policy and key), turned into plain values once, at the edge.

The options are data (_args.py); this module makes click's decorators of them. load_policy and
load_key raise click's usage errors, importing click only then: `fastanon run` calls them
before click is loaded (_run.py).
"""

from __future__ import annotations

import os

from ..errors import FastanonError
from ._args import KEY_ENV, KEY_OPTIONS, POLICY_OPTIONS, Opt  # noqa: F401  (KEY_ENV re-exported)


def to_click(opt: Opt):
    """The click.option decorator of an option."""
    import click

    kinds = {"flag": None, "text": None, "count": click.IntRange(1),
             "file": click.Path(exists=True, dir_okay=False),
             "rules": _rules_type()(exists=True, dir_okay=False),
             "path": click.Path(dir_okay=False), "folder": click.Path(file_okay=False)}
    extra: dict = {"help": opt.help}
    if opt.kind == "flag":
        extra["is_flag"] = True
    elif opt.kind == "choice":
        extra.update(type=click.Choice(list(opt.choices)), default=opt.default, show_default=True)
    elif kinds[opt.kind] is not None:
        extra["type"] = kinds[opt.kind]
    if opt.metavar:
        extra["metavar"] = opt.metavar
    if opt.multiple:
        extra["multiple"] = True
    return click.option(*opt.flags, opt.dest, **extra)


def _rules_type():
    import click

    class Rules(click.Path):
        """A readable file, or builtin:NAME (a rule set fastanon ships)."""

        name = "rules"

        def convert(self, value, param, ctx):
            if isinstance(value, str) and value.startswith("builtin:"):
                return value
            return super().convert(value, param, ctx)

    return Rules


def with_options(options):
    """A decorator adding options to a command, listed in this order in its --help."""
    def apply(func):
        for opt in reversed(options):
            func = to_click(opt)(func)
        return func
    return apply


policy_options = with_options(POLICY_OPTIONS)    # --preset NAME and --policy FILE.toml
key_options = with_options(KEY_OPTIONS)          # --key TEXT and --key-file PATH


def usage(message: str, hint: str | None = None) -> Exception:
    """click's usage error (of the option hint, when given), to raise."""
    import click

    return click.BadParameter(message, param_hint=hint) if hint else click.UsageError(message)


def load_policy(preset: str | None, policy_file: str | None):
    """(Policy, its name) from --preset / --policy; a bad value is a usage error."""
    from ..policy import Policy

    if preset and policy_file:
        raise usage("give --preset or --policy, not both (a policy file names the preset it "
                    "starts from with extends = \"...\")")
    try:
        if policy_file:
            policy = Policy.from_file(policy_file)
            return policy, policy.name
        name = preset or "research"
        return Policy.preset(name), name
    except FastanonError as exc:
        raise usage(str(exc), "--policy" if policy_file else "--preset") from None


def load_key(key: str | None, key_file: str | None) -> bytes:
    """The secret from --key, --key-file or $FASTANON_KEY; b"" when none is given."""
    if key is not None and key_file:
        raise usage("give --key or --key-file, not both")
    if key_file:
        try:
            with open(key_file, "rb") as handle:
                secret = handle.read().strip()
        except OSError as exc:
            raise usage(f"{key_file}: {exc.strerror}", "--key-file") from None
        if not secret:
            raise usage(f"{key_file} is empty", "--key-file")
        return secret
    if key is not None:
        if not key:
            raise usage("an empty key protects nothing", "--key")
        return key.encode("utf-8")
    return os.environ.get(KEY_ENV, "").encode("utf-8")


def load_trial(policy, lookup: str | None, lookup_key: str | None, lookup_missing: str | None,
               sponsor: str | None, protocol: str | None, site: str | None):
    """policy with --lookup and the --trial-* values (over its file's [lookup] and [trial]);
    a table or trial that cannot be used is a usage error naming the option. Without any of
    them, policy as it is (and nothing more is imported)."""
    if not (lookup or lookup_key or lookup_missing or sponsor or protocol or site):
        return policy
    from ..elements import keyword
    from ..lookup import Lookup
    from ..policy import trial_policy

    table = policy.lookup
    try:
        if lookup:
            table = Lookup.load(lookup, lookup_key or "PatientID", lookup_missing or "refuse")
        elif table is not None and (lookup_key or lookup_missing):
            table = Lookup.load(table.path, lookup_key or keyword(table.key),
                                lookup_missing or table.missing)
        elif lookup_key or lookup_missing:
            raise usage("--lookup-key and --lookup-missing go with --lookup (or a policy "
                        "file's [lookup])")
    except FastanonError as exc:
        raise usage(str(exc), "--lookup") from None
    trial = {key: value for key, value in (("sponsor", sponsor), ("protocol_id", protocol),
                                           ("site_id", site)) if value}
    try:
        return trial_policy(policy, trial, table)
    except FastanonError as exc:
        raise usage(str(exc), "--trial-sponsor" if trial else "--lookup") from None

