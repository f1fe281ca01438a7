"""Run a Python-only peer anonymizer over a file or a folder tree, in one process.

    python benchmarks/peer_driver.py dcmanon SRC DST
    python benchmarks/peer_driver.py fw-file-rs --profile PROFILE.yaml SRC DST

Neither peer has a command that takes a tree: both are libraries that work on one
file at a time.  This driver does what their documentation shows, file by file,
and mirrors SRC's folders and file names under DST (SRC may also be a single file,
then DST is the output file).  Every regular file is treated as DICOM (the
benchmark corpora hold nothing else).

It imports only the peer and the standard library, so the process start-up it
adds is Python's own, as for ``python -m fastanon``.  Exit status: 0 when every
file was written, 1 when some failed (each named on stderr), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys


def _pairs(src: str, dst: str):
    """(source file, output file) for every regular file under src, sorted."""
    if not os.path.isdir(src):
        yield src, dst
        return
    for root, dirs, files in os.walk(src):
        dirs.sort()
        rel = os.path.relpath(root, src)
        out_root = dst if rel == "." else os.path.join(dst, rel)
        os.makedirs(out_root, exist_ok=True)
        for name in sorted(files):
            yield os.path.join(root, name), os.path.join(out_root, name)


def _dcmanon(args):
    """dcmanon: ``Anonymizer().anonymize(path)`` returns the whole output file as bytes."""
    from dcmanon import Anonymizer

    anonymizer = Anonymizer()  # the package's default settings

    def one(src: str, dst: str) -> None:
        data = anonymizer.anonymize(src)
        with open(dst, "wb") as f:
            f.write(data)

    return one


def _fw_file_rs(args):
    """fw-file-rs: ``Context().deid_profile(yaml)``, then ``read_until_pixels`` and
    ``deid_header`` per file, as its README shows.  The library works on the header
    only; the rest of the input (Pixel Data and anything after it) is copied after the
    de-identified header unchanged."""
    from fw_file_rs.dcm import Context

    with open(args.profile, encoding="utf-8") as f:
        ctx = Context().deid_profile(f.read())

    def one(src: str, dst: str) -> None:
        header = ctx.read_until_pixels(src)
        new_header = ctx.deid_header(header)
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            fout.write(new_header)
            left = os.fstat(fin.fileno()).st_size - len(header)
            offset = len(header)
            fout.flush()
            while left > 0:  # kernel copy of the tail; no read into Python
                sent = os.sendfile(fout.fileno(), fin.fileno(), offset, min(left, 1 << 30))
                if sent == 0:
                    break
                offset += sent
                left -= sent
            if left:
                raise OSError(f"short copy: {left} bytes of the tail not written")

    return one


PEERS = {"dcmanon": _dcmanon, "fw-file-rs": _fw_file_rs}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("--profile", help="fw-file-rs: the de-identification profile (YAML)")
    parser.add_argument("src")
    parser.add_argument("dst")
    args = parser.parse_args(argv)
    if args.peer == "fw-file-rs" and not args.profile:
        parser.error("fw-file-rs needs --profile")
    one = PEERS[args.peer](args)
    done = failed = 0
    for src, dst in _pairs(args.src, args.dst):
        try:
            one(src, dst)
            done += 1
        except Exception as exc:  # report and go on, as a batch tool would
            failed += 1
            print(f"{src}: {type(exc).__name__}: {exc}", file=sys.stderr)
    print(f"{args.peer}: {done} written, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
