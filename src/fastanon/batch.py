"""Many files: walk a tree, run workers, report progress, never lose data.

`run(src, dst, job)` anonymizes a file or a folder tree into a mirror of it. The walk is streamed
(one folder listing at a time), the workers are forked processes fed through a bounded window, so
memory stays flat on trees of any size. Each output is written to a temporary file and renamed into
place by `pipeline.write`; an output that exists is complete, so a rerun skips it.
"""

from __future__ import annotations

import errno
import os
import sys
import time
import warnings
from itertools import islice

from ._lean import field, record
from .elements import DIRECTORY_RECORDS
from .errors import FastanonError, MaskWarning
from . import stores
from .workers import chunked
from .pipeline import TEMP_SUFFIX, Source, open_source, prepare, put, sweep_temp, write
from .plan import Plan
from .policy import as_policy
from .scan import DEFAULT_LIMITS, Limits, looks_like_dicom, parse

TYPE_CHECKING = False     # typing is not imported at run time
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from os import PathLike

    Path = str | PathLike

STUDY_UID, SERIES_UID, SOP_UID = 0x0020000D, 0x0020000E, 0x00080018
# The identifiers the --mapping file pairs with their new values (top level of each file).
MAPPED = (("PatientName", 0x00100010), ("PatientID", 0x00100020),
          ("PatientBirthDate", 0x00100030), ("AccessionNumber", 0x00080050),
          ("StudyID", 0x00200010), ("StudyInstanceUID", STUDY_UID),
          ("SeriesInstanceUID", SERIES_UID), ("SOPInstanceUID", SOP_UID))
AUDITED_ACTIONS = ("remove", "empty", "replace", "uid", "shift", "hash", "clean")
_DICOMDIR_RENAMED = ("a DICOMDIR below the top of SRC cannot follow --rename: its records name "
                     "files by File IDs (PS3.10 §8.2), which only a file set at the top of SRC "
                     "gets; run on its folder, or without --rename")
CHUNK = 16               # files per task handed to a pool's worker (fewer, larger messages)
FORKED_CHUNK = 4         # ... to a forked worker, whose messages cost little: balanced finer
WINDOW = 16              # chunks a forked worker may be ahead of the outcome the run waits for


def _safe_name(text: str) -> bool:
    """Whether text can be a file name as it is: 1 to 64 ASCII letters, digits, '.', '_' or
    '-', the first a letter or a digit."""
    return (0 < len(text) <= 64 and text.isascii() and text[0].isalnum()
            and all(c.isalnum() or c in "._-" for c in text))


@record(frozen=True)
class Job:
    """The options of one run, fixed once at the edge (the CLI) and shared by every worker."""

    policy: object = "research"     # a Policy, a preset name or a {tag: action} mapping
    key: bytes = b""                # empty: one random key for this run
    masks: object = ()              # Masks for every file, or MaskRules (first match per file)
    overwrite: bool = False
    workers: int = 1
    decompress: bool = False        # decode compressed Pixel Data so that masks can apply
    burned_in: str = "keep"         # "no": BurnedInAnnotation = NO in the files that were masked
    rename: bool = False            # outputs named <study>/<series>/<sop>.dcm from the new UIDs
    keep_paths: bool = False        # mirror SRC's names even where they hold identifying values
    file_set: bool = False          # --rename of a tree with a DICOMDIR: File ID names (run sets it)
    mapping: bool = False           # collect original → new identifiers (a re-identification key)
    preset_name: str = "research"
    limits: Limits = DEFAULT_LIMITS  # how far a deflated data set may inflate
    clone: bool = True              # share the input's bulk blocks where the file system can
    verify: bool = False            # check each output against its input once written (check.py)
    detect_text: bool = False       # look for text left in each output's pixels (text.py)
    quarantine: str = ""            # with detect_text: outputs showing text held back here


