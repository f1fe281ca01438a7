"""The command line: a click group (`main`); one module per command (run, inspect, presets,
serve). `entry` is what the `fastanon` command and `python -m fastanon` call: `run` starts
without click when its arguments are well formed (_run.fast); everything else goes to click.
"""

from __future__ import annotations

import sys


def entry() -> None:
    if sys.argv[1:2] == ["run"]:
        from ._run import fast

        fast(sys.argv[2:])      # returns only when click should parse the arguments
    from ._group import main

    main()


def __getattr__(name: str):
    if name == "main":          # the click group, loaded when asked for (click's test runner)
        from ._group import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
