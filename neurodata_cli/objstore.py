"""Output folders in an object store (``--out s3://bucket/prefix``), through fsspec.

Nothing here imports fsspec at module level: a local output needs no extra package, and a URL
needs ``pip install 'neurodata[cloud]'``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import secrets
import socket
import sys
import threading
import time
from typing import Any

from .errors import ConfigError, RunError
from .storage import is_url, url_fs


def refuse_url(value: Any, what: str) -> None:
    """One line (exit 2) for a URL where only a local path works: never a local folder named
    ``s3:`` that a user would take for the bucket."""
    if is_url(value):
        raise ConfigError(f"{what} {value}: a URL is not supported here; give a local path")


# ---- the store ---------------------------------------------------------------------------------

# A lock object whose holder has not renewed it for this long is stale: a run may break it. The
# holder renews it every LEASE / 4 seconds while it runs. (NEURODATA_LEASE: seconds.)
LEASE = float(os.environ.get("NEURODATA_LEASE", "120"))
CHUNK = 8 << 20  # bytes per read when hashing an object


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) of an output ``url`` (``storage.url_fs``), folders
    made as objects are written where the store has real ones (``file://``)."""
    fs, path = url_fs(url)
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        # file://: folders are real here, and made as objects are written into them
        import fsspec

        fs = fsspec.filesystem("file", auto_mkdir=True)
    return fs, path.rstrip("/")


def failure(url: str, exc: BaseException) -> RunError:
    """A store's error as one line naming the URL."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return RunError(f"{url}: {text}")


def sha256_object(fs: Any, path: str) -> str:
    """The sha256 of one stored object, read in large ranged chunks."""
    digest = hashlib.sha256()
    with fs.open(path, "rb", block_size=CHUNK) as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def listing(fs: Any, root: str) -> dict[str, int]:
    """Every object below ``root`` by its path relative to it, with its size (one listing)."""
    base = root + "/"
    fs.invalidate_cache()  # see what other processes (workers, runs) wrote since
    try:
        found = fs.find(root, detail=True)
    except FileNotFoundError:
        return {}
    return {name[len(base):]: int(info.get("size") or 0) for name, info in found.items()
            if name.startswith(base) and info.get("type", "file") == "file"}


def read_object(fs: Any, path: str) -> bytes | None:
    """An object's bytes, or None when there is none."""
    try:
        return bytes(fs.cat_file(path))
    except FileNotFoundError:
        return None


# ---- a worker's shard --------------------------------------------------------------------------

def upload_shard(stage: str, local: str, record: dict[str, Any], record_path: str) -> None:
    """Upload a shard built in the local folder ``local`` into the stage at ``stage`` (a URL):
    its files, then its record, last. A shard counts as done only once its record is stored,
    and a resume checks its files against their digests first."""
    fs, root = filesystem(stage)
    try:
        for f in record["files"]:
            fs.put_file(os.path.join(local, f["path"]), f"{root}/{f['path']}")
        fs.pipe_file(f"{root}/{record_path}", json.dumps(record).encode())
    except OSError as exc:
        raise failure(stage, exc) from None


# ---- the lock: a lease object ------------------------------------------------------------------

