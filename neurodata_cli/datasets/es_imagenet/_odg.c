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

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define PACKED_EMIT 1
/* For an 8-bit mask m: the positions of its set bits, ascending, one per byte (then zeros), and
 * how many there are. Emitting a word of 8 codes is then two lookups and whole-word stores. */
static uint64_t set_positions[256];
static uint8_t set_count[256];

static void init_tables(void)
{
    for (int m = 0; m < 256; m++) {
        uint64_t packed = 0;
        int k = 0;
        for (int bit = 0; bit < 8; bit++)
            if (m >> bit & 1)
                packed |= (uint64_t)bit << (8 * k++);
        set_positions[m] = packed;
        set_count[m] = (uint8_t)k;
    }
}

/* Bit i of the result is the low bit of byte i of `bytes` (each byte 0 or 1). */
static inline unsigned byte_mask(uint64_t bytes)
{
    return (unsigned)((bytes * 0x0102040810204080ULL) >> 56);
}
#endif

#define ONES 0x0101010101010101ULL

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
static void row_codes(uint8_t *restrict code, const uint8_t *restrict a,
                      const uint8_t *restrict b, int lo, int hi, int kp, int kn,
                      const int8_t *sign)
{
    if (kp > 0 && kn > 0 && kp < 256 && kn < 256) {
        /* In byte lanes: a - b >= kp exactly when the saturating difference is. */
        uint8_t up = (uint8_t)kp, down = (uint8_t)kn;
        for (int col = lo; col < hi; col++) {
            uint8_t x = a[col], y = b[col];
            uint8_t rise = x > y ? (uint8_t)(x - y) : 0, fall = y > x ? (uint8_t)(y - x) : 0;
            code[col] = (uint8_t)((rise >= up) | ((fall >= down) << 1));
        }
    } else {
        for (int col = lo; col < hi; col++) {
            int s = sign[(a[col] << 8) | b[col]];
            code[col] = (uint8_t)((s > 0) | ((s < 0) << 1));
        }
    }
}

/* row_codes' cut test over canvas columns [WIN_LO - 1, WIN_HI): 224 bytes, a whole number of
 * vectors. With a constant span the compiler emits no scalar tail, which cost as much as the
 * vector loop itself. */
static inline void cut_codes(uint8_t *restrict code, const uint8_t *restrict a,
                             const uint8_t *restrict b, uint8_t up, uint8_t down)
{
    for (int col = WIN_LO - 1; col < WIN_HI; col++) {
        uint8_t x = a[col], y = b[col];
        uint8_t rise = x > y ? (uint8_t)(x - y) : 0, fall = y > x ? (uint8_t)(y - x) : 0;
        code[col] = (uint8_t)((rise >= up) | ((fall >= down) << 1));
    }
}

/* The Arrow C data interface (a stable ABI), through which Pillow >= 11.2 lends an image's
 * pixels without copying them: RGB images as fixed-size lists of 4 bytes (R, G, B, padding). */
struct ArrowSchema {
    const char *format;
    const char *name;
    const char *metadata;
    int64_t flags;
    int64_t n_children;
    struct ArrowSchema **children;
    struct ArrowSchema *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};

struct ArrowArray {
    int64_t length;
    int64_t null_count;
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};

/* The RGBX bytes of an exported h0 x w0 image, or NULL (with an exception set). */
static const uint8_t *arrow_pixels(PyObject *pair, Py_ssize_t h0, Py_ssize_t w0)
{
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
        PyErr_SetString(PyExc_TypeError, "odg: expected (arrow_schema, arrow_array) capsules");
        return NULL;
    }
    struct ArrowSchema *schema = PyCapsule_GetPointer(PyTuple_GET_ITEM(pair, 0), "arrow_schema");
    struct ArrowArray *array = PyCapsule_GetPointer(PyTuple_GET_ITEM(pair, 1), "arrow_array");
    if (schema == NULL || array == NULL)
        return NULL;
    if (schema->format == NULL || strcmp(schema->format, "+w:4") != 0 ||
        schema->n_children != 1 || schema->children[0]->format == NULL ||
        strcmp(schema->children[0]->format, "C") != 0 || array->n_children != 1 ||
        array->length != h0 * w0 || array->offset != 0 || array->null_count != 0) {
        PyErr_SetString(PyExc_ValueError, "odg: not an exported RGB image of that size");
        return NULL;
    }
    struct ArrowArray *bytes = array->children[0];
    if (bytes->n_buffers != 2 || bytes->length != 4 * h0 * w0 || bytes->offset != 0 ||
        bytes->null_count != 0 || bytes->buffers[1] == NULL) {
        PyErr_SetString(PyExc_ValueError, "odg: unexpected layout of the exported pixels");
        return NULL;
    }
    return bytes->buffers[1];
}

