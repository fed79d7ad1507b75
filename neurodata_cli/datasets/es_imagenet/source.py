"""ImageNet as people keep it: sorted listings, labels, and decoding with Pillow.

Three layouts of ``--imagenet-root``, found automatically, give the same inputs:

- folders: ``ROOT/train/<wnid>/*`` and ``ROOT/val/`` (``val/<wnid>/*`` or flat);
- the Kaggle copy: ``ROOT/ILSVRC/Data/CLS-LOC/{train,val}/`` and ``ROOT/LOC_val_solution.csv``;
- the official tars ``ROOT/ILSVRC2012_img_{train,val}.tar``, read in place (``archives.py``).

Each input is named by its path as extracted (``train/<wnid>/<file>``, ``val/<file>``). Class
folders that are ILSVRC2012 wnids take their index in the released class map; a flat val is
labelled by a table (by default the ILSVRC2012 ground truth shipped with the package, or the
Kaggle CSV). Every listing is sorted, and hidden files (``.DS_Store``) are not inputs.
"""

from __future__ import annotations

import csv
import errno
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
from ...storage import (
    is_url,
    join,
    name_of,
    url_entries,
    url_find,
    url_info,
    url_kind,
    url_read,
)

SPLITS = ("train", "val")
DEFAULT_VAL_LABELS = "ilsvrc2012_val_labels.txt"
KAGGLE = Path("ILSVRC") / "Data" / "CLS-LOC"
KAGGLE_VAL = "LOC_val_solution.csv"
ILSVRC_CLASSES = "ilsvrc2012_classes.txt"  # the released trainlabel_dir.txt
MAX_LABEL = 2**15 - 1  # labels are stored as int16
MAX_INPUT_BYTES = 64 * 2**20  # an image file larger than this is skipped, never read whole
# The official archives of each split, in the ImageNet root (indexed by archives.py).
OFFICIAL = {"train": "ILSVRC2012_img_train.tar", "val": "ILSVRC2012_img_val.tar"}
IN_SUBFOLDER = "in a subfolder of the class folder (only files directly in a class folder are " \
    "inputs)"


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

    root: str  # absolute, or a URL: what input paths are relative to
    split: str
    layout: str  # how it is labelled: "folders" (class folders) or "table" (a flat val)
    classes: tuple[tuple[str, int], ...] = ()  # folder name -> label, for layout "folders"
    scheme: str = ""  # "ilsvrc2012" (the released map) or "sorted folders"
    table: str = ""  # the labels table, for layout "table"
    table_sha256: str = ""
    table_kind: str = "text"  # "text" (<file> <label> lines) or "kaggle" (LOC_val_solution.csv)
    found: str = "folders"  # what was read: "folders", "kaggle" or "official tars"
    archive: str = ""  # the official tar read in place

    def describe(self) -> dict[str, Any]:
        """What the manifest records: how the split was read and labelled, by names and
        digests only. The manifest is checksummed, and must be the same on every machine:
        where the files are (``origin``) goes into the run record."""
        out: dict[str, Any] = {"split": self.split, "read_from": self.found,
                               "layout": self.layout}
        if self.archive:
            out["archive"] = name_of(self.archive)
        if self.layout == "table":
            out.update(labels=name_of(self.table), labels_sha256=self.table_sha256)
        else:
            out.update(labels=self.scheme, label_map=dict(self.classes))
        return out

    def origin(self) -> dict[str, Any]:
        """Where the split was read from on this machine: absolute paths."""
        out = {"root": self.root}
        if self.archive:
            out["archive"] = self.archive
        if self.table:
            out["labels"] = self.table
        return out


def _is_dir(path: Path | str) -> bool:
    return url_kind(path) == "directory" if is_url(path) else Path(path).is_dir()


def _is_file(path: Path | str) -> bool:
    return url_kind(path) == "file" if is_url(path) else Path(path).is_file()


