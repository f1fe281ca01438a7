"""Forked worker processes (Linux): chunks of items out over a pipe, results back over another.

A run's parent forks its workers once it holds everything they need (the compiled plan, the
modules, warm caches), so a worker starts in about a millisecond and never imports or builds
anything; multiprocessing's pool costs some 60 ms before its first result (its own imports,
pickling, a feeder thread). Items and results travel as marshal frames (a length, then the
bytes). `ordered` hands chunks to whichever worker is free, at most `window` chunks ahead of
the one the caller waits for, and yields the results in the order of the chunks.

A worker that dies (killed, SIGBUS on an input cut short while mapped) closes its pipe: the run
learns it at once and raises Lost; a worker never outlives the generator (closed, or dropped by
an exception, it stops and waits for them).
"""

from __future__ import annotations

import marshal
import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

_LENGTH = struct.Struct("<Q")


class Lost(OSError):
    """A worker process ended before it gave back the results of the chunks it held."""


class _Worker:
    __slots__ = ("held", "outbox", "pid", "receive", "send")

    def __init__(self, pid: int, send: int, receive: int):
        self.pid, self.send, self.receive = pid, send, receive
        self.held: list[int] = []       # numbers of the chunks sent and not yet answered
        self.outbox = b""               # the part of a chunk's frame the pipe did not take yet


def chunked(items: Iterable, size: int) -> Iterator[list]:
    """items in lists of size (the last one shorter): what ordered() hands out."""
    from itertools import islice

    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def ordered(count: int, work: Callable[[list], list], chunks: Iterable[list],
            window: int) -> Iterator[list]:
    """work(chunk) for every chunk, in count forked processes; the results in chunk order.
    The parent never blocks on a worker's full pipe (its ends are non-blocking, and what a pipe
    does not take waits in an outbox), so a worker answering and a parent sending cannot wait
    for each other."""
    import select  # with workers only

    workers: list[_Worker] = []
    try:
        for _ in range(count):
            workers.append(_start(work, workers))
        by_fd = {worker.receive: worker for worker in workers}
        by_fd.update((worker.send, worker) for worker in workers)
        chunks = iter(chunks)
        results: dict[int, list] = {}   # answered ahead of the one waited for
        sent = waited = 0
        more = True
        while True:
            for worker in workers:      # every free worker gets a chunk, within the window
                while more and len(worker.held) < 2 and sent - waited < window:
                    chunk = next(chunks, None)
                    if chunk is None:
                        more = False
                        break
                    worker.outbox += _LENGTH.pack(len(frame := marshal.dumps(chunk))) + frame
                    worker.held.append(sent)
                    sent += 1
                if worker.outbox:
                    _send(worker)
            while waited in results:
                yield results.pop(waited)
                waited += 1
            if waited == sent and not more:
                return
            readable, writable, _ = select.select(
                [w.receive for w in workers if w.held], [w.send for w in workers if w.outbox], [])
            for fd in writable:
                _send(by_fd[fd])
            for fd in readable:
                worker = by_fd[fd]
                frame = _read(fd)
                if frame is None:
                    raise Lost(5, f"worker process {worker.pid} ended before it answered")
                results[worker.held.pop(0)] = marshal.loads(frame)
    finally:
        _stop(workers)


def _send(worker: _Worker) -> None:
    """As much of the outbox as the worker's pipe takes now."""
    try:
        done = os.write(worker.send, worker.outbox)
    except BlockingIOError:
        return
    except BrokenPipeError:             # the worker died: its results pipe tells the rest
        worker.outbox = b""
        return
    worker.outbox = worker.outbox[done:]


def _start(work: Callable[[list], list], others: list[_Worker]) -> _Worker:
    """Fork one worker; it reads chunks until its pipe closes and answers each."""
    to_child, from_parent = os.pipe()[::-1]     # (write end, read end)
    from_child, to_parent = os.pipe()
    pid = os.fork()
    if pid == 0:                                # the worker
        status = 1
        try:
            for worker in others:               # the others' pipes: their EOF is theirs
                os.close(worker.send)
                os.close(worker.receive)
            os.close(to_child)
            os.close(from_child)
            _quiet_signals()
            while (frame := _read(from_parent)) is not None:
                _write(to_parent, marshal.dumps(work(marshal.loads(frame))))
            status = 0
        finally:
            os._exit(status)
    os.close(from_parent)
    os.close(to_parent)
    os.set_blocking(to_child, False)
    return _Worker(pid, to_child, from_child)


def _quiet_signals() -> None:
    """Ctrl-C is the parent's to handle (it stops the workers and sweeps temporary files);
    SIGTERM ends a worker at once."""
    try:
        import _signal as signals
    except ImportError:
        import signal as signals
    signals.signal(signals.SIGINT, signals.SIG_IGN)
    signals.signal(signals.SIGTERM, signals.SIG_DFL)


def _stop(workers: list[_Worker]) -> None:
    """Close the pipes (a worker between chunks ends), stop those still working, reap all."""
    busy = [worker for worker in workers if worker.held]
    for worker in workers:
        for fd in (worker.send, worker.receive):
            try:
                os.close(fd)
            except OSError:
                pass
    for worker in busy:                 # stopped mid-chunk: its temporary file is swept
        try:
            os.kill(worker.pid, 15)
        except ProcessLookupError:
            pass
    for worker in workers:
        while True:
            try:
                os.waitpid(worker.pid, 0)
                break
            except ChildProcessError:
                break
            except InterruptedError:
                continue


def _write(fd: int, data: bytes) -> None:
    view = memoryview(_LENGTH.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read(fd: int) -> bytes | None:
    """One frame, or None at the end of the pipe."""
    head = _exactly(fd, _LENGTH.size)
    if head is None:
        return None
    size = _LENGTH.unpack(head)[0]
    body = _exactly(fd, size)
    if body is None:
        return None
    return body


def _exactly(fd: int, size: int) -> bytes | None:
    chunks, done = [], 0
    while done < size:
        chunk = os.read(fd, size - done)
        if not chunk:
            return None
        chunks.append(chunk)
        done += len(chunk)
    return b"".join(chunks)
