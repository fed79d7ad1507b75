"""HDF5 shards: one file per shard, ``<dataset>-<split>-00003-of-00010.h5``, one schema for all.

``samples/<column>``: one entry per sample (labels, features, ``source`` as UTF-8 strings).
Event datasets add ``events/x``, ``events/y``, ``events/t``, ``events/p`` (1 = ON), concatenated
over the shard's samples in the dataset's own dtypes, and ``samples/offsets`` (N+1, uint64):
sample i's events are ``offsets[i]:offsets[i+1]``. File attributes name the dataset, version,
split, schema version, the events' codec and whatever the dataset adds (sensor size, time unit).

Events are stored by HDF5 itself, through its filter pipeline: the dataset's ``Codec`` picks
raw (contiguous, read back through a memory map), the built-in shuffle and gzip, or a filter that
hdf5plugin registers (zstd, blosc2, lz4). No bytes are compressed here.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunError
from ..storage import is_url, join
from . import (
    EVENT_FIELDS,
    OpenFiles,
    ShardedStore,
    Store,
    Writer,
    file_entry,
    same_width,
    staged,
    to_structured,
)

SCHEMA_VERSION = 1
PLUGINS = ("zstd", "blosc2", "lz4")  # codecs that need ``import hdf5plugin`` to read or write


@dataclass(frozen=True)
class Codec:
    """How a dataset's event fields are stored. ``raw``: contiguous, no filters, read through a
    memory map. ``gzip``: HDF5's built-in shuffle and deflate. ``zstd``, ``blosc2`` (its zstd,
    with its own byte shuffle), ``lz4``: filters hdf5plugin registers, after HDF5's shuffle.
    ``chunk``: events per chunk, fixed per dataset so a file's bytes do not depend on how its
    shard was built."""

    name: str = "gzip"
    level: int = 1
    chunk: int = 1 << 16

    def filters(self) -> dict[str, Any]:
        """h5py's ``create_dataset`` arguments for one event field."""
        if self.name == "raw":
            return {}
        if self.name == "gzip":
            return {"compression": "gzip", "compression_opts": self.level, "shuffle": True,
                    "chunks": (self.chunk,)}
        import hdf5plugin

        made: dict[str, Callable[[], Any]] = {
            "zstd": lambda: hdf5plugin.Zstd(clevel=self.level),
            "lz4": lambda: hdf5plugin.LZ4(),
            "blosc2": lambda: hdf5plugin.Blosc2("zstd", self.level, hdf5plugin.Blosc2.SHUFFLE)}
        if self.name not in made:
            raise ValueError(f"unknown event codec {self.name!r}")
        return {**made[self.name](), "shuffle": self.name != "blosc2", "chunks": (self.chunk,)}

    def attrs(self) -> dict[str, Any]:
        """What each shard records: the codec, its level and chunk, and what reads it."""
        raw = self.name == "raw"
        how = ("contiguous, no filters" if raw else
               f"chunks of {self.chunk} events, "
               f"{'' if self.name == 'blosc2' else 'shuffle, '}{self.name} level {self.level}")
        need = "h5py and hdf5plugin" if self.name in PLUGINS else "h5py"
        return {"event_codec": self.name, "event_codec_level": 0 if raw else self.level,
                "event_chunk": 0 if raw else self.chunk,
                "event_filters": f"{how}; read with {need}"}


DEFAULT_CODEC = Codec()


def set_attrs(obj: Any, attrs: dict[str, Any]) -> None:
    import h5py

    # Sorted, so the attribute order in the file does not depend on how the dict was built.
    for key in sorted(attrs):
        value = attrs[key]
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            value = np.array(value, dtype=h5py.string_dtype("utf-8"))
        obj.attrs[key] = value


