"""`fastanon run` starts without click: its arguments parsed from the same option table as the
click command, to the same values, and anything else left to click."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastanon.cli import _run
from fastanon.cli._args import parse
from fastanon.cli.run import run as click_run
from test_cli import KEY, write_file


@pytest.fixture()
def tree(tmp_path) -> Path:
    write_file(tmp_path / "src" / "a.dcm", 1, rows=8)
    (tmp_path / "policy.toml").write_text('extends = "internal"\n')
    (tmp_path / "masks.toml").write_text('masks = ["0,0,4,4"]\n')
    (tmp_path / "key").write_text("secret\n")
    return tmp_path


WELL_FORMED = [
    ["SRC", "DST"],
    ["--key", KEY, "SRC", "DST"],
    ["SRC", "--preset=internal", "DST", "-q"],
    ["--policy", "POLICY", "--key-file", "KEYFILE", "SRC", "DST"],
    ["--mask", "0,0,4,4", "--mask=1,1,2,2@0", "--masks", "MASKS", "SRC", "DST"],
    ["--workers", "3", "--workers", "2", "--overwrite", "--rename", "--keep-paths", "SRC", "DST"],
    ["--audit", "AUDIT", "--mapping", "MAPPING", "--max-inflated", "12",
     "--max-inflate-ratio", "7", "--burned-in-annotation", "no", "--decompress", "SRC", "DST"],
    ["--quiet", "--preset", "research", "SRC", "DST/"],
    ["--mask-rules", "builtin:ctp", "SRC", "DST"],
    ["--verify", "SRC", "DST"],
]

LEFT_TO_CLICK = [
    ["--help"], ["-h", "SRC", "DST"], ["SRC"], ["SRC", "DST", "EXTRA"], ["--nope", "SRC", "DST"],
    ["--workers", "0", "SRC", "DST"], ["--workers", "two", "SRC", "DST"],
    ["--burned-in-annotation", "maybe", "SRC", "DST"], ["--policy", "MISSING", "SRC", "DST"],
    ["--policy", "SRCDIR", "SRC", "DST"], ["--audit", "SRCDIR", "SRC", "DST"],
    ["MISSING", "DST"], ["--key"], ["--key", "-q", "SRC", "DST"], ["-qx", "SRC", "DST"],
    ["--quiet=1", "SRC", "DST"], ["--", "SRC", "DST"],
]


def _argv(template: list[str], base: Path) -> list[str]:
    names = {"SRC": base / "src", "DST": base / "out", "POLICY": base / "policy.toml",
             "KEYFILE": base / "key", "MASKS": base / "masks.toml", "AUDIT": base / "audit.csv",
             "MAPPING": base / "map.csv", "MISSING": base / "missing", "SRCDIR": base / "src",
             "DST/": f"{base / 'out'}/"}
    return [str(names.get(t, t)) for t in template]


@pytest.mark.parametrize("template", WELL_FORMED, ids=" ".join)
def test_the_fast_parse_gives_what_click_gives(tree, template):
    argv = _argv(template, tree)
    fast = parse(argv, _run.OPTIONS, _run.ARGUMENTS)
    assert fast is not None
    with click_run.make_context("run", list(argv)) as ctx:
        assert fast == ctx.params


@pytest.mark.parametrize("template", LEFT_TO_CLICK, ids=" ".join)
def test_anything_else_is_left_to_click(tree, template):
    assert parse(_argv(template, tree), _run.OPTIONS, _run.ARGUMENTS) is None


def _entry(*args: str) -> subprocess.CompletedProcess:
    code = ("import sys\nfrom fastanon.cli import entry\nsys.argv = ['fastanon', *sys.argv[1:]]\n"
            "try:\n    entry()\nfinally:\n"
            "    print(sorted(m for m in ('click', 'dataclasses', 'pydicom', 'numpy')"
            " if m in sys.modules))\n")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=120)


def test_a_run_loads_no_click(tree):
    done = _entry("run", "--key", KEY, str(tree / "src"), str(tree / "out"))
    assert done.returncode == 0, done.stderr
    assert "1 written" in done.stderr
    assert "'click'" not in done.stdout and "pydicom" not in done.stdout, done.stdout
    assert (tree / "out" / "a.dcm").is_file()


def test_a_usage_error_found_by_the_body_is_said_by_click(tree):
    """The unknown preset is found after parsing: click then parses argv itself, and the run
    ends as before, with its usage line, exit status 2 and nothing written."""
    done = _entry("run", "--preset", "nope", str(tree / "src"), str(tree / "out"))
    assert done.returncode == 2
    assert "Usage: " in done.stderr and "Invalid value for --preset: unknown preset 'nope'" \
        in done.stderr
    assert not (tree / "out").exists()


def test_dst_inside_src_is_said_by_click(tree):
    done = _entry("run", "--key", KEY, str(tree / "src"), str(tree / "src" / "out"))
    assert done.returncode == 2 and "Usage: " in done.stderr, done.stderr
    assert not (tree / "src" / "out").exists()


# What a run must not load: each costs a start more than the whole budget of DESIGN.md's
# start-up (they pull in enum, inspect, OpenSSL, ...); the shells and the options that need one
# import it themselves.
HEAVY = ("click", "pydicom", "numpy", "enum", "re", "typing", "dataclasses", "inspect", "pathlib",
         "contextlib", "functools", "shutil", "csv", "threading", "hashlib", "hmac", "base64",
         "datetime", "tomllib", "signal", "fastanon.inspect", "fastanon.pixels", "fastanon.masks",
         "fastanon.presets._profile_table", "fastanon.check", "fastanon.encapsulated")


def test_a_run_imports_nothing_heavy(tree):
    """A research run of a tree (the policy cached by an earlier run) adds none of HEAVY to what
    the interpreter had loaded."""
    code = ("import sys\nbefore = set(sys.modules)\nfrom fastanon.cli import entry\n"
            "sys.argv = ['fastanon', *sys.argv[1:]]\ntry:\n    entry()\nexcept SystemExit:\n"
            "    pass\nprint(' '.join(sorted(set(sys.modules) - before)))\n")
    import fastanon

    # Without site (-S): what the interpreter loads at start is then all there is to subtract.
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(fastanon.__file__))}
    for out in ("out1", "out2"):
        done = subprocess.run([sys.executable, "-S", "-c", code, "run", "-q", "--key", KEY,
                               str(tree / "src"), str(tree / out)],
                              capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr
    added = set(done.stdout.split())
    assert (tree / "out2" / "a.dcm").is_file()
    assert not added & set(HEAVY), sorted(added & set(HEAVY))


def _command(*args: str, before: str = "") -> subprocess.CompletedProcess:
    """`python -m fastanon ARGS`, what the `fastanon` command runs (cli.command), with before
    run first in the same process."""
    code = (f"import sys\n{before}\nfrom fastanon.cli import command\n"
            "sys.argv = ['fastanon', *sys.argv[1:]]\ncommand()\nprint('after the command')\n")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=120)


def test_the_command_ends_with_its_outputs_complete_and_its_status(tree):
    """The command ends the process without the interpreter's teardown: what it wrote is all
    there (the audit's every row, the summary line), and the exit status is the run's."""
    whole = (tree / "src" / "a.dcm").read_bytes()
    (tree / "src" / "broken.dcm").write_bytes(whole[:-100])      # cut inside its Pixel Data
    done = _command("run", "--key", KEY, "--audit", str(tree / "audit.csv"), str(tree / "src"),
                    str(tree / "out"))
    assert done.returncode == 1, done.stderr
    assert "1 written" in done.stderr and "1 failed" in done.stderr
    assert "after the command" not in done.stdout
    rows = (tree / "audit.csv").read_text().splitlines()
    assert len(rows) == 3 and {row.split(",")[2] for row in rows[1:]} == {"written", "failed"}
    done = _command("presets")
    assert done.returncode == 0 and "research" in done.stdout, done.stderr


def test_the_command_exits_as_usual_when_something_is_left_to_run_at_exit(tree):
    done = _command("run", "-q", "--key", KEY, str(tree / "src"), str(tree / "out"),
                    before="import atexit\natexit.register(print, 'at exit')")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == ["at exit"]
    done = _command("run", "-q", "--key", KEY, str(tree / "src"), str(tree / "out2"),
                    before="import threading, time\n"
                           "threading.Thread(target=time.sleep, args=(0.5,)).start()\n"
                           "import atexit\natexit.register(print, 'joined')")
    assert done.returncode == 0 and "joined" in done.stdout, done.stderr
