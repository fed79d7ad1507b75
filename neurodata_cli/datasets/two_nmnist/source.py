"""Where NMNIST recordings come from: a folder tree, the official zips (read in place), or a
download of those zips into a cache."""

from __future__ import annotations

import copy
import http.client
import os
import re
import stat
import sys
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ...errors import ConfigError, RunError
from ...formats import file_digest
from ...progress import progress
from ...storage import (
    is_url,
    name_of,
    url_digest,
    url_entries,
    url_find,
    url_join,
    url_kind,
    url_open,
    url_read,
    url_read_many,
)
from ..base import InputFile, file_listing

SPLIT_DIRS = {"train": "Train", "test": "Test"}
# A recording is tens of kB (about 5,000 events of 5 bytes); a member or file past this is not
# one, and is refused before it is inflated or read. A member is inflated to at most its declared
# size and one byte more, so one that claims less than it holds cannot take more memory either.
MAX_RECORDING_BYTES = 8 * 2**20
# Stored and deflated are what zip tools write and the official archives use. zipfile inflates
# bzip2 and LZMA without an output limit (a few kB can become gigabytes before it returns), so
# members in those, and methods zipfile cannot read at all, are refused.
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
_MEMBER = re.compile(r"^(?P<top>[^/]+)/(?P<digit>[0-9])/(?P<name>[^/]+\.bin)$")


@dataclass(frozen=True)
class Recording:
    """One recording: ``rel`` is ``<digit>/<name>.bin`` inside its split."""

    rel: str
    digit: int

    @property
    def key(self) -> str:
        """What the procedure sorts on: ``digit/name`` without the extension."""
        return self.rel[: -len(".bin")]


@dataclass(frozen=True)
class SplitSource:
    """One split of NMNIST: a folder, or an archive with the member prefix of the split."""

    split: str
    path: str  # folder, or zip file: a local path or a URL (s3://bucket/nmnist/Train.zip)
    archive: bool
    prefix: str = ""  # for archives: the top-level folder as spelled in the zip

    def describe(self) -> str:
        """Where it is on this machine (for messages and the run record)."""
        where = self.path if is_url(self.path) else str(Path(self.path).absolute())
        return where + (f" ({self.prefix}/)" if self.archive else "")

    def recorded(self) -> str:
        """What the manifest records: the folder's or zip's name in the root, never its path
        (the manifest is checksummed, and must be the same on every machine)."""
        return name_of(self.path) + (f" ({self.prefix}/)" if self.archive else "")


def locate(root: Path | str, split: str) -> SplitSource:
    """Find ``split`` under ``root``: a ``Train``/``Test`` folder in any case, or its zip."""
    if is_url(root):
        return _locate_url(str(root), split)
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"--nmnist-root {root} is not a folder")
    entries = {p.name.lower(): p for p in sorted(root.iterdir())}
    folder = entries.get(split)
    if folder is not None and folder.is_dir():
        return SplitSource(split, str(folder), False)
    archive = entries.get(f"{split}.zip")
    if archive is not None and archive.is_file():
        return SplitSource(split, str(archive), True, _zip_prefix(archive, split))
    raise RunError(f"--nmnist-root {root} has neither a {SPLIT_DIRS[split]}/ folder nor "
                   f"{SPLIT_DIRS[split]}.zip")


def _locate_url(root: str, split: str) -> SplitSource:
    """``locate`` in a store: the same names, listed by one request."""
    if url_kind(root) != "directory":
        raise ConfigError(f"--nmnist-root {root} is not a folder (no objects below it)")
    entries = {name.lower(): (name, kind) for name, kind in sorted(url_entries(root).items())}
    folder = entries.get(split)
    if folder is not None and folder[1] == "directory":
        return SplitSource(split, url_join(root, folder[0]), False)
    archive = entries.get(f"{split}.zip")
    if archive is not None and archive[1] == "file":
        url = url_join(root, archive[0])
        return SplitSource(split, url, True, _zip_prefix(url, split))
    raise RunError(f"--nmnist-root {root} has neither a {SPLIT_DIRS[split]}/ folder nor "
                   f"{SPLIT_DIRS[split]}.zip")


class _URLZip(zipfile.ZipFile):
    """A zip read from a store's file object, which closing the zip closes too."""

    def __init__(self, handle: Any):
        super().__init__(handle)
        self.handle = handle

    def close(self) -> None:
        super().close()
        self.handle.close()


