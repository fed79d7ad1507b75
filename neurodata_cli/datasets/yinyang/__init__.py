"""Yin-Yang (Kriener, Göltz, Petrovici 2022), bit-identical to the authors' generator."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from ...config import Reader
from ...engine import RESERVED_SPLITS, SAFE_NAME
from ...errors import ConfigError
from ...features import ClassLabel, Features, Tensor
from ...formats.hdf5 import HDF5
from ...formats.npy import NPY
from ..base import Block, Config, Dataset, Invalid, Shard, option
from .walk import Walker, radii_problem, spike_times

CLASS_NAMES = ("yin", "yang", "dot")
BLOCK = 1 << 20  # samples per block
MAX_SPLIT_NAME = 64
PAPER_SPLITS = {"train": {"size": 5000, "seed": 42}, "validation": {"size": 1000, "seed": 41},
                "test": {"size": 1000, "seed": 40}}
SPLIT_NAME = (f"a split name must be at most {MAX_SPLIT_NAME} letters, digits, '.', '_' or "
              f"'-', and not {', '.join(sorted(RESERVED_SPLITS))}")


def _plain(name: object) -> bool:
    """Whether ``name`` may name a split: file names hold it, and have a length limit."""
    return (isinstance(name, str) and SAFE_NAME.match(name) is not None
            and name not in RESERVED_SPLITS and len(name) <= MAX_SPLIT_NAME)


def _splits(reader: Reader, key: str) -> dict[str, dict[str, int]]:
    """``{name: {size, seed}}``, checked; errors name the key and file, or the flag."""
    sp = reader.mapping(key)
    out = {}
    for name in list(sp.data):
        if not _plain(name):
            raise sp.fail(str(name), SPLIT_NAME)
        one = sp.mapping(name)
        out[name] = {"size": one.integer("size", lo=1), "seed": one.integer("seed", 0, 2**32 - 1)}
        one.finish()
    if not out:
        raise reader.fail(key, "no splits to generate")
    sp.finish()
    return out


@dataclass(frozen=True)
class YinYangConfig(Config):
    size: int | None = option(None, "Generate one split of this many samples instead of the "
                              "config's splits.", yaml=False, manifest=False, lo=1)
    seed: int | None = option(None, "Seed of the --size split (default 42).", yaml=False,
                              manifest=False, lo=0, hi=2**32 - 1)
    split: str | None = option(None, "Name of the --size split (default train).", yaml=False,
                               manifest=False)
    r_small: float = option(0.1, "Radius of the dots.")
    r_big: float = option(0.5, "Radius of the whole circle.")
    encoding: Literal["values", "spike-times"] = option(
        "values", "Also write the spike-time encoding of Göltz et al.")
    spike_times_t_early: float = option(0.15, key="spike_times.t_early", flag=False)
    spike_times_t_late: float = option(2.0, key="spike_times.t_late", flag=False)
    spike_times_t_bias: float = option(0.9, key="spike_times.t_bias", flag=False)
    # {name: {size, seed}}: what the walk makes (--size makes it one split)
    splits: dict[str, dict[str, int]] = option(PAPER_SPLITS, flag=False, replace=True,
                                               parse=_splits)


@dataclass(frozen=True)
class Part:
    """One split's samples: the whole split is one walk of one RandomState."""

    size: int
    seed: int


class YinYang(Dataset[YinYangConfig]):
    """The Yin-Yang dataset, bit-identical to the authors' generator.

    Without --size it writes the config's splits (the paper's: train 5000/seed 42,
    validation 1000/41, test 1000/40).

    \b
    Examples:
      neurodata yinyang
      neurodata yinyang --size 100000 --seed 7 --format npy --out /tmp/yy
    """

    name = "yinyang"
    version = "1.0.0"
    release_notes = {
        "1.0.0": "Bit-identical to the reference generator (dataset.py of yin_yang_data_set) "
        "for any size, seed, r_small and r_big; optional spike-time encoding.",
    }
    formats = {"hdf5": HDF5, "npy": NPY}
    features = Features({
        "samples": Tensor(np.float64, (4,), "x, y, 1 - x, 1 - y"),
        "labels": ClassLabel(np.int64, CLASS_NAMES),
        "spike_times": Tensor(np.float64, (5,), "the spike-time encoding (--encoding "
                              "spike-times): the four features and the bias", optional=True)})
    options = YinYangConfig

    def check(self, cfg: YinYangConfig) -> YinYangConfig:
        # Radii the walk could never finish with (or not within a lifetime) are refused here.
        problem = radii_problem(cfg.r_small, cfg.r_big)
        if problem:
            raise Invalid(*problem)
        if not cfg.spike_times_t_early < cfg.spike_times_t_late:
            raise Invalid("spike_times.t_early", f"{cfg.spike_times_t_early} must be less than "
                                                 f"t_late ({cfg.spike_times_t_late})")
        if cfg.size is None:
            if cfg.seed is not None or cfg.split is not None:
                raise ConfigError("--seed and --split choose a single split and need --size")
            return cfg
        name = cfg.split or "train"
        if not _plain(name):
            raise Invalid("split", SPLIT_NAME)
        return replace(cfg, splits={name: {"size": cfg.size,
                                           "seed": 42 if cfg.seed is None else cfg.seed}})

    def splits(self, cfg: YinYangConfig) -> list[str]:
        return list(cfg.splits)

    def plan(self, cfg: YinYangConfig) -> list[Shard]:
        return [Shard(name, 0, 1, s["size"], Part(s["size"], s["seed"]))
                for name, s in cfg.splits.items()]

    def build(self, cfg: YinYangConfig, shard: Shard) -> Iterator[Block]:
        """One walk per split, in blocks of at most ``BLOCK`` samples (so progress moves)."""
        part: Part = shard.payload
        walker = Walker(part.seed, cfg.r_small, cfg.r_big)
        for start in range(0, part.size, BLOCK):
            samples, labels = walker.take(min(BLOCK, part.size - start))
            columns = {"samples": samples, "labels": labels}
            if cfg.encoding == "spike-times":
                columns["spike_times"] = spike_times(samples, cfg.spike_times_t_early,
                                                     cfg.spike_times_t_late,
                                                     cfg.spike_times_t_bias)
            counts = np.bincount(labels, minlength=3).tolist()
            stats = {"class_counts": dict(zip(CLASS_NAMES, counts, strict=True))}
            yield Block(columns, stats=stats if start else {"seed": part.seed, **stats})

    def shard_attrs(self, cfg: YinYangConfig, shard: Shard) -> dict[str, Any]:
        return {"r_small": cfg.r_small, "r_big": cfg.r_big, "seed": shard.payload.seed,
                "size": shard.payload.size, "class_names": list(CLASS_NAMES)}

    def sample(self, record: dict[str, Any]) -> tuple[np.ndarray, int]:
        """``(features float64[4], label)``; ``record["spike_times"]`` holds the encoding."""
        return np.asarray(record["samples"], dtype=np.float64), int(record["labels"])

    def preview(self, data: Any, split: str, index: int) -> Any:
        from .draw import scatter

        columns = data.columns()
        return scatter(columns["samples"], columns["labels"], float(data.config["r_big"]),
                       f"Yin-Yang {self.version}, {split}")

    def preview_name(self, split: str, index: int) -> str:
        return f"{self.name}-{self.version}-{split}.png"