def _names(folder: Path | str) -> list[tuple[str, bool]]:
    """(name, is a folder) of the entries of a local folder or a store's, sorted, not hidden."""
    if is_url(folder):
        return [(name, kind == "directory") for name, kind in sorted(url_entries(folder).items())
                if not name.startswith(".")]
    return [(p.name, p.is_dir()) for p in _entries(Path(folder))]


def _class_folders(folder: Path | str) -> list[str]:
    return [name for name, is_dir in _names(folder) if is_dir]


def label_map(root: Path | str, split: str) -> tuple[str, tuple[tuple[str, int], ...]]:
    """How the class folders of ``root/split`` are labelled: (scheme, folder -> label)."""
    other = "val" if split == "train" else "train"
    theirs = _class_folders(join(root, other)) if _is_dir(join(root, other)) else []
    return labels_of(_class_folders(join(root, split)), theirs, join(root, split),
                     join(root, other))


def labels_of(present: list[str], theirs: list[str], here: Any, there: Any
              ) -> tuple[str, tuple[tuple[str, int], ...]]:
    """(scheme, class -> label) of the sorted class names ``present``; ``theirs`` are the other
    split's, which must be the same set where the names are not ILSVRC wnids."""
    known = ilsvrc_classes()
    wnids = [n for n in present if n in known]
    if wnids and len(wnids) == len(present):
        return "ilsvrc2012", tuple((n, known[n]) for n in present)
    if wnids:
        others = [n for n in present if n not in known]
        raise ConfigError(f"{here} mixes ILSVRC2012 wnid folders ({wnids[0]}, ...) with "
                          f"other class folders ({', '.join(others[:3])}); their labels would "
                          "collide. Use one kind only")
    if theirs and set(theirs) != set(present):
        only_here = sorted(set(present) - set(theirs))
        only_there = sorted(set(theirs) - set(present))
        raise ConfigError(
            f"{here} and {there} hold different class folders, so their sorted labels would "
            f"not match (only in {name_of(here)}: {', '.join(only_here[:5]) or '-'}; "
            f"only in {name_of(there)}: {', '.join(only_there[:5]) or '-'})")
    return "sorted folders", tuple((n, i) for i, n in enumerate(present))


def locate(root: Path | str, split: str, val_labels: Path | str | None = None) -> Source:
    """Find the split in any of the three layouts and decide how it is labelled; nothing is
    listed yet (an archive is indexed later, in the run's stage). ``root`` may be a URL."""
    if not is_url(root):
        root = Path(root).expanduser().absolute()
    if not _is_dir(root):
        raise ConfigError(f"--imagenet-root {root} is not a folder")
    if split == "train" and val_labels is not None:
        raise ConfigError("--val-labels goes with --split val")
    kaggle = join(root, KAGGLE.as_posix())
    if _is_dir(join(root, split)):
        base, found = root, "folders"
    elif _is_dir(join(kaggle, split)):
        base, found = kaggle, "kaggle"
    elif _is_file(join(root, OFFICIAL[split])):
        archive = join(root, OFFICIAL[split])
        if split == "train":  # labelled once its classes are known, from the index
            return Source(str(root), split, "folders", found="official tars",
                          archive=str(archive))
        return _table_source(root, split, val_labels, "official tars", str(archive))
    else:  # a root that holds nothing usable: a runtime failure, as elsewhere
        raise RunError(f"--imagenet-root {root} has no {split}/ folder, no Kaggle "
                       f"{KAGGLE}/{split}/ and no {OFFICIAL[split]}")
    folder = join(base, split)
    has_dirs = any(is_dir for _, is_dir in _names(folder))
    if split == "train" or (val_labels is None and has_dirs):
        scheme, classes = label_map(base, split)
        if len(classes) > MAX_LABEL + 1:
            raise RunError(f"{folder} has {len(classes)} class folders; at most "
                           f"{MAX_LABEL + 1} fit the int16 labels")
        return Source(str(base), split, "folders", classes, scheme, found=found)
    if val_labels is None and found == "folders" and _is_dir(join(base, "train")):
        # The shipped table labels by the ILSVRC2012 class index; class folders that are not
        # wnids are labelled by their sorted order: the two splits would not share labels.
        scheme, classes = label_map(base, "train")
        if scheme != "ilsvrc2012" and classes:
            raise ConfigError(
                f"{join(base, 'train')} labels its class folders by sorted order "
                f"({', '.join(n for n, _ in classes[:3])}, ...: not ILSVRC2012 wnids), but the "
                f"flat {folder} would take the ILSVRC2012 ground truth's labels; pass "
                "--val-labels with labels in train's order")
    return _table_source(base, split, val_labels, found, "", root)


