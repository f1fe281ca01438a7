"""Pixel masks on the big multi-frame file (see benchdata.py): one mask on every frame.

Measured side by side in one run, as in test_bench_engine.py:

* whole process: ``cp`` of the file against a Python process that anonymizes it with a mask on
  every frame (``fastanon.anonymize_file(..., masks=[MASK])``, start-up included);
* in process: ``shutil.copyfile`` against ``fastanon.anonymize_file`` with the mask;
* the same in-process run without the mask (what the mask itself adds);
* the peak memory of the whole-process run (the file is mapped, only masked rows are touched).

Target (DESIGN.md): masks on every frame <= 1.5x the copy; memory independent of the file size.
Nothing is asserted: the ratios are printed by the last test of this file.
"""

from __future__ import annotations

import shutil
import sys

import pytest

from benchdata import pixel_region
from test_bench_engine import ROUNDS, WARMUP, corpora, cp_command, fastanon_env, fresh, \
    measure_peak, need_fastanon, run

MASK = (32, 48, 480, 64)          # x, y, width, height: a burned-in text band, on every frame
TARGET = 1.5
GROUP = "big: masks"


def _policy() -> tuple[object, str]:
    """(policy, its source text): the research preset when it loads, else {} (then the header
    work is nil; the summary says which ran)."""
    need_fastanon()
    from fastanon.policy import as_policy
    try:
        as_policy("research")
        return "research", "'research'"
    except Exception:
        return {}, "{}"


def _script(src, dst, policy: str) -> list[str]:
    code = ("import sys, fastanon; fastanon.anonymize_file(sys.argv[1], sys.argv[2], "
            f"policy={policy}, masks=[fastanon.Mask{MASK}])")
    return [sys.executable, "-c", code, str(src), str(dst)]


def _check(src, dst) -> dict:
    """Masked rows are black (MONOCHROME2, unsigned: 0) on the first and last frame, the rows
    around them equal the input, and the file has the input's size."""
    x, y, w, h = MASK
    try:
        s_off, length = pixel_region(src)
        d_off, d_len = pixel_region(dst)
        rows, cols, cell = 1024, 1024, 2
        frame = rows * cols * cell
        frames = length // frame
        ok = d_len == length
        with open(src, "rb") as fs, open(dst, "rb") as fd:
            for f in (0, frames - 1):
                for r in (y - 1, y, y + h - 1, y + h):
                    fs.seek(s_off + f * frame + r * cols * cell)
                    fd.seek(d_off + f * frame + r * cols * cell)
                    a, b = fs.read(cols * cell), fd.read(cols * cell)
                    if y <= r < y + h:
                        ok &= b[:x * cell] == a[:x * cell] and b[(x + w) * cell:] == a[(x + w) * cell:]
                        ok &= b[x * cell:(x + w) * cell] == bytes(w * cell)
                    else:
                        ok &= a == b
        return {"correct": bool(ok)}
    except Exception as exc:   # recorded, never raised: benchmarks do not gate
        return {"correct": False, "error": f"{type(exc).__name__}: {exc}"}


def _record(bench_results, benchmark, kind: str, **info) -> None:
    benchmark.extra_info.update(info)
    median = benchmark.stats.stats.median if benchmark.stats else None
    bench_results[("masks", kind)] = {"median": median, **info}


@pytest.mark.parametrize("corpus", corpora("big", group=GROUP), indirect=True)
def test_masks_copy_cp(benchmark, corpus, out_dir, bench_results):
    benchmark.pedantic(run, args=(cp_command(corpus.src, out_dir),), setup=fresh(out_dir),
                       rounds=ROUNDS, warmup_rounds=WARMUP)
    _record(bench_results, benchmark, "cp")


@pytest.mark.parametrize("corpus", corpora("big", group=GROUP), indirect=True)
def test_masks_fastanon_process(benchmark, corpus, out_dir, bench_results):
    env = fastanon_env(need_fastanon())
    policy = _policy()[1]
    benchmark.pedantic(run, args=(_script(corpus.src, out_dir, policy), env), setup=fresh(out_dir),
                       rounds=ROUNDS, warmup_rounds=WARMUP)
    _record(bench_results, benchmark, "process", policy=policy, **_check(corpus.src, out_dir))


