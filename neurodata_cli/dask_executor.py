"""Run a shard plan on an existing Dask cluster (``pip install 'neurodata[dask]'``).

One task per shard: a shard is seconds of work or more, far above Dask's per-task overhead.
Workers run the same ``run_shard`` as local runs, writing into the shared staging folder, so the
bytes are those of a local run for any number of workers; the client alone writes the manifest
and ``SHA256SUMS``. A lost worker's shard is run again elsewhere (its files are written whole or
not at all), and a killed client resumes like a local run, from the shard records in the stage.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .engine import Shard, run_shard
from .errors import ConfigError, RunError

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


def probe_storage(inputs: list[str], stage: str, token: str) -> dict[str, str]:
    """Runs on every worker: can it read the inputs and write into the stage?"""
    problems = {}
    for path in inputs:
        if not os.path.exists(path):
            problems[path] = "does not exist on this worker"
        elif not os.access(path, os.R_OK | (os.X_OK if os.path.isdir(path) else 0)):
            problems[path] = "is not readable on this worker"
    probes = os.path.join(stage, ".neurodata", "probes")
    try:
        os.makedirs(probes, exist_ok=True)
        name = f"{socket.gethostname()}-{os.getpid()}-{token}"
        with open(os.path.join(probes, name), "w") as f:
            f.write(token)
        problems["__probe__"] = name
    except OSError as exc:
        problems[stage] = f"is not writable on this worker ({exc.strerror})"
    return problems


class DaskExecutor:
    """Runs ``run_shard`` for each shard as a Dask task; records come back as tasks finish."""

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

    def check_storage(self, client: Any, inputs: list[str], stage: Path) -> None:
        """Fail before any work unless every worker reads the inputs and shares the stage."""
        token = secrets.token_hex(8)
        answers = client.run(probe_storage, inputs, str(stage), token, on_error="return")
        if not answers:
            raise RunError(f"the Dask cluster at {self.address} has no workers")
        seen = stage / ".neurodata" / "probes"
        bad = []
        for worker, problems in sorted(answers.items()):
            if isinstance(problems, BaseException):
                bad.append(f"worker {worker}: could not run the storage check ({problems!r})")
                continue
            probe = problems.pop("__probe__", None)
            for path, what in problems.items():
                bad.append(f"worker {worker}: {path} {what}")
            if probe is not None:
                file = seen / probe
                if not (file.is_file() and file.read_text() == token):
                    bad.append(f"worker {worker}: wrote to {stage} but this machine does not see "
                               "it; the output folder must be on storage shared with the workers "
                               "at the same path")
                file.unlink(missing_ok=True)
        if bad:
            raise RunError("the Dask workers cannot use the same files as this machine:\n  "
                           + "\n  ".join(bad))

    def run(self, dataset: str, cfg: Any, shards: list[Shard], stage: Path
            ) -> Iterator[dict[str, Any]]:
        from distributed import as_completed

        from .engine import _dataset

        client = self._connect()
        try:
            inputs = getattr(_dataset(dataset), "input_paths", lambda _cfg: [])(cfg)
            self.check_storage(client, [str(Path(p).absolute()) for p in inputs], stage)
            run_id = secrets.token_hex(4)  # keys unique per run: a resumed run is a new graph
            futures = [
                # Not exclusive: a worker presumed lost may still be writing the same shard.
                client.submit(run_shard, dataset, cfg, shard, str(stage), False,
                              retries=self.retries, pure=False,
                              key=f"neurodata-{dataset}-{shard.key}-{run_id}")
                for shard in shards
            ]
            try:
                for future in as_completed(futures):
                    yield future.result()
            except BaseException:
                client.cancel(futures)
                raise
        finally:
            client.close()
