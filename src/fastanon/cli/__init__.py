"""The command line: a click group (`main`); one module per command (run, inspect, presets,
serve). `entry` runs a command line: `run` and `check` start without click when their
arguments are well formed (_run.fast, _check.fast); everything else goes to click. `command` is
what the `fastanon` command and `python -m fastanon` call: entry, then the process ends (see
_end).
"""

from __future__ import annotations

import os
import sys


def entry() -> None:
    if sys.argv[1:2] == ["run"]:
        from ._run import fast

        fast(sys.argv[2:])      # returns only when click should parse the arguments
    if sys.argv[1:2] == ["check"]:
        from ._check import fast

        fast(sys.argv[2:])
    from ._group import main

    main()


def command() -> None:
    """The `fastanon` command: entry(), then the end of the process."""
    try:
        entry()
    except SystemExit as stop:
        _end(stop.code)
    _end(0)


def _end(code) -> None:
    """Exit with code. When nothing is left to run at exit (no atexit callback, no other
    thread), the process ends at once, its output flushed: the interpreter's teardown frees
    every object one by one, some 10-20 ms after a run, longer than the run takes on a small
    tree. Otherwise (a cluster client, a message instead of a number) it exits as usual."""
    import atexit

    threads = sys.modules.get("threading")
    if (type(code) is not int and code is not None) or atexit._ncallbacks() \
            or (threads is not None and threads.active_count() > 1):
        sys.exit(code)
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):       # a closed pipe: the interpreter says so, as usual
        sys.exit(code)
    os._exit(code or 0)


def __getattr__(name: str):
    if name == "main":          # the click group, loaded when asked for (click's test runner)
        from ._group import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
