"""The click group of the commands."""

from __future__ import annotations

import click

from .. import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="fastanon")
def main() -> None:
    """fastanon: anonymize DICOM files at the speed of copying their bytes.

    \b
    Examples:
      fastanon run --key-file site.key incoming/ anonymized/
      fastanon inspect scan.dcm
      fastanon check incoming/ anonymized/
      fastanon presets research
    """


from .check import check  # noqa: E402
from .inspect import inspect  # noqa: E402
from .listen import listen  # noqa: E402
from .presets import presets  # noqa: E402
from .run import run  # noqa: E402
from .serve import serve  # noqa: E402

main.add_command(run)
main.add_command(inspect)
main.add_command(presets)
main.add_command(serve)
main.add_command(listen)
main.add_command(check)
