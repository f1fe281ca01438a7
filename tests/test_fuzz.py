"""Hypothesis mutates real files (truncate, flip, insert, delete, overwrite lengths): fastanon
either refuses them with a clean FastanonError or writes a file pydicom reads fully."""

from __future__ import annotations

import io

import pydicom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastanon
from conftest import pydicom_reads_fully, read_bytes
from fastanon import FastanonError
from fastanon.scan import parse

SAMPLES = ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm",
           "rtplan.dcm", "ExplVR_BigEndNoMeta.dcm", "UN_sequence.dcm", "nested_priv_SQ.dcm",
           "SC_rgb_rle.dcm", "reportsi.dcm", "dicomdirtests/DICOMDIR-implicit",
           "JPEG2000-embedded-sequence-delimiter.dcm"]
FILES = {name: read_bytes(name) for name in SAMPLES}
# Where each file's length fields are: mutations aimed at them find the length checks.
LENGTH_FIELDS = {}
for _name, _raw in FILES.items():
    _parsed = parse(_raw)
    _regions = [_parsed.meta] + ([] if _parsed.deflated else [_parsed.dataset])
    LENGTH_FIELDS[_name] = sorted({(e.length_offset, e.vstart - e.length_offset, region.big)
                                   for region in _regions if region for e in region.elements()})
INTERESTING_LENGTHS = [0, 1, 2, 3, 7, 8, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFF0,
                       0xFFFFFFFE, 0xFFFFFFFF]
POLICY = {"PatientName": "remove", "StudyDate": "replace", "ReferencedSOPInstanceUID": "empty",
          "SOPInstanceUID": "replace:1.2.3"}


@st.composite
def mutations(draw):
    name = draw(st.sampled_from(SAMPLES))
    data = bytearray(FILES[name])
    steps = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "length"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip":
            if data:
                data[at] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        else:
            fields = [f for f in LENGTH_FIELDS[name] if f[0] + f[1] <= len(data)]
            if fields:
                at, width, big = draw(st.sampled_from(fields))      # a 16- or 32-bit field
                length = draw(st.sampled_from(INTERESTING_LENGTHS) | st.integers(0, 0xFFFFFFFF))
                length &= (1 << 8 * width) - 1
                data[at:at + width] = length.to_bytes(width, "big" if big else "little")
        steps.append((kind, at))
    return name, bytes(data), steps


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutations())
def test_mutated_files_clean_error_or_valid_output(case):
    name, data, steps = case
    label = f"{name} {steps}"
    for policy in ({}, POLICY):
        try:
            out = fastanon.anonymize(data, policy=policy, name=label)
        except FastanonError as exc:
            message = str(exc)
            assert message.startswith(f"{label}: ") and "byte" in message, message
            continue
        if policy == {}:
            assert out == data
        assert pydicom_reads_fully(out) or _pydicom_vr_quirk(out), (
            f"{label}: accepted, but pydicom cannot read the output")


def _pydicom_vr_quirk(raw: bytes) -> bool:
    """The one accepted difference: in explicit VR, pydicom takes any two bytes that sort between
    b"AA" and b"ZZ" (b"D\x01", the low bytes of an implicit VR length) for a VR it then cannot
    decode; fastanon reads a header whose VR bytes are not two capitals as implicit VR, as pydicom
    does for all other such bytes (its 'switch to implicit VR' rule).
    And a second: a binary VR (US, UL, FL...) whose length is no multiple of its width. fastanon
    decodes no value: it keeps such a value byte for byte; pydicom cannot convert it."""
    try:
        ds = pydicom.dcmread(io.BytesIO(raw), force=True)
        for elem in ds.iterall():
            elem.value  # noqa: B018
    except NotImplementedError as exc:
        return "Unknown Value Representation '0x" in str(exc)
    except pydicom.errors.BytesLengthException:
        return True     # accepted too: see the docstring
    except Exception:
        return False
    return False


def _fuzz_tool():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "fuzz.py"
    spec = importlib.util.spec_from_file_location("fastanon_fuzz_tool", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seeded_mutations_read_back_with_both_presets():
    """tools/fuzz.py's property on 3,000 seeded cases (every transfer syntax among the seeds,
    research and internal): a clean refusal naming the input, or an output that fastanon reads
    again, that {} leaves byte for byte, and that pydicom reads whenever it read the input."""
    tool = _fuzz_tool()
    assert len({tool.parse(raw).transfer_syntax for raw in tool.seeds().values()}) >= 7
    failures = tool.run(3000, seed=20261201)
    assert not failures, "\n".join(failures[:20])
