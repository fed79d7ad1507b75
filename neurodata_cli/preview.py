"""PNG drawing helpers shared by the datasets' previews, with Pillow only, so that a preview is
the same bytes each time. Each dataset says what to draw (``Dataset.preview``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
ON, OFF, BOTH = (215, 38, 38), (38, 84, 215), (140, 40, 160)
TITLE = 28  # pixels above the panels


def font(size: int = 13) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the bitmap font, one size
        return ImageFont.load_default()


def colour_frames(on: np.ndarray, off: np.ndarray) -> np.ndarray:
    """RGB uint8 from ON/OFF masks: red, blue, purple where both, white elsewhere."""
    rgb = np.full(on.shape + (3,), 255, dtype=np.uint8)
    rgb[on & ~off] = ON
    rgb[off & ~on] = OFF
    rgb[on & off] = BOTH
    return rgb


def save(image: Any, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, "PNG", optimize=False)
    return out
