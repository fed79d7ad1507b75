"""A plain, slow ODG: the issue's steps as written, on float32 canvases.

It shares nothing with ``neurodata_cli.datasets.odg``: the fast converter is checked against it.
"""

from __future__ import annotations

import math

import numpy as np

TRACE = [(1, 0), (0, 2), (2, 1), (1, 0), (0, 1), (2, 2), (1, 0), (1, 1), (2, 1)]


def torch_nearest(n_in: int, n_out: int) -> list[int]:
    """torch's nearest source index for each output index, one at a time."""
    out = []
    scale = np.float32(np.float32(n_in) / np.float32(n_out))
    for i in range(n_out):
        if n_in == n_out:
            out.append(i)
        elif n_out == 2 * n_in:
            out.append(i >> 1)
        else:
            out.append(min(math.floor(np.float32(i) * scale), n_in - 1))
    return out


def odg(rgb: np.ndarray, threshold: float = 0.18) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(pos, neg, H, W): pos and neg uint8 [N, 3] of (row, col, t), by t, then row, then col."""
    value = rgb.max(axis=2)
    h0, w0 = value.shape
    if h0 > w0:
        h, w = 254, int(w0 * 254 / h0)
    else:
        h, w = int(h0 * 254 / w0), 254
    if h == 0 or w == 0:
        empty = np.zeros((0, 3), np.uint8)
        return empty, empty, h, w
    rows, cols = torch_nearest(h0, h), torch_nearest(w0, w)
    resized = np.array([[value[i, j] for j in cols] for i in rows], dtype=np.uint8)
    level = resized.astype(np.float32) / np.float32(255)
    frames = []
    for r, c in TRACE:
        frame = np.zeros((h + 4, w + 4), dtype=np.float32)
        frame[r:r + h, c:c + w] = level
        frames.append(frame)
    thr = np.float32(threshold)
    pos, neg = [], []
    for t in range(1, 9):
        d = frames[t] - frames[t - 1]
        assert d.dtype == np.float32
        (r, c), (r0, c0) = TRACE[t], TRACE[t - 1]
        for mask, sink in ((d > thr, pos), (d < -thr, neg)):
            mask = mask.copy()
            mask[r:r0, :] = False
            mask[r0:r, :] = False
            mask[r + h:r0 + h, :] = False
            mask[r0 + h:r + h, :] = False
            mask[:, c:c0] = False
            mask[:, c0:c] = False
            mask[:, c + w:c0 + w] = False
            mask[:, c0 + w:c + w] = False
            rows, cols = np.nonzero(mask)  # row-major: by row, then col
            for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
                if 16 < row < 240 and 16 < col < 240:
                    sink.append((row, col, t))
    as_array = lambda ev: np.array(ev, dtype=np.uint8).reshape(-1, 3)  # noqa: E731
    return as_array(pos), as_array(neg), h, w
