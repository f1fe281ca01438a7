# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Byte loops only: walk DICOM element headers into a flat table, select elements by tag."""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t, int64_t
from libc.string cimport memcmp
from libc.stdlib cimport calloc, malloc, realloc, free
from cpython.bytes cimport PyBytes_FromStringAndSize

# Entry kinds.
cdef enum:
    K_ELEMENT = 0      # a value: bytes from vstart to vstart + vlen
    K_SEQUENCE = 1     # SQ (or UN holding a sequence): items follow as entries
    K_ITEM = 2         # an item of a sequence: elements follow as entries
    K_FRAGMENTS = 3    # undefined-length non-SQ value (encapsulated Pixel Data): opaque items

# Entry flags.
cdef enum:
    F_UNDEFINED = 1    # value length was 0xFFFFFFFF: ends with a delimiter
    F_IMPLICIT = 2     # header has no VR (tag + 4-byte length)
    F_BIG = 4          # header numbers are big endian
    F_LONG = 8         # explicit VR header with 2 reserved bytes and a 4-byte length
    F_OPEN = 16        # fragments that end with the data, their sequence delimiter missing
    F_SWITCHED = 32    # an implicit VR header where the data set around it is explicit VR

# Status codes; scan.py turns them into messages.
cdef enum:
    S_OK = 0
    S_TRUNCATED_HEADER = 1
    S_VALUE_PAST_END = 2
    S_TOO_DEEP = 3
    S_BAD_ITEM = 4
    S_NO_DELIMITER = 5
    S_BAD_UNDEFINED = 6
    S_STRAY_DELIMITER = 7
    S_NO_MEMORY = 8
    S_BAD_VR = 9
    S_HIDDEN_DATA = 10
    S_REPEATED = 11

KIND_ELEMENT = K_ELEMENT
KIND_SEQUENCE = K_SEQUENCE
KIND_ITEM = K_ITEM
KIND_FRAGMENTS = K_FRAGMENTS
FLAG_UNDEFINED = F_UNDEFINED
FLAG_IMPLICIT = F_IMPLICIT
FLAG_BIG = F_BIG
FLAG_LONG = F_LONG
FLAG_OPEN = F_OPEN
FLAG_SWITCHED = F_SWITCHED
SCAN_OK = S_OK
SCAN_TRUNCATED_HEADER = S_TRUNCATED_HEADER
SCAN_VALUE_PAST_END = S_VALUE_PAST_END
SCAN_TOO_DEEP = S_TOO_DEEP
SCAN_BAD_ITEM = S_BAD_ITEM
SCAN_NO_DELIMITER = S_NO_DELIMITER
SCAN_BAD_UNDEFINED = S_BAD_UNDEFINED
SCAN_STRAY_DELIMITER = S_STRAY_DELIMITER
SCAN_NO_MEMORY = S_NO_MEMORY
SCAN_BAD_VR = S_BAD_VR
SCAN_HIDDEN_DATA = S_HIDDEN_DATA
SCAN_REPEATED = S_REPEATED

cdef extern from *:
    """
    #define FA_UNDEFINED 0xFFFFFFFFu
    #define FA_ITEM 0xFFFEE000u
    #define FA_ITEM_END 0xFFFEE00Du
    #define FA_SEQ_END 0xFFFEE0DDu
    """
    const uint32_t UNDEFINED "FA_UNDEFINED"   # PS3.5 §7.1: undefined length
    const uint32_t ITEM "FA_ITEM"             # PS3.5 §7.5: (FFFE,E000)
    const uint32_t ITEM_END "FA_ITEM_END"     # (FFFE,E00D)
    const uint32_t SEQ_END "FA_SEQ_END"       # (FFFE,E0DD)

cdef struct Entry:
    uint32_t tag
    uint16_t vr          # two ASCII bytes (first << 8 | second); 0 when the header has no VR
    uint8_t kind
    uint8_t flags
    int32_t depth
    int32_t parent       # index of the enclosing item (elements) or sequence (items); -1 at top
    int64_t start        # first byte of the header
    int64_t vstart       # first byte of the value (after the header)
    int64_t vlen         # declared value length (0xFFFFFFFF: undefined)
    int64_t end          # first byte after the value, its items and its delimiter


cdef struct Walker:
    const uint8_t* buf
    int64_t size
    Entry* entries
    int64_t n
    int64_t cap
    const uint32_t* sq_tags
    int64_t n_sq
    int max_depth
    int64_t switched     # entries with F_SWITCHED
    int status
    int64_t err_pos
    uint32_t err_tag
    int64_t err_len


cdef inline uint16_t rd16(const uint8_t* p, bint big) noexcept nogil:
    if big:
        return (p[0] << 8) | p[1]
    return p[0] | (p[1] << 8)


