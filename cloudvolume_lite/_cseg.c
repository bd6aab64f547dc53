/* Decode a window of a compressed_segmentation chunk straight into an output array.
 *
 * Why C: the compressed-segmentation package holds the GIL while it decodes and always
 * decodes whole blocks into a new array that must then be copied. This decoder releases the
 * GIL (so two cores decode two chunks at once), visits only the voxels the request needs, and
 * writes them where they belong in the caller's Fortran-order output. Every offset read from
 * the chunk is bounds-checked: a corrupt chunk is an error, never a crash.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static int valid_bits(uint32_t b) {
    return b == 0 || b == 1 || b == 2 || b == 4 || b == 8 || b == 16 || b == 32;
}

/* locate channel c of an nc-channel chunk of nwords words: *ch and *clen, or an error message */
static const char *channel(const uint32_t *w, Py_ssize_t nwords, Py_ssize_t nc, Py_ssize_t c, Py_ssize_t nblocks,
                           const uint32_t **ch, Py_ssize_t *clen) {
    if (nwords < nc) return "chunk shorter than its channel table";
    Py_ssize_t base = w[c], end = (c + 1 < nc) ? (Py_ssize_t)w[c + 1] : nwords;
    if (base < nc || end > nwords || end < base) return "channel offsets out of range";
    *clen = end - base;
    if (*clen < 2 * nblocks) return "channel too short for its block headers";
    *ch = w + base;
    return NULL;
}

/* one value of a block's table (wpv words per value), as the output's item */
static inline void put_value(char *out, Py_ssize_t o, const uint32_t *v, Py_ssize_t wpv) {
    if (wpv == 1) {
        ((uint32_t *)out)[o] = v[0];
    } else {
        uint64_t x;
        memcpy(&x, v, 8); /* the table's two little-endian words are the value's 8 bytes */
        ((uint64_t *)out)[o] = x;
    }
}

/* The rows of a block with index bits. Inlined with constant BITS and WPV (see decode_block), so
 * the compiler turns the shifts and masks into constants and unrolls the row. */
static inline __attribute__((always_inline)) const char *
block_rows(const uint32_t *tab, const uint32_t *vals, const int BITS, const int WPV, Py_ssize_t ntable, int safe,
           const Py_ssize_t *blk, Py_ssize_t x0, Py_ssize_t x1, Py_ssize_t y0, Py_ssize_t y1, Py_ssize_t z0,
           Py_ssize_t z1, char *out, Py_ssize_t o0, Py_ssize_t sy, Py_ssize_t sz) {
    const uint32_t mask = BITS == 32 ? 0xFFFFFFFFu : ((1u << BITS) - 1u);
    Py_ssize_t n = x1 - x0;
    if (BITS <= 8 && blk[0] == 8 && n == 8 && safe) {
        /* whole rows of the usual 8-wide blocks: a row's 8*BITS bits start on a multiple of
           8*BITS, so they come in one load and unpack with constant shifts */
        for (Py_ssize_t z = z0; z < z1; z++)
            for (Py_ssize_t y = y0; y < y1; y++) {
                Py_ssize_t o = o0 + (y - y0) * sy + (z - z0) * sz;
                Py_ssize_t bit = (Py_ssize_t)BITS * 8 * (y + blk[1] * z);
                uint64_t row;
                if (BITS == 8) row = (uint64_t)vals[bit >> 5] | ((uint64_t)vals[(bit >> 5) + 1] << 32);
                else row = vals[bit >> 5] >> (bit & 31);
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++)
                    put_value(out, o + i, tab + (Py_ssize_t)((row >> (i * BITS)) & mask) * WPV, WPV);
            }
        return NULL;
    }
    for (Py_ssize_t z = z0; z < z1; z++)
        for (Py_ssize_t y = y0; y < y1; y++) {
            Py_ssize_t o = o0 + (y - y0) * sy + (z - z0) * sz;
            Py_ssize_t bit = (Py_ssize_t)BITS * (x0 + blk[0] * (y + blk[1] * z));
            for (Py_ssize_t i = 0; i < n; i++, bit += BITS) {
                uint32_t idx = (vals[bit >> 5] >> (bit & 31)) & mask;
                if (!safe && (Py_ssize_t)idx >= ntable) return "lookup index past the block's table";
                put_value(out, o + i, tab + (Py_ssize_t)idx * WPV, WPV);
            }
        }
    return NULL;
}

