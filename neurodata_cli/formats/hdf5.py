"""HDF5 shards: one file per shard, ``<dataset>-<split>-00003-of-00010.h5``, one schema for all.

``samples/<column>``: one entry per sample (labels, features, ``source`` as UTF-8 strings).
Event datasets add ``events/x``, ``events/y``, ``events/t``, ``events/p`` (1 = ON), concatenated
over the shard's samples in the dataset's own dtypes, and ``samples/offsets`` (N+1, uint64):
sample i's events are ``offsets[i]:offsets[i+1]``. File attributes name the dataset, version,
split, schema version and whatever the dataset adds (sensor size, time unit).

Event chunks are shuffled and deflated (zlib) with libdeflate, then written as whole chunks:
the same zlib stream HDF5's built-in gzip filter reads, so plain h5py reads the files. A field
at level 0 is stored without filters: its chunks are the raw values.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunError
from . import (
    EVENT_FIELDS,
    ShardedStore,
    Store,
    Writer,
    file_entry,
    same_width,
    staged,
    to_structured,
)

SCHEMA_VERSION = 1
CHUNK = 1 << 16  # events per chunk by default (a dataset's event_chunk); fixed per dataset, so
# the bytes do not depend on how a shard is built
DEFLATE_LEVEL = 1


def field_levels(levels: dict[str, int] | None) -> dict[str, int]:
    """Each event field's deflate level: the dataset's, or DEFLATE_LEVEL (0: stored raw)."""
    return {k: (levels or {}).get(k, DEFLATE_LEVEL) for k in EVENT_FIELDS}


def event_filters(levels: dict[str, int]) -> str:
    """What the event_filters attribute says: the filters, and each field's deflate level."""
    level = field_levels(levels)
    raw = [k for k in EVENT_FIELDS if not level[k]]
    packed = ", ".join(f"{k} {v}" for k, v in level.items() if v)
    parts = ([f"shuffle, gzip (zlib streams made by libdeflate; levels {packed})"] if packed
             else []) + ([f"no filters for {', '.join(raw)} (stored raw)"] if raw else [])
    return "; ".join(parts)



def set_attrs(obj: Any, attrs: dict[str, Any]) -> None:
    import h5py

    # Sorted, so the attribute order in the file does not depend on how the dict was built.
    for key in sorted(attrs):
        value = attrs[key]
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            value = np.array(value, dtype=h5py.string_dtype("utf-8"))
        obj.attrs[key] = value


class _Appender:
    """Appends to the four event datasets a whole chunk at a time.

    Every chunk is written once, full (but the last), so the compressed bytes do not depend on
    how the events arrive: events in one block or sample by sample give the same file.
    """

    def __init__(self, group: Any, dtypes: dict[str, np.dtype], chunk: int = CHUNK,
                 levels: dict[str, int] | None = None):
        self.chunk = chunk
        self.levels = field_levels(levels)
        self.datasets = {
            name: group.create_dataset(name, shape=(0,), dtype=dtypes[name], chunks=(chunk,),
                                       maxshape=(None,), track_times=False,
                                       **_filters(self.levels[name]))
            for name in EVENT_FIELDS
        }
        self.buffers = {name: np.zeros(chunk, dtype=dtypes[name]) for name in EVENT_FIELDS}
        self.filled = 0
        self.written = 0

    def append(self, events: dict[str, np.ndarray]) -> None:
        n = len(events[EVENT_FIELDS[0]])
        done = 0
        chunk = self.chunk
        while done < n:
            if not self.filled and n - done >= chunk:  # a whole chunk: no copy into the buffer
                self._write({name: events[name][done:done + chunk] for name in EVENT_FIELDS})
                done += chunk
                continue
            take = min(chunk - self.filled, n - done)
            for name in EVENT_FIELDS:
                self.buffers[name][self.filled:self.filled + take] = events[name][done:done + take]
            self.filled += take
            done += take
            if self.filled == chunk:
                self.flush()

    def flush(self) -> None:
        if not self.filled:
            return
        for buf in self.buffers.values():
            buf[self.filled:] = 0  # the tail of the last chunk, as HDF5's fill value
        self._write(self.buffers, self.filled)
        self.filled = 0

    def _write(self, chunks: dict[str, np.ndarray], count: int | None = None) -> None:
        import deflate

        end = self.written + (self.chunk if count is None else count)
        for name in EVENT_FIELDS:
            # In the stored dtype: the chunk's bytes are written as they are.
            chunk = np.ascontiguousarray(chunks[name], dtype=self.buffers[name].dtype)
            dsid = self.datasets[name].id
            dsid.set_extent((end,))
            level = self.levels[name]
            if not level:
                dsid.write_direct_chunk((self.written,), memoryview(chunk).cast("B"), 0)
                continue
            # The shuffle filter's byte planes; for one-byte values it is the identity.
            shuffled = (memoryview(chunk) if chunk.itemsize == 1
                        else chunk.view(np.uint8).reshape(-1, chunk.itemsize).T.tobytes())
            dsid.write_direct_chunk((self.written,), deflate.zlib_compress(shuffled, level), 0)
        self.written = end


