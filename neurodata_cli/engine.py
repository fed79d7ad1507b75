"""The materialisation engine, shared by every dataset.

A dataset module says what is special about it (see ``datasets/__init__.py``). The engine does
the rest, once for all: stage the work in a hidden folder beside the output, build shards
(inline, in a process pool, or on a Dask cluster), record each finished shard so that a killed
run resumes, checksum every file, and move the result into place only when it is complete.

Layout while a run is in progress::

    <out>/<dataset>/.<version>.<scope>.partial/   data files as they are written
        .neurodata/run.json                       the config fingerprint of this run
        .neurodata/shards/<key>.json              one record per finished shard
        .neurodata/commit.json                    written when the run is moving into place
    <out>/<dataset>/<version>/                    appears (or is updated) only when complete
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import __version__, formats
from .errors import RunError
from .manifest import (
    MANIFEST,
    METADATA,
    atomic_write,
    library_versions,
    read_manifest,
    sha256_file,
    write_manifest,
)

INTERNAL = ".neurodata"
PART = ".part"  # files being written end so; they never reach a finished folder


@dataclass(frozen=True)
class Shard:
    """One unit of work: built by a pure function, written and recorded atomically."""

    key: str  # unique and filename-safe, e.g. "train-00003-of-00010"
    split: str
    units: int  # what the progress bar counts (samples, images)
    payload: Any = None  # dataset-specific and picklable


@dataclass
class Artifact:
    """A file a shard produces: where it goes, which codec writes it, and what it holds."""

    path: str  # relative to the version folder, '/'-separated
    kind: str  # a writer in formats.WRITERS
    data: Any
    records: int
    split: str


@dataclass
class ShardResult:
    """What a shard produces.

    ``artifacts`` may be lazy (a generator), so that a shard is built while it is written and
    never held whole; ``stats`` are read only after every artifact has been written, so a lazy
    build may fill them in as it goes.
    """

    artifacts: Iterable[Artifact]
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # per split
    # Calls that write the artifacts' ``formats.Slot`` arrays, in the files' own pages, once
    # the writers have laid the files out (see formats.reserve).
    fills: list[formats.Fill] = field(default_factory=list)


class Dataset(Protocol):
    """What a dataset module provides. It opens no files and starts no pools."""

    NAME: str
    VERSION: str
    RELEASE_NOTES: dict[str, str]
    UNIT: str
    SPLIT_SCOPED: bool  # True: runs may add splits to one folder one at a time
    SPLIT_KEYS: frozenset[str]  # config keys that may differ between splits of one folder

    def splits(self, cfg: Any) -> list[str]: ...
    def config_dict(self, cfg: Any) -> dict[str, Any]: ...
    def uses_hdf5(self, cfg: Any) -> bool: ...
    def plan(self, cfg: Any) -> list[Shard]: ...
    def build(self, cfg: Any, shard: Shard) -> ShardResult: ...
    def describe(self, stats: dict[str, dict[str, Any]]) -> str: ...


@dataclass
class RunSummary:
    folder: Path
    files: int
    bytes: int
    splits: dict[str, dict[str, Any]]
    seconds: float
    resumed_shards: int = 0
    line: str = ""


def merge_stats(into: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Numbers add, lists concatenate, mappings merge: shard statistics become split ones.

    Merges ``b`` into ``into`` in place (lists are extended, not copied, so merging a million
    label lines shard by shard stays linear) and returns it; ``b`` is never changed.
    """
    for key, value in b.items():
        if key not in into:
            into[key] = merge_stats({}, value) if isinstance(value, dict) else (
                list(value) if isinstance(value, list) else value)
        elif isinstance(value, dict):
            merge_stats(into[key], value)
        elif isinstance(value, list):
            into[key].extend(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            into[key] = into[key] + value
        else:
            into[key] = value
    return into


def fingerprint(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def _dataset(name: str) -> Dataset:
    from .datasets import get

    return get(name)


def run_shard(dataset: str, cfg: Any, shard: Shard, stage: str,
              exclusive: bool = True) -> dict[str, Any]:
    """Build one shard, write its files into the stage, record it. Runs in any worker.

    ``exclusive``: no other process can be building this shard at the same time (true of local
    runs; a cluster may run a shard again while a worker it presumed lost still writes).
    """
    ds = _dataset(dataset)
    result = ds.build(cfg, shard)
    root = Path(stage)
    if result.fills:
        files = write_filled(root, list(result.artifacts), result.fills, exclusive)
    else:
        files = [write_artifact(root, art, exclusive) for art in result.artifacts]
    record = {"key": shard.key, "split": shard.split, "units": shard.units, "files": files,
              "stats": result.stats}
    shard_dir = root / INTERNAL / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(shard_dir / f"{shard.key}.json", json.dumps(record).encode())
    return record


def write_artifact(root: Path, art: Artifact, exclusive: bool = True) -> dict[str, Any]:
    """Write one file under ``root`` and describe it for the manifest.

    The stage is hidden until the whole run commits, and a shard without its record is built
    again, rewriting every file it had begun; so an exclusive writer writes in place. Others
    write a file of their own and rename it: should a cluster run a shard twice at once, each
    writer finishes a whole file and the last rename wins. (For a dataset of one small file per
    sample, the rename was a third of the file system's work.)
    """
    path, target = _target(root, art, exclusive)
    digest = formats.write(art.kind, target, art.data)
    if digest is None:
        digest, size = sha256_file(target)
    else:
        size = target.stat().st_size
    return _written(art, path, target, digest, size)


def write_filled(root: Path, artifacts: list[Artifact], fills: list[formats.Fill],
                 exclusive: bool = True) -> list[dict[str, Any]]:
    """Write artifacts whose arrays are filled in place: every file is laid out and mapped,
    each fill writes into the pages, then the files are hashed (on threads: hashlib lets go of
    the GIL) and closed."""
    import threading  # not concurrent.futures: it takes 20 ms to import, a tenth of a run

    opened: list[tuple[Artifact, Path, Path, formats.MappedFile]] = []
    try:
        for art in artifacts:
            path, target = _target(root, art, exclusive)
            opened.append((art, path, target, formats.reserve(art.kind, target, art.data)))
        buffers = {slot: view for *_, f in opened for slot, view in f.buffers.items()}
        for fill in fills:
            fill.run({name: buffers[slot] for name, slot in fill.slots.items()})
        digests, errors = [""] * len(opened), []

        def finish(i: int) -> None:
            try:
                digests[i] = opened[i][3].finish()
            except BaseException as error:  # raised below, on this thread
                errors.append(error)

        threads = [threading.Thread(target=finish, args=(i,)) for i in range(1, len(opened))]
        for t in threads:
            t.start()
        if opened:
            finish(0)
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
    except BaseException:
        for *_, f in opened:
            f.close()
        raise
    return [_written(art, path, target, digest, target.stat().st_size)
            for (art, path, target, _), digest in zip(opened, digests, strict=True)]


def _target(root: Path, art: Artifact, exclusive: bool) -> tuple[Path, Path]:
    """Where the artifact ends up, and the file it is written as first."""
    path = root / art.path
    path.parent.mkdir(parents=True, exist_ok=True)
    if exclusive:
        return path, path
    return path, path.with_name(f"{path.name}.{os.getpid()}-{os.urandom(4).hex()}{PART}")


def _written(art: Artifact, path: Path, target: Path, digest: str, size: int) -> dict[str, Any]:
    if target != path:
        os.replace(target, path)
    return {"path": art.path, "bytes": size, "sha256": digest, "records": art.records,
            "split": art.split}


class Executor(Protocol):
    """Runs ``run_shard`` over shards, yielding records as they finish (in any order)."""

    def run(self, dataset: str, cfg: Any, shards: list[Shard], stage: Path
            ) -> Iterator[dict[str, Any]]: ...


class InlineExecutor:
    def run(self, dataset: str, cfg: Any, shards: list[Shard], stage: Path
            ) -> Iterator[dict[str, Any]]:
        for shard in shards:
            yield run_shard(dataset, cfg, shard, str(stage))


def forking() -> bool:
    """Whether local workers are forked from this process: on Linux, where fork is the
    platform's own way and a forked worker needs no imports of its own, and from Python 3.11,
    whose fork pools start all their processes before their first thread (gh-90622)."""
    return sys.platform.startswith("linux") and sys.version_info >= (3, 11)


def start_worker_server(dataset: str) -> Any:
    """The multiprocessing context for local workers, its server started (idempotent).

    Called as early as a command knows it will use a local pool, so that the server's imports
    run on another core while the command imports and plans.
    """
    import multiprocessing

    # The forkserver runs "python -c ...", which puts the current folder first on sys.path
    # (and Python 3.11 ignores the parent's sys.path it is handed). Run from a checkout of
    # neurodata, workers would import the source tree, without the compiled kernels: the
    # same bytes, many times slower. PYTHONSAFEPATH (3.11+) keeps the folder off the path;
    # older Pythons use spawn, which restores the parent's sys.path.
    safe = sys.version_info >= (3, 11) and sys.platform != "win32"
    ctx = multiprocessing.get_context("forkserver" if safe else "spawn")
    if not safe:
        return ctx
    # Workers fork from a server that has imported the dataset once, instead of each paying
    # the imports (numpy, h5py, Pillow: a good part of a second) again.
    from multiprocessing import forkserver

    from .datasets import MODULES, WORKER_PRELOAD

    ctx.set_forkserver_preload([f"{__package__}.datasets.{MODULES[dataset]}",
                                f"{__package__}.formats.events", "h5py",
                                *WORKER_PRELOAD.get(dataset, ())])
    saved = os.environ.get("PYTHONSAFEPATH")
    os.environ["PYTHONSAFEPATH"] = "1"  # read by the server when it is spawned
    try:
        forkserver.ensure_running()
    finally:
        if saved is None:
            os.environ.pop("PYTHONSAFEPATH", None)
        else:
            os.environ["PYTHONSAFEPATH"] = saved
    return ctx


class PoolExecutor:
    """Local processes (default: one per core); results come as shards finish.

    With N workers, this process is one of them and a pool holds the other N - 1, so no core is
    left to a process that only waits. A thread here keeps the pool fed from the same queue of
    shards. The run's engine calls ``start`` before planning (see there).
    """

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1
        self._pool: Any = None

    def start(self, dataset: str) -> None:
        """Get the other workers ready while the run plans.

        On Linux they are forked from this process now, before it starts any thread (the
        progress bar's, the feeder's), so that they start at once with everything imported.
        Elsewhere the worker server starts, and its imports overlap the planning.
        """
        if self.workers <= 1 or self._pool is not None:
            return
        if forking():
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(max_workers=self.workers - 1,
                                             mp_context=multiprocessing.get_context("fork"))
            self._pool.submit(int).result()  # a fork pool starts all its processes at once
        else:
            start_worker_server(dataset)

    def close(self) -> None:
        """Shut down a pool that ``start`` forked and no ``run`` used (or a run left)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def run(self, dataset: str, cfg: Any, shards: list[Shard], stage: Path
            ) -> Iterator[dict[str, Any]]:
        if self.workers <= 1 or len(shards) <= 1:
            self.close()
            yield from InlineExecutor().run(dataset, cfg, shards, stage)
            return
        import queue
        import threading
        from collections import deque
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        helpers = min(self.workers - 1, len(shards) - 1)
        # Largest first, so that small shards fill the gaps at the end instead of a large one
        # running alone.
        pending = deque(sorted(shards, key=lambda s: -s.units))
        lock = threading.Lock()
        finished: queue.Queue = queue.Queue()  # pool futures, done, in the order they finish
        stop = threading.Event()

        def take() -> Shard | None:
            with lock:
                return pending.popleft() if pending else None

        def feed(pool: ProcessPoolExecutor) -> None:
            running: set = set()
            try:
                while not stop.is_set():
                    while len(running) < helpers and (shard := take()) is not None:
                        running.add(pool.submit(run_shard, dataset, cfg, shard, str(stage)))
                    if not running:
                        break
                    done, running = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                    for future in done:
                        finished.put(future)
            finally:
                for future in running:
                    future.cancel()
                finished.put(None)  # the feeder is done

        pool, self._pool = self._pool, None
        if pool is None:  # not started: processes from the server (never forked by a thread)
            pool = ProcessPoolExecutor(max_workers=helpers, mp_context=start_worker_server(dataset))
        with pool:
            feeder = threading.Thread(target=feed, args=(pool,), daemon=True)
            feeder.start()
            feeding = True
            try:
                while True:
                    while True:  # hand on what the pool finished
                        try:
                            future = finished.get_nowait()
                        except queue.Empty:
                            break
                        if future is None:
                            feeding = False
                        else:
                            yield future.result()
                    shard = take()
                    if shard is not None:
                        yield run_shard(dataset, cfg, shard, str(stage))
                    elif not feeding:
                        break
                    else:
                        future = finished.get()  # nothing left here: wait for the pool
                        if future is None:
                            feeding = False
                        else:
                            yield future.result()
            finally:
                stop.set()
                with lock:
                    pending.clear()
                feeder.join()


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, initial: int, unit: str, desc: str, quiet: bool):
    if quiet or not sys.stderr.isatty():
        return _NoBar()  # also spares importing tqdm where nobody would see the bar
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit=f" {unit}", desc=desc, unit_scale=True,
                dynamic_ncols=True, leave=False)


class Materialiser:
    """One run of one dataset config into ``<out>/<dataset>/<version>/``."""

    def __init__(self, ds: Dataset, cfg: Any, out: Path, *, overwrite: bool = False,
                 quiet: bool = False, executor: Executor | None = None):
        self.ds, self.cfg, self.overwrite, self.quiet = ds, cfg, overwrite, quiet
        self.executor = executor or InlineExecutor()
        self.base = Path(out) / ds.NAME
        self.folder = self.base / ds.VERSION
        self.claim = ds.splits(cfg) if ds.SPLIT_SCOPED else ["all"]
        self.stage = self.base / f".{ds.VERSION}.{'+'.join(self.claim)}.partial"
        self.config = ds.config_dict(cfg)
        self.fingerprint = fingerprint(self.config)

    # ---- the run ------------------------------------------------------------------------
    def run(self, on_shard: Callable[[dict[str, Any]], None] | None = None) -> RunSummary:
        start = time.perf_counter()
        self._finish_interrupted_commit()
        existing = self._check_output()
        if hasattr(self.executor, "start"):
            self.executor.start(self.ds.NAME)
        try:
            return self._run(start, existing, on_shard)
        finally:
            if hasattr(self.executor, "close"):
                self.executor.close()

    def _run(self, start: float, existing: dict[str, Any] | None,
             on_shard: Callable[[dict[str, Any]], None] | None) -> RunSummary:
        shards = self.ds.plan(self.cfg)  # before the stage, so bad inputs leave nothing behind
        self._open_stage()
        done = self._finished_shards(shards)
        todo = [s for s in shards if s.key not in done]
        units_done = sum(s.units for s in shards if s.key in done)
        bar = _progress(sum(s.units for s in shards), units_done, self.ds.UNIT, self.ds.NAME,
                        self.quiet)
        try:
            for record in self.executor.run(self.ds.NAME, self.cfg, todo, self.stage):
                done[record["key"]] = record
                bar.update(record["units"])
                if on_shard:
                    on_shard(record)
        finally:
            bar.close()
        records = [done[s.key] for s in shards]
        records += self._split_files(records)
        manifest = self._manifest(records, existing, time.perf_counter() - start)
        self._commit(manifest, existing)
        seconds = time.perf_counter() - start
        return self._summary(manifest, seconds, len(shards) - len(todo))

    # ---- refusing to clobber -------------------------------------------------------------
    def _check_output(self) -> dict[str, Any] | None:
        """The manifest already in place, after refusing what the run may not replace."""
        if not self.folder.exists():
            return None
        try:
            existing = read_manifest(self.folder)
        except (OSError, ValueError):
            existing = None
        hint = "pass --overwrite to replace it, or choose another --out"
        if existing is None:
            if self.overwrite:
                return None
            raise RunError(f"{self.folder} exists but is not a finished neurodata folder; {hint}")
        if not self.ds.SPLIT_SCOPED:
            if self.overwrite:
                return None
            raise RunError(f"{self.folder} already holds a finished {self.ds.NAME} "
                           f"{self.ds.VERSION}; {hint}")
        present = set(existing.get("splits", {}))
        clash = sorted(present & set(self.claim))
        if clash and not self.overwrite:
            raise RunError(f"{self.folder} already holds the {', '.join(clash)} split; {hint}")
        others = present - set(self.claim)
        mine = self._shared_config(self.config)
        for split in sorted(others):
            theirs = self._shared_config(existing["splits"][split].get("config", {}))
            if theirs != mine:
                if self.overwrite:
                    return None  # a different config: replace the whole folder
                diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
                raise RunError(
                    f"{self.folder} holds the {split} split made with a different config "
                    f"({', '.join(diff)}); use another --out, or --overwrite to replace the folder"
                )
        return existing

    def _shared_config(self, config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in config.items() if k not in self.ds.SPLIT_KEYS}

    # ---- staging and resume --------------------------------------------------------------
    @property
    def _internal(self) -> Path:
        return self.stage / INTERNAL

    def _open_stage(self) -> None:
        run_file = self._internal / "run.json"
        if self.stage.exists():
            try:
                staged = json.loads(run_file.read_text())
            except (OSError, ValueError):
                staged = None
            if staged and staged.get("fingerprint") == self.fingerprint:
                return  # resume
            if staged and not self.overwrite:
                raise RunError(
                    f"an interrupted run with a different config is staged in {self.stage}; "
                    "rerun its command to resume it, or pass --overwrite to discard it"
                )
            shutil.rmtree(self.stage)
        self._internal.mkdir(parents=True)
        atomic_write(run_file, json.dumps(
            {"fingerprint": self.fingerprint, "config": self.config}, indent=2).encode())

    def _finished_shards(self, shards: list[Shard]) -> dict[str, dict[str, Any]]:
        """Records of shards finished by an earlier attempt whose files still check out."""
        wanted = {s.key for s in shards}
        done: dict[str, dict[str, Any]] = {}
        shard_dir = self._internal / "shards"
        if not shard_dir.is_dir():
            return done
        for path in sorted(shard_dir.glob("*.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if record.get("key") in wanted and all(
                _file_matches(self.stage / f["path"], f) for f in record["files"]
            ):
                done[record["key"]] = record
        return done

    # ---- manifest and commit -------------------------------------------------------------
    def _split_files(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Files made from a whole split's statistics (label tables), after all its shards."""
        make = getattr(self.ds, "split_artifacts", None)
        if make is None:
            return []
        out = []
        for split, stats in _split_stats(records).items():
            files = [write_artifact(self.stage, art) for art in make(self.cfg, split, stats)]
            out.append({"key": f"{split}-index", "split": split, "units": 0, "files": files,
                        "stats": {}})
        return out

    def _manifest(self, records: list[dict[str, Any]], existing: dict[str, Any] | None,
                  seconds: float) -> dict[str, Any]:
        splits = {split: {"stats": stats, "files": 0, "records": 0}
                  for split, stats in _split_stats(records).items()}
        finalize = getattr(self.ds, "finalize_stats", None)
        if finalize is not None:
            for split, entry in splits.items():
                entry["stats"] = finalize(split, entry["stats"])
        files = [f for rec in records for f in rec["files"]]
        for f in files:
            if f["split"] not in splits:
                continue  # a file shared by all splits (one HDF5 with a group per split)
            entry = splits[f["split"]]
            entry["files"] += 1
            entry["records"] += f["records"]
        created = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())  # UTC, ISO 8601
        for entry in splits.values():
            entry["config"] = self.config
            entry["created"] = created
            entry["seconds"] = round(seconds, 3)
        if existing is not None:
            keep = {k: v for k, v in existing["splits"].items() if k not in splits}
            splits = {**keep, **splits}
            files = [f for f in existing["files"] if f["split"] in keep] + files
        files.sort(key=lambda f: f["path"])
        return {
            "dataset": self.ds.NAME,
            "version": self.ds.VERSION,
            "release_notes": self.ds.RELEASE_NOTES.get(self.ds.VERSION, ""),
            "tool": {"name": "neurodata", "version": __version__},
            "libraries": library_versions(self.ds.uses_hdf5(self.cfg),
                                          tuple(getattr(self.ds, "LIBRARIES", ()))),
            "config": self._shared_config(self.config),
            "splits": splits,
            "files": files,
        }

    @property
    def _commit_dir(self) -> Path:
        return self.stage.with_name(self.stage.name.replace(".partial", ".commit"))

    def _commit(self, manifest: dict[str, Any], existing: dict[str, Any] | None) -> None:
        """Move the staged run into place.

        The plan is written first, beside the stage, and removed last: a rerun that finds it
        finishes the commit, whatever point it was cut at.
        """
        remove = []
        if existing is not None:
            remove = [f["path"] for f in existing["files"] if f["split"] in self.claim]
        plan = {"manifest": manifest, "merge": existing is not None, "remove": remove,
                "replaced_splits": self.claim}
        self._commit_dir.mkdir(exist_ok=True)
        atomic_write(self._commit_dir / "commit.json", json.dumps(plan).encode())
        _apply_commit(self.stage, self.folder, plan)
        shutil.rmtree(self._commit_dir)

    def _finish_interrupted_commit(self) -> None:
        commit = self._commit_dir / "commit.json"
        if commit.is_file():
            _apply_commit(self.stage, self.folder, json.loads(commit.read_text()))
        shutil.rmtree(self._commit_dir, ignore_errors=True)

    def _summary(self, manifest: dict[str, Any], seconds: float, resumed: int) -> RunSummary:
        mine = {k: v for k, v in manifest["splits"].items()
                if not self.ds.SPLIT_SCOPED or k in self.claim}
        files = [f for f in manifest["files"]
                 if not self.ds.SPLIT_SCOPED or f["split"] in self.claim]
        total = sum(f["bytes"] for f in files)
        extra = self.ds.describe({k: v["stats"] for k, v in mine.items()})
        line = (f"{self.ds.NAME} {self.ds.VERSION}: {extra}; {len(files)} files, "
                f"{_human(total)} in {self.folder} ({seconds:.2f} s"
                + (f", {resumed} shards resumed" if resumed else "") + ")")
        return RunSummary(self.folder, len(files), total, mine, seconds, resumed, line)


def _split_stats(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Shard statistics merged per split, in plan order."""
    out: dict[str, dict[str, Any]] = {}
    for rec in records:
        for split, stats in rec["stats"].items():
            merge_stats(out.setdefault(split, {}), stats)
    return out


def _remove_unlisted(stage: Path, manifest: dict[str, Any]) -> None:
    """Delete every file of the stage that the manifest does not list: what writers that were
    killed left (partial files, their own ``.part`` files), and files of shards that an earlier
    attempt planned differently. A finished folder holds exactly what it lists."""
    keep = {f["path"] for f in manifest["files"]} | set(METADATA)
    for root, _dirs, names in os.walk(stage, topdown=False):
        rel_root = Path(root).relative_to(stage)
        for name in names:
            if (rel_root / name).as_posix() not in keep:
                os.unlink(os.path.join(root, name))
        if root != str(stage) and not os.listdir(root):
            os.rmdir(root)


def _apply_commit(stage: Path, folder: Path, plan: dict[str, Any]) -> None:
    """Idempotent: safe to run again after being cut short at any point."""
    manifest = plan["manifest"]
    if not plan["merge"] or not folder.exists():
        trash = folder.with_name(f".{folder.name}.replaced")
        if stage.exists():
            write_manifest(stage, manifest)
            shutil.rmtree(stage / INTERNAL, ignore_errors=True)
            _remove_unlisted(stage, manifest)
            if folder.exists():
                shutil.rmtree(trash, ignore_errors=True)
                os.replace(folder, trash)
            os.replace(stage, folder)
        shutil.rmtree(trash, ignore_errors=True)
        return
    if plan["remove"]:
        # Unlist the replaced files before deleting them, so the folder never lists a missing file.
        old = read_manifest(folder) or manifest
        gone = set(plan["remove"])
        splits = {k: v for k, v in old["splits"].items() if k not in plan["replaced_splits"]}
        write_manifest(folder, {**old, "splits": splits,
                                "files": [f for f in old["files"] if f["path"] not in gone]})
        for rel in plan["remove"]:
            (folder / rel).unlink(missing_ok=True)
    for f in manifest["files"]:
        src, dst = stage / f["path"], folder / f["path"]
        if src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    write_manifest(folder, manifest)
    shutil.rmtree(stage, ignore_errors=True)


def _file_matches(path: Path, entry: dict[str, Any]) -> bool:
    try:
        if path.stat().st_size != entry["bytes"]:
            return False
    except OSError:
        return False
    return sha256_file(path)[0] == entry["sha256"]


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


__all__ = ["Artifact", "Dataset", "Materialiser", "RunSummary", "Shard", "ShardResult",
           "MANIFEST", "run_shard", "PoolExecutor", "InlineExecutor"]
