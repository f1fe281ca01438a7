"""_lean's records, memo and lazy patterns behave as the dataclasses, lru_cache and re.compile
they replace on the run path."""

from __future__ import annotations

import pytest

import re

from fastanon._lean import Pattern, field, memo, record


@record(frozen=True, slots=True)
class Point:
    x: int
    y: int = 0
    tags: tuple = field((), compare=False)


@record
class Bag:
    name: str
    items: list = field(factory=list)


def test_a_record_has_init_defaults_eq_hash_and_replace():
    p = Point(1)
    assert (p.x, p.y, p.tags) == (1, 0, ())
    assert p == Point(1, 0, ("other",)) and p != Point(2) and hash(p) == hash(Point(1, 0, ("x",)))
    assert p.replace(y=5) == Point(1, 5) and p.replace(y=5) is not p
    assert repr(p) == "Point(x=1, y=0, tags=())"
    assert not hasattr(p, "__dict__")
    with pytest.raises(AttributeError):
        p.x = 3
    with pytest.raises(TypeError):
        p.replace(z=1)
    with pytest.raises(TypeError):
        Point()


def test_a_mutable_record_gets_a_fresh_default_each_time():
    a, b = Bag("a"), Bag("b")
    a.items.append(1)
    assert b.items == [] and a.items == [1]
    a.name = "c"
    assert a == Bag("c", [1]) and a != Point(1)
    with pytest.raises(TypeError):
        hash(a)


def test_a_field_without_default_may_not_follow_one_with_it():
    with pytest.raises(TypeError, match="without a default"):
        @record
        class Wrong:
            a: int = 1
            b: int


def test_memo_caches_and_forgets_past_its_size():
    calls = []

    @memo(maxsize=2)
    def square(n):
        calls.append(n)
        return n * n

    assert [square(2), square(2), square(3)] == [4, 4, 9] and calls == [2, 3]
    square(4)                   # a third: the cache starts again
    square(2)
    assert calls == [2, 3, 4, 2]


def test_a_pattern_compiles_on_first_use():
    pattern = Pattern(r"ab+c", re.IGNORECASE)
    assert pattern._compiled is None
    assert pattern.fullmatch("ABBC") and not pattern.search("ac")
    assert pattern._compiled is not None


def test_records_survive_pickling_as_workers_send_them():
    """A spawned worker gets the Job (with its Limits and the policy's Actions) pickled, and
    sends Outcomes back: frozen and slotted records included."""
    import pickle

    from fastanon.batch import Job, Outcome
    from fastanon.plan import Action
    from fastanon.policy import Policy
    from fastanon.scan import Limits

    job = Job(policy=Policy.preset("research"), key=b"k", limits=Limits(5, 6))
    for value in (Point(1, 2, ("t",)), Action("replace", "X"), Limits(1, 2), job,
                  Outcome("a", "b", "written", actions={"remove": 2})):
        again = pickle.loads(pickle.dumps(value))
        assert again == value and type(again) is type(value)
    assert pickle.loads(pickle.dumps(job)).policy.tags == job.policy.tags


def test_a_records_code_is_compiled_once_and_then_loaded_from_the_cache(tmp_path):
    """A start loads the compiled methods of the run path's records from fastanon's cache: the
    second process compiles none of them, and its records work the same."""
    import os
    import subprocess
    import sys

    code = ("import builtins\ncompiled = []\noriginal = builtins.compile\n"
            "def counting(source, filename, *args, **kwargs):\n"
            "    if str(filename).startswith('<record '):\n        compiled.append(filename)\n"
            "    return original(source, filename, *args, **kwargs)\n"
            "builtins.compile = counting\n"
            "import fastanon.batch\nfrom fastanon.batch import Job, Summary\n"
            "job = Job(policy=None, key=b'k')\nassert job.replace(key=b'j').key == b'j'\n"
            "assert Summary() == Summary() and Summary().written == 0\n"
            "print(len(compiled))\n")
    env = {**os.environ, "FASTANON_CACHE": str(tmp_path / "cache")}
    counts = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        counts.append(int(done.stdout))
    assert counts[0] >= 5 and counts[1] == 0, counts
    stored = list((tmp_path / "cache").iterdir())
    assert stored and all(oct(p.stat().st_mode & 0o777) == "0o600" for p in stored)