/* V = max(R, G, B) at the nearest-neighbour source pixels, into the zero-bordered pad. Inlined
 * with a constant pixel size, so that each pixel costs a few instructions. */
static inline __attribute__((always_inline)) void
gather_value(const uint8_t *src, Py_ssize_t step, Py_ssize_t w0, const int32_t *ri,
             const int32_t *ci, Py_ssize_t h, Py_ssize_t w, uint8_t *pad, Py_ssize_t pw)
{
    for (Py_ssize_t i = 0; i < h; i++) {
        const uint8_t *line = src + (Py_ssize_t)ri[i] * w0 * step;
        uint8_t *dst = pad + (i + BORDER) * pw + BORDER;
        for (Py_ssize_t j = 0; j < w; j++) {
            const uint8_t *px = line + (Py_ssize_t)ci[j] * step;
            uint8_t m = px[0] > px[1] ? px[0] : px[1];
            dst[j] = m > px[2] ? m : px[2];
        }
    }
}

static PyObject *convert(PyObject *self, PyObject *args)
{
    PyObject *pixels;
    Py_buffer rgb = {0}, rows, cols, table, trace, out;
    Py_ssize_t h0, w0;
    int kp, kn;
    if (!PyArg_ParseTuple(args, "Onny*y*y*iiy*w*", &pixels, &h0, &w0, &rows, &cols, &table, &kp,
                          &kn, &trace, &out))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t h = rows.len / 4, w = cols.len / 4;
    Py_ssize_t cap = out.len / 4;
    uint8_t *pad = NULL, *neg_row = NULL, *neg_col = NULL;
    /* The pixels: a buffer of packed RGB, or an image lent through Arrow (RGBX). */
    const uint8_t *src;
    Py_ssize_t step;
    if (PyTuple_Check(pixels)) {
        src = arrow_pixels(pixels, h0, w0);
        step = 4;
        if (src == NULL)
            goto done;
    } else {
        if (PyObject_GetBuffer(pixels, &rgb, PyBUF_SIMPLE) < 0)
            goto done;
        src = rgb.buf;
        step = 3;
        if (rgb.len != h0 * w0 * 3) {
            PyErr_SetString(PyExc_ValueError, "odg: the RGB buffer is not h0 x w0 x 3");
            goto done;
        }
    }
    if (table.len != 65536 || trace.len != 2 * (STEPS + 1) ||
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
    /* The slack covers cut_codes, which reads WIN_HI bytes from a row's start: at most 241
     * bytes past the last row. */
    pad = calloc((size_t)(ph * pw) + 512, 1);
    /* A step's negatives, held until its positives are out; 8 bytes of slack for word stores. */
    size_t neg_cap = (size_t)(WIN_HI + 8) * (WIN_HI + 8) + 16;
    neg_row = malloc(neg_cap);
    neg_col = malloc(neg_cap);
    if (!pad || !neg_row || !neg_col) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t n = 0;
    Py_BEGIN_ALLOW_THREADS
    if (step == 4)
        gather_value(src, 4, w0, ri, ci, h, w, pad, pw);
    else
        gather_value(src, 3, w0, ri, ci, h, w, pad, pw);
    const int8_t *sign = table.buf;
    const uint8_t *tr = trace.buf;
    uint8_t *o_row = out.buf, *o_col = o_row + cap, *o_t = o_col + cap, *o_p = o_t + cap;
    int row_end = (int)(h + 4 < WIN_HI ? h + 4 : WIN_HI);
    int col_end = (int)(w + 4 < WIN_HI ? w + 4 : WIN_HI);
    /* Codes padded to a whole number of 8-byte words, so the scan can skip empty words. */
    uint8_t code[WIN_HI + 8] __attribute__((aligned(16)));
    /* Zeroed once: each row rewrites [WIN_LO, col_end) (the cut span also rewrites zeros around
     * it), and the strips only clear. */
    memset(code, 0, sizeof code);
    int cut = kp > 0 && kn > 0 && kp < 256 && kn < 256;
    int words = (col_end + 7) / 8; /* at most 30: one bit each in a uint32_t */
    for (int t = 1; t <= STEPS && n >= 0; t++) {
        int r = tr[2 * t], c = tr[2 * t + 1], r0 = tr[2 * t - 2], c0 = tr[2 * t - 1];
        int clo = c < c0 ? c : c0, chi = c < c0 ? c0 : c;
        Py_ssize_t nneg = 0, first = n;
        for (int row = WIN_LO; row < row_end; row++) {
            if (swept(row, r, r0, (int)h))
                continue;
            const uint8_t *a = pad + (row - r + BORDER) * pw + BORDER - c;
            const uint8_t *b = pad + (row - r0 + BORDER) * pw + BORDER - c0;
            if (cut) {
                /* The whole span (no scalar tail), then the columns outside the window
                 * cleared; reads past the row stay inside pad's slack. */
                cut_codes(code, a, b, (uint8_t)kp, (uint8_t)kn);
                code[WIN_LO - 1] = 0;
                memset(code + col_end, 0, (size_t)(WIN_HI - col_end));
            } else {
                row_codes(code, a, b, WIN_LO, col_end, kp, kn, sign);
            }
            /* The swept column strips (Python slices: empty when the bounds are reversed). */
            for (int k = clo; k < chi; k++)
                code[k] = 0;
            for (int k = clo + (int)w; k < chi + (int)w && k < WIN_HI; k++)
                code[k] = 0;
            if (n + col_end + 8 > cap) {
                n = -1;
                break;
            }
            /* Within a word, no branch: events are too dense and irregular to predict. Words
             * are written whole at the next free slot, which advances by the events in them;
             * the output has room for one more row, and 8 bytes more. */
#ifdef PACKED_EMIT
            uint64_t row8 = (uint64_t)row * ONES;
            /* Which words hold events, found without a branch; then only those are visited.
             * A branch per word (a fifth of them hold events, in no pattern) mispredicted
             * often enough to cost 30 us an image, a sixth of the conversion. */
            uint32_t live = 0;
            for (int k = 0; k < words; k++) {
                uint64_t word;
                memcpy(&word, code + 8 * k, 8);
                live |= (uint32_t)(word != 0) << k;
            }
            while (live) {
                int base = 8 * __builtin_ctz(live);
                live &= live - 1;
                uint64_t word;
                memcpy(&word, code + base, 8);
                unsigned pm = byte_mask(word & ONES), nm = byte_mask((word >> 1) & ONES);
                uint64_t at = (uint64_t)base * ONES;
                uint64_t pcols = set_positions[pm] + at, ncols = set_positions[nm] + at;
                memcpy(o_row + n, &row8, 8);
                memcpy(o_col + n, &pcols, 8);
                n += set_count[pm];
                memcpy(neg_row + nneg, &row8, 8);
                memcpy(neg_col + nneg, &ncols, 8);
                nneg += set_count[nm];
            }
#else
            for (int base = 0; base < col_end; base += 8) {
                uint64_t word;
                memcpy(&word, code + base, 8);
                if (!word)
                    continue;
                for (int col = base; col < base + 8; col++) {
                    int k = code[col];
                    o_row[n] = (uint8_t)row, o_col[n] = (uint8_t)col;
                    n += k & 1;
                    neg_row[nneg] = (uint8_t)row, neg_col[nneg] = (uint8_t)col;
                    nneg += k >> 1;
                }
            }
#endif
        }
        if (n < 0 || n + nneg > cap) {
            n = -1;
            break;
        }
        memset(o_t + first, t, (size_t)(n - first));
        memset(o_p + first, 1, (size_t)(n - first));
        memcpy(o_row + n, neg_row, (size_t)nneg);
        memcpy(o_col + n, neg_col, (size_t)nneg);
        memset(o_t + n, t, (size_t)nneg);
        memset(o_p + n, 0, (size_t)nneg);
        n += nneg;
    }
    Py_END_ALLOW_THREADS
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "odg: output buffer too small");
        goto done;
    }
    result = PyLong_FromSsize_t(n);