cdef inline uint32_t rd32(const uint8_t* p, bint big) noexcept nogil:
    if big:
        return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline uint32_t rdtag(const uint8_t* p, bint big) noexcept nogil:
    return (<uint32_t>rd16(p, big) << 16) | rd16(p + 2, big)


cdef inline bint is_upper(uint8_t c) noexcept nogil:
    return 65 <= c <= 90


cdef inline bint long_vr(uint16_t vr) noexcept nogil:
    # PS3.5 Table 7.1-1: VRs with 2 reserved bytes and a 32-bit length.
    return (vr == 0x4F42 or vr == 0x4F44 or vr == 0x4F46 or vr == 0x4F4C or vr == 0x4F56
            or vr == 0x4F57 or vr == 0x5351 or vr == 0x5356 or vr == 0x5543 or vr == 0x554E
            or vr == 0x5552 or vr == 0x5554 or vr == 0x5556)


cdef inline bint known_vr(uint16_t vr) noexcept nogil:
    # PS3.5 Table 6.2-1. pydicom reads an unknown one with a 16-bit length but cannot decode it.
    cdef uint8_t a = vr >> 8, b = vr & 0xFF
    if a == 65:   # A
        return b == 69 or b == 83 or b == 84                             # AE AS AT
    if a == 67:
        return b == 83                                                    # CS
    if a == 68:
        return b == 65 or b == 83 or b == 84                             # DA DS DT
    if a == 70:
        return b == 68 or b == 76                                         # FD FL
    if a == 73:
        return b == 83                                                    # IS
    if a == 76:
        return b == 79 or b == 84                                         # LO LT
    if a == 79:
        return b == 66 or b == 68 or b == 70 or b == 76 or b == 86 or b == 87   # OB OD OF OL OV OW
    if a == 80:
        return b == 78                                                    # PN
    if a == 83:
        return (b == 72 or b == 76 or b == 81 or b == 83 or b == 84      # SH SL SQ SS ST
                or b == 86)                                               # SV
    if a == 84:
        return b == 77                                                    # TM
    if a == 85:
        return (b == 67 or b == 73 or b == 76 or b == 78 or b == 82      # UC UI UL UN UR
                or b == 83 or b == 84 or b == 86)                         # US UT UV
    return False


cdef inline bint explicit_items(Walker* w, int64_t pos, int64_t stop) noexcept nogil:
    """Whether the first element of the item at pos has an explicit VR header: a sequence
    written as UN should hold implicit VR LE (PS3.5 §6.2.2), but some writers keep explicit VR."""
    if pos + 14 > stop or rdtag(w.buf + pos, False) != ITEM:
        return False
    return known_vr((w.buf[pos + 12] << 8) | w.buf[pos + 13])


cdef inline bint is_sq_tag(Walker* w, uint32_t tag) noexcept nogil:
    cdef int64_t lo = 0, hi = w.n_sq - 1, mid
    while lo <= hi:
        mid = (lo + hi) >> 1
        if w.sq_tags[mid] == tag:
            return True
        if w.sq_tags[mid] < tag:
            lo = mid + 1
        else:
            hi = mid - 1
    return False


cdef int64_t push(Walker* w) noexcept nogil:
    cdef Entry* grown
    cdef int64_t cap
    if w.n == w.cap:
        cap = w.cap * 2 if w.cap else 256
        grown = <Entry*>realloc(w.entries, cap * sizeof(Entry))
        if grown == NULL:
            w.status = S_NO_MEMORY
            return -1
        w.entries = grown
        w.cap = cap
    w.n += 1
    return w.n - 1


cdef inline int64_t add(Walker* w, uint32_t tag, uint16_t vr, uint8_t kind, uint8_t flags,
                        int depth, int64_t parent, int64_t start, int64_t vstart,
                        int64_t vlen) noexcept nogil:
    """Append an entry (its end is set by the caller once known); -1 when out of memory."""
    cdef int64_t i = push(w)
    if i < 0:
        return -1
    w.entries[i].tag = tag
    w.entries[i].vr = vr
    w.entries[i].kind = kind
    w.entries[i].flags = flags
    w.entries[i].depth = depth
    w.entries[i].parent = <int32_t>parent
    w.entries[i].start = start
    w.entries[i].vstart = vstart
    w.entries[i].vlen = vlen
    w.entries[i].end = vstart
    return i


cdef inline int fail(Walker* w, int status, int64_t pos, uint32_t tag, int64_t length) noexcept nogil:
    if w.status == S_OK:
        w.status = status
        w.err_pos = pos
        w.err_tag = tag
        w.err_len = length
    return -1