def _filters(level: int) -> dict[str, Any]:
    """h5py's filter arguments for a field at ``level`` (0: none)."""
    return {"compression": "gzip", "compression_opts": level, "shuffle": True} if level else {}


class _Blocks:
    """A shard's blocks, keeping what the dataset's build raised apart from what h5py raises."""

    def __init__(self, blocks: Iterable[Any]):
        self.blocks = blocks
        self.error: BaseException | None = None

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self.blocks
        except BaseException as exc:
            self.error = exc
            raise


def _write_failed(path: Path, exc: RuntimeError) -> Exception:
    """One line for libhdf5's report of a failed write (h5py raises RuntimeError when a full
    disk stops a flush): the OSError it stands for when it names an errno, as any other failed
    write says, else a RunError naming the file."""
    text = " ".join(str(exc).split())
    code = re.search(r"errno = (\d+)", text)
    if code and int(code.group(1)):
        number = int(code.group(1))
        return OSError(number, os.strerror(number), str(path))
    return RunError(f"cannot write {path}: {text[:300]}")


class HDF5Writer(Writer):
    name = "hdf5"
    libraries = ("h5py", "deflate")

    def versions(self) -> dict[str, str]:
        import h5py

        return {**super().versions(), "libhdf5": h5py.version.hdf5_version}

    def write(self, stage: Path, ds: Any, cfg: Any, shard: Any,
              blocks: Iterable[Any]) -> list[dict[str, Any]]:
        rel = f"{ds.output_name(cfg)}-{shard.key}.h5"
        source = _Blocks(blocks)
        try:
            n = self._write(stage, rel, ds, cfg, shard, source)
        except RuntimeError as exc:
            if exc is source.error:  # the dataset's own, not a failed write
                raise
            raise _write_failed(stage / rel, exc) from None
        return [file_entry(stage, rel, shard.split, n)]

    def _write(self, stage: Path, rel: str, ds: Any, cfg: Any, shard: Any,
               blocks: Iterable[Any]) -> int:
        import h5py

        name = ds.output_name(cfg)
        n = 0
        with staged(stage, rel) as tmp:
            with h5py.File(tmp, "w", libver="earliest") as f:
                chunk, levels = ds.event_chunk, ds.event_levels
                stored = {"event_chunk": chunk, "event_filters": event_filters(levels)}
                attrs = {"schema_version": SCHEMA_VERSION, "dataset": name,
                         "version": ds.version, "split": shard.split}
                declared = ds.event_dtypes
                set_attrs(f, {**attrs, **(stored if declared else {}),
                              **ds.shard_attrs(cfg, shard)})

                def events(dtypes: dict[str, Any]) -> _Appender:
                    if not declared:  # a dataset that declares no dtypes: its first block's
                        set_attrs(f, stored)
                    return _Appender(f.create_group("events"),
                                     {k: np.dtype(dtypes[k]) for k in EVENT_FIELDS}, chunk, levels)

                appender = events(declared) if declared else None
                counts: list[np.ndarray] = []
                columns: dict[str, list[np.ndarray]] = {}
                for block in blocks:
                    if block.events is not None:
                        appender = appender or events({k: v.dtype for k, v in
                                                       block.events.items()})
                        appender.append(block.events)
                        counts.append(np.asarray(block.counts, dtype=np.uint64))
                    for name, column in block.columns.items():
                        columns.setdefault(name, []).append(np.asarray(column))
                    n += len(block)
                group = f.create_group("samples")
                if appender is not None:
                    appender.flush()
                    offsets = np.zeros(n + 1, dtype=np.uint64)
                    if counts:
                        np.cumsum(np.concatenate(counts), out=offsets[1:])
                    group.create_dataset("offsets", data=offsets, track_times=False)
                for name in sorted(columns):
                    _write_column(group, name, columns[name])
        return n

    def open(self, folder: Path, split: str, files: list[dict[str, Any]]) -> Store:
        return HDF5Store(folder, files)


_JOIN_BYTES = 1 << 26  # columns up to this size are joined in memory and written at once


