"""Type stub of the compiled core (_core.pyx + _blank.pxi): byte loops only."""

from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

KIND_ELEMENT: int
KIND_SEQUENCE: int
KIND_ITEM: int
KIND_FRAGMENTS: int
FLAG_UNDEFINED: int
FLAG_IMPLICIT: int
FLAG_BIG: int
FLAG_LONG: int
FLAG_OPEN: int        # fragments ending with the data, without their sequence delimiter
FLAG_SWITCHED: int    # an implicit VR header inside an explicit VR data set

# Table.status after scan(); scan.py words each one.
SCAN_OK: int
SCAN_TRUNCATED_HEADER: int
SCAN_VALUE_PAST_END: int
SCAN_TOO_DEEP: int
SCAN_BAD_ITEM: int
SCAN_NO_DELIMITER: int
SCAN_BAD_UNDEFINED: int
SCAN_STRAY_DELIMITER: int
SCAN_NO_MEMORY: int
SCAN_BAD_VR: int
SCAN_HIDDEN_DATA: int   # a delimiter inside a defined length, with data after it
SCAN_REPEATED: int      # the same element twice in a row in one data set or item

# Table.patches's status.
PATCH_OK: int
PATCH_ITEM: int       # an item was given: only elements can be edited
PATCH_SHORT: int      # a value too long for its header's 16-bit length
PATCH_LENGTH: int     # a length beyond 32 bits

BLANK_OK: int
BLANK_OUT_OF_BOUNDS: int
BLANK_BAD_ARGS: int

Row = tuple[int, str, int, int, int, int, int, int, int, int]

class Table:
    """The flat element table of one scanned region, in document order."""

    @property
    def n(self) -> int: ...
    @property
    def stop(self) -> int: ...
    @property
    def switched(self) -> int:
        """How many elements have FLAG_SWITCHED."""
    @property
    def status(self) -> int: ...
    @property
    def err_pos(self) -> int: ...
    @property
    def err_tag(self) -> int: ...
    @property
    def err_len(self) -> int: ...
    def __len__(self) -> int: ...
    def row(self, i: int) -> Row:
        """(tag, vr, kind, flags, depth, parent, start, vstart, vlen, end) of entry i."""
    def rows(self) -> list[Row]: ...
    def tags(self) -> list[int]: ...
    def spans(self, min_length: int) -> list[tuple[int, int]]:
        """(value start, end) of the top-level values (not sequences) at least min_length long."""
    def holding(self, positions: Buffer) -> list[int]:
        """Indices of the data elements whose value holds one of the (ascending, int64) byte
        offsets, each once, in document order."""
    def patches(self, buf: Buffer, order: Buffer, values: list, vrs: Buffer,
                header_only: object) -> tuple:
        """(PATCH_OK, [(start, end, new bytes), ...]) applying edits (order: sorted int64
        indices; values[k]: None to remove, header_only, or new value bytes; vrs[k]: 0 or the
        VR code of an explicit header, or empty), with the lengths around them fixed; else
        (status, entry, length, vr)."""
    def find(self, tag: int, parent: int) -> int:
        """Index of the first entry with tag directly under parent (-1: top level), or -1."""
    def select(self, tags: Buffer, codes: Buffer, masks: Buffer, values: Buffer, mcodes: Buffer,
               private_code: int, creator_code: int) -> list[tuple[int, int]]:
        """(index, code) of entries with a non-zero action code, in document order."""

def scan(buf: Buffer, start: int, implicit: bool, big: bool, sq_tags: Buffer,
         max_depth: int = 128, meta: bool = False) -> Table:
    """Walk element headers from start into a Table; errors stay in its status fields."""

def blank(buf: Buffer, base: int, starts: Buffer, stride: int, nrows: int, pattern: Buffer,
          repeat: int, swap: bool = False) -> int:
    """Fill nrows rows (stride bytes apart) from base + each start (int64 buffer) with pattern
    repeated `repeat` times, in place in the writable buf; swap: 8-bit data in big endian OW.
    Returns BLANK_OK, or a BLANK_* status without writing anything."""

def blank_bits(buf: Buffer, base: int, starts: Buffer, stride: int, nrows: int, nbits: int,
               value: bool) -> int:
    """As blank() for bit-packed pixels: starts, stride and nbits count bits from byte base."""

def expect(planned: Table, out: Table, out_buf: Buffer, order: Buffer, values: list,
           unknown: object, insert_before: Buffer, insert_tags: Buffer,
           insert_lengths: Buffer) -> tuple[int, int] | None:
    """None when out (re-scanned, its bytes out_buf) is planned with the planned edits: order
    (sorted int64 indices) and values[k] (None removed, unknown: content not known here, else
    the new value bytes), top-level insertions (int64 index before, uint32 tag, int64 length
    or -1); else (planned index, out index) of the first difference."""
