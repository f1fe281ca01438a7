"""`fastanon run SRC DST` without click: its options as data, its body, and the fast start.

The command's options are listed once (OPTIONS); cli/run.py makes the click command of them,
for --help, usage errors and click's test runner. `fast(argv)`, what the `fastanon` command
calls for `run`, parses argv with the same options (_args.parse) and runs the body directly, so
that a run pays nothing for click; when argv is anything but well formed, or the body finds a
usage error before anything is written, click takes argv from the start and says what is wrong.
"""

from __future__ import annotations

import os
import sys
import time

from ..errors import FastanonError, PolicyError
from ._args import KEY_OPTIONS, POLICY_OPTIONS, TRIAL_OPTIONS, Opt, fast as _fast
from ._options import load_key, load_policy, load_trial, usage

TYPE_CHECKING = False     # typing is not imported at run time
if TYPE_CHECKING:
    from ..batch import Outcome, Summary
    from os import PathLike

    Path = str | PathLike

EXIT_INTERRUPTED = 130          # the shell's convention for a run stopped by SIGINT

ARGUMENTS = (("src", "source"), ("dst", "text"))

MASK_OPTIONS = (
    Opt(("--mask",), "mask_texts", "text",
        "Black out a rectangle of the pixels in every file (repeatable); FRAMES like 0,3-5 counts "
        "from 0 (default: every frame).", metavar="X,Y,W,H[@FRAMES]", multiple=True),
    Opt(("--masks",), "masks_file", "file",
        "A TOML file of masks for every file: masks = [\"X,Y,W,H\", ...]."),
    Opt(("--mask-rules",), "rules_file", "rules",
        "A TOML file of [[rule]]s (match on Modality, Manufacturer, Rows, ...; masks): each file "
        "gets the masks of the first rule it matches; the audit names it. builtin:ctp: the "
        "burned-in text signatures of RSNA CTP (52 devices).", metavar="FILE|builtin:NAME"),
    Opt(("--decompress",), "decompress", "flag",
        "Decode compressed Pixel Data to apply masks (written uncompressed, Explicit VR Little "
        "Endian). Without it, masks apply in JPEG Baseline and Extended (in the DCT domain), "
        "RLE, and JPEG Lossless, JPEG-LS and JPEG 2000 (pip install 'fastanon[codecs]') in "
        "their own syntax, only the frames with masks encoded again; other compressed files "
        "are refused."),
    Opt(("--burned-in-annotation",), "burned_in", "choice",
        "no: set Burned In Annotation to NO in the files that were masked (a preset that marks "
        "files de-identified, as research does, always does so).",
        choices=("keep", "no"), default="keep"),
)

