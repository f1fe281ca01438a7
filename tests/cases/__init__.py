"""Hand-written byte-level cases: commented hex, one element per line (as pydicom's tests write
them). Each case is a whole file: `part10(transfer syntax, data set)` or a raw data set."""

from __future__ import annotations

from conftest import hex2bytes

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


def part10(transfer_syntax: str, dataset: bytes) -> bytes:
    """Preamble, 'DICM' and a file meta group (PS3.10 §7.1) naming the transfer syntax."""
    uid = transfer_syntax.encode() + (b"\0" if len(transfer_syntax) % 2 else b"")
    elements = hex2bytes("""
        02 00 01 00  4F 42 00 00  02 00 00 00  00 01          # (0002,0001) OB version 00 01
        02 00 02 00  55 49  08 00  31 2E 32 2E 33 2E 34 00    # (0002,0002) UI '1.2.3.4'
        02 00 03 00  55 49  08 00  31 2E 32 2E 33 2E 39 00    # (0002,0003) UI '1.2.3.9'
    """) + bytes.fromhex("02001000") + b"UI" + len(uid).to_bytes(2, "little") + uid
    group_length = hex2bytes("02 00 00 00  55 4C  04 00") + len(elements).to_bytes(4, "little")
    return bytes(128) + b"DICM" + group_length + elements + dataset


# Implicit VR LE; undefined-length sequences and items nested 3 deep (PS3.5 §7.5.2).
IMPLICIT_NESTED = part10(IMPLICIT_LE, hex2bytes("""
    08 00 16 00  08 00 00 00  31 2E 32 2E 33 2E 34 00     # (0008,0016) SOPClassUID '1.2.3.4'
    08 00 18 00  08 00 00 00  31 2E 32 2E 33 2E 39 00     # (0008,0018) SOPInstanceUID '1.2.3.9'
    08 00 15 11  FF FF FF FF                              # (0008,1115) ReferencedSeriesSequence, undefined
    FE FF 00 E0  FF FF FF FF                              #   item, undefined
    08 00 4A 11  FF FF FF FF                              #   (0008,114A) ReferencedInstanceSequence, undefined
    FE FF 00 E0  FF FF FF FF                              #     item, undefined
    08 00 50 11  06 00 00 00  31 2E 32 2E 33 00           #     (0008,1150) ReferencedSOPClassUID '1.2.3'
    40 00 55 05  FF FF FF FF                              #     (0040,0555) AcquisitionContextSequence, undefined
    FE FF 00 E0  FF FF FF FF                              #       item, undefined
    40 00 40 A0  04 00 00 00  54 45 58 54                 #       (0040,A040) ValueType 'TEXT'
    FE FF 0D E0  00 00 00 00                              #       item delimiter
    FE FF DD E0  00 00 00 00                              #     sequence delimiter (0040,0555)
    FE FF 0D E0  00 00 00 00                              #     item delimiter
    FE FF DD E0  00 00 00 00                              #   sequence delimiter (0008,114A)
    FE FF 0D E0  00 00 00 00                              #   item delimiter
    FE FF DD E0  00 00 00 00                              # sequence delimiter (0008,1115)
    10 00 10 00  08 00 00 00  44 4F 45 5E 4A 4F 48 4E     # (0010,0010) PatientName 'DOE^JOHN'
    20 00 0D 00  06 00 00 00  31 2E 32 2E 35 00           # (0020,000D) StudyInstanceUID '1.2.5'
"""))

