"""`fastanon run SRC DST`: anonymize a file or a whole tree."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..batch import Job, Outcome, run as run_batch
from ..errors import FastanonError


def _key(key: str | None, key_file: str | None) -> bytes:
    if key and key_file:
        raise click.UsageError("give --key or --key-file, not both")
    if key_file:
        return Path(key_file).read_bytes().strip()
    if key:
        return key.encode()
    return os.environ.get("FASTANON_KEY", "").encode()


class _Progress:
    """A one-line progress display on stderr when it is a terminal."""

    def __init__(self, quiet: bool):
        self.show = not quiet and sys.stderr.isatty()
        self.count = 0
        self.bytes = 0

    def __call__(self, outcome: Outcome) -> None:
        self.count += 1
        self.bytes += outcome.bytes_in
        if outcome.status == "failed":
            click.echo(f"\rfailed: {outcome.reason}", err=True)
        if self.show:
            click.echo(f"\r{self.count:,} files, {self.bytes / 1e6:,.1f} MB", err=True, nl=False)


@click.command()
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--preset", default="research", show_default=True,
              help="Preset policy: research (full de-identification) or internal.")
@click.option("--key", help="Secret for keyed UIDs, date shifts and pseudonyms (or FASTANON_KEY).")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False),
              help="Read the secret from a file.")
@click.option("--workers", type=click.IntRange(1), default=os.cpu_count() or 1, show_default=True,
              help="Files processed in parallel.")
@click.option("--overwrite", is_flag=True, help="Replace outputs that already exist.")
@click.option("--audit", type=click.Path(dir_okay=False, path_type=Path),
              help="Write one CSV row per file (source, destination, status, reason, actions).")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
def run(src: Path, dst: Path, preset: str, key: str | None, key_file: str | None, workers: int,
        overwrite: bool, audit: Path | None, quiet: bool) -> None:
    """Anonymize SRC (a DICOM file or a folder tree) into DST, which mirrors it.

    Existing outputs are skipped unless --overwrite, so a rerun completes an interrupted run.
    Exit status: 0 all written, 1 some files failed, 2 usage error.

    \b
    Example:
      fastanon run --preset internal --key-file site.key study/ study-anon/
    """
    job = Job(policy=preset, key=_key(key, key_file), overwrite=overwrite, workers=workers,
              preset_name=preset)
    progress = _Progress(quiet)
    try:
        summary = run_batch(src, dst, job, progress, audit)
    except FastanonError as exc:
        raise click.UsageError(str(exc)) from None
    if progress.show:
        click.echo("", err=True)
    if not quiet:
        rate = summary.bytes_in / 1e6 / summary.seconds if summary.seconds else 0.0
        click.echo(f"{summary.written} written, {summary.exists} already there, "
                   f"{summary.skipped} skipped (not DICOM), {summary.failed} failed "
                   f"in {summary.seconds:.2f} s ({rate:,.0f} MB/s)", err=True)
    sys.exit(1 if summary.failed else 0)
