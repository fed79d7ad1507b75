"""Checksums and manifests: ``SHA256SUMS`` in GNU coreutils format, ``manifest.json``, verify.

``SHA256SUMS`` lists every file of a finished folder, ``manifest.json`` included, so both
``neurodata verify`` and ``sha256sum -c`` catch an edit of the manifest. ``load`` is the one
place that opens a finished folder: the reader, ``preview``, ``info`` and ``verify`` all use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .errors import RunError
from .files import atomic_write

SUMS = "SHA256SUMS"
MANIFEST = "manifest.json"
METADATA = frozenset({SUMS, MANIFEST})
# Where the folder was made on this machine (input paths, host, tool path): beside the manifest
# but never listed in SHA256SUMS, so that the checksummed files are the same on every machine.
RUN = "run.json"


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r"}


def sums_line(path: str, digest: str) -> str:
    """One line as GNU ``sha256sum`` writes it: a name holding a backslash, LF or CR is escaped
    and the line starts with a backslash."""
    if not any(c in path for c in _ESCAPES):
        return f"{digest}  {path}\n"
    return "\\" + f"{digest}  {''.join(_ESCAPES.get(c, c) for c in path)}\n"


def sums_text(entries: Iterable[tuple[str, str]]) -> str:
    """``<sha256>  <path>`` lines, sorted by path, LF endings: what ``sha256sum -c`` reads."""
    return "".join(sums_line(path, digest) for path, digest in sorted(entries))


def _unescape(name: str) -> str | None:
    out, i = [], 0
    while i < len(name):
        c = name[i]
        if c == "\\":
            nxt = name[i + 1:i + 2]
            if nxt not in ("\\", "n", "r"):
                return None
            out.append({"\\": "\\", "n": "\n", "r": "\r"}[nxt])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def manifest_text(manifest: dict[str, Any]) -> str:
    """Indented JSON, with each entry of ``files`` on one line (folders list many files)."""
    head = {k: v for k, v in manifest.items() if k != "files"}
    text = json.dumps(head, indent=2, ensure_ascii=False)
    rows = ",\n    ".join(json.dumps(f, ensure_ascii=False) for f in manifest.get("files", []))
    files = f'"files": [\n    {rows}\n  ]' if rows else '"files": []'
    return (text[:-2] + ",\n  " if head else "{\n  ") + files + "\n}\n"


def metadata(manifest: dict[str, Any]) -> tuple[bytes, bytes]:
    """The bytes of manifest.json and of SHA256SUMS (over the data files and the manifest)."""
    data = manifest_text(manifest).encode()
    entries = [(f["path"], f["sha256"]) for f in manifest["files"]]
    entries.append((MANIFEST, hashlib.sha256(data).hexdigest()))
    return data, sums_text(entries).encode()


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write manifest.json, then SHA256SUMS."""
    data, sums = metadata(manifest)
    atomic_write(folder / MANIFEST, data)
    atomic_write(folder / SUMS, sums)


class NotRegular(OSError):
    """A path that is a link, FIFO, device, socket or folder where a file was expected: reading
    it could block forever, never end, or read what is not ours."""

    def __str__(self) -> str:
        return f"cannot read {self.filename}: {self.strerror}"


def _kind(mode: int) -> str:
    """What a file that is not regular is, as in "it is a FIFO"."""
    for test, kind in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return kind
    return "not a regular file"


def open_regular(path: Path, follow: bool = True) -> Any:
    """``path`` opened for binary reading, only if it is a regular file (with ``follow=False``,
    not through a symbolic link either); a NotRegular error otherwise.

    Checked before opening (opening some devices acts on them), opened non-blocking so that a
    FIFO swapped in meanwhile does not wait for a writer, and checked again on the handle."""
    mode = (os.stat if follow else os.lstat)(path).st_mode
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags) if stat.S_ISREG(mode) else None
    if fd is not None:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            return os.fdopen(fd, "rb")
        os.close(fd)
    raise NotRegular(0, f"it is {_kind(mode)}, not a regular file", str(path))


def read_manifest(folder: Path) -> Any:
    """The folder's manifest as a JSON value, or None when there is none (no shape checks:
    ``check_shape`` says what is wrong); an OSError when it is not a regular file."""
    try:
        handle = open_regular(folder / MANIFEST)
    except FileNotFoundError:
        return None
    with handle:
        data = json.loads(handle.read().decode("utf-8"))
    # JSON null is a manifest of the wrong shape, not a missing one (None): say so.
    return [] if data is None else data


_OPTIONAL = {"builder": str, "release_notes": str, "tool": dict, "libraries": dict,
             "config": dict}
_SPLIT = {"format": str, "stats": dict, "config": dict}


