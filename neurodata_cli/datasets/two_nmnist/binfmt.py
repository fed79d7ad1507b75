"""The NMNIST 40-bit ``.bin`` event format, vectorised, and the authors' one-file-per-sample
layout as a writer.

Each event is 5 bytes, big-endian: x (byte 0), y (byte 1), polarity (bit 7 of byte 2, 1 = ON)
and a 23-bit timestamp in microseconds (the low 7 bits of byte 2, then bytes 3 and 4).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import RunError
from ...formats import Store, Writer, to_structured, write_bytes
from ..base import Block
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


def decode_into(raw: np.ndarray, columns: dict[str, np.ndarray], start: int) -> None:
    """Decode (n, 5) records into the x, y, t, p arrays of ``columns`` from index ``start``."""
    end = start + raw.shape[0]
    columns["x"][start:end] = raw[:, 0]
    columns["y"][start:end] = raw[:, 1]
    np.right_shift(raw[:, 2], 7, out=columns["p"][start:end])
    columns["t"][start:end] = timestamps(raw)


def encode(events: np.ndarray, name: str = "<events>") -> bytes:
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


class BinWriter(Writer):
    """The authors' layout: one ``<Split>/<g>_<d1>[-<d2>].bin`` per sample, the exact bytes."""

    name = "bin"
    objects = (str, bytes)  # file names, and each file's bytes
    stores_events = False  # the events are in those bytes

    def write(self, stage: Path, ds: Any, cfg: Any, shard: Any,
              blocks: Iterable[Block]) -> list[dict[str, Any]]:
        folder = SPLIT_DIRS[shard.split]
        (stage / folder).mkdir(parents=True, exist_ok=True)
        return [write_bytes(stage, f"{folder}/{name}", data, shard.split, 1, make_parent=False)
                for block in blocks
                for name, data in zip(block.columns["name"], block.columns["bin"], strict=True)]

    def open(self, folder: Path, split: str, files: list[dict[str, Any]]) -> Store:
        return BinStore(folder, files)


class BinStore(Store):
    """Samples of the authors' layout, in sample order; the label is in the file name. Each
    sample's events are served in time order (stable), as from the HDF5 shards."""

    NAME = re.compile(r"^(\d+)_([\d-]+)\.bin$")

    def __init__(self, folder: Path, files: list[dict[str, Any]]):
        entries = []
        for f in files:
            match = self.NAME.match(Path(f["path"]).name)
            if match:
                digits = [int(d) for d in match.group(2).split("-")]
                entries.append((int(match.group(1)), f["path"], digits))
        entries.sort()
        self.paths = [folder / p for _, p, _ in entries]
        self.digits = [d for _, _, d in entries]

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, i: int) -> dict[str, Any]:
        i = self.check_index(i)
        raw = decode(self.paths[i].read_bytes(), str(self.paths[i]))
        raw = raw[np.argsort(raw["t"], kind="stable")]  # served in time order, as the HDF5
        label = np.zeros(10, dtype=np.uint8)
        label[self.digits[i]] = 1
        return {"events": to_structured(raw["x"], raw["y"], raw["t"], raw["p"]), "label": label,
                "index": i, "source": self.paths[i].name}


BIN = BinWriter()
