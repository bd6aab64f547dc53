/* Point values read straight from plain chunk files: only the bytes the points need, by pread,
 * for a whole batch of chunks in one call without the GIL.
 *
 * Why C: a chunk holding a few of a read's points costs a handful of system calls (~10 us), and
 * the same work in Python adds ~20 us of interpreter time per chunk, holding the GIL. A raw
 * point is one pread; a compressed_segmentation point one read of its block's index words and
 * table together (two when they lie apart), after one read of the chunk's block headers. Every
 * word read from a chunk is checked as _cseg.c checks it in memory, with the same messages: a
 * damaged chunk is the same error whichever decoder reads it, never a crash.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

/* a compressed_segmentation index window read in one go when at most this many words */
#define WINDOW_WORDS 512

typedef struct {
    int itemsize, kind;  /* kind 0: raw, 1: compressed_segmentation */
    Py_ssize_t nc, blk[3], chunk[3];
} Layout;

/* pread all of n bytes at off; 0, or -1 when the file is shorter (or unreadable) */
static int read_at(int fd, void *dst, Py_ssize_t n, int64_t off) {
    char *p = dst;
    while (n > 0) {
        ssize_t got = pread(fd, p, (size_t)n, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return -1;
        p += got; n -= got; off += got;
    }
    return 0;
}

static const char *SHORT = "is shorter than its headers say (truncated, or it changed while it was read)";

static int valid_bits(uint32_t b) { return b == 0 || b == 1 || b == 2 || b == 4 || b == 8 || b == 16 || b == 32; }

/* chunk-local (x, y, z) of a linear offset with the full chunk's strides */
static void unpack(const Layout *L, uint32_t o, Py_ssize_t *x, Py_ssize_t *y, Py_ssize_t *z) {
    Py_ssize_t plane = L->chunk[0] * L->chunk[1];
    *z = o / plane;
    Py_ssize_t r = o - *z * plane;
    *y = r / L->chunk[0];
    *x = r - *y * L->chunk[0];
}

static const char *raw_chunk(int fd, int64_t size, const Layout *L, const Py_ssize_t *shape, const uint32_t *offs,
                             Py_ssize_t n, char *out, char *msg) {
    Py_ssize_t isz = L->itemsize, plane = shape[0] * shape[1] * shape[2] * isz;
    if (size != plane * L->nc) {
        snprintf(msg, 160, "has %lld bytes, expected %lld", (long long)size, (long long)(plane * L->nc));
        return msg;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t x, y, z;
        unpack(L, offs[i], &x, &y, &z);
        if (x >= shape[0] || y >= shape[1] || z >= shape[2]) return "point outside the chunk";
        int64_t at = (x + shape[0] * (y + shape[1] * z)) * isz;
        for (Py_ssize_t c = 0; c < L->nc; c++)
            if (read_at(fd, out + (i * L->nc + c) * isz, isz, at + c * plane))
                return "is shorter than its size (it changed while it was read)";
    }
    return NULL;
}

static const char *cseg_chunk(int fd, int64_t size, const Layout *L, const Py_ssize_t *shape, const uint32_t *offs,
                              Py_ssize_t n, char *out, char *msg, uint32_t *buf, Py_ssize_t cap) {
    if (size % 4) {
        snprintf(msg, 160, "length %lld is not a multiple of 4 bytes", (long long)size);
        return msg;
    }
    Py_ssize_t nwords = (Py_ssize_t)(size / 4), nc = L->nc, wpv = L->itemsize / 4;
    if (nwords < nc) return "chunk shorter than its channel table";
    const Py_ssize_t *B = L->blk;
    Py_ssize_t gx = (shape[0] + B[0] - 1) / B[0], gy = (shape[1] + B[1] - 1) / B[1];
    Py_ssize_t nblocks = gx * gy * ((shape[2] + B[2] - 1) / B[2]);
    Py_ssize_t lo = nblocks, hi = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t x, y, z;
        unpack(L, offs[i], &x, &y, &z);
        if (x >= shape[0] || y >= shape[1] || z >= shape[2]) return "point outside the chunk";
        Py_ssize_t b = x / B[0] + gx * (y / B[1] + gy * (z / B[2]));
        if (b < lo) lo = b;
        if (b > hi) hi = b;
    }
    if (n == 0) return NULL;
    /* the channel table, and channel 0's headers when they follow it (as encoders write them) */
    Py_ssize_t head = nc + 2 * (hi + 1);
    if (head > nwords) head = nc;
    if (head + 2 * (hi - lo + 1) + WINDOW_WORDS > cap) return "a chunk's block headers do not fit the buffer";
    uint32_t *tab = buf, *hdr = buf + head, *win = hdr + 2 * (hi - lo + 1);
    if (read_at(fd, tab, head * 4, 0)) return SHORT;
    for (Py_ssize_t c = 0; c < nc; c++) {
        Py_ssize_t base = tab[c], end = c + 1 < nc ? (Py_ssize_t)tab[c + 1] : nwords;
        if (base < nc || end > nwords || end < base) return "channel offsets out of range";
        Py_ssize_t clen = end - base;
        if (clen < 2 * nblocks) return "channel too short for its block headers";
        const uint32_t *h;  /* block b's header at h[2 * (b - lo)] */
        if (base == nc && head >= nc + 2 * (hi + 1)) h = tab + nc + 2 * lo;
        else {
            if (read_at(fd, hdr, 2 * (hi - lo + 1) * 4, (int64_t)(base + 2 * lo) * 4)) return SHORT;
            h = hdr;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_ssize_t x, y, z;
            unpack(L, offs[i], &x, &y, &z);
            Py_ssize_t bx = x / B[0], by = y / B[1], bz = z / B[2], b = bx + gx * (by + gy * bz);
            uint32_t h0 = h[2 * (b - lo)], h1 = h[2 * (b - lo) + 1], bits = h0 >> 24;
            Py_ssize_t table = h0 & 0xFFFFFF, values = h1 & 0xFFFFFF;
            if (!valid_bits(bits)) return "invalid encodedBits in a block header";
            if (table >= clen) return "block table outside the channel";
            uint32_t idx = 0;
            Py_ssize_t wlo = table, whi = table;  /* words [wlo, whi) of the channel read into win */
            if (bits) {
                Py_ssize_t p = (x - bx * B[0]) + B[0] * ((y - by * B[1]) + B[1] * (z - bz * B[2]));
                Py_ssize_t bit = (Py_ssize_t)bits * p, at = values + (bit >> 5);
                if (at >= clen) return "block values outside the channel";
                /* the index word and the whole table it may point into, in one read when close */
                Py_ssize_t a = at < table ? at : table, e = table + ((Py_ssize_t)1 << (bits < 16 ? bits : 16)) * wpv;
                if (e < at + 1) e = at + 1;
                if (e > clen) e = clen;
                if (e - a <= WINDOW_WORDS) { wlo = a; whi = e; }
                else { wlo = at; whi = at + 1; }
                if (read_at(fd, win, (whi - wlo) * 4, (int64_t)(base + wlo) * 4)) return SHORT;
                uint32_t mask = bits == 32 ? 0xFFFFFFFFu : ((1u << bits) - 1u);
                idx = (win[at - wlo] >> (bit & 31)) & mask;
            }
            if (table + ((Py_ssize_t)idx + 1) * wpv > clen) return "lookup index past the block's table";
            Py_ssize_t t = table + (Py_ssize_t)idx * wpv;
            uint32_t v[2];
            if (t >= wlo && t + wpv <= whi) memcpy(v, win + (t - wlo), wpv * 4);
            else if (read_at(fd, v, wpv * 4, (int64_t)(base + t) * 4)) return SHORT;
            Py_ssize_t o = i * nc + c;
            if (wpv == 1) ((uint32_t *)out)[o] = v[0];
            else ((uint64_t *)out)[o] = (uint64_t)v[0] | ((uint64_t)v[1] << 32);
        }
    }
    return NULL;
}

