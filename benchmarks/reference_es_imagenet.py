"""A reference-style ES-ImageNet pipeline, for the benchmark: float canvases, one step at a time.

This follows the authors' converter as the issue spells it (value, nearest resize, nine float32
frames, a difference and two masks per step, edge strips, window) with numpy on the CPU, and
saves each sample with ``np.savez_compressed`` as the release does. Usage:
``python reference_es_imagenet.py ROOT OUT LIMIT``.
"""

from __future__ import annotations

import os
import sys

import numpy as np
from PIL import Image

TRACE = [(1, 0), (0, 2), (2, 1), (1, 0), (0, 1), (2, 2), (1, 0), (1, 1), (2, 1)]


def nearest(n_in: int, n_out: int) -> np.ndarray:
    if n_in == n_out:
        return np.arange(n_out)
    if n_out == 2 * n_in:
        return np.arange(n_out) >> 1
    scale = np.float32(n_in) / np.float32(n_out)
    return np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(int), n_in - 1)


def convert(rgb: np.ndarray, thr: float = 0.18) -> tuple[np.ndarray, np.ndarray]:
    v = rgb.max(axis=2)
    h0, w0 = v.shape
    h, w = (254, int(w0 * 254 / h0)) if h0 > w0 else (int(h0 * 254 / w0), 254)
    level = v[nearest(h0, h)][:, nearest(w0, w)].astype(np.float32) / 255
    frames = []
    for r, c in TRACE:
        f = np.zeros((h + 4, w + 4), np.float32)
        f[r:r + h, c:c + w] = level
        frames.append(f)
    pos, neg = [], []
    for t in range(1, 9):
        d = frames[t] - frames[t - 1]
        (r, c), (r0, c0) = TRACE[t], TRACE[t - 1]
        for mask, sink in ((d > thr, pos), (d < -thr, neg)):
            for a, b in ((r, r0), (r0, r), (r + h, r0 + h), (r0 + h, r + h)):
                mask[a:b, :] = False
            for a, b in ((c, c0), (c0, c), (c + w, c0 + w), (c0 + w, c + w)):
                mask[:, a:b] = False
            mask[:17, :] = mask[240:, :] = mask[:, :17] = mask[:, 240:] = False
            rows, cols = np.nonzero(mask)
            sink.append(np.stack([rows, cols, np.full_like(rows, t)], axis=1))
    return np.concatenate(pos).astype(np.uint8), np.concatenate(neg).astype(np.uint8)


def main(root: str, out: str, limit: int) -> None:
    files = []
    for wnid in sorted(os.listdir(os.path.join(root, "train"))):
        folder = os.path.join(root, "train", wnid)
        files += [os.path.join(folder, name) for name in sorted(os.listdir(folder))]
    os.makedirs(out, exist_ok=True)
    for path in files[:limit]:
        pos, neg = convert(np.asarray(Image.open(path).convert("RGB")))
        if len(pos) + len(neg) >= 1000:
            stem = os.path.splitext(os.path.basename(path))[0]
            np.savez_compressed(os.path.join(out, stem + ".npz"), pos=pos, neg=neg)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
