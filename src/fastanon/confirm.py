"""The re-read check: an output is scanned again and must be its input with the planned edits.

Before an output is renamed into place or returned, pipeline.py hands its bytes here. The kernel
(_core.expect) walks the input's table and the output's side by side: every element the plan
kept comes back with its tag, depth, kind and length, each replaced one with its new value (compared byte
for byte), each removed one gone, each new one where it was inserted. Anything else — an encoding that reads differently once an element is gone, a
meta group that swallows the data set, a value that changed length, a data set of a policy built
from a specification still mixing implicit and explicit VR — is a FastanonError naming the file,
and nothing is written.
"""

from __future__ import annotations


from . import _core
from ._lean import packed
from .elements import (EXTENDED_OFFSET_TABLE, EXTENDED_OFFSET_TABLE_LENGTHS, PIXEL_DATA,
                       TRANSFER_SYNTAX, tag_text)
from .errors import FastanonError
from .scan import IMPLICIT_LE, Limits, Region, parse

_OWN = Limits(max_inflated=1 << 62, inflate_ratio=1 << 62)    # an output: as its input allowed

PRIVATE_INFORMATION = (0x00020100, 0x00020102)    # the meta padding that aligns Pixel Data
# Photometric Interpretation, Planar Configuration, Lossy Image Compression, its Ratio and
# Method: a decoder writes them anew for the pixels it decoded (PS3.3 C.7.6.3, C.7.6.1.1.5).
_DECODED = (0x00280004, 0x00280006, 0x00282110, 0x00282112, 0x00282114)


def confirm(output, data, name: str, pixels_new: bool = False) -> None:
    """Raise a FastanonError unless data (the output's bytes) reads back as output planned it.
    pixels_new: the Pixel Data was decoded for masks (its content and the transfer syntax are
    new)."""
    try:
        again = parse(data, name, _OWN)
    except FastanonError as exc:
        raise FastanonError(f"{name}: the output would not read back ({exc}); not written") from None
    try:
        planned = output.parsed
        edits = output.edits
        if pixels_new:      # only their place is checked: Pixel Data, its offset tables, and
            edits = dict(edits)     # what the decoder says of them (RGB for YBR, lossy marks)
            for tag in (PIXEL_DATA, EXTENDED_OFFSET_TABLE, EXTENDED_OFFSET_TABLE_LENGTHS,
                        *_DECODED):
                index = planned.dataset.table.find(tag, -1)
                if index >= 0 and (tag == PIXEL_DATA or index not in edits):
                    edits[index] = _NEW_CONTENT
        _same(planned.dataset, again.dataset, edits, output.inserted, name, "data set")
        if output.plan.policy.consistent and (
                again.dataset.table.switched
                or (again.transfer_syntax == IMPLICIT_LE and not again.dataset.implicit)):
            raise FastanonError(f"{name}: the output's data set would not be in the encoding its "
                                "transfer syntax names; not written")
        if (planned.meta is None) != (again.meta is None):
            raise FastanonError(f"{name}: the output's file meta information would read back "
                                f"{'missing' if again.meta is None else 'added'}; not written")
        if planned.meta is not None:
            meta = planned.meta.table
            meta_edits = output.meta_edits
            if pixels_new:
                syntax = meta.find(TRANSFER_SYNTAX, -1)
                if syntax >= 0:
                    meta_edits = {**meta_edits, syntax: _NEW_CONTENT}
            out = again.meta.table
            padding = []
            if len(out) >= 2 and out.row(len(out) - 1)[0] == PRIVATE_INFORMATION[1] \
                    and out.row(len(out) - 2)[0] == PRIVATE_INFORMATION[0]:
                # The padding that aligns Pixel Data (pipeline._align_bulk), unless the input's
                # own Private Information stays.
                kept = [i for i in (meta.find(t, -1) for t in PRIVATE_INFORMATION)
                        if i >= 0 and meta_edits.get(i, b"") is not None]
                if not kept:
                    padding = [(len(meta), tag, -1) for tag in PRIVATE_INFORMATION]
            _same(planned.meta, again.meta, meta_edits, output.meta_inserted + padding, name,
                  "file meta information")
    finally:
        again.release()


_NEW_CONTENT = object()     # an edit whose new value is not known here (checked for place only)


_NONE = packed("q", ())
_NO_TAGS = packed("I", ())


def _same(planned: Region, again: Region, edits: dict, inserted: list, name: str,
          where: str) -> None:
    order = sorted(edits)
    if inserted:
        inserted = sorted(inserted, key=lambda entry: (entry[0], entry[1]))
        before = packed("q", [at for at, _, _ in inserted])
        tags = packed("I", [tag for _, tag, _ in inserted])
        sizes = packed("q", [length for _, _, length in inserted])
    else:
        before, tags, sizes = _NONE, _NO_TAGS, _NONE
    difference = _core.expect(planned.table, again.table, again.buf, packed("q", order),
                              [edits[index] for index in order], _NEW_CONTENT,
                              before, tags, sizes)
    if difference is not None:
        raise FastanonError(f"{name}: the output's {where} would not read back as planned "
                            f"({_describe(planned, again, *difference)}); not written")


def _describe(planned: Region, again: Region, i: int, j: int) -> str:
    def entry(region: Region, index: int) -> str:
        if index >= len(region.table):
            return "the end"
        tag, _, _, _, depth, _, start, _, vlen, _ = region.table.row(index)
        return f"{tag_text(tag)} at depth {depth}, byte {start:,}, length {vlen:,}"
    return f"planned {entry(planned, i)}; found {entry(again, j)}"