static int triple(PyObject *seq, Py_ssize_t *dst) {
    PyObject *f = PySequence_Fast(seq, "expected a sequence of 3 integers");
    if (!f) return -1;
    int bad = PySequence_Fast_GET_SIZE(f) != 3;
    for (Py_ssize_t i = 0; i < 3 && !bad; i++) {
        dst[i] = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(f, i));
        bad = (dst[i] == -1 && PyErr_Occurred()) || dst[i] < 1;
    }
    Py_DECREF(f);
    if (bad && !PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "expected 3 positive integers");
    return bad ? -1 : 0;
}

/* read_points(paths, kind, itemsize, nc, shapes, block, chunk, offsets, splits, out, status) */
static PyObject *read_points(PyObject *self, PyObject *args) {
    PyObject *paths_o, *blk_o, *chunk_o, *paths = NULL, *result = NULL;
    Py_buffer shapes, offs, splits, out, status;
    Layout L;
    if (!PyArg_ParseTuple(args, "Oiiny*OOy*y*w*w*", &paths_o, &L.kind, &L.itemsize, &L.nc, &shapes, &blk_o,
                          &chunk_o, &offs, &splits, &out, &status))
        return NULL;
    const char **names = NULL;
    uint32_t *buf = NULL;
    if (triple(blk_o, L.blk) || triple(chunk_o, L.chunk)) goto done;
    paths = PySequence_Tuple(paths_o);  /* holds the path bytes while the GIL is released */
    if (!paths) goto done;
    Py_ssize_t G = PyTuple_GET_SIZE(paths), N = offs.len / 4;
    const int64_t *sp = splits.buf, *sh = shapes.buf;
    int bad = (L.kind != 0 && L.kind != 1) || L.nc < 1 || (L.itemsize != 1 && L.itemsize != 2 && L.itemsize != 4 &&
              L.itemsize != 8) || (L.kind == 1 && L.itemsize != 4 && L.itemsize != 8) ||
              splits.len != (G + 1) * 8 || shapes.len != G * 24 || status.len != G * 8 || offs.len % 4 ||
              out.len != N * L.nc * L.itemsize || L.chunk[0] * L.chunk[1] * L.chunk[2] > ((int64_t)1 << 32);
    for (Py_ssize_t g = 0; g < G && !bad; g++) {
        bad = sp[g] < 0 || sp[g + 1] < sp[g] || sp[g + 1] > N || !PyBytes_Check(PyTuple_GET_ITEM(paths, g));
        for (int d = 0; d < 3 && !bad; d++) bad = sh[3 * g + d] < 1 || sh[3 * g + d] > L.chunk[d];
    }
    if (bad) { PyErr_SetString(PyExc_ValueError, "bad arguments"); goto done; }
    names = PyMem_Malloc((G ? G : 1) * sizeof(char *));
    Py_ssize_t nblocks = 1;
    for (int d = 0; d < 3; d++) nblocks *= (L.chunk[d] + L.blk[d] - 1) / L.blk[d];
    Py_ssize_t cap = L.nc + 4 * nblocks + 2 * WINDOW_WORDS;
    buf = PyMem_RawMalloc(cap * 4);
    if (!names || !buf) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t g = 0; g < G; g++) names[g] = PyBytes_AS_STRING(PyTuple_GET_ITEM(paths, g));
    const char *err = NULL;
    char msg[160];
    Py_ssize_t failed = -1;
    Py_BEGIN_ALLOW_THREADS
    int64_t *st = status.buf;
    for (Py_ssize_t g = 0; g < G && !err; g++) {
        int fd = open(names[g], O_RDONLY | O_CLOEXEC);
        if (fd < 0) { st[g] = (errno == ENOENT || errno == ENOTDIR || errno == EISDIR) ? 1 : 2; continue; }
        struct stat sb;
        if (fstat(fd, &sb)) { st[g] = 2; close(fd); continue; }
        if (!S_ISREG(sb.st_mode)) { st[g] = 1; close(fd); continue; }  /* a directory: no chunk file */
        const uint32_t *o = (const uint32_t *)offs.buf + sp[g];
        char *dst = (char *)out.buf + sp[g] * L.nc * L.itemsize;
        err = L.kind == 0 ? raw_chunk(fd, sb.st_size, &L, sh + 3 * g, o, sp[g + 1] - sp[g], dst, msg)
                          : cseg_chunk(fd, sb.st_size, &L, sh + 3 * g, o, sp[g + 1] - sp[g], dst, msg, buf, cap);
        close(fd);
        st[g] = 0;
        if (err) failed = g;
    }
    Py_END_ALLOW_THREADS
    result = err ? Py_BuildValue("(ns)", failed, err) : (Py_INCREF(Py_None), Py_None);
done:
    PyMem_Free(names);
    PyMem_RawFree(buf);
    Py_XDECREF(paths);
    PyBuffer_Release(&shapes);
    PyBuffer_Release(&offs);
    PyBuffer_Release(&splits);
    PyBuffer_Release(&out);
    PyBuffer_Release(&status);
    return result;
}

static PyMethodDef methods[] = {
    {"read_points", read_points, METH_VARARGS, "Values at points of plain raw or compressed_segmentation chunk files."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pointio", NULL, -1, methods};

PyMODINIT_FUNC PyInit__pointio(void) { return PyModule_Create(&module); }
