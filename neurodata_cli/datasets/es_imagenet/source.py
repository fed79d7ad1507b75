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
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, RunError

SPLITS = ("train", "val")
DEFAULT_VAL_LABELS = "ilsvrc2012_val_labels.txt"
ILSVRC_CLASSES = "ilsvrc2012_classes.txt"  # the released trainlabel_dir.txt
MAX_LABEL = 2**15 - 1  # labels are stored as int16
MAX_INPUT_BYTES = 64 * 2**20  # an image file larger than this is skipped, never read whole


@lru_cache(maxsize=1)
def ilsvrc_classes() -> dict[str, int]:
    """The released class map: the 1000 ILSVRC2012 wnids, sorted, to 0..999."""
    text = Path(__file__).with_name(ILSVRC_CLASSES).read_text(encoding="ascii")
    return {wnid: int(label) for wnid, label in (line.split() for line in text.splitlines())}


@dataclass(frozen=True)
class Source:
    """Where one split's images are and how they are labelled.

    Class folders that are ILSVRC2012 wnids take their index in the released class map, whatever
    subset is present, so train and val of any subset share one label space (that of the
    shipped val table too). Other class folders are labelled by their sorted order, and then
    train and val must hold the same classes.
    """

    root: str  # absolute
    split: str
    layout: str  # "folders" or "table"
    classes: tuple[tuple[str, int], ...] = ()  # folder name -> label, for layout "folders"
    scheme: str = ""  # "ilsvrc2012" (the released map) or "sorted folders"
    table: str = ""  # the labels table, for layout "table"
    table_sha256: str = ""

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"root": self.root, "split": self.split, "layout": self.layout}
        if self.layout == "table":
            out.update(labels=self.table, labels_sha256=self.table_sha256)
        else:
            out.update(labels=self.scheme, label_map=dict(self.classes))
        return out


def _class_folders(folder: Path) -> list[str]:
    return [p.name for p in _entries(folder) if p.is_dir()]


def label_map(root: Path, split: str) -> tuple[str, tuple[tuple[str, int], ...]]:
    """How the class folders of ``root/split`` are labelled: (scheme, folder -> label)."""
    present = _class_folders(root / split)
    known = ilsvrc_classes()
    wnids = [n for n in present if n in known]
    if wnids and len(wnids) == len(present):
        return "ilsvrc2012", tuple((n, known[n]) for n in present)
    if wnids:
        others = [n for n in present if n not in known]
        raise ConfigError(f"{root / split} mixes ILSVRC2012 wnid folders ({wnids[0]}, ...) with "
                          f"other class folders ({', '.join(others[:3])}); their labels would "
                          "collide. Use one kind only")
    other = "val" if split == "train" else "train"
    theirs = _class_folders(root / other) if (root / other).is_dir() else []
    if theirs and set(theirs) != set(present):
        only_here = sorted(set(present) - set(theirs))
        only_there = sorted(set(theirs) - set(present))
        raise ConfigError(
            f"{root / split} and {root / other} hold different class folders, so their "
            f"sorted labels would not match (only in {split}: {', '.join(only_here[:5]) or '-'}; "
            f"only in {other}: {', '.join(only_there[:5]) or '-'})")
    return "sorted folders", tuple((n, i) for i, n in enumerate(present))


def locate(root: Path, split: str, val_labels: Path | None = None) -> Source:
    """Check the layout of ``root/split`` and decide how it is labelled; nothing is listed yet."""
    root = Path(root).expanduser().absolute()
    folder = root / split
    if not root.is_dir():
        raise ConfigError(f"--imagenet-root {root} is not a folder")
    if not folder.is_dir():  # a root that holds nothing usable: a runtime failure, as elsewhere
        raise RunError(f"--imagenet-root {root} has no {split}/ folder")
    if split == "train" and val_labels is not None:
        raise ConfigError("--val-labels goes with --split val")
    has_dirs = any(p.is_dir() for p in _entries(folder))
    if split == "train" or (val_labels is None and has_dirs):
        scheme, classes = label_map(root, split)
        if len(classes) > MAX_LABEL + 1:
            raise RunError(f"{folder} has {len(classes)} class folders; at most "
                           f"{MAX_LABEL + 1} fit the int16 labels")
        return Source(str(root), split, "folders", classes, scheme)
    table = Path(__file__).with_name(DEFAULT_VAL_LABELS) if val_labels is None else Path(val_labels)
    if not table.is_file():
        raise ConfigError(f"--val-labels {table} is not a file")
    digest = hashlib.sha256(table.read_bytes()).hexdigest()
    return Source(str(root), split, "table", table=str(table.absolute()), table_sha256=digest)


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
    index = dict(src.classes)
    items = []
    for wnid_dir in _entries(folder):
        if not wnid_dir.is_dir():
            raise RunError(f"{wnid_dir} is a file where {folder} holds class folders")
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