@record
class Outcome:
    src: str
    dst: str
    status: str            # written, exists, skipped (not DICOM), failed, held (text shown)
    reason: str = ""
    bytes_in: int = 0
    actions: dict = field(factory=dict)
    mask_rule: str | None = None
    warnings: tuple = ()
    mapping: tuple = ()    # (original, new) per MAPPED entry, when the job asks for it
    shared: int = 0        # bytes of the output that share the input's blocks
    findings: tuple = ()   # with verify: what check found in the output (never a value)


@record
class Summary:
    written: int = 0
    exists: int = 0
    skipped: int = 0
    failed: int = 0
    held: int = 0           # with detect_text and quarantine: outputs held back
    bytes_in: int = 0
    shared: int = 0
    seconds: float = 0.0
    failures: list = field(factory=list)
    findings: int = 0       # with verify or detect_text: over all outputs

    def add(self, outcome: Outcome) -> None:
        setattr(self, outcome.status, getattr(self, outcome.status) + 1)
        self.bytes_in += outcome.bytes_in
        self.shared += outcome.shared
        self.findings += len(outcome.findings)
        if outcome.status == "failed" and len(self.failures) < 1000:   # the first ones; memory stays flat
            self.failures.append(outcome)

    @property
    def total(self) -> int:
        return self.written + self.exists + self.skipped + self.failed + self.held


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped the run; no partial output is left. `summary` says how far it got."""

    def __init__(self, summary: Summary):
        super().__init__("interrupted")
        self.summary = summary


def check_paths(src: Path, dst: Path, *others: Path | None) -> None:
    """Refuse a destination equal to, or inside, the source tree (the input is never touched);
    `others` (audit and mapping files) may not be written inside the source tree either."""
    src, dst = os.fspath(src), os.fspath(dst)
    if stores.is_url(src) or stores.is_url(dst):
        if not stores.is_url(src):
            if not os.path.exists(src):
                raise FastanonError(f"{src}: no such file or directory")
        elif not stores.exists(src):
            raise FastanonError(f"{src}: no such object or prefix")
        inner, outer = dst.rstrip("/"), src.rstrip("/")
        if inner == outer or inner.startswith(outer + "/"):
            raise FastanonError(f"{dst}: the destination lies inside the source {src}")
        return
    if not os.path.exists(src):
        raise FastanonError(f"{src}: no such file or directory")
    src_real, dst_real = os.path.realpath(src), os.path.realpath(dst)
    tree = os.path.isdir(src)
    if src_real == dst_real:
        raise FastanonError(f"{dst}: the destination is the source itself")
    if tree and _within(dst_real, src_real):
        raise FastanonError(f"{dst}: the destination lies inside the source tree {src}")
    if tree and _within(src_real, dst_real):
        inner = os.path.relpath(src_real, dst_real)     # DST/<inner>/... is inside SRC: the
        if os.path.exists(os.path.join(src_real, inner)):   # outputs of SRC/<inner>/... would
            raise FastanonError(                              # land on inputs
                f"{dst}: the outputs of {os.path.join(src, inner)} would be written inside "
                f"the source tree {src}")
    if tree and os.path.exists(dst) and not os.path.isdir(dst):
        raise FastanonError(f"{dst}: exists and is not a folder (the source is a folder)")
    for other in others:
        if other is None:
            continue
        real = os.path.realpath(other)
        if real == src_real or (tree and _within(real, src_real)):
            raise FastanonError(f"{os.fspath(other)}: would be written inside the source {src}")


def _within(path: str, folder: str) -> bool:
    """Whether the real path path is folder or inside it (both from os.path.realpath)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


SKIPPED = "\0skipped"      # pairs(): a folder not walked again (a symbolic link loop)


def _holds(folder: str, other: str) -> bool:
    """Whether other is folder or inside it, or folder inside other (real paths)."""
    return _within(other, folder) or _within(folder, other)


