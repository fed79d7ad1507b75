"""Checksums and manifests: ``SHA256SUMS`` in GNU coreutils format, ``manifest.json``, verify.

``SHA256SUMS`` lists every file of a finished folder, ``manifest.json`` included, so both
``neurodata verify`` and ``sha256sum -c`` catch an edit of the manifest. ``load`` is the one
place that opens a finished folder: the reader, ``preview``, ``info`` and ``verify`` all use it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RunError

SUMS = "SHA256SUMS"
MANIFEST = "manifest.json"
METADATA = frozenset({SUMS, MANIFEST})


@contextmanager
def staged(root: Path, rel: str, make_parent: bool = True) -> Iterator[Path]:
    """A temporary path to write ``root/rel`` at, renamed into place when the block ends: readers
    see the old file or the new one, never half of one, and a failed write leaves no temporary
    file behind.

    ``make_parent=False`` when the caller made the folder (a writer of one file per sample).
    """
    final = root / rel
    if make_parent:
        final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}-{os.urandom(4).hex()}.part")
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:  # a full disk names no file
            raise OSError(exc.errno, exc.strerror, str(final)) from None
        raise


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through ``staged``."""
    with staged(path.parent, path.name, make_parent=False) as tmp:
        tmp.write_bytes(data)


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
    import hashlib

    data = manifest_text(manifest).encode()
    entries = [(f["path"], f["sha256"]) for f in manifest["files"]]
    entries.append((MANIFEST, hashlib.sha256(data).hexdigest()))
    return data, sums_text(entries).encode()


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write manifest.json, then SHA256SUMS."""
    data, sums = metadata(manifest)
    atomic_write(folder / MANIFEST, data)
    atomic_write(folder / SUMS, sums)


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest as JSON, or None when there is none (no shape checks)."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


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
    for key, kind in _OPTIONAL.items():  # read by info and the reader where present
        if key in manifest and not isinstance(manifest[key], kind):
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
        raise RunError(f"cannot read {folder / MANIFEST}: {exc}") from None
    if manifest is None:
        raise RunError(f"{folder} has no {MANIFEST}: not a finished neurodata folder")
    problem = check_shape(manifest)
    if problem:
        raise RunError(f"{folder / MANIFEST} {problem}")
    return manifest


def data_files(folder: Path) -> list[str]:
    """Every file below ``folder`` except SHA256SUMS, as sorted relative POSIX paths."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        rel_root = Path(root).relative_to(folder)
        for name in names:
            rel = (rel_root / name).as_posix()
            if rel != SUMS:
                found.append(rel)
    return sorted(found)


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


def parse_sums(path: Path) -> tuple[dict[str, str], list[str]]:
    """Entries of a SHA256SUMS file and any lines that are not in its format."""
    entries: dict[str, str] = {}
    bad: list[str] = []
    with open(path, encoding="utf-8", newline="\n") as handle:
        for number, line in enumerate(handle, 1):
            line = line[:-1] if line.endswith("\n") else line
            escaped = line.startswith("\\")
            digest, sep, rel = (line[1:] if escaped else line).partition("  ")
            name = _unescape(rel) if escaped else rel
            if not sep or len(digest) != 64 or not name:
                bad.append(f"{SUMS} line {number} is not '<sha256>  <path>'")
                continue
            entries[name] = digest
    return entries, bad


def verify(folder: Path, workers: int | None = None) -> VerifyReport:
    """Re-hash every file against SHA256SUMS (the manifest among them), then check that the
    manifest is well formed and lists the same files."""
    from concurrent.futures import ThreadPoolExecutor

    from .writers import sha256_file

    report = VerifyReport()
    sums_path = folder / SUMS
    if not sums_path.is_file():
        report.problems.append(f"no {SUMS} in {folder}: not a finished neurodata folder")
        return report
    entries, bad = parse_sums(sums_path)
    report.problems.extend(bad)
    present = set(data_files(folder))
    report.unlisted = sorted(present - set(entries))
    report.missing = sorted(set(entries) - present)
    to_hash = sorted(set(entries) & present)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        digests = pool.map(lambda rel: sha256_file(folder / rel), to_hash)
        for rel, digest in zip(to_hash, digests, strict=True):
            report.checked += 1
            if digest != entries[rel]:
                report.altered.append(rel)
    if MANIFEST not in entries:
        report.problems.append(f"{SUMS} does not cover {MANIFEST}")
    if MANIFEST in report.altered or MANIFEST in report.missing:
        return report
    try:
        manifest = load(folder)
    except RunError as exc:
        report.problems.append(str(exc))
        return report
    listed = {f["path"]: f["sha256"] for f in manifest["files"]}
    if listed != {k: v for k, v in entries.items() if k != MANIFEST}:
        report.problems.append(f"{MANIFEST} and {SUMS} list different files or checksums")
    return report
