"""Checksums and manifests: ``SHA256SUMS`` in GNU coreutils format, ``manifest.json``, verify."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUMS = "SHA256SUMS"
MANIFEST = "manifest.json"
METADATA = frozenset({SUMS, MANIFEST})
_CHUNK = 1 << 20
_MAP_WINDOW = 1 << 23  # a multiple of mmap.ALLOCATIONGRANULARITY


def sha256_file(path: Path) -> tuple[str, int]:
    """Hex digest and size of a file.

    Hashed through memory maps where it can be: straight from the page cache, without copying
    the file through read buffers (a fifth of the time for a file just written). The maps are
    windows of 8 MiB, so that the process's resident memory stays flat for any file size.
    """
    import mmap

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size:
            try:
                for offset in range(0, size, _MAP_WINDOW):
                    with mmap.mmap(handle.fileno(), min(_MAP_WINDOW, size - offset),
                                   access=mmap.ACCESS_READ, offset=offset) as mapped:
                        digest.update(mapped)
                return digest.hexdigest(), size
            except (OSError, ValueError):  # a file system without mmap: read it instead
                digest = hashlib.sha256()
                handle.seek(0)
        size = 0
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` so that readers see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def sums_text(files: Iterable[dict[str, Any]]) -> str:
    """``<sha256>  <path>`` lines, sorted by path, LF endings: what ``sha256sum -c`` reads."""
    rows = sorted((f["path"], f["sha256"]) for f in files)
    return "".join(f"{digest}  {path}\n" for path, digest in rows)


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write SHA256SUMS, then manifest.json, each atomically."""
    atomic_write(folder / SUMS, sums_text(manifest["files"]).encode())
    atomic_write(folder / MANIFEST, manifest_text(manifest).encode())


def manifest_text(manifest: dict[str, Any]) -> str:
    """Indented JSON, with each entry of ``files`` on one line.

    A folder may list tens of thousands of files; one line each keeps the manifest readable and
    lets the C encoder write them (an indented dump goes through the slow pure-Python one).
    """
    head = {k: v for k, v in manifest.items() if k != "files"}
    text = json.dumps(head, indent=2, ensure_ascii=False)
    if "files" not in manifest:
        return text + "\n"
    rows = ",\n    ".join(json.dumps(f, ensure_ascii=False) for f in manifest["files"])
    files = f'"files": [\n    {rows}\n  ]' if rows else '"files": []'
    return (text[:-2] + ",\n  " if head else "{\n  ") + files + "\n}\n"


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest, or None when there is none."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def library_versions(hdf5: bool, extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of what shaped the bytes; libhdf5 only when HDF5 was written.

    ``extra`` names further distributions a dataset depends on (its decoder, its compressor).
    """
    versions = {"python": platform.python_version(), "numpy": _numpy_version()}
    if hdf5:
        import h5py

        versions["h5py"] = h5py.__version__
        versions["libhdf5"] = h5py.version.hdf5_version
    if extra:
        # importlib.metadata costs a run that needs none of it tens of milliseconds to import.
        from importlib.metadata import PackageNotFoundError, version
    for name in extra:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _numpy_version() -> str:
    """numpy's version, without importing numpy when this run has not (it takes a fifth of a
    Yin-Yang run): read from numpy/version.py, whose first assignment is the version."""
    import sys

    if "numpy" not in sys.modules:
        from importlib.util import find_spec

        try:
            spec = find_spec("numpy")
            text = Path(spec.origin).with_name("version.py").read_text()  # type: ignore[union-attr]
            for line in text.splitlines():
                name, _, value = line.partition("=")
                if name.split(":")[0].strip() == "version":
                    return value.strip().strip("\"'")
        except (AttributeError, OSError, TypeError):
            pass
    import numpy

    return numpy.__version__


def data_files(folder: Path) -> list[str]:
    """Every file below ``folder`` except the manifest pair, as sorted relative POSIX paths."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        rel_root = Path(root).relative_to(folder)
        for name in names:
            rel = (rel_root / name).as_posix()
            if rel not in METADATA:
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
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\n")
            digest, sep, rel = line.partition("  ")
            if not sep or len(digest) != 64 or not rel:
                bad.append(f"{SUMS} line {number} is not '<sha256>  <path>'")
                continue
            entries[rel] = digest
    return entries, bad


def verify(folder: Path, workers: int | None = None) -> VerifyReport:
    """Re-hash every listed file and compare the folder against SHA256SUMS and manifest.json."""
    report = VerifyReport()
    sums_path = folder / SUMS
    if not sums_path.is_file():
        report.problems.append(f"no {SUMS} in {folder}: not a finished neurodata folder")
        return report
    entries, bad = parse_sums(sums_path)
    report.problems.extend(bad)
    manifest = None
    try:
        manifest = read_manifest(folder)
    except (OSError, ValueError) as exc:
        report.problems.append(f"{MANIFEST} cannot be read: {exc}")
    if manifest is None and not report.problems:
        report.problems.append(f"no {MANIFEST} in {folder}")
    elif manifest is not None:
        listed = {f["path"]: f["sha256"] for f in manifest.get("files", [])}
        if listed != entries:
            report.problems.append(f"{MANIFEST} and {SUMS} list different files or checksums")

    present = set(data_files(folder))
    report.unlisted = sorted(present - set(entries))
    report.missing = sorted(set(entries) - present)
    to_hash = sorted(set(entries) & present)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        digests = pool.map(lambda rel: sha256_file(folder / rel)[0], to_hash)
        for rel, digest in zip(to_hash, digests, strict=True):
            report.checked += 1
            if digest != entries[rel]:
                report.altered.append(rel)
    return report


def finished_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a finished folder, or a RunError saying why there is none."""
    from .errors import RunError

    try:
        manifest = read_manifest(folder)
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot read {Path(folder) / MANIFEST}: {exc}") from None
    if manifest is None:
        raise RunError(f"{folder} has no {MANIFEST}: not a finished neurodata folder")
    return manifest
