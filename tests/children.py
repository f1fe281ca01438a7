"""The child processes of this process, from /proc (Linux): what a run must not leave behind."""

from __future__ import annotations

import os
import sys


def children() -> list[int]:
    """Pids whose parent is this process, zombies included (a child not waited for); not
    multiprocessing's resource tracker, which a spawned pool starts for the rest of the
    process's life."""
    me, found = os.getpid(), []
    tracker = None
    if "multiprocessing.resource_tracker" in sys.modules:
        tracker = getattr(sys.modules["multiprocessing.resource_tracker"]._resource_tracker,
                          "_pid", None)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue                    # ended meanwhile
        if int(fields[1]) == me and int(name) != tracker:    # state, then the parent's pid
            found.append(int(name))
    return found
