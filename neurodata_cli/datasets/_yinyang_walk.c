/* The Yin-Yang rejection walk, drawing its MT19937 words itself.
 *
 * The reference draws one sample at a time: goal = randint(3), then rand(2) pairs until a point in
 * the big circle has the goal's class. Both calls consume 32-bit MT19937 words in a fixed way, so
 * the walk only needs the word stream: MT19937 seeded as numpy's RandomState(seed) seeds it. This
 * is the same walk as `_walk_python` in yinyang.py. Every float64 expression follows the
 * reference's order of operations; the build turns off FMA contraction so that each product is
 * rounded as numpy rounds it.
 *
 * The walk is sequential: where a sample starts depends on every sample before it. A second
 * thread still halves the time, exactly. It starts walking at a guessed word position in the
 * middle of the stream, as if a sample started there, and records where each of its samples
 * starts. Two walks over one stream fall into step as soon as both start a sample at the same
 * word (within a few dozen samples, as a Kruskal count does), and from there they agree forever.
 * The main walk runs from word 0 until it starts a sample where the helper started one; the
 * helper's samples from that one on are the true ones. Should they never meet, the main walk
 * simply goes on alone: the result is the same either way, only the time differs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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
    int64_t base;  /* stream index of out[0] */
} mt_state;

/* RandomState(seed): numpy's mt19937_seed (Knuth's initialiser), with the first refill due. */
static void mt_seed(mt_state *s, uint32_t seed)
{
    s->key[0] = seed;
    for (int i = 1; i < MT_N; i++)
        s->key[i] = 1812433253u * (s->key[i - 1] ^ (s->key[i - 1] >> 30)) + (uint32_t)i;
    s->pos = MT_N;
    s->base = -MT_N;
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
    s->base += MT_N;
    s->pos = 0;
}

/* From a freshly seeded state, move to stream index `block` * 624, twisting without tempering. */
static void mt_seek_block(mt_state *s, int64_t block)
{
    for (int64_t b = 0; b <= block; b++)
        mt_twist(s->key);
    mt_temper_all(s);
    s->base = block * MT_N;
    s->pos = 0;
}

static inline uint32_t mt_next(mt_state *s)
{
    if (__builtin_expect(s->pos == MT_N, 0))
        mt_refill(s);
    return s->out[s->pos++];
}

/* Stream index of the next word. */
static inline int64_t mt_tell(const mt_state *s) { return s->base + s->pos; }

/* rand(): 53 bits from two words, as numpy's legacy random_sample. The sum is below 2**53, so the
 * signed conversion is exact (and cheaper than the unsigned one on x86-64). */
static inline double uniform(mt_state *s)
{
    int64_t a = mt_next(s) >> 5;
    int64_t b = mt_next(s) >> 6;
    return (double)(a * 67108864 + b) * (1.0 / 9007199254740992.0); /* exact: 2**-53 */
}

#if defined(__SSE2__)
/* The geometry's constants, two lanes each: two tries are judged at once. */
typedef struct {
    __m128d r, r15, r05, big_lo, big_hi, small_lo, small_hi, half_lo, half_hi;
} lanes;
#endif

typedef struct {
    double r_big;
    radius big, small, half;
#if defined(__SSE2__)
    lanes v;
#endif
} geometry;

/* `margin`: 1e-9 in use; the tests widen it so that many tries take the exact path. */
static geometry make_geometry(double r_small, double r_big, double margin)
{
    geometry g = {r_big, make_radius(r_big, margin), make_radius(r_small, margin),
                  make_radius(0.5 * r_big, margin)};
#if defined(__SSE2__)
    g.v.r = _mm_set1_pd(r_big);
    g.v.r15 = _mm_set1_pd(1.5 * r_big);
    g.v.r05 = _mm_set1_pd(0.5 * r_big);
    g.v.big_lo = _mm_set1_pd(g.big.lo);
    g.v.big_hi = _mm_set1_pd(g.big.hi);
    g.v.small_lo = _mm_set1_pd(g.small.lo);
    g.v.small_hi = _mm_set1_pd(g.small.hi);
    g.v.half_lo = _mm_set1_pd(g.half.lo);
    g.v.half_hi = _mm_set1_pd(g.half.hi);
#endif
    return g;
}

#if defined(__SSE2__)
/* rand() * 2. * r_big for two tries, from their words (a, b) in lanes 0-1 and 2-3 of `ab`.
 * (a >> 5) * 2**26 + (b >> 6) is an integer below 2**53, so summing the two exact doubles
 * gives the very double of the scalar int64 conversion; the products round as the scalar's. */
