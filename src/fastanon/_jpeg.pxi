# Included by _core.pyx (which sets boundscheck=False, wraparound=False).
# Sequential DCT JPEG with Huffman coding in one scan (ISO 10918-1 baseline, and extended with
# 8 or 12 bits: the DICOM JPEG Baseline and Extended syntaxes) masked in the DCT domain:
# the scan is Huffman-decoded to its quantized coefficients, the blocks of the MCUs a mask
# touches become black (luminance or RGB: the lowest DC, chroma: neutral; every AC zero) and the
# coefficients are Huffman-encoded again with tables made for them (Annex K.2). No block
# outside the masks changes a coefficient, so nothing else is recompressed. Every read is
# checked against the stream; the output buffer is sized for the worst case of each block.

from libc.stdlib cimport abs as c_abs
from libc.stdint cimport int16_t, uint64_t

cdef enum:
    S_JPEG_OK = 0
    S_JPEG_UNSUPPORTED = 1      # not sequential DCT of 8 or 12 bits with Huffman, or several scans
    S_JPEG_CORRUPT = 2          # a marker segment or the entropy-coded data cannot be read
    S_JPEG_BAD_ARGS = 3
    S_JPEG_NO_MEMORY = 4
    S_JPEG_SIZE = 5             # the frame header's size is not Rows x Columns

JPEG_OK = S_JPEG_OK
JPEG_UNSUPPORTED = S_JPEG_UNSUPPORTED
JPEG_CORRUPT = S_JPEG_CORRUPT
JPEG_BAD_ARGS = S_JPEG_BAD_ARGS
JPEG_NO_MEMORY = S_JPEG_NO_MEMORY
JPEG_SIZE = S_JPEG_SIZE

cdef enum:
    TARGET_DARK = 0             # DC of a sample 0 (level shift: -1024)
    TARGET_LIGHT = 1            # DC of a sample 255 (MONOCHROME1's black)
    TARGET_NEUTRAL = 2          # DC 0: a chroma sample of 128


cdef enum:
    LOOK = 9                    # bits of the decoding lookup table
    LOOK_SIZE = 512

cdef struct Huff:
    int present
    uint8_t bits[17]
    uint8_t vals[256]
    int32_t mincode[17]
    int32_t maxcode[18]
    int32_t valptr[17]
    uint16_t look[LOOK_SIZE]    # the next LOOK bits -> code length << 8 | symbol; 0: longer


cdef struct Comp:
    int id
    int h
    int v
    int tq
    int td
    int ta
    int64_t bw                  # blocks across and down, as coded
    int64_t bh
    int16_t* coef               # 64 per block, zigzag order


cdef struct BitReader:
    const uint8_t* data
    int64_t pos
    int64_t end
    uint64_t buf
    int cnt
    int marker                  # a marker met: zeros are read from here on


cdef inline void br_fill(BitReader* r) noexcept nogil:
    cdef uint8_t b
    while r.cnt <= 56:
        if r.marker or r.pos >= r.end:
            b = 0
            r.marker = 1
        else:
            b = r.data[r.pos]
            if b == 0xFF:
                if r.pos + 1 < r.end and r.data[r.pos + 1] == 0x00:
                    r.pos += 2
                else:
                    r.marker = 1
                    b = 0
            else:
                r.pos += 1
        r.buf |= (<uint64_t>b) << (56 - r.cnt)
        r.cnt += 8


cdef inline int br_bits(BitReader* r, int n) noexcept nogil:
    cdef int v
    if n == 0:
        return 0
    if r.cnt < n:
        br_fill(r)
    v = <int>(r.buf >> (64 - n))
    r.buf <<= n
    r.cnt -= n
    return v


cdef inline int huff_decode(BitReader* r, Huff* t) noexcept nogil:
    """A symbol (F.2.2.3, codes of up to LOOK bits through the lookup table), or -1 for a code
    no table holds."""
    cdef uint16_t e
    if r.cnt < LOOK:
        br_fill(r)
    e = t.look[r.buf >> (64 - LOOK)]
    if e:
        r.buf <<= e >> 8
        r.cnt -= e >> 8
        return e & 0xFF
    cdef int code = br_bits(r, 1), i = 1
    while i <= 16 and code > t.maxcode[i]:
        code = (code << 1) | br_bits(r, 1)
        i += 1
    if i > 16:
        return -1
    code = t.valptr[i] + code - t.mincode[i]
    if code < 0 or code > 255:
        return -1
    return t.vals[code]


