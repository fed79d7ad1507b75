/* ODG events of one image in one pass, for odg.py.
 *
 * Python computes everything that carries the reference's arithmetic: the nearest-neighbour
 * source indices (float32, as torch) and the 256 x 256 sign table (float32 differences against a
 * float32 threshold). This file only gathers, looks up and emits, in the order of
 * `convert_numpy`: by t; within a t the positive events, then the negative ones, each by row
 * and then column. The tests check both paths against a plain float-canvas implementation.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define STEPS 8
#define WIN_LO 17  /* first kept canvas row/col (16 < row) */
#define WIN_HI 240 /* one past the last (row < 240) */
#define SIDE 254
#define BORDER 2 /* zeros around V so every offset (0..2) reads inside the padded image */

/* Whether index i of the canvas lies in a strip swept by an edge moving from a0 to a. */
static int swept(int i, int a, int a0, int size)
{
    int lo = a < a0 ? a : a0, hi = a < a0 ? a0 : a;
    return (i >= lo && i < hi) || (i >= lo + size && i < hi + size);
}

/* Event codes of one canvas row: 1 positive, 2 negative, 0 none.
 *
 * With cutoffs (kp, kn) the sign table is known to be "a - b >= kp" / "b - a >= kn" (odg.py
 * checks that over all 65536 pairs before passing them), and this loop vectorises. Otherwise the
 * table itself is looked up. */
static void row_codes(uint8_t *code, const uint8_t *a, const uint8_t *b, int lo, int hi,
                      int kp, int kn, const int8_t *sign)
{
    if (kp > 0 && kn > 0) {
        for (int col = lo; col < hi; col++) {
            int d = (int)a[col] - (int)b[col];
            code[col] = (uint8_t)((d >= kp) | ((-d >= kn) << 1));
        }
    } else {
        for (int col = lo; col < hi; col++) {
            int s = sign[(a[col] << 8) | b[col]];
            code[col] = (uint8_t)((s > 0) | ((s < 0) << 1));
        }
    }
}