def check_shape(manifest: Any) -> str | None:
    """What is wrong with a manifest's shape, or None."""
    if not isinstance(manifest, dict):
        return "is not a JSON object"
    for key, kind in (("dataset", str), ("version", str), ("splits", dict), ("files", list)):
        if not isinstance(manifest.get(key), kind):
            return f"has no {key!r} of the right kind"
    for key, optional in _OPTIONAL.items():  # read by info and the reader where present
        if key in manifest and not isinstance(manifest[key], optional):
            return f"has a {key!r} of the wrong kind"
    for f in manifest["files"]:
        if not (isinstance(f, dict) and isinstance(f.get("path"), str)
                and isinstance(f.get("sha256"), str) and isinstance(f.get("records"), int)
                and isinstance(f.get("bytes"), int) and isinstance(f.get("split"), str)
                and f["split"] in manifest["splits"]):
            return f"lists a file entry of the wrong shape: {json.dumps(f)[:120]}"
    for name, split in manifest["splits"].items():
        if not (isinstance(split, dict) and isinstance(split.get("records"), int)
                and all(isinstance(split.get(k, kind()), kind) for k, kind in _SPLIT.items())):
            return f"has a split {name!r} of the wrong shape"
    return None


def load(folder: Path) -> dict[str, Any]:
    """The manifest of a finished folder, checked; a RunError (exit 1) says why there is none."""
    folder = Path(folder)
    try:
        manifest = read_manifest(folder)
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot read {folder / MANIFEST}: {_reason(exc)}") from None
    return checked(manifest, str(folder))


def checked(manifest: Any, folder: str) -> dict[str, Any]:
    """The manifest read from ``folder`` (None: none there), or a RunError saying what is
    wrong with it: for a local folder and one at a URL alike."""
    if manifest is None:
        raise RunError(f"{folder} has no {MANIFEST}: not a finished neurodata folder")
    problem = check_shape(manifest)
    if problem:
        raise RunError(f"{folder}/{MANIFEST} {problem}")
    return manifest


@dataclass
class Tree:
    """What a folder holds, links not followed: relative POSIX paths of regular files, of
    folders, and of anything else (``{path: what it is}``)."""

    files: set[str] = field(default_factory=set)
    folders: set[str] = field(default_factory=set)
    others: dict[str, str] = field(default_factory=dict)

    @property
    def entries(self) -> set[str]:
        return self.files | set(self.others)


def scan(folder: Path) -> Tree:
    """The folder's tree, without following links (a link to a folder is not walked into)."""
    tree = Tree()
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        with os.scandir(folder / rel_dir if rel_dir else folder) as it:
            for entry in it:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                # The entry's type from the listing itself: no stat per file.
                if entry.is_dir(follow_symlinks=False):
                    tree.folders.add(rel)
                    pending.append(rel)
                elif entry.is_file(follow_symlinks=False):
                    tree.files.add(rel)
                else:
                    tree.others[rel] = _kind(entry.stat(follow_symlinks=False).st_mode)
    return tree