class _Appender:
    """Appends to the four event datasets. Filtered fields are written a whole chunk at a time,
    each chunk once, so the file's bytes do not depend on how the events arrive. Raw fields are
    spooled to unnamed temporary files and written contiguous once their length is known."""

    def __init__(self, group: Any, dtypes: dict[str, np.dtype], codec: Codec,
                 spools: contextlib.ExitStack):
        import h5py

        self.group, self.dtypes, self.codec = group, dtypes, codec
        self.raw = codec.name == "raw"
        self.chunk = codec.chunk
        self.written = 0
        self.filled = 0
        if self.raw:
            folder = Path(group.file.filename).parent
            # Closed (and so deleted) by the caller's stack, whatever stops the write.
            self.spools = {k: spools.enter_context(tempfile.TemporaryFile(dir=folder))
                           for k in EVENT_FIELDS}
            return
        self.datasets = {k: group.create_dataset(k, shape=(0,), dtype=dtypes[k], maxshape=(None,),
                                                 track_times=False, **codec.filters())
                         for k in EVENT_FIELDS}
        self.buffers = {k: np.zeros(self.chunk, dtype=dtypes[k]) for k in EVENT_FIELDS}
        # What every write of a whole chunk takes, made once: its memory side, the fields' types.
        self.whole = h5py.h5s.create_simple((self.chunk,))
        self.types = {k: h5py.h5t.py_create(dtypes[k]) for k in EVENT_FIELDS}

    def append(self, events: dict[str, np.ndarray]) -> None:
        n = len(events[EVENT_FIELDS[0]])
        if self.raw:
            for k in EVENT_FIELDS:
                self.spools[k].write(np.ascontiguousarray(events[k], self.dtypes[k]).data.cast("B"))
            self.written += n
            return
        done = 0
        while done < n:
            take = min(self.chunk - self.filled, n - done)
            for k in EVENT_FIELDS:
                self.buffers[k][self.filled:self.filled + take] = events[k][done:done + take]
            self.filled += take
            done += take
            if self.filled == self.chunk:
                self._write()

    def _write(self) -> None:
        # h5py's low-level calls: a slice assignment's selection and checks cost about as much
        # as zstd compressing the 32 KiB chunk. The calls to libhdf5 are the same, in the same
        # order (HDF5 places each chunk in the file as it writes it: writing several chunks a
        # call would move the last ones past the samples group and change the bytes).
        import h5py

        start, end = self.written, self.written + self.filled
        memory = (self.whole if self.filled == self.chunk
                  else h5py.h5s.create_simple((self.filled,)))
        for k, ds in self.datasets.items():
            ds.id.set_extent((end,))
            space = ds.id.get_space()
            space.select_hyperslab((start,), (self.filled,))
            ds.id.write(memory, space, self.buffers[k][:self.filled], self.types[k])
        self.written, self.filled = end, 0

    def close(self) -> None:
        if not self.raw:
            if self.filled:
                self._write()
            return
        for k, spool in self.spools.items():
            ds = self.group.create_dataset(k, shape=(self.written,), dtype=self.dtypes[k],
                                           track_times=False)
            spool.seek(0)
            step, at = (1 << 22) // self.dtypes[k].itemsize, 0
            while at < self.written:
                part = np.frombuffer(spool.read(step * self.dtypes[k].itemsize), self.dtypes[k])
                ds[at:at + len(part)] = part
                at += len(part)


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
    libraries = ("h5py", "hdf5plugin")
    reads_urls = True

    def versions(self) -> dict[str, str]:
        import h5py

        return {**super().versions(), "libhdf5": h5py.version.hdf5_version}

    def write(self, stage: Path, ds: Any, cfg: Any, shard: Any,
              blocks: Iterable[Any]) -> list[dict[str, Any]]:
        output = ds.output_name(cfg)
        rel = f"{output}-{shard.key}.h5"
        source = _Blocks(blocks)
        try:
            n = self._write(stage, rel, output, ds, cfg, shard, source)
        except RuntimeError as exc:
            if exc is source.error:  # the dataset's own, not a failed write
                raise
            raise _write_failed(stage / rel, exc) from None
        return [file_entry(stage, rel, shard.split, n)]

    def _write(self, stage: Path, rel: str, output: str, ds: Any, cfg: Any, shard: Any,
               blocks: Iterable[Any]) -> int:
        import h5py

        n = 0
        declared = ds.features.events
        codec = (declared.codec if declared is not None else None) or DEFAULT_CODEC
        with staged(stage, rel) as tmp, contextlib.ExitStack() as spools:
            with h5py.File(tmp, "w", libver="earliest") as f:
                attrs = {"schema_version": SCHEMA_VERSION, "dataset": output,
                         "version": ds.version, "split": shard.split}
                set_attrs(f, {**attrs, **(codec.attrs() if declared else {}),
                              **ds.features.attrs(), **ds.shard_attrs(cfg, shard)})
                appender = None if declared is None else _Appender(
                    f.create_group("events"), declared.dtypes, codec, spools)
                counts: list[np.ndarray] = []
                columns: dict[str, list[np.ndarray]] = {}
                for block in blocks:
                    if appender is not None and block.events is not None:
                        appender.append(declared.served(block.events, block.counts))
                        counts.append(np.asarray(block.counts, dtype=np.uint64))
                    for name, column in block.columns.items():
                        columns.setdefault(name, []).append(np.asarray(column))
                    n += len(block)
                group = f.create_group("samples")
                if appender is not None:
                    appender.close()
                    offsets = np.zeros(n + 1, dtype=np.uint64)
                    if counts:
                        np.cumsum(np.concatenate(counts), out=offsets[1:])
                    group.create_dataset("offsets", data=offsets, track_times=False)
                for name in sorted(columns):
                    _write_column(group, name, columns[name])
        return n

    def open(self, folder: Path | str, split: str, files: list[dict[str, Any]]) -> Store:
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


# A shard at a URL is read through fsspec by ranged reads of this many bytes, the last few kept
# (HDF5 jumps between its metadata, the offsets and the four event fields).
URL_BLOCK, URL_BLOCKS = 1 << 18, 64


