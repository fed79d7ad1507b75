/* One 2NMNIST sample's event columns in one pass, for event_block in __init__.py.
 *
 * The numpy route superimposes the recordings as .bin bytes (procedure.superimpose: reversed
 * recordings re-encoded), decodes the result, then sorts it by t with a stable argsort. This
 * file decodes each recording straight into the columns (a reversed one from its last event,
 * t' = max(t) - t), then sorts by t stably with a natural merge sort: a superimposed sample is a
 * few runs already in time order, merged in linear time. A stable sort has one result, so the
 * columns are the numpy route's exactly; the tests compare the two on many inputs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* An event while sorting: t in the high 32 bits (the sort key), then x, y, p. */
static inline uint64_t pack(uint32_t t, uint8_t x, uint8_t y, uint8_t p)
{
    return (uint64_t)t << 32 | (uint32_t)x << 16 | (uint32_t)y << 8 | p;
}

static inline uint32_t bin_t(const uint8_t *r)
{
    return (uint32_t)(r[2] & 0x7F) << 16 | (uint32_t)r[3] << 8 | r[4];
}

/* Stable natural merge sort of a[0..n) by the high 32 bits, tmp of n; returns the sorted one
 * (a single recording, already in order, is only scanned). */
static uint64_t *merge_sort(uint64_t *a, uint64_t *tmp, Py_ssize_t n)
{
    for (;;) {
        Py_ssize_t first = 1;
        while (first < n && a[first] >> 32 >= a[first - 1] >> 32)
            first++;
        if (first >= n)
            return a;
        Py_ssize_t i = 0, o = 0;
        while (i < n) {
            Py_ssize_t mid = i ? i + 1 : first;
            while (mid < n && a[mid] >> 32 >= a[mid - 1] >> 32)
                mid++;
            Py_ssize_t end = mid;
            if (end < n) {
                end++;
                while (end < n && a[end] >> 32 >= a[end - 1] >> 32)
                    end++;
            }
            /* Merge [i, mid) and [mid, end); on equal t the left run's event comes first. */
            Py_ssize_t l = i, r = mid;
            while (l < mid && r < end)
                tmp[o++] = (a[r] >> 32 < a[l] >> 32) ? a[r++] : a[l++];
            while (l < mid)
                tmp[o++] = a[l++];
            while (r < end)
                tmp[o++] = a[r++];
            i = end;
        }
        uint64_t *swap = a;
        a = tmp;
        tmp = swap;
    }
}

/* assemble(parts, reversed, swap_polarity, x, y, t, p, start) -> events written: the parts
 * (.bin bytes, in output order) decoded into x, y, p (uint8) and t (uint32) from `start`, the
 * reversed ones time-reversed (polarity swapped on request), the whole sorted by t, stably. */
static PyObject *assemble(PyObject *self, PyObject *args)
{
    PyObject *parts, *flags;
    int swap;
    Py_buffer xb, yb, tb, pb;
    Py_ssize_t start;
    if (!PyArg_ParseTuple(args, "O!O!pw*w*w*w*n", &PyTuple_Type, &parts, &PyTuple_Type, &flags,
                          &swap, &xb, &yb, &tb, &pb, &start))
        return NULL;
    PyObject *result = NULL;
    uint64_t *buf = NULL;
    Py_ssize_t count = PyTuple_GET_SIZE(parts), n = 0;
    if (PyTuple_GET_SIZE(flags) != count) {
        PyErr_SetString(PyExc_ValueError, "assemble: one flag per part");
        goto done;
    }
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *part = PyTuple_GET_ITEM(parts, k);
        if (!PyBytes_Check(part) || PyBytes_GET_SIZE(part) % 5) {
            PyErr_SetString(PyExc_ValueError, "assemble: parts are bytes of whole 5-byte events");
            goto done;
        }
        n += PyBytes_GET_SIZE(part) / 5;
    }
    if (start < 0 || xb.len < start + n || yb.len < start + n || pb.len < start + n ||
        tb.len < 4 * (start + n)) {
        PyErr_SetString(PyExc_ValueError, "assemble: the columns are too short");
        goto done;
    }
    buf = malloc(2 * (size_t)(n ? n : 1) * sizeof(uint64_t));
    if (buf == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t at = 0;
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *part = PyTuple_GET_ITEM(parts, k);
        const uint8_t *r = (const uint8_t *)PyBytes_AS_STRING(part);
        Py_ssize_t m = PyBytes_GET_SIZE(part) / 5;
        int reversed = PyObject_IsTrue(PyTuple_GET_ITEM(flags, k));
        if (reversed < 0)
            goto done;
        if (!reversed) {
            for (Py_ssize_t i = 0; i < m; i++, r += 5)
                buf[at++] = pack(bin_t(r), r[0], r[1], r[2] >> 7);
            continue;
        }
        uint32_t top = 0;
        for (Py_ssize_t i = 0; i < m; i++)
            if (bin_t(r + 5 * i) > top)
                top = bin_t(r + 5 * i);
        for (Py_ssize_t i = m - 1; i >= 0; i--) {
            const uint8_t *e = r + 5 * i;
            buf[at++] = pack(top - bin_t(e), e[0], e[1], (uint8_t)((e[2] >> 7) ^ (swap != 0)));
        }
    }
    const uint64_t *sorted = merge_sort(buf, buf + n, n);
    uint8_t *x = (uint8_t *)xb.buf + start, *y = (uint8_t *)yb.buf + start;
    uint8_t *p = (uint8_t *)pb.buf + start;
    uint32_t *t = (uint32_t *)tb.buf + start;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t e = sorted[i];
        t[i] = (uint32_t)(e >> 32);
        x[i] = (uint8_t)(e >> 16);
        y[i] = (uint8_t)(e >> 8);
        p[i] = (uint8_t)e;
    }
    result = PyLong_FromSsize_t(n);
done:
    free(buf);
    PyBuffer_Release(&xb);
    PyBuffer_Release(&yb);
    PyBuffer_Release(&tb);
    PyBuffer_Release(&pb);
    return result;
}

static PyMethodDef methods[] = {
    {"assemble", assemble, METH_VARARGS,
     "assemble(parts, reversed, swap_polarity, x, y, t, p, start) -> events written"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_assemble", NULL, -1, methods};

PyMODINIT_FUNC PyInit__assemble(void) { return PyModule_Create(&module); }
