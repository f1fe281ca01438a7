"""The forms a `replace` text must have for its VR are checked by hand (no regex module on the
run path); PS3.5's forms as regular expressions are the oracle."""

from __future__ import annotations

import random
import re

import pytest

from fastanon.plan import _VALID

FORMS = {
    "DA": r"\d{8}",
    "TM": r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?",
    "DT": r"\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?",
    "AS": r"\d{3}[DWMY]",
    "IS": r"[+-]?\d{1,11}",
    "DS": r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?",
    "UI": r"(0|[1-9]\d*)(\.(0|[1-9]\d*))*",
}
ALPHABET = "0123456789" * 4 + "..++--eEDWMY x٣"


@pytest.mark.parametrize("vr", sorted(FORMS))
def test_hand_checks_agree_with_the_forms(vr):
    pattern = re.compile(FORMS[vr])
    rng = random.Random(vr)
    samples = ["", "0", "00", "1.2.840", "20240301", "120000.123456", "20240301120000.5+0100",
               "040Y", "-12", "1e5", ".5", "5.", "1.2.", "01.2"]
    samples += ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 22)))
                for _ in range(20000)]
    for text in samples:
        assert _VALID[vr](text) == bool(pattern.fullmatch(text)), (vr, text)
