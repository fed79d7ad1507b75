"""``.npy`` files, one per column and shard, as ``np.save`` writes them; read memory-mapped."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..storage import is_url, url_join
from . import (
    ShardedStore,
    Store,
    Writer,
    file_entry,
    read_checked,
    same_width,
    shard_suffix,
    staged,
)

if TYPE_CHECKING:
    from ..datasets.base import Block, Config, Dataset, Shard


def write_npy(handle: Any, chunks: list[np.ndarray]) -> None:
    """What ``np.save`` writes for the chunks joined along their first axis, without joining
    them in memory: numpy's own header for the whole shape, then each chunk's bytes."""
    first = chunks[0]
    if any(c.dtype.hasobject or c.dtype != first.dtype for c in chunks):
        # The engine's checks keep these out; bytes of pointers must never reach a file.
        raise TypeError(f"npy chunks of dtypes {sorted({str(c.dtype) for c in chunks})}")
    shape = (sum(len(c) for c in chunks), *first.shape[1:])
    header = np.lib.format.header_data_from_array_1_0(first)
    np.lib.format.write_array_header_1_0(handle, {**header, "shape": shape})
    for chunk in chunks:
        handle.write(chunk.data.cast("B"))



class NpyWriter(Writer):
    """One ``<split>_<column>.npy`` per column (``-00003-of-00010`` when a split has shards),
    the format ``np.save`` writes; columns only, no events."""

    name = "npy"
    libraries = ("numpy",)
    stores_events = False
    reads_urls = True

    def write(self, stage: Path, ds: Dataset[Any], cfg: Config, shard: Shard,
              blocks: Iterable[Block]) -> list[dict[str, Any]]:
        parts: dict[str, list[np.ndarray]] = {}
        n = 0
        for block in blocks:
            n += len(block)
            for name, column in block.columns.items():
                parts.setdefault(name, []).append(np.ascontiguousarray(column))
        files = []
        for name, chunks in parts.items():
            rel = f"{shard.split}_{name}{shard_suffix(shard)}.npy"
            with staged(stage, rel) as tmp, open(tmp, "wb") as handle:
                write_npy(handle, same_width(chunks))
            files.append(file_entry(stage, rel, shard.split, n))
        return files

    def open(self, folder: Path | str, split: str, files: list[dict[str, Any]]) -> Store:
        return NpyStore(folder, split, files)


class NpyStore(ShardedStore):
    """Memory-mapped columns; a split of several shards is indexed across them."""

    def __init__(self, folder: Path | str, split: str, files: list[dict[str, Any]]):
        by_column: dict[str, list[dict[str, Any]]] = {}
        for f in sorted(files, key=lambda f: f["path"]):
            stem = Path(f["path"]).stem[len(split) + 1:]
            by_column.setdefault(stem.split("-", 1)[0], []).append(f)
        self.parts = {name: [_load(folder, f) for f in fs]
                      for name, fs in by_column.items()}
        super().__init__(next(iter(by_column.values()), []))

    def read(self, i: int) -> dict[str, Any]:
        k, j = self.where(i)
        # A scalar as numpy's scalar, as the other formats serve it; an array copied.
        return {name: np.array(parts[k][j])[()] for name, parts in self.parts.items()}

    def columns(self) -> dict[str, np.ndarray]:
        return {name: parts[0] if len(parts) == 1 else np.concatenate(parts)
                for name, parts in self.parts.items()}


def _load(folder: Path | str, f: dict[str, Any]) -> np.ndarray:
    """A column: memory-mapped from a local file; read whole from a URL (nothing to map), and
    checked against its manifest entry there, as a stream of another format checks a shard."""
    if is_url(folder):
        image = read_checked(url_join(str(folder), f["path"]), f["path"], f["bytes"], f["sha256"])
        return np.load(io.BytesIO(image), allow_pickle=False)
    return np.load(Path(folder) / f["path"], mmap_mode="r", allow_pickle=False)


NPY = NpyWriter()
