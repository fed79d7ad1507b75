"""WebDataset tar shards, for streaming: one tar per shard, ``<dataset>-<split>-00003-of-00010.tar``
(the HDF5 shards' names), read by the ``webdataset`` library, by Hugging Face
``datasets.load_dataset("webdataset", ...)``, and here by offset for random access.

A sample is the members that share its key, ``<split>-<shard>-of-<count>-<j>`` (the shard's key
and the sample's number in it, six digits or more; a dot in the split's name becomes '_'), in
this order:

- ``<key>.json``: the small per-sample info, an object of every scalar column (numbers as JSON
  numbers), every text column, and every label (a class index as an int, a multi-hot label as a
  list);
- ``<key>.cls``: the class index, as decimal text, when the dataset declares a ``ClassLabel``
  (the first one, if several): what ``webdataset``'s ``to_tuple(..., "cls")`` expects;
- ``<key>.<column>.npy``: every other column (arrays such as Yin-Yang's ``samples``), as
  ``np.save`` writes it;
- ``<key>.events.x.npy``, ``.events.y.npy``, ``.events.t.npy``, ``.events.p.npy``: the sample's
  events, tonic's fields as four 1-D arrays in the declared dtypes, in the order served (2NMNIST
  sorted by t, as in HDF5). Four plain arrays rather than one structured array because
  Hugging Face ``datasets`` (pyarrow) cannot hold a numpy structured array; ``events(sample)``
  joins them into one.

Each tar opens with a PAX global header, ``NEURODATA.features``: a JSON description of the
columns (dtype, shape, member), the event dtypes and the dataset's attributes, from which the
reader restores the exact dtypes of what JSON holds. Tar readers skip it.

The bytes are fixed: members in that order, mtime 0, uid and gid 0, no owner names, mode 0644,
the PAX format of CPython's ``tarfile`` (no time fields), JSON with sorted keys. Nothing is
compressed: a member's bytes are read in place.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunError
from ..storage import is_url, join, open_input
from . import (
    EVENT_FIELDS,
    OpenFiles,
    ShardedStore,
    Store,
    Writer,
    file_entry,
    staged,
    to_structured,
)

SCHEMA_VERSION = 1
HEADER = "NEURODATA.features"  # the PAX global header's keyword (vendor-prefixed, as PAX asks)
EVENT_MEMBERS = tuple(f"events.{k}.npy" for k in EVENT_FIELDS)


def sample_key(shard_key: str, j: int) -> str:
    """Sample j of a shard, unique in the split. Readers split a member's name at its first dot
    (key, then member), so a split name's dots become '_' here: ``a.b`` gives ``a_b-...``."""
    return f"{shard_key.replace('.', '_')}-{j:06d}"


def _in_json(feature: Any) -> bool:
    """Whether a column is kept in the sample's JSON (text, numbers, labels) or in an npy."""
    if feature.dtype == "str":
        return True
    kind = np.dtype(feature.dtype).kind
    return kind in "biuf" and (feature.shape == () or (feature.classes > 0 and kind in "biu"))


def describe(ds: Any, cfg: Any, shard: Any) -> dict[str, Any]:
    """What a shard holds, for its PAX global header: each column's dtype, shape and member."""
    columns = {name: {"dtype": f.dtype, "shape": list(f.shape),
                      "member": "json" if _in_json(f) else f"{name}.npy"}
               for name, f in ds.features.columns.items()}
    labels = [name for name, f in ds.features.columns.items() if f.classes and f.shape == ()]
    events = ds.features.events
    return {"schema_version": SCHEMA_VERSION, "dataset": ds.output_name(cfg),
            "version": ds.version, "split": shard.split, "columns": columns,
            "cls": labels[0] if labels else None,
            "events": None if events is None else {k: v.name for k, v in events.dtypes.items()},
            "attrs": {**ds.features.attrs(), **ds.shard_attrs(cfg, shard)}}