cdef inline int extend(int v, int s) noexcept nogil:
    if s == 0:
        return 0
    if v < (1 << (s - 1)):
        return v - (1 << s) + 1
    return v


cdef int huff_prepare(Huff* t) noexcept nogil:
    """mincode/maxcode/valptr from BITS (F.2.2.3, C.2); 0 when the table is valid."""
    cdef int i, j, n, k = 0, code = 0
    for i in range(1, 17):
        t.valptr[i] = k
        t.mincode[i] = code
        code += t.bits[i]
        k += t.bits[i]
        t.maxcode[i] = code - 1 if t.bits[i] else -1
        if code > (1 << i):
            return 1
        code <<= 1
    t.maxcode[17] = 0x7FFFFFFF
    if k > 256:
        return 1
    memset(t.look, 0, sizeof(t.look))
    k = 0
    code = 0
    for i in range(1, LOOK + 1):
        for j in range(t.bits[i]):
            for n in range(code << (LOOK - i), (code + 1) << (LOOK - i)):
                t.look[n] = <uint16_t>((i << 8) | t.vals[k])
            code += 1
            k += 1
        code <<= 1
    return 0


cdef int decode_scan(const uint8_t* data, int64_t start, int64_t end, Comp* comps, int ncomp,
                     Huff* dc, Huff* ac, int64_t mcux, int64_t mcuy, int restart, int precision,
                     int64_t* stop) noexcept nogil:
    """The scan's coefficients into comps[].coef; stop: the first byte after the entropy data."""
    cdef BitReader r
    cdef int64_t mcu, total = mcux * mcuy, mx, my, bx, by
    cdef int c, hv, vv, k, s, rs, expected = 0
    cdef int pred[4]
    cdef int16_t* block
    r.data = data
    r.pos = start
    r.end = end
    r.buf = 0
    r.cnt = 0
    r.marker = 0
    for c in range(4):
        pred[c] = 0
    for mcu in range(total):
        if restart and mcu and mcu % restart == 0:
            r.buf = 0
            r.cnt = 0
            r.pos = next_marker(data, r.pos, end)
            if not (r.pos + 1 < end and data[r.pos] == 0xFF and data[r.pos + 1] == 0xD0 + expected):
                return S_JPEG_CORRUPT
            r.pos += 2
            r.marker = 0
            expected = (expected + 1) & 7
            for c in range(4):
                pred[c] = 0
        my = mcu // mcux
        mx = mcu % mcux
        for c in range(ncomp):
            for vv in range(comps[c].v if ncomp > 1 else 1):
                for hv in range(comps[c].h if ncomp > 1 else 1):
                    if ncomp > 1:
                        by = my * comps[c].v + vv
                        bx = mx * comps[c].h + hv
                    else:
                        by = my
                        bx = mx
                    block = comps[c].coef + 64 * (by * comps[c].bw + bx)
                    s = huff_decode(&r, &dc[comps[c].td])
                    if s < 0 or s > precision + 3:      # F.1.2.1: DC categories to P + 3
                        return S_JPEG_CORRUPT
                    pred[c] += extend(br_bits(&r, s), s)
                    block[0] = <int16_t>pred[c]
                    k = 1
                    while k < 64:
                        rs = huff_decode(&r, &ac[comps[c].ta])
                        if rs < 0:
                            return S_JPEG_CORRUPT
                        s = rs & 15
                        if s == 0:
                            if rs != 0xF0:
                                break
                            k += 16
                            continue
                        k += rs >> 4
                        if k > 63 or s > precision + 2:
                            return S_JPEG_CORRUPT
                        block[k] = <int16_t>extend(br_bits(&r, s), s)
                        k += 1
    stop[0] = next_marker(data, r.pos, end)     # the entropy data ends at a marker
    return S_JPEG_OK


cdef int64_t next_marker(const uint8_t* data, int64_t pos, int64_t end) noexcept nogil:
    """Where the next marker is from pos (a byte FF not followed by a stuffed 00), or end."""
    while pos + 1 < end:
        if data[pos] == 0xFF and data[pos + 1] != 0x00:
            return pos
        pos += 1
    return end


cdef extern from *:
    int __builtin_clz(unsigned int) nogil