OPTIONS = POLICY_OPTIONS + KEY_OPTIONS + TRIAL_OPTIONS + MASK_OPTIONS + (
    Opt(("--workers",), "workers", "count",
        "Files processed in parallel [default: the CPU count]. The outputs are the same "
        "whatever the number.", metavar="N"),
    Opt(("--overwrite",), "overwrite", "flag",
        "Replace outputs that already exist (else skipped, so a rerun completes an interrupted "
        "run)."),
    Opt(("--rename",), "rename", "flag",
        "Name outputs DST/<study>/<series>/<sop>.dcm from the new UIDs, instead of mirroring "
        "SRC's folder and file names (which often carry patient names)."),
    Opt(("--keep-paths",), "keep_paths", "flag",
        "Mirror SRC's folder and file names as they are. By default a name that holds an "
        "identifying value of the file inside (the patient's name, IDs, accession number, birth "
        "date, address, telephone) gets that value's pseudonym instead (the same in every file, "
        "so the tree stays a tree)."),
    Opt(("--audit",), "audit", "path",
        "Write one CSV row per file: source, destination, status, reason, preset, mask rule, "
        "and how many elements each action changed.", metavar="FILE.csv"),
    Opt(("--mapping",), "mapping", "path",
        "Write the original and new identifiers of every file (patient name and ID, accession "
        "number, study, series and instance UIDs). This file is a RE-IDENTIFICATION KEY: keep "
        "it apart from the data, or do not ask for it.", metavar="FILE.csv"),
    Opt(("--dask",), "dask", "text",
        "Run on a Dask cluster: local (a LocalCluster of a worker process per CPU here), local:N, "
        "or a scheduler's address (tcp://host:8786); SRC and DST are the same paths on every "
        "worker, or URLs they all reach (s3://...). Needs `pip install 'fastanon[dask]'`.",
        metavar="ADDRESS"),
    Opt(("--verify",), "verify", "flag",
        "Check each output against its input once written, as `fastanon check` does (the "
        "identifying values found again, the file meta, the UIDs, changed pixels): findings "
        "are named on stderr and in the audit, counted in the summary, and make the exit "
        "status 1."),
    Opt(("--detect-text",), "detect_text", "flag",
        "Look for text still shown in each output's pixels once written (masks applied), with "
        "an offline detector (pip install 'fastanon[ocr]'; the first, middle and last frames, "
        "about 0.4 s each): each box found is named on stderr and in the audit, counted in the "
        "summary, and makes the exit status 1."),
    Opt(("--quarantine",), "quarantine", "folder",
        "With --detect-text: move the outputs that show text here (at their relative path) "
        "instead of leaving them in DST, for someone to mask and release.", metavar="DIR"),
    Opt(("--no-clone",), "no_clone", "flag",
        "Always copy the Pixel Data. By default, on a file system with reflinks (XFS, btrfs, "
        "bcachefs, OpenZFS 2.2) an output shares those blocks with its input instead, as `cp` "
        "does there: fast and no extra space, but not an independent copy for backups."),
    Opt(("--max-inflated",), "max_inflated", "count",
        "A deflated data set may inflate to at most this many MiB (default 4096).",
        metavar="MIB"),
    Opt(("--max-inflate-ratio",), "max_inflate_ratio", "count",
        "... and, past 64 MiB, to at most N times its deflated size (default 1024).",
        metavar="N"),
    Opt(("-q", "--quiet"), "quiet", "flag", "No progress bar and no summary (errors only)."),
)


def fast(argv: list[str]) -> None:
    """Run `fastanon run ARGV` without click when argv is well formed; returns (having done
    nothing) when click should take it."""
    _fast(argv, OPTIONS, ARGUMENTS, run)


def say(text: str, end: str = "\n") -> None:
    """A line on stderr, at once."""
    sys.stderr.write(text + end)
    sys.stderr.flush()