# Explicit VR LE; defined-length sequences and items nested 3 deep: removing the innermost
# (0040,A160) must shrink all six enclosing lengths by 16 (DEFINED_NESTED_WITHOUT_TEXT).
_DEFINED_NESTED = """
    08 00 16 00  55 49  08 00  31 2E 32 2E 33 2E 34 00    # (0008,0016) UI '1.2.3.4'
    08 00 15 11  53 51 00 00  {sq1}                       # (0008,1115) SQ, defined length
    FE FF 00 E0  {item1}                                  #   item, defined length
    08 00 4A 11  53 51 00 00  {sq2}                       #   (0008,114A) SQ, defined length
    FE FF 00 E0  {item2}                                  #     item, defined length
    08 00 50 11  55 49  06 00  31 2E 32 2E 33 00          #     (0008,1150) UI '1.2.3'
    40 00 55 05  53 51 00 00  {sq3}                       #     (0040,0555) SQ, defined length
    FE FF 00 E0  {item3}                                  #       item, defined length
    40 00 40 A0  43 53  04 00  54 45 58 54                #       (0040,A040) CS 'TEXT'
    {text}
    20 00 0E 00  55 49  06 00  31 2E 32 2E 36 00          #   (0020,000E) UI '1.2.6'
    10 00 10 00  50 4E  08 00  44 4F 45 5E 4A 4F 48 4E    # (0010,0010) PN 'DOE^JOHN'
"""
_TEXT = "40 00 60 A1  55 54 00 00  04 00 00 00  4E 4F 54 45  # (0040,A160) UT 'NOTE'"
DEFINED_NESTED = part10(EXPLICIT_LE, hex2bytes(_DEFINED_NESTED.format(
    sq1="68 00 00 00", item1="60 00 00 00", sq2="46 00 00 00", item2="3E 00 00 00",
    sq3="24 00 00 00", item3="1C 00 00 00", text=_TEXT)))             # 104, 96, 70, 62, 36, 28
DEFINED_NESTED_WITHOUT_TEXT = part10(EXPLICIT_LE, hex2bytes(_DEFINED_NESTED.format(
    sq1="58 00 00 00", item1="50 00 00 00", sq2="36 00 00 00", item2="2E 00 00 00",
    sq3="14 00 00 00", item3="0C 00 00 00", text="")))                # 88, 80, 54, 46, 20, 12

# Explicit VR big endian (retired, PS3.5 Annex A.3), with a defined-length sequence.
_BIG_ENDIAN = hex2bytes("""
    00 08 00 16  55 49  00 08  31 2E 32 2E 33 2E 34 00    # (0008,0016) UI '1.2.3.4'
    00 08 11 15  53 51 00 00  00 00 00 16                 # (0008,1115) SQ, 22 bytes
    FF FE E0 00  00 00 00 0E                              #   item, 14 bytes
    00 20 00 0E  55 49  00 06  31 2E 32 2E 36 00          #   (0020,000E) UI '1.2.6'
    00 10 00 10  50 4E  00 08  44 4F 45 5E 4A 4F 48 4E    # (0010,0010) PN 'DOE^JOHN'
    00 28 00 10  55 53  00 02  02 00                      # (0028,0010) Rows US 512
""")
BIG_ENDIAN = part10(EXPLICIT_BE, _BIG_ENDIAN)

# Encapsulated Pixel Data (PS3.5 §A.4): fragments stay opaque and byte-identical.
FRAGMENTS = hex2bytes("""
    E0 7F 10 00  4F 42 00 00  FF FF FF FF                 # (7FE0,0010) OB, undefined length
    FE FF 00 E0  00 00 00 00                              #   basic offset table, empty
    FE FF 00 E0  06 00 00 00  FF D8 01 02 FF D9           #   fragment, 6 bytes
    FE FF 00 E0  04 00 00 00  FF D8 FF D9                 #   fragment, 4 bytes
    FE FF DD E0  00 00 00 00                              # sequence delimiter
""")
ENCAPSULATED = part10(JPEG_BASELINE, hex2bytes("""
    08 00 16 00  55 49  08 00  31 2E 32 2E 33 2E 34 00    # (0008,0016) UI '1.2.3.4'
    10 00 10 00  50 4E  08 00  44 4F 45 5E 4A 4F 48 4E    # (0010,0010) PN 'DOE^JOHN'
    28 00 10 00  55 53  02 00  04 00                      # (0028,0010) Rows 4
""") + FRAGMENTS)