def _plain(value: Any) -> Any:
    """numpy values as JSON takes them."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      default=_plain).encode("utf-8")


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    # Little-endian on every machine, so the bytes do not depend on where they were written.
    np.lib.format.write_array(out, np.ascontiguousarray(array).astype(
        array.dtype.newbyteorder("<"), copy=False), allow_pickle=False)
    return out.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    # Everything a tar header holds besides the name and size, fixed: the same bytes everywhere.
    info.size, info.mtime, info.mode, info.type = len(data), 0, 0o644, tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _samples(ds: Any, blocks: Iterable[Any]) -> Iterator[list[tuple[str, bytes]]]:
    """Each sample's members (name after the key, bytes), in order, from the shard's blocks."""
    declared = ds.features.events
    features = ds.features.columns
    labels = [name for name, f in features.items() if f.classes and f.shape == ()]
    for block in blocks:
        events, offsets = None, None
        if declared is not None and block.events is not None:
            events = declared.served(block.events, block.counts)
            offsets = np.zeros(len(block) + 1, dtype=np.int64)
            np.cumsum(np.asarray(block.counts, dtype=np.int64), out=offsets[1:])
        for j in range(len(block)):
            info: dict[str, Any] = {}
            arrays: list[tuple[str, bytes]] = []
            for name in features:  # declared order; an optional column may be absent
                if name not in block.columns:
                    continue
                value = block.columns[name][j]
                if features[name].dtype == "str":
                    info[name] = str(value)
                elif _in_json(features[name]):
                    info[name] = np.asarray(value).tolist()
                else:
                    arrays.append((f"{name}.npy", _npy(np.asarray(value))))
            members = [("json", _json(info))]
            if labels and labels[0] in block.columns:
                members.append(("cls", str(int(block.columns[labels[0]][j])).encode("ascii")))
            members += arrays
            if events is not None and offsets is not None:
                a, b = offsets[j], offsets[j + 1]
                members += [(member, _npy(np.asarray(events[k][a:b], declared.dtypes[k])))
                            for member, k in zip(EVENT_MEMBERS, EVENT_FIELDS, strict=True)]
            yield members


class WebDatasetWriter(Writer):
    """One WebDataset tar per shard (see the module's docstring)."""

    name = "webdataset"
    reads_urls = True
    libraries = ("numpy",)  # the npy members; the tar headers are CPython's (python's version)

    def write(self, stage: Path, ds: Any, cfg: Any, shard: Any,
              blocks: Iterable[Any]) -> list[dict[str, Any]]:
        rel = f"{ds.output_name(cfg)}-{shard.key}.tar"
        n = 0
        header = _json(describe(ds, cfg, shard)).decode("utf-8")
        with staged(stage, rel) as tmp, tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT,
                                                     pax_headers={HEADER: header},
                                                     encoding="utf-8") as tar:
            for members in _samples(ds, blocks):
                key = sample_key(shard.key, n)
                for suffix, data in members:
                    _add(tar, f"{key}.{suffix}", data)
                n += 1
        return [file_entry(stage, rel, shard.split, n)]

    def open(self, folder: Path, split: str, files: list[dict[str, Any]]) -> Store:
        return WebDatasetStore(folder, files)


def events(sample: dict[str, Any]) -> np.ndarray:
    """A decoded sample's events (``webdataset``'s ``.decode()`` or a ``datasets`` row) as one
    structured array with tonic's fields x, y, t, p, each in its stored dtype."""
    fields = [np.asarray(sample[m]) for m in EVENT_MEMBERS]
    out = np.empty(len(fields[0]), dtype=[(k, f.dtype) for k, f in
                                          zip(EVENT_FIELDS, fields, strict=True)])
    for k, f in zip(EVENT_FIELDS, fields, strict=True):
        out[k] = f
    return out


class _Shard:
    """One tar's index, listed once with tarfile: each sample's members (the same names in
    every sample of a shard) as the offset and size of their bytes."""

    def __init__(self, path: Path | str, image: bytes | None = None):
        rows: list[list[tuple[int, int]]] = []
        names: list[str] = []
        last = None
        # A URL's tar is listed through ranged reads, or from its bytes when streamed whole.
        source = io.BytesIO(image) if image is not None else open_input(path)
        with source, tarfile.open(fileobj=source, mode="r:") as tar:
            self.header = json.loads(tar.pax_headers.get(HEADER, "{}"))
            for member in tar:
                key, _, suffix = member.name.partition(".")
                if key != last:
                    rows.append([])
                    last = key
                if len(rows) == 1:
                    names.append(suffix)
                elif len(rows[-1]) >= len(names) or names[len(rows[-1])] != suffix:
                    raise RunError(f"{path}: sample {len(rows) - 1} holds other members than "
                                   f"sample 0 ({', '.join(names)})")
                rows[-1].append((member.offset_data, member.size))
        if rows and len(rows[-1]) != len(names):
            raise RunError(f"{path}: its last sample lacks members of {', '.join(names)}")
        self.names = {name: m for m, name in enumerate(names)}
        # (samples, members, 2): 16 bytes a member; every shard read keeps its index.
        self.index = np.array(rows, dtype=np.int64).reshape(len(rows), len(names), 2)
        columns = self.header.get("columns", {})
        self.in_json = {name: c for name, c in columns.items() if c["member"] == "json"}
        self.in_npy = {c["member"]: name for name, c in columns.items() if c["member"] != "json"}

    def __len__(self) -> int:
        return len(self.index)


