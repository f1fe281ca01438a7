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

    def __init__(self, out: Path, *options: str):
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastanon", "listen", "--port", "0", "--key", KEY,
             "--out", str(out), *options],
            stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()          # "... on 127.0.0.1:PORT, writing to ..."
        found = re.search(r":(\d+), writing", line)
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