def _open_zip(path: str) -> zipfile.ZipFile:
    """The zip at a local path or a URL (read through ranged reads; closing the zip closes
    the file object under it)."""
    handle = None
    try:
        if is_url(path):
            handle = url_open(path)
            return _URLZip(handle)
        return zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        if handle is not None:
            handle.close()
        raise RunError(f"{path} is not a readable zip archive: {exc}") from None


def _zip_prefix(path: Path | str, split: str) -> str:
    with _open_zip(str(path)) as zf:
        tops = {name.split("/", 1)[0] for name in zf.namelist() if "/" in name}
    for top in sorted(tops):
        if top.lower() == split:
            return top
    raise RunError(f"{path} has no top-level {SPLIT_DIRS[split]}/ folder")


def _check_member(archive: str, name: str) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise RunError(f"{archive}: member {name!r} points outside the archive; refusing it")


def _check_recording_member(archive: str, info: zipfile.ZipInfo) -> None:
    """Refuse a ``.bin`` member that is not a plain recording zipfile can inflate within bounds."""
    where = f"{archive}: member {info.filename!r}"
    mode = info.external_attr >> 16
    # Unix permission bits exist only in zips made on Unix (create_system 3), as unzip reads them.
    if info.create_system == 3 and stat.S_IFMT(mode) and not stat.S_ISREG(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
        raise RunError(f"{where} is {kind}, so its bytes are not an NMNIST recording; "
                       "refusing the archive")
    if info.flag_bits & 0x1:
        raise RunError(f"{where} is encrypted; NMNIST recordings are read without a password")
    if info.compress_type not in ZIP_METHODS:
        raise RunError(f"{where} uses zip compression method {info.compress_type}; only stored "
                       "or deflated members are read (extract the archive and pass the folder)")
    if info.file_size > MAX_RECORDING_BYTES:
        raise RunError(f"{where} inflates to {info.file_size} bytes, more than an NMNIST "
                       f"recording ({MAX_RECORDING_BYTES}); refusing it")


def list_recordings(src: SplitSource) -> list[Recording]:
    """Every ``<digit>/<name>.bin`` of the split, in no particular order."""
    found = []
    if src.archive:
        seen: set[str] = set()
        with _open_zip(src.path) as zf:
            for info in zf.infolist():
                _check_member(src.path, info.filename)
                if info.filename in seen:
                    raise RunError(f"{src.path}: member {info.filename!r} appears twice; "
                                   "refusing an archive that is ambiguous")
                seen.add(info.filename)
                parts = info.filename.split("/")
                if (len(parts) > 3 and parts[0] == src.prefix and re.fullmatch(r"[0-9]", parts[1])
                        and parts[2].endswith(".bin")):  # extracted, a folder named *.bin
                    raise RunError(f"{src.path}: member {info.filename!r} makes "
                                   f"{'/'.join(parts[:3])} a folder, so it cannot be an NMNIST "
                                   "recording (as in a folder tree, the run stops)")
                if info.is_dir() or not info.filename.lower().endswith(".bin"):
                    continue
                _check_recording_member(src.path, info)
                m = _MEMBER.match(info.filename)
                if not m or m["top"] != src.prefix:
                    raise RunError(f"{src.path}: member {info.filename!r} is not "
                                   f"{src.prefix}/<digit>/<name>.bin")
                found.append(Recording(f"{m['digit']}/{m['name']}", int(m["digit"])))
        return found
    if is_url(src.path):
        return _list_url(src)
    # os.scandir: directory entries carry their type, so 70,000 files need no stat each. A
    # symbolic link to a regular file is read through (a tree of links is a common way to keep
    # one copy of the data); unlike a zip member's link, what it points at is a recording.
    with os.scandir(src.path) as top:
        digit_dirs = [e for e in top if e.is_dir() and re.fullmatch(r"[0-9]", e.name)]
    for digit_dir in digit_dirs:
        digit = int(digit_dir.name)
        with os.scandir(digit_dir.path) as entries:
            for e in entries:
                if not e.name.endswith(".bin"):
                    continue
                if not e.is_file():  # never opened: a FIFO would hang the run
                    raise RunError(f"{e.path} is not a regular file (a folder, FIFO, device or "
                                   "dangling link), so it cannot be an NMNIST recording")
                found.append(Recording(f"{digit_dir.name}/{e.name}", digit))
    return found


def _list_url(src: SplitSource) -> list[Recording]:
    """``list_recordings`` of a folder in a store: one recursive listing. A store has no
    FIFOs or links; a ``.bin`` name with objects below it is a folder, refused as locally."""
    found = []
    for rel in url_find(src.path):
        parts = rel.split("/")
        if len(parts) < 2 or not re.fullmatch(r"[0-9]", parts[0]):
            continue
        if len(parts) > 2 and parts[1].endswith(".bin"):
            raise RunError(f"{url_join(src.path, *parts[:2])} is not a regular file (a folder, "
                           "FIFO, device or dangling link), so it cannot be an NMNIST recording")
        if len(parts) == 2 and parts[1].endswith(".bin"):
            found.append(Recording(rel, int(parts[0])))
    return found


def listing(src: SplitSource, rels: Iterable[str]) -> list[InputFile]:
    """Name and size of each recording, as ``Train/3/x.bin`` or ``Train.zip:Train/3/x.bin``;
    a zip's central directory adds each member's CRC-32 at no cost, a store's listing each
    object's ETag."""
    top = name_of(src.path)
    if not src.archive and is_url(src.path):
        objects = url_find(src.path)
        return [InputFile(f"{top}/{rel}", objects[rel]["size"], url_digest(objects[rel]))
                if rel in objects else InputFile(f"{top}/{rel}", -1) for rel in rels]
    if not src.archive:
        return file_listing(Path(src.path), rels, f"{top}/")
    out = []
    with _open_zip(src.path) as zf:
        for rel in rels:
            name = f"{src.prefix}/{rel}"
            try:
                info = zf.getinfo(name)
                out.append(InputFile(f"{top}:{name}", info.file_size, f"crc32:{info.CRC:08x}"))
            except KeyError:  # gone since it was listed: the read will say so
                out.append(InputFile(f"{top}:{name}", -1))
    return out


class Reader:
    """Reads recordings' bytes from one split source; keeps an archive open between reads."""

    def __init__(self, src: SplitSource):
        self.src = src
        self._zip = _open_zip(src.path) if src.archive else None
        self._ahead: dict[str, bytes] = {}  # recordings read ahead from a store

    def prefetch(self, rels: list[str]) -> None:
        """Read these recordings of a folder in a store at once (concurrent requests), for the
        ``read`` calls that follow; elsewhere, and for any that fails, ``read`` reads alone."""
        if self._zip is not None or not is_url(self.src.path):
            return
        urls = [url_join(self.src.path, rel) for rel in rels]
        got = url_read_many(urls, MAX_RECORDING_BYTES + 1)
        self._ahead = {rel: data for rel, data in zip(rels, got, strict=True)
                       if isinstance(data, bytes)}

    def read(self, rel: str) -> bytes:
        """A recording's bytes; a damaged member or an oversized file is a RunError naming it."""
        if self._zip is not None:
            try:
                return self._read_member(f"{self.src.prefix}/{rel}")
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError,
                    NotImplementedError) as exc:  # damaged, encrypted, or an unknown method
                raise RunError(f"{self.name(rel)}: cannot be read from the archive "
                               f"({exc})") from None
        if is_url(self.src.path):  # one ranged read, one byte past the largest recording
            url = url_join(self.src.path, rel)
            data = self._ahead.pop(rel, None) or url_read(url, MAX_RECORDING_BYTES + 1)
            if len(data) > MAX_RECORDING_BYTES:
                raise RunError(f"{url} is more than an NMNIST recording "
                               f"({MAX_RECORDING_BYTES} bytes); refusing it")
            return data
        # One open, and the size from the open file: pathlib and a stat by name cost more than
        # reading a 20 KB recording.
        path = os.path.join(self.src.path, rel)
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_RECORDING_BYTES:
                raise RunError(f"{path} is {size} bytes, more than an NMNIST recording "
                               f"({MAX_RECORDING_BYTES}); refusing it")
            return f.read()

    def _read_member(self, name: str) -> bytes:
        """A member's bytes, inflating at most one byte past its declared size.

        ``ZipFile.read`` inflates up to 1 GiB per step before it cuts at the declared size, so a
        member that lies about its size costs that memory, and passes if its CRC matches the
        cut. Opened as one byte longer than declared, the stream is inflated in steps bounded by
        what is asked, and asking for that one byte more shows whether more comes. zipfile
        would check its CRC over the longer read, so the CRC is checked here instead.
        """
        assert self._zip is not None
        info = self._zip.getinfo(name)
        declared = info.file_size
        bounded = copy.copy(info)
        # None turns zipfile's own CRC check off (typeshed allows only an int); checked below.
        bounded.file_size, bounded.CRC = declared + 1, None  # type: ignore[assignment]
        with self._zip.open(bounded) as member:
            data = member.read(declared + 1)
        if len(data) != declared:
            more = "more than" if len(data) > declared else f"only {len(data)} of"
            raise RunError(f"{self.src.path}: member {name!r} inflates to {more} the {declared} "
                           "bytes it declares; refusing it")
        if zlib.crc32(data) != info.CRC:
            raise RunError(f"{self.src.path}: member {name!r} fails its CRC check (the archive "
                           "is damaged); refusing it")
        return data

    def name(self, rel: str) -> str:
        return f"{self.src.path}:{self.src.prefix}/{rel}" if self._zip else f"{self.src.path}/{rel}"

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