def _field(path: Path | str, ds: Any) -> Any:
    """One event field, sliceable: a memory map of a contiguous field (no HDF5 call a read), else
    the h5py dataset, whose filter pipeline and chunk cache decode it (always, at a URL: there
    is nothing to map)."""
    offset = ds.id.get_offset() if ds.chunks is None and not is_url(path) else None
    if offset is None:
        return ds if len(ds) else np.empty(0, ds.dtype)
    return np.memmap(path, dtype=ds.dtype, mode="r", offset=offset, shape=ds.shape)


class _Shard:
    """One open shard: its event fields and its per-sample columns, read whole once."""

    def __init__(self, path: Path | str, image: bytes | None = None):
        """``image``: the file's bytes, read already (streaming a URL)."""
        import h5py

        if image is not None:
            self.file = _from_image(image)
        else:
            self.file = h5py.File(_url_file(str(path)) if is_url(path) else path, "r")
        if self.file.attrs.get("event_codec") in PLUGINS:
            import hdf5plugin  # noqa: F401  (registers the codec's filter with HDF5)
        samples = self.file["samples"]
        self.columns = {name: ds.asstr()[()] if ds.dtype.kind == "O" else ds[()]
                        for name, ds in samples.items() if name != "offsets"}
        # Python ints, as the fields are sliced with them (numpy scalars cost a conversion).
        self.offsets = samples["offsets"][()].tolist() if "offsets" in samples else None
        self.events = ([_field(path, self.file["events"][k]) for k in EVENT_FIELDS]
                       if "events" in self.file else None)
        if image is not None and self.events is not None:
            # Raw fields copied out of the image at once (what a memory map would give); a
            # filtered one stays an h5py dataset, decoded chunk by chunk as the samples go.
            self.events = [f[()] if isinstance(f, h5py.Dataset) and f.chunks is None else f
                           for f in self.events]

    def record(self, j: int) -> dict[str, Any]:
        """Sample j: its events (when the dataset has them) and its per-sample columns."""
        out: dict[str, Any] = {}
        if self.events is not None:
            assert self.offsets is not None  # the writer stores offsets with events
            a, b = self.offsets[j], self.offsets[j + 1]
            x, y, t, p = (f[a:b] for f in self.events)
            out["events"] = to_structured(x, y, t, p)
        for name, column in self.columns.items():
            out[name] = column[j]
        return out


def _from_image(image: bytes) -> Any:
    """An HDF5 file opened from its bytes in memory: HDF5's core driver reads them in place
    (a Python file object would be called for every chunk)."""
    import h5py

    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_fapl_core(backing_store=False)
    fapl.set_file_image(image)
    return h5py.File(h5py.h5f.open(b"shard", h5py.h5f.ACC_RDONLY, fapl=fapl))


def _url_file(url: str) -> Any:
    """A file object over a shard in a store, for h5py: blocks of ``URL_BLOCK`` bytes by ranged
    reads, the last ``URL_BLOCKS`` kept."""
    from .. import storage

    fs, path = storage.url_fs(url)
    try:
        return fs.open(path, "rb", block_size=URL_BLOCK, cache_type="blockcache",
                       cache_options={"maxblocks": URL_BLOCKS})
    except Exception as exc:  # noqa: BLE001  (each store raises its own kinds)
        raise storage.failure(url, exc) from None


class HDF5Store(ShardedStore):
    """Samples of one split's shards, in order across them; the most recently used shards stay
    open per process. ``folder`` may be a URL: shards are then read through fsspec."""

    OPEN = 16  # shards kept open at once

    def __init__(self, folder: Path | str, files: list[dict[str, Any]]):
        shards = sorted((f for f in files if f["path"].endswith(".h5")), key=lambda f: f["path"])
        super().__init__(shards)
        self.paths = [join(folder, f["path"]) for f in shards]
        self._files = OpenFiles(self.OPEN)

    def _shard(self, k: int) -> _Shard:
        # h5py closes a file when the last of its objects is released.
        return self._files.get(k, lambda: _Shard(self.paths[k]))

    def read(self, i: int) -> dict[str, Any]:
        k, j = self.where(i)
        return self._shard(k).record(j)

    def _records(self, k: int, image: bytes) -> Iterator[dict[str, Any]]:
        shard = _Shard(self.paths[k], image)
        try:
            for j in range(self.starts[k + 1] - self.starts[k]):
                yield shard.record(j)
        finally:
            shard.file.close()

    def info(self, i: int) -> dict[str, Any]:
        k, j = self.where(i)
        return {name: column[j] for name, column in self._shard(k).columns.items()}

    def columns(self) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {}
        for k in range(len(self.paths)):
            for name, column in self._shard(k).columns.items():
                parts.setdefault(name, []).append(column)
        return {k: np.concatenate(v) for k, v in parts.items()}


HDF5 = HDF5Writer()
