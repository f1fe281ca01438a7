"""Peer anonymizers for test_bench_peers.py: the commands, their checks, the summary table.

Every tool is one whole process over one corpus (a tree, or the big file), started
the same way and timed the same way as ``cp -r`` and ``python -m fastanon run``.
A peer that is not installed is skipped with a note saying how to install it.
What each peer does and does not do is in benchmarks/README.md.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread

from benchdata import PHI_STRINGS, check_output

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "peer_driver.py"
FW_FILE_RS_PROFILE = HERE / "fw_file_rs_profile.yaml"

PEER_TREES = ("small200", "ct", "big")
KEY = "benchmark-key"
KIND = "peer:"  # bench_results key: (corpus name, KIND + tool id)

# gdcmanon --dumb only does what it is told, tag by tag (hex group,element; a private
# tag as group,element-in-block,creator).  This list covers the identifying attributes
# the corpora carry (benchdata.PHI) at the top level of the data set.
GDCM_DUMB_OPS = [
    "--empty", "10,10",      # PatientName (type 2: emptied, not removed)
    "--empty", "10,20",      # PatientID
    "--empty", "10,30",      # PatientBirthDate
    "--remove", "10,1010",   # PatientAge
    "--remove", "10,1040",   # PatientAddress
    "--remove", "10,2154",   # PatientTelephoneNumbers
    "--remove", "10,4000",   # PatientComments
    "--empty", "8,50",       # AccessionNumber
    "--empty", "8,90",       # ReferringPhysicianName
    "--remove", "8,80",      # InstitutionName
    "--remove", "8,81",      # InstitutionAddress
    "--remove", "8,1010",    # StationName
    "--remove", "8,1070",    # OperatorsName
    "--remove", "18,1000",   # DeviceSerialNumber
    "--empty", "20,10",      # StudyID
    "--remove", "40,275",    # RequestAttributesSequence
    "--remove", "11,1,FASTANON BENCH",  # the private (0011,xx01) element of that creator
]


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _fastanon(workers: int | None):
    def build(src: Path, dst: Path, ctx: dict) -> list[str]:
        extra = [] if workers is None else ["--workers", str(workers)]
        return [sys.executable, "-m", "fastanon", "run", "--preset", "research",
                "--key", KEY, *extra, str(src), str(dst)]
    return build


def _cp(src: Path, dst: Path, ctx: dict) -> list[str]:
    from test_bench_engine import cp_command
    return cp_command(src, dst)


def _gdcmanon(src: Path, dst: Path, ctx: dict) -> list[str]:
    recursive = ["-r"] if src.is_dir() else []
    return ["gdcmanon", "-e", "-c", str(ctx["certificate"]), *recursive,
            "-i", str(src), "-o", str(dst)]


def _gdcmanon_dumb(src: Path, dst: Path, ctx: dict) -> list[str]:
    recursive = ["-r"] if src.is_dir() else []
    return ["gdcmanon", "--dumb", *GDCM_DUMB_OPS, *recursive, "-i", str(src), "-o", str(dst)]


def _dcmanon(src: Path, dst: Path, ctx: dict) -> list[str]:
    return [sys.executable, str(DRIVER), "dcmanon", str(src), str(dst)]


def _fw_file_rs(src: Path, dst: Path, ctx: dict) -> list[str]:
    return [sys.executable, str(DRIVER), "fw-file-rs", "--profile", str(FW_FILE_RS_PROFILE),
            str(src), str(dst)]


@dataclass(frozen=True)
class Tool:
    id: str            # the test id (-k gdcmanon, -k fw-file-rs, ...)
    label: str         # the row in the summary
    kind: str          # "baseline", "fastanon" or "peer"
    build: Callable[[Path, Path, dict], list[str]]
    executables: tuple[str, ...] = ()   # needed on PATH
    modules: tuple[str, ...] = ()       # needed importable by this Python
    install: str = ""                   # the skip note


TOOLS = (
    Tool("cp", "cp -r", "baseline", _cp),
    Tool("fastanon-w1", "fastanon run --workers 1", "fastanon", _fastanon(1)),
    Tool("fastanon", f"fastanon run (default workers: {_cpus()})", "fastanon", _fastanon(None)),
    Tool("gdcmanon", "gdcmanon -e (GDCM, PS3.15 E.1)", "peer", _gdcmanon,
         executables=("gdcmanon", "openssl"),
         install="apt-get install libgdcm-tools (Debian/Ubuntu; gdcmanon -e also needs "
                 "openssl, package openssl, to make a throwaway certificate)"),
    Tool("gdcmanon-dumb", "gdcmanon --dumb (tag list)", "peer", _gdcmanon_dumb,
         executables=("gdcmanon",),
         install="apt-get install libgdcm-tools (Debian/Ubuntu)"),
    Tool("dcmanon", "dcmanon (defaults, driver)", "peer", _dcmanon, modules=("dcmanon",),
         install="pip install dcmanon  (or, in a checkout: pip install '.[bench]')"),
    Tool("fw-file-rs", "fw-file-rs (profile, driver)", "peer", _fw_file_rs,
         modules=("fw_file_rs",),
         install="pip install fw-file-rs  (or, in a checkout: pip install '.[bench]')"),
)


def missing(tool: Tool) -> str | None:
    """Why `tool` cannot run here (with how to install it), or None."""
    absent = [f"`{exe}` not found on PATH" for exe in tool.executables if not shutil.which(exe)]
    absent += [f"Python module `{mod}` not importable by {sys.executable}"
               for mod in tool.modules if importlib.util.find_spec(mod) is None]
    if not absent:
        return None
    return f"{tool.id} skipped: {'; '.join(absent)}. Install: {tool.install}"


# ---------------------------------------------------------------------------
# What a tool's output looks like (recorded, never asserted)
# ---------------------------------------------------------------------------

_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")  # PS3.5 9.1: no leading zeros


def uid_valid(value) -> bool:
    text = str(value)
    return len(text) <= 64 and _UID.fullmatch(text) is not None


def _count_files(dst: Path) -> int:
    if dst.is_file():
        return 1
    return sum(len(files) for _, _, files in os.walk(dst))


def check_tool_output(corpus, dst: Path) -> dict:
    """Cheap checks on one output file (the corpus's last): does pydicom read it, did
    PatientName and SOPInstanceUID change, are its Study, Series and SOP Instance UIDs (and
    the file meta's copy) well-formed, are the Pixel Data bytes the input's, which planted PHI
    strings are still in its header; and how many files came out."""
    rel = corpus.files[-1]
    src_file, dst_file = corpus.src_file(rel), corpus.dst_file(dst, rel)
    info = {"files_in": len(corpus.files), "files_out": _count_files(dst) if dst.exists() else 0,
            "checked_file": rel}
    if not dst_file.is_file():
        return {**info, "reads": False, "error": f"no output for {rel}"}
    with warnings.catch_warnings():  # pydicom warns about malformed values: uid_valid says it
        warnings.simplefilter("ignore")
        checked = check_output(src_file, dst_file)
        info["reads"] = "error" not in checked
        if not info["reads"]:
            return {**info, "error": checked["error"]}
        before = dcmread(src_file, stop_before_pixels=True)
        after = dcmread(dst_file, stop_before_pixels=True)
        uids = [str(after.get(k, "")) for k in
                ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
        uids.append(str(after.file_meta.get("MediaStorageSOPInstanceUID", "")))
    info.update(
        name_changed=checked["name_changed"],
        uid_changed=uids[2] != str(before.SOPInstanceUID),
        uid_valid=all(uid_valid(u) for u in uids)
        and uids[2] == uids[3],  # the file meta names the same instance
        pixels_equal=checked["pixels_equal"],
        phi_strings_found=checked["phi_strings_found"],
        transfer_syntax=str(after.file_meta.get("TransferSyntaxUID", "")),
    )
    return info


# ---------------------------------------------------------------------------
# The summary (called from conftest.py's pytest_terminal_summary)
# ---------------------------------------------------------------------------

def _yes(value) -> str:
    return "-" if value is None else ("yes" if value else "no")


def summary_lines(results: dict) -> list[str]:
    """The peers table, one block per corpus that has peer results."""
    trees = [t for t in PEER_TREES if any((t, KIND + tool.id) in results for tool in TOOLS)]
    if not trees:
        return []
    from test_bench_engine import ROUNDS
    lines = [
        (f"whole process, median and min of {ROUNDS} timed rounds; x cp = median / median of "
         "`cp -r` (`cp` for big) in this run"),
        ("peak RSS (MiB): largest single process / sum over the process tree, from one "
         "untimed run before the rounds (it is also the warm-up)"),
        ("checks on one output file: reads = pydicom reads it; name, uid = PatientName, "
         "SOPInstanceUID changed; uid ok = Study/Series/SOP Instance UIDs well-formed (PS3.5 "
         "9.1) and the file meta's equal to the data set's; pixels = Pixel Data bytes as in "
         f"the input; PHI = planted PHI strings left in the header (of {len(PHI_STRINGS)})"),
    ]
    notes: dict[str, str] = {}
    corpora = results.get("_corpora", {})
    for tree in trees:
        corpus = corpora.get(tree)
        head = f"{tree}: {len(corpus.files)} file(s), {corpus.nbytes / 2**20:.1f} MiB" \
            if corpus else tree
        lines += ["", head]
        base = results.get((tree, KIND + "cp"), {})
        base_median = base.get("median") if base.get("status") == "ok" else None
        rows = [("tool", "median s", "min s", "x cp", "peak RSS", "files", "reads", "name",
                 "uid", "uid ok", "pixels", "PHI")]
        left = []
        for tool in TOOLS:
            r = results.get((tree, KIND + tool.id))
            if r is None:
                continue
            status = r.get("status")
            if status != "ok":
                word = "skipped" if status == "skipped" else "FAILED"
                rows.append((tool.label, word) + ("",) * (len(rows[0]) - 2))
                notes[tool.id if status == "skipped" else f"{tool.id} on {tree}"] = r["reason"]
                continue
            median = r["median"]
            ratio = f"{median / base_median:.2f}x" if median and base_median else "-"
            rss = "-" if r.get("peak_rss_mib") is None else \
                f"{r['peak_rss_mib']:.0f} / {r['tree_peak_mib']:.0f}"
            found = r.get("phi_strings_found")
            rows.append((
                tool.label, f"{median:.3f}", f"{r['min']:.3f}", ratio, rss,
                f"{r.get('files_out', '-')}/{r.get('files_in', '-')}",
                _yes(r.get("reads")), _yes(r.get("name_changed")), _yes(r.get("uid_changed")),
                _yes(r.get("uid_valid")), _yes(r.get("pixels_equal")),
                "-" if found is None else str(len(found)),
            ))
            if found and tool.kind != "baseline":
                left.append(f"  PHI left by {tool.label}: {', '.join(found)}")
            if r.get("error"):
                left.append(f"  {tool.label}: {r['error']}")
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            lines.append("  " + "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
            ).rstrip())
        lines += left
    if notes:
        lines.append("")
        lines += [f"{key}: {why}" if not why.startswith(key) else why
                  for key, why in notes.items()]
    return lines
