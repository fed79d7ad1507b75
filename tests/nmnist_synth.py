"""Synthetic NMNIST trees that look like the real thing, and a plain 2NMNIST oracle."""

from __future__ import annotations

import glob
import os
import zipfile
from pathlib import Path

import numpy as np


def recording(rng: np.random.RandomState, n_events: int | None = None) -> bytes:
    """A few thousand events within about 0.3 s, times sorted, both polarities, 40-bit .bin."""
    n = int(rng.randint(1500, 4500)) if n_events is None else n_events
    t = np.sort(rng.randint(0, 310_000, size=n)).astype(np.uint32)
    x = rng.randint(0, 34, size=n).astype(np.uint8)
    y = rng.randint(0, 34, size=n).astype(np.uint8)
    p = rng.randint(0, 2, size=n).astype(np.uint8)
    raw = np.empty((n, 5), dtype=np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = (p << 7) | (t >> 16).astype(np.uint8)
    raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    return raw.tobytes()


def make_tree(root: Path, per_digit: dict[str, int], seed: int = 0, case=("Train", "Test")
              ) -> Path:
    """``root/Train/<d>/<nnnnn>.bin`` and ``root/Test/...`` with ``per_digit[split]`` files."""
    rng = np.random.RandomState(seed)
    for split, folder in zip(("train", "test"), case, strict=True):
        for digit in range(10):
            d = root / folder / str(digit)
            d.mkdir(parents=True, exist_ok=True)
            for _ in range(per_digit[split]):
                (d / f"{rng.randint(0, 99999):05d}.bin").write_bytes(recording(rng))
    return root


def zip_tree(tree: Path, dest: Path, names=("Train.zip", "Test.zip")) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for folder, name in zip(("Train", "Test"), names, strict=True):
        with zipfile.ZipFile(dest / name, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted((tree / folder).rglob("*.bin")):
                zf.write(path, path.relative_to(tree).as_posix())
    return dest


# ---- the oracle: the paper's script, written plainly -------------------------------------------

def read_bin_bytewise(path: str) -> list[tuple[int, int, int, int]]:
    """Decode byte by byte, as the reference reader does."""
    with open(path, "rb") as f:
        data = f.read()
    events = []
    for i in range(0, len(data), 5):
        x, y = data[i], data[i + 1]
        p = data[i + 2] >> 7
        t = ((data[i + 2] & 127) << 16) | (data[i + 3] << 8) | data[i + 4]
        events.append((x, y, t, p))
    return events


def write_bin_bytewise(events) -> bytes:
    out = bytearray()
    for x, y, t, p in events:
        out += bytes([x, y, (p << 7) | (t >> 16), (t >> 8) & 255, t & 255])
    return bytes(out)


def oracle_2nmnist(split_dir: str, seed: int = 42, max_digit: int = 9,
                   swap_polarity: bool = False) -> dict[str, bytes]:
    """{output file name: bytes} for one split, by the paper's procedure over sorted sources."""
    sources = []
    for path in glob.glob(os.path.join(split_dir, "*", "*.bin")):
        digit = os.path.basename(os.path.dirname(path))
        if int(digit) <= max_digit:
            sources.append(digit + "/" + os.path.basename(path)[:-4])
    sources.sort()
    np.random.seed(seed)
    np.random.shuffle(sources)
    out, i, g = {}, 0, 0
    while i < len(sources):
        n = np.random.randint(1, 3)
        if n == 2 and (i + 1 == len(sources) or sources[i][0] == sources[i + 1][0]):
            n = 1
        first = read_bin_bytewise(os.path.join(split_dir, sources[i] + ".bin"))
        if n == 1:
            out[f"{g}_{sources[i][0]}.bin"] = write_bin_bytewise(first)
        else:
            second = read_bin_bytewise(os.path.join(split_dir, sources[i + 1] + ".bin"))
            tmax = max(e[2] for e in second)
            rev = [(x, y, tmax - t, (1 - p) if swap_polarity else p)
                   for x, y, t, p in reversed(second)]
            out[f"{g}_{sources[i][0]}-{sources[i + 1][0]}.bin"] = write_bin_bytewise(rev + first)
        i += n
        g += 1
    return out