def _table_source(base: Path | str, split: str, val_labels: Path | str | None, found: str,
                  archive: str, root: Path | str | None = None) -> Source:
    """A flat val labelled by --val-labels, the Kaggle CSV, or the shipped ground truth."""
    kind = "text"
    table: Path | str
    if val_labels is not None:
        table = val_labels if is_url(val_labels) else Path(val_labels)
    elif found == "kaggle":
        table, kind = join(root or base, KAGGLE_VAL), "kaggle"
    else:
        table = Path(__file__).with_name(DEFAULT_VAL_LABELS)
    if not _is_file(table):
        what = "--val-labels" if val_labels is not None else "the val labels"
        raise ConfigError(f"{what} {table} is not a file")
    digest = hashlib.sha256(_read_bytes(table)).hexdigest()
    where = table if is_url(table) else str(Path(table).absolute())
    return Source(str(base), split, "table", table=str(where), table_sha256=digest,
                  table_kind=kind, found=found, archive=str(archive))


def _read_bytes(path: Path | str) -> bytes:
    return url_read(str(path)) if is_url(path) else Path(path).read_bytes()


def read_kaggle(path: Path | str) -> dict[str, int]:
    """``LOC_val_solution.csv``: each image's label is the ILSVRC2012 index of the first wnid
    of its ``PredictionString``; the image is ``<ImageId>.JPEG``."""
    known = ilsvrc_classes()
    labels: dict[str, int] = {}
    line_of: dict[str, int] = {}
    try:
        if is_url(path):
            rows = list(csv.reader(io.StringIO(_read_bytes(path).decode("utf-8-sig"),
                                               newline="")))
        else:
            with open(path, encoding="utf-8-sig", newline="") as handle:
                rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not rows or rows[0][:2] != ["ImageId", "PredictionString"]:
        raise ConfigError(f"{path} line 1: expected the header 'ImageId,PredictionString'")
    for number, row in enumerate(rows[1:], 2):
        wnid = row[1].split()[0] if len(row) == 2 and row[1].split() else ""
        if wnid not in known:
            raise ConfigError(f"{path} line {number}: expected '<ImageId>,<wnid> ...' with an "
                              f"ILSVRC2012 wnid, got {','.join(row)[:80]!r}")
        if row[0] in line_of:  # which of the two labels is meant cannot be known
            raise ConfigError(f"{path} lines {line_of[row[0]]} and {number}: ImageId {row[0]} "
                              "is listed twice")
        line_of[row[0]] = number
        labels[f"{row[0]}.JPEG"] = known[wnid]
    return labels


def read_table(path: Path | str, kind: str = "text") -> dict[str, int]:
    """``<file name> <label>`` lines; a malformed line is an error naming the file and line.

    Labels are ASCII digits only (``int`` would take '１' or reject '²' with a traceback), and a
    UTF-8 byte-order mark is not part of the first name.
    """
    if kind == "kaggle":
        return read_kaggle(path)
    labels: dict[str, int] = {}
    try:
        text = (_read_bytes(path).decode("utf-8-sig") if is_url(path)
                else Path(path).read_text(encoding="utf-8-sig"))
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


