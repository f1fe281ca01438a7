"""Checks src/fastanon/_dictionary.py against pydicom and its generator."""

import random
import subprocess
import sys
from pathlib import Path

import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom import datadict  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MODULE = REPO / "src" / "fastanon" / "_dictionary.py"


from fastanon import _dictionary as d  # noqa: E402


def test_known_entries():
    assert d.DICTIONARY[0x00100010] == ("PN", "PatientName")
    assert d.DICTIONARY[0x7FE00010] == ("OW", "PixelData")  # PS3.6: OB or OW
    assert d.DICTIONARY[0x00081140] == ("SQ", "ReferencedImageSequence")
    assert d.DICTIONARY[0x00280106] == ("US", "SmallestImagePixelValue")  # US or SS
    assert 0x7FE00010 in d.VR_AMBIGUOUS and 0x00280106 in d.VR_AMBIGUOUS
    assert 0x00100010 not in d.VR_AMBIGUOUS


def test_matches_pydicom():
    assert len(d.DICTIONARY) == len(pydicom._dicom_dict.DicomDictionary)
    for tag, (vr, keyword) in d.DICTIONARY.items():
        assert len(vr) == 2 or (vr == "NONE" and tag >> 16 == 0xFFFE), hex(tag)
        assert keyword == datadict.keyword_for_tag(tag)
        assert (tag in d.VR_AMBIGUOUS) == (" or " in datadict.dictionary_VR(tag))
    assert "" not in d.KEYWORDS
    assert any(kw == "" for _, kw in d.DICTIONARY.values())  # kept, e.g. retired blanks


def test_keywords_round_trip():
    tags = sorted(t for t, (_, kw) in d.DICTIONARY.items() if kw)
    for tag in random.Random(0).sample(tags, 200):
        keyword = d.DICTIONARY[tag][1]
        assert d.KEYWORDS[keyword] == tag == datadict.tag_for_keyword(keyword)


def _repeater(tag):
    return next(row for row in d.REPEATERS if tag & row[0] == row[1])


def test_repeaters():
    assert len(d.REPEATERS) == len(pydicom._dicom_dict.RepeatersDictionary)
    assert _repeater(0x60023000) == (0xFF00FFFF, 0x60003000, "OW", "OverlayData")
    assert _repeater(0x50020005)[3] == "CurveDimensions"
    assert _repeater(0x10000012)[3] == "HuffmanTableSize"  # 1000xxx2
    for tag in (0x60023000, 0x601E0010, 0x50040005, 0x10000012, 0x00280412):
        assert tag not in d.DICTIONARY
        assert _repeater(tag)[3] == datadict.keyword_for_tag(tag)
    # Some concrete tags also match a repeater row; DICTIONARY must win.
    assert _repeater(0x7FE00010)[3] == "VariablePixelData"
    assert d.DICTIONARY[0x7FE00010][1] == "PixelData"


def test_generator_reproduces_committed_file(tmp_path):
    out = tmp_path / "_dictionary.py"
    subprocess.run([sys.executable, str(REPO / "tools" / "gen_dictionary.py"), str(out)], check=True)
    assert out.read_bytes() == MODULE.read_bytes()
