"""Cluster mode on a real Dask LocalCluster (two worker processes): a local run's outputs, byte
for byte, and nothing lost when a worker is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastanon import batch
from fastanon.pipeline import TEMP_SUFFIX
from test_cli import KEY, tree_hashes, write_tree

distributed = pytest.importorskip("distributed", reason="fastanon[dask] is not installed")
fastanon_dask = pytest.importorskip("fastanon.dask")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    connected = distributed.Client(cluster)
    try:
        yield connected
    finally:
        connected.close()
        cluster.close()


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """50 files in nested folders, a text file and a truncated file."""
    root = tmp_path_factory.mktemp("study") / "src"
    write_tree(root, count=50)
    return root


def _local(study, out) -> tuple[batch.Summary, list]:
    outcomes: list = []
    summary = batch.run(study, out, batch.Job(key=KEY.encode(), workers=1), outcomes.append,
                        audit=out.parent / f"{out.name}-audit.csv")
    return summary, outcomes


def test_a_cluster_run_writes_what_a_local_run_writes(client, study, tmp_path):
    local, local_outcomes = _local(study, tmp_path / "local")
    outcomes: list = []
    summary = fastanon_dask.run(study, tmp_path / "cluster", key=KEY, client=client,
                                on_outcome=outcomes.append, audit=tmp_path / "cluster-audit.csv")
    assert (summary.written, summary.skipped, summary.failed) == (50, 1, 1)
    assert (summary.written, summary.skipped, summary.failed) == \
        (local.written, local.skipped, local.failed)
    assert tree_hashes(tmp_path / "cluster") == tree_hashes(tmp_path / "local")
    # The walk's order, the same reasons (the broken file named), the same audit.
    assert [(o.src, o.status, o.reason) for o in outcomes] == \
        [(o.src, o.status, o.reason) for o in local_outcomes]
    assert next(o for o in outcomes if o.status == "failed").src.endswith("broken.dcm")
    audit = (tmp_path / "cluster-audit.csv").read_text()
    assert audit.replace(f"{tmp_path}/cluster/", f"{tmp_path}/local/") == \
        (tmp_path / "local-audit.csv").read_text()
    # The work was the cluster's: its workers compiled this run's plan.
    compiled = client.run(lambda: len(batch._PREPARED))
    assert sum(compiled.values()) >= 1
    # A rerun keeps what is there.
    again = fastanon_dask.run(study, tmp_path / "cluster", key=KEY, client=client)
    assert again.exists == 50 and again.written == 0


def test_a_worker_killed_mid_run_loses_nothing(client, study, tmp_path, monkeypatch):
    monkeypatch.setattr(fastanon_dask, "TASK_FILES", 2)  # 26 tasks: each worker holds some
    monkeypatch.setattr(fastanon_dask, "FIRST_TASK_FILES", 2)
    expected = tmp_path / "local"
    _local(study, expected)
    pids = list(client.run(os.getpid).values())
    seen: list = []

    def kill_one_worker(outcome):
        seen.append(outcome)
        if len(seen) == 5:
            os.kill(pids[0], signal.SIGKILL)        # mid-run: its tasks are lost with it

    out = tmp_path / "cluster"
    first = fastanon_dask.run(study, out, key=KEY, client=client, on_outcome=kill_one_worker)
    assert first.failed == 1                        # only the broken file: no task lost
    assert first.written + first.exists == 50
    client.wait_for_workers(2, timeout=60)          # the nanny starts a new one
    assert pids[0] not in client.run(os.getpid).values()
    again = fastanon_dask.run(study, out, key=KEY, client=client)
    assert again.written + again.exists == 50 and again.failed == 1
    assert tree_hashes(out) == tree_hashes(expected)
    assert not [p for p in out.rglob("*") if p.name.endswith(TEMP_SUFFIX)]


def test_the_command_runs_on_a_local_cluster(study, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "fastanon", "run", "--key", KEY, "--dask",
                           "local:2", str(study), str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1, done.stderr            # the broken file failed, named
    assert "broken.dcm" in done.stderr and "50 written" in done.stderr
    expected = tmp_path / "local"
    _local(study, expected)
    assert tree_hashes(out) == tree_hashes(expected)


def test_a_scheduler_that_does_not_answer_is_a_clear_error(study, tmp_path):
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "fastanon", "run", "--key", KEY, "--dask",
                           f"tcp://127.0.0.1:{port}", str(study), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert f"tcp://127.0.0.1:{port}" in done.stderr and "no scheduler" in done.stderr
    assert time.monotonic() - started < 60
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.dcm"))


def test_a_bad_local_address_is_a_usage_error(study, tmp_path):
    done = subprocess.run([sys.executable, "-m", "fastanon", "run", "--dask", "local:two",
                           str(study), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and "local:N" in done.stderr