static inline __m128d uniform2(__m128i ab, __m128d r)
{
    __m128d a = _mm_cvtepi32_pd(_mm_srli_epi32(ab, 5));
    __m128d b = _mm_cvtepi32_pd(_mm_srli_epi32(_mm_srli_si128(ab, 8), 6));
    __m128d u = _mm_mul_pd(_mm_add_pd(_mm_mul_pd(a, _mm_set1_pd(67108864.0)), b),
                           _mm_set1_pd(1.0 / 9007199254740992.0));
    return _mm_mul_pd(_mm_mul_pd(u, _mm_set1_pd(2.)), r);
}

/* `accepts` for the two tries whose words are w[0..3] and w[4..7]: bit i of *accept and of
 * *near for try i. */
static inline void accepts2(const uint32_t *w, const lanes *v, __m128d want_dot,
                            __m128d want_yang, __m128d want_yin, int *accept, int *near)
{
    __m128i t0 = _mm_loadu_si128((const __m128i *)w);       /* a0 b0 c0 d0 */
    __m128i t1 = _mm_loadu_si128((const __m128i *)(w + 4)); /* a1 b1 c1 d1 */
    __m128d x = uniform2(_mm_unpacklo_epi32(t0, t1), v->r);  /* from a0 a1 b0 b1 */
    __m128d y = uniform2(_mm_unpackhi_epi32(t0, t1), v->r);  /* from c0 c1 d0 d1 */
    __m128d dy = _mm_sub_pd(y, v->r), dx = _mm_sub_pd(x, v->r);
    __m128d dr = _mm_sub_pd(x, v->r15), dl = _mm_sub_pd(x, v->r05);
    __m128d dy2 = _mm_mul_pd(dy, dy);
    __m128d s_big = _mm_add_pd(_mm_mul_pd(dx, dx), dy2);
    __m128d s_right = _mm_add_pd(_mm_mul_pd(dr, dr), dy2);
    __m128d s_left = _mm_add_pd(_mm_mul_pd(dl, dl), dy2);
#define BETWEEN(s, lo, hi) _mm_and_pd(_mm_cmpge_pd(s, lo), _mm_cmple_pd(s, hi))
    __m128d close = _mm_or_pd(
        _mm_or_pd(BETWEEN(s_big, v->big_lo, v->big_hi), BETWEEN(s_right, v->small_lo, v->small_hi)),
        _mm_or_pd(_mm_or_pd(BETWEEN(s_left, v->small_lo, v->small_hi),
                            BETWEEN(s_right, v->half_lo, v->half_hi)),
                  BETWEEN(s_left, v->half_lo, v->half_hi)));
#undef BETWEEN
    __m128d inside = _mm_cmplt_pd(s_big, v->big_lo);
    __m128d right_small = _mm_cmplt_pd(s_right, v->small_lo);
    __m128d left_small = _mm_cmplt_pd(s_left, v->small_lo);
    __m128d dot = _mm_or_pd(right_small, left_small);
    __m128d yang = _mm_or_pd(
        _mm_or_pd(right_small, _mm_andnot_pd(left_small, _mm_cmplt_pd(s_left, v->half_lo))),
        _mm_and_pd(_mm_cmpgt_pd(y, v->r), _mm_cmpgt_pd(s_right, v->half_hi)));
    __m128d ok = _mm_or_pd(_mm_and_pd(dot, want_dot),
                           _mm_andnot_pd(dot, _mm_or_pd(_mm_and_pd(yang, want_yang),
                                                        _mm_andnot_pd(yang, want_yin))));
    *accept = _mm_movemask_pd(_mm_and_pd(inside, ok));
    *near = _mm_movemask_pd(close);
}
#endif

/* One sample from the stream: the goal, then tries until one is accepted. */
static inline int64_t draw_sample(mt_state *s, const geometry *g, double *row)
{
    uint32_t goal;
    while ((goal = mt_next(s) & 3u) == 3u)
        ;
    double x, y;
#if defined(__SSE2__)
    /* Four tries at a time while the block holds their 16 words. The first accepted one is
     * taken again by the scalar code below, which also judges every try near a boundary. */
    __m128d want_dot = _mm_castsi128_pd(_mm_set1_epi64x(goal == 2 ? -1 : 0));
    __m128d want_yang = _mm_castsi128_pd(_mm_set1_epi64x(goal == 1 ? -1 : 0));
    __m128d want_yin = _mm_castsi128_pd(_mm_set1_epi64x(goal == 0 ? -1 : 0));
    while (s->pos + 16 <= MT_N) {
        const uint32_t *w = s->out + s->pos;
        int acc01, near01, acc23, near23;
        accepts2(w, &g->v, want_dot, want_yang, want_yin, &acc01, &near01);
        accepts2(w + 8, &g->v, want_dot, want_yang, want_yin, &acc23, &near23);
        int accept = acc01 | acc23 << 2, near = near01 | near23 << 2;
        if (near)
            break; /* the scalar loop takes these tries one by one */
        if (accept) {
            s->pos += 4 * __builtin_ctz((unsigned)accept);
            break; /* the scalar loop's first try is the accepted one */
        }
        s->pos += 16;
    }
#endif
    do {
        x = uniform(s) * 2. * g->r_big;
        y = uniform(s) * 2. * g->r_big;
    } while (!accepts(x, y, (int)goal, g->r_big, &g->big, &g->small, &g->half));
    row[0] = x;
    row[1] = y;
    row[2] = 1. - x;
    row[3] = 1. - y;
    return (int64_t)goal;
}

