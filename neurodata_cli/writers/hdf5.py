"""HDF5 shards: one file per shard, ``<dataset>-<split>-00003-of-00010.h5``, one schema for all.

``samples/<column>``: one entry per sample (labels, features, ``source`` as UTF-8 strings).
Event datasets add ``events/x``, ``events/y``, ``events/t``, ``events/p`` (1 = ON), concatenated
over the shard's samples in the dataset's own dtypes, and ``samples/offsets`` (N+1, uint64):
sample i's events are ``offsets[i]:offsets[i+1]``. File attributes name the dataset, version,
split, schema version and whatever the dataset adds (sensor size, time unit).

Event chunks are shuffled and deflated (zlib) with libdeflate, then written as whole chunks:
the same zlib stream HDF5's built-in gzip filter reads, so plain h5py reads the files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from . import EVENT_FIELDS, Store, Writer, file_entry, staged, to_structured

SCHEMA_VERSION = 1
CHUNK = 1 << 16  # events per chunk; fixed, so the bytes do not depend on how a shard is built
DEFLATE_LEVEL = 1


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

    def __init__(self, group: Any, dtypes: dict[str, np.dtype]):
        self.datasets = {
            name: group.create_dataset(name, shape=(0,), dtype=dtypes[name], chunks=(CHUNK,),
                                       maxshape=(None,), track_times=False, compression="gzip",
                                       compression_opts=DEFLATE_LEVEL, shuffle=True)
            for name in EVENT_FIELDS
        }
        self.buffers = {name: np.zeros(CHUNK, dtype=dtypes[name]) for name in EVENT_FIELDS}
        self.filled = 0
        self.written = 0

    def append(self, events: dict[str, np.ndarray]) -> None:
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
                self.flush()

    def flush(self) -> None:
        if not self.filled:
            return
        for buf in self.buffers.values():
            buf[self.filled:] = 0  # the tail of the last chunk, as HDF5's fill value
        self._write(self.buffers, self.filled)
        self.filled = 0

    def _write(self, chunks: dict[str, np.ndarray], count: int = CHUNK) -> None:
        import deflate

        end = self.written + count
        for name in EVENT_FIELDS:
            chunk = np.ascontiguousarray(chunks[name])
            shuffled = chunk.view(np.uint8).reshape(-1, chunk.itemsize).T.tobytes()
            dsid = self.datasets[name].id
            dsid.set_extent((end,))
            dsid.write_direct_chunk((self.written,),
                                    deflate.zlib_compress(shuffled, DEFLATE_LEVEL), 0)
        self.written = end


class HDF5Writer(Writer):
    name = "hdf5"
    libraries = ("h5py", "deflate")

    def versions(self) -> dict[str, str]:
        import h5py

        return {**super().versions(), "libhdf5": h5py.version.hdf5_version}

    def write(self, stage: Path, ds: Any, cfg: Any, shard: Any,
              blocks: Iterable[Any]) -> list[dict[str, Any]]:
        import h5py

        name = ds.output_name(cfg)
        rel = f"{name}-{shard.key}.h5"
        n = 0
        with staged(stage, rel) as tmp:
            with h5py.File(tmp, "w", libver="earliest") as f:
                set_attrs(f, {"schema_version": SCHEMA_VERSION, "dataset": name,
                              "version": ds.version, "split": shard.split,
                              **ds.shard_attrs(cfg, shard)})
                appender = None
                if ds.event_dtypes is not None:
                    appender = _Appender(f.create_group("events"),
                                         {k: np.dtype(v) for k, v in ds.event_dtypes.items()})
                counts: list[np.ndarray] = []
                columns: dict[str, list[np.ndarray]] = {}
                for block in blocks:
                    if block.events is not None:
                        if appender is None:
                            appender = _Appender(f.create_group("events"),
                                                 {k: block.events[k].dtype for k in EVENT_FIELDS})
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
        return [file_entry(stage, rel, shard.split, n)]

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


class HDF5Store(Store):
    """Samples of one split's shards, in order across them; files stay open per process."""

    def __init__(self, folder: Path, files: list[dict[str, Any]]):
        shards = sorted((f for f in files if f["path"].endswith(".h5")), key=lambda f: f["path"])
        self.paths = [folder / f["path"] for f in shards]
        self.starts = np.concatenate([[0], np.cumsum([f["records"] for f in shards])]).astype(
            np.int64)
        self._files: dict[int, Any] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_files": {}}  # open files do not pickle

    def _file(self, k: int) -> Any:
        # DataLoader workers fork: an HDF5 handle must not cross into another process.
        if self._pid != os.getpid():
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(k)
        if f is None:
            import h5py

            f = self._files[k] = h5py.File(self.paths[k], "r")
        return f

    def locate(self, i: int) -> tuple[Any, int]:
        i = self.check_index(i)
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self._file(k), i - int(self.starts[k])

    def read(self, i: int) -> dict[str, Any]:
        f, j = self.locate(i)
        out: dict[str, Any] = {}
        samples = f["samples"]
        if "events" in f:
            a, b = (int(v) for v in samples["offsets"][j:j + 2])
            ev = f["events"]
            out["events"] = to_structured(*(ev[k][a:b] for k in EVENT_FIELDS))
        for name, ds in samples.items():
            if name != "offsets":
                out[name] = ds.asstr()[j] if ds.dtype.kind == "O" else ds[j]
        return out

    def columns(self) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {}
        for k in range(len(self.paths)):
            for name, ds in self._file(k)["samples"].items():
                if name != "offsets":
                    parts.setdefault(name, []).append(ds.asstr()[()] if ds.dtype.kind == "O"
                                                      else ds[()])
        return {k: np.concatenate(v) for k, v in parts.items()}

    def attrs(self) -> dict[str, Any]:
        return dict(self._file(0).attrs) if self.paths else {}


HDF5 = HDF5Writer()
