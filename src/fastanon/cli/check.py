"""`fastanon check SRC DST`: what of the inputs can still be found in the outputs (check.py).

The click command, made from the options and body in _check.py (which `fastanon check` uses
without click when its arguments are well formed).
"""

from __future__ import annotations

import click

from . import _check
from ._options import with_options

check = click.command(context_settings={"help_option_names": ["-h", "--help"]})(
    click.argument("src", type=click.Path(exists=True))(
        click.argument("dst", type=click.Path(exists=True))(
            with_options(_check.OPTIONS)(_check.check))))
