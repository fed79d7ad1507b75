"""Open a materialised folder and serve its samples, whatever format it was written in.

``open_dataset(DIR)`` reads the checked manifest (``manifest.load``), finds the dataset that
wrote it in the registry, and opens each split through its format's writer. ``data[split]`` is a
map-style dataset (``len(ds)``, ``ds[i]``) that a ``torch.utils.data.DataLoader`` takes as it is
(nothing here imports torch). Event samples are numpy structured arrays with tonic's fields
``x, y, t, p``. Files are opened lazily and kept open per process.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import get
from .datasets.base import Dataset
from .errors import RunError
from .formats import EVENT_DTYPE, Store, to_structured
from .manifest import load

__all__ = ["open_dataset", "Materialised", "SplitView", "EVENT_DTYPE", "to_structured"]


def open_dataset(folder: str | Path) -> Materialised:
    """The materialised dataset in ``folder`` (``<out>/<dataset>/<version>``)."""
    folder = Path(folder)
    return Materialised(folder, load(folder))


class Materialised:
    """A finished folder: ``.splits``, ``.manifest``, and ``data[split]`` for its samples."""

    def __init__(self, folder: Path, manifest: dict[str, Any]):
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
        files = [f for f in self.manifest["files"] if f["split"] == split]
        store = writer.open(self.folder, split, files)
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