cdef int64_t walk_items(Walker* w, int64_t pos, int64_t limit, int64_t seq, int depth,
                    bint implicit, bint big, bint fragments) noexcept nogil:
    """Items of a sequence (or fragments) from pos; limit is the end of a defined length,
    or -1 for an undefined length ended by a sequence delimiter. Returns the end offset."""
    cdef uint32_t tag, length
    cdef int64_t i, stop = limit if limit >= 0 else w.size
    cdef int64_t item_end
    while True:
        if limit >= 0 and pos >= limit:
            if pos > limit:
                return fail(w, S_VALUE_PAST_END, pos, w.entries[seq].tag, limit - w.entries[seq].vstart)
            return pos
        if pos + 8 > stop:
            if (fragments and pos == w.size and w.entries[seq].depth == 0
                    and w.entries[seq].tag == 0x7FE00010 and w.n - seq > 2):
                # Top-level Pixel Data whose last fragment (after the offset table) ends the file
                # without its sequence delimiter (PS3.5 §A.4): some writers stop there; dcmtk
                # reads it (with a complaint).
                w.entries[seq].flags |= F_OPEN
                return pos
            if limit < 0:
                return fail(w, S_NO_DELIMITER, pos, w.entries[seq].tag, 0)
            return fail(w, S_TRUNCATED_HEADER, pos, w.entries[seq].tag, 0)
        tag = rdtag(w.buf + pos, big)
        length = rd32(w.buf + pos + 4, big)
        if tag == SEQ_END:
            if limit < 0 or pos + 8 == limit:
                return pos + 8      # a delimiter ending a defined length: tolerated, kept
            # Bytes after it inside the defined length: readers disagree on whether they
            # belong to the sequence, and they would pass unexamined. Refused.
            return fail(w, S_HIDDEN_DATA, pos, w.entries[seq].tag, limit - pos - 8)
        if tag != ITEM:
            return fail(w, S_BAD_ITEM, pos, tag, length)
        i = add(w, tag, 0, K_ITEM, (F_BIG if big else 0) | (F_UNDEFINED if length == UNDEFINED else 0),
                depth, seq, pos, pos + 8, length)
        if i < 0:
            return -1
        if fragments:
            if length == UNDEFINED or pos + 8 + <int64_t>length > stop:
                return fail(w, S_VALUE_PAST_END, pos, w.entries[seq].tag, length)
            item_end = pos + 8 + length
        elif length == UNDEFINED:
            item_end = walk_dataset(w, pos + 8, -1, i, depth + 1, implicit, big)
        else:
            if pos + 8 + <int64_t>length > stop:
                return fail(w, S_VALUE_PAST_END, pos, tag, length)
            item_end = walk_dataset(w, pos + 8, pos + 8 + length, i, depth + 1, implicit, big)
        if item_end < 0:
            return -1
        w.entries[i].end = item_end
        pos = item_end


cdef inline bint all_zero(const uint8_t* p, int64_t n) noexcept nogil:
    cdef int64_t k
    for k in range(n):
        if p[k]:
            return False
    return True


