"""Where shards run: inline, in a local process pool, or on a Dask cluster.

Each executor runs a task (the engine's ``run_shard``) over shards and yields their records as
they finish, in any order. The bytes never depend on which executor ran a shard, or how many
workers it had.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .datasets import get
from .datasets.base import Config, Dataset, Shard
from .errors import ConfigError, RunError

Progress = Callable[[str, int], None]  # (shard key, units built)
# (dataset, config, shard, stage, progress) -> the shard's record: a module-level function, so
# that it pickles by name to pool and Dask workers.
Task = Callable[[Dataset[Any], Config, Shard, str, "Progress | None"], dict[str, Any]]
held_lock: int | None = None  # this process's lock file descriptor, while it holds one


def hold_lock(fd: int | None) -> None:
    """The engine's output lock, held (a descriptor) or let go (None): forked workers close it."""
    global held_lock
    held_lock = fd


def run_task(task: Task, dataset: str, cfg: Config, shard: Shard, stage: str,
             report: Progress | None = None) -> dict[str, Any]:
    """``task`` on one shard of the dataset named ``dataset``, resolved in the process that
    runs it (a worker looks the name up in its own registry)."""
    return task(get(dataset), cfg, shard, stage, report)


class InlineExecutor:
    """Shards one after another in this process."""

    def run(self, task: Task, dataset: str, cfg: Config, shards: list[Shard], stage: Path,
            progress: Progress | None = None) -> Iterator[dict[str, Any]]:
        for shard in shards:
            yield run_task(task, dataset, cfg, shard, str(stage), progress)


def _die_with_parent(parent: int) -> None:
    """A worker ends when the command's process dies, by any signal (kill -9 included): on
    Linux the kernel sends it SIGKILL. Elsewhere a worker notices at its next task."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the request above took effect
        os._exit(1)


_progress: Any = None  # in a worker: the queue it reports progress on
_stopping: Any = None  # in a worker: set by the command when the run is interrupted


def _init_worker(parent: int, dataset: str, queue: Any, stopping: Any) -> None:
    """Pool initializer: tie the worker's life to the command's, keep the progress queue, then
    import what its shards need once (a no-op for forked workers, which inherit the imports).

    An idle worker ignores Ctrl-C (which the terminal sends to every process of the command):
    the command decides, and a KeyboardInterrupt there would print a traceback."""
    global _progress, _stopping, held_lock
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _stopping = stopping
    _die_with_parent(parent)
    if held_lock is not None:  # the lock is the command's: it must die with it
        os.close(held_lock)
        held_lock = None
    queue.cancel_join_thread()  # never wait at exit for progress nobody will read
    _progress = queue
    from importlib import import_module

    for module in get(dataset).preload:
        import_module(module)


class _Reporter:
    """Sends a shard's progress to the command, a few times a second at most."""

    def __init__(self) -> None:
        self.pending: dict[str, int] = {}
        self.sent = 0.0

    def __call__(self, key: str, units: int) -> None:
        self.pending[key] = self.pending.get(key, 0) + units
        now = time.monotonic()
        if now - self.sent >= 0.2:
            for item in self.pending.items():
                _progress.put(item)
            self.pending, self.sent = {}, now


def _run_in_worker(task: Task, dataset: str, cfg: Config, shard: Shard,
                   stage: str) -> dict[str, Any]:
    """One shard, which Ctrl-C stops; none once the command was interrupted (the pool may have
    queued it already)."""
    import signal

    if _stopping.is_set():
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run_task(task, dataset, cfg, shard, stage, _Reporter())
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class LocalPool:
    """Local processes (default: one per core), largest shards first."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1

    def run(self, task: Task, dataset: str, cfg: Config, shards: list[Shard], stage: Path,
            progress: Progress | None = None) -> Iterator[dict[str, Any]]:
        if self.workers <= 1 or len(shards) <= 1:
            yield from InlineExecutor().run(task, dataset, cfg, shards, stage, progress)
            return
        import multiprocessing
        import queue as queues
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        # fork where the platform's own way is fork: workers start at once with everything
        # this process imported; forkserver or spawn elsewhere.
        method = "fork" if sys.platform.startswith("linux") else None
        context = multiprocessing.get_context(method)
        reports, stopping = context.Queue(), context.Event()
        pool = ProcessPoolExecutor(max_workers=min(self.workers, len(shards)),
                                   mp_context=context, initializer=_init_worker,
                                   initargs=(os.getpid(), dataset, reports, stopping))

        def drain() -> None:
            while True:
                try:
                    key, units = reports.get_nowait()
                except queues.Empty:
                    return
                if progress is not None:
                    progress(key, units)

        try:
            # Largest first, so that small shards fill the gaps at the end.
            order = sorted(shards, key=lambda s: -s.units)
            pending = {pool.submit(_run_in_worker, task, dataset, cfg, s, str(stage))
                       for s in order}
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                drain()
                for future in done:
                    yield future.result()
        except KeyboardInterrupt:
            # Stop the shards running now rather than wait for them: Ctrl-C in a terminal
            # reaches the workers too, but a SIGINT sent to this process alone does not.
            stopping.set()
            _interrupt(pool)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            reports.close()


def _interrupt(pool: Any) -> None:
    """SIGINT to the pool's workers: a busy one stops its shard, an idle one ignores it."""
    import signal

    # ProcessPoolExecutor does not list its processes publicly; multiprocessing's
    # active_children() would also name children that are not this pool's.
    for pid in list(getattr(pool, "_processes", None) or {}):
        try:
            os.kill(pid, signal.SIGINT)
        except OSError:  # already gone
            pass