done:
    free(pad);
    free(neg_row);
    free(neg_col);
    if (rgb.obj != NULL)
        PyBuffer_Release(&rgb);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&cols);
    PyBuffer_Release(&table);
    PyBuffer_Release(&trace);
    PyBuffer_Release(&out);
    return result;
}

#define FRAME 224

/* One field of the events (x, y, t or p): a 1-D buffer of integers of 1, 2, 4 or 8 bytes, signed
 * or not, read in place through its stride, so a field view of any structured array needs no
 * copy. */
typedef struct {
    const char *at; /* element 0 */
    Py_ssize_t stride, size;
    int is_signed;
    uint64_t mask;  /* the item's bits */
    uint64_t sign;  /* its sign bit; 0 if unsigned */
    uint64_t guard; /* uint64: the top bit (such a value is outside every range here); else 0 */
} Field;

/* Fills f from obj, or sets ValueError naming the field. Only integers in this machine's byte
 * order are read; the caller converts anything else. */
static int field_open(Field *f, Py_buffer *view, PyObject *obj, const char *name)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_STRIDES | PyBUF_FORMAT) < 0)
        return -1;
    const char *fmt = view->format ? view->format : "B";
    int native = 1;
    if (*fmt == '@' || *fmt == '=')
        fmt++;
    else if (*fmt == '<' || *fmt == '>' || *fmt == '!') {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        native = *fmt != '<';
#else
        native = *fmt == '<';
#endif
        fmt++;
    }
    Py_ssize_t size = view->itemsize;
    if (!native || fmt[0] == '\0' || fmt[1] != '\0' || !strchr("bBhHiIlLqQnN", fmt[0]) ||
        (size != 1 && size != 2 && size != 4 && size != 8) || view->ndim != 1) {
        PyErr_Format(PyExc_ValueError, "frames: %s is not a 1-D array of native integers of 1, "
                     "2, 4 or 8 bytes (buffer format '%s', %zd bytes, %d dimensions)", name,
                     view->format ? view->format : "B", size, view->ndim);
        PyBuffer_Release(view);
        return -1;
    }
    f->at = view->buf;
    f->stride = view->strides[0];
    f->size = size;
    f->is_signed = fmt[0] >= 'a'; /* lower case: signed */
    f->mask = size == 8 ? UINT64_MAX : (UINT64_C(1) << (8 * size)) - 1;
    f->sign = f->is_signed ? UINT64_C(1) << (8 * size - 1) : 0;
    f->guard = size == 8 && !f->is_signed ? UINT64_C(1) << 63 : 0;
    return 0;
}

