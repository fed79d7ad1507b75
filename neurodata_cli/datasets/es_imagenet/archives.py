"""The official ILSVRC2012 tars, read in place: an index of members, and reads by offset.

``ILSVRC2012_img_train.tar`` holds one ``<wnid>.tar`` per class, each holding that class's
JPEGs; ``ILSVRC2012_img_val.tar`` holds the 50,000 val JPEGs, flat. Nothing is extracted: a
scan lists every member once (name, offset of its data in the outer file, size), the inner tars
included, and keeps that index in the run's stage; each shard then reads its own images by
offset. Each member gets the path it would have once extracted (``train/<wnid>/<file>`` or
``val/<file>``), so that every data file equals a run on the extracted folders.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ...errors import RunError
from ...progress import progress

OFFICIAL = {"train": "ILSVRC2012_img_train.tar", "val": "ILSVRC2012_img_val.tar"}
PUBLISHED_MD5 = {"train": "1d675b47d978889d74fa0da5fadfb00e",
                 "val": "29b22e2961454d5413ddabcf34fc5622"}
DIRECTORY, OTHER = -1, -2  # sizes that mark members which are not regular files
BLOCK = 512


class _Window:
    """A read-only file view of ``size`` bytes from ``start``: one inner tar of the outer."""

    def __init__(self, handle: Any, start: int, size: int):
        self.handle, self.start, self.size, self.pos = handle, start, size, 0

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n < 0 else min(n, self.size - self.pos)
        self.handle.seek(self.start + self.pos)
        data = self.handle.read(max(n, 0))
        self.pos += len(data)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = {0: pos, 1: self.pos + pos, 2: self.size + pos}[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos


def _members(archive: Path, fileobj: Any, size: int, where: str) -> list[tarfile.TarInfo]:
    """Every member of a tar of ``size`` bytes, checked: safe names, data inside the archive,
    and an end-of-archive marker (a tar cut at a member boundary otherwise reads as whole)."""
    try:
        with tarfile.open(fileobj=fileobj, mode="r:") as tf:
            members = []
            for info in tf:
                name = info.name
                if name.startswith("/") or ".." in PurePosixPath(name).parts:
                    raise RunError(f"{archive}: member {where}{name!r} points outside the "
                                   "archive; refusing it")
                if info.offset_data + (info.size if info.isreg() else 0) > size:
                    raise RunError(f"{archive} is truncated: it ends inside member "
                                   f"{where}{name}")
                members.append(info)
            end = tf.offset
    except tarfile.TarError as exc:
        raise RunError(f"{archive}: {where or 'the archive'} is not a readable tar ({exc})"
                       ) from None
    if size - end < 2 * BLOCK:
        last = f" after member {where}{members[-1].name}" if members else ""
        raise RunError(f"{archive} is truncated{last}: it has no end-of-archive marker")
    return members


def _kind(info: tarfile.TarInfo) -> int:
    return info.size if info.isreg() else DIRECTORY if info.isdir() else OTHER


def scan(archive: Path, split: str, cache: Path, quiet: bool = False
         ) -> tuple[list[str], np.ndarray]:
    """(paths as extracted, sorted as the folders' listing; [offset, size] of each), from the
    index in ``cache`` when one of this very archive is there, else by reading the archive."""
    st = archive.stat()
    stamp = {"archive": str(archive), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    names_file, table_file = cache / f"index-{split}.txt", cache / f"index-{split}.npy"
    stamp_file = cache / f"index-{split}.json"
    try:
        if json.loads(stamp_file.read_text()) == stamp:
            names = names_file.read_text(encoding="utf-8").split("\n")
            return ([] if names == [""] else names), np.load(table_file)
    except (OSError, ValueError):
        pass
    entries = _index(archive, split, st.st_size, quiet)
    entries.sort(key=lambda e: e[0])
    names = ["/".join((split, *key)) for key, _, _ in entries]
    table = np.array([[off, size] for _, off, size in entries], dtype=np.int64).reshape(-1, 2)
    cache.mkdir(parents=True, exist_ok=True)
    names_file.write_text("\n".join(names), encoding="utf-8")
    np.save(table_file, table)
    stamp_file.write_text(json.dumps(stamp))  # last: an index without it is scanned again
    return names, table


def _visible(name: str) -> bool:
    return not name.startswith(".")  # as the folders' listing: hidden files are not inputs


def _index(archive: Path, split: str, size: int, quiet: bool
           ) -> list[tuple[tuple[str, ...], int, int]]:
    """(sort key: the path parts below the split, data offset, size or kind) of each input."""
    bar = progress(size, "B", f"indexing {archive.name}", quiet, scale=False)
    found, shown = [], 0
    with open(archive, "rb") as handle:
        outer = _members(archive, handle, size, "")
        for info in outer:
            name = info.name.rstrip("/")
            if split == "val":
                if "/" in name:
                    raise RunError(f"{archive}: member {name!r} is in a folder; the val "
                                   "archive holds its images flat")
                if _visible(name):
                    found.append(((name,), info.offset_data, _kind(info)))
            elif _visible(name):
                if not (info.isreg() and name.endswith(".tar")) or "/" in name:
                    raise RunError(f"{archive}: member {name!r} is not a <wnid>.tar where the "
                                   "train archive holds one tar per class")
                wnid = name[:-len(".tar")]
                inner = _members(archive, _Window(handle, info.offset_data, info.size),
                                 info.size, f"{name}:")
                for member in inner:
                    part = member.name.rstrip("/")
                    if "/" not in part and _visible(part):
                        found.append(((wnid, part), info.offset_data + member.offset_data,
                                      _kind(member)))
            bar.update(info.offset_data + info.size - shown)
            shown = info.offset_data + info.size
    bar.close()
    return found


def classes_in(names: list[str]) -> list[str]:
    """The class folders the train archive would extract to, sorted."""
    return sorted({n.split("/")[1] for n in names})


def md5_check(archive: Path, split: str, quiet: bool = False) -> None:
    """Exit 1 naming the archive unless its md5 is the published one."""
    digest = hashlib.md5()
    bar = progress(archive.stat().st_size, "B", f"md5 {archive.name}", quiet, scale=False)
    with open(archive, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
            bar.update(len(chunk))
    bar.close()
    if digest.hexdigest() != PUBLISHED_MD5[split]:
        raise RunError(f"{archive} has md5 {digest.hexdigest()}, not the published "
                       f"{PUBLISHED_MD5[split]}: a damaged or different file")


class MemberReader:
    """Reads members of one archive by offset; one open file per shard."""

    def __init__(self, archive: Path):
        self.handle = open(archive, "rb")

    def read(self, offset: int, size: int, cap: int) -> bytes:
        from .source import Unusable

        if size == DIRECTORY:
            raise Unusable("a directory")
        if size < 0:
            raise Unusable("not a regular file (a link or device in the archive)")
        if size > cap:
            raise Unusable(f"too large: {size} bytes > {cap}")
        self.handle.seek(offset)
        data = self.handle.read(size)
        if len(data) != size:
            raise RunError(f"{self.handle.name} ended inside a member at offset {offset}")
        return data

    def close(self) -> None:
        self.handle.close()