# ---- download ------------------------------------------------------------------------------

# Where the config gives no archive size, a download stops here: four times the largest
# official NMNIST archive (Train.zip, about 1 GB), so a URL that never ends cannot fill the disk.
MAX_DOWNLOAD_BYTES = 4 * 2**30


class NotTheArchive(Exception):
    """One URL's answer was not the archive (an error status, a page, an empty or short body);
    the next URL is tried. The text names what came instead."""


def download(urls: str | list[str], md5: str, target: Path, quiet: bool = False,
             timeout: float = 60, size: int | None = None,
             note: Callable[[str], None] | None = None) -> Path:
    """Fetch the archive to ``target`` from the first of ``urls`` that serves it, and check its
    md5; each URL resumes a partial ``.part`` file by HTTP Range.

    A file already at ``target`` whose md5 matches is used as it is. One that does not match is
    the user's: it is moved aside to ``<name>.bad-md5-<digest>`` (never deleted) and ``note``
    says where. An answer that is not the archive (an error status, an HTML page, an empty
    ``202``, a body too short or not a zip) is named and the next URL tried; a whole download
    with the wrong md5 is moved aside the same way. ``size`` is the archive's size if the config
    knows it; a download past it (or past ``MAX_DOWNLOAD_BYTES``) is stopped and removed.
    """
    urls = [urls] if isinstance(urls, str) else list(urls)
    note = note or _stderr
    md5 = md5.lower()
    target.parent.mkdir(parents=True, exist_ok=True)
    moved: list[str] = []
    if target.is_file():
        got = file_digest(target, "md5")
        if got == md5:
            return target
        aside = _move_aside(target, got)
        moved.append(f"the earlier {target.name} (md5 {got}) is now {aside}")
        note(f"{target} has md5 {got}, not the config's {md5}: moved it to {aside.name} "
             "and downloading again")
    part = target.with_name(target.name + ".part")
    failures = []
    for url in urls:
        try:
            _fetch_resuming(url, part, target.name, quiet, timeout, size)
            _check_whole(part, target, size)
        except NotTheArchive as exc:
            failures.append(f"{url}: {exc}")
            continue
        got = file_digest(part, "md5")
        if got != md5:
            aside = _move_aside(part, got, target)
            failures.append(f"{url}: md5 {got}, expected {md5} (kept as {aside})")
            continue
        part.replace(target)
        return target
    kept = f" ({'; '.join(moved)})" if moved else ""
    resume = ("; run the command again to resume it" if part.exists()
              else "; check download.<split> in the config (neurodata config 2nmnist)")
    raise RunError(f"download of {target.name} failed from every URL: {'; '.join(failures)}"
                   f"{kept}{resume}")


