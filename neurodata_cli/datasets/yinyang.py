"""Yin-Yang (Kriener, Göltz, Petrovici 2022), bit-identical to the authors' generator.

The reference draws one sample at a time from ``numpy.random.RandomState(seed)``: a goal class
``randint(3)``, then points ``rand(2) * 2 * r_big`` until one inside the big circle has the goal's
class. Both calls consume raw 32-bit MT19937 words in a fixed way (``randint(3)``: one word per
try, ``w & 3``, again while it is 3; ``rand()``: two words per double), so only the word stream
matters. The C walk runs MT19937 itself from the state numpy's ``RandomState(seed)`` holds; the
pure-Python fallback draws the words in bulk with that RandomState and replays the walk over them.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ..config import SAFE_NAME, Reader, Values
from ..engine import Artifact, Shard, ShardResult
from ..errors import ConfigError
from ..formats import Fill, Slot

if TYPE_CHECKING:
    import numpy as np

NAME = "yinyang"
VERSION = "1.0.0"
RELEASE_NOTES = {
    "1.0.0": "Bit-identical to the reference generator (dataset.py of yin_yang_data_set) for "
    "any size, seed, r_small and r_big; optional spike-time encoding.",
}
UNIT = "samples"
SPLIT_SCOPED = False
SPLIT_KEYS: frozenset[str] = frozenset()
CLASS_NAMES = ("yin", "yang", "dot")
FORMATS = ("hdf5", "npy")
ENCODINGS = ("values", "spike-times")

try:
    from ._yinyang_walk import generate as _generate_c
except ImportError:  # no compiler at install time: the Python walk gives the same bytes
    _generate_c = None


@dataclass(frozen=True)
class Split:
    name: str
    size: int
    seed: int


@dataclass(frozen=True)
class SpikeTimes:
    t_early: float
    t_late: float
    t_bias: float


@dataclass(frozen=True)
class Config:
    r_small: float
    r_big: float
    format: str
    encoding: str
    spike_times: SpikeTimes
    splits: tuple[Split, ...]


def parse_config(values: Values) -> Config:
    """Validate merged YAML and flags; every error names its flag or key and file."""
    top = Reader(values)
    r_small, r_big = top.number("r_small"), top.number("r_big")
    if not 0 < r_small:
        raise top.fail("r_small", f"{r_small} must be greater than 0")
    if not r_small < r_big:
        raise top.fail("r_small", f"{r_small} must be less than r_big ({r_big}, from "
                       f"{top.where('r_big')})")
    fmt = top.choice("format", FORMATS)
    encoding = top.choice("encoding", ENCODINGS)
    st = top.mapping("spike_times")
    spike = SpikeTimes(st.number("t_early"), st.number("t_late"), st.number("t_bias"))
    if not spike.t_early < spike.t_late:
        raise st.fail("t_early", f"{spike.t_early} must be less than t_late ({spike.t_late})")
    st.finish()
    sp = top.mapping("splits")
    splits = []
    for name in sp.data:
        if not isinstance(name, str) or not SAFE_NAME.match(name):
            raise sp.fail(str(name), "a split name must be letters, digits, '.', '_' or '-'")
        one = sp.mapping(name)
        splits.append(Split(name, one.integer("size", lo=1), one.integer("seed", 0, 2**32 - 1)))
        one.finish()
    if not splits:
        raise top.fail("splits", "no splits to generate")
    sp.finish()
    top.finish()
    return Config(r_small, r_big, fmt, encoding, spike, tuple(splits))


# ---- the generator: pure functions ----------------------------------------------------------

def _walk_python(words: np.ndarray, pos: int, samples: np.ndarray, labels: np.ndarray,
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


def generate(size: int, seed: int, r_small: float = 0.1, r_big: float = 0.5,
             block: int = 1 << 18, accelerated: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``size`` samples (float64 rows x, y, 1-x, 1-y) and int64 labels, as the reference makes.

    ``block`` is how many words the Python walk draws at a time; the C walk needs none.
    """
    import numpy as np

    if not 0 <= seed < 2**32:
        raise ValueError(f"seed {seed} must be between 0 and 2**32 - 1")
    if accelerated and _generate_c is not None:
        samples = np.empty((size, 4), dtype=np.float64)
        labels = np.empty(size, dtype=np.int64)
        _generate_c(seed, size, samples, labels, r_small, r_big, *_layout(size, r_small, r_big))
        return samples, labels
    samples = np.empty((size, 4), dtype=np.float64)
    labels = np.empty(size, dtype=np.int64)
    rng = np.random.RandomState(seed)
    # About 30 words make a sample. Blocks bound memory; a sample that straddles two blocks is
    # finished on a joined buffer, grown until the sample fits.
    block = max(64, min(block, 32 * size + 64))
    done, tail = 0, np.empty(0, dtype=np.uint32)
    while done < size:
        words = rng.randint(0, 2**32, block, np.uint32)
        pos = 0
        if tail.size:
            k = 256
            while True:
                joined = np.concatenate([tail, words[:k]])
                done2, pos2 = _walk_python(joined, 0, samples, labels, done, done + 1,
                                           r_small, r_big)
                if done2 > done or k >= words.size:
                    break
                k *= 8
            if done2 == done:  # it outgrows this whole block too
                tail = joined
                continue
            done, pos = done2, pos2 - tail.size
        done, pos = _walk_python(words, pos, samples, labels, done, size, r_small, r_big)
        tail = words[pos:]
    return samples, labels