@dataclass
class VerifyReport:
    """What ``verify`` found; ``ok`` only when nothing is missing, altered or unlisted."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    altered: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.altered or self.unlisted or self.problems)

    def first(self, folder: str) -> str | None:
        """The first thing found wrong, in one line (None: nothing)."""
        for kind in ("missing", "altered", "unlisted"):
            for rel in getattr(self, kind):
                return f"{folder}/{rel} is {kind} (see neurodata verify)"
        return f"{self.problems[0]} (see neurodata verify)" if self.problems else None


MAX_LINE = 1 << 16  # a line of SHA256SUMS: a digest and a path (at most 4096 bytes, escaped)


def parse_sums(path: Path) -> tuple[dict[str, str], list[str]]:
    """``read_sums`` of a SHA256SUMS file (a regular file, not followed through a link)."""
    with open_regular(path, follow=False) as raw:
        return read_sums(raw)


def read_sums(raw: BinaryIO) -> tuple[dict[str, str], list[str]]:
    """Entries of a SHA256SUMS (a local file or a store's object, as a binary file object)
    and any lines that are not in its format, or that list a path a second time."""
    entries: dict[str, str] = {}
    lines: dict[str, int] = {}
    bad: list[str] = []
    number = 0
    while data := raw.readline(MAX_LINE):
        number += 1
        if len(data) == MAX_LINE and not data.endswith(b"\n"):  # no line is this long
            while (rest := raw.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                pass
            bad.append(f"{SUMS} line {number} is longer than {MAX_LINE} bytes")
            continue
        line = data.decode("utf-8", errors="replace")
        line = line[:-1] if line.endswith("\n") else line
        escaped = line.startswith("\\")
        digest, sep, rel = (line[1:] if escaped else line).partition("  ")
        name = _unescape(rel) if escaped else rel
        if not sep or len(digest) != 64 or not name:
            bad.append(f"{SUMS} line {number} is not '<sha256>  <path>'")
            continue
        if name in entries:
            bad.append(f"{SUMS} line {number} lists {name!r} again (first on line "
                       f"{lines[name]})")
            continue
        entries[name], lines[name] = digest, number
    return entries, bad


STALL = 60.0  # seconds a file may give no data before verify reports it (a hung network mount)
CHUNK = 1 << 20


def sha256_regular(path: Path, tick: Callable[[], None] = lambda: None) -> str | None:
    """The sha256 of the regular file at ``path`` (a link is refused), reading no more than the
    size it had when opened; None when it grew meanwhile. ``tick`` hears of each chunk."""
    with open_regular(path, follow=False) as handle:
        left = os.fstat(handle.fileno()).st_size
        digest = hashlib.sha256()
        while left > 0:
            chunk = handle.read(min(CHUNK, left))
            if not chunk:
                return None  # it shrank
            digest.update(chunk)
            left -= len(chunk)
            tick()
        return None if handle.read(1) else digest.hexdigest()


def _hash_all(folder: Path, rels: list[str], workers: int,
              stall: float) -> dict[str, str | None | OSError]:
    """``sha256_regular`` of each path, in daemon threads. A read that gives no data for
    ``stall`` seconds is given up as a TimeoutError: its thread is left behind (never waited
    for, even at exit) and another takes its place."""
    jobs: queue.SimpleQueue[str] = queue.SimpleQueue()
    for rel in rels:
        jobs.put(rel)
    results: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    reading: dict[str, float] = {}  # the files being read: when each last gave data

    def work() -> None:
        while True:
            try:
                rel = jobs.get_nowait()
            except queue.Empty:
                return

            def tick(rel: str = rel) -> None:
                reading[rel] = time.monotonic()

            tick()
            try:
                out: Any = sha256_regular(folder / rel, tick)
            except OSError as exc:
                out = exc
            reading.pop(rel, None)
            results.put((rel, out))

    def start() -> None:
        threading.Thread(target=work, daemon=True).start()

    for _ in range(min(workers, len(rels))):
        start()
    done: dict[str, Any] = {}
    while len(done) < len(rels):
        try:
            rel, out = results.get(timeout=min(1.0, stall))
            done.setdefault(rel, out)
        except queue.Empty:
            pass
        now = time.monotonic()
        for rel, last in list(reading.items()):
            if now - last > stall and rel not in done:
                done[rel] = TimeoutError(0, f"no data for {stall:g} s", str(folder / rel))
                start()
    return done


def verify(folder: Path, workers: int | None = None, stall: float = STALL) -> VerifyReport:
    """Re-hash every file against SHA256SUMS (the manifest among them), then check that the
    manifest is well formed and lists the same files. ``run.json``, the run record, is the one
    file a finished folder holds unlisted.

    A finished folder holds regular files and the folders they are in, nothing else: links,
    FIFOs, devices and folders no listed file is in are problems, and none is followed or
    opened in a way that could block."""
    report = VerifyReport()
    sums_path = folder / SUMS
    try:
        entries, bad = parse_sums(sums_path)
    except FileNotFoundError:
        report.problems.append(f"no {SUMS} in {folder}: not a finished neurodata folder")
        return report
    except OSError as exc:
        report.problems.append(f"cannot read {sums_path}: {_reason(exc)}")
        return report
    report.problems.extend(bad)
    tree = scan(folder)
    for rel, kind in sorted(tree.others.items()):
        listed = "listed file " if rel in entries else ""
        report.problems.append(f"{listed}{rel!r} is {kind}; a finished folder holds only "
                               "regular files and their folders")
    wanted: set[str] = set()  # the folders listed files are in, and their parents
    for rel in entries:
        parts = rel.split("/")[:-1]
        wanted.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    for rel in sorted(tree.folders - wanted):
        report.problems.append(f"folder {rel!r} holds no listed file")
    present = tree.entries - {SUMS}
    report.unlisted = sorted(p for p in tree.files - entries.keys() if p not in (SUMS, RUN))
    report.missing = sorted(entries.keys() - present)
    to_hash = sorted(entries.keys() & tree.files)
    digests = _hash_all(folder, to_hash, workers or os.cpu_count() or 1, stall)
    for rel in to_hash:
        report.checked += 1
        digest = digests[rel]
        if isinstance(digest, OSError):
            report.problems.append(f"cannot read {rel!r}: {_reason(digest)}")
        elif digest != entries[rel]:
            report.altered.append(rel)
    readable = MANIFEST in tree.files and not isinstance(digests.get(MANIFEST), OSError)
    return check_manifest(report, entries, readable, lambda: load(folder))


def check_manifest(report: VerifyReport, entries: dict[str, str], readable: bool,
                   read: Callable[[], dict[str, Any]]) -> VerifyReport:
    """The part of ``verify`` after the hashes, for a folder and for one at a URL alike:
    ``SHA256SUMS`` covers the manifest, and (when the manifest is there, ``readable``, and
    unaltered) the manifest lists the same files and checksums."""
    if MANIFEST not in entries:
        report.problems.append(f"{SUMS} does not cover {MANIFEST}")
    if not readable or MANIFEST in report.altered:
        return report
    try:
        manifest = read()
    except RunError as exc:
        report.problems.append(str(exc))
        return report
    recorded = {f["path"]: f["sha256"] for f in manifest["files"]}
    if recorded != {k: v for k, v in entries.items() if k != MANIFEST}:
        report.problems.append(f"{MANIFEST} and {SUMS} list different files or checksums")
    return report


def _reason(exc: Exception) -> str:
    """Why reading failed, without the errno and path an OSError's text repeats."""
    return getattr(exc, "strerror", None) or str(exc)
