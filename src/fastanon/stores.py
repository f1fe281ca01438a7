"""Inputs and outputs in object stores and other fsspec file systems (s3://, gs://, memory://).

A run whose SRC or DST is such a URL reads each input object whole and writes each output as one
complete object (a single put: an object store shows a new object only once it is all there, so
no partial output ever exists; there is no temporary name to sweep). An object larger than
batch.WHOLE_OBJECT goes through a local temporary file instead (streamed both ways, mapped
meanwhile), so that memory stays flat whatever the object's size. `file://` URLs and plain
paths are local files and go the local way (mapped inputs, kernel copies, temporary name and
rename). fsspec and the store's own package (s3fs, gcsfs, adlfs) are needed only for URLs;
credentials come from the store's usual places (for S3: the environment, ~/.aws).
"""

from __future__ import annotations

import posixpath

from .errors import FastanonError

LIST_PAGE = 1000        # keys asked for by each listing request of a bucket (S3's most)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator


def is_url(path) -> bool:
    """An fsspec URL other than a local file's."""
    text = str(path)
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isidentifier() and scheme != "file"


def local(path) -> str:
    """A plain path for a file:// URL (others as given)."""
    text = str(path)
    return text.removeprefix("file://")


def _fs(url: str):
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise FastanonError(f"{url}: URLs need fsspec (pip install fsspec and the store's "
                            "package, e.g. s3fs)") from None
    try:
        return url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise FastanonError(f"{url}: {exc}") from None


def _protocol(fs) -> str:
    protocol = fs.protocol
    return protocol[0] if isinstance(protocol, (tuple, list)) else protocol


def _url(fs, path: str) -> str:
    """The URL of a path the store listed (memory:// paths keep their leading slash)."""
    protocol = _protocol(fs)
    return f"{protocol}://{path if protocol == 'memory' else path.lstrip('/')}"


def exists(url: str) -> bool:
    """Whether an object (or prefix) is there now (not as a listing cached earlier said)."""
    fs, path = _fs(url)
    fs.invalidate_cache(path)
    return fs.exists(path)


def in_process(url) -> bool:
    """A store that lives in this process's memory (memory://): other processes, forked
    workers among them, see other contents."""
    return is_url(url) and str(url).startswith("memory://")


def isdir(url: str) -> bool:
    fs, path = _fs(url)
    return fs.isdir(path)


def _do(url: str, reading: bool, call, *args):
    """call(*args) on the store; its failure a FastanonError naming url."""
    try:
        return call(*args)
    except FileNotFoundError:
        if reading:
            raise FastanonError(f"{url}: no such object") from None
        raise FastanonError(f"{url}: cannot be written (no such bucket or folder)") from None
    except OSError as exc:
        raise FastanonError(f"{url}: cannot be {'read' if reading else 'written'} ({exc})") \
            from None


def read(url: str) -> bytes:
    """The whole object."""
    fs, path = _fs(url)
    return _do(url, True, fs.cat_file, path)


def size(url: str) -> int:
    fs, path = _fs(url)
    return _do(url, True, fs.size, path)


def download(url: str, path: str) -> None:
    """The object copied to a local file, streamed (never whole in memory)."""
    fs, remote = _fs(url)
    _do(url, True, fs.get_file, remote, path)


def upload(path: str, url: str) -> None:
    """A local file put as the object at url, streamed; the store shows it once complete."""
    fs, remote = _fs(url)
    _do(url, False, fs.put_file, path, remote)


def write(url: str, data: bytes) -> None:
    """The object at url, complete, in one put."""
    fs, path = _fs(url)
    _do(url, False, fs.pipe_file, path, bytes(data))


def pairs(src: str, dst: str) -> Iterator[tuple[str, str, str]]:
    """(input URL, output URL or path, relative path) of every object under src, folder by
    folder in sorted order (a local run's order); dst mirrors the relative paths. An S3 prefix
    is listed a page at a time, as the run goes: a million objects under one prefix are never
    one list in memory (other stores list a folder at once)."""
    fs, root = _fs(src)
    out = dst.rstrip("/")
    if not fs.isdir(root):
        if not fs.exists(root):
            raise FastanonError(f"{src}: no such object or prefix")
        yield src, out if not dst.endswith("/") else f"{out}/{posixpath.basename(root)}", \
            posixpath.basename(root)
        return
    root = root.rstrip("/")
    for path in (_s3_files(fs, root) if _protocol(fs) in ("s3", "s3a") else _walked(fs, root)):
        rel = path[len(root) + 1:]
        yield _url(fs, path), f"{out}/{rel}", rel


def _walked(fs, root: str) -> Iterator[str]:
    """The paths of the files under root, each folder's sorted, then its folders', sorted."""
    for folder, dirs, files in fs.walk(root):
        dirs.sort()
        for name in sorted(files):
            yield posixpath.join(folder, name)


def _s3_files(fs, root: str) -> Iterator[str]:
    """_walked's paths and order from S3's own listing, a page of LIST_PAGE keys at a time: the
    keys of a folder come in the order S3 keeps them (by their UTF-8 bytes, which is the order
    of their characters, as sorted() gives), its subfolders are gone into after them, sorted.
    Only the subfolders' names are held meanwhile. A key ending in "/" is a folder's marker
    (consoles write them), not an object to anonymize."""
    from fsspec.asyn import sync

    bucket, _, prefix = root.partition("/")
    pending = [f"{prefix}/" if prefix else ""]
    while pending:
        folder = pending.pop()
        subfolders, token = [], None
        while True:
            request = {"Bucket": bucket, "Prefix": folder, "Delimiter": "/",
                       "MaxKeys": LIST_PAGE, **fs.req_kw}
            if token:
                request["ContinuationToken"] = token
            page = _do(f"s3://{bucket}/{folder}", True,
                       lambda: sync(fs.loop, fs._call_s3, "list_objects_v2", **request))
            subfolders.extend(entry["Prefix"] for entry in page.get("CommonPrefixes", ()))
            for entry in page.get("Contents", ()):
                if not entry["Key"].endswith("/"):
                    yield f"{bucket}/{entry['Key']}"
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                break
        # By their names (a-b/ before a/ in S3's order, after it in a sorted walk); the first one
        # is gone into next.
        pending.extend(sorted(subfolders, key=lambda name: name[:-1], reverse=True))
