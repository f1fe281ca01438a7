"""fastanon against plain copying, on three corpora (see benchdata.py).

For each corpus:

* in-process: ``shutil.copyfile`` file by file (and ``shutil.copytree`` for
  trees, as a reference) against ``fastanon.anonymize_file(..., "research")``;
* whole process, as a user sees it: ``cp -r SRC DST`` (``cp`` for the single
  file) against ``python -m fastanon run --preset research SRC DST``;
* on the big file, the peak memory of both commands.

Copy baselines run without fastanon (``-k copy``); fastanon benchmarks skip
when it cannot be imported.  Nothing here asserts a speed or memory target:
the ratios are printed at the end of the run by conftest.py.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchdata import check_output

ROUNDS = int(os.environ.get("FASTANON_BENCH_ROUNDS", "5"))
WARMUP = 1


def corpora(*names: str, group: str):
    return [pytest.param(n, id=n, marks=pytest.mark.benchmark(group=f"{n}: {group}"))
            for n in names]


ALL = ("big", "ct", "small")
TREES = ("ct", "small")


def _gnu_cp() -> bool:
    try:
        out = subprocess.run(["cp", "--version"], capture_output=True, text=True).stdout
    except OSError:
        return False
    return "GNU" in out


# GNU cp 9 reflinks by default where the file system can: that shares blocks
# instead of copying them, which no anonymizer can do.  Force a real copy.
CP = ["cp", "--reflink=never"] if _gnu_cp() else ["cp"]


def cp_command(src: Path, dst: Path) -> list[str]:
    return CP + (["-r"] if src.is_dir() else []) + [str(src), str(dst)]


def fastanon_command(src: Path, dst: Path) -> list[str]:
    return [sys.executable, "-m", "fastanon", "run", "--preset", "research", str(src), str(dst)]


def fresh(dst: Path):
    """pedantic setup: remove the previous round's output, flush dirty pages."""
    def setup():
        if dst.is_dir():
            shutil.rmtree(dst)
        elif dst.exists():
            dst.unlink()
        if hasattr(os, "sync"):
            os.sync()
    return setup


