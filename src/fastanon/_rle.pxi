# Included by _core.pyx (which sets boundscheck=False, wraparound=False).
# RLE Lossless frames (PS3.5 Annex G) masked without leaving the transfer syntax: each byte
# segment of a frame is decoded to its plane (rows x columns bytes), the masks' rectangles set
# to that plane's byte of black, and the plane encoded again, row by row (G.3.1: no run crosses
# a row). Everything outside the rectangles decodes to the bytes it held. Bounds: every read is
# checked against the frame, every write against the plane or the output's worst-case size.

cdef enum:
    S_RLE_OK = 0
    S_RLE_SHORT_HEADER = 1      # fewer than the 64 bytes of the header
    S_RLE_SEGMENTS = 2          # the header's segment count is not what the pixel module needs
    S_RLE_OFFSETS = 3           # a segment offset before the header, past the frame or backwards
    S_RLE_SHORT_SEGMENT = 4     # a segment decodes to fewer bytes than its plane
    S_RLE_BAD_ARGS = 5
    S_RLE_NO_MEMORY = 6

RLE_OK = S_RLE_OK
RLE_SHORT_HEADER = S_RLE_SHORT_HEADER
RLE_SEGMENTS = S_RLE_SEGMENTS
RLE_OFFSETS = S_RLE_OFFSETS
RLE_SHORT_SEGMENT = S_RLE_SHORT_SEGMENT
RLE_BAD_ARGS = S_RLE_BAD_ARGS
RLE_NO_MEMORY = S_RLE_NO_MEMORY


cdef inline uint32_t _le32(const uint8_t* p) noexcept nogil:
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline void _put_le32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = (v >> 24) & 0xFF


cdef int64_t rle_unpack(const uint8_t* src, int64_t n, uint8_t* plane, int64_t size) noexcept nogil:
    """PackBits: decode src[0:n] into plane until size bytes; returns the bytes produced (a
    segment may end early: the caller refuses it; bytes past size, padding, are ignored)."""
    cdef int64_t i = 0, out = 0, count
    cdef int c
    while i < n and out < size:
        c = <int>src[i]
        i += 1
        if c < 128:                         # a literal run of c + 1 bytes
            count = c + 1
            if count > n - i:
                count = n - i
            if count > size - out:
                count = size - out
            memcpy(plane + out, src + i, count)
            i += c + 1
            out += count
        elif c > 128:                       # one byte, 257 - c times
            if i >= n:
                break
            count = 257 - c
            if count > size - out:
                count = size - out
            memset(plane + out, src[i], count)
            i += 1
            out += count
        # 128: no operation (G.3.2)
    return out


cdef int64_t rle_pack_row(const uint8_t* row, int64_t n, uint8_t* out) noexcept nogil:
    """PackBits of one row, runs at most 128 bytes long: a run of two or more equal bytes where
    a run starts is replicated; a literal run goes on until three equal bytes (or 128) begin, so
    that no piece is larger than its bytes except a literal's one header byte. Returns the bytes
    written: at most n + n // 128 + 1."""
    cdef int64_t i = 0, j, k, w = 0
    while i < n:
        j = i + 1
        while j < n and j - i < 128 and row[j] == row[i]:
            j += 1
        if j - i >= 2:
            out[w] = <uint8_t>(257 - (j - i))
            out[w + 1] = row[i]
            w += 2
            i = j
            continue
        k = i + 1                           # a literal: up to the next run of three, or 128 bytes
        while k < n and k - i < 128 and not (k + 2 < n and row[k] == row[k + 1] == row[k + 2]):
            k += 1
        out[w] = <uint8_t>(k - i - 1)
        memcpy(out + w + 1, row + i, k - i)
        w += 1 + k - i
        i = k
    return w


def rle_mask_frame(const uint8_t[::1] frame, int64_t rows, int64_t columns, int64_t segments,
                   const int64_t[::1] rects, const uint8_t[::1] black):
    """One RLE frame with rectangles blacked out: (status, the new frame as bytes or None).
    rects: x0, y0, x1, y1 of each rectangle (clipped to the image by the caller); black: the
    byte of black for each segment (sample by sample, most significant byte first, G.2)."""
    cdef int64_t size = frame.shape[0], nrects = rects.shape[0] // 4, plane_size, s, r, k
    cdef int64_t start, stop, x0, y0, x1, y1, produced, w, cap, row_cap
    cdef uint32_t offsets[16]
    cdef uint8_t* plane = NULL
    cdef uint8_t* out = NULL
    cdef int status = S_RLE_OK
    if rows <= 0 or columns <= 0 or segments < 1 or segments > 15 or black.shape[0] != segments \
            or rects.shape[0] % 4:
        return S_RLE_BAD_ARGS, None
    for k in range(nrects):
        x0, y0, x1, y1 = rects[4 * k], rects[4 * k + 1], rects[4 * k + 2], rects[4 * k + 3]
        if x0 < 0 or y0 < 0 or x1 > columns or y1 > rows or x0 >= x1 or y0 >= y1:
            return S_RLE_BAD_ARGS, None
    if size < 64:
        return S_RLE_SHORT_HEADER, None
    if _le32(&frame[0]) != <uint32_t>segments:
        return S_RLE_SEGMENTS, None
    for s in range(segments):
        offsets[s] = _le32(&frame[0] + 4 + 4 * s)
    offsets[segments] = <uint32_t>size
    for s in range(segments):
        if offsets[s] < 64 or offsets[s] > offsets[s + 1]:
            return S_RLE_OFFSETS, None
    plane_size = rows * columns
    row_cap = columns + columns // 128 + 2
    cap = 64 + segments * (rows * row_cap + 1)
    plane = <uint8_t*>malloc(plane_size)
    out = <uint8_t*>malloc(cap)
    if plane == NULL or out == NULL:
        free(plane)
        free(out)
        return S_RLE_NO_MEMORY, None
    try:
        with nogil:
            memset(out, 0, 64)
            _put_le32(out, <uint32_t>segments)
            w = 64
            for s in range(segments):
                start = offsets[s]
                stop = offsets[s + 1]
                produced = rle_unpack(&frame[0] + start, stop - start, plane, plane_size)
                if produced < plane_size:
                    status = S_RLE_SHORT_SEGMENT
                    break
                for k in range(nrects):
                    x0 = rects[4 * k]
                    y0 = rects[4 * k + 1]
                    x1 = rects[4 * k + 2]
                    y1 = rects[4 * k + 3]
                    for r in range(y0, y1):
                        memset(plane + r * columns + x0, black[s], x1 - x0)
                _put_le32(out + 4 + 4 * s, <uint32_t>w)
                for r in range(rows):
                    w += rle_pack_row(plane + r * columns, columns, out + w)
                if w & 1:                   # segments of even length (G.5)
                    out[w] = 0
                    w += 1
        if status != S_RLE_OK:
            return status, None
        return S_RLE_OK, PyBytes_FromStringAndSize(<char*>out, w)
    finally:
        free(plane)
        free(out)
