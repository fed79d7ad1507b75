"""The materialisation engine, shared by every dataset.

A dataset says what is special about it (``datasets/base.py``). The engine does the rest, once
for all: lock the output, stage the work in a hidden folder beside it, build shards (inline, in
a process pool, or on a Dask cluster), write them through the format's writer, record each
finished shard so that a killed run resumes, checksum every file, and move the result into place
only when it is complete.

Layout while a run is in progress::

    <out>/<dataset>/.<version>.lock                   held by the one run writing this folder
    <out>/<dataset>/.<version>.<splits>.partial/      data files as they are written
        .neurodata/run.json                           the config fingerprint of this run
        .neurodata/inputs.json.gz                     the inputs it reads (names, sizes)
        .neurodata/shards/<key>.json                  one record per finished shard
    <out>/<dataset>/.<version>.<splits>.commit/       the commit plan, while moving into place
    <out>/<dataset>/.<version>.replaced/              the folder being replaced, for an instant
                                                      (where the two cannot be swapped at once)
    <out>/<dataset>/<version>/                        appears (or is updated) only when complete
        manifest.json, SHA256SUMS                     the same on every machine for one config
        run.json                                      where this machine's run read its inputs
                                                      (not in SHA256SUMS)

A run killed in its commit leaves the plan. The next run into the folder, of any config, first
finishes it if the folder is still the one the plan replaces, and discards it otherwise.
"""

from __future__ import annotations

import errno
import functools
import gzip
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .blocks import ShardCheck, check_shards
from .datasets.base import Block, Config, Dataset, InputFile, Shard, plain_name
from .errors import ConfigError, FolderExists, NeurodataError, RunError
from .executors import InlineExecutor, hold_lock
from .files import atomic_write
from .formats import dist_versions, file_entry, sha256_file, write_text
from .manifest import (
    MANIFEST,
    METADATA,
    RUN,
    SUMS,
    check_shape,
    metadata,
    parse_sums,
    read_manifest,
    write_manifest,
)
from .manifest import verify as verify_folder
from .progress import progress, silenced
from .storage import is_url
from .version import __version__

INTERNAL = ".neurodata"
# A killed run's lock is free once its last process is gone; a rerun started at once waits
# this long for its workers to die before it says another run is writing.
LOCK_WAIT = 3.0
# How long a run waits by default for another run of its folder (--wait): longer than any build,
# so that parallel builders of one folder (pytest-xdist workers) queue, then reuse it.
WAIT = 24 * 3600.0
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
RESERVED_SPLITS = frozenset({"all"})  # a selector in commands ("--split all"), never a split


@dataclass
class RunSummary:
    """What a run made: the folder, its files and bytes, per-split statistics, one line."""

    folder: Path
    files: int
    bytes: int
    splits: dict[str, dict[str, Any]]
    seconds: float
    resumed_shards: int = 0
    line: str = ""
    reused: bool = False  # the folder was already made with this config: nothing was written


@dataclass
class DryRun:
    """What a run would make (``Materialiser.dry_run``); ``lines`` says it."""

    name: str
    version: str
    folder: Path
    format: str
    unit: str
    splits: list[str] = field(default_factory=list)
    shards: list[Shard] | None = None
    inputs: list[str] = field(default_factory=list)
    estimate: tuple[int, int] | None = None  # (bytes, from how many units built in memory)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        state = "exists" if self.folder.exists() else "not there yet"
        fmt = f", format {self.format}" if self.format else ""
        out = [f"dry run, nothing written: {self.name} {self.version} into {self.folder} "
               f"({state}){fmt}"]
        for split in self.splits:
            if self.shards is None:
                out.append(f"  {split}")
                continue
            mine = [s for s in self.shards if s.split == split]
            out.append(f"  {split}: {len(mine)} shard{'' if len(mine) == 1 else 's'}, "
                       f"{sum(s.units for s in mine)} {self.unit}")
        out += [f"  input: {path}" for path in self.inputs]
        if self.estimate is not None:
            size, built = self.estimate
            out.append(f"  estimate: about {_human(size)} before compression (from the first "
                       f"{built} {self.unit} built in memory)")
        out += [f"  {note}" for note in self.notes]
        return out


def _estimate(ds: Dataset[Any], cfg: Config, shards: list[Shard]) -> tuple[int, int] | None:
    """The output's size, scaled from the first block of the first shard, built in memory."""
    shard = next((s for s in shards if s.units), None)
    if shard is None:
        return None
    blocks = iter(ds.build(cfg, shard))
    try:
        block = next(blocks, None)
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:
            close()
    units = None if block is None else (len(block) if block.units is None else block.units)
    if block is None or not units:
        return None
    arrays = [*block.columns.values(), *(block.events or {}).values()]
    size = sum(sum(len(x) for x in a.ravel() if isinstance(x, (str, bytes)))
               if a.dtype == object else a.nbytes for a in arrays)
    return round(size / units * sum(s.units for s in shards)), units


