"""The command line: a click group; one module per command."""

from __future__ import annotations

import click

from .. import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fastanon")
def main() -> None:
    """fastanon: anonymize DICOM files at the speed of copying their bytes.

    \b
    Example:
      fastanon run --preset research incoming/ anonymized/
    """


from .run import run  # noqa: E402

main.add_command(run)
