"""The event-shard schema: one HDF5 layout for every event dataset, and its reader.

``events/x`` (column), ``events/y`` (row), ``events/t``, ``events/p`` (1 = ON/positive): 1-D,
concatenated over the shard's samples, in the smallest unsigned dtypes that hold the dataset's
range. ``samples/offsets`` (N+1, uint64): sample i's events are ``offsets[i]:offsets[i+1]``.
``samples/label`` and any other per-sample arrays (``samples/source`` as UTF-8 strings).
File attributes name the dataset, version, split, schema version, sensor size and time unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
EVENT_FIELDS = ("x", "y", "t", "p")
# Fixed chunking keeps the bytes independent of how a shard happens to be written.
CHUNK = 1 << 16
COMPRESSION = {"compression": "gzip", "compression_opts": 1, "shuffle": True}


def smallest_uint(max_value: int) -> np.dtype:
    """The smallest unsigned dtype holding ``0..max_value``."""
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"{max_value} does not fit in 64 bits")


@dataclass
class EventShard:
    """What one event shard holds; ``events`` maps x, y, t, p to concatenated arrays."""

    events: dict[str, np.ndarray]
    offsets: np.ndarray
    samples: dict[str, np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)


def write(path: Path, shard: EventShard) -> None:
    import h5py

    from .hdf5 import STR, set_attrs

    with h5py.File(path, "w", libver="earliest") as f:
        set_attrs(f, {"schema_version": SCHEMA_VERSION, **shard.attrs})
        events = f.create_group("events")
        for name in EVENT_FIELDS:
            events.create_dataset(name, data=shard.events[name], chunks=(CHUNK,),
                                  maxshape=(None,), track_times=False, **COMPRESSION)
        samples = f.create_group("samples")
        samples.create_dataset("offsets", data=shard.offsets.astype(np.uint64),
                               track_times=False)
        for name in sorted(shard.samples):
            array = shard.samples[name]
            if array.dtype.kind in "UO":
                array = np.array([str(s) for s in array], dtype=STR)
            samples.create_dataset(name, data=array, track_times=False)


def read(path: Path) -> EventShard:
    """The whole shard in memory (the lazy reader opens shards itself)."""
    import h5py

    with h5py.File(path, "r") as f:
        events = {name: f["events"][name][()] for name in EVENT_FIELDS}
        samples = {}
        for name, ds in f["samples"].items():
            if name == "offsets":
                continue
            samples[name] = ds.asstr()[()] if h5py.check_string_dtype(ds.dtype) else ds[()]
        attrs = {k: v for k, v in f.attrs.items()}
        return EventShard(events, f["samples/offsets"][()], samples, attrs)