def list_inputs(src: Source, index: Any = None) -> list[tuple[str, int, int, int]]:
    """Every entry of the split as ``(path as extracted, label, row, size)``, sorted as
    the folders' listing; for an archive's member, ``row`` is its row in the index's table
    (``archives.scan``: where it is, its size and kind) and ``size`` its size; -1 and -1 for
    files.

    Every entry is listed, whatever it is: one that is not a readable image file (a folder, a
    FIFO, a link) is skipped by the conversion with its reason, never left out unseen.
    ``index`` is an archive's (names, table) from ``archives.scan``.
    """
    if src.archive:
        names, table = index
        sizes = table[:, 2].tolist()  # two ints an input, as files have: the plan stays small
        if src.layout == "table":
            labels = read_table(_table(src), src.table_kind)
            items = []
            for row, (rel, size) in enumerate(zip(names, sizes, strict=True)):
                name = rel.split("/", 1)[1]
                if name not in labels:
                    raise RunError(f"{src.archive}: member {name!r} has no label in {src.table}")
                items.append((rel, labels[name], row, size))
            return items
        label = dict(src.classes)
        return [(rel, label[rel.split("/")[1]], row, size)
                for row, (rel, size) in enumerate(zip(names, sizes, strict=True))]
    if is_url(src.root):
        return _list_url(src)
    root = Path(src.root)
    folder = root / src.split
    if src.layout == "table":
        labels = read_table(_table(src), src.table_kind)
        items = []
        for path in _entries(folder):
            if path.name not in labels:
                if path.is_dir():
                    raise RunError(f"{folder} mixes folders ({path.name}/) and files; with a "
                                   "labels table it must be flat")
                raise RunError(f"{path} has no label in {src.table}")
            items.append((f"{src.split}/{path.name}", labels[path.name], -1, -1))
        return items
    index_of = dict(src.classes)
    items = []
    for wnid_dir in _entries(folder):
        if not wnid_dir.is_dir():
            raise RunError(f"{wnid_dir} is a file where {folder} holds class folders")
        class_label = index_of[wnid_dir.name]
        items += [(f"{src.split}/{wnid_dir.name}/{rel}", class_label, -1, -1)
                  for rel in _class_listing(wnid_dir)]
    return items


def _table(src: Source) -> Path | str:
    return src.table if is_url(src.table) else Path(src.table)


def _list_url(src: Source) -> list[tuple[str, int, int, int]]:
    """``list_inputs`` of a folder in a store, from one recursive listing: folders are the
    prefixes of its objects' keys, listed as the local listing lists them (and skipped alike)."""
    folder = join(src.root, src.split)
    tops: dict[str, set[tuple[str, ...]]] = {}  # entry -> what is below it
    for rel in url_find(str(folder)):
        parts = tuple(rel.split("/"))
        if any(p.startswith(".") for p in parts):  # hidden, as locally: not inputs
            continue
        below = tops.setdefault(parts[0], set())
        below.update(parts[1:k] for k in range(2, len(parts) + 1))
    items = []
    if src.layout == "table":
        labels = read_table(_table(src), src.table_kind)
        for name in sorted(tops):
            if name not in labels:
                if tops[name]:
                    raise RunError(f"{folder} mixes folders ({name}/) and files; with a "
                                   "labels table it must be flat")
                raise RunError(f"{join(folder, name)} has no label in {src.table}")
            items.append((f"{src.split}/{name}", labels[name], -1, -1))
        return items
    index_of = dict(src.classes)
    for name in sorted(tops):
        if not tops[name]:
            raise RunError(f"{join(folder, name)} is a file where {folder} holds class folders")
        items += [(f"{src.split}/{name}/{'/'.join(parts)}", index_of[name], -1, -1)
                  for parts in sorted(tops[name])]
    return items


def _entries(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")),
                  key=lambda p: p.name)


