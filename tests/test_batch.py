"""batch: the walk, the bounded feed of the worker pool, path checks, stopping, odd inputs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pydicom
import pytest

from fastanon import batch
from fastanon.batch import Interrupted, Job, check_paths, pairs, run
from fastanon.errors import FastanonError
from fastanon.pipeline import TEMP_SUFFIX
from children import children
from test_cli import KEY, write_file, write_tree


@pytest.fixture(scope="module")
def wide_tree(tmp_path_factory) -> Path:
    """600 hard links of 4 small files in 6 folders."""
    base = tmp_path_factory.mktemp("wide")
    for i in range(4):
        write_file(base / f"{i}.dcm", i)
    src = base / "src"
    for n in range(600):
        target = src / f"f{n // 100}" / f"{n:04d}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(base / f"{n % 4}.dcm", target)
    return src


def test_pairs_streams_sorted_mirror_paths(tmp_path):
    src = tmp_path / "src"
    for rel in ("b/2.dcm", "b/1.dcm", "a/z/9.dcm", "top.dcm", f"a/.x.dcm.1-1{TEMP_SUFFIX}"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"x")
    got = list(pairs(src, tmp_path / "dst"))
    assert [rel for _, _, rel in got] == ["top.dcm", "a/z/9.dcm", "b/1.dcm", "b/2.dcm"]
    assert all(dst == str(tmp_path / "dst" / rel) and s == str(src / rel) for s, dst, rel in got)
    one = src / "top.dcm"
    assert list(pairs(one, tmp_path / "o.dcm")) == [(str(one), str(tmp_path / "o.dcm"), "top.dcm")]


def test_check_paths(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for dst in (src, src / "sub", src / "new" / "deeper"):
        with pytest.raises(FastanonError, match="source"):
            check_paths(src, dst)
    check_paths(src, tmp_path / "out")                  # beside it: fine
    check_paths(src / "sub", tmp_path)                  # the source inside the destination: fine
    with pytest.raises(FastanonError, match="inside the source"):
        check_paths(src, tmp_path / "out", None, src / "audit.csv")
    with pytest.raises(FastanonError, match="no such file"):
        check_paths(tmp_path / "missing", tmp_path / "out")


@pytest.fixture()
def pool_at_once(monkeypatch):
    """Workers from the first file (a run otherwise works alone for SERIAL_SECONDS first)."""
    monkeypatch.setattr(batch, "SERIAL_SECONDS", 0)


@pytest.fixture(params=["forked", "spawned"])
def workers_kind(request, monkeypatch):
    """Both kinds of workers: forked (Linux) and multiprocessing's spawned pool (elsewhere)."""
    if request.param == "spawned":
        monkeypatch.setattr(batch, "FORKED", False)
    elif not batch.FORKED:
        pytest.skip("forked workers are fastanon's on Linux only")
    return request.param


def test_pool_is_fed_through_a_window(wide_tree, tmp_path, monkeypatch, pool_at_once,
                                      workers_kind):
    pulled = []
    real = batch.pairs

    def counted(src, dst):
        for item in real(src, dst):
            pulled.append(item)
            yield item

    monkeypatch.setattr(batch, "pairs", counted)
    seen_at_first = []

    def on_outcome(outcome):
        if not seen_at_first:
            time.sleep(0.3)              # time for an unbounded feeder to drain the whole walk
            seen_at_first.append(len(pulled))

    summary = run(wide_tree, tmp_path / "out", Job(key=KEY.encode(), workers=2), on_outcome)
    assert summary.written == 600 and len(pulled) == 600
    if workers_kind == "spawned":
        window = max(64, 2 * batch.CHUNK * 8) + batch.CHUNK
    else:
        window = 2 * batch.WINDOW * batch.FORKED_CHUNK
    assert seen_at_first[0] <= window + 2 * 2


@pytest.mark.parametrize("serial", [0, 0.05])
def test_outcomes_keep_the_walk_order(wide_tree, tmp_path, monkeypatch, serial, workers_kind):
    """With workers from the start, and after a head of files done in the parent."""
    monkeypatch.setattr(batch, "SERIAL_SECONDS", serial)
    order = []
    run(wide_tree, tmp_path / "out", Job(key=KEY.encode(), workers=2), order.append)
    assert [o.src for o in order] == [s for s, _, _ in pairs(wide_tree, tmp_path / "out")]
    assert all(o.status == "written" for o in order)