static PyObject *convert(PyObject *self, PyObject *args)
{
    Py_buffer rgb, rows, cols, table, trace, out;
    Py_ssize_t h0, w0;
    int kp, kn;
    if (!PyArg_ParseTuple(args, "y*nny*y*y*iiy*w*", &rgb, &h0, &w0, &rows, &cols, &table, &kp,
                          &kn, &trace, &out))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t h = rows.len / 4, w = cols.len / 4;
    Py_ssize_t cap = out.len / 4;
    uint8_t *pad = NULL, *neg = NULL;
    if (rgb.len != h0 * w0 * 3 || table.len != 65536 || trace.len != 2 * (STEPS + 1) ||
        h < 1 || w < 1 || h > SIDE || w > SIDE) {
        PyErr_SetString(PyExc_ValueError, "odg: inconsistent buffers");
        goto done;
    }
    const int32_t *ri = rows.buf, *ci = cols.buf;
    for (Py_ssize_t i = 0; i < h; i++)
        if (ri[i] < 0 || ri[i] >= h0) {
            PyErr_SetString(PyExc_ValueError, "odg: row index out of range");
            goto done;
        }
    for (Py_ssize_t j = 0; j < w; j++)
        if (ci[j] < 0 || ci[j] >= w0) {
            PyErr_SetString(PyExc_ValueError, "odg: column index out of range");
            goto done;
        }
    /* V resized, inside a zero border; canvas (row, col) of frame (r, c) reads
     * pad[(row - r + BORDER) * pw + (col - c + BORDER)], and rows up to h + 3 stay inside. */
    Py_ssize_t pw = w + 2 * BORDER + 2, ph = h + 2 * BORDER + 2;
    pad = calloc((size_t)(ph * pw), 1);
    neg = malloc((size_t)(WIN_HI + 8) * (WIN_HI + 8) * 2);
    if (!pad || !neg) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t n = 0;
    Py_BEGIN_ALLOW_THREADS
    const uint8_t *src = rgb.buf;
    for (Py_ssize_t i = 0; i < h; i++) {
        const uint8_t *line = src + (Py_ssize_t)ri[i] * w0 * 3;
        uint8_t *dst = pad + (i + BORDER) * pw + BORDER;
        for (Py_ssize_t j = 0; j < w; j++) {
            const uint8_t *px = line + (Py_ssize_t)ci[j] * 3;
            uint8_t m = px[0] > px[1] ? px[0] : px[1];
            dst[j] = m > px[2] ? m : px[2];
        }
    }
    const int8_t *sign = table.buf;
    const uint8_t *tr = trace.buf;
    uint8_t *o_row = out.buf, *o_col = o_row + cap, *o_t = o_col + cap, *o_p = o_t + cap;
    int row_end = (int)(h + 4 < WIN_HI ? h + 4 : WIN_HI);
    int col_end = (int)(w + 4 < WIN_HI ? w + 4 : WIN_HI);
    /* Codes padded to a whole number of 8-byte words, so the scan can skip empty words. */
    uint8_t code[WIN_HI + 8] __attribute__((aligned(8)));
    for (int t = 1; t <= STEPS && n >= 0; t++) {
        int r = tr[2 * t], c = tr[2 * t + 1], r0 = tr[2 * t - 2], c0 = tr[2 * t - 1];
        int clo = c < c0 ? c : c0, chi = c < c0 ? c0 : c;
        Py_ssize_t nneg = 0, first = n;
        for (int row = WIN_LO; row < row_end; row++) {
            if (swept(row, r, r0, (int)h))
                continue;
            const uint8_t *a = pad + (row - r + BORDER) * pw + BORDER - c;
            const uint8_t *b = pad + (row - r0 + BORDER) * pw + BORDER - c0;
            memset(code, 0, sizeof code);
            row_codes(code, a, b, WIN_LO, col_end, kp, kn, sign);
            /* The swept column strips (Python slices: empty when the bounds are reversed). */
            for (int k = clo; k < chi; k++)
                code[k] = 0;
            for (int k = clo + (int)w; k < chi + (int)w && k < WIN_HI; k++)
                code[k] = 0;
            if (n + col_end + 8 > cap) {
                n = -1;
                break;
            }
            for (int base = 0; base < col_end; base += 8) {
                uint64_t word;
                memcpy(&word, code + base, 8);
                if (!word)
                    continue;
                /* Branch-free: events are too dense and irregular for branches to predict.
                 * Each position is written at the next free slot, which only advances for an
                 * event; the output has room for one more row. */
                for (int col = base; col < base + 8; col++) {
                    int k = code[col];
                    o_row[n] = (uint8_t)row, o_col[n] = (uint8_t)col;
                    n += k & 1;
                    neg[2 * nneg] = (uint8_t)row, neg[2 * nneg + 1] = (uint8_t)col;
                    nneg += k >> 1;
                }
            }
        }
        if (n < 0 || n + nneg > cap) {
            n = -1;
            break;
        }
        memset(o_t + first, t, (size_t)(n - first));
        memset(o_p + first, 1, (size_t)(n - first));
        for (Py_ssize_t k = 0; k < nneg; k++, n++)
            o_row[n] = neg[2 * k], o_col[n] = neg[2 * k + 1], o_t[n] = (uint8_t)t, o_p[n] = 0;
    }
    Py_END_ALLOW_THREADS
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "odg: output buffer too small");
        goto done;
    }
    result = PyLong_FromSsize_t(n);
done:
    free(pad);
    free(neg);
    PyBuffer_Release(&rgb);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&cols);
    PyBuffer_Release(&table);
    PyBuffer_Release(&trace);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"convert", convert, METH_VARARGS,
     "convert(rgb, h0, w0, rows, cols, table, kp, kn, trace, out) -> number of events"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_odg", NULL, -1, methods};

PyMODINIT_FUNC PyInit__odg(void) { return PyModule_Create(&module); }
