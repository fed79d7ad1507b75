"""ES-ImageNet: ImageNet-sized JPEGs, whole processes, side by side in one run.

Inputs are 500x375 (and some 375x500) quality-90 JPEGs cut from the real photographs that
scikit-image ships, with random crops, scales and flips so that no two are alike. Reported:
- our conversion (1 worker) against decoding the same files and nothing else (goal <= 1.6x);
- a reference-style pipeline (float canvases per step, then np.savez_compressed), timed on a
  subset in the same run and scaled (goal: ours >= 5x faster);
- 2 workers against 1 (goal >= 1.8x);
- HDF5 bytes per sample against the released npz of the same images (goal <= 40%);
- peak RSS.
Set NEURODATA_BENCH_SCALE (e.g. 0.25) for a quicker, smaller run.

Shards hold 100 images. A whole ImageNet run has over a thousand shards per worker, so the
wait for the last shard is nothing; with 4,000 images, large shards would make that wait a
tenth of the 2-worker run and measure it instead of the scaling.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
from common import HERE, WORK, fresh, median, neurodata, timed_process, warm

from neurodata_cli.datasets import get

SCALE = float(os.environ.get("NEURODATA_BENCH_SCALE", "1"))
IMAGES = max(200, int(4000 * SCALE))
REFERENCE_IMAGES = max(100, IMAGES // 10)
CLASSES = 10
ROUNDS = 5

DECODE_ONLY = """
import os, sys
import numpy as np
from PIL import Image
root = os.path.join(sys.argv[1], "train")
for wnid in sorted(os.listdir(root)):
    for name in sorted(os.listdir(os.path.join(root, wnid))):
        np.asarray(Image.open(os.path.join(root, wnid, name)).convert("RGB"))
"""


def make_inputs(root: Path) -> Path:
    marker = root / f".complete-{IMAGES}"
    if marker.exists():
        return root
    import skimage
    from PIL import Image

    fresh(root)
    data = Path(skimage.__file__).parent / "data"
    photos = [Image.open(data / n).convert("RGB") for n in (
        "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
        "motorcycle_right.png", "retina.jpg", "hubble_deep_field.jpg", "camera.png",
        "brick.png", "grass.png", "gravel.png", "color.png", "coins.png", "moon.png")]
    rng = np.random.default_rng(0)
    for i in range(IMAGES):
        photo = photos[rng.integers(len(photos))]
        size = (500, 375) if rng.random() < 0.8 else (375, 500)
        scale = rng.uniform(0.5, 1.0)
        w, h = int(photo.width * scale), int(photo.height * scale)
        x0, y0 = rng.integers(0, photo.width - w + 1), rng.integers(0, photo.height - h + 1)
        image = photo.crop((x0, y0, x0 + w, y0 + h)).resize(size, Image.Resampling.BILINEAR)
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        folder = root / "train" / f"n{i % CLASSES:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"n{i % CLASSES:08d}_{i:06d}.JPEG", quality=90)
    marker.touch()
    os.sync()  # written-back now, not while the runs are timed
    return root


def folder_bytes(folder: Path, pattern: str) -> tuple[int, int]:
    files = list(folder.rglob(pattern))
    return sum(f.stat().st_size for f in files), len(files)


def main() -> int:
    work = WORK / "es-imagenet"
    t0 = time.perf_counter()
    root = make_inputs(work / "imagenet")
    print(f"es-imagenet: {IMAGES:,} ImageNet-sized JPEGs (q90) ready "
          f"({time.perf_counter() - t0:.0f} s)")

    def ours(fmt: str, workers: int, limit: int = 0) -> tuple[float, int, Path]:
        out = fresh(work / f"out-{fmt}-{workers}-{limit or 'all'}")
        warm(root / "train", "*.JPEG")
        seconds, rss = timed_process(neurodata() + [
            "es-imagenet", "--imagenet-root", str(root), "--format", fmt, "--workers",
            str(workers), "--shard-size", "100", "--out", str(out), "--quiet"]
            + (["--limit", str(limit)] if limit else []))
        return seconds, rss, out / "es-imagenet" / get("es-imagenet").version

    # Interleaved rounds, medians: this machine's speed drifts from minute to minute.
    decodes, ones, twos = [], [], []
    for _ in range(ROUNDS):
        warm(root / "train", "*.JPEG")
        decodes.append(timed_process([sys.executable, "-c", DECODE_ONLY, str(root)]))
        ones.append(ours("hdf5", 1))
        twos.append(ours("hdf5", 2))
    decode, decode_rss = median([d[0] for d in decodes]), decodes[0][1]
    one, one_rss, h5 = median([o[0] for o in ones]), max(o[1] for o in ones), ones[0][2]
    two = median([t[0] for t in twos])
    _, quarter_rss, _ = ours("hdf5", 1, IMAGES // 4)
    npz_s, npz_rss, npz = ours("npz", 1)
    ref, ref_rss = timed_process([sys.executable, str(HERE / "reference_es_imagenet.py"),
                                  str(root), str(fresh(work / "reference")),
                                  str(REFERENCE_IMAGES)])
    ref_total = ref * IMAGES / REFERENCE_IMAGES
    h5_bytes, _ = folder_bytes(h5, "*.h5")
    npz_bytes, samples = folder_bytes(npz, "*.npz")

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print(f"  decode only (Pillow, 1 process): {decode:.2f} s, "
          f"{IMAGES / decode:,.0f} images/s; peak RSS {decode_rss / 1e6:.0f} MB")
    print(f"  neurodata hdf5, 1 worker: {one:.2f} s, {IMAGES / one:,.0f} images/s, "
          f"{one / decode:.2f}x decode-only [goal <= 1.6x: {verdict(one / decode <= 1.6)}]; "
          f"peak RSS {one_rss / 1e6:.0f} MB ({quarter_rss / 1e6:.0f} MB for a quarter of the "
          f"images)")
    print(f"  neurodata hdf5, 2 workers: {two:.2f} s, {IMAGES / two:,.0f} images/s, "
          f"{one / two:.2f}x one worker [goal >= 1.8x: {verdict(one / two >= 1.8)}]")
    print(f"  (medians of {ROUNDS} interleaved rounds: decode "
          f"{', '.join(f'{d[0]:.2f}' for d in decodes)} s; 1 worker "
          f"{', '.join(f'{o[0]:.2f}' for o in ones)} s; 2 workers "
          f"{', '.join(f'{t[0]:.2f}' for t in twos)} s)")
    print(f"  neurodata npz, 1 worker: {npz_s:.2f} s, {IMAGES / npz_s:,.0f} images/s; "
          f"peak RSS {npz_rss / 1e6:.0f} MB")
    print(f"  reference-style pipeline: {REFERENCE_IMAGES / ref:,.1f} images/s -> "
          f"{ref_total:.1f} s for {IMAGES:,} (scaled from {REFERENCE_IMAGES:,}); ours is "
          f"{ref_total / one:.1f}x faster [goal >= 5x: {verdict(ref_total / one >= 5)}]; "
          f"peak RSS {ref_rss / 1e6:.0f} MB")
    ratio = h5_bytes / npz_bytes
    print(f"  bytes per sample: hdf5 {h5_bytes / samples:,.0f}, released npz "
          f"{npz_bytes / samples:,.0f} ({samples:,} samples): {ratio:.1%} "
          f"[goal <= 40%: {verdict(ratio <= 0.4)}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
