"""Many files: walk a tree, run workers, report progress, never lose data."""

from __future__ import annotations

import csv
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from .errors import FastanonError
from .pipeline import TEMP_SUFFIX, anonymize_file
from .policy import Plan, as_policy
from .scan import looks_like_dicom


@dataclass(frozen=True)
class Job:
    """The options of one run, fixed once at the edge (the CLI) and shared by every worker."""

    policy: object = "research"
    key: bytes = b""
    masks: tuple = ()
    overwrite: bool = False
    workers: int = 1
    preset_name: str = "research"


@dataclass
class Outcome:
    src: str
    dst: str
    status: str            # written, exists, skipped (not DICOM), failed
    reason: str = ""
    bytes_in: int = 0
    actions: dict = field(default_factory=dict)


@dataclass
class Summary:
    written: int = 0
    exists: int = 0
    skipped: int = 0
    failed: int = 0
    bytes_in: int = 0
    seconds: float = 0.0
    failures: list = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        setattr(self, outcome.status, getattr(self, outcome.status) + 1)
        self.bytes_in += outcome.bytes_in
        if outcome.status == "failed":
            self.failures.append(outcome)

    @property
    def total(self) -> int:
        return self.written + self.exists + self.skipped + self.failed


def check_paths(src: Path, dst: Path) -> None:
    """Refuse a destination equal to, or inside, the source tree (the input is never touched)."""
    if not src.exists():
        raise FastanonError(f"{src}: no such file or directory")
    src_real, dst_real = src.resolve(), dst.resolve()
    if src_real == dst_real:
        raise FastanonError(f"{dst}: the destination is the source itself")
    if src.is_dir() and dst_real.is_relative_to(src_real):
        raise FastanonError(f"{dst}: the destination lies inside the source tree {src}")


def pairs(src: Path, dst: Path) -> Iterator[tuple[Path, Path]]:
    """(input, output) paths, streamed in a stable order; dst mirrors src's relative paths."""
    if src.is_file():
        target = dst / src.name if dst.is_dir() else dst
        yield src, target
        return
    for folder, dirs, files in os.walk(src):
        dirs.sort()
        base = Path(folder)
        rel = base.relative_to(src)
        for name in sorted(files):
            if name.endswith(TEMP_SUFFIX):
                continue
            yield base / name, dst / rel / name


_PLAN: Plan | None = None
_JOB: Job | None = None


def _init_worker(job: Job) -> None:
    global _PLAN, _JOB
    _JOB = job
    _PLAN = as_policy(job.policy).compile(key=job.key)


def process(pair: tuple[Path, Path]) -> Outcome:
    """Anonymize one file in a worker; every failure becomes an Outcome, never an exception."""
    src, dst = pair
    job = _JOB
    try:
        with open(src, "rb") as handle:
            head = handle.read(132)
    except OSError as exc:
        return Outcome(str(src), str(dst), "failed", f"cannot be read ({exc.strerror})")
    if not looks_like_dicom(head):
        return Outcome(str(src), str(dst), "skipped", "not DICOM")
    if dst.exists() and not job.overwrite:
        return Outcome(str(src), str(dst), "exists", "output exists", os.path.getsize(src))
    try:
        report = anonymize_file(src, dst, masks=job.masks, overwrite=job.overwrite, plan=_PLAN)
    except FastanonError as exc:
        return Outcome(str(src), str(dst), "failed", str(exc))
    except OSError as exc:
        return Outcome(str(src), str(dst), "failed", f"{exc.strerror or exc}")
    return Outcome(str(src), str(dst), "written", "", report.bytes_in, dict(report.actions))


def run(src: Path, dst: Path, job: Job, on_outcome: Callable[[Outcome], None] | None = None,
        audit: Path | None = None) -> Summary:
    """Anonymize src (a file or a tree) into dst with job's options; returns the counts."""
    check_paths(src, dst)
    if not job.key:
        job = Job(**{**job.__dict__, "key": secrets.token_bytes(32)})  # one random key per run
    if src.is_dir():
        dst.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    started = time.monotonic()
    audit_file = open(audit, "w", newline="") if audit else None
    writer = csv.writer(audit_file) if audit_file else None
    if writer:
        writer.writerow(["source", "destination", "status", "reason", "preset", "actions"])
    try:
        for outcome in _outcomes(src, dst, job):
            summary.add(outcome)
            if writer:
                actions = ";".join(f"{k}={v}" for k, v in sorted(outcome.actions.items()))
                writer.writerow([outcome.src, outcome.dst, outcome.status, outcome.reason,
                                 job.preset_name, actions])
            if on_outcome:
                on_outcome(outcome)
    except KeyboardInterrupt:
        _sweep_temp(dst if dst.is_dir() else dst.parent)
        raise
    finally:
        if audit_file:
            audit_file.close()
    summary.seconds = time.monotonic() - started
    return summary


def _outcomes(src: Path, dst: Path, job: Job) -> Iterator[Outcome]:
    _init_worker(job)     # compiles the policy once; a bad policy fails here, before any worker
    if job.workers <= 1 or src.is_file():
        for pair in pairs(src, dst):
            yield process(pair)
        return
    import multiprocessing

    if sys.platform.startswith("linux"):   # forked workers inherit the compiled plan
        pool = multiprocessing.get_context("fork").Pool(job.workers)
    else:
        pool = multiprocessing.get_context("spawn").Pool(job.workers, _init_worker, (job,))
    with pool:
        try:
            yield from pool.imap(process, pairs(src, dst), chunksize=8)
        except BaseException:
            pool.terminate()
            raise


def _sweep_temp(folder: Path) -> None:
    """Remove temporary outputs left by workers stopped mid-write (Ctrl-C)."""
    for base, _, files in os.walk(folder):
        for name in files:
            if name.endswith(TEMP_SUFFIX):
                try:
                    os.unlink(os.path.join(base, name))
                except OSError:
                    pass
