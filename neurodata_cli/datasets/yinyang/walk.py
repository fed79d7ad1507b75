"""The Yin-Yang generator as pure functions, bit-identical to the authors' ``dataset.py``.

The reference draws one sample at a time from ``numpy.random.RandomState(seed)``: a goal class
``randint(3)``, then points ``rand(2) * 2 * r_big`` until one inside the big circle has the goal's
class. Both calls consume raw 32-bit MT19937 words in a fixed way (``randint(3)``: one word per
try, ``w & 3``, again while it is 3; ``rand()``: two words per double), so only the word stream
matters. The C walk (``_walk.c``) runs MT19937 itself from the state ``RandomState(seed)`` holds;
the pure-Python fallback draws the words in bulk with that RandomState and replays the walk.
"""

from __future__ import annotations

import math

import numpy as np

try:
    import neurodata_cli.datasets.yinyang._walk as _c  # absolute: mypy sees a module, untyped
except ImportError:  # no compiler at install time: the Python walk gives the same bytes
    _c = None


def walk_python(words: np.ndarray, pos: int, samples: np.ndarray, labels: np.ndarray,
                done: int, want: int, r_small: float, r_big: float) -> tuple[int, int]:
    """The rejection walk over raw words, in plain Python (the C walk does the same).

    Writes samples [done, want) from ``words[pos:]``; returns (done, next position), stopping
    early at the start of a sample the words cannot finish.
    """
    w = words.tolist()
    n = len(w)
    out = samples.reshape(-1)
    while done < want:
        start, goal = pos, -1
        while pos < n:
            v = w[pos] & 3
            pos += 1
            if v != 3:
                goal = v
                break
        found = False
        if goal >= 0:
            while pos + 4 <= n:
                x = _uniform(w[pos], w[pos + 1]) * 2. * r_big
                y = _uniform(w[pos + 2], w[pos + 3]) * 2. * r_big
                pos += 4
                if math.sqrt((x - r_big) ** 2 + (y - r_big) ** 2) > r_big:
                    continue
                if which_class(x, y, r_small, r_big) == goal:
                    found = True
                    break
        if not found:
            return done, start
        out[4 * done: 4 * done + 4] = (x, y, 1. - x, 1. - y)
        labels[done] = goal
        done += 1
    return done, pos


def _uniform(a: int, b: int) -> float:
    """``rand()``: 53 bits from two words, as numpy's legacy random_sample."""
    return ((a >> 5) * 67108864 + (b >> 6)) / 9007199254740992.0


def which_class(x: float, y: float, r_small: float, r_big: float) -> int:
    """The reference's class of a point inside the big circle: 0 yin, 1 yang, 2 dot."""
    d_right = math.sqrt((x - 1.5 * r_big) ** 2 + (y - r_big) ** 2)
    d_left = math.sqrt((x - 0.5 * r_big) ** 2 + (y - r_big) ** 2)
    if d_right < r_small or d_left < r_small:
        return 2
    if (d_right <= r_small or r_small < d_left <= 0.5 * r_big
            or (y > r_big and d_right > 0.5 * r_big)):
        return 1
    return 0


# Radii the walk can take: it compares squared distances of up to 4.5 r_big**2 with squared
# radii, which must stay normal doubles (1e-150**2 is 1e-300; DBL_MIN is 2.2e-308, DBL_MAX 1.8e308).
RADIUS_RANGE = (1e-150, 1e150)
# The most tries a sample may take on average: a million is a few hundredths of a second of the C
# walk (the paper's radii take 7.2). Only small dots reach it, below r_small/r_big = MIN_RATIO
# (4.6e-4); as the dots grow to fill the circle, the average stays under 82.
MAX_TRIES = 1e6


def _lens(a: float, b: float, d: float) -> float:
    """Area shared by two discs of radii ``a`` and ``b`` whose centres are ``d`` apart."""
    if d >= a + b:
        return 0.
    if d <= abs(a - b):
        return math.pi * min(a, b) ** 2
    cos_a = min(1., max(-1., (d * d + a * a - b * b) / (2 * d * a)))
    cos_b = min(1., max(-1., (d * d + b * b - a * a) / (2 * d * b)))
    kite = (-d + a + b) * (d + a - b) * (d - a + b) * (d + a + b)
    return a * a * math.acos(cos_a) + b * b * math.acos(cos_b) - 0.5 * math.sqrt(max(0., kite))


def class_fractions(ratio: float) -> tuple[float, float, float]:
    """The chance that one try lands in yin, yang or a dot (the try is accepted only there and
    only for that goal), for ``ratio`` = r_small / r_big in (0, 1).

    A try is uniform on the square of side 2 r_big around the big circle (of radius r_big, say
    1). The dots are the discs of radius ``ratio`` centred 0.5 either side of its centre, inside
    the big circle; they overlap once ``ratio`` > 0.5, and their overlap lies inside the circle.
    Yin and yang are the rest of the circle, swapped by a half turn, so of equal area.
    """
    dots = 2 * _lens(ratio, 1., 0.5) - _lens(ratio, ratio, 1.)
    half = (math.pi - dots) / 2
    return half / 4, half / 4, dots / 4


