"""ImageNet-style inputs: sorted listings, labels, and decoding with Pillow.

``ROOT/train/<wnid>/*`` is labelled by the index of ``<wnid>`` among the sorted wnid folders.
``ROOT/val`` is either ``val/<wnid>/*`` (labelled the same way) or a flat folder whose labels come
from a table of ``<file name> <label>`` lines (by default the ILSVRC2012 ground truth that ships
with the package). Every listing is sorted, and hidden files (``.DS_Store``) are not inputs.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, RunError

SPLITS = ("train", "val")
DEFAULT_VAL_LABELS = "ilsvrc2012_val_labels.txt"
MAX_LABEL = 2**15 - 1  # labels are stored as int16
MAX_INPUT_BYTES = 64 * 2**20  # an image file larger than this is skipped, never read whole


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
    if not root.is_dir():
        raise ConfigError(f"--imagenet-root {root} is not a folder")
    if not folder.is_dir():  # a root that holds nothing usable: a runtime failure, as elsewhere
        raise RunError(f"--imagenet-root {root} has no {split}/ folder")
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
    """``<file name> <label>`` lines; a malformed line is an error naming the file and line.

    Labels are ASCII digits only (``int`` would take '１' or reject '²' with a traceback), and a
    UTF-8 byte-order mark is not part of the first name.
    """
    labels: dict[str, int] = {}
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read --val-labels {path}: {exc}") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if (len(parts) != 2 or not re.fullmatch(r"[0-9]+", parts[1])
                or int(parts[1]) > MAX_LABEL):
            raise ConfigError(f"--val-labels {path} line {number}: expected '<file name> "
                              f"<label 0..{MAX_LABEL}>', got {line.strip()!r}")
        if parts[0] in labels:
            raise ConfigError(f"--val-labels {path} line {number}: {parts[0]} is listed twice")
        labels[parts[0]] = int(parts[1])
    return labels


def list_inputs(src: Source) -> list[tuple[str, int]]:
    """Every entry of the split as ``(path relative to the root, label)``, sorted by path.

    Every entry is listed, whatever it is: one that is not a readable image file (a folder, a
    FIFO, a dangling link) is skipped by the conversion with its reason, never left out unseen.
    """
    root = Path(src.root)
    folder = root / src.split
    if src.layout == "table":
        labels = read_table(Path(src.table))
        items = []
        for path in _entries(folder):
            if path.name not in labels:
                if path.is_dir():
                    raise RunError(f"{folder} mixes folders ({path.name}/) and files; with a "
                                   "labels table it must be flat")
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
        items += [(f"{src.split}/{wnid_dir.name}/{path.name}", label)
                  for path in _entries(wnid_dir)]
    return items


def _entries(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")),
                  key=lambda p: p.name)


class Unusable(Exception):
    """An input that is not an image file to decode; its message is the skip reason."""


def read_input(path: Path, cap: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular file of at most ``cap`` bytes; anything else is ``Unusable``.

    Opened without blocking and checked before it is read, so a FIFO, a device (a link to
    /dev/zero) or a folder named like an image is never read from.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        if os.path.islink(path):
            raise Unusable("dangling link") from None
        raise
    except IsADirectoryError:
        raise Unusable("a directory") from None
    except PermissionError:
        raise Unusable("unreadable: permission denied") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise Unusable("a directory" if stat.S_ISDIR(st.st_mode)
                       else "not a regular file (FIFO, socket or device)")
    if st.st_size > cap:
        os.close(fd)
        raise Unusable(f"too large: {st.st_size} bytes > {cap}")
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(cap + 1)
    if len(data) > cap:
        raise Unusable(f"too large: more than {cap} bytes")
    return data


def open_rgb(path: Path) -> Any:
    """The decoded Pillow image, as ``Image.open(path).convert('RGB')``; no EXIF rotation.

    Pillow's decompression-bomb limit stays on: an image past it raises, and is skipped.
    """
    from PIL import Image

    # One read of the whole file: Pillow reads a file in dozens of small pieces.
    data = io.BytesIO(read_input(path))
    with warnings.catch_warnings():
        # Palette transparency and large-image notices are not problems for a conversion.
        warnings.simplefilter("ignore")
        with Image.open(data) as image:
            image.load()  # leaving the block then only closes the file; the pixels stay
            return image if image.mode == "RGB" else image.convert("RGB")


def decode(path: Path) -> np.ndarray:
    """RGB uint8 [H, W, 3], as ``np.asarray(Image.open(path).convert('RGB'))``."""
    return np.asarray(open_rgb(path))
