"""The CT study on a LocalCluster of 2 worker processes against the local run with 2 workers and
`cp -r`, in this process (the cluster started once, before the rounds: its start-up, some
seconds, is a cluster's fixed cost and not the per-file overhead this measures).

Target (issue text; informative, nothing about speed is asserted): the cluster adds <= 20% over
the local run. Checked: the cluster's outputs are the local run's, byte for byte.

The three timed tests run their rounds one test after the other; the paired test runs the local
run and the cluster in turn, round by round, and takes the ratio pair by pair, so that the
machine's drift during the session (writeback, other load) moves both sides of each ratio alike.
"""

from __future__ import annotations

import filecmp
import statistics
import time

import pytest

from test_bench_engine import ROUNDS, WARMUP, corpora, cp_command, fresh, record, run

distributed = pytest.importorskip("distributed", reason="fastanon[dask] is not installed")

KIND = "dask:"
KEY = b"benchmark-key"
CT = corpora("ct", group="on a LocalCluster")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as connected:
        yield connected


def _same(corpus, a, b) -> bool:
    return all(filecmp.cmp(corpus.dst_file(a, rel), corpus.dst_file(b, rel), shallow=False)
               for rel in corpus.files)


@pytest.mark.parametrize("corpus", CT, indirect=True)
def test_cp_r(benchmark, corpus, out_dir, bench_results):
    benchmark.pedantic(run, args=(cp_command(corpus.src, out_dir),), setup=fresh(out_dir),
                       rounds=ROUNDS, warmup_rounds=WARMUP)
    record(bench_results, benchmark, corpus, KIND + "cp")


@pytest.mark.parametrize("corpus", CT, indirect=True)
def test_local_run_two_workers(benchmark, corpus, out_dir, bench_results, tmp_path_factory):
    from fastanon import batch

    job = batch.Job(key=KEY, workers=2)
    benchmark.pedantic(batch.run, args=(corpus.src, out_dir, job), setup=fresh(out_dir),
                       rounds=ROUNDS, warmup_rounds=WARMUP)
    keep = tmp_path_factory.getbasetemp() / "dask-bench-local"
    fresh(keep)()
    out_dir.rename(keep)
    record(bench_results, benchmark, corpus, KIND + "local")


@pytest.mark.parametrize("corpus", CT, indirect=True)
def test_local_cluster_two_workers(benchmark, corpus, out_dir, bench_results, client,
                                   tmp_path_factory):
    from fastanon import dask as fastanon_dask

    benchmark.pedantic(fastanon_dask.run, args=(corpus.src, out_dir),
                       kwargs={"key": KEY, "client": client}, setup=fresh(out_dir),
                       rounds=ROUNDS, warmup_rounds=WARMUP)
    local = tmp_path_factory.getbasetemp() / "dask-bench-local"
    info = {"same_as_local": _same(corpus, out_dir, local)} if local.exists() else {}
    record(bench_results, benchmark, corpus, KIND + "cluster", **info)


@pytest.mark.parametrize("corpus", CT, indirect=True)
def test_paired_cluster_over_local(benchmark, corpus, out_dir, bench_results, client):
    """One round: the local run, then the cluster (benchmark's own figure is the pair's time)."""
    from fastanon import batch
    from fastanon import dask as fastanon_dask

    job = batch.Job(key=KEY, workers=2)
    local, cluster = [], []

    def one_pair():
        fresh(out_dir)()
        started = time.perf_counter()
        batch.run(corpus.src, out_dir, job)
        local.append(time.perf_counter() - started)
        fresh(out_dir)()
        started = time.perf_counter()
        summary = fastanon_dask.run(corpus.src, out_dir, key=KEY, client=client)
        cluster.append(time.perf_counter() - started)
        assert summary.failed == 0

    benchmark.pedantic(one_pair, rounds=ROUNDS, warmup_rounds=WARMUP)
    local, cluster = local[WARMUP:], cluster[WARMUP:]
    ratios = [b / a for a, b in zip(local, cluster)]
    bench_results[(corpus.name, KIND + "paired")] = {
        "median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
        "local": statistics.median(local), "cluster": statistics.median(cluster),
        "rounds": len(ratios)}


def summary_lines(results: dict) -> list[str]:
    rows = {kind: results.get(("ct", KIND + kind)) for kind in ("cp", "local", "cluster")}
    if not rows["cluster"]:
        return []
    local, cp = rows["local"] and rows["local"]["median"], rows["cp"] and rows["cp"]["median"]
    cluster = rows["cluster"]["median"]
    lines = [f"ct: LocalCluster of 2 workers {cluster:.3f} s"]
    if local:
        lines.append(f"  x local run with 2 workers ({local:.3f} s): {cluster / local:.2f}"
                     "  (target <= 1.2)")
    if cp:
        lines.append(f"  x cp -r ({cp:.3f} s): {cluster / cp:.2f}")
    paired = results.get(("ct", KIND + "paired"))
    if paired:
        lines.append(f"  paired, round by round ({paired['rounds']} pairs; local "
                     f"{paired['local']:.3f} s, cluster {paired['cluster']:.3f} s): ratio median "
                     f"{paired['median']:.2f} (min {paired['min']:.2f}, max {paired['max']:.2f})")
    if "same_as_local" in rows["cluster"]:
        lines.append(f"  outputs the same as the local run's: {rows['cluster']['same_as_local']}")
    return lines
