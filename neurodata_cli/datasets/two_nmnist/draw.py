"""2NMNIST frames and its preview: one sample as event frames over equal time bins."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...preview import BLACK, TITLE, WHITE, colour_frames, font

SIZE = 34
SCALE, GAP = 6, 8


def frames(events: np.ndarray, n_time_bins: int) -> np.ndarray:
    """``[T, 2, 34, 34]`` int32 event counts over ``n_time_bins`` equal time bins."""
    out = np.zeros((n_time_bins, 2, SIZE, SIZE), dtype=np.int32)
    if len(events):
        t = events["t"].astype(np.int64)
        span = int(t.max() - t.min()) + 1
        bins = (t - t.min()) * n_time_bins // span
        flat = ((bins * 2 + events["p"].astype(np.int64)) * SIZE
                + events["y"].astype(np.int64)) * SIZE + events["x"].astype(np.int64)
        out.reshape(-1)[:] = np.bincount(flat, minlength=out.size)
    return out


def tile_box(b: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of time bin b's frame in the preview."""
    side = SIZE * SCALE
    x0 = GAP + b * (side + GAP)
    return x0, TITLE * 2, x0 + side, TITLE * 2 + side


def preview(record: dict[str, Any], title: str, bins: int = 6) -> Any:
    from PIL import Image, ImageDraw

    events, label = record["events"], record["label"]
    counts = frames(events, bins)
    side = SIZE * SCALE
    image = Image.new("RGB", (GAP + bins * (side + GAP), TITLE * 2 + side + 24), WHITE)
    draw = ImageDraw.Draw(image)
    small = font(12)
    digits = [int(d) for d in np.flatnonzero(label)]
    sources = ""
    if "reversed" in record:
        sources = f"; sources {record.get('source', '')}, reversed {record['reversed']}"
    draw.text((GAP, 4), f"{title}: digits {digits}{sources}", fill=BLACK, font=small)
    t = events["t"].astype(np.int64)
    t0, span = (int(t.min()), int(t.max() - t.min()) + 1) if len(t) else (0, 1)
    for b in range(bins):
        rgb = colour_frames(counts[b, 1] > 0, counts[b, 0] > 0)
        tile = Image.fromarray(rgb).resize((side, side), Image.Resampling.NEAREST)
        x0, y0, x1, y1 = tile_box(b)
        image.paste(tile, (x0, y0))
        draw.rectangle([x0 - 1, y0 - 1, x1, y1], outline=BLACK)
        lo, hi = (t0 + span * b // bins) / 1000, (t0 + span * (b + 1) // bins) / 1000
        draw.text((x0, y0 - 16), f"{lo:.0f}-{hi:.0f} ms", fill=BLACK, font=small)
    draw.text((GAP, TITLE * 2 + side + 6), "red: ON, blue: OFF, purple: both", fill=BLACK,
              font=small)
    return image