/* The bits of the item at `at`, zero-extended. With whole, 8 bytes are loaded and the item's
 * bits kept: one load and an and, whatever the item's size. */
static inline uint64_t item_bits(const char *at, const Field *f, int whole)
{
    uint64_t w = 0;
    memcpy(&w, at, whole ? 8 : (size_t)f->size);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return w >> (64 - 8 * f->size); /* the item is the word's first, high-order, bytes */
#else
    return w & f->mask;
#endif
}

/* Narrows [lo, hi) to the events (of n) whose item's 8 bytes lie within the field's extent (from
 * its lowest item to the end of its highest), so reading them whole touches only the exporter's
 * memory: with stride 13, all but the last (stride > 0) or the first (stride < 0) item of a
 * narrower field. */
static void field_whole(const Field *f, Py_ssize_t n, Py_ssize_t *lo, Py_ssize_t *hi)
{
    Py_ssize_t over = 8 - f->size, s = f->stride < 0 ? -f->stride : f->stride;
    Py_ssize_t edge = over == 0 ? 0 : s == 0 ? n : (over + s - 1) / s;
    if (edge > n)
        edge = n;
    if (f->stride < 0 && edge > *lo)
        *lo = edge;
    if (f->stride >= 0 && n - edge < *hi)
        *hi = n - edge;
}

/* Sets the pixel of an event whose t - 1 and p are in range, if row r and column c (unsigned:
 * one comparison each) are inside the crop. */
