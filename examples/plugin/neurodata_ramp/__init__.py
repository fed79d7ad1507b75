"""The ramp: a whole neurodata dataset in one small class, registered from outside.

Everything else (staging, resume, checksums, workers, progress, verify, info and the reader)
comes from neurodata's engine through the ``neurodata.datasets`` entry point.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurodata_cli.datasets.base import Block, Config, Dataset, Shard, option
from neurodata_cli.features import ClassLabel, Features, Tensor
from neurodata_cli.formats.hdf5 import HDF5


@dataclass(frozen=True)
class RampConfig(Config):
    """The ramp's options: each field is a flag (--size) and a YAML key (size)."""

    size: int = option(100, "Samples in the train split.", lo=1)
    seed: int = option(0, "The slope of the second feature.", lo=0)
    shard_size: int = option(1000, "Samples per shard.", lo=1)  # the shared --shard-size


class Ramp(Dataset[RampConfig]):
    """The ramp: sample i has features float64 [i, i * seed] and label i % 3.

    \b
    Example:
      neurodata ramp --size 1000 --seed 3 --shard-size 250
    """

    name = "ramp"
    version = "1.0.0"
    release_notes = {"1.0.0": "Features [i, i * seed], label i % 3."}
    formats = {"hdf5": HDF5}
    features = Features({"features": Tensor(np.float64, (2,), "[i, i * seed]"),
                         "label": ClassLabel(np.int64, ("zero", "one", "two"), "i % 3")})
    options = RampConfig

    def plan(self, cfg: RampConfig) -> list[Shard]:
        count = -(-cfg.size // cfg.shard_size)
        starts = range(0, cfg.size, cfg.shard_size)
        return [Shard("train", k, count, min(cfg.shard_size, cfg.size - start), start)
                for k, start in enumerate(starts)]

    def build(self, cfg: RampConfig, shard: Shard) -> Iterator[Block]:
        i = np.arange(shard.payload, shard.payload + shard.units)
        features = np.stack([i, i * cfg.seed], axis=1).astype(np.float64)
        yield Block({"features": features, "label": (i % 3).astype(np.int64)})

    def sample(self, record: dict[str, Any]) -> tuple[np.ndarray, int]:
        return record["features"], int(record["label"])
