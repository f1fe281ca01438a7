"""The preview page's HTTP shell: stdlib ThreadingHTTPServer, one static page, a small JSON API.

Safety first (a local page that holds patient data): it binds 127.0.0.1 unless told otherwise,
every API call carries a random token, the Host header must name this machine by IP or as
localhost (DNS rebinding), bodies are capped (413), files live in memory only and go when the tab
closes or after an idle timeout, and nothing logged contains a value from a file.
Errors become HTTP answers here: FastanonError → 400 with its message, too large → 413.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import math
import os
import re
import secrets
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, unquote, urlsplit

from .. import __version__, presets
from ..categories import categories
from ..elements import keyword
from ..policy import Policy
from ..errors import FastanonError
from .. import text as ocr
from . import documents
from .documents import Choices, Documents

MiB = 1 << 20
JSON_LIMIT = 4 * MiB                  # choices, never files
_STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8",
           "index.html": "text/html; charset=utf-8"}
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
                               "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'none'",
}

_NO_TOKEN_PAGE = (b"<!doctype html><meta charset=utf-8><title>fastanon preview</title>"
                  b"<link rel=stylesheet href=/static/style.css>"
                  b"<body class=no-token><main><section class=card><h1>fastanon preview</h1>"
                  b"<p>This address needs its token. Open the full address that "
                  b"<code>fastanon serve</code> printed: it ends in "
                  b"<code>?token=&hellip;</code>.</p></section></main>")


@dataclass(frozen=True)
class ServeOptions:
    """Everything `fastanon serve` decides, once, at the edge."""

    host: str = "127.0.0.1"
    port: int = 8765
    max_size: int = 2 << 30           # bytes of one upload (413 beyond)
    idle_timeout: float = 15 * 60     # seconds a file stays in memory unseen
    key: bytes | None = None          # for keyed UIDs, date shifts, pseudonyms (random if None)
    allow_remote: bool = False
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    verbose: bool = False


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class PreviewServer(ThreadingHTTPServer):
    """The server with its options, the open documents, and the session's key."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, options: ServeOptions):
        if not options.allow_remote and not is_loopback(options.host):
            raise FastanonError(f"refusing to serve patient data on {options.host}: the page "
                                "binds a loopback address (127.0.0.1) unless --allow-remote")
        self.options = options
        self.key = options.key or os.urandom(32)
        self.documents = Documents(options.idle_timeout)
        self.tables: dict = {}          # lookup tables loaded in this session, by id
        family_v6 = ":" in options.host
        if family_v6:
            import socket
            self.address_family = socket.AF_INET6
        self._stop = threading.Event()
        super().__init__((options.host.strip("[]"), options.port), Handler)
        threading.Thread(target=self._sweeper, name="fastanon-idle", daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        host = self.options.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}/?token={self.options.token}"

    def _sweeper(self) -> None:
        interval = max(min(self.options.idle_timeout / 4, 30.0), 0.05)
        while not self._stop.wait(interval):
            self.documents.sweep()

    def handle_error(self, request, client_address) -> None:
        """A request that failed outside the handler's own checks: say so, without the
        exception's text (it may quote a value)."""
        kind = type(sys.exc_info()[1]).__name__
        if kind not in ("ConnectionResetError", "BrokenPipeError", "TimeoutError"):
            sys.stderr.write(f"fastanon serve: a request failed ({kind})\n")

    def server_close(self) -> None:
        self._stop.set()
        super().server_close()


