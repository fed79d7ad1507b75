"""The Yin-Yang reference generator as its authors wrote it: one sample at a time.

Plain and slow on purpose; the fast generator must agree with it bit for bit.
"""

import numpy as np


def which_class(x, y, r_small, r_big):
    d_right = np.sqrt((x - 1.5 * r_big) ** 2 + (y - r_big) ** 2)
    d_left = np.sqrt((x - 0.5 * r_big) ** 2 + (y - r_big) ** 2)
    criterion1 = d_right <= r_small
    criterion2 = d_left > r_small and d_left <= 0.5 * r_big
    criterion3 = y > r_big and d_right > 0.5 * r_big
    is_yin = criterion1 or criterion2 or criterion3
    is_circles = d_right < r_small or d_left < r_small
    if is_circles:
        return 2
    return int(is_yin)


def get_sample(rng, goal, r_small, r_big):
    while True:
        x, y = rng.rand(2) * 2.0 * r_big
        if np.sqrt((x - r_big) ** 2 + (y - r_big) ** 2) > r_big:
            continue
        c = which_class(x, y, r_small, r_big)
        if c == goal:
            return x, y, c


def reference_yinyang(size, seed, r_small=0.1, r_big=0.5):
    rng = np.random.RandomState(seed)
    vals, labels = [], []
    for _ in range(size):
        goal = rng.randint(3)
        x, y, c = get_sample(rng, goal, r_small, r_big)
        vals.append(np.array([x, y, 1.0 - x, 1.0 - y]))
        labels.append(c)
    return np.array(vals).reshape(size, 4), np.array(labels, dtype=np.int64)