static inline void put_pixel(uint8_t *o, uint64_t t, uint64_t p, uint64_t r, uint64_t c)
{
    if (r < FRAME && c < FRAME)
        o[(STEPS - STEPS * p + t) * (FRAME * FRAME) + r * FRAME + c] = 1;
}

/* Events [i, n) of any fields, each item read alone; returns n, or the first refused event.
 * With its sign bit flipped, which orders signed items as unsigned ones, an item minus (its
 * sign bit - shift) is below FRAME exactly when 0 <= item + shift < FRAME, in unsigned 64-bit
 * arithmetic; guard leaves out the one kind where that wraps (a uint64 above INT64_MAX). */
static Py_ssize_t put_any(const Field *fx, const Field *fy, const Field *ft, const Field *fp,
                          Py_ssize_t i, Py_ssize_t n, int dr, int dc, uint8_t *o)
{
    uint64_t kx = fx->sign - (uint64_t)(int64_t)dc, ky = fy->sign - (uint64_t)(int64_t)dr;
    for (; i < n; i++) {
        /* A negative t or p has its top bit set, so its bits are out of range as unsigned too. */
        uint64_t t = item_bits(ft->at + i * ft->stride, ft, 0) - 1,
                 p = item_bits(fp->at + i * fp->stride, fp, 0);
        if (t >= STEPS || p > 1)
            return i;
        uint64_t x = item_bits(fx->at + i * fx->stride, fx, 0),
                 y = item_bits(fy->at + i * fy->stride, fy, 0);
        if (!((x & fx->guard) | (y & fy->guard)))
            put_pixel(o, t, p, (y ^ fy->sign) - ky, (x ^ fx->sign) - kx);
    }
    return n;
}

/* Events [i, hi) of fields with one nonzero stride (field views of one structured array) and x, y
 * of one C type, t and p read whole; returns hi, or the first refused event. One loop per type
 * of x and y (PUT_TYPED): the reader's events then cost what they cost in the former kernel,
 * which knew only their 13-byte record. Reading x and y by their bits too, or each field by a
 * switch on its kind, took 1.2 and 2.3 times as long. */
#define PUT_TYPED(name, type)                                                                   \
    static Py_ssize_t name(const Field *fx, const Field *fy, const Field *ft, const Field *fp,   \
                           Py_ssize_t i, Py_ssize_t hi, int dr, int dc, uint8_t *o)             \
    {                                                                                           \
        const char *ax = fx->at, *ay = fy->at, *at = ft->at, *ap = fp->at;                      \
        const Py_ssize_t stride = fx->stride, end = hi * stride;                                \
        const uint64_t kr = (uint64_t)(int64_t)dr, kc = (uint64_t)(int64_t)dc;                  \
        const Field tf = *ft, pf = *fp; /* copies: stores through o cannot change them */        \
        for (Py_ssize_t off = i * stride; off != end; off += stride) {                          \
            uint64_t t = item_bits(at + off, &tf, 1) - 1, p = item_bits(ap + off, &pf, 1);      \
            if (t >= STEPS || p > 1)                                                            \
                return off / stride;                                                            \
            type x, y;                                                                          \
            memcpy(&x, ax + off, sizeof x);                                                     \
            memcpy(&y, ay + off, sizeof y);                                                     \
            put_pixel(o, t, p, (uint64_t)(int64_t)y + kr, (uint64_t)(int64_t)x + kc);           \
        }                                                                                       \
        return hi;                                                                              \
    }
PUT_TYPED(put_i8, int8_t)
PUT_TYPED(put_u8, uint8_t)
PUT_TYPED(put_i16, int16_t)
PUT_TYPED(put_u16, uint16_t)
PUT_TYPED(put_i32, int32_t)
PUT_TYPED(put_u32, uint32_t)
PUT_TYPED(put_i64, int64_t)
#undef PUT_TYPED

typedef Py_ssize_t (*put_fn)(const Field *, const Field *, const Field *, const Field *,
                             Py_ssize_t, Py_ssize_t, int, int, uint8_t *);