cdef int64_t walk_dataset(Walker* w, int64_t pos, int64_t limit, int64_t parent, int depth,
                          bint implicit, bint big) noexcept nogil:
    """Elements from pos to limit (or to an item delimiter when limit is -1; limit -2: the top
    level, to the end of the buffer). Returns the end offset, or -1 with w.status set."""
    cdef uint32_t tag, length, previous = 0xFFFFFFFFu
    cdef uint16_t vr
    cdef int64_t i, hlen, vstart, end, stop, saved, saved_switched
    cdef bint el_implicit, el_long, sub_implicit, sub_big
    cdef uint8_t kind
    if depth > w.max_depth:
        return fail(w, S_TOO_DEEP, pos, w.entries[parent].tag if parent >= 0 else 0, depth)
    stop = limit if limit >= 0 else w.size
    while True:
        if limit >= 0 and pos >= limit:
            return pos
        if pos + 8 > stop:
            if limit == -2 and pos + 8 > w.size:
                return pos           # fewer than 8 trailing bytes: padding, kept as it is
            if limit == -1:
                return fail(w, S_NO_DELIMITER, pos, w.entries[parent].tag if parent >= 0 else 0, 0)
            return fail(w, S_TRUNCATED_HEADER, pos, 0, 0)
        tag = rdtag(w.buf + pos, big)
        if tag == 0 and limit == -2 and all_zero(w.buf + pos, w.size - pos):
            return pos               # zeros to the end of the file: padding, kept as it is
        if tag == ITEM_END:
            if limit == -1:
                return pos + 8
            if limit >= 0:
                if pos + 8 == limit:
                    return limit    # a delimiter ending a defined-length item: tolerated, kept
                # Elements after it in the item would pass unexamined (readers stop there).
                return fail(w, S_HIDDEN_DATA, pos,
                            w.entries[parent].tag if parent >= 0 else tag, limit - pos - 8)
            return fail(w, S_STRAY_DELIMITER, pos, tag, 0)
        vr = 0
        el_implicit = implicit
        el_long = False
        if not implicit and not (tag >> 16) == 0xFFFE:
            if is_upper(w.buf[pos + 4]) and is_upper(w.buf[pos + 5]):
                vr = (w.buf[pos + 4] << 8) | w.buf[pos + 5]
                if not known_vr(vr):
                    return fail(w, S_BAD_VR, pos, tag, vr)
                el_long = long_vr(vr)
            else:
                el_implicit = True    # a writer switched to implicit VR here (as pydicom reads it)
        if el_implicit or (tag >> 16) == 0xFFFE:
            length = rd32(w.buf + pos + 4, big)
            hlen = 8
        elif el_long:
            if pos + 12 > stop:
                return fail(w, S_TRUNCATED_HEADER, pos, tag, 0)
            length = rd32(w.buf + pos + 8, big)
            hlen = 12
        else:
            length = rd16(w.buf + pos + 6, big)
            hlen = 8
        vstart = pos + hlen
        if (tag >> 16) == 0xFFFE:
            return fail(w, S_BAD_ITEM, pos, tag, length)
        if tag == previous:
            # An attribute occurs once in a data set (PS3.5 §7.1); a run of the same element
            # (a file of zeros reads as (0000,0000) again and again) is refused at its second.
            return fail(w, S_REPEATED, pos, tag, length)
        previous = tag
        i = add(w, tag, vr, K_ELEMENT,
                (F_BIG if big else 0) | (F_IMPLICIT if el_implicit else 0)
                | (F_SWITCHED if el_implicit and not implicit else 0)
                | (F_LONG if el_long else 0) | (F_UNDEFINED if length == UNDEFINED else 0),
                depth, parent, pos, vstart, length)
        if i < 0:
            return -1
        if el_implicit and not implicit:
            w.switched += 1
        kind = K_ELEMENT
        sub_implicit = implicit
        sub_big = big
        if vr == 0x5351:                                    # SQ
            kind = K_SEQUENCE
        elif vr == 0x554E:                                  # UN
            if length == UNDEFINED and tag != 0x7FE00010:
                kind = K_SEQUENCE                           # PS3.5 §6.2.2: implicit VR LE inside
                sub_implicit = not explicit_items(w, vstart, stop)
                sub_big = False
            elif (length >= 8 and vstart + 8 <= stop and is_sq_tag(w, tag)
                  and rdtag(w.buf + vstart, False) == ITEM):
                kind = K_SEQUENCE                           # a known SQ written as UN
                sub_implicit = not explicit_items(w, vstart, stop)
                sub_big = False
        elif vr == 0:
            if is_sq_tag(w, tag):
                kind = K_SEQUENCE       # its value must be items, as pydicom reads it (PS3.5 §7.5)
            elif length == UNDEFINED and tag != 0x7FE00010:
                if vstart + 4 <= stop and rdtag(w.buf + vstart, big) == ITEM:
                    kind = K_SEQUENCE                       # unknown tag holding items: a sequence
        if length == UNDEFINED and kind == K_ELEMENT:
            if not (vr == 0 or vr == 0x4F42 or vr == 0x4F57 or vr == 0x554E):
                return fail(w, S_BAD_UNDEFINED, pos, tag, length)
            kind = K_FRAGMENTS
        w.entries[i].kind = kind
        if kind == K_ELEMENT:
            if vstart + <int64_t>length > stop:
                return fail(w, S_VALUE_PAST_END, pos, tag, length)
            end = vstart + length
        elif length == UNDEFINED:
            end = walk_items(w, vstart, -1, i, depth + 1, sub_implicit, sub_big, kind == K_FRAGMENTS)
        else:
            if vstart + <int64_t>length > stop:
                return fail(w, S_VALUE_PAST_END, pos, tag, length)
            saved = w.n
            saved_switched = w.switched
            end = walk_items(w, vstart, vstart + length, i, depth + 1, sub_implicit, sub_big, False)
            if end < 0 and vr == 0x554E and w.status != S_NO_MEMORY and w.status != S_TOO_DEEP:
                # A UN value that looked like a sequence but does not hold one: kept as the
                # opaque bytes it is declared to be (its defined length bounds it).
                w.n = saved
                w.switched = saved_switched
                w.status = S_OK
                w.entries[i].kind = K_ELEMENT
                end = vstart + length
        if end < 0:
            return -1
        w.entries[i].end = end
        pos = end