def _class_listing(folder: Path) -> list[str]:
    """Every entry of a class folder, and everything in its subfolders, as relative paths
    sorted by their parts. Only the folder's own files can be images; what is below is skipped
    as ``IN_SUBFOLDER``, as a class tar's members in a subfolder are. Hidden names are not
    inputs, and a link to a folder is not followed."""
    found: list[tuple[str, ...]] = []
    for path in _entries(folder):
        found.append((path.name,))
        if path.is_dir() and not path.is_symlink():
            for top, dirs, files in os.walk(path):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                base = Path(top).relative_to(folder).parts
                found += [(*base, name) for name in (*dirs, *files) if not name.startswith(".")]
    return ["/".join(parts) for parts in sorted(found)]


class Unusable(Exception):
    """An input that is not an image file to decode; its message is the skip reason."""


def read_input(path: Path, cap: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular file of at most ``cap`` bytes; anything else is ``Unusable``.

    Opened without blocking and checked before it is read, so a FIFO, a device or a folder
    named like an image is never read from. A symbolic link is not followed: only regular
    files are images, as only regular members of an archive are (the two layouts agree).
    """
    if os.path.islink(path):
        raise Unusable("a symbolic link")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:
        raise Unusable("a directory") from None
    except PermissionError:
        raise Unusable("unreadable: permission denied") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # made a link since the check above
            raise Unusable("a symbolic link") from None
        # Gone since it was listed, or an I/O error: not a property of the image, so the run
        # stops (a rerun sees the inputs changed) rather than record it as unreadable.
        raise RunError(f"cannot read {path}: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise Unusable("a directory" if stat.S_ISDIR(st.st_mode)
                       else "not a regular file (FIFO, socket or device)")
    if st.st_size > cap:
        os.close(fd)
        raise Unusable(f"too large: {st.st_size} bytes > {cap}")
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(st.st_size + 1)  # one byte more: a file that grew since is seen
        except OSError as exc:
            raise RunError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > cap:
        raise Unusable(f"too large: more than {cap} bytes")
    return data


def read_url_input(url: str, cap: int = MAX_INPUT_BYTES) -> bytes:
    """``read_input`` of an object in a store, by one ranged read of at most ``cap`` + 1 bytes;
    skipped for the same reasons, in the same words."""
    try:
        data = url_read(url, cap + 1)
    except RunError:
        if url_kind(url) == "directory":  # a prefix with objects below it: a folder
            raise Unusable("a directory") from None
        raise
    if len(data) > cap:
        raise Unusable(f"too large: {url_info(url).get('size')} bytes > {cap}")
    return data


def open_rgb(path: Path | str) -> Any:
    """The decoded Pillow image, as ``Image.open(path).convert('RGB')``; no EXIF rotation."""
    # One read of the whole file: Pillow reads a file in dozens of small pieces.
    return decode_bytes(read_url_input(path) if is_url(path) else read_input(Path(path)))


def decode_bytes(blob: bytes) -> Any:
    """An image file's bytes decoded as ``open_rgb`` does.

    An image of more pixels than Pillow's limit (``Image.MAX_IMAGE_PIXELS``) is ``Unusable``,
    told from its header before anything is decoded: Pillow itself refuses only past twice the
    limit, and between the two only warns, then decodes gigabytes.
    """
    from PIL import Image

    data = io.BytesIO(blob)
    with warnings.catch_warnings():
        # Palette transparency notices are not problems for a conversion.
        warnings.simplefilter("ignore")
        limit = Image.MAX_IMAGE_PIXELS
        try:
            opened = Image.open(data)
        except Image.DecompressionBombError:  # past twice the limit
            raise Unusable(f"too many pixels: more than twice Pillow's limit of {limit}"
                           ) from None
        with opened as image:
            if limit and image.width * image.height > limit:
                raise Unusable(f"too many pixels: {image.width}x{image.height} > Pillow's "
                               f"limit of {limit}")
            image.load()  # leaving the block then only closes the file; the pixels stay
            return image if image.mode == "RGB" else image.convert("RGB")


def decode(path: Path) -> np.ndarray:
    """RGB uint8 [H, W, 3], as ``np.asarray(Image.open(path).convert('RGB'))``."""
    return np.asarray(open_rgb(path))