def merge_stats(into: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Numbers add, lists concatenate, mappings merge: block statistics become split ones.

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


def check_split_names(names: Iterable[str]) -> None:
    """Split names become file names and manifest keys: plain, and never a reserved word."""
    for name in names:
        if name in RESERVED_SPLITS:
            raise ConfigError(f"split name {name!r} is reserved; choose another")
        if not SAFE_NAME.match(name):
            raise ConfigError(f"split name {name!r} must be letters, digits, '.', '_' or '-'")


def run_shard(ds: Dataset[Any], cfg: Config, shard: Shard, stage: str,
              report: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Build one shard, write its files into the stage, record it. Runs in any worker (the
    executor resolves the dataset there); ``report(shard key, units)`` hears of each block as
    it is built.

    A stage that is a URL (an object store): the shard is built in a local temporary folder
    (writers need real files: h5py) and uploaded, so a worker needs no folder shared with the
    client."""
    if is_url(stage):
        import tempfile

        from .objstore import upload_shard

        with tempfile.TemporaryDirectory(prefix="neurodata-shard-") as tmp:
            record = run_shard(ds, cfg, shard, tmp, report)
            upload_shard(stage, tmp, record, f"{INTERNAL}/shards/{shard.key}.json")
        return record
    stats: dict[str, Any] = {}
    check = ShardCheck(ds, cfg, shard)
    writer = ds.formats[cfg.format]
    table: list[Any] = []

    def counted(blocks: Iterable[Block]) -> Iterator[Block]:
        for block in blocks:
            check(block)  # before the writer sees it: a bad block leaves no file behind
            merge_stats(stats, {"samples": len(block), **block.stats})
            table.extend(writer.table(shard.split, block))
            if report is not None:
                report(shard.key, len(block) if block.units is None else block.units)
            yield block
        check.finish()  # before the writer renames its files into place

    files = writer.write(Path(stage), ds, cfg, shard, counted(ds.build(cfg, shard)))
    check.finish()  # a writer that stopped reading early
    record = {"key": shard.key, "split": shard.split, "units": shard.units, "files": files,
              "stats": {shard.split: stats}, "schema": check.schema(), "table": table}
    shard_dir = Path(stage) / INTERNAL / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(shard_dir / f"{shard.key}.json", json.dumps(record).encode())
    return record


class Materialiser:
    """One run of one dataset config into ``<out>/<dataset>/<version>/``."""

    def __init__(self, ds: Dataset[Any], cfg: Config, out: Path, *, overwrite: bool = False,
                 quiet: bool = False, executor: Any = None, wait: float = WAIT,
                 verify: bool = False, flags: bool = True):
        """``wait``: seconds to wait for another run of the folder; ``verify``: hash a finished
        folder before reusing it (else its files' sizes are checked); ``flags``: messages name
        the command line's flags (``--overwrite``), else the Python keywords."""
        self.ds, self.cfg, self.overwrite, self.quiet = ds, cfg, overwrite, quiet
        self.wait, self.verify, self.flags = wait, verify, flags
        self.executor = executor or InlineExecutor()
        self.name = ds.output_name(cfg)
        if not plain_name(self.name):  # it becomes a folder: never a path out of --out
            raise ConfigError(f"{ds.name} names its output {self.name!r}, which is not a plain "
                              "name (lowercase letters, digits, '-' and '_')")
        self.base = Path(out) / self.name
        self.folder = self.base / ds.version

    # ---- the run ------------------------------------------------------------------------
    def run(self, on_shard: Callable[[dict[str, Any]], None] | None = None) -> RunSummary:
        with silenced(self.quiet):
            return self._run(on_shard)

    def dry_run(self) -> DryRun:
        """What ``run`` would make, stopping after the plan: it locates the inputs and plans the
        shards, and writes nothing (no folder, lock, stage or download). Shards of inputs that
        only a scan indexes (archives, in the run's stage) are not planned."""
        cfg, notes = self.ds.dry_locate(self.cfg)
        plan = DryRun(self.name, self.ds.version, self.folder, self.cfg.format, self.ds.unit,
                      notes=notes)
        if cfg is None:  # the inputs are not there yet (a download)
            return plan
        self.cfg = cfg
        self._check_out_outside_inputs()
        plan.splits = self.ds.splits(cfg)
        check_split_names(plan.splits)
        plan.inputs = [p for p in self.ds.inputs(cfg) if p]
        if self.ds.needs_scan(cfg):
            plan.notes.append("shards are planned once the inputs are indexed, in the run's "
                              "stage")
            return plan
        plan.shards = self.ds.plan(cfg)
        self.ds.formats[cfg.format].check(cfg, plan.shards)
        plan.estimate = _estimate(self.ds, cfg, plan.shards)
        return plan

    def _run(self, on_shard: Callable[[dict[str, Any]], None] | None) -> RunSummary:
        start = time.perf_counter()
        self.cfg = self.ds.locate(self.cfg)  # inputs checked before anything is written
        self._check_out_outside_inputs()
        self.claim = self.ds.splits(self.cfg)
        check_split_names(self.claim)
        self.stage = self.base / f".{self.ds.version}.{'+'.join(self.claim)}.partial"
        self.config = self.cfg.recorded()
        self.fingerprint = fingerprint(self.config)
        scanning = self.ds.needs_scan(self.cfg)
        if not scanning:  # planned before anything is written: bad inputs leave nothing
            shards = self._plan()
        with self._lock():
            finished = self._finish_interrupted_commit()
            if finished is not None:  # this very run was cut short in its commit: now done
                return self._summary(finished, time.perf_counter() - start, 0)
            existing = self._check_output()
            if existing is not None and not scanning:
                reused = self._reuse(existing, shards, start)
                if reused is not None:
                    return reused
                existing = self._check_merge(existing, shards)
            self._open_stage()
            try:
                if scanning:
                    self.cfg = self.ds.scan(self.cfg, self._internal)
                    self.config = self.cfg.recorded()  # with what it found (a label map)
                    shards = self._plan()
                    if existing is not None:  # its config is known only now
                        reused = self._reuse(existing, shards, start)
                        if reused is not None:
                            self._discard_unstarted_stage()
                            return reused
                        existing = self._check_merge(existing, shards)
            except NeurodataError:
                # Refused inputs leave nothing behind. (An interrupted scan keeps its stage,
                # and with it what it indexed.)
                self._discard_unstarted_stage()
                raise
            self._check_inputs(shards)
            done = self._finished_shards(shards)
            todo = [s for s in shards if s.key not in done]
            records = self._build(shards, done, todo, on_shard, self.stage)
            self._check_inputs_held(shards)
            # A split's shards store the same columns (a shard alone cannot know).
            check_shards(self.ds.name, records, self._internal / "shards")
            records += self._split_files(records)
            manifest = self._manifest(records, existing)
            self._commit(manifest, existing, shards)
        return self._summary(manifest, time.perf_counter() - start, len(shards) - len(todo))

    def _build(self, shards: list[Shard], done: dict[str, dict[str, Any]], todo: list[Shard],
               on_shard: Callable[[dict[str, Any]], None] | None,
               stage: Path | str) -> list[dict[str, Any]]:
        """Build ``todo`` into ``stage`` (a folder, or a URL's), with one progress bar over
        every shard; the records of all ``shards``, in order."""
        bar = progress(sum(s.units for s in shards), self.ds.unit, self.name, self.quiet,
                       initial=sum(s.units for s in shards if s.key in done))
        shown: dict[str, int] = {}

        def moved(key: str, units: int) -> None:
            shown[key] = shown.get(key, 0) + units
            bar.update(units)

        try:
            for record in self.executor.run(run_shard, self.ds.name, self.cfg, todo,
                                            stage, moved):  # type: ignore[arg-type]
                done[record["key"]] = record
                bar.update(record["units"] - shown.get(record["key"], 0))
                if on_shard:
                    on_shard(record)
        finally:
            bar.close()
        return [done[s.key] for s in shards]

    def _plan(self) -> list[Shard]:
        """The dataset's shards, once its format has checked it can store them."""
        shards = self.ds.plan(self.cfg)
        self.ds.formats[self.cfg.format].check(self.cfg, shards)
        return shards

    def _flag(self, name: str) -> str:
        """How the caller names an option in a message: ``--overwrite`` or ``overwrite=True``."""
        if self.flags:
            return f"--{name}"
        return {"overwrite": "overwrite=True", "out": "out", "wait": "wait="}[name]

    def _hint(self, what: str = "replace it") -> str:
        return f"pass {self._flag('overwrite')} to {what}, or choose another {self._flag('out')}"

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """One run at a time per output folder, from staging to commit. Another run waits
        (``wait`` seconds, after saying whose lock it waits on), then finds the folder finished."""
        self.base.mkdir(parents=True, exist_ok=True)
        path = self.base / f".{self.ds.version}.lock"
        handle = open(path, "a+")
        try:
            try:
                import fcntl
            except ImportError:  # not POSIX: no lock (runs must not overlap)
                yield
                return
            # A killed run's workers may hold it a moment longer: --wait 0 still allows that.
            deadline = time.monotonic() + max(self.wait, LOCK_WAIT)
            said = False
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise RunError(
                            f"another neurodata run{_holder(path)} is writing {self.folder}; it "
                            f"did not finish within {self.wait:g} s ({self._flag('wait')}); run "
                            "this command again when it is done") from None
                    if not said and not self.quiet and self.wait > 0:
                        said = True
                        print(f"{self.name}: waiting for the run{_holder(path)} that holds {path} "
                              f"(up to {self.wait:g} s, {self._flag('wait')})", file=sys.stderr,
                              flush=True)
                    time.sleep(0.1)
            # Whose lock it is, for a run that waits on it (never read as a lock).
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()} {socket.gethostname()}\n")
            handle.flush()
            hold_lock(handle.fileno())  # forked workers close their copy
            try:
                yield
            finally:
                hold_lock(None)
        finally:
            handle.close()

    def _check_out_outside_inputs(self) -> None:
        """Refuse an output folder inside an input folder: the next run would list the folder
        it wrote among its inputs (ES-ImageNet records them as skipped, and every later input
        index shifts), so a rerun or --overwrite would not give the folder a clean run gives."""
        here = self.folder.resolve()
        for path in self.ds.inputs(self.cfg):
            if not path:  # a place only a later step fills in (an archive's index)
                continue
            root = Path(path).resolve()
            if root.is_dir() and root in here.parents:
                raise ConfigError(f"--out puts {self.folder} inside the input folder {path}, "
                                  "whose listing it would then change; choose an --out "
                                  "outside it")

    # ---- refusing to clobber -------------------------------------------------------------
    def _check_output(self) -> dict[str, Any] | None:
        """The finished folder's manifest (None: no folder, or one to replace), after refusing
        a folder that is not a finished neurodata folder."""
        if not self.folder.exists():
            return None
        try:
            existing = read_manifest(self.folder)
        except (OSError, ValueError):
            existing = None
        problem = None if existing is None else check_shape(existing)
        if existing is None or problem:
            if self.overwrite:
                return None
            if problem:  # valid JSON of another shape: never read further
                raise FolderExists(f"{self.folder / MANIFEST} {problem}; {self._hint()}")
            raise FolderExists(f"{self.folder} exists but is not a finished neurodata folder; "
                               f"{self._hint()}")
        return existing

    def _differs(self, existing: dict[str, Any], shards: list[Shard]) -> str | None:
        """How the folder's claimed splits differ from what this run would make (None: they
        do not): another config, other inputs, or a split it does not hold."""
        splits = existing["splits"]
        missing = [s for s in self.claim if s not in splits]
        if missing:
            return f"no {', '.join(missing)} split"
        for split in self.claim:
            mine, theirs = self._split_config(split), splits[split].get("config")
            theirs = theirs if isinstance(theirs, dict) else {}
            if mine != theirs:
                diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
                return f"a different config ({', '.join(diff)})"
        recorded = self._recorded_inputs()
        for split in self.claim:
            # Without the record (run.json lost, edited, or from before it), a folder of the
            # same config may hold other inputs' data: it is not taken on trust.
            if split not in recorded:
                return (f"inputs it keeps no record of (the {split} split's, in {RUN}: missing "
                        "or edited)")
            if recorded[split] != self._inputs_digest(shards, split):
                return f"other inputs (the {split} split's listing differs)"
        return None

    def _reuse(self, existing: dict[str, Any], shards: list[Shard],
               start: float) -> RunSummary | None:
        """The finished folder's summary when it already holds this run, checked (sizes, or
        every hash with ``verify``); None when it holds something else (or ``overwrite``)."""
        if self.overwrite or self._differs(existing, shards) is not None:
            return None
        problem = self._check_files(existing)
        if problem:
            raise FolderExists(f"{self.folder} holds this config, but {problem}; "
                               f"{self._hint('rebuild it')}")
        summary = self._summary(existing, time.perf_counter() - start, 0)
        checked = "every file hashed" if self.verify else "file sizes checked"
        summary.line = (f"{self.name} {self.ds.version}: reused {self.folder}, made with the "
                        f"same config ({summary.files} data file"
                        f"{'' if summary.files == 1 else 's'}, {_human(summary.bytes)}; "
                        f"{checked})")
        summary.reused = True
        return summary

    def _check_files(self, existing: dict[str, Any]) -> str | None:
        """What is wrong with a finished folder, cheaply: its manifest is the one SHA256SUMS
        lists, and every listed file is there with its size. ``verify``: every hash too."""
        if self.verify:
            return verify_folder(self.folder).first(str(self.folder))
        if not self._manifest_listed():
            return f"{self.folder / MANIFEST} does not match its {SUMS} (see neurodata verify)"
        for f in existing["files"]:
            path = self.folder / f["path"]
            try:
                size = path.stat().st_size
            except OSError:
                return f"{path} is missing"
            if size != f["bytes"]:
                return f"{path} has {size} bytes where its manifest lists {f['bytes']}"
        return None

    def _manifest_listed(self) -> bool:
        """The finished folder's manifest is the one its SHA256SUMS lists."""
        try:
            return parse_sums(self.folder / SUMS)[0].get(MANIFEST) == sha256_file(
                self.folder / MANIFEST)
        except OSError:
            return False

    def _check_merge(self, existing: dict[str, Any],
                     shards: list[Shard]) -> dict[str, Any] | None:
        """The manifest this run merges into (None: the folder is replaced), after refusing
        what the run may not replace: a split, or a folder, made otherwise."""
        if not self.ds.split_scoped:
            if self.overwrite:
                return None
            raise FolderExists(f"{self.folder} already holds a finished {self.name} "
                               f"{self.ds.version} made with {self._differs(existing, shards)}; "
                               f"{self._hint()}")
        present = set(existing.get("splits", {}))
        clash = sorted(present & set(self.claim))
        if clash and not self.overwrite:
            why = self._differs(existing, shards) or ""
            how = "" if why.startswith("no ") else f", made with {why}"
            raise FolderExists(f"{self.folder} already holds the {', '.join(clash)} split{how}; "
                               f"{self._hint()}")
        mine = self._shared_config(self.config)
        for split in sorted(present - set(self.claim)):
            theirs = self._shared_config(existing["splits"][split].get("config", {}))
            if theirs != mine:
                if self.overwrite:
                    return None  # a different config: replace the whole folder
                diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
                raise FolderExists(
                    f"{self.folder} holds the {split} split made with a different config "
                    f"({', '.join(diff)}); use another {self._flag('out')}, or "
                    f"{self._flag('overwrite')} to replace the folder"
                )
        # The merged folder's manifest is built from this one and its SHA256SUMS written anew:
        # an edited or damaged manifest (which verify reports) would come out of it passing.
        if not self._manifest_listed():
            if self.overwrite:
                return None
            raise FolderExists(f"{self.folder}/{MANIFEST} does not match its {SUMS} (edited or "
                               f"damaged; see neurodata verify); {self._hint()}")
        return existing

    # ---- what a finished folder was made from ---------------------------------------------
    def _inputs_digest(self, shards: list[Shard], split: str) -> str:
        """The split's input listing by names, sizes and content digests (a zip's CRC-32), not
        times: a copy of the inputs (another checkout, a CI runner) is the same input."""
        listing = self._listing([s for s in shards if s.split == split])[0]
        kept = [(f.name, f.size, "" if f.digest.startswith("mtime_ns:") else f.digest)
                for f in listing]
        return hashlib.sha256(json.dumps(kept).encode()).hexdigest()

    def _recorded_inputs(self) -> dict[str, str]:
        """Each split's input digest, as the finished folder's ``run.json`` records it (a
        folder from before run records, or with an edited one, has none: taken by its
        config)."""
        try:
            splits = self._recorded_splits()
            return {k: v["input_digest"] for k, v in splits.items() if "input_digest" in v}
        except (KeyError, TypeError):
            return {}

    def _recorded_splits(self) -> dict[str, Any]:
        """The finished folder's ``run.json`` record of each split ({}: none, or edited)."""
        try:
            splits = json.loads(self._run_json())["splits"]
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        return splits if isinstance(splits, dict) else {}

    def _run_json(self) -> bytes:
        return (self.folder / RUN).read_bytes()

    def _split_config(self, split: str) -> dict[str, Any]:
        """The config as one split records it: a split key that maps split names to values
        (the sources of each split) keeps only this split's entry, so a folder made one split
        at a time records the same as one made at once."""
        out = {}
        for key, value in self.config.items():
            if key in self.ds.split_keys and isinstance(value, dict) and split in value:
                value = {split: value[split]}
            out[key] = value
        return out

    def _shared_config(self, config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in config.items() if k not in self.ds.split_keys}

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
            if not isinstance(staged, dict):
                staged = None
            if staged and staged.get("fingerprint") == self.fingerprint:
                return  # resume
            if staged and self._has_finished_shard() and not self.overwrite:
                theirs = staged.get("config")
                theirs = theirs if isinstance(theirs, dict) else {}
                diff = sorted(k for k in set(self.config) | set(theirs)
                              if self.config.get(k) != theirs.get(k))
                differ = f" (it differs in {', '.join(diff)})" if diff else ""
                raise RunError(
                    f"an interrupted run with a different config is staged in {self.stage}"
                    f"{differ}; rerun its command to resume it, or pass {self._flag('overwrite')} "
                    "to discard it"
                )
            shutil.rmtree(self.stage)  # nothing finished in it: nothing to lose
        self._internal.mkdir(parents=True)
        atomic_write(run_file, json.dumps(
            {"fingerprint": self.fingerprint, "config": self.config}, indent=2).encode())

    def _check_inputs(self, shards: list[Shard]) -> None:
        """A resume is only a resume of the same run: the stage keeps the listing of the inputs
        its shards were planned over, and a run over other inputs (a recording deleted after it
        stopped the run) discards the finished shards and starts again, saying what changed.
        Merging them would mix two plans: samples twice, others never."""
        listing, text = self._listing(shards)
        self._inputs = text
        path = self._internal / "inputs.json.gz"
        try:
            staged = gzip.decompress(path.read_bytes())
        except (OSError, EOFError, zlib.error):  # a fresh stage, or an older tool's
            staged = None
        if staged == text:
            return
        if self._has_finished_shard():
            why = ("the interrupted run recorded no input listing" if staged is None else
                   f"inputs changed since the interrupted run ({_what_changed(staged, listing)})")
            print(f"{self.name}: {why}; starting again", file=sys.stderr)
            self._discard_staged_shards()
        atomic_write(path, gzip.compress(text, compresslevel=1))

    def _listing(self, shards: list[Shard]) -> tuple[list[InputFile], bytes]:
        listing = sorted(entry if isinstance(entry, InputFile) else InputFile(*entry)
                         for entry in self.ds.input_listing(self.cfg, shards))
        return listing, json.dumps(listing).encode()

    def _check_inputs_held(self, shards: list[Shard]) -> None:
        """Before the commit: the inputs are still those the run started from. One changed
        while the shards were built would leave samples of two versions of the inputs; the
        next run sees the new listing and starts again."""
        listing, text = self._listing(shards)
        if text != self._inputs:
            raise RunError(f"{self.name}: inputs changed during the run "
                           f"({_what_changed(self._inputs, listing)}); nothing was committed. "
                           "Run the command again to start over")

    def _discard_staged_shards(self) -> None:
        """Forget every finished shard, then remove the data files; what the stage indexed
        (``scan``) stays, as it checks itself against its inputs."""
        shutil.rmtree(self._internal / "shards", ignore_errors=True)
        _remove_unlisted(self.stage, set())

    def _has_finished_shard(self) -> bool:
        return any((self._internal / "shards").glob("*.json"))

    def _discard_unstarted_stage(self) -> None:
        """Remove the stage if no shard of it has finished (nothing in it is worth keeping)."""
        if not self._has_finished_shard():
            shutil.rmtree(self.stage, ignore_errors=True)

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
        out = []
        writer = self.ds.formats[self.cfg.format]
        tables: dict[str, list[Any]] = {}
        for record in records:
            tables.setdefault(record["split"], []).extend(record.get("table", []))
        for split, stats in _split_stats(records).items():
            # A label table indexes samples stored elsewhere: it stores none (records 0).
            made = [*self.ds.split_files(self.cfg, split, stats),
                    *writer.split_files(split, tables.get(split, []))]
            files = [write_text(self.stage, f.path, f.text, split, 0) for f in made]
            if files:
                out.append({"key": f"{split}-index", "split": split, "units": 0,
                            "files": files, "stats": {}})
        return out

    def _manifest(self, records: list[dict[str, Any]],
                  existing: dict[str, Any] | None) -> dict[str, Any]:
        """Everything here depends only on the config, the inputs and the library versions, so
        that ``SHA256SUMS`` can cover the manifest too (no times, no host names)."""
        writer = self.ds.formats[self.cfg.format]
        splits: dict[str, dict[str, Any]] = {}
        for split, stats in _split_stats(records).items():
            stats = self.ds.finish_stats(split, stats)
            stats.setdefault("samples", 0)
            splits[split] = {"format": writer.name, "files": 0, "records": 0, "stats": stats,
                             "config": self._split_config(split)}
        files = [f for rec in records for f in rec["files"]]
        for f in files:
            splits[f["split"]]["files"] += 1
        for entry in splits.values():
            # Samples stored in the split; a file's records are the samples stored in that file
            # (each column file of an npy split stores all of them).
            entry["records"] = entry["stats"]["samples"]
        if existing is not None:
            keep = {k: v for k, v in existing["splits"].items() if k not in splits}
            splits = {**keep, **splits}
            files = [f for f in existing["files"] if f["split"] in keep] + files
        files.sort(key=lambda f: f["path"])
        taken = sorted(f["path"] for f in files if f["path"] in METADATA | {RUN})
        if taken:  # the engine writes these itself
            raise RunError(f"{self.ds.name} writes a data file named {taken[0]}, a name "
                           "neurodata keeps for a folder's own records")
        return {
            "dataset": self.name,
            "builder": self.ds.name,  # the registered dataset that wrote it (reads it back)
            "version": self.ds.version,
            "release_notes": self.ds.release_notes.get(self.ds.version, ""),
            "tool": {"name": "neurodata", "version": __version__},
            "libraries": libraries(self.ds, self.cfg),
            "config": self._shared_config(self.config),
            "splits": dict(sorted(splits.items())),
            "files": files,
        }

    def _run_record(self, merge: bool, shards: list[Shard]) -> dict[str, Any]:
        """Where this run came from: its inputs on this machine, the host, the tool's path, and
        each split's input digest (names, sizes, content digests: what a later run of the same
        config must match to reuse the folder). ``run.json`` keeps it beside the manifest,
        outside SHA256SUMS (the checksummed files hold none of it), and swaps into place with
        the folder. A merge keeps the record of the splits it does not make."""
        splits: dict[str, Any] = {}
        if merge:  # a folder from before run records, or one edited: nothing to keep
            splits = {k: v for k, v in self._recorded_splits().items() if k not in self.claim}
        import socket

        this = {"inputs": self.cfg.origin(), "folder": str(self.folder.absolute()),
                "host": socket.gethostname(), "python": sys.executable,
                "tool": {"version": __version__, "path": str(Path(__file__).parent)},
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        splits.update((split, {**this, "input_digest": self._inputs_digest(shards, split)})
                      for split in self.claim)
        return {"dataset": self.name, "version": self.ds.version,
                "splits": dict(sorted(splits.items()))}

    @property
    def _commit_dir(self) -> Path:
        return self.stage.with_name(self.stage.name.replace(".partial", ".commit"))

    def _commit(self, manifest: dict[str, Any], existing: dict[str, Any] | None,
                shards: list[Shard]) -> None:
        """Move the staged run into place.

        The plan is written first, beside the stage, and removed last. It names the folder it
        replaces (its generation) and the one it makes, so that a later run can tell whether
        the plan still applies, whatever point it was cut at.
        """
        plan = {"manifest": manifest, "merge": existing is not None, "claim": list(self.claim),
                "fingerprint": self.fingerprint, "replaces": _generation(self.folder),
                "makes": hashlib.sha256(metadata(manifest)[1]).hexdigest(),
                "run": self._run_record(existing is not None, shards)}
        self._commit_dir.mkdir(exist_ok=True)
        atomic_write(self._commit_dir / "commit.json", json.dumps(plan).encode())
        try:
            _apply_commit(self.stage, self.folder, plan)
        except RunError:  # refused before anything moved: the stage stays resumable
            _discard_commit(self.stage)
            shutil.rmtree(self._commit_dir)
            raise
        shutil.rmtree(self._commit_dir)

    def _finish_interrupted_commit(self) -> dict[str, Any] | None:
        """Settle every commit into this folder that a killed run left, before the folder is
        read (by any run: the lock is the folder's, whatever the splits).

        A plan still current (the folder, or the trash between the two renames, is the one it
        replaces) is finished; one whose folder is already the one it makes is cleaned up; any
        other is stale: discarded, and its stage taken back to its finished shards. Returns
        the manifest when this run's own commit is now done, else None.
        """
        mine = None
        for commit_dir in sorted(self.base.glob(f".{self.ds.version}.*.commit")):
            plan = _read_plan(commit_dir / "commit.json")
            if plan is not None and plan["manifest"]["version"] != self.ds.version:
                continue  # another version's, if its name is not SemVer (dots match the glob)
            ours = commit_dir == self._commit_dir
            stage = commit_dir.with_name(commit_dir.name[:-len(".commit")] + ".partial")
            state = _plan_state(plan, stage, self.folder) if plan else "stale"
            if state == "current" and plan is not None:  # a plan (else "stale"), for mypy
                try:
                    _apply_commit(stage, self.folder, plan)
                except RunError:  # the stage lost a file since: it cannot make a whole folder
                    state = "stale"
            if state == "stale":
                _discard_commit(stage)
            else:  # finished; a stage left holds the folder it replaced (a swap cut short)
                shutil.rmtree(stage, ignore_errors=True)
                if ours and plan is not None and plan["fingerprint"] == self.fingerprint:
                    mine = plan["manifest"]
            shutil.rmtree(commit_dir)
        trash = _trash(self.folder)
        if trash.exists() and self.folder.exists():  # a commit cut before its last step
            shutil.rmtree(trash, ignore_errors=True)
        elif trash.exists():  # cut between the two renames, and its plan discarded: undone
            os.replace(trash, self.folder)
        return mine

    def _summary(self, manifest: dict[str, Any], seconds: float, resumed: int) -> RunSummary:
        mine = {k: manifest["splits"][k] for k in self.claim}
        files = [f for f in manifest["files"] if f["split"] in self.claim]
        total = sum(f["bytes"] for f in files)
        extra = self.ds.describe({k: v["stats"] for k, v in mine.items()})
        # Data files, as verify and info count them; a run of some splits says the folder's too.
        count = f"{len(files)} data file{'' if len(files) == 1 else 's'}"
        if len(files) != len(manifest["files"]):
            count += f" ({len(manifest['files'])} in the folder)"
        line = (f"{self.name} {self.ds.version}: {extra}; {count}, "
                f"{_human(total)} in {self.folder} ({seconds:.2f} s"
                + (f", {resumed} shards resumed" if resumed else "") + ")")
        return RunSummary(self.folder, len(files), total, mine, seconds, resumed, line)


def libraries(ds: Dataset[Any], cfg: Config) -> dict[str, str]:
    """The versions of what shapes the bytes, as the manifest records them: Python, numpy, the
    format's libraries and the dataset's own (a decoder)."""
    found = {"python": _python(), **_numpy(), **ds.formats[cfg.format].versions(),
             **dist_versions(ds.libraries)}
    return dict(sorted(found.items()))


def _python() -> str:
    import platform

    return platform.python_version()


def _numpy() -> dict[str, str]:
    import numpy

    return {"numpy": numpy.__version__}


def _split_stats(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Shard statistics merged per split, in plan order."""
    out: dict[str, dict[str, Any]] = {}
    for rec in records:
        for split, stats in rec["stats"].items():
            merge_stats(out.setdefault(split, {}), stats)
    return out


def _remove_unlisted(stage: Path, keep: set[str]) -> None:
    """Delete every file of the stage outside ``keep`` and ``.neurodata``: what writers that
    were killed left (their ``.part`` files), and files of shards an earlier attempt planned
    differently. A finished folder holds exactly what it lists."""
    for root, _dirs, names in os.walk(stage, topdown=False):
        rel_root = Path(root).relative_to(stage)
        if rel_root.parts[:1] == (INTERNAL,):
            continue
        for name in names:
            if (rel_root / name).as_posix() not in keep:
                os.unlink(os.path.join(root, name))
        if root != str(stage) and not os.listdir(root):
            os.rmdir(root)


def _holder(lock: Path) -> str:
    """`` (pid 123 on host)``: who holds a lock, as its holder wrote it; "" when unknown."""
    try:
        pid, host = lock.read_text().split()
    except (OSError, ValueError):
        return ""
    return f" (pid {pid} on {host})"


def _trash(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.replaced")


def _generation(folder: Path) -> str | None:
    """Which folder this is: the sha256 of its SHA256SUMS (which covers every file, the
    manifest too); "unfinished" for a folder without one; None when there is no folder.

    Content rather than an inode: a folder rebuilt with other data is another generation even
    where the file system reuses inode numbers, and one rebuilt byte for byte is the same one
    (a plan made for it still gives the right folder).
    """
    if not folder.exists():
        return None
    sums = folder / SUMS
    return sha256_file(sums) if sums.is_file() else "unfinished"


def _read_plan(path: Path) -> dict[str, Any] | None:
    """A commit plan, or None when it is missing, unreadable or from an older neurodata."""
    try:
        plan = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(plan, dict) and isinstance(plan.get("claim"), list)
            and isinstance(plan.get("makes"), str) and "replaces" in plan
            and check_shape(plan.get("manifest")) is None):
        return None
    return plan


def _plan_state(plan: dict[str, Any], stage: Path, folder: Path) -> str:
    """"current" when the plan still applies, "done" when it was applied, else "stale"."""
    now = _generation(folder)
    if now == plan["makes"]:  # its stage is gone, or holds the folder it replaced (a swap)
        return "done"
    if not stage.is_dir():
        return "stale"
    if now is None and plan["replaces"] is not None:
        now = _generation(_trash(folder))  # cut between the two renames
    return "current" if now == plan["replaces"] else "stale"


def _apply_commit(stage: Path, folder: Path, plan: dict[str, Any]) -> None:
    """Move the stage into place; idempotent, so safe to run again after being cut anywhere
    while the plan is current.

    A merge (a new split into a finished folder) first links the files it keeps from the
    finished folder into the stage, so that the stage is the whole new folder. Nothing is
    removed or renamed until every listed file is in the stage. The finished folder is then
    swapped for it in one step where the system can (the old one then sits at the stage's
    name until removed), else by two renames: it is never seen half-merged.
    """
    manifest = plan["manifest"]
    trash = _trash(folder)
    old = folder if folder.exists() else trash  # cut between the renames: the trash
    if plan["merge"]:
        for f in manifest["files"]:
            if f["split"] in plan["claim"]:
                continue
            src, dst = old / f["path"], stage / f["path"]
            if not src.is_file() or (dst.exists() and os.path.samefile(src, dst)):
                continue  # linked by an earlier attempt, or lost: the check below names it
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.unlink(missing_ok=True)  # a copy cut short
            _link_or_copy(src, dst)
    for f in manifest["files"]:
        path = stage / f["path"]
        if not (path.is_file() and path.stat().st_size == f["bytes"]):
            where = path if f["split"] in plan["claim"] else old / f["path"]
            raise RunError(f"cannot commit {folder}: {where} is missing or cut short; the "
                           "folder is left as it was")
    write_manifest(stage, manifest)
    if plan.get("run") is not None:  # a plan an older neurodata left has none
        atomic_write(stage / RUN, (json.dumps(plan["run"], indent=2) + "\n").encode())
    shutil.rmtree(stage / INTERNAL, ignore_errors=True)
    _remove_unlisted(stage, {f["path"] for f in manifest["files"]} | set(METADATA) | {RUN})
    if folder.exists() and _exchange(stage, folder):
        shutil.rmtree(stage)  # the folder it replaced
        return
    if folder.exists():
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(folder, trash)
    os.replace(stage, folder)
    shutil.rmtree(trash, ignore_errors=True)


@functools.cache
def _renameat2() -> Any:
    import ctypes

    try:
        call = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not Linux, or a C library before glibc 2.28
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                     ctypes.c_uint]
    return call


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one step (Linux ``renameat2`` with ``RENAME_EXCHANGE``), so that a
    kill never leaves ``b`` missing; False where the system or file system cannot."""
    call = _renameat2() if sys.platform.startswith("linux") else None
    if call is None:
        return False
    import ctypes

    at_fdcwd, rename_exchange = -100, 2
    if call(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _discard_commit(stage: Path) -> None:
    """Take back what a stale commit did to its stage (the other splits' files it linked, its
    manifest), keeping the shards it finished: its command resumes them and merges into the
    folder as it is now. A stage whose records are gone was a whole folder: nothing to keep."""
    if not (stage / INTERNAL).is_dir():
        shutil.rmtree(stage, ignore_errors=True)
        return
    keep: set[str] = set()
    for path in sorted((stage / INTERNAL / "shards").glob("*.json")):
        try:
            keep.update(f["path"] for f in json.loads(path.read_text())["files"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a record a resume would take either
    _remove_unlisted(stage, keep)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links
        shutil.copy2(src, dst)


def _what_changed(before: bytes, after: list[InputFile]) -> str:
    """``1 removed: a; 2 changed: b, c``: how a staged listing (JSON) and ``after`` differ."""
    try:
        old = {entry[0]: list(entry[1:]) for entry in json.loads(before)}
    except (ValueError, TypeError, IndexError, KeyError):
        return "its listing is unreadable"
    new = {entry.name: [entry.size, entry.digest] for entry in after}
    parts = []
    for what, names in (("removed", sorted(old.keys() - new.keys())),
                        ("added", sorted(new.keys() - old.keys())),
                        ("changed", sorted(k for k in old.keys() & new.keys()
                                           if old[k] != new[k]))):
        if names:
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            parts.append(f"{len(names)} {what}: {shown}")
    return "; ".join(parts) or "a name listed twice"


def _file_matches(path: Path, entry: dict[str, Any]) -> bool:
    try:
        if path.stat().st_size != entry["bytes"]:
            return False
    except OSError:
        return False
    return sha256_file(path) == entry["sha256"]


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


__all__ = ["DryRun", "Materialiser", "RunSummary", "run_shard", "file_entry", "merge_stats"]
