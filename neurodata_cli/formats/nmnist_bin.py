"""The NMNIST 40-bit ``.bin`` event format, vectorised.

Each event is 5 bytes, big-endian: x (byte 0), y (byte 1), polarity (bit 7 of byte 2, 1 = ON)
and a 23-bit timestamp in microseconds (the low 7 bits of byte 2, then bytes 3 and 4).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import RunError
from . import HashingFile

EVENT = np.dtype([("x", np.uint8), ("y", np.uint8), ("t", np.uint32), ("p", np.uint8)])
MAX_T = (1 << 23) - 1


def decode(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Events (fields x, y, t, p) from the bytes of a ``.bin`` file; ``name`` is for errors."""
    if len(data) % 5:
        raise RunError(f"{name}: {len(data)} bytes is not a whole number of 5-byte events")
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 5)
    out = np.empty(raw.shape[0], dtype=EVENT)
    out["x"] = raw[:, 0]
    out["y"] = raw[:, 1]
    out["p"] = raw[:, 2] >> 7
    out["t"] = ((raw[:, 2].astype(np.uint32) & 0x7F) << 16) | (raw[:, 3].astype(np.uint32) << 8) \
        | raw[:, 4]
    return out


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


def write(path: Path, events: np.ndarray) -> str:
    """Write the events; returns the file's sha256."""
    with HashingFile(path) as f:
        f.write(encode(events, str(path)))
        return f.hexdigest()