def pairs(src: Path, dst: Path) -> Iterator[tuple[str, str, str]]:
    """(input, output, path relative to src) streamed in a stable order (folders and names sorted);
    dst mirrors src's relative paths. A folder that cannot be listed comes as ("", folder, reason)."""
    src, dst = os.fspath(src), os.fspath(dst)
    if stores.is_url(src):
        yield from stores.pairs(src, dst)
        return
    if not os.path.isdir(src):
        name = os.path.basename(src)
        yield src, os.path.join(dst, name) if os.path.isdir(dst) else dst, name
        return
    errors: list[OSError] = []
    join = os.path.join
    info = os.stat(src)
    seen = {(info.st_dev, info.st_ino)}      # folders walked: a link back to one is a loop
    dst_real = os.path.realpath(dst)
    for folder, dirs, files in os.walk(src, onerror=errors.append, followlinks=True):
        while errors:
            exc = errors.pop()
            yield "", str(exc.filename), f"{exc.filename}: folder cannot be listed ({exc.strerror})"
        dirs.sort()
        for name in list(dirs):
            path = join(folder, name)
            try:
                info = os.stat(path)
            except OSError as exc:        # a dangling link: named, as a folder not listed
                dirs.remove(name)
                yield "", path, f"{path}: folder cannot be listed ({exc.strerror})"
                continue
            if (info.st_dev, info.st_ino) in seen:
                dirs.remove(name)
                yield SKIPPED, path, (f"{path}: a symbolic link to a folder walked already "
                                      f"({os.path.realpath(path)}): not followed again")
                continue
            if os.path.islink(path) and _holds(os.path.realpath(path), dst_real):
                dirs.remove(name)       # the outputs would be read back as inputs
                yield SKIPPED, path, f"{path}: a symbolic link into the destination {dst}"
                continue
            seen.add((info.st_dev, info.st_ino))
        rel = os.path.relpath(folder, src)
        out = dst if rel == "." else join(dst, rel)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        for name in sorted(files):
            if name.endswith(TEMP_SUFFIX):
                continue
            yield join(folder, name), join(out, name), prefix + name
    while errors:
        exc = errors.pop()
        yield "", str(exc.filename), f"{exc.filename}: folder cannot be listed ({exc.strerror})"


# -- one file, in a worker ------------------------------------------------------------------------

@record
class _Worker:
    """What a worker needs, built once per process: the job and its compiled plan."""

    job: Job
    dst: str
    plan: Plan
    clean_paths: bool          # output folder and file names lose the identity they repeat


_STATE: _Worker | None = None


def _prepare(job: Job, dst: Path, tree: bool = True) -> _Worker:
    plan = as_policy(job.policy).compile(key=job.key)
    return _Worker(job, dst, plan, tree and bool(plan.echo_code) and not job.keep_paths
                   and not job.rename)


def _start_worker(job: Job | None = None, dst: Path | None = None) -> None:
    """Pool initializer: Ctrl-C is the parent's to handle (it stops the pool and sweeps temporary
    files); a forked worker already holds the compiled plans, a spawned one builds them."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    global _STATE
    if job is not None:
        _STATE = _prepare(job, dst)


def cpu_count() -> int:
    """The processors this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_PREPARED: dict[str, _Worker] = {}     # process_items: a run's compiled plan, by its token


def process_items(token: str, job: Job, dst: str, tree: bool, items: list) -> list[Outcome]:
    """Anonymize items (from pairs) in this process for the run named token: a cluster's task.
    The plan is compiled once per process and run."""
    state = _PREPARED.get(token)
    if state is None:
        if len(_PREPARED) >= 8:            # a long-lived worker serves many runs
            _PREPARED.clear()
        state = _PREPARED[token] = _prepare(job, dst, tree)
    return [process(item, state) for item in items]


def process(item: tuple[str, str, str], state: _Worker | None = None) -> Outcome:
    """Anonymize one file in a worker (with this process's run, or state); every failure
    becomes an Outcome, never an exception."""
    src, dst, rel = item
    if not src:
        return Outcome(dst, "", "failed", rel)        # a folder the walk could not list
    if src == SKIPPED:
        return Outcome(dst, "", "skipped", rel)       # a link to a folder walked already
    try:
        with warnings.catch_warnings():     # mask warnings travel in the Outcome instead
            warnings.simplefilter("ignore", MaskWarning)
            return _process(state or _STATE, src, dst, rel)
    except FastanonError as exc:
        return Outcome(src, dst, "failed", str(exc))
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and exc.filename not in (src, dst) else ""
        return Outcome(src, dst, "failed", f"{exc.strerror or exc}{where}")
    except MemoryError:
        return Outcome(src, dst, "failed", "out of memory while anonymizing it")
    except Exception as exc:        # a bug must not stop the other files: name it and go on
        return Outcome(src, dst, "failed", f"unexpected error: {type(exc).__name__}: {exc}")


