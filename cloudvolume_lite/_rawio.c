/* Read part of a raw chunk file and paste it into an output array, in one call without the GIL.
 *
 * Why C: a raw chunk read in Python is an open, a read, a close and a numpy copy, each giving
 * up and taking back the GIL; two threads pasting many small chunks then spend their time
 * handing it over. Here the whole chunk (open, size check, read of the z-slab, strided copy)
 * runs with the GIL released, so two cores paste two chunks at once. Every offset is checked
 * against the file's size and the output buffer's length: a wrong-sized file is reported,
 * never read past, and the output is never written outside its buffer.
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

/* read exactly n bytes at off (a short file is caught by the size check before) */
static int pread_all(int fd, char *buf, Py_ssize_t n, Py_ssize_t off) {
    while (n > 0) {
        ssize_t got = pread(fd, buf, (size_t)n, (off_t)off);
        if (got < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (got == 0) { errno = EIO; return -1; }
        buf += got; n -= got; off += got;
    }
    return 0;
}

/* the strided copy: voxel (x, y, z) of the slab (dims ex, ey) -> out + x*dx + y*dy + z*dz */
static void paste(const char *src, Py_ssize_t ex, Py_ssize_t ey, Py_ssize_t isz,
                  const Py_ssize_t *lo, const Py_ssize_t *n, const Py_ssize_t *st,
                  char *dst, Py_ssize_t dx, Py_ssize_t dy, Py_ssize_t dz) {
    Py_ssize_t row = (n[0] - 1) * st[0] + 1;
    for (Py_ssize_t k = 0; k < n[2]; k++) {
        Py_ssize_t z = lo[2] + k * st[2];
        for (Py_ssize_t j = 0; j < n[1]; j++) {
            Py_ssize_t y = lo[1] + j * st[1];
            const char *s = src + ((z * ey + y) * ex + lo[0]) * isz;
            char *d = dst + j * dy + k * dz;
            if (st[0] == 1 && dx == isz) {
                memcpy(d, s, (size_t)(row * isz));
            } else {
                for (Py_ssize_t i = 0; i < n[0]; i++) memcpy(d + i * dx, s + i * st[0] * isz, (size_t)isz);
            }
        }
    }
}

PyDoc_STRVAR(paste_file_doc,
"paste_file(path, file_size, offset, ex, ey, ez, lo, n, steps, itemsize, out, dst, strides) -> int\n\n"
"Read the z-slab of ``ez`` planes of ``ex * ey`` voxels at byte ``offset`` of the file at\n"
"``path`` and copy its voxels ``lo + i * steps`` (``i < n`` per axis, (x, y, z)) into ``out``'s\n"
"buffer at byte ``dst`` with byte ``strides`` (x, y, z). Nothing is read or written unless the\n"
"file has exactly ``file_size`` bytes. Returns the file's size, or -1 when there is no such file.");

static PyObject *paste_file(PyObject *self, PyObject *args) {
    const char *path;
    Py_ssize_t file_size, offset, ex, ey, ez, isz, dst;
    Py_ssize_t lo[3], n[3], st[3], ds[3];
    PyObject *out;
    if (!PyArg_ParseTuple(args, "snnnnn(nnn)(nnn)(nnn)nOn(nnn)", &path, &file_size, &offset, &ex, &ey, &ez,
                          &lo[0], &lo[1], &lo[2], &n[0], &n[1], &n[2], &st[0], &st[1], &st[2], &isz, &out,
                          &dst, &ds[0], &ds[1], &ds[2]))
        return NULL;
    Py_ssize_t slab = ex * ey * ez * isz;
    if (ex <= 0 || ey <= 0 || ez <= 0 || isz <= 0 || offset < 0 || offset + slab > file_size) {
        PyErr_SetString(PyExc_ValueError, "paste_file: the slab lies outside the chunk");
        return NULL;
    }
    /* every voxel copied lies inside the slab, and every byte written inside the output */
    Py_ssize_t first = dst, last = dst + isz;
    for (int a = 0; a < 3; a++) {
        Py_ssize_t dim = a == 0 ? ex : a == 1 ? ey : ez;
        if (n[a] <= 0 || st[a] <= 0 || lo[a] < 0 || lo[a] + (n[a] - 1) * st[a] >= dim) {
            PyErr_SetString(PyExc_ValueError, "paste_file: the voxels asked for lie outside the slab");
            return NULL;
        }
        Py_ssize_t span = (n[a] - 1) * ds[a];
        if (span < 0) first += span; else last += span;
    }
    Py_buffer buf;
    if (PyObject_GetBuffer(out, &buf, PyBUF_WRITABLE | PyBUF_ANY_CONTIGUOUS) < 0) return NULL;
    if (first < 0 || last > buf.len) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "paste_file: the paste lies outside the output");
        return NULL;
    }
    Py_ssize_t size = -1;
    int err = 0;
    char *tmp = NULL;
    Py_BEGIN_ALLOW_THREADS
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT && errno != ENOTDIR && errno != EISDIR) err = errno;
    } else {
        struct stat sb;
        if (fstat(fd, &sb) < 0) err = errno;
        else if (S_ISDIR(sb.st_mode)) size = -1;
        else {
            size = (Py_ssize_t)sb.st_size;
            if (size == file_size) {
                tmp = malloc((size_t)slab);
                if (tmp == NULL) err = ENOMEM;
                else if (pread_all(fd, tmp, slab, offset) < 0) err = errno;
                else paste(tmp, ex, ey, isz, lo, n, st, (char *)buf.buf + dst, ds[0], ds[1], ds[2]);
                free(tmp);
            }
        }
        close(fd);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    if (err) {
        errno = err;
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
    }
    return PyLong_FromSsize_t(size);
}