/* The helper thread's walk from a guessed start. It writes its samples straight into the output,
 * from row `first_row` on (rows the main walk does not reach while the helper runs), and records
 * where each of them starts in the stream. */
typedef struct {
    mt_state mt;
    geometry g;          /* its own copy: nothing the main thread writes shares its cache lines */
    Py_ssize_t capacity; /* output rows from first_row to row n */
    double *rows;        /* the output's row first_row */
    int64_t *labels;
    int64_t *starts;
    int64_t seek;        /* the MT block to start from */
    int64_t first_start; /* starts[0], known before the thread runs */
    Py_ssize_t drawn;    /* samples drawn when the thread ended (read after joining it) */
    /* Each shared counter has a cache line of its own. A line one thread writes and the other
     * reads moves between the cores at every write; when the main walk read a field beside
     * `published` at every sample, the two walks ran at 0.6 times their speed alone. */
    _Alignas(64) _Atomic Py_ssize_t published; /* samples whose start the main walk may read */
    _Alignas(64) _Atomic Py_ssize_t target;    /* stop once this many are done (walks met) */
    _Atomic int stop;                          /* the main walk goes on alone */
    char pad[64];
} helper;

static void *helper_run(void *arg)
{
    helper *h = arg;
    mt_seek_block(&h->mt, h->seek); /* here, not before the thread: the main walk is running */
    Py_ssize_t k;
    for (k = 0; k < h->capacity; k++) {
        if (k >= atomic_load_explicit(&h->target, memory_order_acquire) ||
            atomic_load_explicit(&h->stop, memory_order_acquire))
            break;
        h->starts[k] = mt_tell(&h->mt);
        atomic_store_explicit(&h->published, k + 1, memory_order_release);
        h->labels[k] = draw_sample(&h->mt, &h->g, h->rows + 4 * k);
    }
    h->drawn = k;
    atomic_store_explicit(&h->published, h->capacity + 1, memory_order_release); /* done */
    return NULL;
}

/* Tell the helper to stop, and wait until it has: it writes no row after this returns. */
static void stop_helper(helper *h)
{
    atomic_store_explicit(&h->stop, 1, memory_order_release);
    while (atomic_load_explicit(&h->published, memory_order_acquire) <= h->capacity)
        sched_yield();
}

/* The main walk over samples [0, n), with an optional helper writing from row `first_row`.
 *
 * Returns the index of the first sample the helper supplies (the caller moves the helper's rows
 * from its sample `*from` there), or n when the main walk did every sample itself.
 */
static Py_ssize_t main_walk(mt_state *s, const geometry *g, double *rows, int64_t *labels,
                            Py_ssize_t n, helper *h, Py_ssize_t first_row, Py_ssize_t *from)
{
    Py_ssize_t j = 0; /* next helper sample whose start may still be met */
    int64_t first_start = h != NULL ? h->first_start : 0;
    for (Py_ssize_t done = 0; done < n; done++) {
        if (h != NULL && done >= first_row) { /* the rows ahead are the helper's: take them back */
            stop_helper(h);
            h = NULL;
        }
        if (h != NULL) {
            int64_t here = mt_tell(s);
            if (here >= first_start) {
                /* Wait until the helper has recorded a start at or past here, or has ended. */
                for (;;) {
                    Py_ssize_t seen = atomic_load_explicit(&h->published, memory_order_acquire);
                    Py_ssize_t avail = seen > h->capacity ? h->capacity : seen;
                    while (j < avail && h->starts[j] < here)
                        j++;
                    if (j < avail || seen > h->capacity)
                        break;
                    sched_yield();
                }
                Py_ssize_t seen = atomic_load_explicit(&h->published, memory_order_acquire);
                Py_ssize_t avail = seen > h->capacity ? h->capacity : seen;
                if (j < avail && h->starts[j] == here) {
                    *from = j;
                    atomic_store_explicit(&h->target, j + (n - done), memory_order_release);
                    return done;
                }
                if (j >= avail) /* the helper ended before here: nothing left to meet */
                    h = NULL;
            }
        }
        labels[done] = draw_sample(s, g, rows + 4 * done);
    }
    if (h != NULL)
        stop_helper(h);
    return n;
}