def _process(state: _Worker, src: str, dst: str, rel: str) -> Outcome:
    """One input, opened and scanned once: skipped when it is not DICOM, "exists" when its output
    is there already, else prepared and written (with --rename, named by its new UIDs)."""
    job = state.job
    with _opened(src) as source:             # an input that cannot be read: failed, named
        size = source.size
        if not source.regular:
            return Outcome(src, dst, "skipped", "not a regular file")
        if not looks_like_dicom(source.head):
            return Outcome(src, dst, "skipped", "not DICOM")
        named = job.rename or job.mapping or state.clean_paths
        if not named:
            there = _existing(src, dst, job, size)
            if there is not None:
                return there
        parsed = parse(source.data, src, job.limits)
        try:
            directory = parsed.dataset.top(DIRECTORY_RECORDS) is not None
            if job.rename and directory and (not job.file_set or rel != "DICOMDIR"):
                return Outcome(src, dst, "failed", _DICOMDIR_RENAMED, size)
            output = prepare(parsed, state.plan, job.masks, decompress=job.decompress,
                             burned_in=job.burned_in == "no",
                             file_ids=_file_ids(job.key) if job.file_set else None)
            mapping = ()
            if named:
                values = (output.identifiers(tag for _, tag in MAPPED)
                          if job.rename or job.mapping else {})
                if job.rename and directory:
                    dst = os.path.join(state.dst, "DICOMDIR")
                elif job.rename:
                    dst = os.path.join(state.dst, _output_name(values, job.key, rel, job.file_set))
                elif state.clean_paths:         # export/<PatientID>/<name>/...: pseudonyms
                    clean = state.plan.echoes(output.context).clean_path(rel)
                    dst = dst if clean == rel else os.path.join(state.dst, clean)
                if job.mapping:
                    mapping = tuple(values[tag] for _, tag in MAPPED)
                there = _existing(src, dst, job, size, mapping)
                if there is not None:
                    return there
            if stores.is_url(dst):
                report = _put(source, output, dst)
            else:
                report = write(source, output, dst, job.clone)
        finally:
            parsed.release()
        written = _read_back(dst) if job.verify or job.detect_text else None
        findings = _verified(source, written, dst, state) if job.verify else ()
    status = "written"
    if job.detect_text:
        shown = _text_shown(written, dst)
        findings += shown
        if shown and job.quarantine:
            status, dst = "held", _hold(dst, state, job.quarantine)
    return Outcome(src, dst, status, "text in the pixels" if status == "held" else "", size,
                   dict(report.actions), report.mask_rule, tuple(report.mask_warnings),
                   mapping, report.shared, findings)


def _text_shown(written: bytes, dst: str) -> tuple[str, ...]:
    """The boxes of text the detector reads in an output just written (check.text_findings)."""
    from .check import text_findings

    return tuple(str(finding) for finding in text_findings(written, dst))


def _hold(dst: str, state: _Worker, quarantine: str) -> str:
    """Move an output that shows text from DST to the quarantine folder, at the same relative
    path; its new path."""
    root = state.dst if os.path.isdir(state.dst) else os.path.dirname(state.dst) or "."
    held = os.path.join(quarantine, os.path.relpath(dst, root))
    os.makedirs(os.path.dirname(held) or ".", exist_ok=True)
    try:
        os.replace(dst, held)
    except OSError:                 # another file system: copied, then removed
        import shutil

        shutil.copyfile(dst, held)
        os.unlink(dst)
    return held


