"""ODG (Omnidirectional Discrete Gradient), the ES-ImageNet converter, as pure functions.

An RGB image becomes 8 time steps of ON/OFF events, exactly as the authors' converter
(``dataset_generator/traconvert.py`` of ES-imagenet-master) computes them:

1. ``V`` is the maximum over the three channels.
2. ``V`` is resized by nearest neighbour so its longer side is 254, with the source index that
   ``torch.nn.functional.interpolate(mode='nearest')`` computes (in float32).
3. Frame t (t = 0..8) is a zero canvas of (H+4) x (W+4) holding ``V / 255`` (float32) at the
   t-th offset of ``TRACE``.
4. ``D = frame_t - frame_{t-1}`` (float32); positive events where ``D > threshold``, negative
   ones where ``D < -threshold``, both compared in float32 as torch compares a float32 tensor
   with a Python number.
5. The strips swept by the moving image edges are cleared (Python slice semantics).
6. Only canvas positions with ``16 < row < 240`` and ``16 < col < 240`` are kept.

How we compute it: ``D`` at a canvas position depends only on the two 8-bit values that land
there, so its sign is a lookup in a 256 x 256 table built with the very float32 arithmetic above
(``sign_table``). The tests check that table against the float32 formula over every value pair and
several thresholds, and check whole conversions against a plain float-canvas implementation.

The events of one image come out ordered by t; within a t the positive events come first, then
the negative ones, each by row and then column. Taking one polarity therefore gives the order of
the released npz files (by t, then row, then col).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

SIDE = 254  # the longer side after resizing
PAD = 4  # the canvas is (H + PAD) x (W + PAD)
TRACE = ((1, 0), (0, 2), (2, 1), (1, 0), (0, 1), (2, 2), (1, 0), (1, 1), (2, 1))
STEPS = len(TRACE) - 1  # event time steps t = 1..8
WINDOW = (16, 240)  # kept: WINDOW[0] < row < WINDOW[1], and the same for col
DEFAULT_THRESHOLD = 0.18
# At most one event per window position and step.
MAX_EVENTS = STEPS * (WINDOW[1] - WINDOW[0] - 1) ** 2
_C_SLACK = 256  # the C path writes candidate slots up to a row past the last event

try:
    from ._odg import convert as _convert_c
except ImportError:  # no compiler at install time: the numpy path gives the same events
    _convert_c = None


@dataclass(frozen=True)
class Events:
    """One image's events in canvas coordinates, all uint8; ``p`` is 1 (positive) or 0."""

    row: np.ndarray
    col: np.ndarray
    t: np.ndarray
    p: np.ndarray
    height: int  # the resized H and W
    width: int

    def __len__(self) -> int:
        return int(self.row.size)

    def polarity(self, positive: bool) -> np.ndarray:
        """``pos`` or ``neg`` as in the release: uint8 [N, 3] of (row, col, t)."""
        keep = self.p == (1 if positive else 0)
        return np.stack([self.row[keep], self.col[keep], self.t[keep]], axis=1)


def resized_shape(h0: int, w0: int) -> tuple[int, int]:
    """(H, W) with the longer side 254, truncated as the reference truncates."""
    if h0 > w0:
        return SIDE, int(w0 * SIDE / h0)
    return int(h0 * SIDE / w0), SIDE


def nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output index, as torch's nearest interpolation computes it."""
    i = np.arange(n_out, dtype=np.int64)
    if n_in == n_out:
        return i
    if n_out == 2 * n_in:
        return i >> 1
    scale = np.float32(n_in) / np.float32(n_out)
    src = np.floor(i.astype(np.float32) * scale).astype(np.int64)
    return np.minimum(src, n_in - 1)


@lru_cache(maxsize=256)
def _source_indices(h0: int, w0: int) -> tuple[np.ndarray, np.ndarray]:
    """The C path's int32 row and column indices; photo collections repeat a few sizes."""
    h, w = resized_shape(h0, w0)
    return nearest_index(h0, h).astype(np.int32), nearest_index(w0, w).astype(np.int32)


@lru_cache(maxsize=16)
def sign_table(threshold: float) -> np.ndarray:
    """int8 [256, 256]: the event at a position whose value goes from b (step t-1) to a (step t).

    +1 where ``a/255 - b/255 > threshold``, -1 where it is ``< -threshold``, 0 elsewhere, in the
    float32 arithmetic of the reference.
    """
    level = np.arange(256).astype(np.float32) / np.float32(255)
    d = level[:, None] - level[None, :]
    thr = np.float32(threshold)
    table = (d > thr).astype(np.int8) - (d < -thr).astype(np.int8)
    table.flags.writeable = False
    return table