PyDoc_STRVAR(paste_bytes_doc,
"paste_bytes(data, offset, ex, ey, ez, lo, n, steps, itemsize, out, dst, strides) -> None\n\n"
"paste_file's copy from a chunk already in memory: the slab of ``ez`` planes at byte ``offset``\n"
"of ``data``, voxels ``lo + i * steps`` into ``out`` at byte ``dst`` with byte ``strides``.");

static PyObject *paste_bytes(PyObject *self, PyObject *args) {
    Py_buffer data, buf;
    Py_ssize_t offset, ex, ey, ez, isz, dst;
    Py_ssize_t lo[3], n[3], st[3], ds[3];
    PyObject *out;
    if (!PyArg_ParseTuple(args, "y*nnnn(nnn)(nnn)(nnn)nOn(nnn)", &data, &offset, &ex, &ey, &ez, &lo[0], &lo[1],
                          &lo[2], &n[0], &n[1], &n[2], &st[0], &st[1], &st[2], &isz, &out, &dst, &ds[0], &ds[1],
                          &ds[2]))
        return NULL;
    const char *err = NULL;
    Py_ssize_t first = dst, last = dst + isz;
    if (ex <= 0 || ey <= 0 || ez <= 0 || isz <= 0 || offset < 0 || offset + ex * ey * ez * isz > data.len)
        err = "paste_bytes: the slab lies outside the chunk";
    for (int a = 0; a < 3 && !err; a++) {
        Py_ssize_t dim = a == 0 ? ex : a == 1 ? ey : ez;
        if (n[a] <= 0 || st[a] <= 0 || lo[a] < 0 || lo[a] + (n[a] - 1) * st[a] >= dim)
            err = "paste_bytes: the voxels asked for lie outside the slab";
        Py_ssize_t span = (n[a] - 1) * ds[a];
        if (span < 0) first += span; else last += span;
    }
    if (err) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, err);
        return NULL;
    }
    if (PyObject_GetBuffer(out, &buf, PyBUF_WRITABLE | PyBUF_ANY_CONTIGUOUS) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (first < 0 || last > buf.len) {
        PyBuffer_Release(&buf);
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "paste_bytes: the paste lies outside the output");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    paste((const char *)data.buf + offset, ex, ey, isz, lo, n, st, (char *)buf.buf + dst, ds[0], ds[1], ds[2]);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"paste_file", paste_file, METH_VARARGS, paste_file_doc},
    {"paste_bytes", paste_bytes, METH_VARARGS, paste_bytes_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rawio",
                                    "Raw chunk files read and pasted without the GIL.", -1, methods};

PyMODINIT_FUNC PyInit__rawio(void) { return PyModule_Create(&module); }
