"""A toy dataset for engine tests: ``size`` samples of one split, ``shard_size`` per shard."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurodata_cli.datasets.base import Block, Config, Dataset, Shard, option
from neurodata_cli.features import Features, Tensor
from neurodata_cli.formats.npy import NPY


@dataclass(frozen=True)
class ToyConfig(Config):
    split: str = option("train", "The split to write.")
    size: int = option(6, "Samples.", lo=1)
    offset: int = option(0, "The second feature.")
    shard_size: int = option(2, "Samples per shard.", lo=1)


class Toy(Dataset):
    """Toy: sample i is [i, offset]."""

    name = "toy"
    version = "1.0.0"
    formats = {"npy": NPY}
    features = Features({"features": Tensor(np.int64, (2,)), "label": Tensor(np.int64)})
    split_scoped = True
    split_keys = frozenset({"split"})
    options = ToyConfig

    def splits(self, cfg):
        return [cfg.split]

    def plan(self, cfg):
        count = -(-cfg.size // cfg.shard_size)
        return [Shard(cfg.split, k, count, min(cfg.shard_size, cfg.size - start), start)
                for k, start in enumerate(range(0, cfg.size, cfg.shard_size))]

    def build(self, cfg, shard):
        i = np.arange(shard.payload, shard.payload + shard.units)
        yield Block({"features": np.stack([i, np.full_like(i, cfg.offset)], axis=1),
                     "label": i % 2})