# UN with undefined length holds an implicit VR LE sequence (PS3.5 §6.2.2).
UN_UNDEFINED = part10(EXPLICIT_LE, hex2bytes("""
    09 00 10 00  4C 4F  04 00  41 43 4D 45                # (0009,0010) LO private creator 'ACME'
    09 00 10 10  55 4E 00 00  FF FF FF FF                 # (0009,1010) UN, undefined length
    FE FF 00 E0  FF FF FF FF                              #   item, undefined
    10 00 10 00  04 00 00 00  44 4F 45 5E                 #   (0010,0010) implicit VR, PN 'DOE^'
    FE FF 0D E0  00 00 00 00                              #   item delimiter
    FE FF DD E0  00 00 00 00                              # sequence delimiter
    10 00 20 00  4C 4F  02 00  49 44                      # (0010,0020) LO 'ID'
"""))

# A known SQ written as UN with a defined length: its items are implicit VR LE.
UN_KNOWN_SQ = part10(EXPLICIT_LE, hex2bytes("""
    08 00 15 11  55 4E 00 00  16 00 00 00                 # (0008,1115) UN, 22 bytes
    FE FF 00 E0  0E 00 00 00                              #   item, 14 bytes
    20 00 0E 00  06 00 00 00  31 2E 32 2E 36 00           #   (0020,000E) implicit VR, UI '1.2.6'
    10 00 10 00  50 4E  04 00  44 4F 45 5E                # (0010,0010) PN 'DOE^'
"""))

# Odd value lengths, as some writers leave them (PS3.5 §7.1.1 wants even ones).
ODD_LENGTHS = part10(EXPLICIT_LE, hex2bytes("""
    10 00 10 00  50 4E  03 00  41 42 43                   # (0010,0010) PN, 3 bytes 'ABC'
    10 00 20 00  4C 4F  01 00  58                         # (0010,0020) LO, 1 byte 'X'
    10 00 30 00  44 41  08 00  31 39 37 30 30 31 30 31    # (0010,0030) DA '19700101'
"""))

# An explicit VR file whose sequence item is written in implicit VR (pydicom reads it).
SWITCH_TO_IMPLICIT = part10(EXPLICIT_LE, hex2bytes("""
    08 00 16 00  55 49  08 00  31 2E 32 2E 33 2E 34 00    # (0008,0016) UI '1.2.3.4'
    08 00 15 11  53 51 00 00  FF FF FF FF                 # (0008,1115) SQ, undefined
    FE FF 00 E0  FF FF FF FF                              #   item, undefined; implicit VR inside:
    08 00 50 11  06 00 00 00  31 2E 32 2E 33 00           #   (0008,1150) UI '1.2.3'
    20 00 0E 00  06 00 00 00  31 2E 32 2E 36 00           #   (0020,000E) UI '1.2.6'
    FE FF 0D E0  00 00 00 00                              #   item delimiter
    FE FF DD E0  00 00 00 00                              # sequence delimiter
    10 00 10 00  50 4E  04 00  44 4F 45 5E                # (0010,0010) explicit VR again: PN 'DOE^'
"""))

# Trailing bytes after the last element, too few for a header: kept as they are.
TRAILING_PADDING = part10(EXPLICIT_LE, hex2bytes("""
    10 00 10 00  50 4E  04 00  44 4F 45 5E                # (0010,0010) PN 'DOE^'
    10 00 20 00  4C 4F  02 00  49 44                      # (0010,0020) LO 'ID'
    00 00 00 00                                           # 4 padding bytes
"""))

# Raw data sets without preamble or meta: the encoding is guessed as pydicom's force=True does.
RAW_IMPLICIT = hex2bytes("""
    08 00 05 00  0A 00 00 00  49 53 4F 5F 49 52 20 31 30 30   # (0008,0005) 'ISO_IR 100'
    08 00 16 00  08 00 00 00  31 2E 32 2E 33 2E 34 00         # (0008,0016) '1.2.3.4'
    10 00 10 00  08 00 00 00  44 4F 45 5E 4A 4F 48 4E         # (0010,0010) 'DOE^JOHN'
""")
RAW_EXPLICIT = hex2bytes("""
    08 00 16 00  55 49  08 00  31 2E 32 2E 33 2E 34 00    # (0008,0016) UI '1.2.3.4'
    08 00 15 11  53 51 00 00  16 00 00 00                 # (0008,1115) SQ, 22 bytes
    FE FF 00 E0  0E 00 00 00                              #   item, 14 bytes
    20 00 0E 00  55 49  06 00  31 2E 32 2E 36 00          #   (0020,000E) UI '1.2.6'
    10 00 10 00  50 4E  08 00  44 4F 45 5E 4A 4F 48 4E    # (0010,0010) PN 'DOE^JOHN'
""")
RAW_BIG_ENDIAN = _BIG_ENDIAN

