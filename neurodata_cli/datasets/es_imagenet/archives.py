"""The official ILSVRC2012 tars, read in place through ``tarfile``: an index, then member reads.

``ILSVRC2012_img_train.tar`` holds one ``<wnid>.tar`` per class, each holding that class's
JPEGs; ``ILSVRC2012_img_val.tar`` holds the 50,000 val JPEGs, flat. Nothing is extracted: a
scan lists every member once, the inner tars' included, and keeps that index in the run's stage
(on the client: the plan gives each shard its members' rows, so workers never read the index);
each shard then reads its own members through ``tarfile`` (``TarInfo.fromtarfile`` at the
member's header, then ``extractfile``, which follows a sparse member's map).

Each member gets the path GNU tar would extract it to (``./n.JPEG`` and ``n.JPEG`` are both
``train/<wnid>/n.JPEG``; ``val/<file>`` for val), so every data file equals a run on the
extracted folders, and each is an input as the folders' listing would see it:

- a regular member (sparse ones included) is an image to decode;
- a folder, a symbolic or hard link, a device or FIFO is skipped with its reason, as is
  anything in a subfolder of a class tar (the folders' listing records it alike), and a folder
  that only the extraction would create (``sub/`` of a member ``sub/x.JPEG``) is listed too;
- the archive's own folder (``./``) and hidden names (``.DS_Store``) are not inputs, as in the
  folders;
- two members that extract to one path make the archive ambiguous: the run stops naming both.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import RunError
from ...progress import progress
from ...storage import is_url, name_of, open_input, url_digest, url_info
from .source import IN_SUBFOLDER, Unusable

PUBLISHED_MD5 = {"train": "1d675b47d978889d74fa0da5fadfb00e",
                 "val": "29b22e2961454d5413ddabcf34fc5622"}
BLOCK = 512
INDEX_FORMAT = 2  # 1 kept names as newline-separated text: an index of another format is redone

# What a member is, as the index keeps it (one int64 column). Only regular members are images.
REGULAR, DIRECTORY, SYMLINK, HARDLINK, SUBFOLDER, OTHER = range(6)
REASONS = {DIRECTORY: "a directory", SYMLINK: "a symbolic link", HARDLINK: "a hard link",
           SUBFOLDER: IN_SUBFOLDER,
           OTHER: "not a regular file (FIFO, socket or device)"}
NO_INNER = -1  # the inner-header column of a member that is not inside an inner tar


def extracted(name: str) -> tuple[str, ...]:
    """The parts of the path GNU tar extracts member ``name`` to: no empty or ``.`` parts."""
    return tuple(part for part in name.split("/") if part not in ("", "."))


def _kind(info: tarfile.TarInfo) -> int:
    if info.isreg():  # regular, contiguous and sparse members: GNU tar makes each a file
        return REGULAR
    if info.isdir():
        return DIRECTORY
    if info.issym():
        return SYMLINK
    if info.islnk():
        return HARDLINK
    return OTHER


def _open(archive: Path | str, fileobj: Any, where: str) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=fileobj, mode="r:")
    except tarfile.TarError as exc:
        raise RunError(f"{archive}: {where.rstrip(':') or 'the archive'} is not a readable tar "
                       f"({exc})") from None


def _members(archive: Path | str, tf: tarfile.TarFile, size: int, where: str
             ) -> Iterator[tarfile.TarInfo]:
    """Every member of a tar of ``size`` bytes, checked: safe names, data inside the archive,
    and an end-of-archive marker (a tar cut at a member boundary otherwise reads as whole)."""
    last = ""
    try:
        for info in tf:
            name = info.name
            if name.startswith("/") or ".." in name.split("/"):
                raise RunError(f"{archive}: member {where}{name!r} points outside the "
                               "archive; refusing it")
            if tf.offset > size:  # where tarfile would read the next header: past the end
                raise RunError(f"{archive} is truncated: it ends inside member {where}{name}")
            last = name
            yield info
    except tarfile.TarError as exc:
        raise RunError(f"{archive}: {where.rstrip(':') or 'the archive'} is not a readable tar "
                       f"({exc})") from None
    after = f" after member {where}{last}" if last else ""
    if size - tf.offset < 2 * BLOCK:
        raise RunError(f"{archive} is truncated{after}: it has no end-of-archive marker")
    # tarfile ends its listing quietly at a header it cannot parse (a damaged one, or one a
    # wrong size before it points into data), so the members after it would be dropped unseen;
    # GNU tar reports such a block. Only the marker itself, two zero blocks, ends an archive.
    tf.fileobj.seek(tf.offset)
    if tf.fileobj.read(2 * BLOCK) != bytes(2 * BLOCK):
        raise RunError(f"{archive}: {where.rstrip(':') or 'the archive'} has a header "
                       f"tarfile cannot read (damaged, or a size before it is wrong) at byte "
                       f"{tf.offset}{after}; refusing to drop the members after it")


def _paths(split: str) -> tuple[Path, Path, Path]:
    return (Path(f"index-{split}.json"), Path(f"index-{split}-names.json"),
            Path(f"index-{split}.npy"))


def scan(archive: Path | str, split: str, cache: Path, quiet: bool = False
         ) -> tuple[list[str], np.ndarray]:
    """(paths as extracted, sorted as the folders' listing; a row per input: [header of its
    member in the archive, header inside its inner tar or -1, size, kind]), from the index in
    ``cache`` when one of this very archive is there, else by reading the archive.

    The index is JSON and npy, so any name (one with LF or CR in it) reads back as it was.
    """
    size, changed = _stat(archive)
    stamp = {"archive": str(archive), "bytes": size, **changed, "format": INDEX_FORMAT}
    stamp_file, names_file, table_file = (cache / p for p in _paths(split))
    try:
        if json.loads(stamp_file.read_text()) == stamp:
            kept = json.loads(names_file.read_text())
            names, table = kept["names"], np.load(table_file)
            # Parts that disagree (a stage's index edited or damaged) are taken for none.
            if (isinstance(names, list) and isinstance(kept["classes"], list)
                    and table.dtype == np.int64 and table.shape == (len(names), 4)):
                return names, table
    except (OSError, ValueError, KeyError, TypeError, EOFError):  # EOFError: an empty npy
        pass
    entries, classes = _index(archive, split, size, quiet)
    entries.sort(key=lambda e: e[0])
    names = ["/".join((split, *key)) for key, _ in entries]
    table = np.array([row for _, row in entries], dtype=np.int64).reshape(-1, 4)
    cache.mkdir(parents=True, exist_ok=True)
    stamp_file.unlink(missing_ok=True)  # first: a half-written index is never taken as whole
    names_file.write_text(json.dumps({"names": names, "classes": classes}))
    np.save(table_file, table)
    stamp_file.write_text(json.dumps(stamp))
    return names, table


def _stat(archive: Path | str) -> tuple[int, dict[str, Any]]:
    """The archive's size, and what tells a rewrite apart: its time, or a store's ETag."""
    if is_url(archive):
        info = url_info(str(archive))
        return int(info["size"]), {"etag": url_digest(info)}
    st = Path(archive).stat()
    return st.st_size, {"mtime_ns": st.st_mtime_ns}


# A store is read by ranged reads: the scan jumps from header to header, so it reads the archive
# forward in large blocks (about once over); a shard's members are near each other.
SCAN_BLOCK, READ_BLOCK = 1 << 23, 1 << 21


def scanned_classes(cache: Path, split: str) -> list[str]:
    """The class folders the train archive extracts to (one per ``<wnid>.tar``, even one with
    no inputs, as an empty folder is a class), sorted; from the index ``scan`` wrote."""
    return json.loads((cache / _paths(split)[1]).read_text())["classes"]


def _hidden(parts: tuple[str, ...]) -> bool:
    return any(p.startswith(".") for p in parts)  # as the folders' listing: not inputs


def _once(seen: dict[tuple[str, ...], str], key: tuple[str, ...], name: str, archive: Path | str,
          shown: str) -> None:
    """Refuse a second member that extracts to the path of an earlier one."""
    if key in seen:
        raise RunError(f"{archive}: members {seen[key]!r} and {name!r} both extract to {shown}; "
                       "refusing an archive that is ambiguous")
    seen[key] = name


def _index(archive: Path | str, split: str, size: int, quiet: bool
           ) -> tuple[list[tuple[tuple[str, ...], tuple[int, int, int, int]]], list[str]]:
    """(path parts below the split, [outer header, inner header, size, kind]) of each input,
    and the class folders (train)."""
    bar = progress(size, "B", f"indexing {name_of(archive)}", quiet, scale=False)
    found: list[tuple[tuple[str, ...], tuple[int, int, int, int]]] = []
    classes: dict[tuple[str, ...], str] = {}
    shown = 0
    with open_input(archive, SCAN_BLOCK) as handle, _open(archive, handle, "") as outer:
        seen: dict[tuple[str, ...], str] = {}
        for info in _members(archive, outer, size, ""):
            parts = extracted(info.name)
            if not parts or _hidden(parts[:1]):  # the split's folder itself, or hidden
                continue
            if split == "val":
                if len(parts) > 1:
                    raise RunError(f"{archive}: member {info.name!r} is in a folder; the val "
                                   "archive holds its images flat")
                _once(seen, parts, info.name, archive, f"val/{parts[0]}")
                kind = _kind(info)
                found.append((parts, (info.offset, NO_INNER,
                                      info.size if kind == REGULAR else 0, kind)))
            else:
                name = parts[0]
                if len(parts) > 1 or not (info.isreg() and name.endswith(".tar")):
                    raise RunError(f"{archive}: member {info.name!r} is not a <wnid>.tar where "
                                   "the train archive holds one tar per class")
                wnid = name[:-len(".tar")]
                _once(classes, (wnid,), info.name, archive, f"train/{name}")
                found += _inner(archive, outer, info, wnid)
            bar.update(outer.offset - shown)
            shown = outer.offset
    bar.close()
    return found, sorted(k[0] for k in classes)


def _inner(archive: Path | str, outer: tarfile.TarFile, info: tarfile.TarInfo, wnid: str
           ) -> list[tuple[tuple[str, ...], tuple[int, int, int, int]]]:
    """The inputs of one ``<wnid>.tar``, read through ``extractfile`` (sparse maps included)."""
    where = f"{info.name}:"
    inner = _open(archive, outer.extractfile(info), where)
    found = []
    seen: dict[tuple[str, ...], str] = {}
    for member in _members(archive, inner, info.size, where):
        parts = extracted(member.name)
        if not parts or _hidden(parts):  # the class folder itself, or hidden
            continue
        _once(seen, parts, where + member.name, archive, "/".join(("train", wnid, *parts)))
        kind = SUBFOLDER if len(parts) > 1 else _kind(member)
        found.append(((wnid, *parts), (info.offset, member.offset,
                                       member.size if kind == REGULAR else 0, kind)))
    # A folder that extraction creates for a member in it, where the tar has no member of its
    # own (``tar -cf n.tar sub/x.JPEG``): the extracted folders list it, so it is listed here.
    for parts in list(seen):
        for k in range(1, len(parts)):
            if parts[:k] not in seen:
                seen[parts[:k]] = ""
                found.append(((wnid, *parts[:k]), (info.offset, NO_INNER, 0,
                                                   DIRECTORY if k == 1 else SUBFOLDER)))
    return found


def md5_check(archive: Path | str, split: str, quiet: bool = False) -> None:
    """Exit 1 naming the archive unless its md5 is the published one."""
    digest = hashlib.md5()
    bar = progress(_stat(archive)[0], "B", f"md5 {name_of(archive)}", quiet, scale=False)
    with open_input(archive, SCAN_BLOCK) as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
            bar.update(len(chunk))
    bar.close()
    if digest.hexdigest() != PUBLISHED_MD5[split]:
        raise RunError(f"{archive} has md5 {digest.hexdigest()}, not the published "
                       f"{PUBLISHED_MD5[split]}: a damaged or different file")


class MemberReader:
    """Reads members of one archive through ``tarfile``; one open file per shard."""

    def __init__(self, archive: Path | str):
        self.archive = archive
        self.handle = open_input(archive, READ_BLOCK)
        self.outer = _open(archive, self.handle, "")
        self.inner: tuple[int, tarfile.TarFile | None] = (-1, None)  # the last inner tar

    @staticmethod
    def _member(tf: tarfile.TarFile, header: int) -> tarfile.TarInfo:
        """The member whose header the index found at ``header``, parsed again by tarfile."""
        tf.fileobj.seek(header)
        return tf.tarinfo.fromtarfile(tf)

    def read(self, rel: str, member: list[int], cap: int) -> bytes:
        """The bytes of input ``rel`` as extracted; ``Unusable`` for what is not an image."""
        outer, inner, size, kind = member
        if kind != REGULAR:
            raise Unusable(REASONS[kind])
        if size > cap:
            raise Unusable(f"too large: {size} bytes > {cap}")
        try:
            if inner == NO_INNER:
                tf = self.outer
            else:
                if self.inner[0] != outer:
                    if self.inner[1] is not None:
                        self.inner[1].close()
                    inner_tar = self.outer.extractfile(self._member(self.outer, outer))
                    self.inner = (outer, _open(self.archive, inner_tar, ""))
                opened = self.inner[1]
                assert opened is not None  # just opened, if it was not already
                tf = opened
            info = self._member(tf, outer if inner == NO_INNER else inner)
            if ("/".join(extracted(info.name)) != rel.split("/", 1 if inner == NO_INNER else 2)[-1]
                    or not info.isreg() or info.size != size):
                # Rewritten at the same size and time (else the index would have been redone):
                # a new time makes the next run index it again, and start again.
                raise RunError(f"{self.archive} changed since it was indexed: member {rel} "
                               "is not where it was; touch the archive to have it indexed "
                               "again")
            data_file = tf.extractfile(info)
            assert data_file is not None  # a regular member (checked above)
            with data_file:
                data = data_file.read(size)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise RunError(f"{self.archive}: cannot read member {rel} ({exc})") from None
        if len(data) != size:
            raise RunError(f"{self.archive} ended inside member {rel}")
        return data

    def close(self) -> None:
        if self.inner[1] is not None:
            self.inner[1].close()
        self.outer.close()
        self.handle.close()
