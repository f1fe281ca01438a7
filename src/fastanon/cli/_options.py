"""Options shared by the commands (policy and key), turned into plain values once, at the edge."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..errors import FastanonError

KEY_ENV = "FASTANON_KEY"


def policy_options(func):
    """--preset NAME and --policy FILE.toml."""
    func = click.option(
        "--policy", "policy_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="A policy file (TOML), usually `extends = \"research\"` plus changes; "
             "replaces --preset.")(func)
    func = click.option(
        "--preset", metavar="NAME",
        help="Preset policy: research (the default: PS3.15 Annex E basic profile, full "
             "de-identification) or internal (hides identity and contact only); "
             "see `fastanon presets`.")(func)
    return func


def key_options(func):
    """--key TEXT and --key-file PATH (else the FASTANON_KEY environment variable)."""
    func = click.option(
        "--key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Read the secret from a file (surrounding white space ignored).")(func)
    func = click.option(
        "--key", metavar="TEXT",
        help=f"Secret that keys new UIDs, date shifts and pseudonyms: the same key gives the same "
             f"values in every run. Also ${KEY_ENV}. Without one, a random key for this run.")(func)
    return func


def load_policy(preset: str | None, policy_file: Path | None):
    """(Policy, its name) from --preset / --policy; a bad value is a usage error."""
    from ..policy import Policy

    if preset and policy_file:
        raise click.UsageError("give --preset or --policy, not both (a policy file names the "
                               "preset it starts from with extends = \"...\")")
    try:
        if policy_file:
            policy = Policy.from_file(policy_file)
            return policy, policy.name
        name = preset or "research"
        return Policy.preset(name), name
    except FastanonError as exc:
        raise click.BadParameter(str(exc), param_hint="--policy" if policy_file else "--preset")


def load_key(key: str | None, key_file: Path | None) -> bytes:
    """The secret from --key, --key-file or $FASTANON_KEY; b"" when none is given."""
    if key is not None and key_file:
        raise click.UsageError("give --key or --key-file, not both")
    if key_file:
        try:
            secret = key_file.read_bytes().strip()
        except OSError as exc:
            raise click.BadParameter(f"{key_file}: {exc.strerror}", param_hint="--key-file")
        if not secret:
            raise click.BadParameter(f"{key_file} is empty", param_hint="--key-file")
        return secret
    if key is not None:
        if not key:
            raise click.BadParameter("an empty key protects nothing", param_hint="--key")
        return key.encode("utf-8")
    return os.environ.get(KEY_ENV, "").encode("utf-8")