def _verified(source: Source, written: bytes, dst: str, state: _Worker) -> tuple[str, ...]:
    """What `fastanon check` finds in an output just written, against its input (the UID map
    over the whole run is check's own)."""
    from .check import check_pair

    report = check_pair(source.data, written, source.path, dst, state.plan.policy)
    return tuple(str(finding) for finding in report.findings)


def _read_back(path: str) -> bytes:
    """An output just written, read again (an object in a store too)."""
    if stores.is_url(path):
        return stores.read(path)
    with open(path, "rb") as handle:
        return handle.read()


WHOLE_OBJECT = 64 << 20     # an object up to this size is read into memory; a larger one is
                            # copied to a local temporary file and mapped


def _opened(src: str):
    """The input: a local file opened once (open_source), or an object of a store."""
    if not stores.is_url(src):
        return open_source(src)
    return _Read(src)


class _Read:
    """An object of a store as a Source: read whole, or (larger than WHOLE_OBJECT) copied to a
    local temporary file that is mapped as a local input is, and removed with the block."""

    def __init__(self, url: str):
        self.url = url
        self.local = self.opened = None

    def __enter__(self) -> Source:
        if stores.size(self.url) <= WHOLE_OBJECT:
            data = stores.read(self.url)
            return Source(self.url, -1, len(data), True, data)
        import tempfile

        fd, self.local = tempfile.mkstemp(prefix=".fastanon-input-", suffix=".dcm")
        os.close(fd)
        stores.download(self.url, self.local)
        self.opened = open_source(self.local)
        source = self.opened.__enter__()
        return Source(self.url, source.fd, source.size, source.regular, source.data)

    def __exit__(self, *exc) -> None:
        try:
            if self.opened is not None:
                self.opened.__exit__(*exc)
        finally:
            if self.local is not None:
                os.unlink(self.local)


def _put(source: Source, output, dst: str):
    """An output object: put whole from memory, or (a mapped input) written to a local
    temporary file as a local output is and uploaded from it (streamed)."""
    if isinstance(source.data, bytes):
        return put(source, output, dst, lambda data: stores.write(dst, data))
    import tempfile

    folder = tempfile.mkdtemp(prefix=".fastanon-output-")
    local = os.path.join(folder, "output.dcm")
    try:
        report = write(source, output, local, clone=False)
        stores.upload(local, dst)
    finally:
        if os.path.exists(local):
            os.unlink(local)
        os.rmdir(folder)
    return report.replace(dst=dst)


def _existing(src: str, dst: str, job: Job, size: int, mapping: tuple = ()) -> Outcome | None:
    """The outcome when dst is there already (kept unless --overwrite), else None."""
    if stores.is_url(dst) or stores.is_url(src):
        if src == dst:
            return Outcome(src, dst, "failed", "the output would overwrite its own input", size)
        if job.overwrite or not (stores.exists(dst) if stores.is_url(dst)
                                 else os.path.exists(dst)):
            return None
        return Outcome(src, dst, "exists", "output exists", size, mapping=mapping)
    if not os.path.exists(dst):
        return None
    if os.path.samefile(src, dst):
        return Outcome(src, dst, "failed", "the output would overwrite its own input", size)
    if job.overwrite:
        return None
    if not os.path.isfile(dst):     # a folder there is no complete output: not "already there"
        return Outcome(src, dst, "failed", f"{dst}: exists and is not a file", size)
    return Outcome(src, dst, "exists", "output exists", size, mapping=mapping)


def _output_name(values: dict, key: bytes, rel: str, file_set: bool = False) -> str:
    """<study>/<series>/<sop>.dcm from the new UIDs; a part the policy removed (or that is not a
    plain UID) becomes a keyed pseudonym, never an original value. In a file set (SRC holds a
    DICOMDIR) the parts are File IDs, 8 characters each and no extension (PS3.10 §8.2), so
    that the DICOMDIR's records can name them."""
    from .uids import pseudonym

    def part(tag: int, fallback: str) -> str:
        new = values[tag][1]
        return new if _safe_name(new) and new not in (".", "..") else fallback

    sop = part(SOP_UID, "x-" + pseudonym(key, "file:" + rel, 16))
    study, series = part(STUDY_UID, "unknown-study"), part(SERIES_UID, "unknown-series")
    if file_set:
        return "/".join(_file_ids(key)(study, series, sop))
    return f"{study}/{series}/{sop}.dcm"


