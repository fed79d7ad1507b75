"""The Yin-Yang preview: one split as a scatter of (x1, y1), coloured by class."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...preview import BLACK, TITLE, WHITE, font

CLASS_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44))  # yin, yang, dot
CLASS_NAMES = ("yin", "yang", "dot")
PLOT, MARGIN, LEGEND = 480, 40, 170


def position(x: float, y: float, r_big: float) -> tuple[int, int]:
    """Pixel (column, row) where the point (x1, y1) is drawn."""
    side = 2 * r_big
    return (MARGIN + int(round(x / side * (PLOT - 1))),
            TITLE + MARGIN + int(round((1 - y / side) * (PLOT - 1))))


def scatter(features: np.ndarray, labels: np.ndarray, r_big: float, title: str) -> Any:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (MARGIN * 2 + PLOT + LEGEND, TITLE + MARGIN * 2 + PLOT), WHITE)
    draw = ImageDraw.Draw(image)
    top = TITLE + MARGIN
    draw.rectangle([MARGIN - 1, top - 1, MARGIN + PLOT, top + PLOT], outline=BLACK)
    for (x, y), label in zip(features[:, :2], labels, strict=True):
        cx, cy = position(float(x), float(y), r_big)
        draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=CLASS_COLOURS[int(label)])
    small = font()
    draw.text((MARGIN, 6), f"{title}: {len(labels)} samples, x1 against y1", fill=BLACK,
              font=small)
    draw.text((MARGIN, top + PLOT + 8), "x1", fill=BLACK, font=small)
    draw.text((8, top), "y1", fill=BLACK, font=small)
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=3)
    for k, (name, colour) in enumerate(zip(CLASS_NAMES, CLASS_COLOURS, strict=True)):
        x0, y0 = MARGIN * 2 + PLOT, top + 10 + 24 * k
        draw.rectangle([x0, y0, x0 + 14, y0 + 14], fill=colour)
        draw.text((x0 + 22, y0), f"{name}: {counts[k]}", fill=BLACK, font=small)
    return image