def words_per_sample(r_small: float, r_big: float) -> float:
    """Expected MT19937 words one sample takes: 4/3 for the goal, 4 per try.

    The chance that a try lands in class c is that class's share of the square the points are
    drawn from: each dot has pi * r_small**2 (capped at the big circle), yin and yang halve the
    rest of the big circle's pi/4.
    """
    p_in = math.pi / 4
    p_dot = min(2 * math.pi * r_small**2, math.pi * r_big**2) / (4 * r_big**2)
    p_side = max(p_in - p_dot, 1e-12) / 2
    return 4 / 3 + 4 / 3 * (2 / p_side + 1 / max(p_dot, 1e-12))


def _helper_start(size: int, r_small: float, r_big: float) -> int:
    """Where the C walk's helper thread starts (0: none). Worth it only for large, ordinary runs."""
    if size < 20_000 or _cpus() < 2:
        return 0
    per_sample = words_per_sample(r_small, r_big)
    if per_sample > 1_000:  # tiny dots: a poor estimate and a long seek, so stay on one thread
        return 0
    return int(size / 2 * per_sample)


def _layout(size: int, r_small: float, r_big: float) -> tuple[int, int]:
    """The C walk's helper: (the word it starts at, the row it writes from); (0, 0) for none.

    The main walk ends near sample size/2, give or take about sqrt(size) (words per sample vary
    by about 1.5 times their mean). The helper writes from a margin of 8 sqrt(size) past that,
    so the two never write the same rows.
    """
    split = _helper_start(size, r_small, r_big)
    if not split:
        return 0, 0
    return split, size // 2 + 8 * math.isqrt(size) + 1024


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def spike_times(samples: np.ndarray, st: SpikeTimes) -> np.ndarray:
    """Each value v becomes ``t_early + v * (t_late - t_early)``; a bias spike at ``t_bias``."""
    import numpy as np

    out = np.empty((samples.shape[0], 5), dtype=np.float64)
    out[:, :4] = st.t_early + samples * (st.t_late - st.t_early)
    out[:, 4] = st.t_bias
    return out


# ---- what the engine asks of a dataset --------------------------------------------------------

def splits(cfg: Config) -> list[str]:
    return [s.name for s in cfg.splits]


def config_dict(cfg: Config) -> dict:
    d = asdict(cfg)
    d["splits"] = {s.name: {"size": s.size, "seed": s.seed} for s in cfg.splits}
    return d


def uses_hdf5(cfg: Config) -> bool:
    # Our own writer (formats/h5plain.py) writes the file: libhdf5 shapes none of its bytes.
    return False


def plan(cfg: Config) -> list[Shard]:
    # One shard: a million samples take well under a second, and hdf5 keeps all splits in one file.
    return [Shard("all", "all", sum(s.size for s in cfg.splits))]


def build(cfg: Config, shard: Shard) -> ShardResult:
    artifacts: list[Artifact] = []
    groups = {}
    stats: dict[str, dict] = {}
    fills = []
    for split in cfg.splits:
        arrays: dict[str, Slot | np.ndarray]
        if cfg.encoding == "values" and _generate_c is not None:
            # The C walk writes straight into the output files (and needs no numpy, which takes
            # a fifth of a large run to import); it counts the classes as it goes.
            fill = _fill(split, cfg, stats)
            fills.append(fill)
            arrays = dict(fill.slots)
            counts = [0, 0, 0]
        else:
            import numpy as np

            samples, labels = generate(split.size, split.seed, cfg.r_small, cfg.r_big)
            arrays = {"samples": samples, "labels": labels}
            if cfg.encoding == "spike-times":
                arrays["spike_times"] = spike_times(samples, cfg.spike_times)
            counts = [int(c) for c in np.bincount(labels, minlength=3)]
        stats[split.name] = {"samples": split.size, "seed": split.seed,
                             "class_counts": dict(zip(CLASS_NAMES, counts, strict=True))}
        if cfg.format == "npy":
            for key, array in arrays.items():
                artifacts.append(Artifact(f"{split.name}_{key}.npy", "npy", array, split.size,
                                          split.name))
        else:
            attrs = {"r_small": cfg.r_small, "r_big": cfg.r_big, "seed": split.seed,
                     "size": split.size, "class_names": list(CLASS_NAMES)}
            groups[split.name] = {"attrs": attrs, "datasets": arrays}
    if groups:
        data = {"attrs": {"dataset": NAME, "version": VERSION}, "groups": groups}
        total = sum(s.size for s in cfg.splits)
        artifacts.append(Artifact("yinyang.h5", "hdf5_plain", data, total, "all"))
    return ShardResult(artifacts, stats, fills)


def _fill(split: Split, cfg: Config, stats: dict[str, dict]) -> Fill:
    """The C walk of one split, into buffers the writers give it; it sets the class counts."""
    n = split.size

    def run(buffers: dict[str, memoryview]) -> None:
        _, *counts = _generate_c(split.seed, n, buffers["samples"], buffers["labels"],
                                 cfg.r_small, cfg.r_big, *_layout(n, cfg.r_small, cfg.r_big))
        stats[split.name]["class_counts"] = dict(zip(CLASS_NAMES, counts, strict=True))

    return Fill({"samples": Slot("<f8", (n, 4)), "labels": Slot("<i8", (n,))}, run)


def describe(stats: dict[str, dict]) -> str:
    parts = [f"{name} {s['samples']}" for name, s in stats.items()]
    return f"{', '.join(parts)} samples"


def check_flags(size: int | None, seed: int | None, split: str | None) -> None:
    if size is None and (seed is not None or split is not None):
        raise ConfigError("--seed and --split choose a single split and need --size")
