"""Stopping `python -m fastanon run` midway (SIGINT, SIGTERM) leaves no partial output; a rerun completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest

from fastanon import anonymize_file
from fastanon.pipeline import TEMP_SUFFIX
from test_cli import KEY, write_file

DISTINCT = 20           # distinct inputs, hard-linked under many names: a long run made in no time
FOLDERS, PER_FOLDER = 30, 100


@pytest.fixture(scope="module")
def long_tree(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """3,000 input files (64x64 images) and, per distinct input, its anonymized bytes."""
    base = tmp_path_factory.mktemp("long")
    originals = base / "originals"
    expected = {}
    for i in range(DISTINCT):
        write_file(originals / f"{i}.dcm", i, rows=64)
        anonymize_file(originals / f"{i}.dcm", base / f"{i}.out", key=KEY)
        expected[f"{i}"] = (base / f"{i}.out").read_bytes()
    src = base / "src"
    for folder in range(FOLDERS):
        (src / f"d{folder:02d}").mkdir(parents=True)
        for n in range(PER_FOLDER):
            os.link(originals / f"{(folder + n) % DISTINCT}.dcm", src / f"d{folder:02d}/f{n:03d}.dcm")
    return src, expected


def expected_for(rel: Path, expected: dict) -> bytes:
    folder, name = int(rel.parent.name[1:]), int(rel.stem[1:])
    return expected[f"{(folder + name) % DISTINCT}"]


def start(src: Path, dst: Path, workers: int | str) -> subprocess.Popen:
    how = ["--dask", workers] if isinstance(workers, str) else ["--workers", str(workers)]
    return subprocess.Popen([sys.executable, "-m", "fastanon", "run", "--key", KEY, *how,
                             str(src), str(dst)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _dask_installed() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("workers, signum", [
    (2, signal.SIGINT), (1, signal.SIGINT), (2, signal.SIGTERM),
    pytest.param("local:2", signal.SIGINT, marks=pytest.mark.skipif(
        not _dask_installed(), reason="fastanon[dask] is not installed"))])
def test_stopped_run_leaves_no_partial_output_and_rerun_completes(long_tree, tmp_path, workers,
                                                                   signum):
    src, expected = long_tree
    dst = tmp_path / "out"
    proc = start(src, dst, workers)
    deadline = time.monotonic() + 120
    while not (dst / "d00/f020.dcm").exists():        # a few outputs are there: stop it now
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.002)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "no partial output" in stderr

    files = sorted(p for p in dst.rglob("*") if p.is_file())
    assert not [p for p in files if p.name.endswith(TEMP_SUFFIX)]
    assert 0 < len(files) < FOLDERS * PER_FOLDER
    for path in files:                                 # every output there is complete
        assert path.read_bytes() == expected_for(path.relative_to(dst), expected), path
    pydicom.dcmread(files[-1]).pixel_array

    again = subprocess.run([sys.executable, "-m", "fastanon", "run", "--key", KEY, str(src),
                            str(dst)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"{len(files):,} already there" in again.stderr
    done = sorted(p for p in dst.rglob("*") if p.is_file())
    assert len(done) == FOLDERS * PER_FOLDER
    for path in done:
        assert path.read_bytes() == expected_for(path.relative_to(dst), expected), path