class Lease:
    """One run at a time per output folder in a store, with no process lock to lean on.

    The lock is an object created only if absent (a conditional put, ``If-None-Match: *`` on
    S3), holding who took it and when. Its holder renews it while it runs; one not renewed
    for ``LEASE`` seconds is stale (its run was killed, or its machine lost), and so is one
    taken on this host by a process that is gone: another run then deletes and takes it.
    """

    def __init__(self, fs: Any, path: str, url: str):
        self.fs, self.path, self.url = fs, path, url
        self.me = {"run": secrets.token_hex(8), "host": socket.gethostname(), "pid": os.getpid()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({**self.me, "time": time.time()}).encode()

    def holder(self) -> dict[str, Any] | None:
        data = read_object(self.fs, self.path)
        try:
            held = json.loads(data) if data is not None else None
        except ValueError:
            held = {}
        return held if isinstance(held, dict) or held is None else {}

    def stale(self, held: dict[str, Any]) -> bool:
        age = time.time() - _taken(held)
        if age > LEASE:
            return True
        if held.get("host") == self.me["host"] and isinstance(held.get("pid"), int):
            try:
                os.kill(held["pid"], 0)
            except ProcessLookupError:
                return True  # killed on this machine (kill -9): no need to wait out the lease
            except PermissionError:
                return False
        return False

    def try_take(self) -> dict[str, Any] | None:
        """None when taken; else who holds it."""
        try:
            self.fs.pipe_file(self.path, self._body(), mode="create")
            return None
        except FileExistsError:
            pass
        try:
            self.fs.invalidate_cache(self.path)
            etag = self.fs.info(self.path).get("ETag")  # before the body: see _break
        except FileNotFoundError:
            return {}  # released meanwhile
        held = self.holder()
        if held is None:
            return {}
        if self.stale(held):
            if self._break(etag):
                print(f"broke the stale lock {self.url} of run {describe(held)}",
                      file=sys.stderr)
            return {}
        return held

    def _break(self, etag: str | None) -> bool:
        """Delete the lock only if it is still the object read (its ETag): two runs that both
        find it stale must not delete the lock one of them has just taken. (The tag was read
        before the body, so a lock retaken in between has another tag and stays.) Stores
        without conditional deletes delete it as it is."""
        if etag and hasattr(self.fs, "call_s3"):
            bucket, key, _ = self.fs.split_path(self.path)
            try:
                self.fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=etag)
            except OSError:  # 412: taken again since, or already gone
                return False
            return True
        self.fs.rm_file(self.path)
        return True

    def held(self) -> bool:
        """Whether the lock is still this run's: a run stalled past its lease (a suspended
        machine) may have had it broken and taken by another run."""
        self.fs.invalidate_cache(self.path)
        held = self.holder()
        return held is not None and held.get("run") == self.me["run"]

    def renew(self) -> None:
        while not self._stop.wait(LEASE / 4):
            try:
                held = self.holder()
                if held is None or held.get("run") != self.me["run"]:
                    return  # broken by another run: the commit says so (``held``)
                self.fs.pipe_file(self.path, self._body())
            except Exception:  # noqa: BLE001  (a store's blip: try again at the next tick)
                continue

    def start(self) -> None:
        self._thread = threading.Thread(target=self.renew, daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()  # no renewal after the release
        try:
            self.fs.invalidate_cache(self.path)
            etag = self.fs.info(self.path).get("ETag")
        except FileNotFoundError:
            return
        held = self.holder()
        if held is not None and held.get("run") == self.me["run"]:
            self._break(etag)  # only our own lock, even if another run took it meanwhile


def _taken(held: dict[str, Any]) -> float:
    """When the lock was last renewed; 0 (long ago: stale) for a time that is no finite
    number, as for a lock object that is no JSON."""
    try:
        taken = float(held.get("time") or 0)
    except (TypeError, ValueError):
        return 0.0
    return taken if math.isfinite(taken) else 0.0


def describe(held: dict[str, Any]) -> str:
    """``pid 123 on host, renewed 3 s ago``."""
    age = time.time() - _taken(held)
    return f"pid {held.get('pid')} on {held.get('host')}, renewed {age:.0f} s ago"


# ---- verify, info, preview of a folder in a store ---------------------------------------------

def load_url(url: str) -> dict[str, Any]:
    """The checked manifest of a finished folder at ``url`` (``manifest.load`` for a URL):
    what ``open_dataset``, ``info``, ``preview`` and ``verify`` read."""
    from .manifest import MANIFEST, SUMS, checked

    fs, root = filesystem(url)
    try:
        data = read_object(fs, f"{root}/{MANIFEST}")
        manifest = None if data is None else json.loads(data)
    except ValueError as exc:
        raise RunError(f"cannot read {url}/{MANIFEST}: {exc}") from None
    except OSError as exc:
        raise failure(url, exc) from None
    manifest = checked(manifest, url)
    # A store's commit removes SHA256SUMS first and writes it last (no rename there): without
    # it the folder is being replaced, and its files may already be the next run's.
    try:
        present = read_object(fs, f"{root}/{SUMS}") is not None
    except OSError as exc:
        raise failure(f"{url}/{SUMS}", exc) from None
    if not present:
        raise RunError(f"{url} has no {SUMS}: not a finished neurodata folder (a run may be "
                       "committing into it; open it once that run is done)")
    return manifest


def verify_url(url: str) -> Any:
    """``manifest.verify`` for a folder in a store: every object re-hashed against
    SHA256SUMS, the manifest checked to list the same files; ``run.json`` alone unlisted."""
    from .manifest import MANIFEST, RUN, SUMS, VerifyReport, check_manifest, read_sums

    report = VerifyReport()
    fs, root = filesystem(url)
    try:
        objects = listing(fs, root)
        sums = read_object(fs, f"{root}/{SUMS}")
    except OSError as exc:
        raise failure(url, exc) from None
    if sums is None:
        report.problems.append(f"no {SUMS} in {url}: not a finished neurodata folder")
        return report
    entries, bad = read_sums(io.BytesIO(sums))
    report.problems.extend(bad)
    report.unlisted = sorted(p for p in objects.keys() - entries.keys() if p not in (SUMS, RUN))
    report.missing = sorted(entries.keys() - objects.keys())
    for rel in sorted(entries.keys() & objects.keys()):
        report.checked += 1
        try:
            if sha256_object(fs, f"{root}/{rel}") != entries[rel]:
                report.altered.append(rel)
        except OSError as exc:
            report.problems.append(f"cannot read {rel!r}: {exc}")
    return check_manifest(report, entries, MANIFEST in objects, lambda: load_url(url))


def download_split(url: str, split: str | None, into: str) -> str:
    """The manifest and one split's files (every split's when None) of the folder at ``url``,
    copied into the local folder ``into``: what ``preview`` draws from."""
    from .manifest import MANIFEST
    manifest = load_url(url)  # as open_dataset: a folder mid-commit is not finished
    fs, root = filesystem(url)
    if split is None:
        split = "train" if "train" in manifest["splits"] else next(iter(manifest["splits"]), "")
    for f in [{"path": MANIFEST}, *(f for f in manifest["files"] if f["split"] == split)]:
        target = os.path.join(into, *f["path"].split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            fs.get_file(f"{root}/{f['path']}", target)
        except OSError as exc:
            raise failure(f"{url}/{f['path']}", exc) from None
    return into