def pairs(corpus, dst: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """(folders to create, [(src file, dst file)]) for file-by-file runs."""
    todo = [(str(corpus.src_file(rel)), str(corpus.dst_file(dst, rel))) for rel in corpus.files]
    folders = sorted({Path(d).parent for _, d in todo})
    return folders, todo


def run(cmd: list[str], env=None) -> None:
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    if proc.returncode:
        raise RuntimeError(f"{cmd!r} exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace')[-2000:]}")


def record(bench_results, benchmark, corpus, kind: str, **info) -> None:
    benchmark.extra_info.update(info)
    median = benchmark.stats.stats.median if benchmark.stats else None
    bench_results[(corpus.name, kind)] = {"median": median, **info}


def sample_files(corpus) -> list[str]:
    return sorted({corpus.files[0], corpus.files[-1]})


def check_copies(corpus, dst: Path) -> bool:
    return all(filecmp.cmp(corpus.src_file(rel), corpus.dst_file(dst, rel), shallow=False)
               for rel in sample_files(corpus))


def check_anonymized(corpus, dst: Path) -> dict:
    checks = [check_output(corpus.src_file(rel), corpus.dst_file(dst, rel))
              for rel in sample_files(corpus)]
    found = sorted({s for c in checks for s in c.get("phi_strings_found", [])})
    errors = [c["error"] for c in checks if "error" in c]
    info = {"correct": all(c.get("correct") for c in checks), "phi_strings_found": found}
    if errors:
        info["errors"] = errors
    return info


def need_fastanon():
    try:
        import fastanon
    except ImportError as exc:
        pytest.skip(f"fastanon is not importable: {exc}")
    if not hasattr(fastanon, "anonymize_file"):
        pytest.skip("fastanon.anonymize_file is missing")
    return fastanon


def fastanon_env(fastanon) -> dict:
    """The environment for `python -m fastanon`: import the same package."""
    env = dict(os.environ)
    pkg_parent = str(Path(fastanon.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH")) if p)
    return env


# ---------------------------------------------------------------------------
# In process
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("corpus", corpora(*ALL, group="in-process"), indirect=True)
def test_copy_files(benchmark, corpus, out_dir, bench_results):
    folders, todo = pairs(corpus, out_dir)

    def copy_files():
        for d in folders:
            os.makedirs(d, exist_ok=True)
        for s, d in todo:
            shutil.copyfile(s, d)

    benchmark.pedantic(copy_files, setup=fresh(out_dir), rounds=ROUNDS, warmup_rounds=WARMUP)
    record(bench_results, benchmark, corpus, "copy-files", identical=check_copies(corpus, out_dir))


@pytest.mark.parametrize("corpus", corpora(*TREES, group="in-process"), indirect=True)
def test_copy_copytree(benchmark, corpus, out_dir, bench_results):
    benchmark.pedantic(shutil.copytree, args=(corpus.src, out_dir), setup=fresh(out_dir),
                       rounds=ROUNDS, warmup_rounds=WARMUP)
    record(bench_results, benchmark, corpus, "copy-copytree",
           identical=check_copies(corpus, out_dir))


@pytest.mark.parametrize("corpus", corpora(*ALL, group="in-process"), indirect=True)
def test_fastanon_inprocess(benchmark, corpus, out_dir, bench_results):
    fastanon = need_fastanon()
    folders, todo = pairs(corpus, out_dir)

    def anonymize_files():
        for d in folders:
            os.makedirs(d, exist_ok=True)
        for s, d in todo:
            fastanon.anonymize_file(s, d, policy="research")

    benchmark.pedantic(anonymize_files, setup=fresh(out_dir), rounds=ROUNDS,
                       warmup_rounds=WARMUP)
    record(bench_results, benchmark, corpus, "fastanon-inprocess",
           **check_anonymized(corpus, out_dir))


# ---------------------------------------------------------------------------
# Whole process, as a user sees it
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("corpus", corpora(*ALL, group="whole process"), indirect=True)
def test_copy_cp(benchmark, corpus, out_dir, bench_results):
    benchmark.pedantic(run, args=(cp_command(corpus.src, out_dir),), setup=fresh(out_dir),
                       rounds=ROUNDS, warmup_rounds=WARMUP)
    record(bench_results, benchmark, corpus, "copy-cp", identical=check_copies(corpus, out_dir))


@pytest.mark.parametrize("corpus", corpora(*ALL, group="whole process"), indirect=True)
def test_fastanon_cli(benchmark, corpus, out_dir, bench_results):
    env = fastanon_env(need_fastanon())
    benchmark.pedantic(run, args=(fastanon_command(corpus.src, out_dir), env),
                       setup=fresh(out_dir), rounds=ROUNDS, warmup_rounds=WARMUP)
    record(bench_results, benchmark, corpus, "fastanon-cli", **check_anonymized(corpus, out_dir))


# ---------------------------------------------------------------------------
# Peak memory on the big file
# ---------------------------------------------------------------------------

# Runs argv and prints JSON with two peaks:
# * maxrss_kib: the largest RSS of any single process.  Taken from GNU time
#   (/usr/bin/time -f %M, a small C parent) when it exists; otherwise from
#   getrusage(RUSAGE_CHILDREN) of this Python wrapper, which then has the
#   wrapper's own RSS (~10-15 MiB) as a floor, because a child's high-water
#   mark includes the parent memory it was forked with.
# * tree_peak_kib: the peak of the summed RSS of the whole process tree,
#   sampled every 10 ms from /proc (catches worker pools; 0 without /proc).
PEAK_WRAPPER = r"""
import json, os, resource, subprocess, sys, tempfile

TIME = "/usr/bin/time"

def tree_rss(root, include_root):
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0
    children = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(pid)
    total, page = 0, os.sysconf("SC_PAGE_SIZE")
    todo = [root] if include_root else list(children.get(root, []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            pass
    return total

use_time = os.access(TIME, os.X_OK) and sys.platform.startswith("linux")
with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as rss:
    cmd = sys.argv[1:]
    if use_time:
        cmd = [TIME, "-f", "%M", "-o", rss.name, *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    peak = 0
    while True:
        peak = max(peak, tree_rss(proc.pid, include_root=not use_time))
        try:
            proc.wait(timeout=0.01)
            break
        except subprocess.TimeoutExpired:
            pass
    err.seek(0)
    stderr = err.read()[-2000:].decode(errors="replace")
    maxrss = None
    if use_time:
        try:
            maxrss = int(rss.read().strip().splitlines()[-1])
        except (ValueError, IndexError):
            pass
if maxrss is None:
    maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if sys.platform == "darwin":
        maxrss //= 1024  # bytes there
print(json.dumps({"rc": proc.returncode, "maxrss_kib": maxrss, "via": "time" if use_time else "rusage",
                  "tree_peak_kib": peak // 1024, "stderr": stderr}))
"""


def measure_peak(cmd: list[str], env=None) -> dict:
    out = subprocess.run([sys.executable, "-c", PEAK_WRAPPER, *cmd], env=env,
                         capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    if result["rc"]:
        raise RuntimeError(f"{cmd!r} exited {result['rc']}: {result['stderr']}")
    return result


def record_peak(bench_results, benchmark, corpus, kind: str, result: dict, **info) -> None:
    peak = {"peak_rss_mib": result["maxrss_kib"] / 1024,
            "tree_peak_mib": result["tree_peak_kib"] / 1024,
            "peak_rss_via": result["via"]}
    record(bench_results, benchmark, corpus, kind, **peak, **info)


@pytest.mark.parametrize("corpus", corpora("big", group="peak memory"), indirect=True)
def test_copy_cp_peak_memory(benchmark, corpus, out_dir, bench_results):
    result = benchmark.pedantic(measure_peak, args=(cp_command(corpus.src, out_dir),),
                                setup=fresh(out_dir), rounds=1)
    record_peak(bench_results, benchmark, corpus, "copy-peak-rss", result)


@pytest.mark.parametrize("corpus", corpora("big", group="peak memory"), indirect=True)
def test_fastanon_cli_peak_memory(benchmark, corpus, out_dir, bench_results):
    env = fastanon_env(need_fastanon())
    result = benchmark.pedantic(measure_peak, args=(fastanon_command(corpus.src, out_dir), env),
                                setup=fresh(out_dir), rounds=1)
    record_peak(bench_results, benchmark, corpus, "fastanon-peak-rss", result,
                **check_anonymized(corpus, out_dir))
