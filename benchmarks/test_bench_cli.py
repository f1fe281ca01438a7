"""`fastanon run` on the 300-file CT study: --workers 1 and --workers 2 against `cp -r` of the same
tree, whole process (start-up included), measured side by side in this run.

Target (DESIGN.md): one worker <= 2 x `cp -r`, two workers <= 1.2 x. The ratios are printed by the
test that completes the set; nothing is asserted about speed. Correctness flag: the sample outputs are
anonymized with their pixels intact, and both worker counts give byte-identical trees (same key).
"""

from __future__ import annotations

import filecmp
import os
import sys

import pytest

from test_bench_engine import (
    ROUNDS,
    WARMUP,
    check_anonymized,
    check_copies,
    corpora,
    cp_command,
    fastanon_env,
    fresh,
    need_fastanon,
    record,
    run,
)

KEY = "benchmark-key"
CT = corpora("ct", group="cli workers")
KINDS = {"cp": "cli-cp", 1: "cli-workers-1", 2: "cli-workers-2"}


def command(src, dst, workers: int) -> list[str]:
    return [sys.executable, "-m", "fastanon", "run", "--quiet", "--key", KEY,
            "--workers", str(workers), str(src), str(dst)]


@pytest.mark.parametrize("corpus", CT, indirect=True)
def test_cp_r(benchmark, corpus, out_dir, bench_results, capsys):
    benchmark.pedantic(run, args=(cp_command(corpus.src, out_dir),), setup=fresh(out_dir),
                       rounds=ROUNDS, warmup_rounds=WARMUP)
    record(bench_results, benchmark, corpus, KINDS["cp"], identical=check_copies(corpus, out_dir))
    print_ratios(bench_results, capsys)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("corpus", CT, indirect=True)
def test_fastanon_run_workers(benchmark, corpus, out_dir, bench_results, workers,
                              tmp_path_factory, capsys):
    env = fastanon_env(need_fastanon())
    benchmark.pedantic(run, args=(command(corpus.src, out_dir, workers), env),
                       setup=fresh(out_dir), rounds=ROUNDS, warmup_rounds=WARMUP)
    info = check_anonymized(corpus, out_dir)
    # Keep this tree to compare the two worker counts byte for byte.
    keep = tmp_path_factory.getbasetemp() / f"cli-workers-{workers}"
    if not keep.exists():
        os.rename(out_dir, keep)
        out_dir.mkdir()
    other = tmp_path_factory.getbasetemp() / f"cli-workers-{3 - workers}"
    if other.exists():
        same = _same_trees(keep, other, corpus.files)
        info["identical_across_workers"] = same
        info["correct"] = info["correct"] and same
    record(bench_results, benchmark, corpus, KINDS[workers], **info)
    print_ratios(bench_results, capsys)


def _same_trees(a, b, files) -> bool:
    match, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    return not mismatch and not errors and len(match) == len(files)


def print_ratios(bench_results, capsys) -> None:
    """Once the three measurements are in (whichever test finishes them), print the ratios."""
    rows = {kind: bench_results.get(("ct", kind)) for kind in KINDS.values()}
    if not all(rows.values()) or not all(r["median"] for r in rows.values()):
        return
    base = rows["cli-cp"]["median"]
    lines = [f"ct corpus ({ROUNDS} rounds, medians, whole process): cp -r {base:.3f} s"]
    for workers, target in ((1, 2.0), (2, 1.2)):
        r = rows[KINDS[workers]]
        ratio = r["median"] / base
        lines.append(f"  fastanon run --workers {workers}: {r['median']:.3f} s = {ratio:.2f} x cp -r "
                     f"(target <= {target} x: {'yes' if ratio <= target else 'NO'}; "
                     f"correct: {r.get('correct')})")
    w1, w2 = rows[KINDS[1]]["median"], rows[KINDS[2]]["median"]
    lines.append(f"  2 workers vs 1: {w1 / w2:.2f} x faster")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