cdef int64_t walk_meta(Walker* w, int64_t pos) noexcept nogil:
    """Group 0002 elements from pos (PS3.10 §7.1: explicit VR little endian; an implicit VR
    header is tolerated). Stops before the first element of another group."""
    cdef uint32_t tag, length
    cdef uint16_t vr
    cdef int64_t i, hlen
    while pos + 8 <= w.size:
        tag = rdtag(w.buf + pos, False)
        if (tag >> 16) != 0x0002:
            break
        vr = 0
        if is_upper(w.buf[pos + 4]) and is_upper(w.buf[pos + 5]):
            vr = (w.buf[pos + 4] << 8) | w.buf[pos + 5]
            if not known_vr(vr):
                return fail(w, S_BAD_VR, pos, tag, vr)
            if long_vr(vr):
                if pos + 12 > w.size:
                    return fail(w, S_TRUNCATED_HEADER, pos, tag, 0)
                length = rd32(w.buf + pos + 8, False)
                hlen = 12
            else:
                length = rd16(w.buf + pos + 6, False)
                hlen = 8
        else:
            length = rd32(w.buf + pos + 4, False)
            hlen = 8
        if length == UNDEFINED or pos + hlen + <int64_t>length > w.size:
            return fail(w, S_VALUE_PAST_END, pos, tag, length)
        i = add(w, tag, vr, K_ELEMENT, (F_IMPLICIT if vr == 0 else 0) | (F_LONG if hlen == 12 else 0),
                0, -1, pos, pos + hlen, length)
        if i < 0:
            return -1
        w.entries[i].end = pos + hlen + length
        pos = pos + hlen + length
    return pos


