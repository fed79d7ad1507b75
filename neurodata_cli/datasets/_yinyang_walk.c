/* The Yin-Yang rejection walk over a block of raw MT19937 words.
 *
 * The reference draws one sample at a time: goal = randint(3), then rand(2) pairs until a point in
 * the big circle has the goal's class. Both calls consume 32-bit MT19937 words in a fixed way, so
 * the walk can run over words drawn in bulk by numpy. This is the same walk as
 * `_walk_python` in yinyang.py, written in C because it is inherently sequential. Every float64
 * expression follows the reference's order of operations; the build turns off FMA contraction so
 * that each product is rounded as numpy rounds it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

/* Compare sqrt(s) with r as the reference does (-1 below, 0 equal, 1 above), cheaply.
 *
 * sqrt is correctly rounded and monotonic, so when s is clearly away from r*r the sign is known
 * without it. The margin (1e-9, relative) is millions of times wider than the rounding error of
 * r*r and of sqrt, so the shortcut never decides differently; near the boundary we take the
 * exact sqrt and compare as the reference does.
 */
typedef struct {
    double r, lo, hi;
} radius;

static radius make_radius(double r)
{
    radius out = {r, r * r * (1.0 - 1e-9), r * r * (1.0 + 1e-9)};
    return out;
}

static int cmp_sqrt(double s, const radius *r)
{
    if (s < r->lo)
        return -1;
    if (s > r->hi)
        return 1;
    double d = sqrt(s);
    return (d > r->r) - (d < r->r);
}

/* Class of a point inside the big circle, as the reference's which_class. */
static int yinyang_class(double x, double y, double r_big, const radius *small, const radius *half)
{
    double dy2 = (y - r_big) * (y - r_big);
    double s_right = (x - 1.5 * r_big) * (x - 1.5 * r_big) + dy2;
    double s_left = (x - 0.5 * r_big) * (x - 0.5 * r_big) + dy2;
    int right_small = cmp_sqrt(s_right, small), left_small = cmp_sqrt(s_left, small);
    if (right_small < 0 || left_small < 0)
        return 2;
    if (right_small <= 0 || (left_small > 0 && cmp_sqrt(s_left, half) <= 0) ||
        (y > r_big && cmp_sqrt(s_right, half) > 0))
        return 1;
    return 0;
}

/* Whether the try at (x, y) is accepted for `goal`: inside the big circle and of that class.
 *
 * Written without branches on the random outcome, which a CPU cannot predict; points within the
 * margin of any boundary (about one in a hundred million) go through the exact comparisons.
 */
static int accepts(double x, double y, int goal, double r_big, const radius *big,
                   const radius *small, const radius *half)
{
    double dy2 = (y - r_big) * (y - r_big);
    double s_big = (x - r_big) * (x - r_big) + dy2;
    double s_right = (x - 1.5 * r_big) * (x - 1.5 * r_big) + dy2;
    double s_left = (x - 0.5 * r_big) * (x - 0.5 * r_big) + dy2;
    int near = ((s_big >= big->lo) & (s_big <= big->hi)) |
               ((s_right >= small->lo) & (s_right <= small->hi)) |
               ((s_left >= small->lo) & (s_left <= small->hi)) |
               ((s_right >= half->lo) & (s_right <= half->hi)) |
               ((s_left >= half->lo) & (s_left <= half->hi));
    if (__builtin_expect(near, 0)) {
        if (cmp_sqrt(s_big, big) > 0)
            return 0;
        return yinyang_class(x, y, r_big, small, half) == goal;
    }
    int inside = s_big < big->lo;
    int right_small = s_right < small->lo, left_small = s_left < small->lo;
    int dot = right_small | left_small;
    int yang = right_small | ((!left_small) & (s_left < half->lo)) |
               ((y > r_big) & (s_right > half->hi));
    int cls = dot ? 2 : yang;
    return inside & (cls == goal);
}

/* rand(): 53 bits from two words, as numpy's legacy random_sample. */
static double uniform(const uint32_t *w)
{
    uint64_t a = w[0] >> 5, b = w[1] >> 6;
    return (double)(a * 67108864ULL + b) * (1.0 / 9007199254740992.0); /* exact: 2**-53 */
}

/* walk(words, start, samples, labels, done, want, r_small, r_big) -> (done, next_start)
 *
 * Reads `words` (uint32) from index `start`, which must be where a sample begins, and writes
 * samples [done, want) as rows x, y, 1-x, 1-y into `samples` (float64, want x 4) and labels into
 * `labels` (int64). Stops early when the words run out; the returned position is then the start
 * of the unfinished sample, so the caller carries the words from there into the next block.
 */
static PyObject *walk(PyObject *self, PyObject *args)
{
    Py_buffer words, samples, labels;
    Py_ssize_t pos, done, want;
    double r_small, r_big;
    if (!PyArg_ParseTuple(args, "y*nw*w*nndd", &words, &pos, &samples, &labels, &done, &want,
                          &r_small, &r_big))
        return NULL;
    const uint32_t *w = (const uint32_t *)words.buf;
    Py_ssize_t n = words.len / 4;
    double *out = (double *)samples.buf;
    int64_t *lab = (int64_t *)labels.buf;
    if (samples.len < want * 4 * (Py_ssize_t)sizeof(double) ||
        labels.len < want * (Py_ssize_t)sizeof(int64_t) || pos < 0 || done < 0) {
        PyBuffer_Release(&words);
        PyBuffer_Release(&samples);
        PyBuffer_Release(&labels);
        PyErr_SetString(PyExc_ValueError, "walk: output buffers too small or negative index");
        return NULL;
    }

    radius big = make_radius(r_big), small = make_radius(r_small), half = make_radius(0.5 * r_big);
    Py_BEGIN_ALLOW_THREADS
    while (done < want) {
        Py_ssize_t start = pos;
        int goal = -1, found = 0;
        double x = 0.0, y = 0.0;
        while (pos < n) {
            uint32_t v = w[pos++] & 3u;
            if (v != 3u) {
                goal = (int)v;
                break;
            }
        }
        if (goal < 0) {
            pos = start;
            break;
        }
        while (pos + 4 <= n) {
            x = uniform(w + pos) * 2. * r_big;
            y = uniform(w + pos + 2) * 2. * r_big;
            pos += 4;
            if (accepts(x, y, goal, r_big, &big, &small, &half)) {
                found = 1;
                break;
            }
        }
        if (!found) {
            pos = start;
            break;
        }
        double *row = out + 4 * done;
        row[0] = x;
        row[1] = y;
        row[2] = 1. - x;
        row[3] = 1. - y;
        lab[done] = goal;
        done++;
    }
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&words);
    PyBuffer_Release(&samples);
    PyBuffer_Release(&labels);
    return Py_BuildValue("nn", done, pos);
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS, "Run the Yin-Yang rejection walk over a block of MT19937 words."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_yinyang_walk", NULL, -1, methods};

PyMODINIT_FUNC PyInit__yinyang_walk(void) { return PyModule_Create(&module); }
