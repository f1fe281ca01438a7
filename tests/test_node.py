"""`fastanon listen` with real peers on 127.0.0.1: dcmtk's storescu sends, the outputs are those of
`fastanon run --rename` with the same key; refused objects are quarantined, strangers rejected."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pydicom

import fastanon
from fastanon import batch
from test_cli import KEY, tree_hashes, write_tree

pytest.importorskip("pynetdicom", reason="fastanon[net] is not installed")
def dcmtk(name: str) -> str | None:
    """dcmtk's program of that name: pynetdicom installs Python apps of the same names, which
    may come first on PATH."""
    for folder in ["/usr/bin", *os.environ.get("PATH", "").split(os.pathsep)]:
        path = shutil.which(name, path=folder)
        if path is None:
            continue
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30,
                              check=False)
        if "dcmtk" in done.stdout + done.stderr:
            return path
    return None


STORESCU = dcmtk("storescu")
needs_dcmtk = pytest.mark.skipif(STORESCU is None, reason="dcmtk's storescu is not installed")


class Listening:
    """`python -m fastanon listen` on a free port, stopped with SIGTERM."""

    def __init__(self, out: Path | None, *options: str):
        self.out = out
        where = ["--out", str(out)] if out is not None else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastanon", "listen", "--port", "0", "--key", KEY, *where,
             *options],
            stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()          # "... on 127.0.0.1:PORT, writing to ..."
        found = re.search(r":(\d+), (writing|forwarding)", line)
        assert found, line + self.proc.stderr.read()
        self.port = int(found.group(1))

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _, rest = self.proc.communicate(timeout=60)
        return self.proc.returncode, rest


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("study") / "src"
    write_tree(root, count=12)
    return root


def _valid(study: Path) -> list[Path]:
    return sorted(p for p in study.rglob("IM*.dcm"))


def _storescu(port: int, files: list[Path], calling: str = "STORESCU") -> subprocess.CompletedProcess:
    """storescu sends files, in the syntax they are in (explicit VR little endian: -xe, so
    that it converts nothing)."""
    return subprocess.run([STORESCU, "-xe", "-aet", calling, "-aec", "FASTANON", "127.0.0.1",
                           str(port), *map(str, files)], capture_output=True, text=True,
                          timeout=120, check=False)


@needs_dcmtk
def test_a_study_sent_by_storescu_is_what_run_writes(study, tmp_path):
    node = Listening(tmp_path / "out", "--audit", str(tmp_path / "audit.csv"))
    sent = _storescu(node.port, _valid(study))
    code, said = node.stop()
    assert sent.returncode == 0, sent.stderr
    assert code == 0 and "12 stored, 0 refused" in said
    batch.run(study, tmp_path / "run", batch.Job(key=KEY.encode(), rename=True, workers=1))
    assert tree_hashes(tmp_path / "out") == tree_hashes(tmp_path / "run")
    rows = (tmp_path / "audit.csv").read_text().splitlines()
    assert len(rows) == 13 and all(",written," in row for row in rows[1:])
    assert "DOE" not in (tmp_path / "audit.csv").read_text()      # nothing identifying
    # Sent again: the outputs are there, acknowledged, unchanged.
    node = Listening(tmp_path / "out")
    assert _storescu(node.port, _valid(study)[:3]).returncode == 0
    assert node.stop()[0] == 0
    assert tree_hashes(tmp_path / "out") == tree_hashes(tmp_path / "run")


@needs_dcmtk
def test_a_calling_ae_title_not_allowed_is_rejected(study, tmp_path):
    node = Listening(tmp_path / "out", "--allow", "MODALITY1")
    refused = _storescu(node.port, _valid(study)[:1], calling="STRANGER")
    accepted = _storescu(node.port, _valid(study)[:1], calling="MODALITY1")
    code, _ = node.stop()
    assert refused.returncode != 0 and "reject" in (refused.stdout + refused.stderr).lower()
    assert accepted.returncode == 0 and code == 0
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 1


def test_a_malformed_object_is_refused_and_quarantined_and_the_rest_goes_on(study, tmp_path,
                                                                              monkeypatch):
    from pynetdicom import AE, _config

    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)    # the file's own bytes
    from pynetdicom.sop_class import CTImageStorage
    from pydicom.uid import ExplicitVRLittleEndian

    node = Listening(tmp_path / "out", "--quarantine", str(tmp_path / "held"))
    ae = AE("SENDER")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="FASTANON")
    assert assoc.is_established
    try:        # the file's bytes as they are: its Pixel Data runs past the end
        broken = assoc.send_c_store(str(study / "DOE_JANE" / "broken.dcm"))
        good = assoc.send_c_store(str(_valid(study)[0]))
    finally:
        assoc.release()
    code, said = node.stop()
    assert 0xC000 <= broken.Status <= 0xCFFF
    assert good.Status == 0x0000 and code == 0 and "1 stored, 1 refused" in said
    held = sorted((tmp_path / "held").iterdir())
    reasons = [p for p in held if p.suffix == ".txt"]
    assert len(reasons) == 1 and "runs past the end" in reasons[0].read_text()
    assert [p.suffix for p in held if p.is_file()].count(".dcm") == 1
    assert not list((tmp_path / "held" / ".incoming").iterdir())
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 1


def test_sigterm_lets_an_association_in_flight_finish(study, tmp_path):
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage
    from pydicom.uid import ExplicitVRLittleEndian

    node = Listening(tmp_path / "out")
    ae = AE("SENDER")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="FASTANON")
    assert assoc.is_established
    node.proc.send_signal(signal.SIGTERM)           # stops accepting; this one goes on
    time.sleep(0.5)
    statuses = [assoc.send_c_store(str(path)).Status for path in _valid(study)[:4]]
    assoc.release()
    _, said = node.proc.communicate(timeout=60)
    assert node.proc.returncode == 0 and statuses == [0, 0, 0, 0]
    assert "4 stored" in said
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 4


# --- forwarding to dcmtk's storescp ------------------------------------------------------------

STORESCP = dcmtk("storescp")
needs_both = pytest.mark.skipif(STORESCU is None or STORESCP is None,
                                reason="dcmtk's storescu and storescp are not installed")


def _free_port() -> int:
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return free.getsockname()[1]


class Destination:
    """dcmtk's storescp on 127.0.0.1: every object it receives kept as it came (+B), each in a
    file of its own (+uf: an object received twice is two files)."""

    def __init__(self, folder: Path, port: int, log: Path | None = None):
        """With log: its log there, and a process for each association (--fork), so that
        associations go on at once, as a PACS takes them."""
        folder.mkdir(exist_ok=True)
        self.folder = folder
        out = open(log, "w") if log is not None else subprocess.DEVNULL    # noqa: SIM115
        options = ["-v", "--fork"] if log is not None else []
        self.proc = subprocess.Popen([STORESCP, *options, "-aet", "DEST", "+B", "+uf", "-od",
                                      str(folder), str(port)], stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        if log is not None:
            out.close()             # the child holds its own copy
        deadline = time.monotonic() + 30
        import socket

        while time.monotonic() < deadline:      # listening?
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("storescp did not start")

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)    # and the children of --fork
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)


def _until(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _datasets(paths) -> dict[str, bytes]:
    """{SOP Instance UID: the data set's bytes} (the file meta aside: storescp writes its own)."""
    from fastanon.scan import parse

    found = {}
    for path in paths:
        raw = Path(path).read_bytes()
        parsed = parse(raw)
        sop = parsed.dataset.attribute(0x00080018)
        found[sop] = raw[parsed.dataset_start:]
        parsed.release()
    return found


@needs_both
def test_forwarded_objects_arrive_once_each_also_when_the_destination_was_down(study, tmp_path):
    port = _free_port()
    destination = Destination(tmp_path / "dest", port)
    queue = tmp_path / "queue"
    node = Listening(None, "--forward", f"DEST@127.0.0.1:{port}", "--queue", str(queue))
    files = _valid(study)
    try:
        assert _storescu(node.port, files[:4]).returncode == 0
        _until(lambda: len(destination.files()) == 4)
        _until(lambda: not list(queue.rglob("*.dcm")))     # acknowledged by the destination
        destination.stop()                          # down mid-study
        assert _storescu(node.port, files[4:]).returncode == 0      # acknowledged: queued
        assert len(list(queue.rglob("*.dcm"))) == 8
        code, said = node.stop()                    # and the node restarted meanwhile
        assert code == 0 and "12 stored" in said and "4 forwarded" in said
        node = Listening(None, "--forward", f"DEST@127.0.0.1:{port}", "--queue", str(queue))
        destination = Destination(tmp_path / "dest", port)
        _until(lambda: len(destination.files()) == 12)
        _until(lambda: not list(queue.rglob("*.dcm")))
        time.sleep(0.5)
        assert len(destination.files()) == 12       # none twice
    finally:
        node.stop()
        destination.stop()
    batch.run(study, tmp_path / "run", batch.Job(key=KEY.encode(), rename=True, workers=1))
    assert _datasets(destination.files()) == _datasets((tmp_path / "run").rglob("*.dcm"))


@needs_both
def test_each_calling_association_is_forwarded_over_one_of_its_own(study, tmp_path):
    """Two senders at once: the destination sees two associations (one for each, kept while it
    sends), every object once, each the bytes `run --rename` writes."""
    port = _free_port()
    log = tmp_path / "storescp.log"
    destination = Destination(tmp_path / "dest", port, log)
    node = Listening(None, "--forward", f"DEST@127.0.0.1:{port}", "--queue",
                     str(tmp_path / "queue"))
    files = _valid(study)
    try:
        senders = [subprocess.Popen([STORESCU, "-xe", "-aet", calling, "-aec", "FASTANON",
                                     "127.0.0.1", str(node.port), *map(str, half)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                   for calling, half in (("MODALITY1", files[:6]), ("MODALITY2", files[6:]))]
        for sender in senders:
            assert sender.wait(timeout=120) == 0, sender.stderr.read()
        _until(lambda: len(destination.files()) == 12)
        _until(lambda: not list((tmp_path / "queue").rglob("*.dcm")))
        code, said = node.stop()
    finally:
        if node.proc.poll() is None:
            node.stop()
        destination.stop()
    assert code == 0 and "12 stored" in said and "12 forwarded" in said
    assert log.read_text().count("Association Acknowledged") == 2
    batch.run(study, tmp_path / "run", batch.Job(key=KEY.encode(), rename=True, workers=1))
    assert _datasets(destination.files()) == _datasets((tmp_path / "run").rglob("*.dcm"))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 (openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "node.pem", folder / "node.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], capture_output=True, check=True,
                   timeout=120)
    return cert, key


def test_tls_only_when_asked(study, tmp_path, certificate):
    import ssl

    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    cert, key = certificate
    node = Listening(tmp_path / "out", "--tls-cert", str(cert), "--tls-key", str(key))
    ae = AE("SENDER")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    plain = ae.associate("127.0.0.1", node.port, ae_title="FASTANON")
    assert not plain.is_established                 # no TLS: no association
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    secure = ae.associate("127.0.0.1", node.port, ae_title="FASTANON",
                          tls_args=(client, "127.0.0.1"))
    assert secure.is_established
    status = secure.send_c_store(str(_valid(study)[0]))
    secure.release()
    code, said = node.stop()
    assert status.Status == 0 and code == 0 and "1 stored" in said
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 1


@needs_both
def test_forwarding_over_tls(study, tmp_path, certificate):
    """dcmtk's storescp over TLS, asking for the caller's certificate: objects go over TLS with
    --forward-tls-ca and the node's certificate; a destination whose certificate the system's
    authorities do not vouch for is not sent anything (the objects wait in the queue)."""
    cert, key = certificate
    port = _free_port()
    folder = tmp_path / "dest"
    folder.mkdir()
    destination = subprocess.Popen(
        [STORESCP, "+tls", str(key), str(cert), "+cf", str(cert), "-rc", "-aet", "DEST", "+B",
         "+uf", "-od", str(folder), str(port)], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    files = _valid(study)[:3]
    try:
        _until(lambda: _listening(port), 30)
        untrusted = Listening(None, "--forward", f"DEST@127.0.0.1:{port}", "--queue",
                              str(tmp_path / "untrusted"), "--forward-tls")
        assert _storescu(untrusted.port, files).returncode == 0
        time.sleep(1.5)                     # some attempts, none of them let through
        code, said = untrusted.stop()
        assert code == 0 and "3 stored" in said and "0 forwarded" in said
        assert len(list((tmp_path / "untrusted").rglob("*.dcm"))) == 3
        assert not list(folder.iterdir())
        node = Listening(None, "--forward", f"DEST@127.0.0.1:{port}", "--queue",
                         str(tmp_path / "queue"), "--forward-tls-ca", str(cert),
                         "--forward-tls-cert", str(cert), "--forward-tls-key", str(key))
        assert _storescu(node.port, files).returncode == 0
        _until(lambda: len(list(folder.iterdir())) == 3)
        _until(lambda: not list((tmp_path / "queue").rglob("*.dcm")))
        code, said = node.stop()
        assert code == 0 and "3 forwarded" in said
    finally:
        os.killpg(destination.pid, signal.SIGKILL)
        destination.wait(timeout=30)
    batch.run(study, tmp_path / "run", batch.Job(key=KEY.encode(), rename=True, workers=1))
    expected = _datasets((tmp_path / "run").rglob("*.dcm"))
    received = _datasets(folder.iterdir())
    assert received == {sop: data for sop, data in expected.items() if sop in received}
    assert len(received) == 3


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_tls_options_come_in_pairs(tmp_path, certificate):
    cert, _ = certificate
    done = subprocess.run([sys.executable, "-m", "fastanon", "listen", "--out", str(tmp_path),
                           "--tls-cert", str(cert)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2 and "--tls-key" in done.stderr
    alone = subprocess.run([sys.executable, "-m", "fastanon", "listen", "--out", str(tmp_path),
                            "--forward-tls"], capture_output=True, text=True, timeout=60,
                           check=False)
    assert alone.returncode == 2 and "need --forward" in alone.stderr
    half = subprocess.run([sys.executable, "-m", "fastanon", "listen", "--forward",
                           "DEST@127.0.0.1:104", "--forward-tls-cert", str(cert)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert half.returncode == 2 and "--forward-tls-key" in half.stderr


@needs_dcmtk
def test_masks_apply_to_what_the_node_receives(study, tmp_path):
    """--mask as in run: the objects received are masked, the same bytes as run writes."""
    node = Listening(tmp_path / "out", "--mask", "0,0,4,4")
    sent = _storescu(node.port, _valid(study)[:3])
    code, said = node.stop()
    assert sent.returncode == 0 and code == 0 and "3 stored" in said, said
    batch.run(study, tmp_path / "run", batch.Job(key=KEY.encode(), rename=True, workers=1,
                                                 masks=(fastanon.Mask(0, 0, 4, 4),)))
    received = tree_hashes(tmp_path / "out")
    assert received and set(received.items()) <= set(tree_hashes(tmp_path / "run").items())
    for path in (tmp_path / "out").rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        assert (ds.pixel_array[:4, :4] == ds.pixel_array.min()).all()
        assert ds.BurnedInAnnotation == "NO"


@needs_dcmtk
def test_the_node_writes_what_the_lookup_table_prescribes_and_refuses_the_rest(study,
                                                                             tmp_path):
    """A node in front of a trial's PACS: the table's subject ID in what it writes; an object
    whose patient the table does not hold gets a failure status, and nothing is written."""
    import pydicom

    (tmp_path / "subjects.csv").write_text("MRN,PatientID,PatientName\n"
                                           "PID-123,SITE07-0042,SITE07^0042\n")
    node = Listening(tmp_path / "out", "--lookup", str(tmp_path / "subjects.csv"))
    sent = _storescu(node.port, _valid(study)[:2])
    code, said = node.stop()
    assert sent.returncode == 0 and code == 0, sent.stderr + said
    written = sorted((tmp_path / "out").rglob("*.dcm"))
    assert len(written) == 2
    assert {pydicom.dcmread(p).PatientID for p in written} == {"SITE07-0042"}

    (tmp_path / "others.csv").write_text("MRN,PatientID\nSOMEONE-ELSE,SITE07-0001\n")
    node = Listening(tmp_path / "out2", "--lookup", str(tmp_path / "others.csv"))
    refused = _storescu(node.port, _valid(study)[:1])
    code, said = node.stop()
    assert "0 stored, 1 refused" in said, said
    assert not list((tmp_path / "out2").rglob("*.dcm"))
    assert refused.returncode != 0          # storescu heard a failure status


def test_a_lookup_table_that_cannot_be_used_stops_the_node_before_it_listens(tmp_path):
    (tmp_path / "bad.csv").write_text("MRN,PatientNmae\nA,B\n")
    done = subprocess.run([sys.executable, "-m", "fastanon", "listen", "--out",
                           str(tmp_path / "out"), "--port", "0", "--lookup",
                           str(tmp_path / "bad.csv")], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2 and "not a DICOM keyword" in done.stderr
