"""Compressed Pixel Data decoded by pydicom (imported only here) so that masks can apply: the file
is stored again as native Explicit VR Little Endian (masks' `decompress=True`)."""

from __future__ import annotations

import io

from .errors import MalformedError, PolicyError
from .scan import EXPLICIT_LE

# Transfer syntaxes that are always lossy (PS3.5 Table A-1), with the Lossy Image Compression
# Method each implies (PS3.3 C.7.6.1.1.5.1). JPEG 2000 and HTJ2K may be either: left as found.
_LOSSY_METHODS = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1", "1.2.840.10008.1.2.4.51": "ISO_10918_1",
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",
    "1.2.840.10008.1.2.4.100": "ISO_13818_2", "1.2.840.10008.1.2.4.101": "ISO_13818_2",
    "1.2.840.10008.1.2.4.102": "ISO_14496_10", "1.2.840.10008.1.2.4.103": "ISO_14496_10",
    "1.2.840.10008.1.2.4.104": "ISO_14496_10", "1.2.840.10008.1.2.4.105": "ISO_14496_10",
    "1.2.840.10008.1.2.4.106": "ISO_14496_10", "1.2.840.10008.1.2.4.107": "ISO_23008_2",
    "1.2.840.10008.1.2.4.108": "ISO_23008_2",
}


def decompressed(data: bytes, name: str) -> bytes:
    """The file with its Pixel Data decoded (PS3.5 §A.4 → native Explicit VR Little Endian),
    Photometric Interpretation as decoded, and Lossy Image Compression kept true (PS3.3
    C.7.6.1.1.5): a lossy source stays marked "01" with its method recorded."""
    import pydicom
    from pydicom.pixels import decompress

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        syntax = str(ds.file_meta.TransferSyntaxUID)
    except Exception as exc:           # pydicom's words for a file fastanon could walk
        raise MalformedError(f"{name}: pydicom cannot read the file to decode its compressed "
                             f"Pixel Data for masking: {exc}") from None
    try:
        decompress(ds, generate_instance_uid=False)
    except Exception as exc:           # missing plugin, corrupt stream: the decoder's own words
        raise PolicyError(f"{name}: the compressed Pixel Data (transfer syntax {syntax}) cannot "
                          f"be decoded for masking: {exc}") from None
    method = _LOSSY_METHODS.get(syntax)
    if method:
        ds.LossyImageCompression = "01"
        methods = list(ds.get("LossyImageCompressionMethod") or [])
        if isinstance(ds.get("LossyImageCompressionMethod"), str):
            methods = [ds.LossyImageCompressionMethod]
        if method not in methods:
            methods.append(method)
        ds.LossyImageCompressionMethod = methods if len(methods) > 1 else methods[0]
    out = io.BytesIO()
    try:
        if str(ds.file_meta.TransferSyntaxUID) != EXPLICIT_LE:
            raise ValueError(f"decoded as {ds.file_meta.TransferSyntaxUID}, not {EXPLICIT_LE}")
        ds.save_as(out, enforce_file_format=True)
    except Exception as exc:           # e.g. group 0002 elements inside the data set
        raise MalformedError(f"{name}: the decoded file cannot be written back: {exc}") from None
    return out.getvalue()