@pytest.mark.parametrize("corpus", corpora("big", group=GROUP), indirect=True)
def test_masks_copyfile(benchmark, corpus, out_dir, bench_results):
    benchmark.pedantic(shutil.copyfile, args=(corpus.src, out_dir), setup=fresh(out_dir),
                       rounds=ROUNDS, warmup_rounds=WARMUP)
    _record(bench_results, benchmark, "copyfile")


@pytest.mark.parametrize("corpus", corpora("big", group=GROUP), indirect=True)
def test_masks_fastanon_inprocess(benchmark, corpus, out_dir, bench_results):
    fastanon = need_fastanon()
    policy, text = _policy()
    masks = [fastanon.Mask(*MASK)]
    benchmark.pedantic(fastanon.anonymize_file, args=(corpus.src, out_dir),
                       kwargs={"policy": policy, "masks": masks},
                       setup=fresh(out_dir), rounds=ROUNDS, warmup_rounds=WARMUP)
    _record(bench_results, benchmark, "inprocess", policy=text, **_check(corpus.src, out_dir))


@pytest.mark.parametrize("corpus", corpora("big", group=GROUP), indirect=True)
def test_masks_fastanon_inprocess_without_masks(benchmark, corpus, out_dir, bench_results):
    """The same run without the mask: what the mask itself adds."""
    fastanon = need_fastanon()
    policy, text = _policy()
    benchmark.pedantic(fastanon.anonymize_file, args=(corpus.src, out_dir),
                       kwargs={"policy": policy}, setup=fresh(out_dir), rounds=ROUNDS,
                       warmup_rounds=WARMUP)
    _record(bench_results, benchmark, "inprocess-nomask", policy=text)


@pytest.mark.parametrize("corpus", corpora("big", group=GROUP), indirect=True)
def test_masks_peak_memory(benchmark, corpus, out_dir, bench_results):
    env = fastanon_env(need_fastanon())
    result = benchmark.pedantic(measure_peak, args=(_script(corpus.src, out_dir, _policy()[1]), env),
                                setup=fresh(out_dir), rounds=1)
    _record(bench_results, benchmark, "peak", peak_rss_mib=result["maxrss_kib"] / 1024,
            tree_peak_mib=result["tree_peak_kib"] / 1024, file_mib=corpus.nbytes / 2**20)


def test_masks_summary(bench_results, capsys):
    """Prints the ratios of this file (runs last)."""
    got = {kind: bench_results.get(("masks", kind)) for kind in
           ("cp", "process", "copyfile", "inprocess", "inprocess-nomask", "peak")}
    if not any(got.values()):
        pytest.skip("no mask benchmarks ran")
    lines = ["", "fastanon masks benchmark (big file, mask "
             f"{','.join(map(str, MASK))} on every frame; target <= {TARGET}x the copy)"]
    for base, anon, label in (("cp", "process", "whole process vs cp"),
                              ("copyfile", "inprocess", "in-process vs shutil.copyfile")):
        b, a = got[base], got[anon]
        if b and a and b["median"] and a["median"]:
            ratio = a["median"] / b["median"]
            lines.append(f"  {label}: {a['median']:.3f} s / {b['median']:.3f} s = {ratio:.2f}x "
                         f"({'met' if ratio <= TARGET else 'NOT met'}; policy {a.get('policy')}, "
                         f"correct {a.get('correct')})")
    if got["inprocess"] and got["inprocess-nomask"] and got["copyfile"]:
        added = got["inprocess"]["median"] - got["inprocess-nomask"]["median"]
        lines.append(f"  the mask itself adds {added * 1000:.0f} ms "
                     f"({added / got['copyfile']['median']:.2f}x the copy) to the engine's run")
    if got["peak"]:
        p = got["peak"]
        lines.append(f"  peak RSS {p['peak_rss_mib']:.1f} MiB (process tree {p['tree_peak_mib']:.1f}"
                     f" MiB) for a {p['file_mib']:.0f} MiB file")
    with capsys.disabled():
        print("\n".join(lines))