# A cut connection is retried on the same URL (by Range) while each attempt brings more bytes,
# at most this many times in a row.
MAX_RESUMES = 5


def _fetch_resuming(url: str, part: Path, name: str, quiet: bool, timeout: float,
                    size: int | None) -> None:
    """Bring ``part`` to the whole answer of ``url``, resuming by Range after a cut."""
    for _ in range(MAX_RESUMES):
        before = part.stat().st_size if part.exists() else 0
        try:
            _fetch(url, part, name, quiet, timeout, size)
            return
        except _Cut as exc:
            after = part.stat().st_size if part.exists() else 0
            if after <= before:
                raise NotTheArchive(str(exc)) from None
    raise NotTheArchive(f"the connection was cut {MAX_RESUMES} times")


class _Cut(Exception):
    """The connection ended before the announced length; what arrived is kept."""


def _fetch(url: str, part: Path, name: str, quiet: bool, timeout: float,
           size: int | None) -> None:
    """One request of ``url`` into ``part`` (by Range from its end, if it has bytes)."""
    limit = MAX_DOWNLOAD_BYTES if size is None else size
    beyond = (f"more than the {size} bytes the config expects" if size is not None else
              f"more than {limit} bytes, far more than an NMNIST archive (if the archive "
              "really is larger, give its size as 'bytes' in its download entry)")
    have = part.stat().st_size if part.exists() else 0
    if have > limit:  # left by an earlier run with a larger limit: it cannot be the archive
        part.unlink()
        have = 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part file is already whole
            return
        raise NotTheArchive(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise NotTheArchive(f"{getattr(exc, 'reason', exc)}") from None
    with response:
        if response.status not in (200, 206):  # 202 Accepted: a page saying 'not yet'
            raise NotTheArchive(f"HTTP {response.status} {response.reason} without the archive "
                                "(the server is not serving the file now)")
        kind = response.headers.get("Content-Type", "")
        if kind.lower().startswith("text/html"):
            raise NotTheArchive(f"an HTML page ({kind}), not the archive")
        resumed = have and response.status == 206
        total = response.headers.get("Content-Length")
        total = int(total) + (have if resumed else 0) if total else None
        if total is not None and total > limit:
            part.unlink(missing_ok=True)
            raise NotTheArchive(f"it announces {total} bytes, {beyond}; refused")
        written, over = have if resumed else 0, False
        try:
            chunk = response.read(1 << 20)
        except (OSError, http.client.HTTPException):
            chunk = b""
        # Checked before the part file is opened, so a partial download is kept.
        if not chunk:
            raise NotTheArchive(f"HTTP {response.status} with an empty body, not the archive")
        if not resumed and chunk.lstrip()[:14].lower().startswith((b"<!doctype html", b"<html")):
            raise NotTheArchive("an HTML page, not the archive")
        bar = _bar(total, written, name, quiet)
        try:
            with open(part, "ab" if resumed else "wb") as out:
                while chunk:
                    if written + len(chunk) > limit:
                        over = True
                        break
                    out.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
                    chunk = response.read(1 << 20)
        except (OSError, http.client.HTTPException):
            pass  # judged by size below; what arrived is kept for the next attempt
        finally:
            bar.close()
        if over:  # stopped: what arrived is not the archive
            part.unlink()
            raise NotTheArchive(f"it went on past {limit} bytes, {beyond}; stopped it and "
                                "removed the partial file")
        got = part.stat().st_size
        if total is not None and got < total:
            raise _Cut(f"the connection was cut at {got} of {total} bytes")


def _check_whole(part: Path, target: Path, size: int | None) -> None:
    """A whole answer that cannot be the archive is removed (it is ours, not the user's)."""
    got = part.stat().st_size if part.exists() else 0
    why = None
    if got == 0:
        why = "an empty body, not the archive"
    elif size is not None and got != size:
        why = f"a body of {got} bytes where the archive has {size}"
    elif target.suffix.lower() == ".zip" and not zipfile.is_zipfile(part):
        why = f"a body of {got} bytes that is not a zip archive"
    if why is not None:
        part.unlink(missing_ok=True)
        raise NotTheArchive(why)


def _move_aside(path: Path, digest: str, name: Path | None = None) -> Path:
    """Rename ``path`` to ``<name>.bad-md5-<first 8 hex>`` beside it; never deletes a file."""
    aside = (name or path).with_name(f"{(name or path).name}.bad-md5-{digest[:8]}")
    path.replace(aside)
    return aside


def _stderr(text: str) -> None:
    sys.stderr.write(f"Note: {text}\n")


def _bar(total: int | None, initial: int, name: str, quiet: bool) -> Any:
    return progress(total, "B", name, quiet, initial=initial, scale=False)