class WebDatasetStore(ShardedStore):
    """Samples of one split's tars, in order across them, each member read at the offset its
    shard's index gives. Every shard read is indexed once per process; the most recently used
    stay open."""

    OPEN = 16  # files kept open at once

    def __init__(self, folder: Path | str, files: list[dict[str, Any]]):
        shards = sorted((f for f in files if f["path"].endswith(".tar")), key=lambda f: f["path"])
        super().__init__(shards)
        self.paths = [join(folder, f["path"]) for f in shards]
        self._shards: dict[int, _Shard] = {}
        self._files = OpenFiles(self.OPEN)

    def _shard(self, k: int, image: bytes | None = None) -> _Shard:
        if k not in self._shards or image is not None:  # indexed once per process
            shard = _Shard(self.paths[k], image)
            listed = self.starts[k + 1] - self.starts[k]
            if len(shard) != listed:
                raise RunError(f"{self.paths[k]}: holds {len(shard)} samples, its manifest "
                               f"says {listed}")
            if image is not None:
                return shard
            self._shards[k] = shard
        return self._shards[k]

    def _record(self, i: int, with_events: bool) -> dict[str, Any]:
        k, j = self.where(i)
        path = self.paths[k]
        local = not is_url(path)
        handle = self._files.get(k, lambda: open(path, "rb", buffering=0) if local
                                 else open_input(path, 1 << 16))

        def read_at(offset: int, size: int) -> bytes:
            if local:  # no shared file position: threads may read one file at once
                return os.pread(handle.fileno(), size, offset)
            handle.seek(offset)  # a ranged read (a DataLoader worker has its own handle)
            return bytes(handle.read(size))

        return self._decode(k, j, self._shard(k), read_at, with_events)

    def _records(self, k: int, image: bytes) -> Iterator[dict[str, Any]]:
        view = memoryview(image)
        shard = self._shard(k, image)
        for j in range(len(shard)):
            yield self._decode(k, j, shard, lambda o, n: bytes(view[o:o + n]), True)

    def _decode(self, k: int, j: int, shard: _Shard, read_at: Callable[[int, int], bytes],
                with_events: bool) -> dict[str, Any]:
        """Sample j of shard k from its members, each read by ``read_at(offset, size)``."""
        members = shard.names
        where = shard.index[j].tolist()

        def member(suffix: str) -> bytes:
            if suffix not in members:
                raise RunError(f"{self.paths[k]}: sample {j} has no member .{suffix}")
            return read_at(*where[members[suffix]])

        def array(suffix: str) -> np.ndarray:
            return np.lib.format.read_array(io.BytesIO(member(suffix)), allow_pickle=False)

        out: dict[str, Any] = {}
        if with_events and shard.header.get("events"):
            x, y, t, p = (array(m) for m in EVENT_MEMBERS)
            out["events"] = to_structured(x, y, t, p)
        info = json.loads(member("json"))
        for name, column in shard.in_json.items():
            if name in info:
                out[name] = (info[name] if column["dtype"] == "str" else
                             np.array(info[name], dtype=column["dtype"])[()])
        for suffix, name in shard.in_npy.items():
            if suffix in members:
                out[name] = array(suffix)
        # The events, then the columns by name: the order the HDF5 store gives them in.
        return {k: out[k] for k in sorted(out, key=lambda k: (k != "events", k))}

    def read(self, i: int) -> dict[str, Any]:
        return self._record(i, True)

    def info(self, i: int) -> dict[str, Any]:
        return self._record(i, False)

    def columns(self) -> dict[str, np.ndarray]:
        rows = [self.info(i) for i in range(len(self))]
        if not rows:
            return {}
        return {name: np.array([r[name] for r in rows]) for name in rows[0]}


WEBDATASET = WebDatasetWriter()
