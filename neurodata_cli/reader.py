"""Open a materialised folder and index its samples, whatever format it was written in.

``open_dataset(DIR)`` reads ``manifest.json``; ``data[split]`` is a map-style dataset
(``len(ds)``, ``ds[i]``) that a ``torch.utils.data.DataLoader`` takes as it is (nothing here
imports torch). Event samples are numpy structured arrays with tonic's fields ``x, y, t, p``.
HDF5 shards are opened lazily, one at a time per process, so a dataset of a million samples is
served without loading it.
"""

from __future__ import annotations

import bisect
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .errors import RunError
from .manifest import finished_manifest

EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])
ES_FRAME = 224  # ES-ImageNet frames: a 256 x 256 canvas, centred, cropped to rows/cols 16:240
ES_CANVAS = 256
ES_CROP = 16
ES_STEPS = 8
NMNIST_SIZE = 34


def open_dataset(folder: str | Path) -> Materialised:
    """The materialised dataset in ``folder`` (``<out>/<dataset>/<version>``)."""
    folder = Path(folder)
    return Materialised(folder, finished_manifest(folder))


class Materialised:
    """A finished folder: ``.splits``, ``.manifest``, and ``data[split]`` for its samples."""

    def __init__(self, folder: Path, manifest: dict[str, Any]):
        self.folder = folder
        self.manifest = manifest
        self.dataset = manifest["dataset"]
        self.splits = sorted(manifest["splits"])

    def __getitem__(self, split: str) -> Any:
        if split not in self.manifest["splits"]:
            raise KeyError(f"{self.folder} has no split {split!r}; it has {self.splits}")
        files = [f for f in self.manifest["files"] if f["split"] in (split, "all")]
        if self.dataset == "yinyang":
            return YinYangSplit(self.folder, split, files)
        if self.dataset == "2nmnist":
            if any(f["path"].endswith(".bin") for f in files):
                return NmnistBinSplit(self.folder, split, files)
            return EventShardSplit(self.folder, split, files, "2nmnist")
        if self.dataset == "es-imagenet":
            if any(f["path"].endswith(".npz") for f in files):
                return EsNpzSplit(self.folder, split)
            return EventShardSplit(self.folder, split, files, "es-imagenet")
        raise RunError(f"no reader for dataset {self.dataset!r}")

    def __repr__(self) -> str:
        return f"<{self.dataset} {self.manifest['version']} in {self.folder}: {self.splits}>"


# ---- Yin-Yang -----------------------------------------------------------------------------------