def run(src: Path, dst: str, preset: str | None, policy_file: Path | None, key: str | None,
        key_file: Path | None, lookup: Path | None, lookup_key: str | None,
        lookup_missing: str | None, trial_sponsor: str | None, trial_protocol: str | None,
        trial_site: str | None, mask_texts: tuple[str, ...], masks_file: Path | None,
        rules_file: Path | None, decompress: bool, burned_in: str, workers: int | None,
        overwrite: bool, rename: bool, keep_paths: bool, audit: Path | None,
        mapping: Path | None, dask: str | None, verify: bool, detect_text: bool,
        quarantine: Path | None, no_clone: bool,
        max_inflated: int | None,
        max_inflate_ratio: int | None, quiet: bool) -> None:
    """Anonymize SRC (a DICOM file or a folder tree, or an object store's URL) into DST, which
    mirrors it.

    DICOM files are recognised by their content; other files are skipped and counted. The input
    is never modified, and DST may not lie inside SRC. Each output appears only when complete:
    an interrupted run (Ctrl-C) leaves no partial file, and rerunning it with the same --key
    completes it, skipping the outputs already there.

    Exit status: 0 all written, 1 some files failed (each named on stderr with the reason),
    2 usage error, 130 interrupted.

    \b
    Examples:
      fastanon run --key-file site.key export/ export-anon/
      fastanon run --preset internal --workers 4 --audit audit.csv study/ out/
      fastanon run --mask 0,0,640,48 --burned-in-annotation no us/ us-anon/
    """
    from ..batch import Interrupted, Job, cpu_count, run as run_batch   # the engine, now
    from ..stores import is_url

    policy, name = load_policy(preset, policy_file)
    policy = load_trial(policy, lookup, lookup_key, lookup_missing, trial_sponsor,
                        trial_protocol, trial_site)
    masks = masks_of(mask_texts, masks_file, rules_file, burned_in)
    src = os.fspath(src)
    if not is_url(src) and not is_url(dst) and not os.path.isdir(src) and not rename \
            and dst.endswith(("/", os.sep)):
        os.makedirs(dst, exist_ok=True)     # "DST/": a folder for the one output
    job = Job(policy=policy, key=load_key(key, key_file), masks=masks, overwrite=overwrite,
              workers=workers or cpu_count(), decompress=decompress, burned_in=burned_in,
              rename=rename, keep_paths=keep_paths, mapping=mapping is not None,
              preset_name=name, limits=_limits(max_inflated, max_inflate_ratio),
              clone=not no_clone, verify=verify, detect_text=detect_text,
              quarantine=os.fspath(quarantine) if quarantine else "")
    progress = Progress(src, show=not quiet and sys.stderr.isatty(), warn=not quiet)
    previous = _on_sigterm(_terminate)          # `kill` stops a run as cleanly as Ctrl-C
    try:
        if dask:
            from ..dask import run as run_on_cluster

            summary = run_on_cluster(src, dst, job=job, address=dask, on_outcome=progress,
                                     audit=audit, mapping=mapping)
        else:
            summary = run_batch(src, dst, job, progress, audit, mapping)
    except Interrupted as stop:
        progress.finish()
        again = ("Run the same command again to complete it." if job.key else
                 "This run drew a random key: to complete it consistently, remove DST and run "
                 "again with --key.")
        say(f"interrupted: {_counts(stop.summary)}; no partial output left. {again}")
        sys.exit(EXIT_INTERRUPTED)
    except FastanonError as exc:        # found before anything is written (batch.run)
        progress.finish()
        raise usage(str(exc)) from None
    except OSError as exc:              # DST, the audit or the mapping file cannot be written
        progress.finish()
        import click

        where = f"{exc.filename}: " if exc.filename else ""
        raise click.ClickException(f"{where}{exc.strerror or exc}") from None
    finally:
        _on_sigterm(previous)
    progress.finish()
    if not quiet:
        say(f"fastanon: {_counts(summary)} in {summary.seconds:.2f} s ({_rate(summary)})")
        if verify or detect_text:
            what = "verified" if verify else "text looked for"
            say(f"{what}: {summary.findings:,} finding(s) in the "
                f"{summary.written + summary.held:,} output(s) written"
                + ("" if summary.findings else ", none")
                + (f"; {summary.held:,} held back in {quarantine}" if summary.held else ""))
        if summary.exists and not job.key:
            say("note: outputs already there were kept, but this run drew a new random key; "
                "give the same --key to every run of one data set so that UIDs and pseudonyms "
                "match")
    sys.exit(1 if summary.failed or summary.findings or summary.held else 0)


def _terminate(signum, frame):
    raise KeyboardInterrupt


def _on_sigterm(handler):
    """Install a SIGTERM handler (only the main thread may); returns the previous one."""
    if handler is None:
        return None
    try:
        import _signal as signals       # signal's C module: signal itself loads enum
    except ImportError:
        import signal as signals
    try:
        return signals.signal(signals.SIGTERM, handler)
    except ValueError:
        return None


def _counts(summary: Summary) -> str:
    parts = [f"{summary.written:,} written"]
    if summary.exists:
        parts.append(f"{summary.exists:,} already there")
    parts.append(f"{summary.skipped:,} skipped (not DICOM)")
    parts.append(f"{summary.failed:,} failed")
    if summary.held:
        parts.append(f"{summary.held:,} held back (text in the pixels)")
    return ", ".join(parts)


def _rate(summary: Summary) -> str:
    seconds = summary.seconds or 1e-9
    rate = summary.bytes_in / 1e6 / seconds
    shared = f", {summary.shared / 1e6:,.1f} MB shared with the inputs" if summary.shared else ""
    return f"{summary.bytes_in / 1e6:,.1f} MB{shared}, {rate:,.{1 if rate < 10 else 0}f} MB/s, " \
           f"{summary.total / seconds:,.0f} files/s"


def _limits(max_inflated: int | None, ratio: int | None):
    """The limits of --max-inflated (MiB) and --max-inflate-ratio, over the defaults."""
    from ..scan import DEFAULT_LIMITS, Limits

    if max_inflated is None and ratio is None:
        return DEFAULT_LIMITS
    return Limits(max_inflated=(max_inflated << 20) if max_inflated else DEFAULT_LIMITS.max_inflated,
                  inflate_ratio=ratio or DEFAULT_LIMITS.inflate_ratio)


