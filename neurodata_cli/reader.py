"""Open a materialised folder and serve its samples, whatever format it was written in.

``open_dataset(DIR)`` reads the checked manifest (``manifest.load``), finds the dataset that
wrote it in the registry, and opens each split through its format's writer. ``data[split]`` is a
map-style dataset (``len(ds)``, ``ds[i]``) that a ``torch.utils.data.DataLoader`` takes as it is
(nothing here imports torch). Event samples are numpy structured arrays with tonic's fields
``x, y, t, p``. Files are opened lazily and kept open per process.

``DIR`` may be a URL (``s3://bucket/prefix/<dataset>/<version>``, through fsspec): random access
then costs ranged reads (docs/cluster.md, "Reading from an object store"), and
``data[split].stream()`` reads each shard whole, in order or shuffled within a buffer.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np

from .datasets import get
from .datasets.base import Dataset
from .errors import RunError
from .formats import EVENT_DTYPE, Store, to_structured
from .manifest import load
from .storage import is_url

__all__ = ["open_dataset", "Materialised", "SplitView", "EVENT_DTYPE", "to_structured"]


def open_dataset(folder: str | Path) -> Materialised:
    """The materialised dataset in ``folder`` (``<out>/<dataset>/<version>``, or its URL)."""
    if is_url(folder):
        from .objstore import load_url

        return Materialised(str(folder), load_url(str(folder)))
    folder = Path(folder)
    return Materialised(folder, load(folder))


class Materialised:
    """A finished folder: ``.splits``, ``.manifest``, and ``data[split]`` for its samples."""

    def __init__(self, folder: Path | str, manifest: dict[str, Any]):
        self.folder = folder
        self.manifest = manifest
        self.dataset = manifest["dataset"]
        self.spec = get(manifest.get("builder", self.dataset))
        self.splits = sorted(manifest["splits"])

    def __getitem__(self, split: str) -> SplitView:
        if split not in self.manifest["splits"]:
            raise KeyError(f"{self.folder} has no split {split!r}; it has {self.splits}")
        entry = self.manifest["splits"][split]
        writer = self.spec.formats.get(entry.get("format", ""))
        if writer is None:
            raise RunError(f"{self.folder}: split {split} is in format {entry.get('format')!r}, "
                           f"which {self.dataset} does not write")
        if is_url(self.folder) and not getattr(writer, "reads_urls", False):
            raise RunError(f"{self.folder}: split {split} is in format {entry.get('format')!r}, "
                           "which is not read over a URL; copy the folder locally and open "
                           "that")
        files = [f for f in self.manifest["files"] if f["split"] == split]
        # A URL stays a string (Path folds its '//'): only writers that read URLs get one.
        store = writer.open(cast(Path, self.folder), split, files)
        if len(store) != entry["records"]:
            raise RunError(f"{self.folder}: split {split} holds {len(store)} samples, its "
                           f"manifest says {entry['records']}")
        return SplitView(self.spec, split, store, entry.get("config", {}), self.dataset)

    def __repr__(self) -> str:
        return f"<{self.dataset} {self.manifest['version']} in {self.folder}: {self.splits}>"


class SplitView:
    """One split's samples: ``ds[i]`` is what the dataset serves (events or features, and the
    label); ``record(i)`` is everything stored for sample i."""

    def __init__(self, spec: Dataset[Any], split: str, store: Store, config: dict[str, Any],
                 dataset: str = ""):
        self.spec, self.split, self.store, self.config = spec, split, store, config
        self.dataset = dataset or spec.name  # its name in the folder (3nmnist, say)

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> Any:
        return self.spec.sample(self.store.read(i))

    def record(self, i: int) -> dict[str, Any]:
        return self.store.read(i)

    def read_many(self, indices: Iterable[int]) -> list[Any]:
        """Samples at ``indices``, read in sorted order (one pass over the files) and returned
        in the order asked: for samplers that hand out batches of indices."""
        indices = list(indices)
        order = np.argsort(indices, kind="stable")
        records = self.store.read_many([indices[k] for k in order])
        out: list[Any] = [None] * len(indices)
        for k, record in zip(order.tolist(), records, strict=True):
            out[k] = self.spec.sample(record)
        return out

    # torch's DataLoader hands a batch's indices to this method when a dataset has it.
    __getitems__ = read_many

    def events(self, i: int) -> np.ndarray:
        return self.store.read(i)["events"]

    def info(self, i: int) -> dict[str, Any]:
        """Everything stored for sample i but its events (source, labels, sizes)."""
        return self.store.info(i)

    def to_frames(self, i: int, *args: Any, **kwargs: Any) -> np.ndarray:
        """Dense frames of sample i, as the dataset defines them."""
        return self.spec.frames(self.store.read(i), *args, **kwargs)

    def columns(self) -> dict[str, np.ndarray]:
        """Every stored column at once (small datasets)."""
        return self.store.columns()

    def stream(self, shuffle_buffer: int = 0, seed: int | None = None,
               part: tuple[int, int] | None = None) -> Stream:
        """The split's samples as an iterable that reads each shard whole, in order: what
        suits an object store (one request a shard, no random access).

        ``shuffle_buffer`` > 0: the shards in a shuffled order, and the samples shuffled within
        a buffer of that many (``seed`` makes it repeatable). ``part=(k, n)`` keeps shards
        k, k+n, ...; in a ``torch`` DataLoader worker it is that worker's, so each sample comes
        once across the workers. Once torch is imported, the stream is a
        ``torch.utils.data.IterableDataset``.
        """
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer {shuffle_buffer} is negative")
        cls = _torch_stream() if "torch" in sys.modules else Stream
        return cls(self, shuffle_buffer, seed, part)


class Stream:
    """A split's samples, shard by shard (``SplitView.stream``)."""

    def __init__(self, view: SplitView, shuffle_buffer: int, seed: int | None,
                 part: tuple[int, int] | None):
        self.view, self.shuffle_buffer, self.seed, self.part = view, shuffle_buffer, seed, part

    def __len__(self) -> int:
        return len(self.view)

    def __reduce__(self) -> tuple[Any, ...]:
        # The torch subclass is made at run time, so pickle cannot find it by name; a DataLoader
        # worker that is spawned (macOS, Windows; Linux from Python 3.14) remakes the stream.
        return (SplitView.stream, (self.view, self.shuffle_buffer, self.seed, self.part))

    def _part(self) -> tuple[int, int]:
        if self.part is not None:
            return self.part
        torch = sys.modules.get("torch")
        info = torch.utils.data.get_worker_info() if torch is not None else None
        return (info.id, info.num_workers) if info is not None else (0, 1)

    def __iter__(self) -> Iterator[Any]:
        store, spec = self.view.store, self.view.spec
        k, n = self._part()
        # Split first, in a fixed order: workers never draw their shards from another order.
        count = getattr(store, "shards", 1)
        mine = list(range(count))[k::n]
        rng = random.Random(None if self.seed is None else f"{self.seed}/{k}/{n}")
        records: Iterator[dict[str, Any]]
        if hasattr(store, "iter_shards"):
            if self.shuffle_buffer:
                rng.shuffle(mine)
            records = store.iter_shards(mine)
        else:  # one file: the part's samples, in order
            records = (store.read(i) for i in range(len(store))[k::n])
        if not self.shuffle_buffer:
            for record in records:
                yield spec.sample(record)
            return
        buffer: list[Any] = []
        for record in records:
            sample = spec.sample(record)
            if len(buffer) < self.shuffle_buffer:
                buffer.append(sample)
                continue
            i = rng.randrange(len(buffer))
            yield buffer[i]
            buffer[i] = sample
        rng.shuffle(buffer)
        yield from buffer


_TORCH_STREAM: list[type] = []


def _torch_stream() -> type:
    """``Stream`` as a ``torch.utils.data.IterableDataset`` (made once torch is imported)."""
    if not _TORCH_STREAM:
        import torch

        _TORCH_STREAM.append(type("Stream", (Stream, torch.utils.data.IterableDataset), {}))
    return _TORCH_STREAM[0]