/* The typed loop for x and y of this size and sign; NULL for uint64 (see put_any). */
static put_fn put_typed(Py_ssize_t size, int is_signed)
{
    switch (size) {
    case 1: return is_signed ? put_i8 : put_u8;
    case 2: return is_signed ? put_i16 : put_u16;
    case 4: return is_signed ? put_i32 : put_u32;
    default: return is_signed ? put_i64 : NULL;
    }
}

/* Sets the pixels of events 0..n-1; returns n, or the first refused event. The typed loop takes
 * what it can; put_any the rest: other fields, and the edge events whose t or p cannot be read
 * whole (field_whole). */
static Py_ssize_t put_all(const Field *f, Py_ssize_t n, int dr, int dc, uint8_t *o)
{
    const Field *fx = &f[0], *fy = &f[1], *ft = &f[2], *fp = &f[3];
    put_fn typed = put_typed(fx->size, fx->is_signed);
    if (typed == NULL || fy->size != fx->size || fy->is_signed != fx->is_signed ||
        fx->stride == 0 || fy->stride != fx->stride || ft->stride != fx->stride ||
        fp->stride != fx->stride)
        return put_any(fx, fy, ft, fp, 0, n, dr, dc, o);
    Py_ssize_t lo = 0, hi = n, i;
    field_whole(ft, n, &lo, &hi);
    field_whole(fp, n, &lo, &hi);
    if (hi < lo)
        hi = lo;
    if ((i = put_any(fx, fy, ft, fp, 0, lo, dr, dc, o)) < lo)
        return i;
    if ((i = typed(fx, fy, ft, fp, lo, hi, dr, dc, o)) < hi)
        return i;
    return put_any(fx, fy, ft, fp, hi, n, dr, dc, o);
}

/* frames(x, y, t, p, shift_row, shift_col, out): out[p ? 0 : 1][t - 1][y + shift_row]
 * [x + shift_col] = 1 for each event inside the 224 x 224 crop; out is zeroed by the caller.
 * x, y, t, p are the events' fields as buffers (e.g. field views of a structured array), each
 * integers of any width and sign. One pass over the events; numpy's route (several casts of
 * strided fields, then a scatter) took four times as long. An event with t outside 1..8 or p
 * outside {0, 1} is refused. */
static PyObject *frames(PyObject *self, PyObject *args)
{
    static const char *names[4] = {"x", "y", "t", "p"};
    PyObject *obj[4];
    Field f[4];
    Py_buffer view[4], out;
    int dr, dc, opened = 0;
    if (!PyArg_ParseTuple(args, "OOOOiiw*", &obj[0], &obj[1], &obj[2], &obj[3], &dr, &dc, &out))
        return NULL;
    PyObject *result = NULL;
    for (; opened < 4; opened++)
        if (field_open(&f[opened], &view[opened], obj[opened], names[opened]) < 0)
            goto done;
    Py_ssize_t n = view[0].shape[0];
    if (view[1].shape[0] != n || view[2].shape[0] != n || view[3].shape[0] != n ||
        out.len != 2 * STEPS * FRAME * FRAME) {
        PyErr_SetString(PyExc_ValueError, "frames: expected x, y, t, p of one length and a "
                                          "[2, 8, 224, 224] uint8 output");
        goto done;
    }
    Py_ssize_t i;
    Py_BEGIN_ALLOW_THREADS
    i = put_all(f, n, dr, dc, out.buf);
    Py_END_ALLOW_THREADS
    if (i < n)
        PyErr_Format(PyExc_ValueError, "frames: event %zd has t outside 1..8 or p outside 0, 1",
                     i);
    else
        result = Py_NewRef(Py_None);
done:
    while (opened > 0)
        PyBuffer_Release(&view[--opened]);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"convert", convert, METH_VARARGS,
     "convert(pixels, h0, w0, rows, cols, table, kp, kn, trace, out) -> number of events; "
     "pixels: packed RGB bytes, or an RGB image's (arrow_schema, arrow_array) capsules"},
    {"frames", frames, METH_VARARGS,
     "frames(x, y, t, p, shift_row, shift_col, out): set out[2, 8, 224, 224] where events land; "
     "x, y, t, p: 1-D buffers of integers"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_odg", NULL, -1, methods};

PyMODINIT_FUNC PyInit__odg(void)
{
#ifdef PACKED_EMIT
    init_tables();
#endif
    return PyModule_Create(&module);
}