/* Decode the part [x0,x1) x [y0,y1) x [z0,z1) (block-local) of one block. Its header has been
 * checked; `safe` says every index its bits can hold lies inside its table, so no per-voxel
 * check is needed. `o0` is the output offset of (x0, y0, z0); sy, sz the output's y and z strides. */
static const char *decode_block(const uint32_t *ch, uint32_t bits, Py_ssize_t table, Py_ssize_t values,
                                Py_ssize_t ntable, int safe, Py_ssize_t wpv, const Py_ssize_t *blk,
                                Py_ssize_t x0, Py_ssize_t x1, Py_ssize_t y0, Py_ssize_t y1, Py_ssize_t z0,
                                Py_ssize_t z1, char *out, Py_ssize_t o0, Py_ssize_t sy, Py_ssize_t sz) {
    const uint32_t *tab = ch + table;
    Py_ssize_t n = x1 - x0;
    if (bits == 0) { /* one value: the block is a fill */
        for (Py_ssize_t z = z0; z < z1; z++)
            for (Py_ssize_t y = y0; y < y1; y++) {
                Py_ssize_t o = o0 + (y - y0) * sy + (z - z0) * sz;
                if (wpv == 1) {
                    uint32_t *d = (uint32_t *)out + o;
                    for (Py_ssize_t i = 0; i < n; i++) d[i] = tab[0];
                } else {
                    uint64_t x, *d = (uint64_t *)out + o;
                    memcpy(&x, tab, 8);
                    for (Py_ssize_t i = 0; i < n; i++) d[i] = x;
                }
            }
        return NULL;
    }
    const uint32_t *vals = ch + values;
#define ROWS(B, W) block_rows(tab, vals, B, W, ntable, safe, blk, x0, x1, y0, y1, z0, z1, out, o0, sy, sz)
#define BY_BITS(W)                     \
    switch (bits) {                    \
        case 1: return ROWS(1, W);     \
        case 2: return ROWS(2, W);     \
        case 4: return ROWS(4, W);     \
        case 8: return ROWS(8, W);     \
        case 16: return ROWS(16, W);   \
        default: return ROWS(32, W);   \
    }
    if (wpv == 1) BY_BITS(1)
    BY_BITS(2)
#undef BY_BITS
#undef ROWS
}

/* returns NULL on success, else a static message. Block by block: each header is read and
 * checked once, not once per row of voxels. */
static const char *decode(const uint32_t *w, Py_ssize_t nwords, int itemsize,
                          const Py_ssize_t *shape, Py_ssize_t nc_chunk, const Py_ssize_t *blk,
                          const Py_ssize_t *lo, const Py_ssize_t *hi,
                          Py_ssize_t c0, Py_ssize_t cstep, Py_ssize_t ncout,
                          char *out, const Py_ssize_t *oshape, const Py_ssize_t *dlo) {
    Py_ssize_t gx = (shape[0] + blk[0] - 1) / blk[0], gy = (shape[1] + blk[1] - 1) / blk[1];
    Py_ssize_t gz = (shape[2] + blk[2] - 1) / blk[2];
    Py_ssize_t nblocks = gx * gy * gz;
    Py_ssize_t wpv = itemsize / 4;
    Py_ssize_t bvox = blk[0] * blk[1] * blk[2];
    Py_ssize_t sy = oshape[0], sz = oshape[0] * oshape[1];
    if (lo[0] >= hi[0] || lo[1] >= hi[1] || lo[2] >= hi[2]) ncout = 0; /* an empty window reads nothing */
    for (Py_ssize_t k = 0; k < ncout; k++) {
        Py_ssize_t c = c0 + k * cstep;
        const uint32_t *ch;
        Py_ssize_t clen;
        const char *err = channel(w, nwords, nc_chunk, c, nblocks, &ch, &clen);
        if (err) return err;
        Py_ssize_t ok = dlo[0] + sy * dlo[1] + sz * (dlo[2] + oshape[2] * k); /* output offset of lo */
        for (Py_ssize_t bz = lo[2] / blk[2]; bz * blk[2] < hi[2]; bz++) {
            Py_ssize_t zb = bz * blk[2];
            Py_ssize_t z0 = lo[2] > zb ? lo[2] - zb : 0, z1 = hi[2] - zb < blk[2] ? hi[2] - zb : blk[2];
            for (Py_ssize_t by = lo[1] / blk[1]; by * blk[1] < hi[1]; by++) {
                Py_ssize_t yb = by * blk[1];
                Py_ssize_t y0 = lo[1] > yb ? lo[1] - yb : 0, y1 = hi[1] - yb < blk[1] ? hi[1] - yb : blk[1];
                for (Py_ssize_t bx = lo[0] / blk[0]; bx * blk[0] < hi[0]; bx++) {
                    Py_ssize_t xb = bx * blk[0];
                    Py_ssize_t x0 = lo[0] > xb ? lo[0] - xb : 0, x1 = hi[0] - xb < blk[0] ? hi[0] - xb : blk[0];
                    Py_ssize_t b = bx + gx * (by + gy * bz);
                    uint32_t h0 = ch[2 * b], h1 = ch[2 * b + 1];
                    uint32_t bits = h0 >> 24;
                    Py_ssize_t table = h0 & 0xFFFFFF, values = h1 & 0xFFFFFF;
                    if (!valid_bits(bits)) return "invalid encodedBits in a block header";
                    Py_ssize_t bwords = (bits * bvox + 31) / 32;
                    if (bits && values + bwords > clen) return "block values outside the channel";
                    Py_ssize_t ntable = (clen - table) / wpv;
                    if (table >= clen || ntable < 1) return "block table outside the channel";
                    int safe = bits < 32 && ((Py_ssize_t)1 << bits) <= ntable;
                    Py_ssize_t o0 = ok + (xb + x0 - lo[0]) + sy * (yb + y0 - lo[1]) + sz * (zb + z0 - lo[2]);
                    err = decode_block(ch, bits, table, values, ntable, safe, wpv, blk, x0, x1, y0, y1, z0, z1,
                                       out, o0, sy, sz);
                    if (err) return err;
                }
            }
        }
    }
    return NULL;
}