class Handler(BaseHTTPRequestHandler):
    server: PreviewServer
    server_version = f"fastanon/{__version__}"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    # -- plumbing ------------------------------------------------------------------------------

    def log_message(self, format: str, *args) -> None:     # noqa: A002 (the stdlib's name)
        """Never log request lines or values: paths carry ids and the token, bodies patient data."""

    def log_request(self, code="-", size="-") -> None:
        if self.server.options.verbose:
            path = urlsplit(self.path).path
            path = re.sub(r"/api/files/[^/]+", "/api/files/…", path)
            sys.stderr.write(f"{self.command} {path} {int(code) if str(code).isdigit() else code}\n")

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None):
        self.send_response(status)
        for name, value in {**_SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload) -> None:
        self._send(status, json.dumps(payload, ensure_ascii=False).encode(),
                   "application/json; charset=utf-8")

    def _error(self, status: int, message: str, *, close: bool = False) -> None:
        if close:
            self.close_connection = True
        self._send(status, json.dumps({"error": message}).encode(),
                   "application/json; charset=utf-8", {"Connection": "close"} if close else None)

    def _host_ok(self) -> bool:
        """The Host header names this server by IP literal or localhost (PS: DNS rebinding
        attacks need a domain name), or the exact host it was started on."""
        host = self.headers.get("Host", "")
        match = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^:\[\]]+)(?::(\d+))?", host)
        if not match:
            return False
        name, port = match.group(1), match.group(2)
        if port is not None and int(port) != self.server.port:
            return False
        if name == self.server.options.host or name.lower() == "localhost":
            return True
        try:
            address = ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            return False
        return address.is_loopback or self.server.options.allow_remote

    def _token_ok(self, query: dict) -> bool:
        given = self.headers.get("X-Fastanon-Token") or (query.get("token") or [""])[0]
        return hmac.compare_digest(given.encode(), self.server.options.token.encode())

    def _body(self, limit: int) -> bytes | None:
        """The request body, or None after answering 411/413/400 (the body is then not read)."""
        if self.headers.get("Transfer-Encoding"):
            self._error(411, "send the file with a Content-Length (chunked uploads are not "
                        "supported)", close=True)
            return None
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._error(411, "a Content-Length header is required", close=True)
            return None
        if length < 0:
            self._error(400, "negative Content-Length", close=True)
            return None
        if length > limit:
            self._error(413, f"the request holds {length:,} bytes; this server accepts at most "
                        f"{limit:,} (fastanon serve --max-size)", close=True)
            return None
        body = self.rfile.read(length)          # one allocation, the size announced
        if len(body) != length:
            self._error(400, "the upload ended early", close=True)
            return None
        return body

    def _choices(self) -> Choices | None:
        body = self._body(JSON_LIMIT)
        if body is None:
            return None
        try:
            parsed = json.loads(body or b"{}")
        except ValueError:
            raise FastanonError("the request body is not JSON") from None
        choices = Choices.from_json(parsed)
        table = parsed.get("lookup") if isinstance(parsed, dict) else None
        if table:
            found = self.server.tables.get(table)
            if found is None:
                raise FastanonError("this lookup table is no longer loaded: load it again")
            choices = choices.with_lookup(found)
        return choices

    # -- routing -------------------------------------------------------------------------------

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        if not self._host_ok():
            self._error(403, "Host header not allowed: open the page by the address "
                        "fastanon serve printed", close=method != "GET")
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        path = url.path
        if method == "GET" and path in ("/static/app.js", "/static/style.css"):
            self._static(path.rsplit("/", 1)[1])
            return
        if method == "GET" and path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
            return
        if not self._token_ok(query) and method == "GET" and path == "/":
            self._send(403, _NO_TOKEN_PAGE, "text/html; charset=utf-8")
            return
        if not self._token_ok(query):
            self._error(403, "missing or wrong token: open the full address fastanon serve "
                        "printed (it ends in ?token=…)", close=method != "GET")
            return
        try:
            self._route(method, path, query)
        except FastanonError as exc:
            self._error(400, str(exc))
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:        # a bug: say so without echoing values from the file
            self._error(500, f"internal error ({type(exc).__name__}); please report it")

    def _route(self, method: str, path: str, query: dict) -> None:
        if method == "GET" and path == "/":
            self._static("index.html")
            return
        if method == "GET" and path == "/api/meta":
            self._json(200, _meta(self.server))
            return
        if method == "POST" and path == "/api/files":
            self._upload(query)
            return
        if method == "POST" and path == "/api/lookup":
            self._lookup(query)
            return
        if method == "POST" and path == "/api/policy":
            choices = self._choices()
            if choices is not None:
                self._json(200, {"text": documents.policy_toml(choices),
                                 "filename": f"{choices.preset}-custom.toml"})
            return
        match = re.fullmatch(r"/api/files/([A-Za-z0-9_-]+)(/.*)?", path)
        if not match:
            self._error(404, f"no such address {path}")
            return
        doc_id, rest = match.group(1), match.group(2) or ""
        if (method, rest) in (("DELETE", ""), ("POST", "/close")):
            self.server.documents.drop(doc_id)
            self._send(204, b"", "text/plain")
            return
        doc = self.server.documents.get(doc_id)
        if doc is None:
            self._error(404, "this file is no longer open (closed or idle too long): drop it again")
            return
        frame = re.fullmatch(r"/frames/(\d+)\.png", rest)
        if method == "GET" and frame:
            self._frame(doc, int(frame.group(1)), query)
        elif method == "GET" and rest == "":
            self._json(200, {"id": doc.id, "summary": documents.summary(doc)})
        elif method == "POST" and rest == "/ping":
            self._send(204, b"", "text/plain")
        elif method == "POST" and rest == "/text":
            self._json(200, documents.text_masks(doc))
        elif method == "POST" and rest in ("/inspect", "/preview", "/download", "/rule",
                                           "/record"):
            choices = self._choices()
            if choices is not None:
                getattr(self, "_" + rest[1:])(doc, choices)
        else:
            self._error(404, f"no such address {method} {rest}")

    # -- pages and API ---------------------------------------------------------------------------

    def _static(self, name: str) -> None:
        body = resources.files(__package__).joinpath("static", name).read_bytes()
        self._send(200, body, _STATIC[name])

    def _upload(self, query: dict) -> None:
        body = self._body(self.server.options.max_size)
        if body is None:
            return
        if not body:
            raise FastanonError("the upload is empty: choose a DICOM file")
        name = self._filename("upload.dcm")
        try:
            doc = self.server.documents.add(body, name)
        except FastanonError as exc:
            raise FastanonError(f"{name} cannot be read as DICOM: {_short(exc)}") from None
        preset = (query.get("preset") or ["research"])[0]
        choices = Choices.from_json({"preset": preset})
        payload = {"id": doc.id, "summary": documents.summary(doc),
                   **documents.rows(doc, choices), "image": _image_info(doc)}
        self._json(200, payload)

    def _lookup(self, query: dict) -> None:
        from ..lookup import Lookup

        body = self._body(JSON_LIMIT * 64)
        if body is None:
            return
        name = self._filename("lookup.csv")
        key = (query.get("key") or ["PatientID"])[0]
        table = Lookup.parse(body, name, key)
        if len(self.server.tables) >= 16:
            self.server.tables.pop(next(iter(self.server.tables)))
        table_id = secrets.token_urlsafe(9)
        self.server.tables[table_id] = table
        self._json(200, {"id": table_id, "name": name, "patients": len(table.rows),
                         "key": keyword(table.key),
                         "columns": [keyword(t) for t in table.tags]
                         + (["date_offset_days"] if table.offsets else [])})

    def _filename(self, default: str) -> str:
        """The name the page gave its upload (X-Filename): the last part of a path, cut short."""
        name = unquote(self.headers.get("X-Filename", ""))
        return os.path.basename(name.replace("\\", "/"))[:200] or default

    def _inspect(self, doc, choices: Choices) -> None:
        self._json(200, documents.rows(doc, choices))

    def _preview(self, doc, choices: Choices) -> None:
        import warnings

        with doc.lock, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            output = documents.anonymized(doc, choices, self.server.key)
            before = documents.rows(doc, choices)
            doc.output = output
            image = _image_info(doc, "output")
        self._json(200, {"changes": documents.changes(before["rows"], doc.data, output),
                         "size": len(output), "image": image,
                         "notes": [str(w.message) for w in caught]})

    def _download(self, doc, choices: Choices) -> None:
        output = documents.anonymized(doc, choices, self.server.key)
        stem = os.path.splitext(doc.name)[0] or "file"
        filename = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{stem}-anonymized.dcm")
        self._send(200, output, "application/dicom",
                   {"Content-Disposition": f'attachment; filename="{filename}"'})

    def _record(self, doc, choices: Choices) -> None:
        found = documents.record(doc, choices, self.server.key)
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(doc.name)[0] or "file")
        self._json(200, {"record": found, "html": documents.record_html(found),
                         "filename": f"{stem}-record"})

    def _rule(self, doc, choices: Choices) -> None:
        self._json(200, {"text": documents.rule_toml(doc, choices.masks),
                         "filename": "mask-rule.toml"})

    def _frame(self, doc, index: int, query: dict) -> None:
        def number(key):
            try:
                value = float(query[key][0]) if key in query else None
            except ValueError:
                value = float("nan")
            if value is not None and not math.isfinite(value):
                raise FastanonError(f"{key} must be a finite number")
            return value

        which = (query.get("which") or ["input"])[0]
        if which not in ("input", "output"):
            raise FastanonError("which is input or output")
        with doc.lock:
            png = doc.frames(which).png(index, number("center"), number("width"))
        self._send(200, png, "image/png")


