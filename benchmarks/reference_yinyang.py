"""The baseline: a per-sample loop in the style of the authors' YinYangDataset.

Same structure as their dataset.py (a class, methods for the class test and distances, an
np.array per sample), without torch. Kept here, not in the package: it is only a yardstick.
"""

import numpy as np


class ReferenceYinYang:
    def __init__(self, r_small=0.1, r_big=0.5, size=1000, seed=42):
        self.rng = np.random.RandomState(seed)
        self.r_small, self.r_big = r_small, r_big
        self.vals, self.cs = [], []
        for _ in range(size):
            goal_class = self.rng.randint(3)
            x, y, c = self.get_sample(goal=goal_class)
            self.vals.append(np.array([x, y, 1.0 - x, 1.0 - y]))
            self.cs.append(c)

    def get_sample(self, goal=None):
        while True:
            x, y = self.rng.rand(2) * 2.0 * self.r_big
            if np.sqrt((x - self.r_big) ** 2 + (y - self.r_big) ** 2) > self.r_big:
                continue
            c = self.which_class(x, y)
            if goal is None or c == goal:
                return x, y, c

    def which_class(self, x, y):
        d_right = self.dist_to_right_dot(x, y)
        d_left = self.dist_to_left_dot(x, y)
        criterion1 = d_right <= self.r_small
        criterion2 = d_left > self.r_small and d_left <= 0.5 * self.r_big
        criterion3 = y > self.r_big and d_right > 0.5 * self.r_big
        is_yin = criterion1 or criterion2 or criterion3
        if d_right < self.r_small or d_left < self.r_small:
            return 2
        return int(is_yin)

    def dist_to_right_dot(self, x, y):
        return np.sqrt((x - 1.5 * self.r_big) ** 2 + (y - self.r_big) ** 2)

    def dist_to_left_dot(self, x, y):
        return np.sqrt((x - 0.5 * self.r_big) ** 2 + (y - self.r_big) ** 2)

    def arrays(self):
        return np.array(self.vals), np.array(self.cs, dtype=np.int64)
