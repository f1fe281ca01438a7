"""`fastanon listen`: a DICOM node (a Storage SCP) that anonymizes every object it receives.

A modality or a PACS sends objects with C-STORE; each one arrives as the bytes the peer encoded
(never decoded here), is spooled to disk under a random name, goes through the pipeline exactly
as a file of `fastanon run --rename` does (batch.process_items: the same keyed UIDs, so a study
sent over the network and the same bytes run from disk give the same outputs), and is written to
OUT/<study>/<series>/<sop>.dcm atomically and flushed to disk. Only then is the object
acknowledged (status 0x0000): an object this node has acknowledged is on disk. An object it
refuses (malformed, not what the policy can write) gets a failure status (0xC000, "cannot
understand") and is moved, with a file saying why, to the quarantine folder, which holds
identifying data and lives apart from OUT; the association goes on with the next object.
Nothing identifying is logged: the log names objects by their spool names only.

pynetdicom is the network layer (`pip install 'fastanon[net]'`); nothing here is imported by
`fastanon run`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid

from . import batch

STATUS_OK = 0x0000
STATUS_CANNOT_UNDERSTAND = 0xC000        # PS3.4 Table GG.4-1: Error, cannot understand
STATUS_OUT_OF_RESOURCES = 0xA700         # ... Refused: out of resources (the disk)
DRAIN_SECONDS = 30                       # SIGTERM: how long in-flight associations may finish
_LOG = logging.getLogger("fastanon.node")


class Node:
    """What the C-STORE handler needs: the run's job (with --rename), where outputs, spooled
    inputs and refused objects go, and the audit."""

    def __init__(self, job: batch.Job, out: str, quarantine: str, audit=None):
        self.job = job.replace(rename=True, workers=1)
        self.out, self.quarantine = os.path.abspath(out), os.path.abspath(quarantine)
        self.spool = os.path.join(self.quarantine, ".incoming")
        self.token = uuid.uuid4().hex
        self.audit = audit
        self.lock = threading.RLock()
        self.counts = {"stored": 0, "refused": 0}
        for folder in (self.out, self.quarantine, self.spool):
            os.makedirs(folder, exist_ok=True)
        os.chmod(self.quarantine, 0o700)         # identifying data: this user's only

    def store(self, event) -> int:
        """The C-STORE handler: the status to answer."""
        name = uuid.uuid4().hex
        spooled = os.path.join(self.spool, name + ".dcm")
        try:
            _write_durably(spooled, event.encoded_dataset(include_meta=True))
        except OSError as exc:
            _LOG.error("object %s: cannot be spooled (%s)", name, exc.strerror)
            return STATUS_OUT_OF_RESOURCES
        with self.lock:     # one object at a time (the GIL would anyway; warnings are global)
            outcome = batch.process_items(self.token, self.job, self.out, True,
                                          [(spooled, self.out, name)])[0]
        if outcome.status in ("written", "exists"):
            try:
                _flush(outcome.dst)
            except OSError as exc:
                _LOG.error("object %s: output not flushed (%s)", name, exc.strerror)
                return STATUS_OUT_OF_RESOURCES
            os.unlink(spooled)
            self._count("stored", outcome)
            return STATUS_OK
        os.replace(spooled, os.path.join(self.quarantine, name + ".dcm"))
        _write_durably(os.path.join(self.quarantine, name + ".txt"),
                       (outcome.reason.replace(spooled, name + ".dcm") + "\n").encode())
        _LOG.warning("object %s: refused, quarantined", name)
        self._count("refused", outcome)
        return STATUS_CANNOT_UNDERSTAND

    def _count(self, what: str, outcome) -> None:
        with self.lock:
            self.counts[what] += 1
            if self.audit is not None:
                self.audit.add(outcome)


def _write_durably(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _flush(path: str) -> None:
    """The file and the folder entry that names it on disk (an acknowledged object survives a
    power cut)."""
    for target, flags in ((path, os.O_RDONLY), (os.path.dirname(path), os.O_RDONLY)):
        fd = os.open(target, flags | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def serve(node: Node, host: str, port: int, ae_title: str, allow: tuple[str, ...] = (),
          stop: threading.Event | None = None, ready=None, max_pdu: int = 0,
          max_associations: int = 10) -> dict:
    """Accept associations until stop is set (SIGTERM), then let those in flight finish (up to
    DRAIN_SECONDS); returns the counts. ready(port) is called once listening."""
    from pynetdicom import ALL_TRANSFER_SYNTAXES, AE, AllStoragePresentationContexts, evt
    from pynetdicom.sop_class import Verification

    # Of the syntaxes a sender proposes the first here is taken: Explicit VR Little Endian first
    # among the uncompressed ones (as dcmtk's storescp), any compressed one as it comes.
    first = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1.99",
             "1.2.840.10008.1.2.2"]
    syntaxes = first + [uid for uid in ALL_TRANSFER_SYNTAXES if uid not in first]
    ae = AE(ae_title)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, syntaxes)
    ae.add_supported_context(Verification)
    if allow:
        ae.require_calling_aet = list(allow)
    ae.maximum_pdu_size = max_pdu
    ae.maximum_associations = max_associations
    server = ae.start_server((host, port), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, node.store)])
    stop = stop or threading.Event()
    try:
        if ready is not None:
            ready(server.server_address[1])
        while not stop.wait(0.2):
            pass
    finally:
        server.shutdown()                   # no new association; those open go on
        deadline = time.monotonic() + DRAIN_SECONDS
        while server.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        for association in server.active_associations:
            association.abort()
    return dict(node.counts)
