"""A run whose output is a URL (``--out s3://bucket/prefix``): the engine's run, into a store.

Object stores have no rename and no process lock, so the steps that make a local run safe are
done otherwise (docs/cluster.md, "No shared filesystem")::

    <prefix>/<dataset>/.<version>.lock                lease object: created only if absent
    <prefix>/<dataset>/.<version>.<splits>.partial/   the stage: shard files, uploaded whole
        .neurodata/run.json                           this run's config fingerprint
        .neurodata/inputs.json.gz                     the inputs its shards were planned over
        .neurodata/index/                             an archive's index (the scan's cache)
        .neurodata/shards/<key>.json                  uploaded after its files: shard done
        .neurodata/merge.json                         the manifest a commit merges into
    <prefix>/<dataset>/<version>/                     the folder: its files copied from the
        manifest.json, then SHA256SUMS, last          stage; finished only once SHA256SUMS is

Workers build each shard into a local temporary folder and upload it (``run_shard_into``); the
client never needs to see their disks. A killed run leaves the stage, whose shards the next run
takes after re-hashing them. The commit first removes the old folder's SHA256SUMS (from then on
the folder is unfinished), replaces its objects and writes manifest.json and SHA256SUMS last;
cut short, it is redone from the stage by the next run. A run of some splits into a folder
holding others merges as a local run does, keeping the other splits' objects where they are.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .blocks import check_shards
from .datasets.base import Config, Dataset, Shard
from .engine import (
    INTERNAL,
    Materialiser,
    RunSummary,
    _what_changed,
    check_split_names,
    fingerprint,
)
from .errors import FolderExists, RunError
from .manifest import MANIFEST, RUN, SUMS, check_shape, metadata, read_sums
from .objstore import (
    LEASE,
    Lease,
    describe,
    failure,
    filesystem,
    listing,
    read_object,
    sha256_object,
    verify_url,
)


class URLFolder(str):
    """The output folder's URL, where the engine's messages and records take a ``Path``."""

    def exists(self) -> bool:
        fs, root = filesystem(self)
        return bool(listing(fs, root))

    def absolute(self) -> URLFolder:
        return self


class RemoteMaterialiser(Materialiser):
    """``Materialiser`` for an output URL; the dataset, the plan, the shards' bytes, the
    manifest and the reuse and merge rules are the local run's, so the folder is byte for byte
    the same."""

    def __init__(self, ds: Dataset[Any], cfg: Config, out: str, **kwargs: Any):
        super().__init__(ds, cfg, Path("."), **kwargs)
        self.url = out.rstrip("/")
        self.fs, root = filesystem(self.url)
        self.rbase = f"{root}/{self.name}"
        self.rfolder = f"{self.rbase}/{ds.version}"
        self.folder = URLFolder(f"{self.url}/{self.name}/{ds.version}")  # type: ignore

    # ---- the run ------------------------------------------------------------------------
    def _run(self, on_shard: Callable[[dict[str, Any]], None] | None) -> RunSummary:
        start = time.perf_counter()
        self.cfg = self.ds.locate(self.cfg)
        self.claim = self.ds.splits(self.cfg)
        check_split_names(self.claim)
        name = f".{self.ds.version}.{'+'.join(self.claim)}.partial"
        self.rstage = f"{self.rbase}/{name}"
        self.stage_url = f"{self.url}/{self.name}/{name}"
        self.config = self.cfg.recorded()
        self.fingerprint = fingerprint(self.config)
        scanning = self.ds.needs_scan(self.cfg)
        shards = [] if scanning else self._plan()
        with tempfile.TemporaryDirectory(prefix="neurodata-client-") as scratch, self._lock():
            # The client's own scratch: an archive's index (scan) and the split files.
            self.stage = Path(scratch)
            existing = self._check_output()
            if existing is not None and not scanning:
                reused = self._reuse_or_merge(existing, shards, start)
                if reused is not None:
                    return reused
            self._open_remote_stage()
            if scanning:
                self._internal.mkdir(parents=True)
                kept = self._sync_scan(None)
                self.cfg = self.ds.scan(self.cfg, self._internal)
                self._sync_scan(kept)
                self.config = self.cfg.recorded()
                self.fingerprint = fingerprint(self.config)
                shards = self._plan()
                if existing is not None:
                    reused = self._reuse_or_merge(existing, shards, start)
                    if reused is not None:
                        if not self._staged_records():  # as locally: its index not left
                            self._remove(self.rstage)
                        return reused
            self._check_remote_inputs(shards)
            done = self._finished_remote(shards)
            todo = [s for s in shards if s.key not in done]
            records = self._build(shards, done, todo, on_shard, self.stage_url)
            self._check_inputs_held(shards)
            check_shards(self.ds.name, records, self._internal / "shards")
            extra = self._split_files(records)
            self._upload_split_files(extra)
            records += extra
            manifest = self._manifest(records, self._merge)
            self._commit_remote(manifest, shards)
        return self._summary(manifest, time.perf_counter() - start, len(shards) - len(todo))

    def _check_out_outside_inputs(self) -> None:
        """A store's folder is never inside a local input folder."""

    # ---- the lock -----------------------------------------------------------------------
    @contextmanager
    def _lock(self) -> Iterator[None]:
        """A lease on ``.<version>.lock``; another run waits (``wait`` seconds), then finds
        the folder finished (and reuses it) or says whose lease it waited on."""
        lock_url = f"{self.url}/{self.name}/.{self.ds.version}.lock"
        lease = Lease(self.fs, f"{self.rbase}/.{self.ds.version}.lock", lock_url)
        deadline = time.monotonic() + self.wait
        said = False
        try:
            while (held := lease.try_take()) is not None:
                if not held:
                    continue  # released or broken just now: try again at once
                if time.monotonic() > deadline:
                    raise RunError(
                        f"another neurodata run ({describe(held)}) is writing {self.folder}; it "
                        f"did not finish within {self.wait:g} s ({self._flag('wait')}); run this "
                        f"command again when it is done (a lock not renewed for its lease "
                        f"is broken: delete {lock_url} only if that run is gone)")
                if not said and not self.quiet and self.wait > 0:
                    said = True
                    print(f"{self.name}: waiting for the run ({describe(held)}) that holds "
                          f"{lock_url} (up to {self.wait:g} s, {self._flag('wait')})",
                          file=sys.stderr, flush=True)
                time.sleep(0.2)
        except OSError as exc:
            raise failure(lock_url, exc) from None
        lease.start()
        self._lease = lease
        try:
            yield
        finally:
            lease.release()

    # ---- the finished folder ------------------------------------------------------------
    def _check_output(self) -> dict[str, Any] | None:
        """The finished folder's manifest, if it is one (None: nothing there, or a folder this
        run replaces: ``overwrite``, or one this run's own commit left unfinished, which sets
        the manifest that commit merged into)."""
        self._merge: dict[str, Any] | None = None
        objects = listing(self.fs, self.rfolder)
        if not objects:
            return None
        data = read_object(self.fs, f"{self.rfolder}/{MANIFEST}")
        try:
            existing = json.loads(data) if data is not None and SUMS in objects else None
        except ValueError:
            existing = None
        problem = None if existing is None else check_shape(existing)
        if existing is not None and not problem:
            return existing
        data = read_object(self.fs, f"{self.rstage}/{INTERNAL}/merge.json")
        # This run's commit, cut short: its merge.json is there until another commit begins.
        if data is not None and self._staged_fingerprint() == self.fingerprint:
            try:
                merge = json.loads(data)  # redone as it was begun
            except ValueError:
                merge = []  # refused below, as a manifest of the wrong shape
            if merge is not None and check_shape(merge):
                raise RunError(f"{self.stage_url}/{INTERNAL}/merge.json is not the manifest of "
                               f"a folder: the commit cut short there cannot be redone")
            self._merge = merge
            return None
        merging = self._merges_begun()
        if merging:  # replacing the folder would drop the splits that merge keeps
            raise FolderExists(
                f"{self.folder} is unfinished: the merge committed from {merging[0]} was cut "
                f"short; run that run's command again to finish it, then this one (or remove "
                f"that stage to have {self._flag('overwrite')} replace the folder)")
        if self.overwrite:
            return None
        raise FolderExists(f"{self.folder} exists but is not a finished neurodata folder; "
                           f"{self._hint()}")

    def _merges_begun(self) -> list[str]:
        """The URLs of the stages whose commit began as a merge (a merge.json naming the
        manifest it merged into), which ``_check_output`` did not take for this run's."""
        found = []
        for path in self._merge_records():
            stage = path[len(self.rbase) + 1:].split("/")[0]
            if (read_object(self.fs, path) or b"null").strip() != b"null":
                found.append(f"{self.url}/{self.name}/{stage}")
        return found

    def _merge_records(self) -> list[str]:
        """The merge.json of every stage of this version (each written as its commit began)."""
        return sorted(self.fs.glob(
            f"{self.rbase}/.{self.ds.version}.*.partial/{INTERNAL}/merge.json"))

    def _reuse_or_merge(self, existing: dict[str, Any], shards: list[Shard],
                        start: float) -> RunSummary | None:
        """The local run's ``_reuse``, else its ``_check_merge`` (which refuses, or sets the
        manifest this run merges into: None replaces the folder)."""
        reused = self._reuse(existing, shards, start)
        if reused is not None and self._staged_fingerprint() == self.fingerprint:
            self._remove(self.rstage)  # a commit killed as it removed its stage: done now
        if reused is None:
            self._merge = self._check_merge(existing, shards)
        return reused

    def _check_files(self, existing: dict[str, Any]) -> str | None:
        if self.verify:
            return verify_url(self.folder).first(str(self.folder))  # type: ignore[arg-type]
        if not self._manifest_listed():
            return f"{self.folder}/{MANIFEST} does not match its {SUMS} (see neurodata verify)"
        objects = listing(self.fs, self.rfolder)
        for f in existing["files"]:
            if f["path"] not in objects:
                return f"{self.folder}/{f['path']} is missing"
            if objects[f["path"]] != f["bytes"]:
                return (f"{self.folder}/{f['path']} has {objects[f['path']]} bytes where its "
                        f"manifest lists {f['bytes']}")
        return None

    def _manifest_listed(self) -> bool:
        sums = read_object(self.fs, f"{self.rfolder}/{SUMS}") or b""
        manifest = read_object(self.fs, f"{self.rfolder}/{MANIFEST}") or b""
        return read_sums(io.BytesIO(sums))[0].get(MANIFEST) == hashlib.sha256(manifest).hexdigest()

    def _run_json(self) -> bytes:
        return read_object(self.fs, f"{self.rfolder}/{RUN}") or b""

    # ---- the stage ----------------------------------------------------------------------
    def _staged_fingerprint(self) -> str | None:
        data = read_object(self.fs, f"{self.rstage}/{INTERNAL}/run.json")
        try:
            staged = json.loads(data) if data is not None else None
        except ValueError:
            return None
        return staged.get("fingerprint") if isinstance(staged, dict) else None

    def _staged_records(self) -> list[str]:
        return [p for p in listing(self.fs, f"{self.rstage}/{INTERNAL}/shards")
                if p.endswith(".json")]

    def _open_remote_stage(self) -> None:
        """Resume a stage of this config; discard one of another whose shards are none, or
        with ``overwrite``; else refuse (its command resumes it)."""
        staged = self._staged_fingerprint()
        if staged == self.fingerprint:
            return
        if staged is not None and self._staged_records() and not self.overwrite:
            raise RunError(f"an interrupted run with a different config is staged in "
                           f"{self.stage_url}; rerun its command to resume it, or pass "
                           f"{self._flag('overwrite')} to discard it")
        self._remove(self.rstage)
        self.fs.pipe_file(f"{self.rstage}/{INTERNAL}/run.json", json.dumps(
            {"fingerprint": self.fingerprint, "config": self.config}, indent=2).encode())

    def _sync_scan(self, kept: dict[str, str] | None) -> dict[str, str]:
        """The scan's cache (an archive's index) kept in the stage's ``.neurodata/index/``,
        so a client run again after a kill need not read the archive through again: before
        the scan (``kept`` None) it is fetched into the scratch, where the scan checks that it
        is of the archive as it is now; after it, uploaded if the scan wrote it anew. The old
        one goes first: a client killed while uploading leaves an index short of files, which
        the next scan takes for none (as a scan killed locally leaves)."""
        index = f"{self.rstage}/{INTERNAL}/index"
        if kept is None:
            for rel in listing(self.fs, index):
                (self._internal / rel).parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(f"{index}/{rel}", str(self._internal / rel))
        files = {p.relative_to(self._internal).as_posix(): hashlib.sha256(
            p.read_bytes()).hexdigest() for p in self._internal.rglob("*") if p.is_file()}
        if kept is not None and files != kept:
            self._remove(index)
            for rel in sorted(files):
                self.fs.put_file(str(self._internal / rel), f"{index}/{rel}")
        return files

    def _check_remote_inputs(self, shards: list[Shard]) -> None:
        """As ``_check_inputs``: a resume only over the inputs its shards were planned over."""
        listed, text = self._listing(shards)
        self._inputs = text
        path = f"{self.rstage}/{INTERNAL}/inputs.json.gz"
        try:
            staged = gzip.decompress(read_object(self.fs, path) or b"")
        except (OSError, EOFError, zlib.error):
            staged = None
        if staged == text:
            return
        if self._staged_records():
            why = ("the interrupted run recorded no input listing" if not staged else
                   f"inputs changed since the interrupted run ({_what_changed(staged, listed)})")
            print(f"{self.name}: {why}; starting again", file=sys.stderr)
            self._remove(f"{self.rstage}/{INTERNAL}/shards")
        self.fs.pipe_file(path, gzip.compress(text, compresslevel=1))

    def _finished_remote(self, shards: list[Shard]) -> dict[str, dict[str, Any]]:
        """Records of shards an earlier attempt finished whose files are stored with the
        sizes and sha256 they record (each object re-hashed)."""
        wanted = {s.key for s in shards}
        objects = listing(self.fs, self.rstage)
        done: dict[str, dict[str, Any]] = {}
        for rel in sorted(objects):
            if not (rel.startswith(f"{INTERNAL}/shards/") and rel.endswith(".json")):
                continue
            try:
                record = json.loads(read_object(self.fs, f"{self.rstage}/{rel}") or b"")
            except ValueError:
                continue
            if not isinstance(record, dict) or record.get("key") not in wanted:
                continue
            if all(objects.get(f["path"]) == f["bytes"]
                   and sha256_object(self.fs, f"{self.rstage}/{f['path']}") == f["sha256"]
                   for f in record["files"]):
                done[record["key"]] = record
        return done

    def _upload_split_files(self, records: list[dict[str, Any]]) -> None:
        """The split files the client wrote into its scratch, into the stage."""
        for record in records:
            for f in record["files"]:
                self.fs.put_file(str(self.stage / f["path"]), f"{self.rstage}/{f['path']}")

    def _remove(self, path: str) -> None:
        if listing(self.fs, path):
            self.fs.rm(path, recursive=True)

    # ---- the commit ---------------------------------------------------------------------
    def _commit_remote(self, manifest: dict[str, Any], shards: list[Shard]) -> None:
        """Make the folder from the stage; redone whole by the next run if cut short, since
        the stage is removed only after SHA256SUMS, and the folder is unfinished (no
        SHA256SUMS) from the first step to the last. A merge leaves the other splits' objects
        (and run.json, rewritten last) in place; merge.json lets a redo merge too."""
        text, sums = metadata(manifest)
        keep = {f["path"] for f in manifest["files"]} | {RUN, SUMS}  # SUMS: removed first
        mine = [f for f in manifest["files"] if f["split"] in self.claim]
        ours = {f["path"] for f in mine}
        if not self._lease.held():  # another run broke it: its folder is not ours to replace
            raise RunError(f"this run lost its lock {self.url}/{self.name}/.{self.ds.version}"
                           f".lock (not renewed for {LEASE:g} s: was the machine suspended?), "
                           f"which another run broke; nothing was committed to {self.folder}")
        record = self._run_record(self._merge is not None, shards)  # before run.json changes
        staged, old = listing(self.fs, self.rstage), listing(self.fs, self.rfolder)
        for f in manifest["files"]:  # as a local merge: nothing changes unless all are there
            staged_here = f["path"] in ours
            if (staged if staged_here else old).get(f["path"]) != f["bytes"]:
                where = f"{self.stage_url if staged_here else self.folder}/{f['path']}"
                raise RunError(f"cannot commit {self.folder}: {where} is missing or cut short; "
                               "the folder is left as it was")
        # A commit of another stage cut short began from the folder this one changes: its
        # merge.json no longer says what to redo (it would list objects no longer there).
        others = [p for p in self._merge_records() if not p.startswith(f"{self.rstage}/")]
        if others:
            self.fs.rm(others)
        self.fs.pipe_file(f"{self.rstage}/{INTERNAL}/merge.json", json.dumps(self._merge).encode())
        if SUMS in old:
            self.fs.rm_file(f"{self.rfolder}/{SUMS}")
        gone = [f"{self.rfolder}/{p}" for p in sorted(old) if p not in keep]
        if gone:
            self.fs.rm(gone)
        # One call: the store copies them side by side (s3fs: concurrent server-side copies).
        if mine:
            self.fs.copy([f"{self.rstage}/{f['path']}" for f in mine],
                         [f"{self.rfolder}/{f['path']}" for f in mine])
        self.fs.pipe_file(f"{self.rfolder}/{MANIFEST}", text)
        self.fs.pipe_file(f"{self.rfolder}/{RUN}", (json.dumps(record, indent=2) + "\n").encode())
        self.fs.pipe_file(f"{self.rfolder}/{SUMS}", sums)  # last: the folder is finished
        self._remove(self.rstage)