cdef class Table:
    """The flat element table of one scanned region, in document order."""
    cdef Entry* entries
    cdef readonly int64_t n
    cdef readonly int64_t stop
    cdef readonly int64_t switched    # elements with FLAG_SWITCHED (a data set mixing encodings)
    cdef readonly int status
    cdef readonly int64_t err_pos
    cdef readonly uint32_t err_tag
    cdef readonly int64_t err_len

    def __dealloc__(self):
        free(self.entries)

    def __len__(self):
        return self.n

    cdef inline void _check(self, int64_t i) except *:
        if i < 0 or i >= self.n:
            raise IndexError(i)

    def row(self, int64_t i):
        """(tag, vr, kind, flags, depth, parent, start, vstart, vlen, end) of entry i."""
        self._check(i)
        cdef Entry* e = &self.entries[i]
        vr = "" if e.vr == 0 else chr(e.vr >> 8) + chr(e.vr & 0xFF)
        return (e.tag, vr, e.kind, e.flags, e.depth, e.parent, e.start, e.vstart, e.vlen, e.end)

    def rows(self):
        return [self.row(i) for i in range(self.n)]

    def tags(self):
        return [self.entries[i].tag for i in range(self.n)]

    def spans(self, int64_t min_length):
        """(value start, end) of the top-level values (not sequences: their items hold elements)
        at least min_length long."""
        cdef int64_t i
        cdef Entry* e
        out = []
        for i in range(self.n):
            e = &self.entries[i]
            if e.parent == -1 and e.kind != K_SEQUENCE and e.end - e.vstart >= min_length:
                out.append((e.vstart, e.end))
        return out

    def holding(self, const int64_t[::1] positions):
        """Indices of the data elements (any depth) whose value holds one of the byte offsets
        (ascending), each index once, in document order."""
        cdef int64_t i = 0, p = 0, count = positions.shape[0]
        cdef Entry* e
        out = []
        while i < self.n and p < count:
            e = &self.entries[i]
            if e.kind == K_ELEMENT:
                while p < count and positions[p] < e.vstart:
                    p += 1
                if p < count and positions[p] < e.end:
                    out.append(i)
            i += 1
        return out

    def find(self, uint32_t tag, int64_t parent):
        """Index of the first entry with this tag directly under parent (-1: top level), or -1."""
        cdef int64_t i = parent + 1 if parent >= 0 else 0
        cdef int64_t limit = -1
        if parent >= 0:
            self._check(parent)
            limit = self.entries[parent].end
        while i < self.n:
            if limit >= 0 and self.entries[i].start >= limit:
                break
            if self.entries[i].parent == parent and self.entries[i].tag == tag:
                return i
            i += 1
        return -1

    def patches(self, const uint8_t[::1] buf, const int64_t[::1] order, list values,
                const uint16_t[::1] vrs, object header_only):
        """The patches (start, end, new bytes), sorted, that apply edits to the region whose
        bytes are buf: order (sorted indices), values[k] (None: removed; header_only: only the
        header is rewritten; else the new value), vrs[k] (0, or the VR of an explicit header
        to write; vrs may be empty: all 0). Lengths of enclosing defined-length sequences and
        items, and group lengths (gggg,0000) at the same level, follow (PS3.5 §7.2, §7.5).
        Returns (PATCH_OK, list) or (status, entry, length, vr)."""
        cdef int64_t n = self.n, count = order.shape[0], k, i, p, skip_until = -1, change
        cdef int64_t value_len, hlen, start, size, g, gi, limit, vlen, j
        cdef Entry* e
        cdef Entry* entries = self.entries
        cdef uint8_t head[12]
        cdef int64_t* delta
        cdef int64_t* own
        cdef uint8_t* edited
        cdef int64_t* touched
        cdef int64_t ntouched = 0
        cdef object new
        cdef bint undefined
        cdef bint with_vrs = vrs.shape[0] != 0
        cdef uint16_t vr
        if (with_vrs and vrs.shape[0] != count) or len(values) != count:
            raise ValueError("one value (and VR) per edit")
        out = []
        if count == 0:
            return (PATCH_OK, out)
        delta = <int64_t*>calloc(n, sizeof(int64_t))
        own = <int64_t*>calloc(n, sizeof(int64_t))
        edited = <uint8_t*>calloc(n, 1)
        touched = <int64_t*>malloc(n * sizeof(int64_t))
        if delta == NULL or own == NULL or edited == NULL or touched == NULL:
            free(delta); free(own); free(edited); free(touched)
            raise MemoryError()
        try:
            for k in range(count):
                i = order[k]
                if i < 0 or i >= n:
                    raise IndexError(i)
                e = &entries[i]
                if e.start < skip_until:
                    continue                    # inside an element removed or replaced
                if e.kind == K_ITEM:
                    return (PATCH_ITEM, i, 0, 0)
                new = values[k]
                vr = vrs[k] if with_vrs else 0
                if new is header_only:
                    hlen = header_bytes(head, &buf[0], e, vr, 0, False)
                    change = hlen - (e.vstart - e.start)
                    own[i] = change + 1        # + 1: "re-headered" even when the size stays
                    edited[i] |= 2
                elif new is None:
                    out.append((e.start, e.end, b""))
                    change = e.start - e.end
                    edited[i] |= 1
                    skip_until = e.end
                else:
                    value_len = len(new)
                    hlen = header_bytes(head, &buf[0], e, vr, value_len, False)
                    if hlen == -1:
                        return (PATCH_SHORT, i, value_len, vr or e.vr)
                    if hlen == -2:
                        return (PATCH_LENGTH, i, value_len, 0)
                    out.append((e.start, e.end, PyBytes_FromStringAndSize(<char*>head, hlen) + new))
                    change = hlen + value_len - (e.end - e.start)
                    edited[i] |= 1
                    skip_until = e.end
                if change and not (edited[i] & 4):
                    edited[i] |= 4              # listed in touched (once, whatever delta does)
                    touched[ntouched] = i
                    ntouched += 1
                delta[i] += change
                if change:
                    p = e.parent
                    while p >= 0:
                        if not (edited[p] & 4):
                            edited[p] |= 4
                            touched[ntouched] = p
                            ntouched += 1
                        delta[p] += change
                        p = entries[p].parent
            # Re-headered elements, with the defined length of what they hold.
            for k in range(count):
                i = order[k]
                if (edited[i] & 3) != 2:
                    continue
                e = &entries[i]
                vlen = e.vlen
                undefined = e.flags & F_UNDEFINED
                if not undefined:
                    vlen += delta[i] - (own[i] - 1)
                hlen = header_bytes(head, &buf[0], e, vrs[k] if with_vrs else 0, vlen, undefined)
                if hlen == -2:
                    return (PATCH_LENGTH, i, vlen, 0)
                out.append((e.start, e.vstart, PyBytes_FromStringAndSize(<char*>head, hlen)))
            # Defined lengths of the enclosing sequences and items; group lengths.
            groups = {}
            for j in range(ntouched):
                i = touched[j]
                change = delta[i]
                if change == 0:
                    continue
                e = &entries[i]
                if not (edited[i] & 3) and not (e.flags & F_UNDEFINED):
                    vlen = e.vlen + change
                    if vlen < 0 or vlen >= <int64_t>UNDEFINED:
                        return (PATCH_LENGTH, i, vlen, 0)
                    start = e.start + (4 if (e.kind == K_ITEM or (e.flags & F_IMPLICIT))
                                       else (8 if (e.flags & F_LONG) else 6))
                    put32(head, <uint32_t>vlen, e.flags & F_BIG)
                    out.append((start, start + 4, PyBytes_FromStringAndSize(<char*>head, 4)))
                if e.kind != K_ITEM and (e.tag & 0xFFFF):
                    key = (e.parent, e.tag >> 16)
                    groups[key] = groups.get(key, 0) + change
            for (p, g), change in groups.items():
                if not change:
                    continue
                gi = self.find((<uint32_t>g) << 16, p)
                if gi < 0 or (edited[gi] & 3) == 1:
                    continue
                e = &entries[gi]
                if e.vlen != 4:
                    continue
                # Recomputed from the bytes, not by adjusting the old value: it may be wrong.
                size = e.end
                limit = entries[p].end if p >= 0 else -1
                for j in range(gi + 1, n):
                    if limit >= 0 and entries[j].start >= limit:
                        break
                    if entries[j].parent == p:
                        if (entries[j].tag >> 16) != g:
                            break
                        size = entries[j].end
                vlen = size - e.end + change
                if vlen < 0 or vlen >= <int64_t>UNDEFINED:
                    return (PATCH_LENGTH, gi, vlen, 0)
                put32(head, <uint32_t>vlen, e.flags & F_BIG)
                out.append((e.vstart, e.vstart + 4, PyBytes_FromStringAndSize(<char*>head, 4)))
        finally:
            free(delta); free(own); free(edited); free(touched)
        out.sort()
        return (PATCH_OK, out)

    def select(self, const uint32_t[::1] tags, const uint8_t[::1] codes,
               const uint32_t[::1] masks, const uint32_t[::1] values, const uint8_t[::1] mcodes,
               uint8_t private_code, uint8_t creator_code):
        """Entries with a non-zero action code, as (index, code), in document order.

        tags (sorted) → codes by exact match first; then the first (tag & mask) == value rule;
        then private_code for odd-group data elements, creator_code for private creators.
        Items and the descendants of a selected entry are still visited: the caller skips them.
        """
        cdef int64_t i, lo, hi, mid, r, nt = tags.shape[0], nr = masks.shape[0]
        cdef uint32_t tag, el
        cdef uint8_t code
        out = []
        for i in range(self.n):
            if self.entries[i].kind == K_ITEM:
                continue
            tag = self.entries[i].tag
            code = 0
            lo = 0
            hi = nt - 1
            while lo <= hi:
                mid = (lo + hi) >> 1
                if tags[mid] == tag:
                    code = codes[mid]
                    break
                if tags[mid] < tag:
                    lo = mid + 1
                else:
                    hi = mid - 1
            else:
                for r in range(nr):
                    if (tag & masks[r]) == values[r]:
                        code = mcodes[r]
                        break
                else:
                    el = tag & 0xFFFF
                    # any odd group: 0001-0007 and FFFF are forbidden, treated as private (PS3.5 §7.8.1)
                    if (tag >> 16) & 1 and el != 0:
                        code = creator_code if el < 0x100 else private_code
            if code:
                out.append((i, code))
        return out


