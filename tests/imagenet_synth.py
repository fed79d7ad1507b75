"""Small ImageNet-style trees for the ES-ImageNet tests: real photographs (scikit-image ships
them), synthetic images, every Pillow mode the issue names, and broken files."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
          "camera.png", "retina.jpg", "hubble_deep_field.jpg")


def photo(name: str) -> Image.Image:
    """A real photograph shipped by scikit-image, as Pillow opens it."""
    import skimage

    return Image.open(Path(skimage.__file__).parent / "data" / name)


def synthetic(seed: int, size: tuple[int, int] = (120, 90)) -> Image.Image:
    """Blocks and gradients: plenty of edges, so plenty of events."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.zeros((h, w, 3), dtype=np.uint8)
    for c in range(3):
        rgb[..., c] = (xx * rng.integers(1, 5) + yy * rng.integers(1, 5)) % 256
    for _ in range(12):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        rgb[y0:y0 + rng.integers(5, 40), x0:x0 + rng.integers(5, 40)] = rng.integers(0, 256, 3)
    return Image.fromarray(rgb)


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def save(image: Image.Image, path: Path, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt or "JPEG", **({"quality": 90} if (fmt or "JPEG") == "JPEG" else {}))
    return path


def odd_files(folder: Path) -> dict[str, str]:
    """Every kind of input the issue names, in ``folder``; returns name -> what it is."""
    base = synthetic(7, (160, 120))
    folder.mkdir(parents=True, exist_ok=True)
    save(base.convert("L"), folder / "grey.JPEG")
    save(base.convert("P", palette=Image.Palette.ADAPTIVE), folder / "palette.png", "PNG")
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.fromarray((np.arange(160 * 120).reshape(120, 160) % 256).astype(np.uint8)))
    save(rgba, folder / "rgba.png", "PNG")
    save(base.convert("CMYK"), folder / "cmyk.JPEG")
    save(base, folder / "png_inside.JPEG", "PNG")
    save(synthetic(8, (5, 3)), folder / "tiny.JPEG", "PNG")
    save(Image.new("RGB", (200, 150), (90, 120, 200)), folder / "flat.JPEG")
    whole = jpeg_bytes(synthetic(9, (200, 150)))
    (folder / "truncated.JPEG").write_bytes(whole[: len(whole) // 2])
    (folder / "empty.JPEG").write_bytes(b"")
    return {"grey.JPEG": "converted", "palette.png": "converted", "rgba.png": "converted",
            "cmyk.JPEG": "converted", "png_inside.JPEG": "converted", "tiny.JPEG": "few",
            "flat.JPEG": "few", "truncated.JPEG": "unreadable", "empty.JPEG": "unreadable"}


def make_tree(root: Path, classes: int = 3, per_class: int = 3, split: str = "train",
              photos: bool = True) -> list[str]:
    """``root/split/<wnid>/*.JPEG``; returns the relative paths, sorted."""
    names = []
    k = 0
    for c in range(classes):
        wnid = f"n{1000 + 7 * c:08d}"
        for i in range(per_class):
            if photos and k < len(PHOTOS):
                image = photo(PHOTOS[k]).convert("RGB")
            else:
                image = synthetic(100 + k, (100 + 13 * i, 80 + 7 * c))
            path = root / split / wnid / f"{wnid}_{i:04d}.JPEG"
            save(image, path)
            names.append(f"{split}/{wnid}/{path.name}")
            k += 1
    return sorted(names)


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` x ``height`` grey pixels (its data holds a few):
    what Pillow's pixel limit is checked against, without a large file."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b""))


def ilsvrc(root: Path, tars: bool = False) -> Path:
    """Two ILSVRC2012 classes and a flat val labelled by the shipped ground truth, extracted
    into folders or packed as the official tars."""
    files = {f"train/{wnid}/{wnid}_{i}.JPEG": jpeg_bytes(synthetic(7 * k + i))
             for k, wnid in enumerate(("n01440764", "n01443537")) for i in range(2)}
    files.update({f"val/ILSVRC2012_val_{i:08d}.JPEG": jpeg_bytes(synthetic(40 + i))
                  for i in (1, 2)})
    root.mkdir(parents=True)
    if not tars:
        for rel, data in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        return root
    classes: dict[str, dict[str, bytes]] = {}
    for rel, data in files.items():
        if rel.startswith("train/"):
            _, wnid, name = rel.split("/")
            classes.setdefault(wnid, {})[name] = data
    (root / "ILSVRC2012_img_train.tar").write_bytes(
        _tar({f"{wnid}.tar": _tar(members) for wnid, members in classes.items()}))
    (root / "ILSVRC2012_img_val.tar").write_bytes(
        _tar({rel[4:]: data for rel, data in files.items() if rel.startswith("val/")}))
    return root


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