@pytest.mark.parametrize("workers", [1, 2])
def test_interrupt_stops_workers_and_sweeps_temporary_files(wide_tree, tmp_path, workers,
                                                            pool_at_once, workers_kind):
    dst = tmp_path / "out"
    count = []

    def on_outcome(outcome):
        count.append(outcome)
        if len(count) == 30:
            raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(Interrupted) as caught:
        run(wide_tree, dst, Job(key=KEY.encode(), workers=workers), on_outcome)
    assert time.monotonic() - started < 30
    assert caught.value.summary.written == 30
    assert children() == []
    files = [p for p in dst.rglob("*") if p.is_file()]
    assert files and not [p for p in files if p.name.endswith(TEMP_SUFFIX)]
    for path in files:
        pydicom.dcmread(path)


def test_an_error_in_the_caller_stops_the_pool(wide_tree, tmp_path, pool_at_once, workers_kind):
    def on_outcome(outcome):
        raise RuntimeError("caller's bug")

    with pytest.raises(RuntimeError, match="caller's bug"):
        run(wide_tree, tmp_path / "out", Job(key=KEY.encode(), workers=2), on_outcome)
    assert children() == []


def test_odd_inputs_are_skipped_or_named(tmp_path):
    src = tmp_path / "src"
    write_tree(src, count=3)
    os.mkfifo(src / "a-fifo")                       # reading it would block: skipped
    (src / "empty.dcm").write_bytes(b"")
    (src / "cut.dcm").write_bytes(bytes(128) + b"DICM" + b"\x02\x00\x10\x00UI\x40\x001.2")
    outcomes = []
    summary = run(src, tmp_path / "out", Job(key=KEY.encode(), workers=1), outcomes.append)
    by_name = {Path(o.src).name: o for o in outcomes}
    assert by_name["a-fifo"].status == "skipped" and by_name["empty.dcm"].status == "skipped"
    assert by_name["cut.dcm"].status == "failed" and by_name["broken.dcm"].status == "failed"
    assert summary.written == 3 and summary.failed == 2


def test_unreadable_folder_is_named(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_tree(src, count=2)
    real_walk = os.walk

    def walk(top, onerror=None, **options):     # as os.walk reports a folder it cannot list
        onerror(PermissionError(13, "Permission denied", os.path.join(top, "locked")))
        yield from real_walk(top, onerror=onerror, **options)

    monkeypatch.setattr(batch.os, "walk", walk)
    summary = run(src, tmp_path / "out", Job(key=KEY.encode()))
    assert summary.written == 2 and summary.failed == 2
    assert summary.failures[0].reason == f"{src / 'locked'}: folder cannot be listed (Permission denied)"


def test_unexpected_errors_become_failures(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_tree(src, count=2)

    def broken(*args, **kwargs):
        raise TypeError("a bug")

    monkeypatch.setattr(batch, "parse", broken)
    summary = run(src, tmp_path / "out", Job(key=KEY.encode()))
    assert summary.failed == 3 and "unexpected error: TypeError: a bug" in summary.failures[0].reason


def test_random_key_is_one_per_run(tmp_path):
    src = tmp_path / "src"
    write_tree(src, count=4)
    run(src, tmp_path / "out", Job(workers=2))
    uids = {pydicom.dcmread(p).StudyInstanceUID for p in (tmp_path / "out").rglob("*.dcm")}
    assert len(uids) == 1 and not uids.pop().startswith("1.2.826")


def test_a_worker_that_dies_stops_the_run_instead_of_hanging(wide_tree, tmp_path, monkeypatch):
    """A worker killed mid-file (as SIGBUS does when a mapped input shrinks) never answers for
    its chunk; the run notices at once (its pipe closes), stops, and leaves no temp file and no
    process."""
    real = batch.process

    def dying(item):
        if item[2].endswith("0301.dcm"):
            os.kill(os.getpid(), 9)
        return real(item)

    monkeypatch.setattr(batch, "process", dying)        # forked workers inherit the patch
    monkeypatch.setattr(batch, "WATCH_SECONDS", 0.2)
    monkeypatch.setattr(batch, "SERIAL_SECONDS", 0)      # the parent must not take that file
    dst = tmp_path / "out"
    started = time.monotonic()
    with pytest.raises(batch.WorkerLost, match="worker process died"):
        run(wide_tree, dst, Job(policy="research", key=KEY, workers=2))
    assert time.monotonic() - started < 60
    assert children() == []
    assert not [p for p in dst.rglob("*") if p.name.endswith(TEMP_SUFFIX)]
    for out in dst.rglob("*.dcm"):                       # what was written is complete
        pydicom.dcmread(out)
