"""The released ES-ImageNet sample file: an npz holding ``pos`` and ``neg``.

Each is uint8 [N, 3] of (row, col, t), as the authors' converter saves with
``np.savez_compressed``. We write the same zip, but with fixed member timestamps and modes, so the
bytes depend only on the events (numpy stamps members with the current time).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ...errors import ConfigError, RunError
from ...formats import Store, Writer, to_structured, write_bytes
from ..base import SplitFile

KEYS = ("pos", "neg")
_EPOCH = (1980, 1, 1, 0, 0, 0)


def encode(pos: np.ndarray, neg: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in zip(KEYS, (pos, neg), strict=True):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array, dtype=np.uint8),
                                      allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def npz_name(split: str, rel: str, label: int) -> str:
    """The released file name, relative to the split folder: ``class<L>/<stem>.npz`` (train)
    or ``<stem>.npz`` (val)."""
    stem = PurePosixPath(rel).stem
    return f"class{label}/{stem}.npz" if split == "train" else f"{stem}.npz"


def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as npz:
        return npz["pos"], npz["neg"]


class NpzWriter(Writer):
    """The released layout: one ``<split>/[class<L>/]<stem>.npz`` per image, and the label
    table ``<split>label.txt``: ``<name> <label> <H> <W>`` a line, in sample order."""

    name = "npz"

    def check(self, cfg: Any, shards: list[Any]) -> None:
        """Names the layout cannot carry are refused before any work (exit 2): its label table
        separates fields by white space, one line per file."""
        seen: dict[str, str] = {}
        for shard in shards:
            for rel, label in zip(shard.payload.sources, shard.payload.labels, strict=True):
                name = npz_name(shard.split, rel, label)
                if any(c.isspace() for c in name):
                    raise ConfigError(f"input {rel!r} would be written as {name!r}, and the npz "
                                      f"layout's {shard.split}label.txt cannot hold a name with "
                                      "white space; rename it, or use --format hdf5")
                if name in seen:
                    raise RunError(f"{seen[name]} and {rel} would both be written as {name} in "
                                   "the npz layout; rename one, or use --format hdf5")
                seen[name] = rel

    def write(self, stage: Path, ds: Any, cfg: Any, shard: Any,
              blocks: Iterable[Any]) -> list[dict[str, Any]]:
        files = []
        for block in blocks:
            if not len(block):
                continue
            ev = block.events
            positive = ev["p"] == 1
            pos = np.stack([ev["y"][positive], ev["x"][positive], ev["t"][positive]], axis=1)
            neg = np.stack([ev["y"][~positive], ev["x"][~positive], ev["t"][~positive]], axis=1)
            name = npz_name(shard.split, str(block.columns["source"][0]),
                            int(block.columns["label"][0]))
            files.append(write_bytes(stage, f"{shard.split}/{name}", encode(pos, neg),
                                     shard.split, 1))
        return files

    def table(self, split: str, block: Any) -> list[Any]:
        c = block.columns
        return [f"{npz_name(split, str(rel), int(label))} {label} {h} {w}"
                for rel, label, h, w in zip(c.get("source", ()), c.get("label", ()),
                                            c.get("height", ()), c.get("width", ()), strict=True)]

    def split_files(self, split: str, rows: list[Any]) -> list[SplitFile]:
        return [SplitFile(f"{split}label.txt", "".join(f"{line}\n" for line in rows))]

    def open(self, folder: Path, split: str, files: list[dict[str, Any]]) -> Store:
        return NpzStore(folder, split)


def label_rows(folder: Path, split: str) -> list[list[str]]:
    """The split's label table, ``<name> <label> <H> <W>`` a line, as lists of fields."""
    return [line.split() for line in
            (folder / f"{split}label.txt").read_text().splitlines() if line.strip()]


class NpzStore(Store):
    """The released layout, indexed by ``<split>label.txt``; events in our order (by t, and
    within a t the positive events first)."""

    def __init__(self, folder: Path, split: str):
        rows = label_rows(folder, split)
        self.paths = [folder / split / r[0] for r in rows]
        self.labels = [int(r[1]) for r in rows]
        self.sizes = [(int(r[2]), int(r[3])) for r in rows]

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, i: int) -> dict[str, Any]:
        i = self.check_index(i)
        pos, neg = read(self.paths[i])
        both = np.concatenate([pos, neg])
        p = np.concatenate([np.ones(len(pos), np.int8), np.zeros(len(neg), np.int8)])
        order = np.argsort(both[:, 2], kind="stable")
        both, p = both[order], p[order]
        h, w = self.sizes[i]
        # The layout keeps no input path nor index: the columns it has, as the features say.
        return {"events": to_structured(both[:, 1], both[:, 0], both[:, 2], p),
                "label": np.int16(self.labels[i]), "height": np.uint8(h), "width": np.uint8(w)}


NPZ = NpzWriter()


def spikingjelly_root(folder: Path, manifest: dict[str, Any], root: Path) -> str:
    """``root/events_np/{train,test}/class<L>/<file>.npz``: links to this folder's npz files,
    the raw layout SpikingJelly's ``ESImageNet`` builds from the release. With it in place,
    ``ESImageNet(root=root)`` neither downloads nor writes into the finished folder (its frames
    go under ``root``). Val becomes SpikingJelly's ``test``, by the label table."""
    folder, root = folder.absolute(), root.absolute()
    if root == folder or folder in root.parents:
        raise ConfigError(f"--to {root} is inside {folder}: anything written there would fail "
                          "its verify; choose a folder outside it")
    splits = {k: v for k, v in manifest["splits"].items() if v.get("format") == "npz"}
    if not splits:
        raise ConfigError(f"{folder} holds no npz splits; SpikingJelly reads the released "
                          "layout: make it with --format npz")
    events = root / "events_np"
    if events.exists():
        raise RunError(f"{events} exists already; remove it, or choose another --to")
    made = 0
    for split in sorted(splits):
        for row in label_rows(folder, split):
            name, label = row[0], int(row[1])
            link = events / ("train" if split == "train" else "test") / f"class{label}" / \
                PurePosixPath(name).name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(folder / split / name)
            made += 1
    return f"{made} links in {events} ({', '.join(sorted(splits))})"