def _file_ids(key: bytes):
    """The File ID components of a renamed file in a file set, from its new UIDs."""
    from .uids import pseudonym

    return lambda *uids: [pseudonym(key, "file-id:" + uid, 8) for uid in uids]


# -- the run, in the parent -----------------------------------------------------------------------

def run(src: Path, dst: Path, job: Job, on_outcome: Callable[[Outcome], None] | None = None,
        audit: Path | None = None, mapping: Path | None = None, spread=None) -> Summary:
    """Anonymize src (a file or a tree) into dst with job's options; returns the counts.

    Outcomes come back in the walk's order whatever the number of workers, and so do the rows of
    the audit and mapping CSV files. Ctrl-C raises Interrupted after the workers are stopped and
    every temporary output is removed. spread(src, dst, job, tree) → the outcomes in walk order
    runs the files elsewhere (a cluster: fastanon.dask), each through process_items; by default
    they run in this process and its workers.
    """
    src, dst = stores.local(os.fspath(src)), stores.local(os.fspath(dst))
    check_paths(src, dst, audit, mapping)
    if job.detect_text:
        from .text import require

        require()
    if job.quarantine:
        if not job.detect_text:
            raise FastanonError("a quarantine folder holds back outputs that show text: it "
                                "goes with detect_text (--detect-text)")
        if stores.is_url(dst) or stores.is_url(job.quarantine):
            raise FastanonError(f"{job.quarantine}: outputs are held back in a local folder, "
                                "beside a local DST")
        check_paths(src, job.quarantine)
        if os.path.abspath(job.quarantine).startswith(os.path.abspath(dst) + os.sep):
            raise FastanonError(f"{job.quarantine}: the quarantine folder may not lie inside "
                                "DST")
    tree = stores.isdir(src) if stores.is_url(src) else os.path.isdir(src)
    if not job.key:
        job = job.replace(key=os.urandom(32))    # one random key for the whole run
    if job.mapping != bool(mapping):
        job = job.replace(mapping=bool(mapping))
    if job.workers > 1 and (stores.in_process(src) or stores.in_process(dst)):
        job = job.replace(workers=1)            # workers would read and write their own copy
    global _STATE
    _STATE = _prepare(job, dst, tree)       # a bad policy fails here, before any worker
    directory = os.path.join(src, "DICOMDIR")
    if job.rename and tree and (stores.exists(directory) if stores.is_url(src)
                                else os.path.isfile(directory)):
        job = job.replace(file_set=True)    # the files get names the DICOMDIR can hold
        _STATE = _prepare(job, dst, True)
    if stores.is_url(dst):
        written_in = None           # objects are put whole: no temporary file to sweep
    else:
        if tree or job.rename:
            os.makedirs(dst, exist_ok=True)
        written_in = dst if os.path.isdir(dst) else os.path.dirname(dst) or "."
    summary = Summary()
    started = time.monotonic()
    outcomes = spread(src, dst, job, tree) if spread else _outcomes(src, dst, job)
    names: set[int] | None = set() if job.rename else None
    with _Csv(audit, audit_header(), private=False) as audit_rows, \
            _Csv(mapping, _mapping_header(), private=True) as mapping_rows:
        try:
            for outcome in outcomes:
                if names is not None:
                    outcome = _unique_name(outcome, names)
                summary.add(outcome)
                if audit_rows:
                    audit_rows.writerow(audit_row(outcome, job.preset_name))
                if mapping_rows and outcome.mapping:
                    mapping_rows.writerow(_mapping_row(outcome))
                if on_outcome:
                    on_outcome(outcome)
        except KeyboardInterrupt:
            outcomes.close()          # stops the workers before the sweep
            _sweep_temp(written_in)
            summary.seconds = time.monotonic() - started
            raise Interrupted(summary) from None
        except BaseException:       # a worker lost, the audit or mapping file not writable
            outcomes.close()
            _sweep_temp(written_in)
            raise
        finally:
            outcomes.close()
    summary.seconds = time.monotonic() - started
    return summary


