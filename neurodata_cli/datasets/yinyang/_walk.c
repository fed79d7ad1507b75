/* The Yin-Yang rejection walk, drawing its MT19937 words itself: plain, single-threaded C.
 *
 * The reference draws one sample at a time: goal = randint(3), then rand(2) pairs until a point in
 * the big circle has the goal's class. Both calls consume 32-bit MT19937 words in a fixed way, so
 * the walk only needs the word stream: MT19937 seeded as numpy's RandomState(seed) seeds it. This
 * is the same walk as `walk_python` in walk.py. Every float64 expression follows the
 * reference's order of operations; the build turns off FMA contraction so that each product is
 * rounded as numpy rounds it.
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

static radius make_radius(double r, double margin)
{
    radius out = {r, r * r * (1.0 - margin), r * r * (1.0 + margin)};
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

/* MT19937 as numpy's legacy RandomState runs it: 624 words of state regenerated at once, each
 * output word tempered. The regeneration loops are split where their reads switch from old to
 * new state so that the compiler can vectorise them (reads are 1 and 227 words apart). */
enum { MT_N = 624, MT_M = 397 };

typedef struct {
    uint32_t key[MT_N];
    uint32_t out[MT_N];
    int pos;       /* next word in out */
} mt_state;

/* RandomState(seed): numpy's mt19937_seed (Knuth's initialiser), with the first refill due. */
static void mt_seed(mt_state *s, uint32_t seed)
{
    s->key[0] = seed;
    for (int i = 1; i < MT_N; i++)
        s->key[i] = 1812433253u * (s->key[i - 1] ^ (s->key[i - 1] >> 30)) + (uint32_t)i;
    s->pos = MT_N;
}

static inline uint32_t mt_mix(uint32_t upper, uint32_t lower, uint32_t far)
{
    uint32_t y = (upper & 0x80000000u) | (lower & 0x7fffffffu);
    return far ^ (y >> 1) ^ ((0u - (y & 1u)) & 0x9908b0dfu);
}

static void mt_twist(uint32_t *k)
{
    int i;
    for (i = 0; i < MT_N - MT_M; i++)
        k[i] = mt_mix(k[i], k[i + 1], k[i + MT_M]);
    for (; i < MT_N - 1; i++)
        k[i] = mt_mix(k[i], k[i + 1], k[i + MT_M - MT_N]);
    k[MT_N - 1] = mt_mix(k[MT_N - 1], k[0], k[MT_M - 1]);
}

static void mt_temper_all(mt_state *s)
{
    for (int i = 0; i < MT_N; i++) {
        uint32_t y = s->key[i];
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c5680u;
        y ^= (y << 15) & 0xefc60000u;
        y ^= y >> 18;
        s->out[i] = y;
    }
}

static void mt_refill(mt_state *s)
{
    mt_twist(s->key);
    mt_temper_all(s);
    s->pos = 0;
}

static inline uint32_t mt_next(mt_state *s)
{
    if (__builtin_expect(s->pos == MT_N, 0))
        mt_refill(s);
    return s->out[s->pos++];
}

/* rand(): 53 bits from two words, as numpy's legacy random_sample. The sum is below 2**53, so the
 * signed conversion is exact (and cheaper than the unsigned one on x86-64). */
static inline double uniform(mt_state *s)
{
    int64_t a = mt_next(s) >> 5;
    int64_t b = mt_next(s) >> 6;
    return (double)(a * 67108864 + b) * (1.0 / 9007199254740992.0); /* exact: 2**-53 */
}

typedef struct {
    double r_big;
    radius big, small, half;
} geometry;

/* Tries between two looks at pending signals: 10 to 80 milliseconds of the walk, so Ctrl-C
 * stops it at once, at the cost of one decrement per try. */
enum { CHECK_EVERY = 1 << 20 };

typedef struct {
    PyThreadState *thread; /* this thread's state while the GIL is released */
    uint32_t budget;       /* tries left before the next look, between samples */
} ticker;

/* Take the GIL back for a moment to run signal handlers (a KeyboardInterrupt for SIGINT); 0
 * when one raised, with its exception set. */
static int still_running(ticker *t)
{
    PyEval_RestoreThread(t->thread);
    int failed = PyErr_CheckSignals();
    t->thread = PyEval_SaveThread();
    return failed == 0;
}

/* One sample: the goal, then tries until one is accepted; its row is x, y, 1-x, 1-y. Returns
 * the label, or -1 when a signal handler raised. */
