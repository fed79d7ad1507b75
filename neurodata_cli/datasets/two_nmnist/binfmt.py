"""The NMNIST 40-bit ``.bin`` event format, vectorised, and the authors' one-file-per-sample
layout as a writer.

Each event is 5 bytes, big-endian: x (byte 0), y (byte 1), polarity (bit 7 of byte 2, 1 = ON)
and a 23-bit timestamp in microseconds (the low 7 bits of byte 2, then bytes 3 and 4).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import RunError
from ...formats import Store, Writer, to_structured, write_bytes
from ..base import Block, SplitFile
from .source import SPLIT_DIRS

EVENT = np.dtype([("x", np.uint8), ("y", np.uint8), ("t", np.uint32), ("p", np.uint8)])
MAX_T = (1 << 23) - 1


def records(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """The bytes of a ``.bin`` file as an (n, 5) uint8 view; ``name`` is for errors."""
    if len(data) % 5:
        raise RunError(f"{name}: {len(data)} bytes is not a whole number of 5-byte events")
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, 5)


def check_sensor(raw: np.ndarray, width: int, height: int, name: str = "<bytes>") -> None:
    """Refuse (n, 5) records with an x or y outside a ``width`` x ``height`` sensor; the format
    holds 0..255, so a corrupt or foreign file would otherwise pass and break frames later."""
    if raw.shape[0] and (raw[:, 0].max() >= width or raw[:, 1].max() >= height):
        i = int(np.flatnonzero((raw[:, 0] >= width) | (raw[:, 1] >= height))[0])
        raise RunError(f"{name}: event {i} has x = {raw[i, 0]}, y = {raw[i, 1]}, outside the "
                       f"{width}x{height} sensor; not an NMNIST recording")


def timestamps(raw: np.ndarray) -> np.ndarray:
    """The 23-bit timestamps (uint32) of (n, 5) records."""
    return ((raw[:, 2].astype(np.uint32) & 0x7F) << 16) | (raw[:, 3].astype(np.uint32) << 8) \
        | raw[:, 4]


def decode(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Events (fields x, y, t, p) from the bytes of a ``.bin`` file; ``name`` is for errors."""
    raw = records(data, name)
    out = np.empty(raw.shape[0], dtype=EVENT)
    out["x"] = raw[:, 0]
    out["y"] = raw[:, 1]
    out["p"] = raw[:, 2] >> 7
    out["t"] = timestamps(raw)
    return out


def decode_columns(data: bytes) -> dict[str, np.ndarray]:
    """The x, y, t, p columns (as the dataset declares them) of ``.bin`` bytes."""
    raw = records(data)
    return {"x": raw[:, 0].copy(), "y": raw[:, 1].copy(), "t": timestamps(raw),
            "p": raw[:, 2] >> 7}


def encode(events: Any, name: str = "<events>") -> bytes:
    """The ``.bin`` bytes of events; refuses values the format cannot hold (never wraps them)."""
    x, y, t, p = (np.asarray(events[k]) for k in ("x", "y", "t", "p"))
    for field, values, limit in (("x", x, 255), ("y", y, 255), ("t", t, MAX_T), ("p", p, 1)):
        if values.size and (values.min() < 0 or values.max() > limit):
            bad = values[(values < 0) | (values > limit)][0]
            raise RunError(f"{name}: {field} value {bad} does not fit the NMNIST .bin format "
                           f"(0..{limit})")
    t = t.astype(np.uint32)
    raw = np.empty((x.size, 5), dtype=np.uint8)
    raw[:, 0] = x
    raw[:, 1] = y
    raw[:, 2] = (p.astype(np.uint8) << 7) | (t >> 16).astype(np.uint8)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    return raw.tobytes()


def read(path: Path) -> np.ndarray:
    return decode(Path(path).read_bytes(), str(path))


# A sample's file is named by its number and its digits in group order, which its ``source``
# gives: each recording is ``<digit>/<name>``, and only a digit folder precedes a '/'.
_DIGIT = re.compile(r"(?:^|\+)(\d+)/")


def _digits(source: str) -> str:
    return "-".join(str(int(d)) for d in _DIGIT.findall(source))


class BinWriter(Writer):
    """The authors' layout: one ``<Split>/<g>_<d1>[-<d2>].bin`` per sample, its events in the
    order built (the authors' bytes), and ``pairs-<split>.csv`` listing each sample's sources."""

    name = "bin"

    def write(self, stage: Path, ds: Any, cfg: Any, shard: Any,
              blocks: Iterable[Block]) -> list[dict[str, Any]]:
        folder = SPLIT_DIRS[shard.split]
        (stage / folder).mkdir(parents=True, exist_ok=True)
        files = []
        for block in blocks:
            assert block.events is not None and block.counts is not None  # checked
            ends = np.cumsum(block.counts).tolist()
            for k, (index, source) in enumerate(zip(block.columns["index"].tolist(),
                                                    block.columns["source"], strict=True)):
                start = ends[k - 1] if k else 0
                name = f"{index}_{_digits(source)}.bin"
                data = encode({f: v[start:ends[k]] for f, v in block.events.items()}, name)
                files.append(write_bytes(stage, f"{folder}/{name}", data, shard.split, 1,
                                         make_parent=False))
        return files

    def table(self, split: str, block: Block) -> list[Any]:
        c = block.columns
        return [[int(i), _digits(s), str(s), str(r)]
                for i, s, r in zip(c["index"].tolist(), c["source"], c["reversed"], strict=True)]

    def split_files(self, split: str, rows: list[Any]) -> list[SplitFile]:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["sample", "labels", "sources", "reversed"])
        writer.writerows(rows)
        return [SplitFile(f"pairs-{split}.csv", out.getvalue())]

    def open(self, folder: Path, split: str, files: list[dict[str, Any]]) -> Store:
        return BinStore(folder, files)


class BinStore(Store):
    """Samples of the authors' layout, in sample order: the label from the file name, the
    sources from ``pairs-<split>.csv``. Each sample's events are served in time order (stable),
    as from the HDF5 shards."""

    NAME = re.compile(r"^(\d+)_([\d-]+)\.bin$")

    def __init__(self, folder: Path, files: list[dict[str, Any]]):
        entries = []
        sources: dict[int, tuple[str, str]] = {}
        for f in files:
            match = self.NAME.match(Path(f["path"]).name)
            if match:
                digits = [int(d) for d in match.group(2).split("-")]
                entries.append((int(match.group(1)), f["path"], digits))
            elif Path(f["path"]).name.startswith("pairs-"):
                with open(folder / f["path"], newline="", encoding="utf-8") as handle:
                    rows = list(csv.reader(handle))[1:]
                sources = {int(r[0]): (r[2], r[3]) for r in rows}
        entries.sort()
        self.index = [i for i, _, _ in entries]
        self.paths = [folder / p for _, p, _ in entries]
        self.digits = [d for _, _, d in entries]
        self.sources = [sources.get(i, ("", "")) for i in self.index]

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, i: int) -> dict[str, Any]:
        i = self.check_index(i)
        raw = decode(self.paths[i].read_bytes(), str(self.paths[i]))
        raw = raw[np.argsort(raw["t"], kind="stable")]  # served in time order, as the HDF5
        label = np.zeros(10, dtype=np.uint8)
        label[self.digits[i]] = 1
        source, reversed_ = self.sources[i]
        return {"events": to_structured(raw["x"], raw["y"], raw["t"], raw["p"]), "label": label,
                "index": np.uint32(self.index[i]), "source": source, "reversed": reversed_}


BIN = BinWriter()
