"""Formats: how a shard's blocks become files, and how those files read back (one module each:
``hdf5``, ``npy``; the native layouts live beside their datasets).

Each writer names the files it writes from the shard's split and key (the engine's names), and
declares the libraries that shape its bytes, which the manifest records. Every file is written
under a name only its own writer knows and renamed into place once whole, so a late or orphaned
writer can never damage, or be recorded for, a file another run owns.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

# Store and Writer are declared with the dataset contract (a dataset names its writers), and
# re-exported here, where formats and plugins look for them.
from ..datasets.base import Shard, Store, Writer, dist_versions
from ..errors import RunError
from ..files import staged
from ..storage import is_url, url_read

# Re-exported (see above, and ``staged`` for the format modules); the rest by name.
__all__ = ["EVENT_FIELDS", "Store", "Writer", "dist_versions", "staged"]

from ..features import EVENT_FIELDS

# Events as the reader serves them: tonic's fields, wide enough for any of our datasets.
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])


def to_structured(x: Any, y: Any, t: Any, p: Any) -> np.ndarray:
    events = np.empty(len(x), dtype=EVENT_DTYPE)
    events["x"], events["y"], events["t"], events["p"] = x, y, t, p
    return events


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes (``hashlib.file_digest``, or its loop on Python 3.10)."""
    with open(path, "rb") as handle:
        if hasattr(hashlib, "file_digest"):
            return hashlib.file_digest(handle, algorithm).hexdigest()
        digest = hashlib.new(algorithm)
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
        return digest.hexdigest()


def sha256_file(path: Path) -> str:
    return file_digest(path, "sha256")


def file_entry(root: Path, rel: str, split: str, records: int) -> dict[str, Any]:
    """A file's manifest entry: its path, size, sha256, and the samples stored in it."""
    path = root / rel
    return _entry(rel, path.stat().st_size, sha256_file(path), split, records)


def _entry(rel: str, size: int, sha256: str, split: str, records: int) -> dict[str, Any]:
    return {"path": rel, "bytes": size, "sha256": sha256, "records": records, "split": split}


def shard_suffix(shard: Shard) -> str:
    """'' for a split of one shard, else '-00003-of-00010'."""
    return "" if shard.count == 1 else f"-{shard.index:05d}-of-{shard.count:05d}"


