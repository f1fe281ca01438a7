"""Seeded fuzzing of fastanon on mutated real files: every transfer syntax among the seeds, both
presets. A case passes when fastanon refuses the input with a FastanonError naming it, or writes
an output that (1) fastanon reads again, in one encoding (no implicit VR header inside an explicit
VR data set), (2) anonymizing with {} leaves unchanged, and (3) pydicom reads whenever it read
the input. tests/test_fuzz.py runs a few thousand cases; this script runs as many as asked:

    python tools/fuzz.py --cases 1000000 --seed 1 [--workers 2]

Prints one line per failing case (seed, file, mutations) and a summary.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import time
import warnings

import pydicom

import fastanon
from fastanon.elements import FLAG_IMPLICIT, FLAG_LONG, KIND_ELEMENT
from fastanon.scan import parse

TEST_FILES = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
# One or more seeds per transfer syntax: implicit, explicit, big endian, deflated, no meta,
# encapsulated (JPEG, JPEG 2000, RLE), UN sequences, private sequences, RT, SR, a DICOMDIR.
SEEDS = ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm",
         "ExplVR_BigEndNoMeta.dcm", "ExplVR_LitEndNoMeta.dcm", "JPEG-lossy.dcm",
         "JPEG2000.dcm", "MR_small_RLE.dcm", "UN_sequence.dcm", "nested_priv_SQ.dcm",
         "rtplan.dcm", "reportsi.dcm", "test-SR.dcm", "dicomdirtests/DICOMDIR-implicit",
         "SC_rgb_small_odd_big_endian.dcm", "liver_1frame.dcm"]
PRESETS = ("research", "internal")
KEY = b"fuzz-key"
INTERESTING = [0, 1, 2, 3, 7, 8, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF]


def seeds() -> dict[str, bytes]:
    return {name: open(os.path.join(TEST_FILES, name), "rb").read() for name in SEEDS}


def _lengths(raw: bytes) -> list[tuple[int, int, bool]]:
    parsed = parse(raw)
    regions = [parsed.meta] + ([] if parsed.deflated else [parsed.dataset])
    return sorted({(e.length_offset, e.vstart - e.length_offset, region.big)
                   for region in regions if region for e in region.elements()})


def _short_headers(raw: bytes) -> list[tuple[int, int, bool]]:
    """(start, value length, big endian) of the data set's explicit VR headers with a 16-bit
    length: the same 8 bytes hold an implicit VR header (tag, 32-bit length)."""
    parsed = parse(raw)
    if parsed.deflated:
        return []
    return [(e.start, e.vlen, parsed.dataset.big) for e in parsed.dataset.elements()
            if e.kind == KIND_ELEMENT and not e.flags & (FLAG_IMPLICIT | FLAG_LONG)]


def mutate(rng: random.Random, raw: bytes, lengths, headers=()) -> tuple[bytes, list]:
    data = bytearray(raw)
    steps = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["truncate", "flip", "insert", "delete", "length", "length", "copy",
                           "implicit"])
        at = rng.randrange(max(1, len(data)))
        if kind == "implicit":                   # a writer that switches to implicit VR here
            fields = [h for h in headers if h[0] + 8 <= len(data)]
            if fields:
                at, vlen, big = rng.choice(fields)
                data[at + 4:at + 8] = vlen.to_bytes(4, "big" if big else "little")
        elif kind == "truncate":
            del data[at:]
        elif kind == "flip" and data:
            data[at] ^= rng.randint(1, 255)
        elif kind == "insert":
            data[at:at] = rng.randbytes(rng.randint(1, 16))
        elif kind == "delete":
            del data[at:at + rng.randint(1, 16)]
        elif kind == "copy" and data:            # a run of the file repeated elsewhere
            start = rng.randrange(len(data))
            data[at:at] = data[start:start + rng.randint(8, 64)]
        else:
            fields = [f for f in lengths if f[0] + f[1] <= len(data)]
            if fields:
                at, width, big = rng.choice(fields)
                value = rng.choice(INTERESTING) if rng.random() < 0.5 else rng.getrandbits(32)
                value &= (1 << 8 * width) - 1
                data[at:at + width] = value.to_bytes(width, "big" if big else "little")
        steps.append((kind, at))
    return bytes(data), steps


def pydicom_reads(raw: bytes) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(raw), force=True)
            for element in ds.iterall():
                element.value  # noqa: B018
        return True
    except Exception:
        return False


def check(label: str, data: bytes, preset: str) -> str | None:
    """None when the case passes, else what went wrong."""
    try:
        out = fastanon.anonymize(data, preset, key=KEY, name=label)
    except fastanon.FastanonError as exc:
        return None if str(exc).startswith(f"{label}: ") else f"error not naming the file: {exc}"
    except Exception as exc:                     # a crash of any other kind is a bug
        return f"{type(exc).__name__}: {exc}"
    try:
        if parse(out, "output").dataset.table.switched:
            return "the output mixes implicit and explicit VR"
        if fastanon.anonymize(out, {}) != out:
            return "anonymize(out, {}) changed the output"
    except fastanon.FastanonError as exc:
        return f"output not read again: {exc}"
    if pydicom_reads(data) and not pydicom_reads(out):
        return "pydicom read the input, not the output"
    return None


def run(cases: int, seed: int, files: dict[str, bytes] | None = None) -> list[str]:
    files = files or seeds()
    lengths = {name: _lengths(raw) for name, raw in files.items()}
    headers = {name: _short_headers(raw) for name, raw in files.items()}
    names = sorted(files)
    rng = random.Random(seed)
    failures = []
    for case in range(cases):
        name = names[case % len(names)]
        data, steps = mutate(rng, files[name], lengths[name], headers[name])
        label = f"case {seed}/{case} {name} {steps}"
        for preset in PRESETS:
            problem = check(label, data, preset)
            if problem:
                failures.append(f"{label} [{preset}]: {problem}")
    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.workers > 1:
        from multiprocessing import Pool

        share = -(-args.cases // args.workers)
        with Pool(args.workers) as pool:
            parts = pool.starmap(run, [(share, args.seed * 1000 + w) for w in range(args.workers)])
        failures = [f for part in parts for f in part]
        cases = share * args.workers
    else:
        failures = run(args.cases, args.seed)
        cases = args.cases
    for failure in failures:
        print(failure)
    print(f"{cases:,} cases × {len(PRESETS)} presets, seed {args.seed}: {len(failures)} failures "
          f"in {time.monotonic() - started:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
