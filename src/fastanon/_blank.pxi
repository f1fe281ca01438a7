# Included by _core.pyx (which sets boundscheck=False, wraparound=False).
# Byte loops only: fill rectangles of native Pixel Data in place, one row run at a time.
# Bounds: masks.py (`_Fill.run`) computes every start from the pixel module it has checked against
# the Pixel Data length; blank()/blank_bits() check the extent once more against the buffer and
# return S_BLANK_OUT_OF_BOUNDS instead of writing, so no call can write outside buf.

from libc.string cimport memset, memcpy

cdef enum:
    S_BLANK_OK = 0
    S_BLANK_OUT_OF_BOUNDS = 1
    S_BLANK_BAD_ARGS = 2

BLANK_OK = S_BLANK_OK
BLANK_OUT_OF_BOUNDS = S_BLANK_OUT_OF_BOUNDS
BLANK_BAD_ARGS = S_BLANK_BAD_ARGS


cdef void fill_run(uint8_t* dst, int64_t n, const uint8_t* pattern, int64_t plen) noexcept nogil:
    """n bytes at dst become pattern repeated (n is a multiple of plen)."""
    cdef int64_t k, done
    cdef bint uniform = True
    for k in range(1, plen):
        if pattern[k] != pattern[0]:
            uniform = False
            break
    if uniform:
        memset(dst, pattern[0], n)
        return
    memcpy(dst, pattern, plen)
    done = plen
    while done < n:                         # doubling copies of what is already written
        k = done if done <= n - done else n - done
        memcpy(dst + done, dst, k)
        done += k


cdef void fill_run_swapped(uint8_t* base, int64_t start, int64_t n, const uint8_t* pattern,
                           int64_t plen) noexcept nogil:
    """As fill_run for bytes of 16-bit words stored big endian (8-bit data in OW, PS3.5 §8.2):
    logical byte j of the value lives at byte j ^ 1."""
    cdef int64_t j
    for j in range(n):
        base[(start + j) ^ 1] = pattern[j % plen]


cdef void fill_rows(uint8_t* base, const int64_t* starts, int64_t nstarts, int64_t stride,
                    int64_t nrows, const uint8_t* pattern, int64_t plen, int64_t repeat,
                    bint swap) noexcept nogil:
    cdef int64_t s, r, pos, n = plen * repeat
    for s in range(nstarts):
        for r in range(nrows):
            pos = starts[s] + r * stride
            if swap:
                fill_run_swapped(base, pos, n, pattern, plen)
            else:
                fill_run(base + pos, n, pattern, plen)


cdef void fill_bit_rows(uint8_t* base, const int64_t* starts, int64_t nstarts, int64_t stride,
                        int64_t nrows, int64_t nbits, bint value) noexcept nogil:
    """Bit-packed pixels (Bits Allocated 1): bit p of the value is bit p % 8 of byte p // 8,
    the first pixel in the least significant bit (PS3.5 §8.1.1, Annex D)."""
    cdef int64_t s, r, p, end, whole
    cdef uint8_t bit
    for s in range(nstarts):
        for r in range(nrows):
            p = starts[s] + r * stride
            end = p + nbits
            while p < end and (p & 7):
                bit = <uint8_t>(1 << (p & 7))
                base[p >> 3] = (base[p >> 3] | bit) if value else (base[p >> 3] & ~bit)
                p += 1
            whole = (end - p) >> 3
            if whole > 0:
                memset(base + (p >> 3), 0xFF if value else 0, whole)
                p += whole << 3
            while p < end:
                bit = <uint8_t>(1 << (p & 7))
                base[p >> 3] = (base[p >> 3] | bit) if value else (base[p >> 3] & ~bit)
                p += 1


def blank(uint8_t[::1] buf, int64_t base, const int64_t[::1] starts, int64_t stride, int64_t nrows,
          const uint8_t[::1] pattern, int64_t repeat, bint swap=False):
    """Fill, from each start (a byte offset from base), nrows rows stride bytes apart, each with
    pattern repeated `repeat` times. swap: 8-bit samples in big endian OW words. Returns a status."""
    cdef int64_t i, lo, hi, plen = pattern.shape[0], size = buf.shape[0], n = starts.shape[0]
    if n == 0 or nrows <= 0 or repeat <= 0:
        return S_BLANK_OK
    if plen == 0 or stride < 0 or base < 0:
        return S_BLANK_BAD_ARGS
    lo = starts[0]
    hi = starts[0]
    for i in range(n):
        lo = starts[i] if starts[i] < lo else lo
        hi = starts[i] if starts[i] > hi else hi
    hi = hi + (nrows - 1) * stride + plen * repeat       # bytes after base
    if swap:
        hi = ((hi - 1) | 1) + 1                             # j ^ 1 reaches the next even offset
    hi += base
    if lo < 0 or hi > size:
        return S_BLANK_OUT_OF_BOUNDS
    with nogil:
        fill_rows(&buf[0] + base, &starts[0], n, stride, nrows, &pattern[0], plen, repeat, swap)
    return S_BLANK_OK


def blank_bits(uint8_t[::1] buf, int64_t base, const int64_t[::1] starts, int64_t stride,
               int64_t nrows, int64_t nbits, bint value):
    """As blank() for bit-packed pixels: starts and stride count bits from byte base; each row
    run of nbits bits becomes value. Returns a status."""
    cdef int64_t i, lo, hi, size = buf.shape[0], n = starts.shape[0]
    if n == 0 or nrows <= 0 or nbits <= 0:
        return S_BLANK_OK
    if stride < 0 or base < 0:
        return S_BLANK_BAD_ARGS
    lo = starts[0]
    hi = starts[0]
    for i in range(n):
        lo = starts[i] if starts[i] < lo else lo
        hi = starts[i] if starts[i] > hi else hi
    hi = hi + (nrows - 1) * stride + nbits                  # bits after base
    if lo < 0 or base + ((hi + 7) >> 3) > size:
        return S_BLANK_OUT_OF_BOUNDS
    with nogil:
        fill_bit_rows(&buf[0] + base, &starts[0], n, stride, nrows, nbits, value)
    return S_BLANK_OK
