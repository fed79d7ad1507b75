/* A zlib stream for data made of long runs of one value: runs.py says what and why, and its
 * encode_python is the readable version of this file (the tests check they write the same bytes).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_MATCH 258

static const uint16_t length_base[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,
                                         15, 17, 19, 23, 27, 31, 35, 43, 51,  59,
                                         67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t length_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                         2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};

typedef struct {
    uint8_t *out;
    Py_ssize_t n;
    uint64_t value;
    int count;
} bits;

/* Fields go least-significant bit first. Callers keep `count` below 32 between calls. */
static inline void put(bits *b, uint32_t value, int width)
{
    b->value |= (uint64_t)value << b->count;
    b->count += width;
    while (b->count >= 8) {
        b->out[b->n++] = (uint8_t)b->value;
        b->value >>= 8;
        b->count -= 8;
    }
}

/* Huffman codes go most-significant bit first. */
static inline void code(bits *b, uint32_t c, int width)
{
    uint32_t r = 0;
    for (int i = 0; i < width; i++)
        r |= ((c >> i) & 1u) << (width - 1 - i);
    put(b, r, width);
}

static inline void literal_or_length(bits *b, int symbol)
{
    if (symbol < 144)
        code(b, 0x30u + (uint32_t)symbol, 8);
    else if (symbol < 256)
        code(b, 0x190u + (uint32_t)(symbol - 144), 9);
    else if (symbol < 280)
        code(b, (uint32_t)(symbol - 256), 7);
    else
        code(b, 0xC0u + (uint32_t)(symbol - 280), 8);
}

static inline void match(bits *b, int length)
{
    int index = 28;
    while (length_base[index] > length)
        index--;
    literal_or_length(b, 257 + index);
    put(b, (uint32_t)(length - length_base[index]), length_extra[index]);
    code(b, 0, 5); /* distance code 0: distance 1 */
}

/* Adler-32 over a run of `length` bytes of `value`, in closed form: a grows by length * value,
 * and s by length * a + value * length * (length + 1) / 2 (all mod 65521). */
static inline void adler_run(uint64_t *a, uint64_t *s, uint8_t value, uint64_t length)
{
    const uint64_t mod = 65521u;
    uint64_t l = length % mod, tri = (length % (2 * mod)) * ((length + 1) % (2 * mod)) / 2 % mod;
    *s = (*s + l * *a + value * tri) % mod;
    *a = (*a + l * value) % mod;
}

/* The end of the run of data[i] (data[i..end) all equal), eight bytes at a time. */
static inline Py_ssize_t run_end(const uint8_t *data, Py_ssize_t i, Py_ssize_t n)
{
    uint8_t value = data[i];
    uint64_t all = 0x0101010101010101ULL * value;
    Py_ssize_t j = i + 1;
    while (j + 8 <= n) {
        uint64_t word;
        memcpy(&word, data + j, 8);
        if (word != all)
            break;
        j += 8;
    }
    while (j < n && data[j] == value)
        j++;
    return j;
}

static PyObject *encode(PyObject *self, PyObject *args)
{
    Py_buffer in;
    if (!PyArg_ParseTuple(args, "y*", &in))
        return NULL;
    const uint8_t *data = in.buf;
    Py_ssize_t n = in.len;
    /* At worst 9 bits per byte, plus the header, block bits, end code and trailer. */
    Py_ssize_t cap = n + n / 8 + 16;
    PyObject *result = PyBytes_FromStringAndSize(NULL, cap);
    if (result == NULL) {
        PyBuffer_Release(&in);
        return NULL;
    }
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(result);
    out[0] = 0x78;
    out[1] = 0x01;
    bits b = {out, 2, 0, 0};
    Py_BEGIN_ALLOW_THREADS
    put(&b, 1, 1); /* BFINAL */
    put(&b, 1, 2); /* BTYPE 01: fixed Huffman codes */
    uint64_t a = 1, sum = 0;
    Py_ssize_t i = 0;
    while (i < n) {
        uint8_t value = data[i];
        Py_ssize_t j = run_end(data, i, n);
        adler_run(&a, &sum, value, (uint64_t)(j - i));
        literal_or_length(&b, value);
        Py_ssize_t left = j - i - 1;
        while (left >= 3) {
            int take = left < MAX_MATCH ? (int)left : MAX_MATCH;
            match(&b, take);
            left -= take;
        }
        for (; left > 0; left--)
            literal_or_length(&b, value);
        i = j;
    }
    literal_or_length(&b, 256); /* end of block */
    if (b.count)
        b.out[b.n++] = (uint8_t)b.value;
    uint32_t check = (uint32_t)(sum << 16 | a);
    for (int k = 3; k >= 0; k--)
        b.out[b.n++] = (uint8_t)(check >> (8 * k));
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&in);
    if (_PyBytes_Resize(&result, b.n) < 0)
        return NULL;
    return result;
}

static PyMethodDef methods[] = {
    {"encode", encode, METH_VARARGS, "encode(data) -> zlib stream of runs (see runs.py)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_runs", NULL, -1, methods};

PyMODINIT_FUNC PyInit__runs(void) { return PyModule_Create(&module); }