static inline int64_t draw_sample(mt_state *s, const geometry *g, double *row, ticker *t)
{
    uint32_t goal;
    while ((goal = mt_next(s) & 3u) == 3u)
        ;
    double x, y;
    uint32_t left = t->budget; /* a local, so that it stays in a register */
    do {
        if (__builtin_expect(--left == 0, 0)) {
            if (!still_running(t))
                return -1;
            left = CHECK_EVERY;
        }
        x = uniform(s) * 2. * g->r_big;
        y = uniform(s) * 2. * g->r_big;
    } while (!accepts(x, y, (int)goal, g->r_big, &g->big, &g->small, &g->half));
    t->budget = left;
    row[0] = x;
    row[1] = y;
    row[2] = 1. - x;
    row[3] = 1. - y;
    return (int64_t)goal;
}

/* seed(seed) -> bytearray: the walk's state, as RandomState(seed) starts. */
static PyObject *seed_state(PyObject *self, PyObject *args)
{
    unsigned long seed;
    if (!PyArg_ParseTuple(args, "k", &seed))
        return NULL;
    if (seed > 0xffffffffUL) {
        PyErr_SetString(PyExc_ValueError, "seed must fit 32 bits");
        return NULL;
    }
    PyObject *state = PyByteArray_FromStringAndSize(NULL, sizeof(mt_state));
    if (state != NULL)
        mt_seed((mt_state *)PyByteArray_AS_STRING(state), (uint32_t)seed);
    return state;
}

/* walk(state, samples, labels, r_small, r_big[, margin])
 *
 * Fills `samples` (float64, n rows of x, y, 1-x, 1-y) and `labels` (int64, n) with the next n
 * samples of the stream `state` (from seed()) and advances it: consecutive calls give the
 * samples one call would. `margin` widens the band around each boundary that is judged with the
 * exact sqrt (the tests widen it to check the shortcut never decides differently). A signal
 * (Ctrl-C) stops it within a tenth of a second with the handler's exception, and leaves the
 * stream where the call found it.
 */
static PyObject *walk(PyObject *self, PyObject *args)
{
    Py_buffer state, samples, labels;
    double r_small, r_big, margin = 1e-9;
    if (!PyArg_ParseTuple(args, "w*w*w*dd|d", &state, &samples, &labels, &r_small, &r_big,
                          &margin))
        return NULL;
    Py_ssize_t n = labels.len / (Py_ssize_t)sizeof(int64_t);
    PyObject *result = NULL;
    if (state.len != (Py_ssize_t)sizeof(mt_state) || !(margin >= 1e-9 && margin < 1) ||
        samples.len != n * 4 * (Py_ssize_t)sizeof(double)) {
        PyErr_SetString(PyExc_ValueError, "walk: a state from seed(), samples of n x 4 float64 "
                                          "for n int64 labels, and 1e-9 <= margin < 1");
        goto done;
    }
    mt_state *s = (mt_state *)state.buf;
    if (s->pos < 0 || s->pos > MT_N) {
        PyErr_SetString(PyExc_ValueError, "walk: not a state from seed()");
        goto done;
    }
    geometry g = {r_big, make_radius(r_big, margin), make_radius(r_small, margin),
                  make_radius(0.5 * r_big, margin)};
    double *rows = (double *)samples.buf;
    int64_t *lab = (int64_t *)labels.buf;
    mt_state before = *s; /* 5 KB, restored when interrupted: a later call starts afresh */
    ticker t = {PyEval_SaveThread(), CHECK_EVERY};
    int interrupted = 0;
    for (Py_ssize_t i = 0; i < n && !interrupted; i++)
        interrupted = (lab[i] = draw_sample(s, &g, rows + 4 * i, &t)) < 0;
    PyEval_RestoreThread(t.thread);
    if (interrupted) {
        *s = before;
    } else {
        result = Py_None;
        Py_INCREF(result);
    }
done:
    PyBuffer_Release(&state);
    PyBuffer_Release(&samples);
    PyBuffer_Release(&labels);
    return result;
}

static PyMethodDef methods[] = {
    {"seed", seed_state, METH_VARARGS, "The walk's state, as RandomState(seed) starts."},
    {"walk", walk, METH_VARARGS, "The next Yin-Yang samples of a state's stream."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_walk", NULL, -1, methods};

PyMODINIT_FUNC PyInit__walk(void) { return PyModule_Create(&module); }
