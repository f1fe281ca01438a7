"""Other DICOM anonymizers next to `cp -r` and `fastanon run`, on the same trees, in one session.

Per corpus (``small200``, ``ct``, ``big``; FASTANON_BENCH_SCALE applies), each tool of
benchpeers.TOOLS is one test: ``cp -r``, ``python -m fastanon run --preset research --key K``
with ``--workers 1`` and with the default worker count, then every peer that is installed
(gdcmanon -e, gdcmanon --dumb, dcmanon, fw-file-rs).  For each:

* one untimed run under the peak-RSS helper (test_bench_engine.measure_peak): it is the
  warm-up round, and tells whether the tool works on this corpus at all;
* FASTANON_BENCH_ROUNDS timed rounds, whole process, each from a fresh output location
  (``fresh``: previous output removed, dirty pages flushed, untimed);
* cheap checks on one output file (benchpeers.check_tool_output).

A peer that is not installed is skipped, with how to install it; a peer that exits non-zero is
recorded as failed for that corpus and the test xfails (cp or fastanon failing is a real
failure).  The table (tool, median, ratio to this run's ``cp -r``, peak RSS, checks) is printed
at the end of the session by conftest.py.  Nothing about speed is asserted.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from benchpeers import KIND, PEER_TREES, TOOLS, check_tool_output, missing
from test_bench_engine import ROUNDS, fastanon_env, fresh, measure_peak, need_fastanon, run

CASES = [
    pytest.param(tree, tool, id=f"{tree}-{tool.id}",
                 marks=pytest.mark.benchmark(group=f"{tree}: peers, whole process"))
    for tree in PEER_TREES for tool in TOOLS
]


@pytest.fixture(scope="session")
def gdcm_certificate(tmp_path_factory):
    """A throwaway self-signed certificate for gdcmanon -e (made once, untimed), or None.

    gdcmanon's PS3.15 mode encrypts the original values into the output for the holder of the
    private key; the key is discarded with the benchmark's temporary folder."""
    if not shutil.which("openssl"):
        return None
    folder = tmp_path_factory.mktemp("gdcm-cert")
    cert, key = folder / "certificate.pem", folder / "private-key.pem"
    proc = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=fastanon benchmark (throwaway)", "-keyout", str(key), "-out", str(cert)],
        capture_output=True, text=True, check=False)
    return cert if proc.returncode == 0 and cert.exists() else None


def _result(bench_results, corpus, tool, **info) -> None:
    bench_results[(corpus.name, KIND + tool.id)] = {"label": tool.label, **info}


def _failed(bench_results, corpus, tool, cmd, exc: Exception) -> None:
    """Record a tool that exited non-zero: its status and the end of its stderr."""
    # run() and measure_peak() start their message with the command: recorded apart
    reason = " ".join(str(exc).removeprefix(repr(cmd)).split())
    if len(reason) > 300:
        reason = reason[:60] + " ... " + reason[-240:]
    _result(bench_results, corpus, tool, status="failed", median=None, reason=reason,
            command=cmd)
    if tool.kind != "peer":
        raise exc
    pytest.xfail(f"{tool.id} failed on {corpus.name}: {reason}")


@pytest.mark.parametrize("corpus,tool", CASES, indirect=["corpus"])
def test_tool(benchmark, corpus, tool, out_dir, bench_results, gdcm_certificate):
    why = missing(tool)
    if why is None and tool.id == "gdcmanon" and gdcm_certificate is None:
        why = f"{tool.id} skipped: openssl could not make a certificate for gdcmanon -e"
    if why:
        _result(bench_results, corpus, tool, status="skipped", median=None, reason=why)
        pytest.skip(why)
    env = None
    if tool.kind == "fastanon":
        try:
            env = fastanon_env(need_fastanon())
        except pytest.skip.Exception as exc:
            _result(bench_results, corpus, tool, status="skipped", median=None,
                    reason=f"{tool.id} skipped: {exc}")
            raise
    cmd = tool.build(corpus.src, out_dir, {"certificate": gdcm_certificate})

    # Untimed: peak memory, and whether the tool runs on this corpus at all.
    fresh(out_dir)()
    try:
        peak = measure_peak(cmd, env)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        _failed(bench_results, corpus, tool, cmd, exc)

    try:
        benchmark.pedantic(run, args=(cmd, env), setup=fresh(out_dir), rounds=ROUNDS,
                           warmup_rounds=0)
    except RuntimeError as exc:
        _failed(bench_results, corpus, tool, cmd, exc)

    stats = benchmark.stats.stats
    info = {
        "status": "ok", "median": stats.median, "min": stats.min, "command": cmd,
        "peak_rss_mib": peak["maxrss_kib"] / 1024, "tree_peak_mib": peak["tree_peak_kib"] / 1024,
        "peak_rss_via": peak["via"],
        **check_tool_output(corpus, out_dir),
    }
    benchmark.extra_info.update({k: v for k, v in info.items() if k != "status"})
    _result(bench_results, corpus, tool, **info)