def tries_per_sample(r_small: float, r_big: float) -> float:
    """Expected tries per sample: the goal is each class a third of the time, and a try hits a
    class of chance p after 1/p tries on average."""
    return sum(1 / p for p in class_fractions(r_small / r_big)) / 3


def radii_problem(r_small: float, r_big: float) -> tuple[str, str] | None:
    """``(key, why)`` when the walk cannot run with these radii (it would never end, or take
    a lifetime), else None."""
    if not r_small > 0:
        return "r_small", f"{r_small} must be greater than 0"
    lo, hi = RADIUS_RANGE
    for key, r in (("r_small", r_small), ("r_big", r_big)):
        if not lo <= r <= hi:
            return key, (f"{r} is outside {lo:g}..{hi:g}: the walk squares distances, which "
                         "would underflow or overflow")
    if not r_small < r_big:
        return "r_small", f"{r_small} must be less than r_big ({r_big})"
    tries = tries_per_sample(r_small, r_big)
    if tries > MAX_TRIES:
        dots = class_fractions(r_small / r_big)[2]
        return "r_small", (f"{r_small} is too small for r_big {r_big}: the dots cover {dots:.2g} "
                           f"of the square tries are drawn from, so a sample takes {tries:.2g} "
                           f"tries on average (at most {MAX_TRIES:.0f} allowed: r_small >= "
                           f"{MIN_RATIO:.2g} * r_big)")
    return None


def _min_ratio() -> float:
    """The smallest r_small/r_big within MAX_TRIES (below 0.4, tries fall as the ratio grows)."""
    lo, hi = 1e-9, 0.4
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if tries_per_sample(mid, 1.) <= MAX_TRIES else (mid, hi)
    return hi


MIN_RATIO = _min_ratio()


class Walker:
    """The samples ``RandomState(seed)`` draws, taken in pieces of any size: consecutive
    ``take`` calls give exactly the samples of one long walk.

    ``accelerated`` uses the C walk where it is built; ``block`` is how many words the Python
    walk draws at a time; ``margin`` is the C walk's band around each boundary judged with the
    exact sqrt (the tests widen it).
    """

    def __init__(self, seed: int, r_small: float = 0.1, r_big: float = 0.5,
                 accelerated: bool = True, block: int = 1 << 18, margin: float = 1e-9):
        if not 0 <= seed < 2**32:
            raise ValueError(f"seed {seed} must be between 0 and 2**32 - 1")
        problem = radii_problem(r_small, r_big)
        if problem:
            raise ValueError(f"{problem[0]} {problem[1]}")
        self.r_small, self.r_big, self.margin = r_small, r_big, margin
        self._state = _c.seed(seed) if accelerated and _c is not None else None
        self._rng = np.random.RandomState(seed) if self._state is None else None
        self._block = max(64, block)
        self._words = np.empty(0, dtype=np.uint32)  # drawn, not yet walked over

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The next ``n`` samples (float64 rows x, y, 1-x, 1-y) and their int64 labels."""
        samples = np.empty((n, 4), dtype=np.float64)
        labels = np.empty(n, dtype=np.int64)
        if self._state is not None:
            _c.walk(self._state, samples, labels, self.r_small, self.r_big, self.margin)
            return samples, labels
        done = 0
        assert self._rng is not None  # no C state: numpy's generator draws the words
        while True:
            # Walks until the words run out at the start of a sample it cannot finish, which
            # then starts the words kept for later.
            done, pos = walk_python(self._words, 0, samples, labels, done, n, self.r_small,
                                    self.r_big)
            self._words = self._words[pos:]
            if done == n:
                return samples, labels
            fresh = self._rng.randint(0, 2**32, self._block, np.uint32)
            self._words = np.concatenate([self._words, fresh])


def generate(size: int, seed: int, r_small: float = 0.1, r_big: float = 0.5,
             block: int = 1 << 18, accelerated: bool = True,
             margin: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """``size`` samples (float64 rows x, y, 1-x, 1-y) and int64 labels, as the reference makes."""
    return Walker(seed, r_small, r_big, accelerated, block, margin).take(size)


def spike_times(samples: np.ndarray, t_early: float, t_late: float,
                t_bias: float) -> np.ndarray:
    """Each value v becomes ``t_early + v * (t_late - t_early)``; a bias spike at ``t_bias``."""
    out = np.empty((samples.shape[0], 5), dtype=np.float64)
    out[:, :4] = t_early + samples * (t_late - t_early)
    out[:, 4] = t_bias
    return out
