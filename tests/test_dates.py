"""Date shifts (dates.py): whole days for DA and DT, times of day kept, per-patient offsets."""

import pytest

from fastanon import dates


@pytest.mark.parametrize("vr,raw,days,expected", [
    ("DA", b"20240301", -1, b"20240229"),
    ("DA", b"20240301", -366, b"20230301"),
    ("DA", b"20200101-20200131", -1, b"20191231-20200130"),   # range
    ("DA", b"20200101\\20210101", -1, b"20191231\\20201231"),   # multi-valued
    ("DA", b"202003", -31, b"202002"),                         # month precision
    ("DA", b"2020", -400, b"2019"),                            # year precision
    ("DT", b"20240301120000.123456+0100", -1, b"20240229120000.123456+0100"),
    ("DT", b"2024030112", -1, b"2024022912"),
    ("DA", b"", -5, b""),
])
def test_shift_value(vr, raw, days, expected):
    out = dates.shift_value(vr, raw, days)
    assert out.rstrip(b" ") == expected and len(out) % 2 == 0


@pytest.mark.parametrize("raw", [b"2024-03-01", b"20241301", b"notadate", b"00010101"])
def test_invalid_values_are_refused(raw):
    assert dates.shift_value("DA", raw, -400) is None


def test_patient_offset():
    a = dates.patient_offset(b"k", "PAT-1")
    assert a == dates.patient_offset(b"k", "PAT-1")
    assert -dates.MAX_DAYS <= a <= -dates.MIN_DAYS
    offsets = {dates.patient_offset(b"k", f"P{i}") for i in range(50)}
    assert len(offsets) > 40
