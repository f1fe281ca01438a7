"""What the run path uses of dataclasses and functools, without importing them.

A run starts within a few milliseconds of the bare interpreter only if it imports little:
`import dataclasses` alone costs more than the rest of fastanon (it loads inspect, and with it
ast, dis and tokenize), functools brings collections and reprlib. A class
decorated with @record gets what the records here use: __init__ from its annotated fields in
order (a class attribute is the default; field(factory=...) makes a fresh one per instance),
__repr__, __eq__ over the fields not marked compare=False, a `replace(**changes)` copy, and with
frozen=True no assignment after __init__ and a __hash__; slots=True gives it __slots__ (and
pickling by its fields).
"""

from __future__ import annotations

import struct
import sys

_MISSING = object()


class field:  # noqa: N801  (used like a function, as in dataclasses)
    """A field's default: factory() per instance, or default; compare=False leaves it out of
    __eq__ and __hash__."""

    __slots__ = ("default", "factory", "compare")

    def __init__(self, default=_MISSING, *, factory=None, compare: bool = True):
        self.default, self.factory, self.compare = default, factory, compare


def record(cls=None, *, frozen: bool = False, slots: bool = False):
    if cls is None:
        return lambda c: _make(c, frozen, slots)
    return _make(cls, frozen, slots)


def _make(cls, frozen: bool, slots: bool):
    """The record class of cls (its own annotated fields; records are not subclassed)."""
    names = list(cls.__dict__.get("__annotations__", {}))
    specs = {}
    for name in names:
        value = cls.__dict__.get(name, _MISSING)
        specs[name] = value if isinstance(value, field) else field(value)
    namespace = {k: v for k, v in cls.__dict__.items()
                 if k not in names and k not in ("__dict__", "__weakref__")}
    if slots:
        namespace["__slots__"] = tuple(names)
    else:
        for name in names:                  # plain defaults stay readable on the class
            if specs[name].default is not _MISSING:
                namespace[name] = specs[name].default
    namespace["__record_fields__"] = specs
    compared = tuple(n for n in names if specs[n].compare)
    mine = "(" + "".join(f"self.{n}, " for n in compared) + ")"
    theirs = "(" + "".join(f"other.{n}, " for n in compared) + ")"
    # The methods as source text, compiled at once: as fast as hand-written ones.
    source, env = _init(cls.__name__, names, specs, frozen)
    source += (f"def __eq__(self, other):\n    if other.__class__ is not self.__class__:\n"
               f"        return NotImplemented\n    return {mine} == {theirs}\n")
    if frozen:
        source += f"def __hash__(self):\n    return hash({mine})\n"
    exec(_compiled(source, cls.__name__), env)   # noqa: S102  (our own field names only)
    namespace["__init__"], namespace["__eq__"] = env["__init__"], env["__eq__"]
    namespace["__hash__"] = env["__hash__"] if frozen else None
    namespace["__repr__"] = lambda self: (
        f"{type(self).__name__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in names) + ")")
    namespace["replace"] = _replace
    if slots:                   # pickled as its fields (a frozen one refuses setattr)
        namespace["__reduce__"] = lambda self: (type(self), tuple(getattr(self, n) for n in names))
    if frozen:
        namespace["__setattr__"] = _frozen
        namespace["__delattr__"] = _frozen
    return type(cls)(cls.__name__, cls.__bases__, namespace)


_CODE = type(_make.__code__)
_COMPILED: dict | None = None       # {source: code object}, as kept in the cache
_ENTRY = "records " + sys.version


def _compiled(source: str, owner: str):
    """The code of a record's methods: compiled once, then kept in fastanon's cache
    (_cache.py), so that a start loads it instead of compiling it again (compile() takes some
    0.3 ms a record, a third of what the run path's imports cost)."""
    global _COMPILED
    from . import _cache

    if _COMPILED is None:
        found = _cache.load(_ENTRY)
        _COMPILED = found if type(found) is dict else {}
    code = _COMPILED.get(source)
    if type(code) is not _CODE:
        code = _COMPILED[source] = compile(source, f"<record {owner}>", "exec")
        _cache.store(_ENTRY, (), _COMPILED)
    return code


def _init(owner: str, names: list[str], specs: dict, frozen: bool) -> tuple[str, dict]:
    """The source of __init__ and the names it needs."""
    args, body, env = [], [], {"_MISSING": _MISSING, "_set": object.__setattr__}
    for name in names:
        spec = specs[name]
        if spec.factory is not None:
            env[f"_f_{name}"] = spec.factory
            args.append(f"{name}=_MISSING")
            value = f"_f_{name}() if {name} is _MISSING else {name}"
        elif spec.default is not _MISSING:
            env[f"_d_{name}"] = spec.default
            args.append(f"{name}=_d_{name}")
            value = name
        else:
            if any("=" in a for a in args):
                raise TypeError(f"{owner}: field {name!r} without a default follows one with it")
            args.append(name)
            value = name
        body.append(f"    _set(self, {name!r}, {value})" if frozen else f"    self.{name} = {value}")
    source = (f"def __init__(self, {', '.join(args)}):\n" if args else "def __init__(self):\n") \
        + ("\n".join(body) or "    pass") + "\n"
    return source, env


def _replace(self, **changes):
    """A copy with some fields changed."""
    values = {n: getattr(self, n) for n in self.__record_fields__}
    unknown = set(changes) - set(values)
    if unknown:
        raise TypeError(f"{type(self).__name__} has no field {', '.join(sorted(unknown))}")
    values.update(changes)
    return type(self)(**values)


def _frozen(self, name, value=None):
    raise AttributeError(f"{type(self).__name__} is frozen: cannot change {name!r}")


def memo(func=None, *, maxsize: int | None = None):
    """func's results by its (hashable) arguments, kept for the process (functools.lru_cache);
    with maxsize, forgotten all at once when there are more (inputs choose the arguments)."""
    if func is None:
        return lambda f: memo(f, maxsize=maxsize)
    results: dict = {}

    if func.__code__.co_argcount == 1 and not func.__code__.co_flags & 0x0C:
        def cached(arg):                # one argument: keyed by itself (a hot path's lookup)
            try:
                return results[arg]
            except KeyError:
                if maxsize is not None and len(results) >= maxsize:
                    results.clear()
                value = results[arg] = func(arg)
                return value
    else:
        def cached(*args):
            try:
                return results[args]
            except KeyError:
                if maxsize is not None and len(results) >= maxsize:
                    results.clear()
                value = results[args] = func(*args)
                return value

    cached.__name__, cached.__doc__, cached.__wrapped__ = func.__name__, func.__doc__, func
    cached.cache_clear = results.clear
    return cached


class Pattern:
    """A regular expression compiled on first use: `import re` (and the enum module it loads)
    is paid by the runs that match something, not by every start."""

    __slots__ = ("_source", "_flags", "_compiled")

    def __init__(self, source, flags: int = 0):
        self._source, self._flags, self._compiled = source, flags, None

    def __getattr__(self, name: str):
        if self._compiled is None:
            import re

            self._compiled = re.compile(self._source, self._flags)
        return getattr(self._compiled, name)


def packed(code: str, values) -> memoryview:
    """values as a read-only buffer of C numbers of struct/array code ("B", "I", "q"...), what
    array.array(code, values) gives the kernel (array loads collections.abc)."""
    values = list(values)
    return memoryview(struct.pack(f"={len(values)}{code}", *values)).cast(code)
