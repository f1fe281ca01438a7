"""`fastanon check SRC DST`: what of the inputs can still be found in the outputs (check.py)."""

from __future__ import annotations

import click

from ._args import POLICY_OPTIONS
from ._options import load_policy, with_options


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("src", type=click.Path(exists=True))
@click.argument("dst", type=click.Path(exists=True))
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False), default=None,
              metavar="FILE.csv",
              help="Pair inputs and outputs from the run's --mapping file (its source and "
                   "destination columns), for runs with --rename; else by relative path.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), default=None,
              metavar="FILE", help="Write one object per pair: input, output, findings.")
@click.option("--detect-text", is_flag=True,
              help="Also look for text still shown in each output's pixels (an offline "
                   "detector: pip install 'fastanon[ocr]'; about 0.4 s a frame looked at).")
@click.option("-q", "--quiet", is_flag=True, help="Only the summary line.")
@with_options(POLICY_OPTIONS)
def check(src: str, dst: str, mapping: str | None, json_file: str | None, detect_text: bool,
          quiet: bool, preset: str | None, policy_file: str | None) -> None:
    """Check the outputs of a run against its inputs.

    For each pair, the input's identifying values (patient identity, contact, staff,
    institution, device, instance UIDs, person names and their parts, private text; at every
    depth, file meta included; not those the policy keeps) are searched in the output's bytes
    in every encoding that could hold them. A finding names the input attribute, the output
    element holding it, and whether it survived there or is an echo in another element; no
    finding shows the value. Also checked: the output reads, its file meta agrees with its
    data set, its UIDs are valid, the old -> new UIDs map one to one across the run, and Pixel
    Data changed only where the output says its pixels were cleaned. With --detect-text, text
    the detector reads in an output's pixels (the first, middle and last frames) is a finding,
    named by its box.

    Exit status: 0 nothing found, 1 findings (each on stderr), 2 usage error.

    \b
    Examples:
      fastanon check export/ export-anon/
      fastanon check --preset internal --json report.json study/ study-anon/
      fastanon check --mapping map.csv export/ renamed/
    """
    import json
    import sys

    from ..batch import pairs
    from ..check import Checker
    from ..scan import looks_like_dicom

    policy, _ = load_policy(preset, policy_file)
    if detect_text:
        from ..text import NoDetector, require

        try:
            require()
        except NoDetector as exc:
            raise click.UsageError(str(exc)) from None
    checker = Checker(policy, detect_text=detect_text)
    if mapping:
        found = list(_from_mapping(mapping))
    else:
        found = [(a, b) for a, b, _ in pairs(src, dst) if a]
    reports, missing, findings = [], 0, 0
    kinds: dict[str, int] = {}
    for source, output in found:
        try:
            with open(source, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            click.echo(f"{source}: cannot be read ({exc.strerror})", err=True)
            missing += 1
            continue
        if not looks_like_dicom(data[:132 + 16]):
            continue
        try:
            with open(output, "rb") as handle:
                written = handle.read()
        except OSError:
            missing += 1            # not written: skipped or refused by the run
            continue
        report = checker.check(data, written, source, output)
        reports.append(report)
        for finding in report.findings:
            findings += 1
            kinds[finding.kind] = kinds.get(finding.kind, 0) + 1
            if not quiet:
                click.echo(f"{output}: {finding}", err=True)
    if json_file:
        try:
            with open(json_file, "w", encoding="utf-8") as handle:
                json.dump([r.as_dict() for r in reports], handle, indent=1)
        except OSError as exc:
            raise click.ClickException(f"{json_file}: {exc.strerror}") from None
    flagged = sum(1 for r in reports if r.findings)
    said = ", ".join(f"{count:,} {kind}" for kind, count in sorted(kinds.items()))
    click.echo(f"fastanon check: {len(reports):,} pair(s), {flagged:,} with findings"
               + (f" ({said})" if said else "")
               + (f"; {missing:,} input(s) without an output" if missing else ""), err=True)
    sys.exit(1 if findings else 0)


def _from_mapping(path: str):
    """(source, destination) of each row of a run's mapping file."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--mapping") from None
    if rows and not {"source", "destination"} <= set(rows[0]):
        raise click.BadParameter(f"{path}: no source and destination columns",
                                 param_hint="--mapping")
    for row in rows:
        yield row["source"], row["destination"]