def _unique_name(outcome: Outcome, seen: set[int]) -> Outcome:
    """--rename: two inputs with the same new study, series and SOP instance UIDs get the same
    output name, and only one of them can be in DST. The second is a failure, not an output
    "already there" (with --overwrite, or two workers at once, it replaced the first)."""
    if outcome.status not in ("written", "exists"):
        return outcome
    key = hash(outcome.dst)        # a number per output, not the name: memory stays small
    if key not in seen:
        seen.add(key)
        return outcome
    return outcome.replace(status="failed",
                   reason=f"same output name {outcome.dst} as another input of this run (the same "
                          "study, series and SOP instance UIDs): only one of them is in the "
                          "destination")


# A run works in this process for this long before it starts its workers: forked ones (Linux,
# workers.py) cost a few milliseconds to start, a spawned pool (elsewhere) some 60 ms.
SERIAL_SECONDS = 0.02
FORKED = sys.platform.startswith("linux")   # else a pool of spawned processes (multiprocessing)


def _outcomes(src: Path, dst: Path, job: Job) -> Iterator[Outcome]:
    items = pairs(src, dst)
    if job.workers > 1 and SERIAL_SECONDS > 0:
        deadline = time.monotonic() + SERIAL_SECONDS
        for item in items:
            yield process(item)
            if time.monotonic() >= deadline:
                break
    head = list(islice(items, 2 * job.workers))
    if job.workers <= 1 or len(head) <= job.workers:     # too few files to be worth a pool
        for item in head:
            yield process(item)
        for item in items:
            yield process(item)
        return
    if FORKED:                  # forked workers inherit the compiled plans
        from .workers import Lost, ordered

        chunks = chunked(_chain(head, items), FORKED_CHUNK)
        try:
            for done in ordered(job.workers, _process_fields, chunks, job.workers * WINDOW):
                for fields in done:
                    yield Outcome(*fields)
        except Lost:
            raise WorkerLost(errno.EIO, _LOST) from None
        return
    import multiprocessing

    pool = multiprocessing.get_context("spawn").Pool(job.workers, _start_worker, (job, dst))
    window = _Window(max(64, job.workers * CHUNK * 8))
    try:
        chunks = chunked(window.feed(_chain(head, items)), CHUNK)
        results = pool.imap(_process_fields, chunks)     # chunk by chunk: next() has a timeout
        workers = {worker.pid for worker in pool._pool}
        while True:
            try:
                done = results.next(timeout=WATCH_SECONDS)
            except StopIteration:
                break
            except multiprocessing.TimeoutError:
                _check_workers(pool, workers)
                continue
            for fields in done:
                window.taken()
                yield Outcome(*fields)
    except BaseException:
        window.stop()
        pool.terminate()
        pool.join()
        raise
    window.stop()
    pool.close()
    pool.join()


WATCH_SECONDS = 1.0        # how often a waiting run checks that its workers are alive


class WorkerLost(OSError):
    """A worker process died (killed, or a signal such as SIGBUS when an input file shrank while
    it was mapped): the files it held are not written, and the run stops instead of waiting."""


def _check_workers(pool, started: set[int]) -> None:
    """Pool replaces a dead worker and never hands back its task: a changed set of worker
    processes means a task is lost for good."""
    if {worker.pid for worker in pool._pool} != started:
        raise WorkerLost(errno.EIO, _LOST)


_LOST = ("a worker process died while anonymizing; the outputs written so far are complete and "
         "a rerun with the same --key finishes the rest")


_OUTCOME_FIELDS = tuple(Outcome.__record_fields__)


def _process_fields(items: list) -> list[tuple]:
    """A worker's chunk: each Outcome as its fields (what marshal carries from a forked
    worker; a spawned pool's pickles them too)."""
    results = []
    for item in items:
        outcome = process(item)
        results.append(tuple(getattr(outcome, name) for name in _OUTCOME_FIELDS))
    return results


