"""Policies built from files, kept on disk so that the next run loads them instead of building.

A preset or a policy file takes a few milliseconds to read and build (TOML, Table E.1-1, the
categories' word patterns); a run pays that at every start. Built once, a policy is written
here as plain data (marshal) with the size and modification time of every file it came from
and of fastanon's own modules and presets; an entry whose files all still match is loaded, any
other one is built again and replaced. Nothing here is needed for a result: a cache that cannot
be read or written is ignored, and so is an entry another user owns or others may write (it
decides what leaves the house).

The compiled methods of the record classes (_lean.record) are kept here the same way.

The folder: $FASTANON_CACHE, else $XDG_CACHE_HOME/fastanon, else ~/.cache/fastanon.
"""

from __future__ import annotations

import marshal
import os
import zlib

FORMAT = 1
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def folder() -> str:
    found = os.environ.get("FASTANON_CACHE")
    if found:
        return found
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastanon")


def _stamp(path: str) -> tuple[str, int, int]:
    info = os.stat(path)
    return path, info.st_size, info.st_mtime_ns


_OWN: list | None = None


def _own() -> list[tuple[str, int, int]]:
    """What fastanon itself builds policies from: its modules and presets (looked at once a
    process: a change to fastanon is seen by the next start)."""
    global _OWN
    if _OWN is not None:
        return _OWN
    out = []
    for where in (_PACKAGE, os.path.join(_PACKAGE, "presets")):
        with os.scandir(where) as entries:
            out.extend(_stamp(entry.path) for entry in entries
                       if entry.name.endswith((".py", ".toml", ".so", ".pyd")))
    _OWN = sorted(out)
    return _OWN


def _entry(name: str) -> str:
    return os.path.join(folder(), f"policy-{zlib.crc32(name.encode('utf-8', 'replace')):08x}")


def load(name: str):
    """The data stored under name, or None when absent or any of its sources changed."""
    try:
        with open(_entry(name), "rb") as handle:
            info = os.fstat(handle.fileno())
            if info.st_uid != os.getuid() or info.st_mode & 0o022:
                return None         # a policy others could have written is not trusted
            stored = marshal.loads(handle.read())
        if (type(stored) is not dict or stored.get("format") != FORMAT
                or stored.get("name") != name or stored.get("own") != _own()):
            return None
        for path, size, mtime in stored["sources"]:
            if _stamp(path) != (path, size, mtime):
                return None
        return stored["data"]
    except (OSError, ValueError, EOFError, TypeError, KeyError):
        return None


def store(name: str, sources, data) -> None:
    """Keep data (marshal's types only) under name, with the files it was built from."""
    try:
        entry = _entry(name)
        os.makedirs(os.path.dirname(entry), mode=0o700, exist_ok=True)
        blob = marshal.dumps({"format": FORMAT, "name": name, "own": _own(),
                              "sources": sorted(_stamp(os.path.abspath(p)) for p in sources),
                              "data": data})
        temp = f"{entry}.{os.getpid()}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(blob)
        os.replace(temp, entry)
    except (OSError, ValueError):
        pass
