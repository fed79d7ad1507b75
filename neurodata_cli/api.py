"""The public Python API; the command line is a thin layer over it.

``materialise("yinyang", out=path, size=5000, seed=42)`` runs exactly what ``neurodata yinyang
--out PATH --size 5000 --seed 42`` runs, and returns the run's ``RunSummary`` (its ``folder``,
files, bytes, per-split statistics and summary ``line``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .engine import WAIT, DryRun, Materialiser, RunSummary
from .errors import ConfigError


def run(dataset: str, out: str | Path, options: Mapping[str, Any], *, flags: bool = False,
        config: str | Path | None = None, overwrite: bool = False, quiet: bool = True,
        workers: int | None = None, scheduler: str | None = None, wait: float = WAIT,
        verify: bool = False) -> RunSummary:
    """Materialise with ``options`` by name (None: not given); ``flags``: they are the command
    line's, and errors name the flag instead of the keyword."""
    return _materialiser(dataset, out, options, flags=flags, config=config,
                         overwrite=overwrite, quiet=quiet, workers=workers,
                         scheduler=scheduler, wait=wait, verify=verify).run()


def dry_run(dataset: str, out: str | Path, options: Mapping[str, Any], *, flags: bool = False,
            config: str | Path | None = None, scheduler: str | None = None) -> DryRun:
    """What ``run`` would make with the same arguments, planned and written nowhere."""
    return _materialiser(dataset, out, options, flags=flags, config=config,
                         scheduler=scheduler, dry=True).dry_run()


def _materialiser(dataset: str, out: str | Path, options: Mapping[str, Any], *,
                  flags: bool = False, config: str | Path | None = None,
                  overwrite: bool = False, quiet: bool = True, workers: int | None = None,
                  scheduler: str | None = None, dry: bool = False, wait: float = WAIT,
                  verify: bool = False) -> Materialiser:
    """The run the arguments ask for, every value checked (``dry``: no executor is started)."""
    from .config import parse, resolve, take_executor
    from .datasets import get
    from .executors import make_executor
    from .objstore import refuse_url
    from .storage import is_url

    refuse_url(config, "--config" if flags else "config")
    ds = get(dataset)
    values = resolve(ds, Path(config) if config is not None else None, options, flags)
    kind, address = take_executor(values)
    if scheduler is not None:
        kind, address = "dask", scheduler
    if kind == "dask" and not ds.distributed:
        raise ConfigError(f"{ds.name} runs locally only; it has no Dask executor")
    executor = None if dry else make_executor(kind, address, workers)
    cfg = parse(ds, values)  # every value checked before any I/O
    if is_url(out):  # an object store: its own lock, stage and commit (remote.py)
        from .remote import RemoteMaterialiser

        return RemoteMaterialiser(ds, cfg, str(out), overwrite=overwrite, quiet=quiet,
                                  executor=executor, wait=wait, verify=verify, flags=flags)
    return Materialiser(ds, cfg, Path(out), overwrite=overwrite, quiet=quiet,
                        executor=executor, wait=wait, verify=verify, flags=flags)


def materialise(dataset: str, out: str | Path = "data", *, config: str | Path | None = None,
                overwrite: bool = False, quiet: bool = True, workers: int | None = None,
                scheduler: str | None = None, wait: float = WAIT, verify: bool = False,
                **options: Any) -> RunSummary:
    """Materialise ``dataset`` into ``<out>/<dataset>/<version>/`` and return its summary.

    ``options`` are the fields of the dataset's config (``r_small=0.2``, ``nmnist_root=path``,
    ``shard_size=100``) as plain Python values, laid over ``config`` (a YAML file) and the
    defaults. Errors raise ``ConfigError`` (a bad option, named by its keyword) or ``RunError``
    (bad inputs, refused output).

    A folder already made with the same config (and inputs) is reused: nothing is written, and
    the summary says ``reused``. Its listed files are checked by size first, or all hashed
    with ``verify=True``. A folder made otherwise raises ``FolderExists`` (a ``RunError``)
    unless ``overwrite=True`` (which always rebuilds). Another run of the same folder (another
    process, another pytest-xdist worker) is waited for, up to ``wait`` seconds (a day).
    """
    _check_options(dataset, options)
    return run(dataset, out, options, config=config, overwrite=overwrite, quiet=quiet,
               workers=workers, scheduler=scheduler, wait=wait, verify=verify)


def describe_key(dataset: str, options: Mapping[str, Any], *, flags: bool = False,
                 config: str | Path | None = None) -> dict[str, Any]:
    """What the cache key of ``dataset`` with ``options`` digests (``cache_key.describe``);
    ``flags`` as for ``run``. Options that do not shape the bytes (``--out``, the executor) are
    not in it."""
    from .cache_key import describe
    from .config import parse, resolve, take_executor
    from .datasets import get
    from .objstore import refuse_url

    refuse_url(config, "--config" if flags else "config")
    ds = get(dataset)
    values = resolve(ds, Path(config) if config is not None else None, options, flags)
    take_executor(values)  # where shards run, never what they hold
    return describe(ds, parse(ds, values))


def key(dataset: str, *, config: str | Path | None = None, **options: Any) -> str:
    """The cache key of the folder ``materialise(dataset, config=config, **options)`` makes,
    known before building it: ``<dataset>-<version>-<sha256>`` of the dataset, its version,
    the tool's version, the config as the manifest records it, the library versions it records
    and the inputs (names, sizes, digests from their contents; no paths or times). The same on
    every machine for the same config and inputs; nothing is written or downloaded."""
    from .cache_key import digest

    _check_options(dataset, options)
    return digest(describe_key(dataset, options, config=config))


def _check_options(dataset: str, options: Mapping[str, Any]) -> None:
    """Refuse a keyword that is no option of the dataset's, naming the ones it has."""
    from .config import did_you_mean
    from .datasets import get

    known = {o.name for o in get(dataset).schema()}
    unknown = sorted(set(options) - known)
    if unknown:
        hint = did_you_mean(unknown[0], known) or f"; it has {', '.join(sorted(known))}"
        raise ConfigError(f"{dataset} has no option {unknown[0]!r}{hint}")
