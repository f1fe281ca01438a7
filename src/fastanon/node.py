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
        self.stored = lambda path, association: None    # told of each object written
        for folder in (self.out, self.quarantine, self.spool):
            os.makedirs(folder, exist_ok=True)
        os.chmod(self.quarantine, 0o700)         # identifying data: this user's only

    def store(self, event) -> int:
        """The C-STORE handler: the status to answer."""
        name = uuid.uuid4().hex
        spooled = os.path.join(self.spool, name + ".dcm")
        try:        # not flushed: until it is acknowledged, the sender holds the object
            _write(spooled, event.encoded_dataset(include_meta=True))
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
            self.stored(outcome.dst, event.assoc)
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


def _write(path: str, data: bytes, durably: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durably:
            os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: str, data: bytes) -> None:
    _write(path, data, durably=True)


def _flush(path: str) -> None:
    """The file and the folder entry that names it on disk (an acknowledged object survives a
    power cut)."""
    for target, flags in ((path, os.O_RDONLY), (os.path.dirname(path), os.O_RDONLY)):
        fd = os.open(target, flags | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- forwarding ---------------------------------------------------------------------------------

RETRY_SECONDS = (1, 2, 5, 10, 30)        # waits between attempts to reach the destination
IDLE_SECONDS = 5.0                       # an association with nothing to send is released
MAX_CONTEXTS = 128                       # presentation contexts an association may propose
_ACCEPTED = {0x0000, 0xB000, 0xB006, 0xB007}    # success, and its warnings (PS3.4 B.2.3)


def parse_destination(text: str) -> tuple[str, str, int]:
    """(AE title, host, port) from AET@HOST:PORT; a ValueError saying what is wrong."""
    aet, at, address = text.partition("@")
    host, colon, port = address.rpartition(":")
    if not (at and colon and aet and host and port.isdigit() and 0 < int(port) < 65536
            and len(aet) <= 16):
        raise ValueError(f"{text!r}: expected AET@HOST:PORT (an AE title of 1 to 16 "
                         "characters)")
    return aet, host, int(port)


class Claims:
    """The queued objects being sent: each by one forwarder at a time, so none goes twice."""

    def __init__(self):
        self.lock = threading.Lock()
        self.paths: set = set()

    def take(self, path: str) -> bool:
        with self.lock:
            if path in self.paths:
                return False
            self.paths.add(path)
            return True

    def give_back(self, paths) -> None:
        with self.lock:
            self.paths.difference_update(paths)


class Forwarder(threading.Thread):
    """Sends queued objects to the destination, each as the bytes written (in the syntax it
    arrived in); one leaves the queue only once the destination has acknowledged it, and a
    destination that refuses one (a failure status) sends it to the quarantine folder, with the
    status. This one sends whatever is in the queue and no other forwarder is sending: what a
    stopped node left (objects wait there across a restart) and what a calling association's
    forwarder handed back."""

    # How often the queue is looked at unasked (it is when objects are handed back, and while
    # the destination is down, at each retry).
    POLL_SECONDS = 60.0

    def __init__(self, queue: str, destination: tuple[str, str, int], ae_title: str,
                 quarantine: str, stop: threading.Event, claims: Claims, counts: dict,
                 tls=None, name: str = "fastanon-forward"):
        super().__init__(name=name, daemon=True)
        self.queue, self.destination, self.ae_title = queue, destination, ae_title
        self.quarantine, self.stop, self.claims, self.counts = quarantine, stop, claims, counts
        self.tls = tls                       # an ssl context for the destination, or None
        self.wake = threading.Event()
        self._offered: set = set()           # (SOP class, syntax) the destination accepted
        self._proposed: set = set()
        self._held: list = []               # what this one claimed, given back when done

    def run(self) -> None:
        from pynetdicom import _config

        _config.STORE_SEND_CHUNKED_DATASET = True      # the file's bytes, never re-encoded
        association, failures, idle_since = None, 0, time.monotonic()
        try:
            while not self.stop.is_set():
                pending = self._pending()
                if not pending:
                    if self._done():
                        break
                    if association is not None and time.monotonic() - idle_since > IDLE_SECONDS:
                        association.release()
                        association = None
                    self.wake.wait(self.POLL_SECONDS)
                    self.wake.clear()
                    continue
                contexts = self._wanted(pending)
                if association is None or not association.is_established \
                        or not contexts <= self._proposed:
                    if association is not None and association.is_established:
                        association.release()
                    association = self._associate(contexts)
                    if association is None:
                        if self._unreachable():
                            break
                        self.stop.wait(RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)])
                        failures += 1
                        continue
                failures = 0
                for path, context in pending:
                    if self.stop.is_set():
                        break
                    if context not in self._offered:
                        if context in self._proposed:   # proposed, the destination said no
                            self._refused(path, f"the destination does not accept "
                                                f"{context[0]} in {context[1]}")
                            continue
                        break                       # the next association proposes it
                    if not self._send(association, path):    # lost, or no room there
                        if association.is_established:
                            association.abort()
                        association = None          # reached again after a wait
                        self.stop.wait(RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)])
                        failures += 1
                        break
                idle_since = time.monotonic()
        finally:
            if association is not None and association.is_established:
                association.release()
            self._finish()

    def _pending(self) -> list[tuple[str, tuple[str, str]]]:
        """(path, (SOP class, transfer syntax)) of the queue's complete objects that no other
        forwarder is sending, in order."""
        self.claims.give_back(self._held)
        self._held = []
        found = []
        for folder, dirs, files in os.walk(self.queue):
            dirs.sort()
            for name in sorted(files):
                if name.startswith(".") or not name.endswith(".dcm"):
                    continue            # a temporary name: not complete yet
                path = os.path.join(folder, name)
                if not self.claims.take(path):
                    continue
                self._held.append(path)
                context = _context(path)
                if context is not None:
                    found.append((path, context))
        return found

    def _wanted(self, pending: list) -> set:
        """The presentation contexts to propose for pending."""
        contexts: list = []
        for _, context in pending:
            if context not in contexts:
                contexts.append(context)
        return set(contexts[:MAX_CONTEXTS])

    def _done(self) -> bool:
        return False                    # until the node stops

    def _unreachable(self) -> bool:
        """The destination was not reached: True to stop trying here (False: wait, retry)."""
        return False

    def _settled(self, path: str) -> None:
        """path left the queue (sent, or refused by the destination)."""

    def _finish(self) -> None:
        self.claims.give_back(self._held)

    def _associate(self, contexts: set):
        from pynetdicom import AE, evt

        ae = AE(self.ae_title)
        for sop_class, syntax in sorted(contexts):
            ae.add_requested_context(sop_class, syntax)
        aet, host, port = self.destination
        try:
            association = ae.associate(host, port, ae_title=aet,
                                       tls_args=(self.tls, host) if self.tls else None,
                                       evt_handlers=[(evt.EVT_CONN_OPEN, _no_delay)])
        except OSError:             # ssl.SSLError among them: a certificate not trusted
            association = None
        if association is None or not association.is_established:
            _LOG.warning("destination %s@%s:%d not reached; objects wait in the queue", aet,
                         host, port)
            return None
        self._offered = {(str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
                         for cx in association.accepted_contexts}
        self._proposed = set(contexts)
        return association

    def _send(self, association, path: str) -> bool:
        """Send one object; False when the association is lost (the object stays queued)."""
        try:
            status = association.send_c_store(path)
        except (OSError, RuntimeError, ValueError, AttributeError) as exc:
            _LOG.warning("forwarding stopped (%s); the object stays queued", type(exc).__name__)
            return False
        if "Status" not in status:
            return False                        # no answer: sent again later
        code = int(status.Status)
        if code in _ACCEPTED:
            os.unlink(path)
            _prune(os.path.dirname(path), self.queue)
            self._count("forwarded")
            self._settled(path)
        elif 0xA700 <= code <= 0xA7FF:          # out of resources: the same object later
            return False
        else:
            self._refused(path, f"status 0x{code:04X}")
        return True

    def _refused(self, path: str, why: str) -> None:
        name = uuid.uuid4().hex
        os.replace(path, os.path.join(self.quarantine, name + ".dcm"))
        _write_durably(os.path.join(self.quarantine, name + ".txt"),
                       f"refused by the destination: {why}\n".encode())
        _prune(os.path.dirname(path), self.queue)
        self._count("refused by the destination")
        self._settled(path)

    def _count(self, what: str) -> None:
        with self.claims.lock:
            self.counts[what] = self.counts.get(what, 0) + 1


class AssociationForwarder(Forwarder):
    """The forwarding of one calling association: its objects, in the order they came, over an
    association of its own to the destination (proposing the contexts the caller's association
    accepted), kept while the caller's is open. When the caller has gone and all is sent, it
    ends; when the caller has gone and the destination cannot be reached, what is left is handed
    back to the queue's forwarder (the node's), which retries with backoff."""

    POLL_SECONDS = 0.2

    def __init__(self, caller_contexts: set, handed_back, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.caller_contexts = caller_contexts
        self.handed_back = handed_back          # called when objects go back to the queue's
        self.closed = threading.Event()         # the calling association has ended
        self._items: list = []                  # (path, context), in order
        self._lock = threading.Lock()

    def add(self, path: str) -> None:
        """An object the caller sent is queued (written and flushed): this one sends it, unless
        another forwarder is sending it already (sent twice by the caller)."""
        context = _context(path)
        if context is None or not self.claims.take(path):
            return
        with self._lock:
            self._items.append((path, context))
        self.wake.set()

    def _pending(self) -> list:
        with self._lock:
            return list(self._items)

    def _wanted(self, pending: list) -> set:
        wanted = super()._wanted(pending)
        for context in sorted(self.caller_contexts):
            if len(wanted) >= MAX_CONTEXTS:
                break
            wanted.add(context)
        return wanted

    def _done(self) -> bool:
        return self.closed.is_set()

    def _unreachable(self) -> bool:
        if not self.closed.is_set():
            return False
        self._finish()
        return True

    def _settled(self, path: str) -> None:
        with self._lock:
            self._items = [item for item in self._items if item[0] != path]
        self.claims.give_back((path,))

    def _finish(self) -> None:
        with self._lock:
            left, self._items = [path for path, _ in self._items], []
        if left:
            self.claims.give_back(left)
            self.handed_back()


def _context(path: str) -> tuple[str, str] | None:
    """(SOP class, transfer syntax) of a queued object, from its file meta."""
    from pydicom.filereader import read_file_meta_info

    try:
        meta = read_file_meta_info(path)
        return str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)
    except (OSError, AttributeError, ValueError):
        return None


class Forwarding:
    """The node's forwarding: a forwarder for each calling association that sends objects,
    and one for the queue (what a restart found there, what was handed back)."""

    def __init__(self, queue: str, destination: tuple[str, str, int], ae_title: str,
                 quarantine: str, tls=None):
        self.stop = threading.Event()
        self.claims = Claims()
        self.counts = {"forwarded": 0, "refused by the destination": 0}
        self.args = (queue, destination, ae_title, quarantine, self.stop, self.claims,
                     self.counts, tls)
        self.queue = Forwarder(*self.args)
        self.by_association: dict = {}          # calling association → its forwarder
        self.forwarders: list = []              # theirs, also of those that have ended
        self.lock = threading.Lock()
        self.queue.start()

    def stored(self, path: str, association) -> None:
        """An object the calling association sent is written to the queue."""
        with self.lock:
            forwarder = self.by_association.get(association)
            if forwarder is None:
                contexts = {(str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
                            for cx in getattr(association, "accepted_contexts", ())
                            if str(cx.abstract_syntax) != _VERIFICATION}
                self.forwarders = [f for f in self.forwarders if f.is_alive()]
                forwarder = AssociationForwarder(
                    contexts, self.queue.wake.set, *self.args,
                    name=f"fastanon-forward-{len(self.forwarders) + 1}")
                self.by_association[association] = forwarder
                self.forwarders.append(forwarder)
                forwarder.start()
        forwarder.add(path)

    def ended(self, event) -> None:
        """A calling association's connection closed: its forwarder ends once it has sent what
        it holds."""
        with self.lock:
            forwarder = self.by_association.pop(event.assoc, None)
        if forwarder is not None:
            forwarder.closed.set()
            forwarder.wake.set()

    def close(self, seconds: float) -> None:
        """Stop sending; what is not sent stays queued on disk."""
        self.stop.set()
        with self.lock:
            forwarders = [self.queue, *self.forwarders]
        for forwarder in forwarders:
            forwarder.wake.set()
        deadline = time.monotonic() + seconds
        for forwarder in forwarders:
            forwarder.join(max(0.0, deadline - time.monotonic()))


_VERIFICATION = "1.2.840.10008.1.1"


def _no_delay(event) -> None:
    """Each PDU goes out at once (TCP_NODELAY): with Nagle's algorithm the last segment of an
    object waits for the peer's delayed acknowledgment, some 40 ms an object."""
    import socket

    connection = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if connection is not None:
        try:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def _prune(folder: str, top: str) -> None:
    """Remove the empty folders from folder up to (not including) top."""
    while os.path.abspath(folder) != os.path.abspath(top):
        try:
            os.rmdir(folder)
        except OSError:
            return
        folder = os.path.dirname(folder)


def tls_context(cert: str, key: str, clients_ca: str | None = None):
    """The server side of TLS 1.2 or later: this node's certificate and key; with clients_ca,
    only callers holding a certificate it signed get in."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if clients_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(clients_ca)
    return context


def forward_tls_context(ca: str | None = None, cert: str | None = None,
                        key: str | None = None):
    """The client side of TLS 1.2 or later towards the destination: its certificate checked
    against ca (else the system's authorities) and its host name; with cert and key, this
    node's own certificate for a destination that asks for one."""
    import ssl

    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        context.load_cert_chain(cert, key)
    return context


def serve(node: Node, host: str, port: int, ae_title: str, allow: tuple[str, ...] = (),
          stop: threading.Event | None = None, ready=None, max_pdu: int = 0,
          max_associations: int = 10, forward: tuple[str, str, int] | None = None,
          tls=None, forward_tls=None) -> dict:
    """Accept associations until stop is set (SIGTERM), then let those in flight finish (up to
    DRAIN_SECONDS); returns the counts. ready(port) is called once listening. With forward,
    what is written goes on to that destination (Forwarding: over an association of its own
    for each calling association), the node's folder its queue; with
    tls (tls_context), associations come over TLS only; with forward_tls
    (forward_tls_context), they go to the destination over TLS. max_pdu: the largest PDU this node
    receives (0: no limit); max_associations: how many at once."""
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
    forwarding = None
    handlers = [(evt.EVT_C_STORE, node.store), (evt.EVT_CONN_OPEN, _no_delay)]
    if forward is not None:
        forwarding = Forwarding(node.out, forward, ae_title, node.quarantine, forward_tls)
        node.stored = forwarding.stored
        handlers.append((evt.EVT_CONN_CLOSE, forwarding.ended))
    server = ae.start_server((host, port), block=False, ssl_context=tls, evt_handlers=handlers)
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
        if forwarding is not None:              # what is not sent yet stays queued on disk
            forwarding.close(DRAIN_SECONDS)
    counts = dict(node.counts)
    if forwarding is not None:
        counts.update(forwarding.counts)
    return counts