def _chain(head: list, rest: Iterable) -> Iterator:
    yield from head
    yield from rest


class _Window:
    """Keeps the pool at most `size` tasks ahead of the results taken back. Pool.imap's feeder
    thread drains its whole input at once; through this window the walk advances only as results
    come back, so a 100,000-file tree never sits in memory."""

    def __init__(self, size: int):
        import threading            # with the pool only

        self._free = threading.Semaphore(size)
        self._stopped = threading.Event()

    def feed(self, items: Iterable) -> Iterator:
        for item in items:
            while not self._free.acquire(timeout=0.1):
                if self._stopped.is_set():       # the pool is being stopped: let its thread end
                    return
            if self._stopped.is_set():
                return
            yield item

    def taken(self) -> None:
        self._free.release()

    def stop(self) -> None:
        self._stopped.set()


def _sweep_temp(folder: str | None) -> None:
    """Remove temporary outputs left by this run's workers, stopped mid-write (Ctrl-C, an audit
    that cannot be written), and by dead runs before it; a live run's stay."""
    if folder is not None:
        sweep_temp(str(folder), recursive=True)


# -- audit and mapping files ----------------------------------------------------------------------

class _Csv:
    """A CSV file written row by row (None when no path is given); the mapping file is private."""

    def __init__(self, path: Path | None, header: list[str], private: bool):
        self.path, self.header, self.private = path, header, private
        self.handle = None

    def __enter__(self):
        if self.path is None:
            return None
        import csv                  # only when a run writes one

        os.makedirs(os.path.dirname(os.fspath(self.path)) or ".", exist_ok=True)
        mode = 0o600 if self.private else 0o644
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        if self.private:
            os.fchmod(fd, 0o600)        # an existing file keeps its mode otherwise
        self.handle = os.fdopen(fd, "w", newline="", encoding="utf-8")
        self.writer = csv.writer(self.handle)
        self.writerow(self.header)
        return self

    def writerow(self, row: list) -> None:
        """One row, flushed: what the file says is what was done, up to an interruption."""
        try:
            self.writer.writerow(row)
            self.handle.flush()
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, os.fspath(self.path)) from None

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            try:
                self.handle.close()
            except OSError as error:
                if exc[0] is None:
                    raise OSError(error.errno, error.strerror, os.fspath(self.path)) from None


class AuditLog:
    """An audit CSV outside a run (the node's): add(outcome) writes its row, flushed."""

    def __init__(self, path: Path, job: Job):
        self.job = job
        self._csv = _Csv(path, audit_header(), private=False)

    def __enter__(self) -> AuditLog:
        self._rows = self._csv.__enter__()
        return self

    def add(self, outcome: Outcome) -> None:
        self._rows.writerow(audit_row(outcome, self.job.preset_name))

    def __exit__(self, *exc) -> None:
        self._csv.__exit__(*exc)


def audit_header() -> list[str]:
    return ["source", "destination", "status", "reason", "preset", "mask_rule", *AUDITED_ACTIONS]


def audit_row(outcome: Outcome, preset: str) -> list:
    """The audit file's row of one outcome (its columns: audit_header); the preview's
    record holds the same."""
    reason = outcome.reason
    if outcome.warnings or outcome.findings:
        reason = "; ".join(filter(None, [reason, *map(str, outcome.warnings),
                                         *(f"check: {f}" for f in outcome.findings)]))
    return [outcome.src, outcome.dst, outcome.status, reason, preset,
            outcome.mask_rule or "", *(outcome.actions.get(a, 0) for a in AUDITED_ACTIONS)]



def _mapping_header() -> list[str]:
    header = ["source", "destination"]
    for name, _ in MAPPED:
        header += [name, f"new {name}"]
    return header


def _mapping_row(outcome: Outcome) -> list:
    row = [outcome.src, outcome.dst]
    for old, new in outcome.mapping:
        row += [old, new]
    return row