# ---- Dask --------------------------------------------------------------------------------------

INSTALL_HINT = "pip install 'neurodata[dask]' (or: pip install 'dask[distributed]')"
CONNECT_TIMEOUT = "10s"
RETRIES = 3


def require_distributed() -> None:
    """Exit 2 with the install command when dask.distributed is missing."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ConfigError(f"--scheduler needs dask.distributed, which is not installed; "
                          f"{INSTALL_HINT}") from None


def probe_storage(inputs: list[str], stage: str | None, token: str) -> dict[str, str]:
    """Runs on every worker: can it read the inputs, and see and write the stage?

    The client wrote ``token`` into the stage; a worker that reads it back sees the same folder,
    and only then tries a write (a file it removes at once). A worker that does not see the
    stage creates nothing: no folder tree is left on storage that is not shared.
    """
    problems = {}
    for path in inputs:
        if not os.path.exists(path):
            problems[path] = "does not exist on this worker"
        elif not os.access(path, os.R_OK | (os.X_OK if os.path.isdir(path) else 0)):
            problems[path] = "is not readable on this worker"
    if stage is None:  # the shards go to an object store: no folder is shared
        return problems
    internal = os.path.join(stage, ".neurodata")
    try:
        with open(os.path.join(internal, f"probe-{token}")) as f:
            seen = f.read() == token
    except OSError:
        seen = False
    if not seen:
        problems[stage] = ("is not the folder this machine is writing; the output folder must "
                           "be on storage shared with the workers at the same path")
        return problems
    try:
        handle, path = tempfile.mkstemp(dir=internal, prefix=f"probe-{token}-")
        os.close(handle)
        os.unlink(path)
    except OSError as exc:
        problems[stage] = f"is not writable on this worker ({exc.strerror})"
    return problems


class DaskExecutor:
    """One Dask task per shard, on an existing scheduler; records come back as tasks finish.

    Workers run the same task into the shared stage, so the bytes are a local run's; the
    client alone writes the manifest. A lost worker's shard is run again elsewhere (files are
    renamed into place whole), and a killed client resumes like a local run.
    """

    def __init__(self, address: str, retries: int = RETRIES):
        self.address = address
        self.retries = retries

    def _connect(self) -> Any:
        require_distributed()
        from distributed import Client

        try:
            return Client(self.address, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RunError(f"cannot reach the Dask scheduler at {self.address} within "
                           f"{CONNECT_TIMEOUT}: {first}") from None

    def check_storage(self, client: Any, inputs: list[str], stage: Path | None) -> None:
        """Fail before any work unless every worker reads the inputs and shares the stage
        (None: a stage in an object store, which workers upload into)."""
        token = secrets.token_hex(8)
        if stage is None:
            answers = client.run(probe_storage, inputs, None, token, on_error="return")
        else:
            probe = stage / ".neurodata" / f"probe-{token}"
            probe.parent.mkdir(parents=True, exist_ok=True)
            probe.write_text(token)
            try:
                answers = client.run(probe_storage, inputs, str(stage), token,
                                     on_error="return")
            finally:
                probe.unlink(missing_ok=True)
        if not answers:
            raise RunError(f"the Dask cluster at {self.address} has no workers")
        bad = []
        for worker, problems in sorted(answers.items()):
            if isinstance(problems, BaseException):
                bad.append(f"worker {worker}: could not run the storage check ({problems!r})")
                continue
            for path, what in problems.items():
                bad.append(f"worker {worker}: {path} {what}")
        if bad:
            raise RunError("the Dask workers cannot use the same files as this machine:\n  "
                           + "\n  ".join(bad))

    def run(self, task: Task, dataset: str, cfg: Config, shards: list[Shard], stage: Path,
            progress: Progress | None = None) -> Iterator[dict[str, Any]]:
        from distributed import as_completed

        from .storage import is_url

        # Workers resolve paths from their own working folder: give them this machine's. A
        # URL stage is the same everywhere.
        url = is_url(stage)
        stage = stage if url else Path(stage).absolute()
        client = self._connect()
        try:
            inputs = get(dataset).inputs(cfg)
            # A URL input is no file to probe: each worker opens the store itself.
            self.check_storage(client, [str(Path(p).absolute()) for p in inputs
                                        if not is_url(p)], None if url else stage)
            run_id = secrets.token_hex(4)  # keys unique per run: a resumed run is a new graph
            futures = [client.submit(run_task, task, dataset, cfg, shard, str(stage),
                                     retries=self.retries, pure=False,
                                     key=f"neurodata-{dataset}-{shard.key}-{run_id}")
                       for shard in shards]
            try:
                for future in as_completed(futures):
                    yield future.result()
            except BaseException:
                client.cancel(futures)
                raise
        finally:
            client.close()


def make_executor(kind: str, address: str | None, workers: int | None) -> Any:
    """The local pool, or a Dask cluster."""
    if kind == "local":
        return LocalPool(workers)
    if workers is not None:
        raise ConfigError("--workers is for local runs; a Dask cluster has its own workers")
    require_distributed()
    return DaskExecutor(address or "")
