"""Fixtures for the fastanon benchmarks and the ratio summary printed at the end.

The corpora themselves are made by benchdata.py (see its docstring for
FASTANON_BENCH_DATA and FASTANON_BENCH_SCALE).
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
from benchdata import Corpus, get_corpus  # noqa: E402

RESULTS = pytest.StashKey[dict]()

TARGETS = {  # ratio targets (fastanon median / baseline median); not asserted
    "big": 1.2,
    "ct": 2.0,
    "small": 2.0,
}
PEAK_RSS_TARGET_MIB = 100.0
SECTIONS = (  # modules whose summary_lines(results) print a section of their own
    ("test_bench_reflink", "on a file system with reflinks (XFS loop mount)"),
    ("test_bench_dask", "on a Dask LocalCluster"),
    ("test_bench_node", "the CT study over the DICOM network (127.0.0.1)"),
    ("benchpeers", "peer anonymizers vs cp -r"),
    ("test_bench_jpeg_masks", "masks in a JPEG Baseline ultrasound"),
    ("test_bench_check", "fastanon check against fastanon run"),
)


@pytest.fixture(scope="session")
def bench_results(pytestconfig) -> dict:
    return pytestconfig.stash.setdefault(RESULTS, {})


@pytest.fixture
def corpus(request, bench_results) -> Corpus:
    """Indirectly parametrized with a corpus name: "big", "ct", "small" or "small200"."""
    name = request.param
    corpora = bench_results.setdefault("_corpora", {})
    if name not in corpora:
        corpora[name] = get_corpus(name)
    return corpora[name]


@pytest.fixture
def out_dir(tmp_path_factory, request):
    """A fresh output location (not created) that is removed afterwards."""
    base = Path(os.environ["FASTANON_BENCH_OUT"]) if os.environ.get("FASTANON_BENCH_OUT") \
        else tmp_path_factory.getbasetemp() / "bench-out"
    base.mkdir(parents=True, exist_ok=True)
    request.getfixturevalue("bench_results")["_out"] = base
    path = base / request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
    _remove(path)
    yield path
    _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _fmt_s(value):
    return "-" if value is None else f"{value:.3f} s"


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    results = config.stash.get(RESULTS, None)
    if not results:
        return
    tr = terminalreporter
    tr.section("fastanon benchmark summary")
    tr.write_line("median wall times; ratio = fastanon / baseline, both measured in this run")
    tr.write_line("")
    for name, corpus in sorted(results.get("_corpora", {}).items()):
        gen = "reused" if corpus.gen_seconds is None else f"generated in {corpus.gen_seconds:.1f} s"
        tr.write_line(f"corpus {name}: {len(corpus.files)} file(s), "
                      f"{corpus.nbytes / 2**20:.1f} MiB, {gen}, at {corpus.src}")
    if "_out" in results:
        tr.write_line(f"outputs written under {results['_out']}")
    tr.write_line("")
    rows = [("corpus", "comparison", "baseline", "fastanon", "ratio", "target", "met", "correct")]
    comparisons = [
        ("in-process vs shutil.copyfile", "copy-files", "fastanon-inprocess"),
        ("CLI vs cp -r", "copy-cp", "fastanon-cli"),
    ]
    for name in ("big", "ct", "small"):
        for label, base_kind, anon_kind in comparisons:
            base = results.get((name, base_kind))
            anon = results.get((name, anon_kind))
            if base is None and anon is None:
                continue
            b = base and base["median"]
            a = anon and anon["median"]
            ratio = a / b if a and b else None
            target = TARGETS[name]
            rows.append((
                name,
                label.replace("cp -r", "cp") if name == "big" else label,
                _fmt_s(b),
                _fmt_s(a),
                "-" if ratio is None else f"{ratio:.2f}x",
                f"<= {target}x",
                "-" if ratio is None else ("yes" if ratio <= target else "NO"),
                "-" if anon is None else str(anon.get("correct")),
            ))
        extra = results.get((name, "copy-copytree"))
        if extra:
            rows.append((name, "(reference) shutil.copytree", _fmt_s(extra["median"]),
                         "", "", "", "", ""))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows if len(rows) > 1 else []:
        tr.write_line("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())

    for name in ("big", "ct", "small"):
        for kind in ("fastanon-inprocess", "fastanon-cli"):
            res = results.get((name, kind))
            if res and (res.get("phi_strings_found") or res.get("errors")):
                tr.write_line(f"{name} {kind}: planted PHI strings left in the header: "
                              f"{res.get('phi_strings_found')} {res.get('errors', '')}".rstrip())
    for kind, label in (("fastanon-peak-rss", "python -m fastanon run"),
                        ("copy-peak-rss", "cp")):
        mem = results.get(("big", kind))
        if mem:
            line = (f"peak RSS of `{label}` on the big file: {mem['peak_rss_mib']:.1f} MiB "
                    f"(largest single process; process-tree sampled peak "
                    f"{mem['tree_peak_mib']:.1f} MiB)")
            if kind == "fastanon-peak-rss":
                ok = mem["peak_rss_mib"] <= PEAK_RSS_TARGET_MIB and \
                    mem["tree_peak_mib"] <= PEAK_RSS_TARGET_MIB
                line += f"  target <= {PEAK_RSS_TARGET_MIB:.0f} MiB: {'yes' if ok else 'NO'}"
            tr.write_line(line)
    tr.write_line("targets are informative only; benchmarks never fail on them")

    for module, title in SECTIONS:
        try:
            lines = importlib.import_module(module).summary_lines(results)
        except pytest.skip.Exception:   # the module's extra is not installed
            continue
        while lines and not lines[0]:
            lines = lines[1:]
        if lines:
            tr.section(title)
            for line in lines:
                tr.write_line(line)