def _write_column(group: Any, name: str, chunks: list[np.ndarray]) -> None:
    """One per-sample column from its blocks' chunks. Large ones (Yin-Yang's features) are
    written chunk by chunk into a dataset of the whole shape, so no joined copy is made."""
    import h5py

    if chunks[0].dtype.kind in "UO":
        strings = [str(s) for chunk in chunks for s in chunk]
        chunks = [np.array(strings, dtype=h5py.string_dtype("utf-8"))]
    elif chunks[0].dtype.kind == "S":  # blocks of other widths: one width, none cut short
        chunks = same_width(chunks)
    if len(chunks) == 1 or sum(c.nbytes for c in chunks) <= _JOIN_BYTES:
        group.create_dataset(name, data=np.concatenate(chunks), track_times=False)
    else:
        first = chunks[0]
        ds = group.create_dataset(name, shape=(sum(len(c) for c in chunks), *first.shape[1:]),
                                  dtype=first.dtype, track_times=False)
        start = 0
        for chunk in chunks:
            ds[start:start + len(chunk)] = chunk
            start += len(chunk)
    # HDF5 places cached data in the file when it is flushed, which otherwise happens when the
    # dataset object is garbage-collected (later under a profiler that holds frames, moving the
    # next object and changing the file's bytes). Flush now.
    group.file.flush()


_SLACK = bytes(64)  # appended to a deflated chunk, so libdeflate can read ahead (see _read)