def _short(exc: Exception) -> str:
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith("the uploaded file: ") else text


def _image_info(doc, which: str = "input") -> dict:
    """What the page needs to draw the image, or why it cannot."""
    from .render import NoImage

    try:
        return doc.frames(which).info.as_dict()
    except NoImage as exc:
        return {"error": str(exc)}


def _meta(server: PreviewServer) -> dict:
    cats = categories()
    return {"version": __version__, "max_size": server.options.max_size,
            "idle_timeout": server.options.idle_timeout,
            "presets": [{"name": n, "description": " ".join(Policy.preset(n).description.split())}
                        for n in presets.names()],
            "categories": [{"name": c.name, "title": c.title, "description": c.description}
                           for c in cats.values()],
            "actions": documents.ACTION_LABELS, "detect_text": ocr.available()}


def serve(options: ServeOptions, *, open_browser: bool = True, ready=None) -> None:
    """Run the preview server until interrupted (Ctrl+C)."""
    server = PreviewServer(options)
    if ready is not None:
        ready(server)
    if open_browser:
        import webbrowser
        threading.Timer(0.3, webbrowser.open, (server.url,)).start()
    try:
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def start(options: ServeOptions) -> PreviewServer:
    """A server running in a background thread (tests, notebooks); stop it with .shutdown()."""
    server = PreviewServer(options)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="fastanon-serve", daemon=True)
    thread.start()
    server.thread = thread
    return server
