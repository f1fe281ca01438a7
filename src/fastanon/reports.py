"""The check's written reports: JSON streamed a pair at a time, and a readable HTML page.

Both are written beside their final name and moved there when complete (an interrupted check
leaves no report that looks whole). Neither holds a value of a file: findings name attributes,
elements and boxes, never what they held (check.py).
"""

from __future__ import annotations

import html
import json
import os
import time

from .errors import FastanonError

# What each kind of finding means, for the page (and the README's table).
KINDS = {
    "survived": "an identifying value of the input is still in the same attribute",
    "echo": "an identifying value of the input is in another attribute of the output",
    "in-pixels": "a long identifying value of the input is in the bytes of the Pixel Data",
    "unreadable": "the output cannot be read",
    "unreadable-input": "the input cannot be read as DICOM (nothing to compare with)",
    "meta": "the file meta and the data set name different SOP instances or classes",
    "invalid-uid": "a UID of the output is not valid (PS3.5 9.1)",
    "uid-map": "the old to new UID map is not a function or not one to one across the run",
    "pixels-changed": "the Pixel Data changed and the output does not say its pixels were "
                      "cleaned (code 113101)",
    "text-in-pixels": "the text detector reads text in the output's pixels",
    "text-unchecked": "the output's pixels could not be decoded to look for text",
}


class _Atomic:
    """A text file written under a temporary name and moved to its own when complete."""

    def __init__(self, path: str):
        self.path, self.temp = os.fspath(path), f"{os.fspath(path)}.partial"
        try:
            self.handle = open(self.temp, "w", encoding="utf-8")
        except OSError as exc:
            raise FastanonError(f"{self.path}: cannot be written ({exc.strerror})") from None

    def write(self, text: str) -> None:
        self._or_discard(self.handle.write, text)

    def close(self) -> None:
        self._or_discard(lambda: (self.handle.close(), os.replace(self.temp, self.path)))

    def _or_discard(self, step, *args) -> None:
        """step(*args); on an OSError, no partial file is left and the error says which file."""
        try:
            step(*args)
        except OSError as exc:
            self.discard()
            raise FastanonError(f"{self.path}: cannot be written ({exc.strerror})") from None

    def discard(self) -> None:
        try:
            self.handle.close()
        except OSError:
            pass
        try:
            os.unlink(self.temp)
        except OSError:
            pass


class JsonReport:
    """A JSON array of one object per pair ({"input", "output", "findings"}), each written as
    it comes: a tree of any size is never held."""

    def __init__(self, path: str):
        self.file, self.count = _Atomic(path), 0
        self.file.write("[")

    def add(self, report) -> None:
        self.file.write(("," if self.count else "") + "\n" +
                        json.dumps(report.as_dict(), ensure_ascii=False))
        self.count += 1

    def close(self, counts: dict | None = None) -> None:
        self.file.write("\n]\n" if self.count else "]\n")
        self.file.close()

    def discard(self) -> None:
        self.file.discard()


class HtmlReport:
    """A page a data-protection officer can read and keep: what was checked, the counts by kind
    of finding, and each finding by output file. Only the pairs with findings are held (the
    clean ones are counted)."""

    def __init__(self, path: str, about: dict):
        self.path, self.about = path, about
        self.rows: list[tuple[str, str, object]] = []      # (input, output, finding)
        self.checked = self.flagged = 0
        self.started = time.time()

    def add(self, report) -> None:
        self.checked += 1
        if report.findings:
            self.flagged += 1
            self.rows += [(report.input, report.output, f) for f in report.findings]

    def close(self, counts: dict) -> None:
        file = _Atomic(self.path)
        try:
            file.write(self._page(counts))
        except BaseException:
            file.discard()
            raise
        file.close()

    def discard(self) -> None:
        pass

    def _page(self, counts: dict) -> str:
        e = html.escape
        kinds: dict[str, int] = {}
        for _, _, finding in self.rows:
            kinds[finding.kind] = kinds.get(finding.kind, 0) + 1
        verdict = ("No finding: nothing of the inputs' identifying values was found in the "
                   "outputs." if not self.rows else
                   f"{len(self.rows):,} finding(s) in {self.flagged:,} of {self.checked:,} "
                   f"output(s).")
        about = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>"
                        for k, v in self.about.items())
        totals = [("pairs checked", self.checked), ("outputs with findings", self.flagged)]
        totals += [(label, counts[key]) for key, label in (
            ("no-output", "inputs without an output"), ("unreadable", "inputs not readable"),
            ("skipped", "files that are no DICOM")) if counts.get(key)]
        summary = "".join(f"<tr><th>{e(label)}</th><td>{n:,}</td></tr>" for label, n in totals)
        by_kind = "".join(
            f'<tr><td><span class="kind">{e(kind)}</span></td><td>{n:,}</td>'
            f"<td>{e(KINDS.get(kind, ''))}</td></tr>" for kind, n in sorted(kinds.items()))
        rows = "".join(
            f'<tr><td class="path">{e(output)}<div class="muted">{e(source)}</div></td>'
            f'<td><span class="kind">{e(f.kind)}</span></td><td>{e(f.input_path)}</td>'
            f"<td>{e(f.output_path)}</td><td>{e(f.category)}</td><td>{e(f.detail)}</td></tr>"
            for source, output, f in self.rows)
        when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(self.started))
        return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>fastanon check</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem;
       padding: 0 1rem; color: #1e293b; }}
h1 {{ font-size: 1.5rem; }} h2 {{ font-size: 1.15rem; margin-top: 2rem; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; vertical-align: top; padding: 0.3rem 0.6rem;
          border-bottom: 1px solid #e2e8f0; overflow-wrap: anywhere; }}
.about th, .summary th {{ width: 16rem; font-weight: 600; }}
.verdict {{ font-size: 1.1rem; font-weight: 600; padding: 0.8rem 1rem; border-radius: 6px; }}
.clean {{ background: #dcfce7; }} .found {{ background: #fee2e2; }}
.kind {{ font-family: ui-monospace, monospace; font-weight: 600; }}
.path {{ font-family: ui-monospace, monospace; font-size: 0.9rem; }}
.muted {{ color: #64748b; }}
</style></head><body>
<h1>fastanon check</h1>
<p class="verdict {'clean' if not self.rows else 'found'}">{e(verdict)}</p>
<table class="about">{about}<tr><th>checked</th><td>{e(when)}</td></tr></table>
<h2>Summary</h2>
<table class="summary">{summary}</table>
{'<h2>Findings by kind</h2><table><tr><th>kind</th><th>count</th><th>meaning</th></tr>'
 + by_kind + '</table>' if by_kind else ''}
{'<h2>Findings</h2><table><tr><th>output (input)</th><th>kind</th><th>input attribute</th>'
 '<th>output element</th><th>category</th><th>detail</th></tr>' + rows + '</table>'
 if rows else ''}
<p class="muted">No finding shows a value: each names the input attribute whose value was
found, the output element that holds it, and whether it is the same attribute (survived) or
another one (echo).</p>
</body></html>
"""
