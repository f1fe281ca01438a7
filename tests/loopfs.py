"""A file system with reflinks for tests and benchmarks: an XFS image mounted on a loop device.

Mounting needs root, a free loop device, the kernel's XFS and Debian's xfsprogs (mkfs.xfs);
mount_xfs says which is missing instead of raising, so that callers skip with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess


def mount_xfs(image, mountpoint, size: int) -> str | None:
    """Make a sparse XFS image of size bytes (reflinks on) and mount it at mountpoint: None
    when mounted, else why it cannot be."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "mounting a loop device needs root"
    if shutil.which("mkfs.xfs") is None:
        return "mkfs.xfs is not installed (Debian's xfsprogs)"
    with open(image, "wb") as f:
        f.truncate(size)
    steps = [["mkfs.xfs", "-q", "-f", "-m", "reflink=1", str(image)],
             ["mount", "-o", "loop", str(image), str(mountpoint)]]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{step[0]}: {exc}"
        if done.returncode:
            os.unlink(image)
            return f"{' '.join(step[:2])}: {done.stderr.strip() or done.returncode}"
    return None


def unmount(mountpoint) -> None:
    """Unmount (lazily when busy); the loop device goes with it."""
    subprocess.run(["umount", str(mountpoint)], capture_output=True, timeout=120, check=False)
    if os.path.ismount(mountpoint):
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=120, check=False)
