"""Mask values, the CLI text form, and mask rules (first matching rule per file)."""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
import pytest

import fastanon
from fastanon import Mask, PolicyError
from fastanon.masks import MaskRules
from conftest import blank_bytes
from fastanon.scan import parse

TEST_FILES = Path(os.path.dirname(pydicom.data.__file__)) / "test_files"
MR = (TEST_FILES / "MR_small.dcm").read_bytes()         # MR, 64×64, Manufacturer TOSHIBA
CT = (TEST_FILES / "CT_small.dcm").read_bytes()         # CT, 128×128, Manufacturer GE MEDICAL SYSTEMS


@pytest.mark.parametrize("text, mask", [
    ("0,0,64,16", Mask(0, 0, 64, 16)),
    (" 10, 20 ,30,40 ", Mask(10, 20, 30, 40)),
    ("-5,0,10,10", Mask(-5, 0, 10, 10)),
    ("0,0,1,1@3", Mask(0, 0, 1, 1, frames=(3,))),
    ("0,0,1,1@0-2,7,5-5", Mask(0, 0, 1, 1, frames={0, 1, 2, 5, 7})),
])
def test_mask_text_form(text, mask):
    assert Mask.parse(text) == mask
    assert Mask.parse(str(mask)) == mask


def test_mask_frames_are_normalised_and_hashable():
    mask = Mask(0, 0, 2, 2, frames=range(4, 1, -1))
    assert mask.frames == (2, 3, 4) and str(mask) == "0,0,2,2@2-4"
    assert len({mask, Mask(0, 0, 2, 2, frames=[4, 3, 2, 2])}) == 1
    assert fastanon.Mask is Mask


@pytest.mark.parametrize("args, message", [
    ((0, 0, 0, 5), "width and height must be positive"),
    ((0, 0, 5, -1), "width and height must be positive"),
    ((0.5, 0, 5, 5), "x must be an integer"),
    ((0, True, 5, 5), "y must be an integer"),
    ((0, 0, 5, 5, []), "frames is empty"),
    ((0, 0, 5, 5, [-1]), "frame -1 is not a frame index"),
    ((0, 0, 5, 5, "0-3"), "frames must be integers"),
    ((0, 0, 5, 5, [1.0]), "not a frame index"),
])
def test_mask_validation(args, message):
    with pytest.raises(PolicyError, match=message):
        Mask(*args)


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "0,0,4,4@", "0,0,4,4@3-1", "0,0,4,4@x"])
def test_mask_text_refusals(text):
    with pytest.raises(PolicyError, match="mask"):
        Mask.parse(text)


RULES = """
[[rule]]
name = "toshiba MR"
match = { Modality = "MR", Manufacturer = "TOSH*", Rows = 64 }
masks = ["0,0,64,8", { x = 0, y = 60, width = 10, height = 4 }]

[[rule]]
name = "any CT or MR"
match = { Modality = ["CT", "MR"], Columns = [128, 64] }
masks = ["0,0,16,16"]
"""


def test_first_matching_rule_wins():
    rules = MaskRules.loads(RULES, "rules.toml")
    assert rules.select(parse(MR).dataset).name == "toshiba MR"
    assert rules.select(parse(CT).dataset).name == "any CT or MR"
    assert rules.select(parse((TEST_FILES / "examples_rgb_color.dcm").read_bytes()).dataset) is None


def test_rules_give_the_masks_and_the_report_names_the_rule():
    rules = MaskRules.loads(RULES)
    out, report = blank_bytes(MR, rules, "mr.dcm")
    assert report.rule == "toshiba MR" and report.applied == 2
    assert out == fastanon.anonymize(MR, policy={}, masks=[Mask(0, 0, 64, 8), Mask(0, 60, 10, 4)])
    assert fastanon.anonymize(CT, policy={}, masks=rules) == \
        fastanon.anonymize(CT, policy={}, masks=[Mask(0, 0, 16, 16)])


def test_no_matching_rule_changes_nothing():
    raw = (TEST_FILES / "examples_rgb_color.dcm").read_bytes()
    out, report = blank_bytes(raw, MaskRules.loads(RULES), "rgb.dcm")
    assert out == raw and report.rule is None and report.applied == 0


def test_rules_file_through_the_file_path(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    rules = MaskRules.load(path)
    fastanon.anonymize_file(TEST_FILES / "MR_small.dcm", tmp_path / "out.dcm", policy={},
                            masks=rules)
    assert (tmp_path / "out.dcm").read_bytes() == fastanon.anonymize(MR, policy={}, masks=rules)


def test_empty_rules_are_falsy():
    assert not MaskRules.loads("")


@pytest.mark.parametrize("text, message", [
    ("[[rule]\n", "not valid TOML"),
    ("[other]\nx = 1\n", "unknown top-level key"),
    ('[[rule]]\nname = "r"\nmatch = {}\nmasks = ["0,0,1,1"]\ncolour = 1\n', "r: unknown key"),
    ('[[rule]]\nmatch = { NotAKeyword = "x" }\nmasks = ["0,0,1,1"]\n', "rule 1: not a DICOM tag"),
    ('[[rule]]\nmatch = { Modality = 1.5 }\nmasks = ["0,0,1,1"]\n', "must be a string, an integer"),
    ('[[rule]]\nmatch = {}\nmasks = []\n', "rule 1: no masks"),
    ('[[rule]]\nmatch = {}\nmasks = ["0,0,1"]\n', "expected X,Y,W,H"),
    ('[[rule]]\nmatch = {}\nmasks = [{ x = 0, y = 0, w = 1, h = 1 }]\n', "unexpected keyword"),
    ('[[rule]]\nmatch = {}\nmasks = [3]\n', "a mask is"),
])
def test_rules_refusals(text, message):
    with pytest.raises(PolicyError, match=message):
        MaskRules.loads(text, "rules.toml")


def test_missing_rules_file(tmp_path):
    with pytest.raises(PolicyError, match="cannot be read"):
        MaskRules.load(tmp_path / "nope.toml")
