"""The event-shard schema: one HDF5 layout for every event dataset, and its reader.

``events/x`` (column), ``events/y`` (row), ``events/t``, ``events/p`` (1 = ON/positive): 1-D,
concatenated over the shard's samples, in the smallest unsigned dtypes that hold the dataset's
range. ``samples/offsets`` (N+1, uint64): sample i's events are ``offsets[i]:offsets[i+1]``.
``samples/label`` and any other per-sample arrays (``samples/source`` as UTF-8 strings).
File attributes name the dataset, version, split, schema version, sensor size and time unit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
EVENT_FIELDS = ("x", "y", "t", "p")
# Fixed chunking keeps the bytes independent of how a shard happens to be written.
CHUNK = 1 << 16
COMPRESSION = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
DEFLATE_LEVEL = 1  # event chunks are compressed with libdeflate at this level


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


@dataclass
class EventStream:
    """A shard produced sample by sample while it is written, so no worker holds it whole.

    ``samples`` yields ``(events, values)`` per sample: ``events`` maps x, y, t, p to arrays and
    ``values`` maps each name of ``sample_dtypes`` to that sample's value. ``sample_dtypes`` gives
    a numpy dtype per name, or ``str`` for UTF-8 strings.
    """

    event_dtypes: dict[str, Any]
    sample_dtypes: dict[str, Any]
    samples: Iterable[tuple[dict[str, np.ndarray], dict[str, Any]]]
    attrs: dict[str, Any] = field(default_factory=dict)
    # Fields made of long runs of one value (t in time order, say): their chunks are encoded by
    # runs.py, in microseconds where libdeflate takes 70 to 160 per chunk of such data.
    runs: frozenset[str] = frozenset()


class _Appender:
    """Appends to the four event datasets a whole chunk at a time.

    Every chunk is written once, full (but the last), so the compressed bytes do not depend on
    how the events arrive: a whole ``EventShard`` and the same events streamed sample by sample
    give the same file.
    """

    def __init__(self, group: Any, dtypes: dict[str, Any], runs: frozenset[str] = frozenset()):
        self.runs = runs
        self.datasets = {
            name: group.create_dataset(name, shape=(0,), dtype=np.dtype(dtypes[name]),
                                       chunks=(CHUNK,), maxshape=(None,), track_times=False,
                                       **COMPRESSION)
            for name in EVENT_FIELDS
        }
        self.buffers = {name: np.empty(CHUNK, dtype=np.dtype(dtypes[name]))
                        for name in EVENT_FIELDS}
        self.filled = 0
        self.written = 0

    def append(self, events: dict[str, np.ndarray]) -> int:
        n = len(events[EVENT_FIELDS[0]])
        done = 0
        while done < n:
            if not self.filled and n - done >= CHUNK:  # a whole chunk: no copy into the buffer
                self._write({name: events[name][done:done + CHUNK] for name in EVENT_FIELDS})
                done += CHUNK
                continue
            take = min(CHUNK - self.filled, n - done)
            for name in EVENT_FIELDS:
                self.buffers[name][self.filled:self.filled + take] = events[name][done:done + take]
            self.filled += take
            done += take
            if self.filled == CHUNK:
                self._flush()
        return n

    def _flush(self) -> None:
        if not self.filled:
            return
        for buf in self.buffers.values():
            buf[self.filled:] = 0  # the tail of the last chunk, as HDF5's fill value
        self._write(self.buffers, self.filled)
        self.filled = 0

    def _write(self, chunks: dict[str, np.ndarray], count: int = CHUNK) -> None:
        end = self.written + count
        for name in EVENT_FIELDS:
            # The low-level calls (what Dataset.resize makes): its checks cost more than the
            # call itself, four times per chunk.
            dsid = self.datasets[name].id
            dsid.set_extent((end,))
            dsid.write_direct_chunk((self.written,),
                                    _gzip_chunk(chunks[name], name in self.runs), 0)
        self.written = end

    def close(self) -> None:
        self._flush()


def _gzip_chunk(chunk: np.ndarray, runs: bool = False) -> bytes:
    """One chunk through the dataset's filters (shuffle, then zlib deflate), done here.

    libdeflate writes the same zlib format as HDF5's gzip filter, so any HDF5 reader inflates it,
    about twice as fast as zlib at a similar size. Its output depends only on its version (in
    the manifest), not on the machine. A field of long runs goes through runs.py instead, whose
    output depends on nothing but the data.
    """
    chunk = np.ascontiguousarray(chunk)
    raw = chunk.view(np.uint8).reshape(-1, chunk.itemsize).T.tobytes()
    if runs:
        from .runs import encode

        return encode(raw)
    import deflate

    return deflate.zlib_compress(raw, DEFLATE_LEVEL)


def write(path: Path, shard: EventShard | EventStream) -> None:
    import h5py

    from .hdf5 import set_attrs

    with h5py.File(path, "w", libver="earliest") as f:
        set_attrs(f, {"schema_version": SCHEMA_VERSION, **shard.attrs})
        if isinstance(shard, EventShard):
            events = {name: np.asarray(shard.events[name]) for name in EVENT_FIELDS}
            appender = _Appender(f.create_group("events"),
                                 {name: events[name].dtype for name in EVENT_FIELDS})
            appender.append(events)
            appender.close()
            offsets, samples = shard.offsets, shard.samples
        else:
            offsets, samples = _stream(f, shard)
        group = f.create_group("samples")
        group.create_dataset("offsets", data=np.asarray(offsets, dtype=np.uint64),
                             track_times=False)
        for name in sorted(samples):
            _write_column(group, name, samples[name])


def _stream(f: Any, stream: EventStream) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    appender = _Appender(f.create_group("events"), stream.event_dtypes, stream.runs)
    counts: list[int] = []
    columns: dict[str, list[Any]] = {name: [] for name in stream.sample_dtypes}
    for events, values in stream.samples:
        counts.append(appender.append(events))
        for name in columns:
            columns[name].append(values[name])
    appender.close()
    offsets = np.zeros(len(counts) + 1, dtype=np.uint64)
    np.cumsum(counts, out=offsets[1:])
    samples = {}
    for name, dtype in stream.sample_dtypes.items():
        samples[name] = (np.array(columns[name], dtype=object) if dtype is str
                         else np.array(columns[name], dtype=dtype))
    return offsets, samples


def _write_column(group: Any, name: str, array: np.ndarray) -> None:
    from .hdf5 import STR

    if array.dtype.kind in "UO":
        array = np.array([str(s) for s in array], dtype=STR)
    group.create_dataset(name, data=array, track_times=False)
    # HDF5 places cached data in the file when it is flushed, which otherwise happens when the
    # dataset object is garbage-collected: later under a profiler that holds frames (a Dask
    # worker's), which moved the next object and changed the file's bytes. Flush now.
    group.file.flush()


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