cdef inline int bit_length(int v) noexcept nogil:
    """The bits of |v| (the SSSS category of F.1.2.1), 0 for 0."""
    if v == 0:
        return 0
    return 32 - __builtin_clz(<unsigned int>c_abs(v))


cdef void count_block(const int16_t* block, int* pred, int64_t* dcf, int64_t* acf) noexcept nogil:
    cdef int k, r = 0
    dcf[bit_length(block[0] - pred[0])] += 1
    pred[0] = block[0]
    for k in range(1, 64):
        if block[k] == 0:
            r += 1
            continue
        while r > 15:
            acf[0xF0] += 1
            r -= 16
        acf[(r << 4) | bit_length(block[k])] += 1
        r = 0
    if r:
        acf[0] += 1


cdef void make_table(const int64_t* freq_in, uint8_t* bits, uint8_t* vals) noexcept nogil:
    """BITS and HUFFVAL of an optimal code for the counts (Annex K.2: code lengths of at most 16,
    no code of all 1 bits, through a reserved symbol 256)."""
    cdef int64_t freq[257]
    cdef int codesize[257]
    cdef int others[257]
    cdef int counts[258]
    cdef int i, j, c1, c2, k, n
    cdef int64_t v
    for i in range(256):
        freq[i] = freq_in[i]
    freq[256] = 1
    for i in range(257):
        codesize[i] = 0
        others[i] = -1
    while True:
        c1 = -1
        v = 0
        for i in range(257):            # the least count; ties: the larger symbol (K.2)
            if freq[i] and (c1 < 0 or freq[i] <= v):
                v = freq[i]
                c1 = i
        c2 = -1
        for i in range(257):
            if freq[i] and i != c1 and (c2 < 0 or freq[i] <= v):
                v = freq[i]
                c2 = i
        if c2 < 0:
            break
        freq[c1] += freq[c2]
        freq[c2] = 0
        codesize[c1] += 1
        while others[c1] >= 0:
            c1 = others[c1]
            codesize[c1] += 1
        others[c1] = c2
        codesize[c2] += 1
        while others[c2] >= 0:
            c2 = others[c2]
            codesize[c2] += 1
    for i in range(258):
        counts[i] = 0
    for i in range(257):
        if codesize[i]:
            counts[codesize[i]] += 1
    i = 257
    while i > 16:                       # K.3: no code longer than 16 bits
        while counts[i] > 0:
            j = i - 2
            while counts[j] == 0:
                j -= 1
            counts[i] -= 2
            counts[i - 1] += 1
            counts[j + 1] += 2
            counts[j] -= 1
        i -= 1
    i = 16
    while counts[i] == 0:
        i -= 1
    counts[i] -= 1                      # the reserved symbol's code
    for i in range(17):
        bits[i] = <uint8_t>(counts[i] if i else 0)
    n = 0
    for k in range(1, 258):             # K.4: by K.2's code length (before K.3), then value
        for i in range(256):
            if codesize[i] == k:
                vals[n] = <uint8_t>i
                n += 1


cdef void code_table(const uint8_t* bits, const uint8_t* vals, uint16_t* ehufco,
                     uint8_t* ehufsi) noexcept nogil:
    """Each symbol's code and its length (C.2)."""
    cdef int i, j, k = 0, code = 0
    for i in range(256):
        ehufsi[i] = 0
        ehufco[i] = 0
    for i in range(1, 17):
        for j in range(bits[i]):
            ehufco[vals[k]] = <uint16_t>code
            ehufsi[vals[k]] = <uint8_t>i
            code += 1
            k += 1
        code <<= 1


cdef struct BitWriter:
    uint8_t* out
    int64_t pos
    uint64_t buf
    int cnt


cdef inline void bw_put(BitWriter* w, uint32_t code, int size) noexcept nogil:
    cdef uint8_t b
    if size == 0:
        return
    w.buf = (w.buf << size) | (code & ((1u << size) - 1))
    w.cnt += size
    while w.cnt >= 8:
        b = <uint8_t>((w.buf >> (w.cnt - 8)) & 0xFF)
        w.out[w.pos] = b
        w.pos += 1
        if b == 0xFF:
            w.out[w.pos] = 0
            w.pos += 1
        w.cnt -= 8


cdef inline void bw_flush(BitWriter* w) noexcept nogil:
    """Pad the last byte with 1 bits (F.1.2.3)."""
    if w.cnt:
        bw_put(w, 0x7F, 8 - w.cnt)
    w.buf = 0


