"""fastanon on a Dask cluster: the files of a run as tasks, the same outcomes as a local run.

New UIDs, date shifts and pseudonyms are keyed functions of the values, so workers on any machine
agree without sharing a mapping, and the outputs are the bytes a local run with the same key
writes. The client walks SRC as a local run does (streamed), hands the files to the cluster in
tasks of up to TASK_FILES (batch.process_items: the pipeline, once per file, on the worker), keeps a
bounded number of tasks in flight and takes their outcomes back in the walk's order, so that
progress, the audit and the mapping file, the summary and the exit status are a local run's
(batch.run does all of that). A worker lost mid-task loses nothing: Dask runs the task again
elsewhere; each output appears only complete (a temporary name, then a rename), and an output
already there is kept (a rerun completes an interrupted run).

SRC and DST are paths every worker sees the same (one machine, or a shared file system), or
URLs of an object store (s3://bucket/prefix: stores.py) that every worker can reach.
`pip install fastanon[dask]` brings dask.distributed; nothing here is imported by a local run.

    fastanon run --dask local:4 SRC DST           # a LocalCluster of 4 worker processes
    fastanon run --dask tcp://scheduler:8786 SRC DST
"""

from __future__ import annotations

import os
from collections import deque

from . import batch
from .errors import FastanonError
from .pipeline import sweep_temp
from .stores import in_process, is_url

TASK_FILES = 64         # files per task at most (~0.1 s of work: Dask's overhead is some ms)
FIRST_TASK_FILES = 4    # the first tasks are smaller (then twice as large each): a short run
                        # is spread over the workers too
TASKS_PER_THREAD = 3    # tasks in flight for each worker thread of the cluster
CONNECT_SECONDS = 10    # how long a scheduler's address may take to answer


def run(src, dst, policy="research", *, key: bytes | str | None = None, client=None,
        address: str | None = None, job: batch.Job | None = None, on_outcome=None,
        audit=None, mapping=None, **options) -> batch.Summary:
    """Anonymize src into dst on a Dask cluster: client (a distributed.Client), else address
    ("local", "local:N" for a LocalCluster of N worker processes here, or a scheduler's
    "tcp://host:8786"). The options are batch.Job's (masks, overwrite, rename, ...), or job
    gives them all. Returns the run's Summary, as batch.run does."""
    for where in (src, dst):
        if in_process(os.fspath(where)):
            raise FastanonError(f"{where}: a memory:// store is this process's own; a cluster's "
                                "workers cannot reach it")
    if job is None:
        job = batch.Job(policy=policy, key=_key(key), preset_name=policy if isinstance(
            policy, str) else "custom", **options)
    try:
        with _client(client, address or "local") as connected:
            return batch.run(src, dst, job, on_outcome, audit, mapping,
                             spread=lambda *args: _spread(connected, *args))
    except BaseException:
        if client is None:      # the cluster made here is closed: its workers' files are swept
            _sweep(os.fspath(dst))
        raise


def _sweep(dst: str) -> None:
    """Remove the temporary files of this host's processes that ended mid-write (other hosts'
    are for their own runs to sweep; objects are put whole and leave none)."""
    if not is_url(dst):
        sweep_temp(dst if os.path.isdir(dst) else os.path.dirname(dst) or ".", recursive=True)


def _key(key: bytes | str | None) -> bytes:
    if key is None:
        return b""
    return key.encode("utf-8") if isinstance(key, str) else bytes(key)


class _client:  # noqa: N801  (a context manager used like a function)
    """The client given, or one to the cluster at address (a LocalCluster: started and closed
    with the block)."""

    def __init__(self, client, address: str):
        self.given, self.address = client, address
        self.made: list = []

    def __enter__(self):
        if self.given is not None:
            return self.given
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise FastanonError("--dask needs dask.distributed: pip install 'fastanon[dask]'") \
                from None
        address = self.address
        if address == "local" or address.startswith("local:"):
            count = address.partition(":")[2]
            if count and not (count.isdigit() and int(count) > 0):
                raise FastanonError(f"--dask {address}: expected local or local:N (N workers)")
            workers = int(count) if count else batch.cpu_count()
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            self.made.append(cluster)
            client = Client(cluster)
        else:
            try:
                client = Client(address, timeout=CONNECT_SECONDS)
            except OSError as exc:
                raise FastanonError(f"--dask {address}: no scheduler answers ({exc})") from None
        self.made.insert(0, client)
        return client

    def __exit__(self, *exc) -> None:
        for made in self.made:          # the client, then the cluster it ran on
            made.close()


def _growing(items):
    """items in lists of FIRST_TASK_FILES, twice as many each time, up to TASK_FILES."""
    size, chunk = FIRST_TASK_FILES, []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk, size = [], min(size * 2, TASK_FILES)
    if chunk:
        yield chunk


def _spread(client, src: str, dst: str, job: batch.Job, tree: bool):
    """The outcomes of the run's files, run on the cluster in tasks, in the walk's order."""
    # The workers compile a job's plan once each, and keep it for the next run of the same job.
    import hashlib
    import pickle

    token = hashlib.sha256(pickle.dumps((job, dst, tree))).hexdigest()
    threads = sum(client.nthreads().values()) or 1
    shared = client.scatter(job, broadcast=True, hash=False)   # sent once, not with each task
    in_flight: deque = deque()
    try:
        for chunk in _growing(batch.pairs(src, dst)):
            in_flight.append(client.submit(batch.process_items, token, shared, dst, tree, chunk,
                                           pure=False, retries=3))
            while len(in_flight) >= threads * TASKS_PER_THREAD:
                yield from in_flight.popleft().result()
        while in_flight:
            yield from in_flight.popleft().result()
        _sweep(dst)     # a worker lost mid-file (its task ran again elsewhere) left one
    finally:
        if in_flight:                   # stopped early: what has not run does not start
            client.cancel(list(in_flight))