@lru_cache(maxsize=16)
def integer_cutoffs(threshold: float) -> tuple[int, int]:
    """``(kp, kn)`` with ``sign_table == (a - b >= kp) - (b - a >= kn)`` exactly, or (0, 0).

    For most thresholds the float32 comparison is a plain cut on the 8-bit difference, which the
    C path can test without the table. Near a multiple of 1/255 float32 rounding can make it
    depend on a and b themselves; then (0, 0) sends the C path to the table.
    """
    table = sign_table(threshold)
    diff = np.arange(256)[:, None] - np.arange(256)[None, :]
    if not (table > 0).any() or not (table < 0).any():
        return 0, 0
    kp, kn = int(diff[table > 0].min()), int((-diff)[table < 0].min())
    same = (diff >= kp).astype(np.int8) - (-diff >= kn).astype(np.int8)
    return (kp, kn) if kp > 0 and kn > 0 and np.array_equal(same, table) else (0, 0)


def value_image(rgb: np.ndarray) -> np.ndarray:
    """The resized value image: max over channels, then nearest-neighbour to longer side 254.

    The maximum commutes with a nearest-neighbour gather, so we gather first (fewer pixels).
    """
    h0, w0 = rgb.shape[:2]
    h, w = resized_shape(h0, w0)
    small = rgb[nearest_index(h0, h)[:, None], nearest_index(w0, w)[None, :]]
    return small.max(axis=2)


def convert(image: Any, threshold: float = DEFAULT_THRESHOLD) -> Events:
    """All events of one RGB image: uint8 [H, W, 3], or a Pillow image in mode RGB.

    A Pillow image is read in place where Pillow lends its pixels through the Arrow C data
    interface (Pillow >= 11.2), which spares a copy that costs about as much as the whole
    conversion; otherwise it is copied into an array first.
    """
    pixels = _lent_pixels(image)
    if pixels is None:
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
        h0, w0 = image.shape[:2]
    else:
        w0, h0 = image.size
    h, w = resized_shape(h0, w0)
    if h == 0 or w == 0:
        return _empty(h, w)
    if _convert_c is None:
        return convert_numpy(np.asarray(image) if pixels is not None else image, threshold)
    rows, cols = _source_indices(h0, w0)
    table = sign_table(float(threshold))
    out = _scratch()
    kp, kn = integer_cutoffs(float(threshold))
    n = _convert_c(image if pixels is None else pixels, h0, w0, rows, cols, table, kp, kn,
                   _TRACE_BYTES, out)
    row, col, t, p = (out[k, :n].copy() for k in range(4))
    return Events(row, col, t, p, height=h, width=w)


def _lent_pixels(image: Any) -> tuple[Any, Any] | None:
    """An RGB Pillow image's Arrow capsules, or None (an array, or a Pillow that cannot)."""
    if isinstance(image, np.ndarray) or getattr(image, "mode", None) != "RGB":
        return None
    export = getattr(image, "__arrow_c_array__", None)
    if export is None:
        return None
    try:
        return export()
    except Exception:  # e.g. an image too large for one block: read it through a copy
        return None


_LOCAL = threading.local()


def _scratch() -> np.ndarray:
    """The C path's output buffer, reused per thread: a fresh 1.6 MB array costs page faults
    on every image, and the C code runs without the GIL."""
    buf = getattr(_LOCAL, "buf", None)
    if buf is None:
        buf = _LOCAL.buf = np.empty((4, MAX_EVENTS + _C_SLACK), dtype=np.uint8)
    return buf


def convert_numpy(rgb: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> Events:
    """The same events as ``convert``, in numpy only (the path without a C compiler)."""
    h, w = resized_shape(*rgb.shape[:2])
    if h == 0 or w == 0:
        return _empty(h, w)
    v = value_image(rgb)
    table = sign_table(float(threshold))
    frames = np.zeros((len(TRACE), h + PAD, w + PAD), dtype=np.uint8)
    for k, (r, c) in enumerate(TRACE):
        frames[k, r:r + h, c:c + w] = v
    sign = table[frames[1:].astype(np.intp), frames[:-1]]
    for k in range(1, len(TRACE)):
        (r, c), (r0, c0) = TRACE[k], TRACE[k - 1]
        for lo, hi in _edge_strips(r, r0, h):
            sign[k - 1, lo:hi, :] = 0
        for lo, hi in _edge_strips(c, c0, w):
            sign[k - 1, :, lo:hi] = 0
    lo = WINDOW[0] + 1
    win = sign[:, lo:WINDOW[1], lo:WINDOW[1]]
    parts = []
    for k in range(STEPS):
        for polarity, value in ((1, 1), (0, -1)):
            rr, cc = np.nonzero(win[k] == value)
            parts.append((rr + lo, cc + lo, np.full(rr.size, k + 1), np.full(rr.size, polarity)))
    row, col, t, p = (np.concatenate([q[i] for q in parts]).astype(np.uint8) for i in range(4))
    return Events(row, col, t, p, height=h, width=w)


def _edge_strips(a: int, a0: int, size: int) -> list[tuple[int, int]]:
    """The row (or column) ranges ``a:a0, a0:a, a+size:a0+size, a0+size:a+size``."""
    return [(a, a0), (a0, a), (a + size, a0 + size), (a0 + size, a + size)]


def _empty(h: int, w: int) -> Events:
    e = np.empty(0, dtype=np.uint8)
    return Events(e, e, e, e, height=h, width=w)


_TRACE_BYTES = bytes(v for pair in TRACE for v in pair)
