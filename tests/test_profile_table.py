"""Checks src/fastanon/presets/_profile_table.py (PS3.15 Tables E.1-1, E.3.10-1)."""

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MODULE = REPO / "src" / "fastanon" / "presets" / "_profile_table.py"
DATA = REPO / "tools" / "data"


from fastanon.presets import _profile_table as p  # noqa: E402


def test_shape():
    assert p.EDITION == "2026d"
    assert len(p.OPTIONS) == 10
    assert len(p.PROFILE) == 657
    for tag, name, retired, in_iod, basic, options in p.PROFILE:
        assert isinstance(tag, (int, str)) and name and basic
        assert isinstance(retired, bool) and isinstance(in_iod, bool)
        assert set(options) <= set(p.OPTIONS) and all(options.values())
    assert Counter(row[2] for row in p.PROFILE)[True] == 102
    assert Counter(row[3] for row in p.PROFILE)[True] == 473


def test_basic_counts():
    assert Counter(row[4] for row in p.PROFILE) == {
        "X": 417, "D": 93, "U": 55, "Z": 42, "X/D": 23,
        "X/Z": 11, "X/Z/D": 8, "Z/D": 6, "X/Z/U*": 2,
    }


def test_known_rows():
    by_tag = {row[0]: row for row in p.PROFILE}
    assert len(by_tag) == 657
    assert by_tag[0x00100020][1:5] == ("Patient ID", False, True, "Z/D")  # Z/D since 2024b
    assert by_tag[0x00100040][5] == {"retain_patient_characteristics": "K"}
    assert by_tag["private"][4:] == ("X", {"retain_safe_private": "C"})
    assert {"50xxxxxx", "60xx3000", "60xx4000"} <= set(by_tag)


def test_option_counts():
    cells = Counter((name, code) for row in p.PROFILE for name, code in row[5].items())
    assert cells[("retain_uids", "K")] == 60
    assert cells[("retain_device_identity", "K")] == 48
    assert cells[("retain_device_identity", "C")] == 11
    assert cells[("retain_long_full_dates", "K")] == 169
    assert cells[("retain_long_modified_dates", "C")] == 169
    assert cells[("clean_descriptors", "C")] == 141
    assert cells[("clean_graphics", "C")] == 4
    assert sum(cells.values()) == 1 + 60 + 59 + 10 + 19 + 169 + 169 + 141 + 4 + 4


def test_safe_private():
    assert len(p.SAFE_PRIVATE) == 479  # no duplicate (creator, tag) keys in the table
    assert p.SAFE_PRIVATE["ELSCINT1", 0x00E10021] == ("DS", "DLP")
    assert p.SAFE_PRIVATE["Philips Imaging DD 001", 0x2001000A][0] == "IS"  # (2001,xx0a)
    assert p.SAFE_PRIVATE["Philips Imaging DD 097", 0x2001000A][0] == "SQ"
    assert Counter(vr for vr, _ in p.SAFE_PRIVATE.values())[""] == 5
    assert all(tag & 0xFF00 == 0 and tag >> 16 & 1 for _, tag in p.SAFE_PRIVATE)


@pytest.mark.skipif(not (DATA / "ps3.15-e1-1.csv").exists(), reason=f"{DATA} not present")
def test_generator_reproduces_committed_file(tmp_path):
    out = tmp_path / "_profile_table.py"
    gen = REPO / "tools" / "gen_profile_table.py"
    result = subprocess.run(
        [sys.executable, str(gen), str(out), "--data", str(DATA)],
        check=True, capture_output=True, text=True,
    )
    assert "warning" not in result.stderr
    assert out.read_bytes() == MODULE.read_bytes()


@pytest.mark.parametrize("name", ["ps3.15-e1-1.csv", "ps3.15-e3-10-1.csv"])
def test_repository_copy_matches_shared_data(name):
    shared = REPO.parent / "shared" / "data" / name
    if not shared.exists():
        pytest.skip(f"{shared.parent} not present (the repository's copy is used)")
    assert (DATA / name).read_bytes() == shared.read_bytes()
