"""`fastanon check SRC DST` without click: its options as data and its body (check.py makes
the click command of them). `fast(argv)`, what the `fastanon` command calls for `check`, parses
argv with the same options and runs the body directly, as `run` does (_run.py)."""

from __future__ import annotations

from ._args import POLICY_OPTIONS, Opt, fast as _fast
from ._options import load_policy, usage

ARGUMENTS = (("src", "exists"), ("dst", "exists"))

OPTIONS = (
    Opt(("--mapping",), "mapping", "file",
        "Pair inputs and outputs from the run's --mapping file (its source and destination "
        "columns), for runs with --rename; else by relative path.", metavar="FILE.csv"),
    Opt(("--json",), "json_file", "path",
        "Write one object per pair: input, output, findings (as the check goes).",
        metavar="FILE"),
    Opt(("--html",), "html_file", "path",
        "Write a page to read and keep: what was checked, the findings by kind and by file.",
        metavar="FILE"),
    Opt(("--detect-text",), "detect_text", "flag",
        "Also look for text still shown in each output's pixels (an offline detector: pip "
        "install 'fastanon[ocr]'; about 0.4 s a frame looked at)."),
    Opt(("--workers",), "workers", "count",
        "Pairs checked in parallel [default: the CPU count].", metavar="N"),
    Opt(("-q", "--quiet"), "quiet", "flag",
        "No progress line and no findings on stderr: only the summary line."),
) + POLICY_OPTIONS


def fast(argv: list[str]) -> None:
    """Run `fastanon check ARGV` without click when argv is well formed; returns (having done
    nothing) when click should take it."""
    _fast(argv, OPTIONS, ARGUMENTS, check)


def check(src: str, dst: str, mapping: str | None, json_file: str | None,
          html_file: str | None, detect_text: bool, workers: int | None, quiet: bool,
          preset: str | None, policy_file: str | None) -> None:
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
      fastanon check --preset internal --json report.json --html report.html study/ anon/
      fastanon check --mapping map.csv export/ renamed/
    """
    import os
    import sys

    from ..batch import Outcome, pairs
    from ..check import Checker, check_files
    from ..errors import FastanonError
    from ._run import Progress, say

    policy, name = load_policy(preset, policy_file)
    if detect_text:
        from ..text import NoDetector, require

        try:
            require()
        except NoDetector as exc:
            raise usage(str(exc)) from None
    checker = Checker(policy, detect_text=detect_text)
    if mapping:
        found = _from_mapping(mapping)
    else:
        found = ((a, b) for a, b, _ in pairs(src, dst) if a)
    progress = None if quiet else Progress(src, show=sys.stderr.isatty(), warn=False)
    reports = []
    try:
        if json_file:
            from ..reports import JsonReport

            reports.append(JsonReport(json_file))
        if html_file:
            from ..reports import HtmlReport

            reports.append(HtmlReport(html_file, {
                "inputs": os.path.abspath(src), "outputs": os.path.abspath(dst),
                "pairs by": f"the mapping {mapping}" if mapping else "relative path",
                "policy": name, "text in the pixels": "looked for" if detect_text
                else "not looked for (--detect-text)"}))
        counts = {"checked": 0, "flagged": 0, "no-output": 0, "unreadable": 0, "skipped": 0}
        kinds: dict[str, int] = {}
        for done in check_files(found, checker, workers or os.cpu_count() or 1):
            counts[done.status] += 1
            findings = [str(f) for f in done.report.findings] if done.report else []
            if progress is not None:        # findings and errors as they come, the line
                progress(Outcome(done.input, done.output,
                                 "failed" if done.status == "unreadable" else "written",
                                 done.reason, done.size, findings=tuple(findings)))
            if done.report is None:
                continue
            counts["flagged"] += bool(findings)
            for finding in done.report.findings:
                kinds[finding.kind] = kinds.get(finding.kind, 0) + 1
            for report in reports:
                report.add(done.report)
        for report in reports:
            report.close(counts)
    except FastanonError as exc:
        for report in reports:
            report.discard()
        raise _failure(str(exc)) from None
    except BaseException:
        for report in reports:
            report.discard()
        raise
    finally:
        if progress is not None:
            progress.finish()
    said = ", ".join(f"{count:,} {kind}" for kind, count in sorted(kinds.items()))
    missing = counts["no-output"] + counts["unreadable"]
    say(f"fastanon check: {counts['checked']:,} pair(s), {counts['flagged']:,} with findings"
        + (f" ({said})" if said else "")
        + (f"; {missing:,} input(s) without an output" if missing else ""))
    sys.exit(1 if kinds else 0)


def _failure(message: str) -> Exception:
    import click

    return click.ClickException(message)


def _from_mapping(path: str):
    """(source, destination) of each row of a run's mapping file, read as the check goes; its
    header is read first (a file without those columns is a usage error before anything)."""
    import csv

    try:
        handle = open(path, newline="", encoding="utf-8")
        rows = csv.DictReader(handle)
        columns = rows.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise usage(f"{path}: {exc}", "--mapping") from None
    if not {"source", "destination"} <= set(columns):
        handle.close()
        raise usage(f"{path}: no source and destination columns", "--mapping")

    def pairs():
        with handle:
            try:
                for row in rows:
                    yield row["source"], row["destination"]
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                raise _failure(f"{path}: {exc}") from None
    return pairs()