/* generate(seed, n, samples, labels, r_small, r_big, split, first_row[, margin])
 *     -> (from_main, yin, yang, dot)
 *
 * Writes rows [0, n) of `samples` (float64, rows of x, y, 1-x, 1-y) and of `labels` (int64), as
 * RandomState(seed) would draw them. `split` > 0 is the word at which a helper thread starts
 * (a guess of where sample n/2 begins); 0 walks on one thread. The helper writes from row
 * `first_row` (past where the main walk will end, with a margin) up to row n. At the end its
 * rows move down to where the walks met, and the rows this leaves free at the end are drawn
 * from where the helper stopped. So the buffers need exactly n rows, and may be the output
 * file's own pages. Returns how many samples the main walk drew (n when the helper never met
 * it) and each class's count.
 */
static PyObject *generate(PyObject *self, PyObject *args)
{
    Py_buffer samples, labels;
    unsigned long seed;
    long long split;
    Py_ssize_t n, first_row;
    double r_small, r_big, margin = 1e-9;
    if (!PyArg_ParseTuple(args, "knw*w*ddLn|d", &seed, &n, &samples, &labels, &r_small, &r_big,
                          &split, &first_row, &margin))
        return NULL;
    Py_ssize_t cap = labels.len / (Py_ssize_t)sizeof(int64_t);
    PyObject *result = NULL;
    mt_state *s = NULL;
    helper *h = NULL;
    if (seed > 0xffffffffUL || split < 0 || n < 0 || cap < n || !(margin >= 1e-9 && margin < 1) ||
        samples.len < n * 4 * (Py_ssize_t)sizeof(double) ||
        (split > 0 && (first_row < 1 || first_row >= n))) {
        PyErr_SetString(PyExc_ValueError,
                        "generate: seed must fit 32 bits, split >= 0, buffers of n rows or more, "
                        "0 < first_row < n, 1e-9 <= margin < 1");
        goto done;
    }
    s = PyMem_RawMalloc(sizeof(mt_state));
    if (s == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    mt_seed(s, (uint32_t)seed);
    geometry g = make_geometry(r_small, r_big, margin);
    double *rows = (double *)samples.buf;
    int64_t *lab = (int64_t *)labels.buf;
    pthread_t thread;
    int started = 0;
    if (split >= MT_N && n > 1) {
        h = aligned_alloc(64, sizeof(helper)); /* a multiple of 64: its members are aligned */
        if (h != NULL) {
            memset(h, 0, sizeof(helper));
            h->capacity = n - first_row;
            h->rows = rows + 4 * first_row;
            h->labels = lab + first_row;
            h->starts = PyMem_RawMalloc((size_t)h->capacity * sizeof(int64_t));
        }
        if (h == NULL || h->starts == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        mt_seed(&h->mt, (uint32_t)seed);
        h->g = g;
        atomic_store(&h->target, h->capacity);
        h->seek = split / MT_N;
        h->first_start = h->seek * MT_N; /* where mt_seek_block leaves the stream */
        started = pthread_create(&thread, NULL, helper_run, h) == 0;
    }
    Py_ssize_t from = 0, mine, counts[3] = {0, 0, 0};
    Py_BEGIN_ALLOW_THREADS
    mine = main_walk(s, &g, rows, lab, n, started ? h : NULL, first_row, &from);
    if (started) {
        pthread_join(thread, NULL);
        if (mine < n) {
            /* The helper stopped at row n, after its sample h->drawn - 1 (the walks met before
             * first_row, so it never reached the target): `got` true samples, then the rest. */
            Py_ssize_t got = h->drawn - from;
            memmove(rows + 4 * mine, rows + 4 * (first_row + from),
                    (size_t)got * 4 * sizeof(double));
            memmove(lab + mine, lab + first_row + from, (size_t)got * sizeof(int64_t));
            for (Py_ssize_t i = mine + got; i < n; i++)
                lab[i] = draw_sample(&h->mt, &h->g, rows + 4 * i);
        }
    }
    for (Py_ssize_t i = 0; i < n; i++)
        counts[lab[i]]++; /* labels are 0, 1 or 2 */
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("nnnn", mine, counts[0], counts[1], counts[2]);
done:
    if (h != NULL) {
        PyMem_RawFree(h->starts);
        free(h);
    }
    PyMem_RawFree(s);
    PyBuffer_Release(&samples);
    PyBuffer_Release(&labels);
    return result;
}

static PyMethodDef methods[] = {
    {"generate", generate, METH_VARARGS, "Yin-Yang samples as RandomState(seed) draws them."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_yinyang_walk", NULL, -1, methods};

PyMODINIT_FUNC PyInit__yinyang_walk(void) { return PyModule_Create(&module); }
