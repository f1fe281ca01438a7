"""Inputs and outputs in object stores: memory:// and S3 through a real S3 API (moto's server on
127.0.0.1, reached by s3fs). The outputs are the bytes a local run writes with the same key."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fastanon import batch, stores
from test_cli import KEY, tree_hashes, write_tree

fsspec = pytest.importorskip("fsspec", reason="fsspec is not installed")


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("study") / "src"
    write_tree(root, count=12)
    return root


@pytest.fixture(scope="module")
def expected(study, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("expected") / "out"
    batch.run(study, out, batch.Job(key=KEY.encode(), workers=1))
    return tree_hashes(out)


def _upload(fs, study: Path, prefix: str) -> None:
    for path in sorted(study.rglob("*")):
        if path.is_file():
            fs.pipe_file(f"{prefix}/{path.relative_to(study)}", path.read_bytes())


def _hashes(fs, prefix: str) -> dict:
    """{path under prefix: sha256} of the objects there (as tree_hashes says of a folder)."""
    import hashlib

    root = prefix.strip("/")
    return {path.strip("/")[len(root) + 1:]: hashlib.sha256(fs.cat_file(path)).hexdigest()
            for path in sorted(fs.find(prefix))}


def test_urls_are_told_from_paths():
    assert stores.is_url("s3://bucket/x") and stores.is_url("memory://a")
    assert not stores.is_url("/data/x") and not stores.is_url("file:///data/x")
    assert not stores.is_url("a folder with :// in it/x")
    assert stores.local("file:///data/x") == "/data/x"


def test_memory_in_and_out(study, expected):
    fs = fsspec.filesystem("memory")
    _upload(fs, study, "/in-study")
    outcomes: list = []
    summary = batch.run("memory://in-study", "memory://out-study",
                        batch.Job(key=KEY.encode(), workers=2), outcomes.append)
    assert (summary.written, summary.skipped, summary.failed) == (12, 1, 1)
    assert _hashes(fs, "/out-study") == expected
    failed = next(o for o in outcomes if o.status == "failed")
    assert failed.src == "memory:///in-study/DOE_JANE/broken.dcm" and "value length" in failed.reason
    again = batch.run("memory://in-study", "memory://out-study", batch.Job(key=KEY.encode()))
    assert again.exists == 12 and again.written == 0
    with pytest.raises(Exception, match="inside the source"):
        batch.run("memory://in-study", "memory://in-study/out", batch.Job(key=KEY.encode()))


def test_large_objects_go_through_local_files(study, expected, monkeypatch):
    """An object larger than WHOLE_OBJECT is copied to a temporary file and mapped, its output
    written to one and uploaded: the same bytes, and no temporary file left."""
    import tempfile

    from fastanon import pipeline

    monkeypatch.setattr(batch, "WHOLE_OBJECT", 1000)      # every input here is larger,
    monkeypatch.setattr(pipeline, "SMALL_FILE", 1000)     # and mapped once local
    uploads = []
    real_upload = stores.upload
    monkeypatch.setattr(stores, "upload", lambda *a: (uploads.append(a), real_upload(*a)))
    temp = Path(tempfile.mkdtemp())
    monkeypatch.setattr(tempfile, "tempdir", str(temp))      # where the run's files go
    fs = fsspec.filesystem("memory")
    _upload(fs, study, "/large-in")
    summary = batch.run("memory://large-in", "memory://large-out", batch.Job(key=KEY.encode()))
    assert (summary.written, summary.skipped, summary.failed) == (12, 1, 1)
    assert _hashes(fs, "/large-out") == expected
    assert len(uploads) == 12                             # each output from a local file
    assert list(temp.iterdir()) == []


def test_a_store_to_a_folder_and_back(study, expected, tmp_path):
    fs = fsspec.filesystem("memory")
    _upload(fs, study, "/mixed")
    batch.run("memory://mixed", tmp_path / "local", batch.Job(key=KEY.encode()))
    assert tree_hashes(tmp_path / "local") == expected
    batch.run(study, "memory://from-local", batch.Job(key=KEY.encode()))
    assert _hashes(fs, "/from-local") == expected


# --- S3 ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def s3(monkeypatch_module):
    """moto's S3 server on 127.0.0.1 and the environment that points s3fs (and any process
    started from this one) at it."""
    pytest.importorskip("s3fs", reason="s3fs is not installed")
    server_module = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    environment = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    for name, value in environment.items():
        monkeypatch_module.setenv(name, value)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    fs.mkdir("fastanon-in")
    fs.mkdir("fastanon-out")
    try:
        yield fs, environment
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_s3_in_and_out_with_workers(s3, study, expected):
    fs, _ = s3
    _upload(fs, study, "fastanon-in/study")
    summary = batch.run("s3://fastanon-in/study", "s3://fastanon-out/anon",
                        batch.Job(key=KEY.encode(), workers=2))
    assert (summary.written, summary.skipped, summary.failed) == (12, 1, 1)
    fs.invalidate_cache()
    assert _hashes(fs, "fastanon-out/anon") == expected
    again = batch.run("s3://fastanon-in/study", "s3://fastanon-out/anon",
                      batch.Job(key=KEY.encode(), workers=2))
    assert again.exists == 12 and again.written == 0


def test_the_command_on_s3(s3, study, expected):
    fs, environment = s3
    _upload(fs, study, "fastanon-in/cli")
    env = {**os.environ, **environment}
    done = subprocess.run([sys.executable, "-m", "fastanon", "run", "--key", KEY,
                           "s3://fastanon-in/cli", "s3://fastanon-out/cli"],
                          capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 1, done.stderr            # the broken file, named by its URL
    assert "s3://fastanon-in/cli/DOE_JANE/broken.dcm" in done.stderr
    fs.invalidate_cache()
    assert _hashes(fs, "fastanon-out/cli") == expected
    missing = subprocess.run([sys.executable, "-m", "fastanon", "run", "--key", KEY,
                              "s3://fastanon-in/nothing-here", "s3://fastanon-out/x"],
                             capture_output=True, text=True, timeout=300, env=env, check=False)
    assert missing.returncode == 2 and "s3://fastanon-in/nothing-here" in missing.stderr


def test_a_cluster_over_buckets(s3, study, expected):
    """A real LocalCluster (its worker processes reach the S3 server through the environment
    they inherit): the bucket's outputs are a local run's."""
    distributed = pytest.importorskip("distributed", reason="fastanon[dask] is not installed")
    from fastanon import dask as fastanon_dask

    fs, _ = s3
    _upload(fs, study, "fastanon-in/cluster")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        summary = fastanon_dask.run("s3://fastanon-in/cluster", "s3://fastanon-out/cluster",
                                    key=KEY, client=client)
        with pytest.raises(Exception, match="memory:// store is this process's own"):
            fastanon_dask.run("memory://in-study", "memory://x", key=KEY, client=client)
    assert (summary.written, summary.skipped, summary.failed) == (12, 1, 1)
    fs.invalidate_cache()
    assert _hashes(fs, "fastanon-out/cluster") == expected


def test_a_worker_killed_during_a_bucket_run_loses_nothing(s3, study, expected, monkeypatch):
    """SIGKILL of a worker process mid-run: its tasks run again on the other one, no object is
    half there (each is put whole), and a rerun leaves the bucket a local run's outputs."""
    import signal

    distributed = pytest.importorskip("distributed", reason="fastanon[dask] is not installed")
    from fastanon import dask as fastanon_dask

    monkeypatch.setattr(fastanon_dask, "TASK_FILES", 1)     # 14 tasks: each worker holds some
    monkeypatch.setattr(fastanon_dask, "FIRST_TASK_FILES", 1)
    fs, _ = s3
    _upload(fs, study, "fastanon-in/killed")
    seen: list = []
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        pids = list(client.run(os.getpid).values())

        def kill_one_worker(outcome):
            seen.append(outcome)
            if len(seen) == 3:
                os.kill(pids[0], signal.SIGKILL)

        first = fastanon_dask.run("s3://fastanon-in/killed", "s3://fastanon-out/killed",
                                  key=KEY, client=client, on_outcome=kill_one_worker)
        assert (first.written + first.exists, first.skipped, first.failed) == (12, 1, 1)
        client.wait_for_workers(2, timeout=60)
        assert pids[0] not in client.run(os.getpid).values()
        again = fastanon_dask.run("s3://fastanon-in/killed", "s3://fastanon-out/killed",
                                  key=KEY, client=client)
    assert (again.written, again.exists, again.failed) == (0, 12, 1)
    fs.invalidate_cache()
    assert _hashes(fs, "fastanon-out/killed") == expected


