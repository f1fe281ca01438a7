"""Faults around a run: temporary files of dead runs, an audit that cannot be written, inputs
that change while they are read, symbolic links between folders."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys

import pytest

import fastanon
from conftest import read_bytes
from fastanon import batch, pipeline
from fastanon.batch import Job, run
from fastanon.errors import FastanonError
from fastanon.pipeline import TEMP_SUFFIX, open_source, prepare, plan_of, write
from fastanon.scan import parse
from test_cli import KEY, write_file, write_tree


def _temps(folder) -> list[str]:
    return sorted(str(p) for p in folder.rglob(f"*{TEMP_SUFFIX}"))


def test_a_killed_run_leaves_a_temporary_file_the_next_run_removes(tmp_path):
    """SIGKILL stops a writer mid-file; the next run writing into that folder removes what it
    left, and leaves a live process's temporary file alone."""
    out = tmp_path / "out" / "series0"
    code = ("import sys, time; from pathlib import Path; from fastanon import pipeline\n"
            f"fd, tmp = pipeline._open_temp(Path({str(out / 'IM0000.dcm')!r}))\n"
            "print(tmp, flush=True); time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    left = child.stdout.readline().strip()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert os.path.exists(left)
    live = subprocess.Popen([sys.executable, "-c", code.replace("IM0000", "IM9999")],
                            stdout=subprocess.PIPE, text=True)
    try:
        alive = live.stdout.readline().strip()
        src = tmp_path / "src"
        for i in range(3):
            write_file(src / "series0" / f"IM000{i}.dcm", i)
        summary = run(src, tmp_path / "out", Job(key=KEY.encode()))
        assert summary.written == 3
        assert not os.path.exists(left) and os.path.exists(alive)
    finally:
        live.kill()
        live.wait()
    assert (out / "IM0000.dcm").is_file()


def test_the_audit_is_written_row_by_row(tmp_path):
    src = tmp_path / "src"
    write_tree(src, count=6)
    audit = tmp_path / "audit.csv"
    seen = []

    def on_outcome(outcome):      # what a reader of the audit sees while the run goes on
        seen.append(audit.read_text().count("\n"))

    run(src, tmp_path / "out", Job(key=KEY.encode()), on_outcome, audit=audit)
    assert seen == list(range(2, 2 + len(seen)))       # the header, then one more row each


def test_an_audit_that_cannot_be_written_names_its_path(tmp_path, monkeypatch):
    """A full disk under the audit: the run stops, the error names the audit, and no temporary
    output is left behind."""
    src = tmp_path / "src"
    write_tree(src, count=6)
    audit = tmp_path / "audit.csv"
    real = batch._Csv.writerow
    rows = []

    def full(self, row):
        rows.append(row)
        if len(rows) > 3 and self.path == audit:
            self.handle.write("x" * 10)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, row)

    monkeypatch.setattr(batch._Csv, "writerow", lambda self, row: _named(self, full, row))
    with pytest.raises(OSError) as caught:
        run(src, tmp_path / "out", Job(key=KEY.encode()), audit=audit)
    assert caught.value.filename == str(audit) and caught.value.errno == errno.ENOSPC
    assert _temps(tmp_path / "out") == []


def _named(self, inner, row):
    try:
        return inner(self, row)
    except OSError as exc:
        if exc.filename:
            raise
        raise OSError(exc.errno, exc.strerror, str(self.path)) from None


def test_the_csv_names_its_path_on_a_write_error(tmp_path):
    csv_file = batch._Csv(tmp_path / "audit.csv", ["a"], private=False)
    csv_file.__enter__()
    csv_file.handle.close()
    csv_file.handle = open(os.devnull, "r")     # writing fails, as on a full disk
    csv_file.writer = __import__("csv").writer(csv_file.handle)
    with pytest.raises(OSError) as caught:
        csv_file.writerow(["x" * 100000])
    assert caught.value.filename == str(tmp_path / "audit.csv")


def test_an_input_cut_short_while_it_is_read_says_so(tmp_path):
    src = tmp_path / "in.dcm"
    raw = read_bytes("CT_small.dcm")
    src.write_bytes(raw + bytes(1 << 20))        # mapped (> 64 KiB)
    dst = tmp_path / "out.dcm"
    with open_source(src) as source:
        parsed = parse(source.contents(), str(src))
        output = prepare(parsed, plan_of("research", KEY))
        os.truncate(src, len(raw) + 4096)         # another process cuts the file
        with pytest.raises(FastanonError, match="changed while it was read"):
            write(source, output, dst)
        parsed.release()
    assert not dst.exists() and _temps(tmp_path) == []


def test_symbolic_links_to_folders_are_followed_once(tmp_path):
    src = tmp_path / "src"
    elsewhere = tmp_path / "elsewhere"
    write_file(elsewhere / "IM0001.dcm", 1)
    write_file(src / "a" / "IM0002.dcm", 2)
    (src / "linked").symlink_to(elsewhere)             # another folder: followed
    (src / "a" / "loop").symlink_to(src)               # back to the top: a loop, named
    (src / "again").symlink_to(src / "a")              # a folder walked already
    (tmp_path / "out").mkdir()
    (src / "outputs").symlink_to(tmp_path / "out")     # into the destination: never read
    summary = run(src, tmp_path / "out", Job(key=KEY.encode()))
    assert summary.written == 2
    assert (tmp_path / "out" / "linked" / "IM0001.dcm").is_file()
    assert not (tmp_path / "out" / "outputs").exists()
    items = list(batch.pairs(src, tmp_path / "out"))
    skipped = [rel for name, _, rel in items if name == batch.SKIPPED]
    assert len(skipped) == 3 and sum("symbolic link to a folder walked already" in r
                                     for r in skipped) == 2
    assert any("a symbolic link into the destination" in r for r in skipped)
    assert summary.skipped >= 3


def test_sweeping_keeps_other_hosts_and_foreign_names(tmp_path):
    names = [f".a.dcm.{pipeline._HOST}.999999999-0{TEMP_SUFFIX}",     # this host, no such pid
             f".a.dcm.00000000.999999999-0{TEMP_SUFFIX}",               # another host
             f".a.dcm.abc123{TEMP_SUFFIX}"]                             # not a fastanon name
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert pipeline.sweep_temp(str(tmp_path)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])


def test_anonymize_file_names_a_write_error(tmp_path, monkeypatch):
    src = tmp_path / "in.dcm"
    src.write_bytes(read_bytes("CT_small.dcm") + bytes(1 << 20))
    real = pipeline.rewrite.write

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pipeline.rewrite, "write", full)
    with pytest.raises(FastanonError, match=r"out\.dcm: cannot be written \(No space left"):
        fastanon.anonymize_file(src, tmp_path / "out.dcm", "research", key=KEY)
    monkeypatch.setattr(pipeline.rewrite, "write", real)
    assert _temps(tmp_path) == []
