"""Sharing the Pixel Data's blocks with the input (reflinks): the same bytes as a copy, less disk.

The tests that need a file system with reflinks make one: an XFS image on a loop device, mounted
for this module (root, a free loop device and mkfs.xfs are needed; without them they skip and say
why). The others run wherever the tests do, where the same calls copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import part10
from loopfs import mount_xfs, unmount
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import fastanon
from fastanon import batch, rewrite
from fastanon.scan import parse

KEY = b"clone-test-key"
BLOCK = rewrite.BLOCK


def _image(path, rows: int, frames: int = 1, seed: int = 0) -> bytes:
    """A CT-like file of rows x 512 16-bit pixels (frames of them), written to path."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2" if frames == 1 else "1.2.840.10008.5.1.4.1.1.7.3"
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["clone", str(seed)])
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["clone study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["clone series"])
    ds.PatientName, ds.PatientID = "DOE^JANE", "PID-CLONE-1"
    ds.Modality = "CT" if frames == 1 else "OT"
    ds.Rows, ds.Columns = rows, 512
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    rng = np.random.default_rng(seed)
    ds.PixelData = rng.integers(0, 4096, rows * 512 * frames, dtype=np.uint16).tobytes()
    raw = part10(ds, ExplicitVRLittleEndian)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(raw)
    return raw


def _pixels(raw: bytes) -> bytes:
    parsed = parse(raw)
    element = parsed.dataset.element(parsed.dataset.table.find(0x7FE00010, -1))
    return bytes(raw[element.vstart:element.vstart + element.vlen])


def _tree(root) -> dict:
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def _free(path) -> int:
    os.sync()
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


# --- wherever the tests run: the same calls copy ------------------------------------------------

@pytest.mark.parametrize("clone", [True, False])
def test_written_bytes_are_the_parts_whatever_the_offsets(tmp_path, clone):
    """Bulk ranges that start on and off a block boundary, end at the input's end or before it:
    the output is the parts joined, and nothing is shared across two file systems or on one
    without reflinks (what this test's folder is, it does not assume: shared is at most the
    bulk ranges)."""
    data = bytes(np.random.default_rng(1).integers(0, 256, 5 * BLOCK * 64, dtype=np.uint8))
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    bulk = len(data) - 3 * BLOCK - 123
    cases = [
        [b"head", (0, 10), (3 * BLOCK + 123, bulk)],                 # a bulk range to the end
        [(7, 5000), b"x" * 77, (BLOCK, bulk - BLOCK), b"tail"],      # aligned, not to the end
        [b"odd", (1, rewrite.BULK + 1), (len(data) - 9, 9)],         # a short one after
    ]
    for number, parts in enumerate(cases):
        dst = tmp_path / f"out-{number}.bin"
        fd_in = os.open(src, os.O_RDONLY)
        fd_out = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            written, shared = rewrite.write(fd_in, data, fd_out, parts, clone=clone)
        finally:
            os.close(fd_out)
            os.close(fd_in)
        expected = rewrite.join(data, parts)
        assert dst.read_bytes() == expected and written == len(expected)
        assert 0 <= shared <= sum(p[1] for p in parts if isinstance(p, tuple))
        if not clone:
            assert shared == 0
    assert src.read_bytes() == data


def test_no_clone_gives_the_same_file(tmp_path):
    raw = _image(tmp_path / "in.dcm", 512)
    one = fastanon.anonymize_file(tmp_path / "in.dcm", tmp_path / "a.dcm", key=KEY)
    two = fastanon.anonymize_file(tmp_path / "in.dcm", tmp_path / "b.dcm", key=KEY, clone=False)
    assert (tmp_path / "a.dcm").read_bytes() == (tmp_path / "b.dcm").read_bytes() \
        == fastanon.anonymize(raw, key=KEY)
    assert two.shared == 0 and 0 <= one.shared <= len(_pixels(raw))
    assert (tmp_path / "in.dcm").read_bytes() == raw


def test_pixel_data_of_a_ct_image_keeps_its_page_offset(tmp_path):
    """A 512 x 512 16-bit image (512 KiB of Pixel Data) is aligned, so that its blocks can be
    shared: the header's change of size is padded in the file meta to a whole page."""
    raw = _image(tmp_path / "in.dcm", 512)
    out = fastanon.anonymize(raw, key=KEY)

    def offset(data):
        parsed = parse(data)
        return parsed.dataset.element(parsed.dataset.table.find(0x7FE00010, -1)).vstart

    assert offset(out) % BLOCK == offset(raw) % BLOCK
    assert _pixels(out) == _pixels(raw)


# --- on XFS: shared blocks ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def xfs(tmp_path_factory):
    root = tmp_path_factory.mktemp("xfs")
    mountpoint = root / "mnt"
    mountpoint.mkdir()
    why = mount_xfs(root / "xfs.img", mountpoint, 512 << 20)
    if why:
        pytest.skip(f"no XFS loop mount: {why}")
    try:
        yield mountpoint
    finally:
        unmount(mountpoint)


@pytest.fixture
def study(xfs):
    """A small study on the XFS mount: six CT images and one multi-frame file."""
    src = xfs / "study"
    if not src.exists():
        for number in range(6):
            _image(src / "CT" / f"IM{number:04d}.dcm", 512, seed=number)
        _image(src / "MF" / "CINE.dcm", 512, frames=24, seed=99)
    return src


def _run(src, dst, clone: bool = True) -> batch.Summary:
    if os.path.exists(dst):
        shutil.rmtree(dst)
    return batch.run(src, dst, batch.Job(key=KEY, workers=1, clone=clone))


def test_outputs_on_xfs_are_the_copies_and_share_the_pixel_blocks(study, xfs, tmp_path):
    inputs = _tree(study)
    pixels = sum(len(_pixels(raw)) for raw in inputs.values())
    copied = _run(study, tmp_path / "elsewhere")         # another file system: copied
    assert copied.written == len(inputs) and copied.shared == 0
    reference = _tree(tmp_path / "elsewhere")
    headers = sum(len(raw) for raw in reference.values()) - pixels

    before = _free(xfs)
    shared = _run(study, xfs / "out")
    used = before - _free(xfs)
    assert _tree(xfs / "out") == reference                # byte for byte the same outputs
    # All of each Pixel Data but its first and last block is shared, ...
    assert pixels - 2 * BLOCK * len(inputs) <= shared.shared <= pixels
    # ... so the file system gives no more than the headers, a block per file, and its own
    # records of the new files (inodes, extent and reference counts).
    assert used <= headers + 2 * BLOCK * len(inputs) + (256 << 10), (used, headers)

    before = _free(xfs)
    independent = _run(study, xfs / "copy", clone=False)
    used = before - _free(xfs)
    assert _tree(xfs / "copy") == reference and independent.shared == 0
    assert used >= pixels                                 # --no-clone: every block its own
    assert _tree(study) == inputs


def test_masking_a_shared_output_leaves_the_input_as_it_was(study, xfs):
    src = study / "CT" / "IM0001.dcm"
    raw = src.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    dst = xfs / "masked" / "IM0001.dcm"
    dst.parent.mkdir(exist_ok=True)
    report = fastanon.anonymize_file(src, dst, key=KEY, masks=[fastanon.Mask(0, 0, 512, 100)])
    assert report.shared > 0
    os.sync()
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest     # copy on write
    before = np.frombuffer(_pixels(raw), np.uint16).reshape(512, 512)
    after = np.frombuffer(_pixels(dst.read_bytes()), np.uint16).reshape(512, 512)
    assert not after[:100].any() and before[:100].any()
    assert (after[100:] == before[100:]).all()
    unmasked = xfs / "masked" / "plain.dcm"
    fastanon.anonymize_file(src, unmasked, key=KEY)
    assert _pixels(unmasked.read_bytes()) == _pixels(raw)              # the blocks still shared


def test_the_command_says_what_it_shared_and_no_clone_copies(study, xfs):
    def run(*options):
        out = xfs / "cli"
        if out.exists():
            shutil.rmtree(out)
        done = subprocess.run([sys.executable, "-m", "fastanon", "run", "--key", "k", "--workers",
                               "1", *options, str(study), str(out)],
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        return done.stderr

    assert "MB shared with the inputs" in run()
    assert "shared" not in run("--no-clone")