# Table.patches: how the result says what went wrong.
PATCH_OK = 0
PATCH_ITEM = 1        # an item was given: only elements can be edited
PATCH_SHORT = 2       # a value too long for a 16-bit length (err: length, vr)
PATCH_LENGTH = 3      # a length beyond 32 bits (err: length)

cdef inline bint long_header(uint16_t vr) noexcept nogil:
    return long_vr(vr)


cdef int header_bytes(uint8_t* out, const uint8_t* buf, Entry* e, uint16_t vr, int64_t length,
                      bint undefined) noexcept nogil:
    """The header of entry e for a value of length bytes, written to out (at most 12 bytes):
    like its own (vr 0) or explicit with vr. Returns its size, or -1 (length too long: 16-bit)
    or -2 (beyond 32 bits)."""
    cdef bint big = e.flags & F_BIG
    cdef int i
    cdef uint32_t value
    if not undefined and (length < 0 or length >= <int64_t>UNDEFINED):
        return -2
    value = UNDEFINED if undefined else <uint32_t>length
    for i in range(4):
        out[i] = buf[e.start + i] if vr == 0 else 0
    if vr != 0:                                    # the tag in the data set's byte order
        if big:
            out[0] = (e.tag >> 24) & 0xFF
            out[1] = (e.tag >> 16) & 0xFF
            out[2] = (e.tag >> 8) & 0xFF
            out[3] = e.tag & 0xFF
        else:
            out[0] = (e.tag >> 16) & 0xFF
            out[1] = (e.tag >> 24) & 0xFF
            out[2] = e.tag & 0xFF
            out[3] = (e.tag >> 8) & 0xFF
    if vr == 0 and (e.flags & F_IMPLICIT):
        put32(out + 4, value, big)
        return 8
    if vr == 0:
        out[4] = buf[e.start + 4]
        out[5] = buf[e.start + 5]
    else:
        out[4] = vr >> 8
        out[5] = vr & 0xFF
    if (vr == 0 and (e.flags & F_LONG)) or (vr != 0 and long_header(vr)):
        out[6] = 0
        out[7] = 0
        put32(out + 8, value, big)
        return 12
    if value > 0xFFFF:
        return -1
    if big:
        out[6] = (value >> 8) & 0xFF
        out[7] = value & 0xFF
    else:
        out[6] = value & 0xFF
        out[7] = (value >> 8) & 0xFF
    return 8


