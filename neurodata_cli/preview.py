"""PNG previews of materialised datasets, drawn with Pillow so they are the same bytes each time.

- Yin-Yang: one split as a scatter of (x1, y1), coloured by class, with a legend of counts.
- 2NMNIST: one sample as event frames over equal time bins (ON red, OFF blue).
- ES-ImageNet: one sample's 8 event frames (positive red, negative blue) and the authors'
  Edge-Integral image, an edge relief of the source photo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .reader import ES_CANVAS, ES_FRAME, ES_STEPS, Materialised, es_frames, nmnist_frames

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
CLASS_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44))  # yin, yang, dot
ON, OFF, BOTH = (215, 38, 38), (38, 84, 215), (140, 40, 160)
TITLE = 28  # pixels above the panels
# Yin-Yang: the plot square and where it starts
YY_PLOT, YY_MARGIN, YY_LEGEND = 480, 40, 170
# 2NMNIST: frame scale
NM_SCALE, NM_GAP = 6, 8
# ES-ImageNet: 8 frames in 2 rows of 4, then the relief at twice the frame size
ES_GAP = 6
ES_DR = (0, 2, 1, 0, 2, 1, 1, 2)
ES_DC = (2, 1, 0, 1, 2, 0, 1, 1)


def _font(size: int = 13) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the bitmap font, one size
        return ImageFont.load_default()


def preview(data: Materialised, split: str, index: int, out: Path) -> Path:
    if data.dataset == "yinyang":
        image = yinyang_scatter(data, split)
    elif data.dataset == "2nmnist":
        image = nmnist_frames_image(data, split, index)
    else:
        image = es_imagenet_image(data, split, index)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, "PNG", optimize=False)
    return out


# ---- Yin-Yang ---------------------------------------------------------------------------------

def yinyang_position(x: float, y: float, r_big: float) -> tuple[int, int]:
    """Pixel (column, row) where the point (x1, y1) is drawn."""
    side = 2 * r_big
    return (YY_MARGIN + int(round(x / side * (YY_PLOT - 1))),
            TITLE + YY_MARGIN + int(round((1 - y / side) * (YY_PLOT - 1))))


def yinyang_scatter(data: Materialised, split: str) -> Image.Image:
    ds = data[split]
    features, labels = ds.arrays()
    r_big = float(data.manifest["config"].get("r_big", 0.5))
    width = YY_MARGIN * 2 + YY_PLOT + YY_LEGEND
    image = Image.new("RGB", (width, TITLE + YY_MARGIN * 2 + YY_PLOT), WHITE)
    draw = ImageDraw.Draw(image)
    top = TITLE + YY_MARGIN
    draw.rectangle([YY_MARGIN - 1, top - 1, YY_MARGIN + YY_PLOT, top + YY_PLOT], outline=BLACK)
    for (x, y), label in zip(features[:, :2], labels, strict=True):
        cx, cy = yinyang_position(float(x), float(y), r_big)
        draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=CLASS_COLOURS[int(label)])
    font = _font()
    draw.text((YY_MARGIN, 6), f"Yin-Yang {data.manifest['version']}, {split}: {len(labels)} "
              "samples, x1 against y1", fill=BLACK, font=font)
    draw.text((YY_MARGIN, top + YY_PLOT + 8), "x1", fill=BLACK, font=font)
    draw.text((8, top), "y1", fill=BLACK, font=font)
    counts = np.bincount(labels, minlength=3)
    for k, (name, colour) in enumerate(zip(ds.class_names, CLASS_COLOURS, strict=True)):
        x0, y0 = YY_MARGIN * 2 + YY_PLOT, top + 10 + 24 * k
        draw.rectangle([x0, y0, x0 + 14, y0 + 14], fill=colour)
        draw.text((x0 + 22, y0), f"{name}: {counts[k]}", fill=BLACK, font=font)
    return image


# ---- 2NMNIST ----------------------------------------------------------------------------------

def _colour_frames(on: np.ndarray, off: np.ndarray) -> np.ndarray:
    """RGB uint8 from ON/OFF masks: red, blue, purple where both, white elsewhere."""
    rgb = np.full(on.shape + (3,), 255, dtype=np.uint8)
    rgb[on & ~off] = ON
    rgb[off & ~on] = OFF
    rgb[on & off] = BOTH
    return rgb


def nmnist_frames_image(data: Materialised, split: str, index: int,
                        bins: int = 6) -> Image.Image:
    ds = data[split]
    events, label = ds[index]
    frames = nmnist_frames(events, bins)  # [T, 2, 34, 34]
    side = 34 * NM_SCALE
    width = NM_GAP + bins * (side + NM_GAP)
    image = Image.new("RGB", (width, TITLE * 2 + side + 24), WHITE)
    draw = ImageDraw.Draw(image)
    font = _font(12)
    digits = [int(d) for d in np.flatnonzero(label)]
    sources = ""
    if hasattr(ds, "info"):
        info = ds.info(index)
        sources = f"; sources {info.get('source', '')}, reversed {info.get('reversed', '')}"
    draw.text((NM_GAP, 4), f"2NMNIST {split} sample {index}: digits {digits}{sources}",
              fill=BLACK, font=font)
    t = events["t"].astype(np.int64)
    t0, span = (int(t.min()), int(t.max() - t.min()) + 1) if len(t) else (0, 1)
    for b in range(bins):
        rgb = _colour_frames(frames[b, 1] > 0, frames[b, 0] > 0)
        tile = Image.fromarray(rgb).resize((side, side), Image.Resampling.NEAREST)
        x0 = NM_GAP + b * (side + NM_GAP)
        image.paste(tile, (x0, TITLE * 2))
        draw.rectangle([x0 - 1, TITLE * 2 - 1, x0 + side, TITLE * 2 + side], outline=BLACK)
        lo, hi = (t0 + span * b // bins) / 1000, (t0 + span * (b + 1) // bins) / 1000
        draw.text((x0, TITLE * 2 - 16), f"{lo:.0f}-{hi:.0f} ms", fill=BLACK, font=font)
    draw.text((NM_GAP, TITLE * 2 + side + 6), "red: ON, blue: OFF, purple: both",
              fill=BLACK, font=font)
    return image


def nmnist_tile_box(b: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of time bin b's frame in the 2NMNIST preview."""
    side = 34 * NM_SCALE
    x0 = NM_GAP + b * (side + NM_GAP)
    return x0, TITLE * 2, x0 + side, TITLE * 2 + side