/* log2 of v when it is a power of two, else -1 */
static int exact_log2(Py_ssize_t v) {
    for (int b = 0; b < 62; b++) if (((Py_ssize_t)1 << b) == v) return b;
    return -1;
}

/* v / d, by a shift when d is 2**s (s >= 0): a division costs ~10x a shift, three per point */
static inline Py_ssize_t quot(Py_ssize_t v, Py_ssize_t d, int s) { return s >= 0 ? v >> s : v / d; }

/* values at chunk-local points into out (n x ncout, C order): given as xyz (n x 3, int64), or,
   when xyz is NULL, as linear offsets offs (n, uint32) into the chunk's shape, x fastest */
static const char *points(const uint32_t *w, Py_ssize_t nwords, int itemsize, const Py_ssize_t *shape,
                          Py_ssize_t nc, const Py_ssize_t *blk, const int64_t *xyz, const uint32_t *offs,
                          Py_ssize_t n, char *out) {
    Py_ssize_t gx = (shape[0] + blk[0] - 1) / blk[0], gy = (shape[1] + blk[1] - 1) / blk[1];
    Py_ssize_t gz = (shape[2] + blk[2] - 1) / blk[2];
    Py_ssize_t nblocks = gx * gy * gz, wpv = itemsize / 4, plane = shape[0] * shape[1];
    int s0 = exact_log2(blk[0]), s1 = exact_log2(blk[1]), s2 = exact_log2(blk[2]);
    int e0 = exact_log2(shape[0]), e01 = exact_log2(plane);
    for (Py_ssize_t c = 0; c < nc; c++) {
        const uint32_t *ch;
        Py_ssize_t clen;
        const char *err = channel(w, nwords, nc, c, nblocks, &ch, &clen);
        if (err) return err;
        for (Py_ssize_t i = 0; i < n; i++) {
            int64_t x, y, z;
            if (xyz) { x = xyz[3 * i]; y = xyz[3 * i + 1]; z = xyz[3 * i + 2]; }
            else {
                Py_ssize_t o = offs[i];
                z = quot(o, plane, e01);
                Py_ssize_t xy = o - z * plane;
                y = quot(xy, shape[0], e0);
                x = xy - y * shape[0];
            }
            if (x < 0 || y < 0 || z < 0 || x >= shape[0] || y >= shape[1] || z >= shape[2]) return "point outside the chunk";
            Py_ssize_t bx = quot(x, blk[0], s0), by = quot(y, blk[1], s1), bz = quot(z, blk[2], s2);
            Py_ssize_t b = bx + gx * (by + gy * bz);
            uint32_t h0 = ch[2 * b], h1 = ch[2 * b + 1], bits = h0 >> 24;
            Py_ssize_t table = h0 & 0xFFFFFF, values = h1 & 0xFFFFFF;
            if (!valid_bits(bits)) return "invalid encodedBits in a block header";
            if (table >= clen) return "block table outside the channel";
            uint32_t idx = 0;
            if (bits) {
                Py_ssize_t p = (x - bx * blk[0]) + blk[0] * ((y - by * blk[1]) + blk[1] * (z - bz * blk[2]));
                Py_ssize_t bit = (Py_ssize_t)bits * p;
                if (values + (bit >> 5) >= clen) return "block values outside the channel";
                uint32_t mask = bits == 32 ? 0xFFFFFFFFu : ((1u << bits) - 1u);
                idx = (ch[values + (bit >> 5)] >> (bit & 31)) & mask;
            }
            if (table + ((Py_ssize_t)idx + 1) * wpv > clen) return "lookup index past the block's table";
            const uint32_t *v = ch + table + (Py_ssize_t)idx * wpv;
            Py_ssize_t o = i * nc + c;
            if (wpv == 1) ((uint32_t *)out)[o] = v[0];
            else ((uint64_t *)out)[o] = (uint64_t)v[0] | ((uint64_t)v[1] << 32);
        }
    }
    return NULL;
}