def same_width(chunks: list[np.ndarray]) -> list[np.ndarray]:
    """A column's chunks in one dtype, where blocks may differ in string width: fixed-width
    strings as wide as the widest, and Python ``str`` objects as fixed-width unicode (an
    array of objects stores pointers). Other columns are returned as they are."""
    kinds = {c.dtype.kind for c in chunks}
    if not kinds <= set("USO") or (len({c.dtype for c in chunks}) == 1 and kinds != {"O"}):
        return chunks
    if kinds == {"S"}:
        dtype = np.dtype(f"S{max(1, *(c.dtype.itemsize for c in chunks))}")
    else:  # unicode, or str objects
        width = max(1, *(max(map(len, c), default=0) if c.dtype.kind == "O"
                         else c.dtype.itemsize // 4 for c in chunks))
        dtype = np.dtype(f"<U{width}")
    return [c.astype(dtype) for c in chunks]


class OpenFiles:
    """A store's open files (or shards), the most recently used ``limit`` of them, per process:
    a DataLoader worker forks, and opens its own (nor takes a lock held at the fork). The least
    recently used is dropped, not closed: a thread may be reading it, and it closes when its
    last reference goes. Open files do not pickle: a copy starts with none."""

    def __init__(self, limit: int = 16):
        self.limit = limit
        self._reset()

    def _reset(self) -> None:
        self.items: dict[int, Any] = {}
        self.pid = os.getpid()
        self.lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"limit": self.limit}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.limit = state["limit"]
        self._reset()

    def get(self, k: int, make: Callable[[], Any]) -> Any:
        """Item ``k``, made by ``make`` if it is not open; now the most recently used."""
        if self.pid != os.getpid():
            self._reset()
        with self.lock:
            item = self.items.pop(k, None)
            if item is None:
                if len(self.items) >= self.limit:
                    del self.items[next(iter(self.items))]
                item = make()
            self.items[k] = item
            return item


class ShardedStore(Store):
    """A store over files that hold ``records`` samples each, in the given order."""

    def __init__(self, files: list[dict[str, Any]]):
        # Python ints: bisect finds a sample's file in a fraction of np.searchsorted's call cost.
        self.starts = [0, *itertools.accumulate(int(f["records"]) for f in files)]
        # What the manifest records of each file: a stream checks a file read whole against it.
        self.recorded = [(f.get("path"), f.get("bytes"), f.get("sha256")) for f in files]

    def __len__(self) -> int:
        return self.starts[-1]

    @property
    def shards(self) -> int:
        """How many files the samples are in."""
        return len(self.starts) - 1

    def iter_shards(self, ks: list[int]) -> Iterator[dict[str, Any]]:
        """Every record of files ``ks``, file by file, each in order. Local files are read as
        ``read`` reads them. At a URL each file is one request for all of it, its records read
        from memory (``_records``), and the next file's request made meanwhile: two files in
        memory at most. Each file's bytes are checked against the manifest before any of its
        records is served (``_fetch``)."""
        paths = getattr(self, "paths", None)  # each file's Path or URL, where a store has them
        if not (paths and is_url(paths[0])):
            for k in ks:
                for i in range(self.starts[k], self.starts[k + 1]):
                    yield self.read(i)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            ahead = [pool.submit(self._fetch, paths[k], k) for k in ks[:1]]
            for n, k in enumerate(ks):
                image = ahead.pop().result()
                ahead += [pool.submit(self._fetch, paths[k], k) for k in ks[n + 1:n + 2]]
                yield from self._records(k, image)

    def _fetch(self, url: str, k: int) -> bytes:
        """File ``k``'s bytes, read whole from ``url``, if they are the ones its manifest records
        (hashed in the prefetch thread: hashlib releases the GIL). A damaged object, or one a
        later commit replaced, is refused rather than served."""
        rel, size, sha256 = self.recorded[k]
        return read_checked(url, rel, size, sha256)

    def _records(self, k: int, image: bytes) -> Iterator[dict[str, Any]]:
        """The records of file ``k``, from its bytes (for a store that reads URLs)."""
        raise NotImplementedError(f"{type(self).__name__} does not stream from a URL")

    def where(self, i: int) -> tuple[int, int]:
        """(file, sample within it) of sample i."""
        i = self.check_index(i)
        k = bisect.bisect_right(self.starts, i) - 1
        return k, i - self.starts[k]


def read_checked(url: str, rel: str | None, size: int | None, sha256: str | None) -> bytes:
    """The object at ``url``, read whole, if it has the size and sha256 its manifest records
    for ``rel``; else a RunError naming it."""
    image = url_read(url)
    if len(image) != size or hashlib.sha256(image).hexdigest() != sha256:
        folder = url[:-len(rel) - 1] if rel and url.endswith("/" + rel) else "<folder>"
        what = ("another sha256" if len(image) == size
                else f"{len(image)} bytes, {size} recorded")
        raise RunError(f"{url}: differs from what its manifest records ({what}); `neurodata "
                       f"verify {folder}` names every difference")
    return image


def write_text(root: Path, rel: str, text: str, split: str, records: int) -> dict[str, Any]:
    """A UTF-8 text file, LF endings exactly as given (label tables, provenance CSVs)."""
    return write_bytes(root, rel, text.encode("utf-8"), split, records)


def write_bytes(root: Path, rel: str, data: bytes, split: str, records: int,
                make_parent: bool = True) -> dict[str, Any]:
    """A file of bytes already in memory, hashed from memory."""
    with staged(root, rel, make_parent) as tmp:
        tmp.write_bytes(data)
    return _entry(rel, len(data), hashlib.sha256(data).hexdigest(), split, records)