cdef inline void put32(uint8_t* p, uint32_t v, bint big) noexcept nogil:
    if big:
        p[0] = v >> 24
        p[1] = (v >> 16) & 0xFF
        p[2] = (v >> 8) & 0xFF
        p[3] = v & 0xFF
    else:
        p[0] = v & 0xFF
        p[1] = (v >> 8) & 0xFF
        p[2] = (v >> 16) & 0xFF
        p[3] = v >> 24


cdef inline int64_t subtree_end(Entry* e, int64_t n, int64_t i) noexcept nogil:
    """The index after entry i and everything inside it (its descendants follow it)."""
    cdef int64_t k = i + 1
    while k < n and e[k].start < e[i].end:
        k += 1
    return k


def expect(Table planned, Table out, const uint8_t[::1] out_buf, const int64_t[::1] order,
           list values, object unknown, const int64_t[::1] insert_before,
           const uint32_t[::1] insert_tags, const int64_t[::1] insert_lengths):
    """Check that out (a re-scanned output whose bytes are out_buf) is planned (the input's
    table) with the planned edits: order (sorted indices of the edited entries) and values[k]
    (None: removed, with all it holds; unknown: replaced by content not known here; else the
    new value bytes, compared byte for byte; a replaced sequence's content is not compared),
    and top-level insertions (before an input index, len(planned) for the end; length -1 for a
    sequence). Every other entry must come back with its tag, depth and kind, an element or a
    fragment with its length. Returns None, or (planned index, out index) of the first
    difference."""
    cdef Entry* a = planned.entries
    cdef Entry* b = out.entries
    cdef int64_t n = planned.n, m = out.n, size = out_buf.shape[0]
    cdef int64_t i = 0, j = 0, p = 0, q = 0, length
    cdef int64_t ne = order.shape[0], nq = insert_before.shape[0]
    cdef const uint8_t[::1] view
    cdef object value
    if len(values) != ne:
        raise ValueError("one value per edited entry")
    while i < n or q < nq:
        if q < nq and insert_before[q] <= i and (i >= n or a[i].parent == -1):
            if j >= m or b[j].tag != insert_tags[q] or b[j].depth != 0:
                return (i, j)
            length = insert_lengths[q]
            if length >= 0 and b[j].vlen != length:
                return (i, j)
            j = subtree_end(b, m, j)
            q += 1
            continue
        if i >= n:
            break
        while p < ne and order[p] < i:
            p += 1
        value = values[p] if p < ne and order[p] == i else unknown
        if p < ne and order[p] == i and value is None:
            i = subtree_end(a, n, i)            # removed
            continue
        if j >= m or b[j].tag != a[i].tag or b[j].depth != a[i].depth:
            return (i, j)
        if p < ne and order[p] == i:            # replaced
            if value is not unknown and a[i].kind == K_ELEMENT:
                view = value
                length = view.shape[0]
                if (b[j].kind != K_ELEMENT or b[j].vlen != length
                        or b[j].vstart + length > size
                        or (length and memcmp(&out_buf[b[j].vstart], &view[0], length) != 0)):
                    return (i, j)
            i = subtree_end(a, n, i)
            j = subtree_end(b, m, j)
            continue
        if b[j].kind != a[i].kind:
            return (i, j)
        if (a[i].kind == K_ELEMENT or (a[i].kind == K_ITEM and a[i].parent >= 0
                                       and a[a[i].parent].kind == K_FRAGMENTS)):
            if b[j].vlen != a[i].vlen:
                return (i, j)
        i += 1
        j += 1
    if j != m:
        return (i, j)
    return None


def scan(const uint8_t[::1] buf, int64_t start, bint implicit, bint big,
         const uint32_t[::1] sq_tags, int max_depth=128, bint meta=False):
    """Walk element headers from start to the end of buf into a Table.

    meta=True walks only the group 0002 elements at start (the file meta information).
    Errors are left in Table.status / err_pos / err_tag / err_len for the caller to raise.
    """
    cdef Walker w
    cdef int64_t end
    w.buf = &buf[0] if buf.shape[0] else NULL
    w.size = buf.shape[0]
    w.entries = NULL
    w.n = 0
    w.cap = 0
    w.sq_tags = &sq_tags[0] if sq_tags.shape[0] else NULL
    w.n_sq = sq_tags.shape[0]
    w.max_depth = max_depth
    w.switched = 0
    w.status = S_OK
    w.err_pos = 0
    w.err_tag = 0
    w.err_len = 0
    if start < 0 or start > w.size:
        start = w.size
    with nogil:
        if meta:
            end = walk_meta(&w, start)
        else:
            end = walk_dataset(&w, start, -2, -1, 0, implicit, big)
    t = Table()
    t.entries = w.entries
    t.n = w.n
    t.stop = end
    t.switched = w.switched
    t.status = w.status
    t.err_pos = w.err_pos
    t.err_tag = w.err_tag
    t.err_len = w.err_len
    return t


include "_blank.pxi"
include "_rle.pxi"
include "_jpeg.pxi"