def masks_of(texts: tuple[str, ...], masks_file: Path | None, rules_file: Path | None,
           burned_in: str):
    """The masks of a run (or a node): a tuple of Mask (every file) or MaskRules (chosen per
    file), from the options of MASK_OPTIONS."""
    if rules_file and (texts or masks_file):
        raise usage("--mask-rules chooses masks per file; it cannot be combined with --mask or "
                    "--masks, which apply to every file")
    masks = ()
    if texts or masks_file or rules_file:
        from ..masks import Mask, MaskRules

        try:
            if rules_file:
                masks = MaskRules.load(rules_file)
            else:
                masks = tuple(Mask.parse(text) for text in texts)
                if masks_file:
                    masks += _masks_from_file(masks_file)
        except FastanonError as exc:
            raise usage(str(exc), "--mask-rules" if rules_file else "--mask/--masks") from None
    if burned_in == "no" and not masks:
        raise usage("--burned-in-annotation no says the pixels were cleaned: give --mask, "
                    "--masks or --mask-rules")
    return masks


def _masks_from_file(path: Path) -> tuple:
    """masks = ["X,Y,W,H[@FRAMES]", {x = , y = , width = , height = , frames = [...]}, ...]"""
    import tomllib

    from ..masks import Mask

    try:
        with open(path, encoding="utf-8") as handle:
            doc = tomllib.loads(handle.read())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{path}: cannot be read as TOML ({exc})") from None
    if set(doc) != {"masks"} or not isinstance(doc["masks"], list):
        raise PolicyError(f"{path}: expected one key, masks = [\"X,Y,W,H\", ...] (per-file rules "
                          "go in a --mask-rules file)")
    return tuple(Mask.from_toml(item, os.fspath(path)) for item in doc["masks"])


class Progress:
    """Failures on stderr as they come; on a terminal, a progress line (files, MB, files/s, ETA).
    The files are counted by a thread while the run goes, so the run never waits for the count."""

    REDRAW = 0.1          # seconds between redraws

    def __init__(self, src: Path, show: bool, warn: bool = True):
        self.src, self.show, self.warn = src, show, warn
        self.count = self.bytes = 0
        self.total: int | None = None
        self.started = time.monotonic()
        self.drawn = 0.0
        self.counter = None             # the thread counting the files

    def __call__(self, outcome: Outcome) -> None:
        self.count += 1
        self.bytes += outcome.bytes_in
        if self.show and self.counter is None and os.path.isdir(self.src):
            # Started with the first outcome: after the worker pool has forked.
            import threading

            self.counter = threading.Thread(target=self._count, daemon=True)
            self.counter.start()
        if outcome.status == "failed":
            self._say("error", outcome.src, outcome.reason)
        if outcome.warnings and self.warn:
            for warning in outcome.warnings:
                self._say("warning", outcome.src, str(warning))
        for finding in outcome.findings:
            self._say("finding", outcome.dst, finding)
        if self.show:
            now = time.monotonic()
            if now - self.drawn >= self.REDRAW:
                self.drawn = now
                self._draw(now)

    def _count(self) -> None:
        from ..pipeline import TEMP_SUFFIX

        total, stack = 0, [str(self.src)]
        while stack:
            try:
                with os.scandir(stack.pop()) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif not entry.name.endswith(TEMP_SUFFIX):
                            total += 1
            except OSError:
                continue
        self.total = total

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = self.count / elapsed
        text = f"{self.count:,} files  {self.bytes / 1e6:,.1f} MB  {rate:,.0f} files/s"
        total = self.total if os.path.isdir(self.src) else 1
        if total:
            done = min(self.count / total, 1.0)
            bar = "#" * int(done * 20)
            eta = (total - self.count) / rate if rate else 0
            text = (f"{done:4.0%} [{bar:<20}] {self.count:,}/{total:,} files  "
                    f"{self.bytes / 1e6:,.1f} MB  {rate:,.0f} files/s  "
                    f"ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        columns = os.environ.get("COLUMNS", "")
        try:
            width = (int(columns) if columns.isdigit()
                     else os.get_terminal_size(sys.stderr.fileno()).columns) - 1
        except (OSError, ValueError, AttributeError):
            width = 79
        say("\r" + text[:width] + "\x1b[K", end="")

    def _say(self, level: str, where: str, message: str) -> None:
        self._clear()
        say(f"{level}: {message}" if where and where in message
            else f"{level}: {where}: {message}")

    def _clear(self) -> None:
        if self.show and self.drawn:
            say("\r\x1b[K", end="")

    def finish(self) -> None:
        if self.show and self.drawn:
            self._draw(time.monotonic())
            say("")
