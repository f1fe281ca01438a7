"""`fastanon run SRC DST`: anonymize a file or a whole tree, with progress and a summary.

The click command, made from the options and body in _run.py (which `fastanon run` uses
without click when its arguments are well formed).
"""

from __future__ import annotations

import click

from . import _run
from ..stores import is_url, local
from ._options import with_options
from ._run import EXIT_INTERRUPTED, Progress  # noqa: F401  (the command's vocabulary)

class _Source(click.ParamType):
    """An existing file or folder, or an object store's URL (s3://bucket/prefix, ...)."""

    name = "path"

    def convert(self, value, param, ctx):
        if is_url(value):
            return value
        return click.Path(exists=True).convert(local(value), param, ctx)


run = click.command(context_settings={"help_option_names": ["-h", "--help"]})(
    click.argument("src", type=_Source())(
        click.argument("dst", type=click.Path())(with_options(_run.OPTIONS)(_run.run))))
