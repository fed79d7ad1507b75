"""ES-ImageNet frames as the authors' loader builds them, and the preview: 8 event frames and
the authors' Edge-Integral relief."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...preview import BLACK, TITLE, WHITE, colour_frames, font

try:
    from ._odg import frames as _frames_c
except ImportError:  # no compiler at install time
    _frames_c = None

FRAME = 224  # frames: a 256 x 256 canvas, centred, cropped to rows/cols 16:240
CANVAS = 256
CROP = 16
STEPS = 8
GAP = 6
DR = (0, 2, 1, 0, 2, 1, 1, 2)
DC = (2, 1, 0, 1, 2, 0, 1, 1)


def frames(events: np.ndarray, h: int, w: int) -> np.ndarray:
    """``[2, 8, 224, 224]`` uint8: the events in a 256 x 256 canvas shifted by
    ((254 - H) // 2, (254 - W) // 2), cropped to rows and columns 16:240 (channel 0 positive)."""
    out = np.zeros((2, STEPS, FRAME, FRAME), dtype=np.uint8)
    dr, dc = (254 - h) // 2 - CROP, (254 - w) // 2 - CROP
    if _frames_c is not None:
        # One pass in C over the field views, in place: it reads integers of any width and sign.
        _frames_c(*(native(events[k]) for k in "xytp"), dr, dc, out)
        return out
    return frames_numpy(events, dr, dc, out)


def native(field: np.ndarray) -> np.ndarray:
    """The field itself, or a copy in this machine's byte order (the only order C reads)."""
    return field if field.dtype.isnative else field.astype(field.dtype.newbyteorder("="))


def frames_numpy(events: np.ndarray, dr: int, dc: int, out: np.ndarray) -> np.ndarray:
    """``frames`` for any event array with fields x, y, t, p, and the route without C."""
    t, p = events["t"], events["p"]
    if len(t) and (t.min() < 1 or t.max() > STEPS or p.min() < 0 or p.max() > 1):
        raise ValueError("frames: an event has t outside 1..8 or p outside 0, 1")
    rows, in_rows = shifted(events["y"], dr)
    cols, in_cols = shifted(events["x"], dc)
    keep = in_rows & in_cols
    # One flat index per event: a 1-D assignment, several times cheaper than a 4-D one.
    plane = np.int32(STEPS) - np.int32(STEPS) * p.astype(np.int32) + t.astype(np.int32) \
        - np.int32(1)
    flat = (plane * np.int32(FRAME) + rows) * np.int32(FRAME) + cols
    out.reshape(-1)[flat[keep]] = 1
    return out


def shifted(v: np.ndarray, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """``v + shift`` as int32 (every index is below 2 * 8 * 224 * 224: a fifth of the time of
    intp), and where it lies in 0..FRAME-1; exact for any integer dtype."""
    if v.dtype.itemsize <= 2:  # int32 holds v + shift: one unsigned comparison
        s = v.astype(np.int32) + np.int32(shift)
        return s, s.view(np.uint32) < FRAME
    # Compared in v's own dtype first: a cast to int32 would wrap a wide value into the crop.
    inside = (v >= -shift) & (v < FRAME - shift)
    return np.where(inside, v, 0).astype(np.int32) + np.int32(shift), inside


def edge_integral(f: np.ndarray) -> np.ndarray:
    """The authors' Edge-Integral image (224 x 224) of ``[2, 8, 224, 224]`` frames."""
    total = np.zeros((CANVAS, CANVAS), dtype=np.int32)
    for t in range(STEPS):
        r, c = 2 - DR[t], 2 - DC[t]
        total[r:r + FRAME, c:c + FRAME] += f[0, t].astype(np.int32) - f[1, t].astype(np.int32)
    return total[1:FRAME + 1, 1:FRAME + 1]


def frame_box(t: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of step t's frame (t = 1..8) in the preview."""
    row, col = divmod(t - 1, 4)
    x0 = GAP + col * (FRAME + GAP)
    y0 = TITLE + GAP + row * (FRAME + GAP)
    return x0, y0, x0 + FRAME, y0 + FRAME


def relief_box() -> tuple[int, int, int, int]:
    x0 = GAP + 4 * (FRAME + GAP) + GAP
    y0 = TITLE + GAP
    side = 2 * FRAME + GAP
    return x0, y0, x0 + side, y0 + side


def relief_grey(ei: np.ndarray) -> np.ndarray:
    """The relief as grey levels: 128 is zero, symmetric in the 99th percentile of |EI|."""
    scale = float(np.percentile(np.abs(ei), 99)) or 1.0
    return np.clip(128 + 127 * ei / scale, 0, 255).astype(np.uint8)


def preview(record: dict[str, Any], title: str) -> Any:
    from PIL import Image, ImageDraw

    f = frames(record["events"], int(record["height"]), int(record["width"]))
    right, bottom = relief_box()[2:]
    image = Image.new("RGB", (right + GAP, bottom + GAP), WHITE)
    draw = ImageDraw.Draw(image)
    small = font(12)
    draw.text((GAP, 6), f"{title}: label {int(record['label'])}, {record.get('source', '')}; "
              "t = 1..8 (red positive, blue negative) and the Edge-Integral", fill=BLACK,
              font=small)
    for t in range(1, STEPS + 1):
        rgb = colour_frames(f[0, t - 1] > 0, f[1, t - 1] > 0)
        box = frame_box(t)
        image.paste(Image.fromarray(rgb), box[:2])
        draw.rectangle([box[0] - 1, box[1] - 1, box[2], box[3]], outline=BLACK)
        draw.text((box[0] + 3, box[1] + 2), f"t={t}", fill=BLACK, font=small)
    box = relief_box()
    relief = Image.fromarray(relief_grey(edge_integral(f))).resize(
        (box[2] - box[0], box[3] - box[1]), Image.Resampling.NEAREST)
    image.paste(relief.convert("RGB"), box[:2])
    draw.rectangle([box[0] - 1, box[1] - 1, box[2], box[3]], outline=BLACK)
    return image