class _Field:
    """One event field of an open shard, read as ``field.read(a, b)`` (events a to b).

    Chunks stored as we write them (shuffle, then gzip) are fetched with ``read_direct_chunk``
    and inflated by libdeflate, the library that deflated them: HDF5's zlib inflates these
    chunks three to eight times slower (65,536 events of runs: 150 us against 18). The last few
    stay inflated, for the next sample in order. Any other layout is read through h5py, and a
    pass in order reads ahead. Arrays that share a cached buffer are read-only.
    """

    KEEP = 4  # inflated chunks kept per field
    AHEAD = 1 << 19  # bytes read at once, in a sequential pass over a field without filters

    def __init__(self, ds: Any):
        import h5py

        self.ds = ds
        self.chunk = ds.chunks[0] if ds.chunks else 0
        self.dtype, self.length = ds.dtype, ds.shape[0]
        plist = ds.id.get_create_plist()
        codes = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        self.direct = self.chunk > 0 and codes in ([h5py.h5z.FILTER_SHUFFLE,
                                                     h5py.h5z.FILTER_DEFLATE],
                                                    [h5py.h5z.FILTER_DEFLATE])
        self.shuffled = codes[:1] == [h5py.h5z.FILTER_SHUFFLE]
        self.kept: dict[int, np.ndarray] = {}
        # (first event, events): one tuple, so a reader in another thread sees both or neither.
        self.ahead: tuple[int, np.ndarray] = (0, np.empty(0, self.dtype))
        self.next = -1

    def read(self, a: int, b: int) -> np.ndarray:
        """Events [a, b) (Python ints)."""
        if b <= a:
            return self.ds[a:b]
        if not self.direct:
            return self._plain(a, b)
        first, last = a // self.chunk, (b - 1) // self.chunk
        if first == last:
            return self._inflated(first)[a - first * self.chunk:b - first * self.chunk]
        whole = np.concatenate([self._inflated(k) for k in range(first, last + 1)])
        return whole[a - first * self.chunk:b - first * self.chunk]

    def _plain(self, a: int, b: int) -> np.ndarray:
        """h5py's read of [a, b); in a pass in order (a read starting where the last ended, or
        less than a chunk after it: a sorted batch), one read of the next AHEAD bytes serves the
        samples that follow: h5py costs about 10 us a call, more than copying a small sample's
        events. (Half a megabyte: a 2NMNIST pass in order took 0.030 ms a sample, against 0.033
        with windows of 65,536 events of every field; larger windows gained nothing.)"""
        sequential, self.next = 0 <= a - self.next < max(self.chunk, 1), b
        at, events = self.ahead
        if at <= a and b <= at + len(events):
            return events[a - at:b - at]
        if not sequential:
            return self.ds[a:b]
        events = self.ds[a:min(self.length, max(b, a + self.AHEAD // self.dtype.itemsize))]
        events.flags.writeable = False
        self.ahead = (a, events)
        return events[:b - a]

    def _inflated(self, k: int) -> np.ndarray:
        got = self.kept.pop(k, None)
        if got is None:
            got = self._read(k)
            if len(self.kept) >= self.KEEP:
                # The least recently used; from a copy (one step under the GIL), as another
                # thread may change the dict between iter() and next().
                self.kept.pop(next(iter(self.kept.copy())), None)
        self.kept[k] = got
        return got

    def _read(self, k: int) -> np.ndarray:
        import deflate

        mask, raw = self.ds.id.read_direct_chunk((k * self.chunk,))
        if mask:  # HDF5 skipped a filter on this chunk: let it undo what it did
            return self.ds[k * self.chunk:(k + 1) * self.chunk]
        size = self.dtype.itemsize
        # libdeflate decodes in a fast loop only while enough input lies ahead of it; a chunk of
        # runs deflates to a few hundred bytes and would be decoded byte by byte (30 us instead
        # of 5). Bytes after the zlib stream's checksum are never read as data.
        planes = np.frombuffer(deflate.zlib_decompress(raw + _SLACK, self.chunk * size), np.uint8)
        if self.shuffled and size > 1:  # the shuffle filter's byte planes, back to values
            planes = planes.reshape(size, self.chunk).T.copy()
        values = planes.view(self.dtype).reshape(-1)
        values.flags.writeable = False
        # The last chunk is stored whole; past the dataset's end it holds fill values.
        return values[:max(0, min(self.chunk, self.length - k * self.chunk))]


class _Shard:
    """One open shard: its event fields (kept open, with their inflated chunks) and its
    per-sample columns, read whole once (a few thousand values)."""

    def __init__(self, path: Path):
        import h5py

        # Without HDF5's chunk cache: the fields keep their own chunks and windows, and a read
        # of raw events then fetches just its bytes, not each whole chunk into the cache first
        # (a random 2NMNIST sample 0.055 ms instead of 0.09; deflated fields are unchanged).
        self.file = h5py.File(path, "r", rdcc_nbytes=0)
        samples = self.file["samples"]
        self.columns = {name: ds.asstr()[()] if ds.dtype.kind == "O" else ds[()]
                        for name, ds in samples.items() if name != "offsets"}
        # Python ints, as the fields are sliced with them (numpy scalars cost a conversion).
        self.offsets = samples["offsets"][()].tolist() if "offsets" in samples else None
        self.events = ([_Field(self.file["events"][k]) for k in EVENT_FIELDS]
                       if "events" in self.file else None)

    def record(self, j: int) -> dict[str, Any]:
        """Sample j: its events (when the dataset has them) and its per-sample columns."""
        out: dict[str, Any] = {}
        if self.events is not None:
            a, b = self.offsets[j], self.offsets[j + 1]
            x, y, t, p = (f.read(a, b) for f in self.events)
            out["events"] = to_structured(x, y, t, p)
        for name, column in self.columns.items():
            out[name] = column[j]
        return out


class HDF5Store(ShardedStore):
    """Samples of one split's shards, in order across them; the most recently used shards stay
    open per process."""

    OPEN = 16  # shards kept open at once

    def __init__(self, folder: Path, files: list[dict[str, Any]]):
        shards = sorted((f for f in files if f["path"].endswith(".h5")), key=lambda f: f["path"])
        super().__init__(shards)
        self.paths = [folder / f["path"] for f in shards]
        self._files: dict[int, _Shard] = {}
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_files": {}, "_lock": None}  # open files do not pickle

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def _shard(self, k: int) -> _Shard:
        # DataLoader workers fork: an HDF5 handle must not cross into another process (nor a
        # lock another thread held at the fork).
        if self._pid != os.getpid():
            self._files, self._pid, self._lock = {}, os.getpid(), threading.Lock()
        with self._lock:
            shard = self._files.pop(k, None)
            if shard is None:
                if len(self._files) >= self.OPEN:
                    # The least recently used goes. Not closed: a thread may be reading it, and
                    # h5py closes the file when the last of its objects is released.
                    del self._files[next(iter(self._files))]
                shard = _Shard(self.paths[k])
            self._files[k] = shard  # now the most recently used
            return shard

    def read(self, i: int) -> dict[str, Any]:
        k, j = self.where(i)
        return self._shard(k).record(j)

    def info(self, i: int) -> dict[str, Any]:
        k, j = self.where(i)
        return {name: column[j] for name, column in self._shard(k).columns.items()}

    def read_many(self, indices: Any) -> list[dict[str, Any]]:
        """Sorted indices, read shard by shard with one pass over the chunks they touch."""
        out: list[dict[str, Any]] = []
        by_shard: dict[int, list[int]] = {}
        for i in indices:
            k, j = self.where(i)
            by_shard.setdefault(k, []).append(j)
        for k, js in by_shard.items():
            shard = self._shard(k)
            out += [shard.record(j) for j in js]
        return out

    def columns(self) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {}
        for k in range(len(self.paths)):
            for name, column in self._shard(k).columns.items():
                parts.setdefault(name, []).append(column)
        return {k: np.concatenate(v) for k, v in parts.items()}


HDF5 = HDF5Writer()