def test_an_s3_prefix_is_listed_a_page_at_a_time(s3, tmp_path, monkeypatch):
    """A bucket's listing goes as the run goes (one request of LIST_PAGE keys before the first
    object), in the order a local run walks the same tree; folder markers are no objects."""
    import s3fs

    fs, _ = s3
    names = ["a.dcm", "a0.dcm", "B.dcm", "a/b.dcm", "a/x/y.dcm", "a/x/z.dcm", "a-b/c.dcm",
             "\u00e9.dcm", "z/1.dcm", "z/10.dcm", "z/2.dcm"] + [f"flat/{i:03d}" for i in range(9)]
    for name in names:
        fs.pipe_file(f"fastanon-in/order/{name}", b"not DICOM")
        (tmp_path / "local" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "local" / name).write_bytes(b"not DICOM")
    fs.pipe_file("fastanon-in/order/a/", b"")           # the marker a console writes
    fs.invalidate_cache()
    local = [rel for _, _, rel in batch.pairs(tmp_path / "local", tmp_path / "out")]

    requests: list = []
    call = s3fs.S3FileSystem._call_s3

    async def counted(self, method, *args, **kwargs):
        if method == "list_objects_v2" and kwargs.get("MaxKeys") == 2:     # ours, not isdir's
            requests.append(kwargs["Prefix"])
        return await call(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", counted)
    monkeypatch.setattr(stores, "LIST_PAGE", 2)
    listed = stores.pairs("s3://fastanon-in/order", "s3://fastanon-out/order")
    first = next(listed)
    assert first == ("s3://fastanon-in/order/B.dcm", "s3://fastanon-out/order/B.dcm", "B.dcm")
    assert requests == ["order/"]                        # one page so far, not the whole prefix
    rest = [rel for _, _, rel in listed]
    assert [first[2], *rest] == local
    assert requests.count("order/flat/") == 5            # 9 keys, 2 a page