# Encapsulated Pixel Data whose last fragment ends the file, its sequence delimiter missing
# (pydicom-data's emri_small_jpeg_2k_lossless_too_short.dcm): dcmtk reads it all and complains.
OPEN_FRAGMENTS = part10(JPEG_BASELINE, hex2bytes("""
    08 00 16 00  55 49  08 00  31 2E 32 2E 33 2E 34 00    # (0008,0016) UI '1.2.3.4'
    10 00 10 00  50 4E  08 00  44 4F 45 5E 4A 4F 48 4E    # (0010,0010) PN 'DOE^JOHN'
    E0 7F 10 00  4F 42 00 00  FF FF FF FF                 # (7FE0,0010) OB, undefined length
    FE FF 00 E0  00 00 00 00                              #   basic offset table, empty
    FE FF 00 E0  06 00 00 00  FF D8 01 02 FF D9           #   fragment, 6 bytes; then the end
"""))

# Implicit VR as dcmconv +ti writes a GE file: an empty SQ (pydicom converts it at once), a
# private SQ pydicom knows from its private dictionary only (opaque bytes to fastanon), an empty
# private value pydicom types by that dictionary, and a group length of an odd group.
IMPLICIT_PRIVATE = part10(IMPLICIT_LE, hex2bytes("""
    08 00 11 11  00 00 00 00                              # (0008,1111) SQ, empty
    08 00 16 00  08 00 00 00  31 2E 32 2E 33 2E 34 00     # (0008,0016) UI '1.2.3.4'
    09 00 00 00  04 00 00 00  28 00 00 00                 # (0009,0000) group length 40
    09 00 10 00  0C 00 00 00  47 45 4D 53 5F 49 44 45 4E 5F 30 31  # (0009,0010) 'GEMS_IDEN_01'
    09 00 E3 10  00 00 00 00                              # (0009,10E3) UI to pydicom, empty
    09 00 E4 10  04 00 00 00  31 2E 32 00                 # (0009,10E4) '1.2'
    49 00 10 00  14 00 00 00  47 45 4D 53 5F 43 54 5F 43 41 52 44 49 41 43 5F 30 30 31 20
                                                          # (0049,0010) 'GEMS_CT_CARDIAC_001 '
    49 00 01 10  18 00 00 00                              # (0049,1001) SQ to pydicom, 24 bytes
    FE FF 00 E0  10 00 00 00                              #   item, 16 bytes
    49 00 02 10  08 00 00 00  44 4F 45 5E 4A 4F 48 4E     #   (0049,1002) 'DOE^JOHN'
    10 00 10 00  08 00 00 00  44 4F 45 5E 4A 4F 48 4E     # (0010,0010) PN 'DOE^JOHN'
"""))

CASES = {
    "implicit_nested": IMPLICIT_NESTED,
    "defined_nested": DEFINED_NESTED,
    "big_endian": BIG_ENDIAN,
    "encapsulated": ENCAPSULATED,
    "un_undefined": UN_UNDEFINED,
    "un_known_sq": UN_KNOWN_SQ,
    "odd_lengths": ODD_LENGTHS,
    "switch_to_implicit": SWITCH_TO_IMPLICIT,
    "trailing_padding": TRAILING_PADDING,
    "raw_implicit": RAW_IMPLICIT,
    "raw_explicit": RAW_EXPLICIT,
    "raw_big_endian": RAW_BIG_ENDIAN,
}
# Not in CASES, tests/test_real_files.py checks them: pydicom reads OPEN_FRAGMENTS as an empty
# data set (it drops everything when a delimiter is missing), and in IMPLICIT_PRIVATE it types
# the empty private value by its creator, which test_rewrite's `remove` of the creator changes.