static int triple(PyObject *seq, Py_ssize_t *dst, Py_ssize_t n) {
    PyObject *f = PySequence_Fast(seq, "expected a sequence of integers");
    if (!f) return -1;
    if (PySequence_Fast_GET_SIZE(f) != n) {
        Py_DECREF(f);
        PyErr_Format(PyExc_ValueError, "expected %zd integers", n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        /* any integer (numpy's too), as the Python side passes its tuples unconverted */
        dst[i] = PyNumber_AsSsize_t(PySequence_Fast_GET_ITEM(f, i), PyExc_OverflowError);
        if (dst[i] == -1 && PyErr_Occurred()) { Py_DECREF(f); return -1; }
    }
    Py_DECREF(f);
    return 0;
}

/* decode_into(data, itemsize, shape, nc_chunk, block, lo, hi, c0, cstep, ncout, out, oshape, dlo) */
static PyObject *decode_into(PyObject *self, PyObject *args) {
    Py_buffer data, out;
    int itemsize;
    Py_ssize_t nc_chunk, c0, cstep, ncout;
    PyObject *oshape_o, *shape_o, *blk_o, *lo_o, *hi_o, *dlo_o;
    Py_ssize_t shape[3], blk[3], lo[3], hi[3], oshape[4], dlo[3];
    if (!PyArg_ParseTuple(args, "y*iOnOOOnnnw*OO", &data, &itemsize, &shape_o, &nc_chunk, &blk_o, &lo_o,
                          &hi_o, &c0, &cstep, &ncout, &out, &oshape_o, &dlo_o))
        return NULL;
    const char *err = NULL;
    PyObject *result = NULL;
    if (triple(shape_o, shape, 3) || triple(blk_o, blk, 3) || triple(lo_o, lo, 3) || triple(hi_o, hi, 3) ||
        triple(oshape_o, oshape, 4) || triple(dlo_o, dlo, 3))
        goto done;
    if ((itemsize != 4 && itemsize != 8) || data.len % 4 || nc_chunk < 1 || c0 < 0 || ncout < 0 ||
        c0 + (ncout - 1) * cstep >= nc_chunk || blk[0] < 1 || blk[1] < 1 || blk[2] < 1) {
        PyErr_SetString(PyExc_ValueError, "bad arguments");
        goto done;
    }
    for (int d = 0; d < 3; d++) {
        if (lo[d] < 0 || hi[d] > shape[d] || lo[d] > hi[d] || dlo[d] < 0 || dlo[d] + hi[d] - lo[d] > oshape[d]) {
            PyErr_SetString(PyExc_ValueError, "window outside the chunk or the output");
            goto done;
        }
    }
    if (ncout > oshape[3] || out.len < oshape[0] * oshape[1] * oshape[2] * oshape[3] * itemsize) {
        PyErr_SetString(PyExc_ValueError, "output buffer too small");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    err = decode((const uint32_t *)data.buf, data.len / 4, itemsize, shape, nc_chunk, blk, lo, hi, c0, cstep,
                 ncout, (char *)out.buf, oshape, dlo);
    Py_END_ALLOW_THREADS
    if (err) {
        PyErr_SetString(PyExc_ValueError, err);
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    return result;
}

/* lookup_points(data, itemsize, shape, nc, block, xyz, out) and lookup_offsets(..., offsets, out):
   the values at points given as int64 (x, y, z) triples, or as uint32 linear offsets (x fastest)
   into the chunk's shape */
static PyObject *lookup(PyObject *args, int by_offset) {
    Py_buffer data, pts, out;
    int itemsize;
    Py_ssize_t nc, shape[3], blk[3];
    PyObject *shape_o, *blk_o, *result = NULL;
    const char *err = NULL;
    if (!PyArg_ParseTuple(args, "y*iOnOy*w*", &data, &itemsize, &shape_o, &nc, &blk_o, &pts, &out)) return NULL;
    if (triple(shape_o, shape, 3) || triple(blk_o, blk, 3)) goto done;
    Py_ssize_t per = by_offset ? (Py_ssize_t)sizeof(uint32_t) : 3 * (Py_ssize_t)sizeof(int64_t);
    Py_ssize_t n = pts.len / per;
    if ((itemsize != 4 && itemsize != 8) || data.len % 4 || nc < 1 || pts.len % per ||
        out.len < n * nc * itemsize || blk[0] < 1 || blk[1] < 1 || blk[2] < 1 || shape[0] < 1 || shape[1] < 1 ||
        shape[2] < 1) {
        PyErr_SetString(PyExc_ValueError, "bad arguments");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    err = points((const uint32_t *)data.buf, data.len / 4, itemsize, shape, nc, blk,
                 by_offset ? NULL : (const int64_t *)pts.buf, by_offset ? (const uint32_t *)pts.buf : NULL, n,
                 (char *)out.buf);
    Py_END_ALLOW_THREADS
    if (err) {
        PyErr_SetString(PyExc_ValueError, err);
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&pts);
    PyBuffer_Release(&out);
    return result;
}

static PyObject *lookup_points(PyObject *self, PyObject *args) { return lookup(args, 0); }

static PyObject *lookup_offsets(PyObject *self, PyObject *args) { return lookup(args, 1); }

/* ---- encoding ------------------------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

typedef struct { Py_ssize_t *off; Py_ssize_t *len; Py_ssize_t cap; } TableCache;

static uint64_t table_hash(const uint64_t *v, Py_ssize_t n) {
    uint64_t h = 1469598103934665603ull ^ (uint64_t)n;
    for (Py_ssize_t i = 0; i < n; i++) { h ^= v[i]; h *= 1099511628211ull; h ^= h >> 29; }
    return h;
}

/* encode one channel (F-order values read through get) into w; returns words written or -1 */
static Py_ssize_t encode_channel(const char *vol, const Py_ssize_t *st, int itemsize, const Py_ssize_t *S,
                                 const Py_ssize_t *B, uint32_t *w, uint64_t *scratch, uint64_t *uniq, TableCache *tc) {
    Py_ssize_t gx = (S[0] + B[0] - 1) / B[0], gy = (S[1] + B[1] - 1) / B[1], gz = (S[2] + B[2] - 1) / B[2];
    Py_ssize_t nb = gx * gy * gz, bvox = B[0] * B[1] * B[2], wpv = itemsize / 4, pos = 2 * nb;
    for (Py_ssize_t i = 0; i < tc->cap; i++) tc->off[i] = -1;
    for (Py_ssize_t bz = 0; bz < gz; bz++)
    for (Py_ssize_t by = 0; by < gy; by++)
    for (Py_ssize_t bx = 0; bx < gx; bx++) {
        Py_ssize_t b = bx + gx * (by + gy * bz), n = 0;
        Py_ssize_t x0 = bx * B[0], y0 = by * B[1], z0 = bz * B[2];
        Py_ssize_t x1 = x0 + B[0] < S[0] ? x0 + B[0] : S[0];
        Py_ssize_t y1 = y0 + B[1] < S[1] ? y0 + B[1] : S[1];
        Py_ssize_t z1 = z0 + B[2] < S[2] ? z0 + B[2] : S[2];
        /* gather the block's values in block order (padding gets the first value: any valid index) */
        Py_ssize_t k = 0;
        for (Py_ssize_t z = z0; z < z1; z++)
            for (Py_ssize_t y = y0; y < y1; y++)
                for (Py_ssize_t x = x0; x < x1; x++) {
                    const char *e = vol + x * st[0] + y * st[1] + z * st[2];
                    scratch[k++] = itemsize == 4 ? *(const uint32_t *)e : *(const uint64_t *)e;
                }
        /* distinct values: segmentation blocks hold few, so a short linear scan (runs skipped)
           beats sorting every voxel; blocks with many values take the sort */
        int many = 0;
        for (Py_ssize_t i = 0; i < k && !many; i++) {
            uint64_t v = scratch[i];
            if (i && v == scratch[i - 1]) continue;
            Py_ssize_t j = 0;
            while (j < n && uniq[j] != v) j++;
            if (j == n) { if (n == 64) many = 1; else uniq[n++] = v; }
        }
        if (many) {
            memcpy(uniq, scratch, k * sizeof(uint64_t));
            qsort(uniq, k, sizeof(uint64_t), cmp_u64);
            n = 0;
            for (Py_ssize_t i = 0; i < k; i++) if (n == 0 || uniq[n - 1] != uniq[i]) uniq[n++] = uniq[i];
        } else {
            for (Py_ssize_t i = 1; i < n; i++) {  /* insertion sort: n <= 64 */
                uint64_t v = uniq[i];
                Py_ssize_t j = i;
                while (j > 0 && uniq[j - 1] > v) { uniq[j] = uniq[j - 1]; j--; }
                uniq[j] = v;
            }
        }
        uint32_t bits = 0;
        if (n > 1) { bits = 1; while (((uint64_t)1 << bits) < (uint64_t)n) bits *= 2; }
        Py_ssize_t values = pos, nwords = (bits * bvox + 31) / 32;
        memset(w + pos, 0, nwords * 4);
        if (bits) {
            k = 0;
            uint64_t prev = uniq[0];
            Py_ssize_t lo = 0;
            for (Py_ssize_t z = z0; z < z1; z++)
                for (Py_ssize_t y = y0; y < y1; y++)
                    for (Py_ssize_t x = x0; x < x1; x++) {
                        uint64_t v = scratch[k++];
                        if (v != prev) {  /* neighbours usually repeat: search only on a change */
                            Py_ssize_t a = 0, z2 = n - 1;
                            while (a < z2) { Py_ssize_t mid = (a + z2) / 2; if (uniq[mid] < v) a = mid + 1; else z2 = mid; }
                            lo = a;
                            prev = v;
                        }
                        Py_ssize_t p = (x - x0) + B[0] * ((y - y0) + B[1] * (z - z0));
                        Py_ssize_t bit = (Py_ssize_t)bits * p;
                        w[pos + (bit >> 5)] |= (uint32_t)lo << (bit & 31);
                    }
        }
        pos += nwords;
        /* reuse an identical table written earlier in this channel, as the reference encoders do */
        uint64_t h = table_hash(uniq, n);
        Py_ssize_t slot = (Py_ssize_t)(h & (uint64_t)(tc->cap - 1)), table = -1;
        while (tc->off[slot] >= 0) {
            if (tc->len[slot] == n) {
                const uint32_t *t = w + tc->off[slot];
                int same = 1;
                for (Py_ssize_t i = 0; i < n && same; i++) {
                    uint64_t v = wpv == 1 ? t[i] : ((uint64_t)t[2 * i] | ((uint64_t)t[2 * i + 1] << 32));
                    same = v == uniq[i];
                }
                if (same) { table = tc->off[slot]; break; }
            }
            slot = (slot + 1) & (tc->cap - 1);
        }
        if (table < 0) {
            table = pos;
            for (Py_ssize_t i = 0; i < n; i++) {
                if (wpv == 1) w[pos++] = (uint32_t)uniq[i];
                else { w[pos++] = (uint32_t)uniq[i]; w[pos++] = (uint32_t)(uniq[i] >> 32); }
            }
            tc->off[slot] = table;
            tc->len[slot] = n;
        }
        if (table >= (1 << 24) || values >= (1 << 24)) return -1;
        w[2 * b] = (uint32_t)table | (bits << 24);
        w[2 * b + 1] = (uint32_t)values;
    }
    return pos;
}

/* encode(array (x, y, z, c), any strides), block(3)) -> bytes */
static PyObject *encode(PyObject *self, PyObject *args) {
    Py_buffer arr;
    PyObject *obj, *blk_o, *result = NULL;
    Py_ssize_t shape[4], blk[3];
    int itemsize;
    if (!PyArg_ParseTuple(args, "OO", &obj, &blk_o)) return NULL;
    if (PyObject_GetBuffer(obj, &arr, PyBUF_STRIDES | PyBUF_FORMAT) < 0) return NULL;
    uint32_t *w = NULL; uint64_t *scratch = NULL, *uniq = NULL; Py_ssize_t *tco = NULL, *tcl = NULL;
    itemsize = (int)arr.itemsize;
    if (triple(blk_o, blk, 3)) goto done;
    if (arr.ndim != 4 || (itemsize != 4 && itemsize != 8) || blk[0] < 1 || blk[1] < 1 || blk[2] < 1) {
        PyErr_SetString(PyExc_ValueError, "expected a 4-D uint32 or uint64 array and a block size");
        goto done;
    }
    for (int d = 0; d < 4; d++) shape[d] = arr.shape[d];
    if (shape[3] < 1) { PyErr_SetString(PyExc_ValueError, "no channels"); goto done; }
    {
        Py_ssize_t nc = shape[3], wpv = itemsize / 4, bvox = blk[0] * blk[1] * blk[2];
        Py_ssize_t nb = ((shape[0] + blk[0] - 1) / blk[0]) * ((shape[1] + blk[1] - 1) / blk[1]) *
                        ((shape[2] + blk[2] - 1) / blk[2]);
        Py_ssize_t per = 2 * nb + nb * ((32 * bvox + 31) / 32 + bvox * wpv);
        Py_ssize_t cap = 1;
        while (cap < 2 * nb + 2) cap *= 2;
        w = PyMem_RawMalloc((nc + nc * per) * 4);
        scratch = PyMem_RawMalloc(bvox * 8);
        uniq = PyMem_RawMalloc(bvox * 8);
        tco = PyMem_RawMalloc(cap * sizeof(Py_ssize_t));
        tcl = PyMem_RawMalloc(cap * sizeof(Py_ssize_t));
        if (!w || !scratch || !uniq || !tco || !tcl) { PyErr_NoMemory(); goto done; }
        TableCache tc = {tco, tcl, cap};
        Py_ssize_t pos = nc, bad = 0;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t c = 0; c < nc && !bad; c++) {
            w[c] = (uint32_t)pos;
            Py_ssize_t got = encode_channel((const char *)arr.buf + c * arr.strides[3], arr.strides, itemsize, shape,
                                            blk, w + pos, scratch, uniq, &tc);
            if (got < 0) bad = 1; else pos += got;
        }
        Py_END_ALLOW_THREADS
        if (bad) { PyErr_SetString(PyExc_ValueError, "chunk too large for compressed_segmentation's 24-bit offsets"); goto done; }
        result = PyBytes_FromStringAndSize((const char *)w, pos * 4);
    }
done:
    PyMem_RawFree(w); PyMem_RawFree(scratch); PyMem_RawFree(uniq); PyMem_RawFree(tco); PyMem_RawFree(tcl);
    PyBuffer_Release(&arr);
    return result;
}

/* ---- grouping points by chunk (for scattered point reads) --------------------------------- */

typedef struct {
    uint64_t lo[3], size[3], chunk[3], grid[3];
    int shift[3];  /* log2 of a power-of-two chunk side, else -1 */
    Py_ssize_t nchunks;
} Grid;

/* the linear chunk index (x fastest) of point p, nchunks when it is outside; *local gets its
   chunk-local offset with a full chunk's strides. Unsigned arithmetic: a point below the
   volume wraps past any size, and nothing overflows. */
static inline Py_ssize_t locate_point(const Grid *g, const int64_t *p, uint32_t *local) {
    uint64_t cell = 0, off = 0, gs = 1, cs = 1;
    for (int a = 0; a < 3; a++) {
        uint64_t r = (uint64_t)p[a] - g->lo[a], q, m;
        if (r >= g->size[a]) { *local = 0; return g->nchunks; }
        if (g->shift[a] >= 0) { q = r >> g->shift[a]; m = r & (g->chunk[a] - 1); }
        else { q = r / g->chunk[a]; m = r - q * g->chunk[a]; }
        cell += q * gs; off += m * cs;
        gs *= g->grid[a]; cs *= g->chunk[a];
    }
    *local = (uint32_t)off;
    return (Py_ssize_t)cell;
}

/* group_points(pts, lo, size, chunk, grid, order, offsets, counts): a counting sort of the
   points ((N, 3) int64) by chunk. counts (nchunks + 1 int64) gets the points per chunk, the
   last entry those outside; order (N int64) the point indices chunk by chunk, ascending within
   one; offsets (N uint32) their chunk-local offsets in the same order. */
static PyObject *group_points(PyObject *self, PyObject *args) {
    Py_buffer pts, order, offsets, counts;
    PyObject *lo_o, *size_o, *chunk_o, *grid_o, *result = NULL;
    Py_ssize_t lo[3], size[3], chunk[3], grid[3];
    int64_t *cursor = NULL;
    if (!PyArg_ParseTuple(args, "y*OOOOw*w*w*", &pts, &lo_o, &size_o, &chunk_o, &grid_o, &order, &offsets, &counts))
        return NULL;
    if (triple(lo_o, lo, 3) || triple(size_o, size, 3) || triple(chunk_o, chunk, 3) || triple(grid_o, grid, 3))
        goto done;
    Grid g;
    g.nchunks = 1;
    uint64_t cvox = 1;
    int bad = 0;
    for (int a = 0; a < 3; a++) {
        if (size[a] < 1 || chunk[a] < 1 || grid[a] != (size[a] + chunk[a] - 1) / chunk[a]) bad = 1;
        g.lo[a] = (uint64_t)lo[a]; g.size[a] = (uint64_t)size[a];
        g.chunk[a] = (uint64_t)chunk[a]; g.grid[a] = (uint64_t)grid[a];
        g.shift[a] = exact_log2(chunk[a]);
        if (!bad) { g.nchunks *= grid[a]; cvox *= (uint64_t)chunk[a]; }
    }
    Py_ssize_t n = pts.len / (3 * (Py_ssize_t)sizeof(int64_t));
    if (bad || cvox > ((uint64_t)1 << 32) || pts.len % (3 * sizeof(int64_t)) ||
        order.len != n * (Py_ssize_t)sizeof(int64_t) || offsets.len != n * (Py_ssize_t)sizeof(uint32_t) ||
        counts.len != (g.nchunks + 1) * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "bad arguments");
        goto done;
    }
    cursor = PyMem_RawMalloc((g.nchunks + 1) * sizeof(int64_t));
    if (!cursor) { PyErr_NoMemory(); goto done; }
    int changed = 0;
    Py_BEGIN_ALLOW_THREADS
    const int64_t *p = (const int64_t *)pts.buf;
    int64_t *end = (int64_t *)counts.buf, *ord = (int64_t *)order.buf;
    uint32_t *loc = (uint32_t *)offsets.buf, local;
    memset(end, 0, (g.nchunks + 1) * sizeof(int64_t));
    for (Py_ssize_t i = 0; i < n; i++) end[locate_point(&g, p + 3 * i, &local)]++;
    int64_t at = 0;
    for (Py_ssize_t c = 0; c <= g.nchunks; c++) { cursor[c] = at; at += end[c]; end[c] = at; }
    /* each chunk's slots end where the next one's begin: a point moved by another thread
       between the passes cannot write past them */
    for (Py_ssize_t i = 0; i < n && !changed; i++) {
        Py_ssize_t c = locate_point(&g, p + 3 * i, &local);
        if (cursor[c] >= end[c]) { changed = 1; break; }
        int64_t pos = cursor[c]++;
        ord[pos] = i;
        loc[pos] = local;
    }
    for (Py_ssize_t c = g.nchunks; c > 0; c--) end[c] -= end[c - 1];  /* back to counts */
    Py_END_ALLOW_THREADS
    if (changed) {
        PyErr_SetString(PyExc_ValueError, "the points changed while they were grouped");
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_RawFree(cursor);
    PyBuffer_Release(&pts);
    PyBuffer_Release(&order);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&counts);
    return result;
}

static PyMethodDef methods[] = {
    {"encode", encode, METH_VARARGS, "Encode a Fortran-order (x, y, z, c) uint32/uint64 array as compressed_segmentation."},
    {"lookup_points", lookup_points, METH_VARARGS, "Values at points of a compressed_segmentation chunk."},
    {"lookup_offsets", lookup_offsets, METH_VARARGS, "Values at linear voxel offsets of a compressed_segmentation chunk."},
    {"decode_into", decode_into, METH_VARARGS, "Decode a window of a compressed_segmentation chunk into an output."},
    {"group_points", group_points, METH_VARARGS, "Group points by chunk: a counting sort (for point reads)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cseg", NULL, -1, methods};

PyMODINIT_FUNC PyInit__cseg(void) { return PyModule_Create(&module); }