cdef void encode_block(BitWriter* w, const int16_t* block, int* pred, const uint16_t* dcco,
                       const uint8_t* dcsi, const uint16_t* acco, const uint8_t* acsi) noexcept nogil:
    cdef int k, r = 0, diff = block[0] - pred[0], n
    pred[0] = block[0]
    n = bit_length(diff)
    bw_put(w, dcco[n], dcsi[n])
    bw_put(w, <uint32_t>(diff if diff >= 0 else diff - 1), n)
    for k in range(1, 64):
        if block[k] == 0:
            r += 1
            continue
        while r > 15:
            bw_put(w, acco[0xF0], acsi[0xF0])
            r -= 16
        n = bit_length(block[k])
        bw_put(w, acco[(r << 4) | n], acsi[(r << 4) | n])
        bw_put(w, <uint32_t>(block[k] if block[k] >= 0 else block[k] - 1), n)
        r = 0
    if r:
        bw_put(w, acco[0], acsi[0])


cdef inline int _u16(const uint8_t[::1] d, int64_t p) noexcept nogil:
    return (d[p] << 8) | d[p + 1]


def jpeg_mask_frame(const uint8_t[::1] data, int64_t rows, int64_t columns,
                    const int64_t[::1] rects, bint inverted, bint coefficients=False):
    """One JPEG Baseline frame of rows x columns (its header must say so) with rectangles
    (x0, y0, x1, y1, within the image) blacked out in the DCT domain, grown to whole MCUs:
    (status, new frame bytes, MCU width, MCU height).
    inverted: MONOCHROME1 (black is the lightest sample). coefficients: instead of the frame,
    each component's quantized coefficients as bytes (int16, 64 a block, zigzag order, the
    blocks row by row, bw blocks a row), for tests: (status, [(bw, bh, bytes)], w, h)."""
    cdef int64_t size = data.shape[0], pos, seg, stop_at, i, j, n, p, sos_start = -1
    cdef int64_t sos_end = -1, scan_stop = 0, mcux, mcuy, x, y, bx0, bx1, by0, by1, b, nblocks = 0
    cdef int64_t width = 0, height = 0, mw, mh
    cdef int marker, ncomp = 0, nscan = 0, restart = 0, hmax = 1, vmax = 1, c, k, tc, th
    cdef int transform = -1, jfif = 0, status, target, q, precision = 8
    cdef int pred[4]
    cdef int16_t dcvalue[4]
    cdef Comp comps[4]
    cdef Huff dc[4]
    cdef Huff ac[4]
    cdef uint16_t qt[4][64]
    cdef int64_t dcf[4][256]
    cdef int64_t acf[4][256]
    cdef uint8_t tbits[8][17]
    cdef uint8_t tvals[8][256]
    cdef uint16_t ehufco[8][256]
    cdef uint8_t ehufsi[8][256]
    cdef int used_dc[4]
    cdef int used_ac[4]
    cdef BitWriter w
    cdef uint8_t* out = NULL
    cdef int16_t* block
    cdef Huff* table
    cdef int hv, vv, ntables
    keep = []                           # marker segments copied as they are: (start, end)
    if rects.shape[0] % 4:
        return S_JPEG_BAD_ARGS, None, 0, 0
    memset(comps, 0, sizeof(comps))
    memset(dc, 0, sizeof(dc))
    memset(ac, 0, sizeof(ac))
    memset(qt, 0, sizeof(qt))            # a table no DQT defined: 0, refused where it is used
    for c in range(4):
        used_dc[c] = 0
        used_ac[c] = 0
    if size < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return S_JPEG_CORRUPT, None, 0, 0
    pos = 2
    try:
        while True:
            while pos < size and data[pos] != 0xFF:
                pos += 1            # tolerate stray bytes between segments
            while pos < size and data[pos] == 0xFF:
                pos += 1
            if pos >= size:
                return S_JPEG_CORRUPT, None, 0, 0
            marker = data[pos]
            pos += 1
            if marker == 0xD9:
                break
            if marker == 0xD8 or 0xD0 <= marker <= 0xD7 or marker == 0x01:
                return S_JPEG_CORRUPT, None, 0, 0
            if pos + 2 > size:
                return S_JPEG_CORRUPT, None, 0, 0
            seg = _u16(data, pos)
            if seg < 2 or pos + seg > size:
                return S_JPEG_CORRUPT, None, 0, 0
            stop_at = pos + seg
            if marker in (0xC0, 0xC1):
                if ncomp or seg < 8:
                    return S_JPEG_CORRUPT, None, 0, 0
                precision = data[pos + 2]
                if precision != 8 and not (marker == 0xC1 and precision == 12):
                    return S_JPEG_UNSUPPORTED, None, 0, 0
                height = _u16(data, pos + 3)
                width = _u16(data, pos + 5)
                ncomp = data[pos + 7]
                if ncomp < 1 or ncomp > 4 or seg != 8 + 3 * ncomp or width == 0 or height == 0:
                    return S_JPEG_CORRUPT, None, 0, 0
                if ncomp not in (1, 3):         # CMYK/YCCK or two components: no black known
                    return S_JPEG_UNSUPPORTED, None, 0, 0
                for c in range(ncomp):
                    comps[c].id = data[pos + 8 + 3 * c]
                    comps[c].h = data[pos + 9 + 3 * c] >> 4
                    comps[c].v = data[pos + 9 + 3 * c] & 15
                    comps[c].tq = data[pos + 10 + 3 * c]
                    if not (1 <= comps[c].h <= 4 and 1 <= comps[c].v <= 4) or comps[c].tq > 3:
                        return S_JPEG_CORRUPT, None, 0, 0
                    hmax = max(hmax, comps[c].h)
                    vmax = max(vmax, comps[c].v)
                keep.append((pos - 2, stop_at))
            elif 0xC2 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return S_JPEG_UNSUPPORTED, None, 0, 0     # progressive, lossless, hierarchical
            elif marker == 0xC4:
                p = pos + 2
                while p < stop_at:
                    if p + 17 > stop_at:
                        return S_JPEG_CORRUPT, None, 0, 0
                    tc = data[p] >> 4
                    th = data[p] & 15
                    if tc > 1 or th > 3:
                        return S_JPEG_CORRUPT, None, 0, 0
                    table = &dc[th] if tc == 0 else &ac[th]
                    n = 0
                    table.bits[0] = 0
                    for i in range(1, 17):
                        table.bits[i] = data[p + i]
                        n += data[p + i]
                    if n > 256 or p + 17 + n > stop_at:
                        return S_JPEG_CORRUPT, None, 0, 0
                    for i in range(n):
                        table.vals[i] = data[p + 17 + i]
                    if huff_prepare(table):
                        return S_JPEG_CORRUPT, None, 0, 0
                    table.present = 1
                    p += 17 + n
            elif marker == 0xDB:
                p = pos + 2
                while p < stop_at:
                    k = data[p] >> 4
                    th = data[p] & 15
                    if th > 3 or k > 1 or p + 1 + 64 * (k + 1) > stop_at:
                        return S_JPEG_CORRUPT, None, 0, 0
                    for i in range(64):
                        qt[th][i] = _u16(data, p + 1 + 2 * i) if k else data[p + 1 + i]
                    p += 1 + 64 * (k + 1)
                keep.append((pos - 2, stop_at))
            elif marker == 0xDD:
                if seg != 4:
                    return S_JPEG_CORRUPT, None, 0, 0
                restart = _u16(data, pos + 2)
                keep.append((pos - 2, stop_at))
            elif marker == 0xDA:
                nscan += 1
                if nscan > 1 or not ncomp:
                    return S_JPEG_UNSUPPORTED, None, 0, 0
                if seg < 3:
                    return S_JPEG_CORRUPT, None, 0, 0
                if data[pos + 2] != ncomp or seg != 6 + 2 * ncomp:
                    return S_JPEG_UNSUPPORTED, None, 0, 0     # a scan of some components only
                for c in range(ncomp):
                    if data[pos + 3 + 2 * c] != comps[c].id:
                        return S_JPEG_UNSUPPORTED, None, 0, 0
                    comps[c].td = data[pos + 4 + 2 * c] >> 4
                    comps[c].ta = data[pos + 4 + 2 * c] & 15
                    if comps[c].td > 3 or comps[c].ta > 3 or not dc[comps[c].td].present \
                            or not ac[comps[c].ta].present:
                        return S_JPEG_CORRUPT, None, 0, 0
                    used_dc[comps[c].td] = 1
                    used_ac[comps[c].ta] = 1
                # Ss, Se, Ah, Al: a sequential frame's scan is 0, 63, 0, 0; others are read
                # as that, as libjpeg reads them (some encoders write Se = 0)
                sos_start = pos - 2
                sos_end = stop_at
                if ncomp > 1:
                    mw, mh = 8 * hmax, 8 * vmax
                    mcux = (width + mw - 1) // mw
                    mcuy = (height + mh - 1) // mh
                    for c in range(ncomp):
                        comps[c].bw = mcux * comps[c].h
                        comps[c].bh = mcuy * comps[c].v
                else:
                    mw, mh = 8, 8
                    mcux = (width * comps[0].h // hmax + 7) // 8
                    mcuy = (height * comps[0].v // vmax + 7) // 8
                    comps[0].bw, comps[0].bh = mcux, mcuy
                if width != columns or height != rows:
                    return S_JPEG_SIZE, None, 0, 0
                for c in range(ncomp):
                    nblocks += comps[c].bw * comps[c].bh
                if nblocks > 4 * size + 64:     # a block takes 2 bits at least: a cut stream
                    return S_JPEG_CORRUPT, None, 0, 0
                for c in range(ncomp):
                    comps[c].coef = <int16_t*>calloc(comps[c].bw * comps[c].bh * 64, sizeof(int16_t))
                    if comps[c].coef == NULL:
                        return S_JPEG_NO_MEMORY, None, 0, 0
                with nogil:
                    status = decode_scan(&data[0], stop_at, size, comps, ncomp, dc, ac, mcux,
                                         mcuy, restart, precision, &scan_stop)
                if status:
                    return status, None, 0, 0
                pos = scan_stop
                continue
            elif marker == 0xEE and seg >= 14 and bytes(data[pos + 2:pos + 7]) == b"Adobe":
                transform = data[pos + 13]
                keep.append((pos - 2, stop_at))
            elif marker == 0xE0 and seg >= 7 and bytes(data[pos + 2:pos + 7]) == b"JFIF\0":
                jfif = 1
                keep.append((pos - 2, stop_at))
            elif 0xE0 <= marker <= 0xEF or marker == 0xFE:
                keep.append((pos - 2, stop_at))
            else:
                return S_JPEG_UNSUPPORTED, None, 0, 0     # DNL, DHP, EXP, arithmetic coding
            pos = stop_at
        if sos_start < 0:
            return S_JPEG_CORRUPT, None, 0, 0
        if coefficients:
            return S_JPEG_OK, [(comps[c].bw, comps[c].bh,
                                PyBytes_FromStringAndSize(<char*>comps[c].coef,
                                                          comps[c].bw * comps[c].bh * 128))
                               for c in range(ncomp)], mw, mh
        # black, per component: libjpeg's reading of the colour transform (Adobe, JFIF, ids)
        ycc = ncomp == 3 and (transform == 1 if transform >= 0 else
                              (jfif or not (comps[0].id == 82 and comps[1].id == 71
                                            and comps[2].id == 66)))
        for c in range(ncomp):
            q = qt[comps[c].tq][0]
            if q == 0:
                return S_JPEG_CORRUPT, None, 0, 0
            target = TARGET_NEUTRAL if ycc and c > 0 else (TARGET_LIGHT if inverted and
                                                           ncomp == 1 else TARGET_DARK)
            # the DC of a flat block of sample v is 8 (v - 2^(P-1)) (level shift, A.3.1)
            if target == TARGET_DARK:
                dcvalue[c] = <int16_t>(-(((8 << (precision - 1)) + q - 1) // q))
            elif target == TARGET_LIGHT:
                dcvalue[c] = <int16_t>(((8 << (precision - 1)) - 8 + q - 1) // q)
            else:
                dcvalue[c] = 0
        for k in range(rects.shape[0] // 4):
            if not (0 <= rects[4 * k] < rects[4 * k + 2] <= width
                    and 0 <= rects[4 * k + 1] < rects[4 * k + 3] <= height):
                return S_JPEG_BAD_ARGS, None, 0, 0
            for c in range(ncomp):
                hv = comps[c].h if ncomp > 1 else 1
                vv = comps[c].v if ncomp > 1 else 1
                bx0 = rects[4 * k] // mw * hv
                by0 = rects[4 * k + 1] // mh * vv
                bx1 = min((rects[4 * k + 2] + mw - 1) // mw * hv, comps[c].bw)
                by1 = min((rects[4 * k + 3] + mh - 1) // mh * vv, comps[c].bh)
                for y in range(by0, by1):
                    for x in range(bx0, bx1):
                        block = comps[c].coef + 64 * (y * comps[c].bw + x)
                        memset(block, 0, 128)
                        block[0] = dcvalue[c]
        with nogil:
            for c in range(4):
                for i in range(256):
                    dcf[c][i] = 0
                    acf[c][i] = 0
            for c in range(4):
                pred[c] = 0
            _each_block(comps, ncomp, mcux, mcuy, restart, pred, &dcf[0][0], &acf[0][0], NULL,
                        NULL, NULL)
            for c in range(4):
                if used_dc[c]:
                    make_table(dcf[c], tbits[c], tvals[c])
                    code_table(tbits[c], tvals[c], ehufco[c], ehufsi[c])
                if used_ac[c]:
                    make_table(acf[c], tbits[4 + c], tvals[4 + c])
                    code_table(tbits[4 + c], tvals[4 + c], ehufco[4 + c], ehufsi[4 + c])
        head = bytearray(b"\xff\xd8")
        for i, j in keep:
            head += data[i:j]
        tables = bytearray()
        for c in range(8):
            if (used_dc[c] if c < 4 else used_ac[c - 4]):
                tables.append(((c >= 4) << 4) | (c & 3))
                ntables = 0
                for i in range(1, 17):
                    tables.append(tbits[c][i])
                    ntables += tbits[c][i]
                for i in range(ntables):
                    tables.append(tvals[c][i])
        head += b"\xff\xc4" + (len(tables) + 2).to_bytes(2, "big") + tables
        head += data[sos_start:sos_end]
        n = len(head) + nblocks * 432 + (nblocks // max(restart, 1) + 1) * 4 + 16
        out = <uint8_t*>malloc(n)
        if out == NULL:
            return S_JPEG_NO_MEMORY, None, 0, 0
        for i in range(len(head)):
            out[i] = head[i]
        w.out = out
        w.pos = len(head)
        w.buf = 0
        w.cnt = 0
        with nogil:
            for c in range(4):
                pred[c] = 0
            _each_block(comps, ncomp, mcux, mcuy, restart, pred, NULL, NULL, &w, &ehufco[0][0],
                        &ehufsi[0][0])
            bw_flush(&w)
            w.out[w.pos] = 0xFF
            w.out[w.pos + 1] = 0xD9
            w.pos += 2
        return S_JPEG_OK, PyBytes_FromStringAndSize(<char*>out, w.pos), mw, mh
    finally:
        free(out)
        for c in range(4):
            free(comps[c].coef)


cdef void _each_block(Comp* comps, int ncomp, int64_t mcux, int64_t mcuy, int restart, int* pred,
                      int64_t* dcf, int64_t* acf, BitWriter* w, uint16_t* co,
                      uint8_t* si) noexcept nogil:
    """Every block in scan order: counted (dcf, acf) or written (w), DC predictions reset and,
    when writing, RST markers at each restart interval."""
    cdef int64_t mcu, total = mcux * mcuy, mx, my, bx, by
    cdef int c, hv, vv, expected = 0
    cdef const int16_t* block
    for mcu in range(total):
        if restart and mcu and mcu % restart == 0:
            for c in range(4):
                pred[c] = 0
            if w != NULL:
                bw_flush(w)
                w.out[w.pos] = 0xFF
                w.out[w.pos + 1] = <uint8_t>(0xD0 + expected)
                w.pos += 2
            expected = (expected + 1) & 7
        my = mcu // mcux
        mx = mcu % mcux
        for c in range(ncomp):
            for vv in range(comps[c].v if ncomp > 1 else 1):
                for hv in range(comps[c].h if ncomp > 1 else 1):
                    if ncomp > 1:
                        by = my * comps[c].v + vv
                        bx = mx * comps[c].h + hv
                    else:
                        by = my
                        bx = mx
                    block = comps[c].coef + 64 * (by * comps[c].bw + bx)
                    if w == NULL:
                        count_block(block, &pred[c], dcf + 256 * comps[c].td,
                                    acf + 256 * comps[c].ta)
                    else:
                        encode_block(w, block, &pred[c], co + 256 * comps[c].td,
                                     si + 256 * comps[c].td, co + 256 * (4 + comps[c].ta),
                                     si + 256 * (4 + comps[c].ta))