# ---- ES-ImageNet ------------------------------------------------------------------------------

def edge_integral(frames: np.ndarray) -> np.ndarray:
    """The authors' Edge-Integral image (224 x 224) of ``[2, 8, 224, 224]`` frames."""
    total = np.zeros((ES_CANVAS, ES_CANVAS), dtype=np.int32)
    for t in range(ES_STEPS):
        r, c = 2 - ES_DR[t], 2 - ES_DC[t]
        total[r:r + ES_FRAME, c:c + ES_FRAME] += (frames[0, t].astype(np.int32)
                                                 - frames[1, t].astype(np.int32))
    return total[1:ES_FRAME + 1, 1:ES_FRAME + 1]


def es_frame_box(t: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of step t's frame (t = 1..8) in the ES-ImageNet preview."""
    row, col = divmod(t - 1, 4)
    x0 = ES_GAP + col * (ES_FRAME + ES_GAP)
    y0 = TITLE + ES_GAP + row * (ES_FRAME + ES_GAP)
    return x0, y0, x0 + ES_FRAME, y0 + ES_FRAME


def es_relief_box() -> tuple[int, int, int, int]:
    x0 = ES_GAP + 4 * (ES_FRAME + ES_GAP) + ES_GAP
    y0 = TITLE + ES_GAP
    side = 2 * ES_FRAME + ES_GAP
    return x0, y0, x0 + side, y0 + side


def relief_grey(ei: np.ndarray) -> np.ndarray:
    """The relief as grey levels: 128 is zero, symmetric in the 99th percentile of |EI|."""
    scale = float(np.percentile(np.abs(ei), 99)) or 1.0
    return np.clip(128 + 127 * ei / scale, 0, 255).astype(np.uint8)


def es_imagenet_image(data: Materialised, split: str, index: int) -> Image.Image:
    ds = data[split]
    events, label = ds[index]
    frames = es_frames(events, *ds.resized_shape(index))
    right, bottom = es_relief_box()[2:]
    image = Image.new("RGB", (right + ES_GAP, bottom + ES_GAP), WHITE)
    draw = ImageDraw.Draw(image)
    font = _font(12)
    source = ds.info(index).get("source", "") if hasattr(ds, "info") else ds.paths[index].name
    draw.text((ES_GAP, 6), f"ES-ImageNet {split} sample {index}: label {label}, {source}; "
              "t = 1..8 (red positive, blue negative) and the Edge-Integral", fill=BLACK,
              font=font)
    for t in range(1, ES_STEPS + 1):
        rgb = _colour_frames(frames[0, t - 1] > 0, frames[1, t - 1] > 0)
        box = es_frame_box(t)
        image.paste(Image.fromarray(rgb), box[:2])
        draw.rectangle([box[0] - 1, box[1] - 1, box[2], box[3]], outline=BLACK)
        draw.text((box[0] + 3, box[1] + 2), f"t={t}", fill=BLACK, font=font)
    box = es_relief_box()
    relief = Image.fromarray(relief_grey(edge_integral(frames))).resize(
        (box[2] - box[0], box[3] - box[1]), Image.Resampling.NEAREST)
    image.paste(relief.convert("RGB"), box[:2])
    draw.rectangle([box[0] - 1, box[1] - 1, box[2], box[3]], outline=BLACK)
    return image