class YinYangSplit:
    """``ds[i]`` is ``(features float64[4], label)``; with ``spike_times=True`` the features are
    the five spike times of the spike-time encoding (when it was written)."""

    def __init__(self, folder: Path, split: str, files: list[dict], spike_times: bool = False):
        self.folder, self.split, self.files = folder, split, files
        paths = {f["path"] for f in files}
        key = "spike_times" if spike_times else "samples"
        if f"{split}_samples.npy" in paths:
            if spike_times and f"{split}_spike_times.npy" not in paths:
                raise RunError(f"{folder} was written without the spike-time encoding")
            self.features = np.load(folder / f"{split}_{key}.npy", mmap_mode="r")
            self.labels = np.load(folder / f"{split}_labels.npy", mmap_mode="r")
        else:
            import h5py

            with h5py.File(folder / "yinyang.h5", "r") as f:
                if key not in f[split]:
                    raise RunError(f"{folder} was written without the spike-time encoding")
                self.features, self.labels = f[split][key][()], f[split]["labels"][()]
        self.class_names = ("yin", "yang", "dot")

    def with_spike_times(self) -> YinYangSplit:
        return YinYangSplit(self.folder, self.split, self.files, spike_times=True)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return np.array(self.features[i]), int(self.labels[i])

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All features and labels at once."""
        return np.asarray(self.features), np.asarray(self.labels)


# ---- event datasets ---------------------------------------------------------------------------

def to_structured(x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray) -> np.ndarray:
    events = np.empty(len(x), dtype=EVENT_DTYPE)
    events["x"], events["y"], events["t"], events["p"] = x, y, t, p
    return events


class EventSplit:
    """What 2NMNIST and ES-ImageNet splits share: frames from events."""

    dataset: str

    def events(self, i: int) -> np.ndarray:
        return self[i][0]

    def to_frames(self, i: int, n_time_bins: int = 6) -> np.ndarray:
        """Dense frames: ES-ImageNet ``[2, 8, 224, 224]`` (channel 0 positive, centred and
        cropped as the authors' loader does); 2NMNIST ``[T, 2, 34, 34]`` event counts over
        ``n_time_bins`` equal time bins (channel 1 = ON)."""
        events = self.events(i)
        if self.dataset == "es-imagenet":
            h, w = self.resized_shape(i)
            return es_frames(events, h, w)
        return nmnist_frames(events, n_time_bins)


def es_frames(events: np.ndarray, h: int, w: int) -> np.ndarray:
    """``[2, 8, 224, 224]`` uint8: the events in a 256 x 256 canvas shifted by
    ((254 - H) // 2, (254 - W) // 2), cropped to rows and columns 16:240."""
    frames = np.zeros((2, ES_STEPS, ES_FRAME, ES_FRAME), dtype=np.uint8)
    rows = events["y"].astype(np.int64) + (254 - h) // 2 - ES_CROP
    cols = events["x"].astype(np.int64) + (254 - w) // 2 - ES_CROP
    keep = (rows >= 0) & (rows < ES_FRAME) & (cols >= 0) & (cols < ES_FRAME)
    channel = 1 - events["p"][keep].astype(np.int64)
    frames[channel, events["t"][keep] - 1, rows[keep], cols[keep]] = 1
    return frames


def nmnist_frames(events: np.ndarray, n_time_bins: int) -> np.ndarray:
    frames = np.zeros((n_time_bins, 2, NMNIST_SIZE, NMNIST_SIZE), dtype=np.int32)
    if len(events):
        t = events["t"].astype(np.int64)
        span = int(t.max() - t.min()) + 1
        bins = (t - t.min()) * n_time_bins // span
        np.add.at(frames, (bins, events["p"].astype(np.int64), events["y"], events["x"]), 1)
    return frames


class EventShardSplit(EventSplit):
    """Samples of the HDF5 event shards of one split, in order across shards."""

    def __init__(self, folder: Path, split: str, files: list[dict], dataset: str):
        self.folder, self.split, self.dataset = folder, split, dataset
        shards = sorted((f for f in files if f["path"].endswith(".h5")), key=lambda f: f["path"])
        self.paths = [folder / f["path"] for f in shards]
        self.starts = np.concatenate([[0], np.cumsum([f["records"] for f in shards])])
        self._open: tuple[int, int, Any] | None = None  # (pid, shard, h5py.File)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _locate(self, i: int) -> tuple[Any, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} of {len(self)}")
        i %= len(self)
        shard = bisect.bisect_right(self.starts, i) - 1
        # One open file per process: DataLoader workers fork, and h5py handles must not cross.
        if self._open is None or self._open[:2] != (os.getpid(), shard):
            import h5py

            if self._open is not None and self._open[0] == os.getpid():
                self._open[2].close()
            self._open = (os.getpid(), shard, h5py.File(self.paths[shard], "r"))
        return self._open[2], i - int(self.starts[shard])

    def __getitem__(self, i: int) -> tuple[np.ndarray, Any]:
        f, j = self._locate(i)
        a, b = (int(v) for v in f["samples/offsets"][j:j + 2])
        ev = f["events"]
        events = to_structured(ev["x"][a:b], ev["y"][a:b], ev["t"][a:b], ev["p"][a:b])
        label = f["samples/label"][j]
        return events, (label if label.ndim else int(label))

    def resized_shape(self, i: int) -> tuple[int, int]:
        f, j = self._locate(i)
        return int(f["samples/height"][j]), int(f["samples/width"][j])

    def info(self, i: int) -> dict[str, Any]:
        """Everything stored for sample i but its events (source, labels, sizes)."""
        f, j = self._locate(i)
        out = {}
        for name, ds in f["samples"].items():
            if name != "offsets":
                value = ds.asstr()[j] if ds.dtype.kind == "O" else ds[j]
                out[name] = value
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_open": None}  # an open file does not pickle


class NmnistBinSplit(EventSplit):
    """2NMNIST in the authors' layout: ``<Split>/<g>_<d1>[-<d2>].bin``; labels from the name."""

    dataset = "2nmnist"
    NAME = re.compile(r"^(\d+)_([\d-]+)\.bin$")

    def __init__(self, folder: Path, split: str, files: list[dict]):
        self.folder, self.split = folder, split
        entries = []
        for f in files:
            match = self.NAME.match(Path(f["path"]).name)
            if match:
                digits = [int(d) for d in match.group(2).split("-")]
                entries.append((int(match.group(1)), f["path"], digits))
        entries.sort()
        self.paths = [folder / p for _, p, _ in entries]
        self.labels = [d for _, _, d in entries]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        from .formats import nmnist_bin

        raw = nmnist_bin.decode(self.paths[i].read_bytes(), str(self.paths[i]))
        label = np.zeros(10, dtype=np.uint8)
        label[self.labels[i]] = 1
        return to_structured(raw["x"], raw["y"], raw["t"], raw["p"]), label


class EsNpzSplit(EventSplit):
    """ES-ImageNet in the released layout, indexed by ``<split>label.txt``."""

    dataset = "es-imagenet"

    def __init__(self, folder: Path, split: str):
        self.folder, self.split = folder, split
        rows = [line.split() for line in
                (folder / f"{split}label.txt").read_text().splitlines() if line.strip()]
        self.paths = [folder / split / r[0] for r in rows]
        self.labels = [int(r[1]) for r in rows]
        self.sizes = [(int(r[2]), int(r[3])) for r in rows]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        from .formats import esimagenet_npz

        pos, neg = esimagenet_npz.read(self.paths[i])
        # The HDF5 order: by t, and within a t the positive events first.
        both = np.concatenate([pos, neg])
        p = np.concatenate([np.ones(len(pos), np.int8), np.zeros(len(neg), np.int8)])
        order = np.argsort(both[:, 2], kind="stable")
        both, p = both[order], p[order]
        return to_structured(both[:, 1], both[:, 0], both[:, 2], p), self.labels[i]

    def resized_shape(self, i: int) -> tuple[int, int]:
        return self.sizes[i]
