"""workers: forked processes answer chunks in order, however large, and never outlive a run."""

from __future__ import annotations

import os
import sys
import time

import pytest
from children import children

from fastanon import workers

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="forked workers are fastanon's on Linux only")


def _square_and_who(chunk: list) -> list:
    return [(value * value, os.getpid()) for value in chunk]


def _chunks(count: int, size: int) -> list[list[int]]:
    return [list(range(n * size, (n + 1) * size)) for n in range(count)]


def test_results_come_in_chunk_order_from_several_processes():
    def slow_first(chunk):          # the first chunk answers last
        if chunk[0] == 0:
            time.sleep(0.3)
        return _square_and_who(chunk)

    done = list(workers.ordered(2, slow_first, _chunks(40, 3), window=8))
    assert [value for chunk in done for value, _ in chunk] == [n * n for n in range(120)]
    pids = {pid for chunk in done for _, pid in chunk}
    assert len(pids) == 2 and os.getpid() not in pids
    assert children() == []


def test_large_chunks_and_large_answers_do_not_wait_for_each_other():
    """Frames many times a pipe's 64 KiB both ways: the parent sends what a pipe takes and
    reads answers meanwhile, so neither side waits for the other for ever."""
    big = ["x" * 300_000, "y" * 200_000]

    def echo_twice(chunk):
        return [text * 2 for text in chunk]

    done = list(workers.ordered(2, echo_twice, [big] * 12, window=12))
    assert done == [[text * 2 for text in big]] * 12
    assert children() == []


def test_a_worker_that_dies_is_named_and_the_others_stop():
    def dies_on_seven(chunk):
        if 7 in chunk:
            os._exit(3)
        return _square_and_who(chunk)

    started = time.monotonic()
    with pytest.raises(workers.Lost, match="ended before it answered"):
        list(workers.ordered(2, dies_on_seven, _chunks(50, 2), window=4))
    assert time.monotonic() - started < 30
    assert children() == []


def test_an_exception_in_a_worker_is_a_lost_worker_not_a_hang():
    def broken(chunk):
        raise ValueError("a bug")

    with pytest.raises(workers.Lost):
        list(workers.ordered(2, broken, _chunks(4, 1), window=4))
    assert children() == []


def test_closing_early_stops_every_worker():
    def slow(chunk):
        time.sleep(0.05)
        return chunk

    results = workers.ordered(2, slow, _chunks(1000, 1), window=16)
    assert next(results) == [0]
    results.close()                 # what a caller's exception or Ctrl-C does
    assert children() == []


def test_no_chunks_no_work():
    assert list(workers.ordered(2, _square_and_who, [], window=4)) == []
    assert children() == []


def test_the_children_check_sees_a_child_and_a_zombie():
    pid = os.fork()
    if pid == 0:
        time.sleep(0.2)
        os._exit(0)
    try:
        assert pid in children()            # running
        time.sleep(0.4)
        assert pid in children()            # ended, not waited for
    finally:
        os.waitpid(pid, 0)
    assert pid not in children()
