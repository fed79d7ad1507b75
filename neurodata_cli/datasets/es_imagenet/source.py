"""ImageNet-style inputs: sorted listings, labels, and decoding with Pillow.

``ROOT/train/<wnid>/*`` is labelled by the index of ``<wnid>`` among the sorted wnid folders.
``ROOT/val`` is either ``val/<wnid>/*`` (labelled the same way) or a flat folder whose labels come
from a table of ``<file name> <label>`` lines (by default the ILSVRC2012 ground truth that ships
with the package). Every listing is sorted, and hidden files (``.DS_Store``) are not inputs.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, RunError

SPLITS = ("train", "val")
DEFAULT_VAL_LABELS = "ilsvrc2012_val_labels.txt"
MAX_LABEL = 2**15 - 1  # labels are stored as int16


@dataclass(frozen=True)
class Source:
    """Where one split's images are and how they are labelled."""

    root: str  # absolute
    split: str
    layout: str  # "folders" or "table"
    classes_from: str  # the folder whose sorted wnid subfolders give the labels ("" for table)
    table: str = ""  # the labels table, for layout "table"
    table_sha256: str = ""

    def describe(self) -> dict[str, str]:
        out = {"root": self.root, "split": self.split, "layout": self.layout}
        if self.layout == "table":
            out.update(labels=self.table, labels_sha256=self.table_sha256)
        else:
            out.update(classes_from=self.classes_from)
        return out


def locate(root: Path, split: str, val_labels: Path | None = None) -> Source:
    """Check the layout of ``root/split`` and decide how it is labelled; nothing is listed yet."""
    root = Path(root).expanduser().absolute()
    folder = root / split
    if not folder.is_dir():
        raise ConfigError(f"--imagenet-root {root} has no {split}/ folder")
    if split == "train":
        if val_labels is not None:
            raise ConfigError("--val-labels goes with --split val")
        return Source(str(root), split, "folders", "train")
    has_dirs = any(p.is_dir() for p in _entries(folder))
    if val_labels is None and has_dirs:
        classes_from = "train" if (root / "train").is_dir() else "val"
        return Source(str(root), split, "folders", classes_from)
    table = Path(__file__).with_name(DEFAULT_VAL_LABELS) if val_labels is None else Path(val_labels)
    if not table.is_file():
        raise ConfigError(f"--val-labels {table} is not a file")
    digest = hashlib.sha256(table.read_bytes()).hexdigest()
    return Source(str(root), split, "table", "", str(table.absolute()), digest)


def read_table(path: Path) -> dict[str, int]:
    """``<file name> <label>`` lines; a malformed line is an error naming the file and line."""
    labels: dict[str, int] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read --val-labels {path}: {exc}") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) > MAX_LABEL:
            raise ConfigError(f"--val-labels {path} line {number}: expected '<file name> "
                              f"<label 0..{MAX_LABEL}>', got {line.strip()!r}")
        if parts[0] in labels:
            raise ConfigError(f"--val-labels {path} line {number}: {parts[0]} is listed twice")
        labels[parts[0]] = int(parts[1])
    return labels


def list_inputs(src: Source) -> list[tuple[str, int]]:
    """Every input of the split as ``(path relative to the root, label)``, sorted by path."""
    root = Path(src.root)
    folder = root / src.split
    if src.layout == "table":
        labels = read_table(Path(src.table))
        items = []
        for path in _entries(folder):
            if path.is_dir():
                raise RunError(f"{folder} mixes folders ({path.name}/) and files; with a labels "
                               "table it must be flat")
            if path.name not in labels:
                raise RunError(f"{path} has no label in --val-labels {src.table}")
            items.append((f"{src.split}/{path.name}", labels[path.name]))
        return items
    classes = [p.name for p in _entries(root / src.classes_from) if p.is_dir()]
    if len(classes) > MAX_LABEL + 1:
        raise RunError(f"{root / src.classes_from} has {len(classes)} class folders; "
                       f"at most {MAX_LABEL + 1} fit the int16 labels")
    index = {name: i for i, name in enumerate(classes)}
    items = []
    for wnid_dir in _entries(folder):
        if not wnid_dir.is_dir():
            raise RunError(f"{wnid_dir} is a file where {folder} holds class folders")
        if wnid_dir.name not in index:
            raise RunError(f"class folder {wnid_dir} has no counterpart in "
                           f"{root / src.classes_from}, so it has no label")
        label = index[wnid_dir.name]
        for path in _entries(wnid_dir):
            if path.is_file():
                items.append((f"{src.split}/{wnid_dir.name}/{path.name}", label))
    return items


def _entries(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")),
                  key=lambda p: p.name)


def open_rgb(path: Path) -> Any:
    """The decoded Pillow image, as ``Image.open(path).convert('RGB')``; no EXIF rotation."""
    from PIL import Image

    # One read of the whole file: Pillow reads a file in dozens of small pieces.
    data = io.BytesIO(Path(path).read_bytes())
    with warnings.catch_warnings():
        # Palette transparency and large-image notices are not problems for a conversion.
        warnings.simplefilter("ignore")
        with Image.open(data) as image:
            image.load()  # leaving the block then only closes the file; the pixels stay
            return image if image.mode == "RGB" else image.convert("RGB")


def decode(path: Path) -> np.ndarray:
    """RGB uint8 [H, W, 3], as ``np.asarray(Image.open(path).convert('RGB'))``."""
    return np.asarray(open_rgb(path))
