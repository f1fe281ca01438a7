"""On a file system with reflinks: `fastanon run` against `cp` that copies and `cp` that clones.

The big file and the CT study are copied (untimed, every block their own) onto an XFS image
mounted on a loop device for this session (tests/loopfs.py: root, a free loop device and
xfsprogs; skipped with the reason otherwise). There, whole process, each round from a fresh
output folder on the same mount:

* ``cp -r --reflink=never``: a real copy, the floor elsewhere;
* ``cp -r --reflink=always``: shares every block, copies nothing;
* ``python -m fastanon run --workers 1`` (and 2 on the CT study): shares the Pixel Data's
  blocks but the first and the last;
* ``python -m fastanon run --workers 1 --no-clone``: copies them.

Targets (issue text; informative, nothing about speed is asserted): the big file <= 0.1 x the
copying `cp` and within a few ms of the cloning one plus start-up; the CT study <= 1.5 x
`cp -r` (which clones) with one worker. Checked: the fastanon outputs with and without clones
are the same bytes, and the sample outputs are anonymized with their pixels intact.
"""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_bench_engine import (ROUNDS, WARMUP, check_anonymized, fastanon_env, fresh,
                               need_fastanon, record, run)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from loopfs import mount_xfs, unmount  # noqa: E402

KIND = "xfs:"
KEY = "benchmark-key"
IMAGE_BYTES = 3 << 30      # the big file, the CT study and two outputs of each, with room


def _commands(src: Path, dst: Path) -> dict[str, list[str]]:
    fastanon = [sys.executable, "-m", "fastanon", "run", "--quiet", "--key", KEY]
    return {
        "cp-never": ["cp", "-r", "--reflink=never", str(src), str(dst)],
        "cp-always": ["cp", "-r", "--reflink=always", str(src), str(dst)],
        "fastanon-1": fastanon + ["--workers", "1", str(src), str(dst)],
        "fastanon-2": fastanon + ["--workers", "2", str(src), str(dst)],
        "fastanon-1-no-clone": fastanon + ["--workers", "1", "--no-clone", str(src), str(dst)],
    }


LABELS = {
    "cp-never": "cp -r --reflink=never",
    "cp-always": "cp -r --reflink=always",
    "fastanon-1": "fastanon run --workers 1",
    "fastanon-2": "fastanon run --workers 2",
    "fastanon-1-no-clone": "fastanon run --workers 1 --no-clone",
}
CASES = [pytest.param(name, tool, id=f"{name}-{tool}",
                      marks=pytest.mark.benchmark(group=f"{name}: on XFS (reflinks)"))
         for name in ("big", "ct") for tool in LABELS
         if not (name == "big" and tool == "fastanon-2")]


@pytest.fixture(scope="session")
def xfs(tmp_path_factory):
    root = tmp_path_factory.mktemp("xfs-bench")
    (root / "mnt").mkdir()
    why = mount_xfs(root / "xfs.img", root / "mnt", IMAGE_BYTES)
    if why:
        pytest.skip(f"no XFS loop mount: {why}")
    try:
        yield root / "mnt"
    finally:
        unmount(root / "mnt")


@pytest.fixture
def on_xfs(corpus, xfs):
    """The corpus's source copied onto the mount (once per session)."""
    src = xfs / "src" / corpus.name / corpus.src.name
    if not src.exists():
        src.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-r", "--reflink=never", str(corpus.src), str(src)], check=True)
        os.sync()
    return src


@pytest.mark.parametrize("corpus,tool", CASES, indirect=["corpus"])
def test_on_xfs(benchmark, corpus, tool, xfs, on_xfs, bench_results):
    dst = xfs / "out" / f"{corpus.name}-{tool}"
    dst.parent.mkdir(exist_ok=True)
    env = fastanon_env(need_fastanon()) if tool.startswith("fastanon") else None
    command = _commands(on_xfs, dst)[tool]
    benchmark.pedantic(run, args=(command, env), setup=fresh(dst), rounds=ROUNDS,
                       warmup_rounds=WARMUP)
    info = {"label": LABELS[tool]}
    if tool.startswith("fastanon"):
        info.update(check_anonymized(corpus, dst))
        first = xfs / "out" / f"{corpus.name}-fastanon-1"     # left there by its test
        if tool != "fastanon-1" and first.exists():
            info["same_as_1"] = all(
                filecmp.cmp(corpus.dst_file(dst, rel), corpus.dst_file(first, rel), shallow=False)
                for rel in (corpus.files[0], corpus.files[-1]))
    record(bench_results, benchmark, corpus, KIND + tool, **info)


def summary_lines(results: dict) -> list[str]:
    """One block per corpus: every command's median and its ratio to both `cp`s."""
    lines = []
    for name in ("big", "ct"):
        rows = [(tool, results[(name, KIND + tool)]) for tool in LABELS
                if (name, KIND + tool) in results]
        if not rows:
            continue
        never = results.get((name, KIND + "cp-never"), {}).get("median")
        always = results.get((name, KIND + "cp-always"), {}).get("median")
        lines += ["", f"{name} on XFS, whole process, median of {ROUNDS}:"]
        for tool, r in rows:
            median = r["median"]
            ratios = []
            for label, base in (("x cp --reflink=never", never), ("x cp --reflink=always", always)):
                if median and base:
                    ratios.append(f"{median / base:6.2f} {label}")
            checks = ""
            if "correct" in r:
                checks = f"  correct {r['correct']}"
                if "same_as_1" in r:
                    checks += f", same bytes as --workers 1: {r['same_as_1']}"
            lines.append(f"  {LABELS[tool]:<38} {median:7.3f} s  " + ", ".join(ratios) + checks)
    return lines
