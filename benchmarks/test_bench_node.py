"""The CT study over the DICOM network: dcmtk's storescu → `fastanon listen --forward` → dcmtk's
storescp, against storescu → storescp directly (the network floor), on 127.0.0.1.

Each round sends the whole study with `storescu -xe +sd +r` and ends when the destination has
written every object (storescp +B +uf: as received, one file each). Target (issue text;
informative, nothing about speed is asserted): fastanon's rate >= 0.8 of the floor's. Checked:
every object arrives, once.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_bench_engine import ROUNDS, corpora, record

pytest.importorskip("pynetdicom", reason="fastanon[net] is not installed")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_node import dcmtk  # noqa: E402

STORESCU, STORESCP = dcmtk("storescu"), dcmtk("storescp")
pytestmark = pytest.mark.skipif(STORESCU is None or STORESCP is None,
                                reason="dcmtk's storescu and storescp are not installed")
KIND = "node:"
CT = corpora("ct", group="over the DICOM network")


def _port() -> int:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return free.getsockname()[1]


def _listening(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def _send_study(corpus, folder: Path, via_fastanon: bool, tmp: Path) -> None:
    """One round: a fresh destination (and node), the study sent, every object arrived."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    dest_port = _port()
    dest = subprocess.Popen([STORESCP, "-aet", "DEST", "+B", "+uf", "-od", str(folder),
                             str(dest_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = None
    try:
        _listening(dest_port)
        target, aet = dest_port, "DEST"
        if via_fastanon:
            queue = tmp / "queue"
            shutil.rmtree(queue, ignore_errors=True)
            node = subprocess.Popen([sys.executable, "-m", "fastanon", "listen", "--port", "0",
                                     "--key", "benchmark-key", "--forward",
                                     f"DEST@127.0.0.1:{dest_port}", "--queue", str(queue)],
                                    stderr=subprocess.PIPE, text=True)
            target = int(re.search(r":(\d+), forwarding", node.stderr.readline()).group(1))
            aet = "FASTANON"
        subprocess.run([STORESCU, "-xe", "-aec", aet, "+sd", "+r", "127.0.0.1", str(target),
                        str(corpus.src)], check=True, capture_output=True, timeout=600)
        deadline = time.monotonic() + 600
        while len(list(folder.iterdir())) < len(corpus.files):
            if time.monotonic() > deadline:
                raise RuntimeError("not every object arrived")
            time.sleep(0.01)
    finally:
        if node is not None:
            node.send_signal(signal.SIGTERM)
            node.communicate(timeout=60)
        dest.kill()
        dest.wait(timeout=30)


@pytest.mark.parametrize("via", ["direct", "fastanon"])
@pytest.mark.parametrize("corpus", CT, indirect=True)
def test_study_over_the_network(benchmark, corpus, via, bench_results, tmp_path):
    folder = tmp_path / "received"
    benchmark.pedantic(_send_study, args=(corpus, folder, via == "fastanon", tmp_path),
                       rounds=ROUNDS, warmup_rounds=0)
    record(bench_results, benchmark, corpus, KIND + via,
           once=len(list(folder.iterdir())) == len(corpus.files))


def summary_lines(results: dict) -> list[str]:
    direct, via = results.get(("ct", KIND + "direct")), results.get(("ct", KIND + "fastanon"))
    if not direct or not via:
        return []
    corpus = results["_corpora"]["ct"]
    lines = []
    for label, r in (("storescu -> storescp", direct), ("storescu -> fastanon -> storescp", via)):
        rate = len(corpus.files) / r["median"]
        lines.append(f"  {label:<34} {r['median']:7.2f} s  {rate:6.1f} objects/s  "
                     f"{corpus.nbytes / 2**20 / r['median']:6.1f} MiB/s  every object once: "
                     f"{r['once']}")
    lines.append(f"  fastanon / floor: {direct['median'] / via['median']:.2f} (target >= 0.8)")
    return lines
