"""The ``neurodata`` command line: thin commands that turn flags into a config for the engine."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import NeurodataError

CONFIG = click.Path(exists=True, dir_okay=False, path_type=Path)
FOLDER = click.Path(exists=True, file_okay=False, path_type=Path)


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Our errors become ``Error: ...`` on stderr with their exit code (2 usage, 1 runtime), and
    so do the operating system's (exit 1)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NeurodataError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:  # a full disk, a folder we may not write: a runtime failure
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted; rerun the same command to resume.", err=True)
            sys.exit(130)

    return wrapper


def run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options every materialising command shares."""
    for decorator in reversed([
        click.option("--config", "config_file", type=CONFIG,
                     help="YAML config laid over the packaged defaults."),
        click.option("--out", type=click.Path(file_okay=False, path_type=Path),
                     default=Path("data"), show_default=True,
                     help="Output root; data goes to <out>/<dataset>/<version>/."),
        click.option("--overwrite", is_flag=True, help="Replace finished output."),
        click.option("--quiet", is_flag=True, help="No progress bar and no summary."),
    ]):
        func = decorator(func)
    return func


def scheduler_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--scheduler", metavar="ADDRESS",
        help="Run the shards on this Dask scheduler (config: executor.address); needs "
             "pip install 'neurodata[dask]' and storage shared with the workers.")(func)


def start_local_workers(dataset: str, workers: int | None, scheduler: str | None) -> None:
    """Start the local pool's worker server before the command's own imports and planning, so
    that the two overlap (a few tenths of a second per run). A config that turns out to name a
    Dask executor only leaves the server idle until the command ends."""
    if scheduler is None and (workers or os.cpu_count() or 1) > 1:
        from .engine import forking, start_worker_server

        if not forking():  # forked workers need no server
            start_worker_server(dataset)


def make_executor(values: Any, workers: int | None, scheduler: str | None) -> Any:
    """The local pool, or a Dask cluster from --scheduler or the config's ``executor``."""
    from .config import take_executor
    from .engine import PoolExecutor
    from .errors import ConfigError

    kind, address = take_executor(values)
    if scheduler is not None:
        kind, address = "dask", scheduler
    if kind == "local":
        return PoolExecutor(workers)
    if workers is not None:
        raise ConfigError("--workers is for local runs; a Dask cluster has its own workers")
    from .dask_executor import DaskExecutor, require_distributed

    require_distributed()
    return DaskExecutor(address)


def materialise(dataset: str, cfg: Any, out: Path, overwrite: bool, quiet: bool,
                executor: Any = None) -> None:
    from .datasets import get
    from .engine import Materialiser

    summary = Materialiser(get(dataset), cfg, out, overwrite=overwrite, quiet=quiet,
                           executor=executor).run()
    if not quiet:
        click.echo(summary.line)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="neurodata")
def cli() -> None:
    """Materialise neuromorphic benchmark datasets exactly, reproducibly and fast.

    Each dataset goes to <out>/<dataset>/<version>/ with a SHA256SUMS and a manifest.json.
    """


@cli.command()
@click.option("--size", type=click.IntRange(min=1),
              help="Generate one split of this many samples instead of the config's splits.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1),
              help="Seed of the --size split (default 42).")
@click.option("--split", "split_name", help="Name of the --size split (default train).")
@click.option("--r-small", type=float, help="Radius of the dots (config: r_small).")
@click.option("--r-big", type=float, help="Radius of the whole circle (config: r_big).")
@click.option("--format", "fmt", type=click.Choice(["hdf5", "npy"]), help="Output format.")
@click.option("--encoding", type=click.Choice(["values", "spike-times"]),
              help="Also write the spike-time encoding of Göltz et al.")
@run_options
@handle_errors
def yinyang(size: int | None, seed: int | None, split_name: str | None, r_small: float | None,
            r_big: float | None, fmt: str | None, encoding: str | None, config_file: Path | None,
            out: Path, overwrite: bool, quiet: bool) -> None:
    """The Yin-Yang dataset, bit-identical to the authors' generator.

    Without --size it writes the config's splits (the paper's: train 5000/seed 42,
    validation 1000/41, test 1000/40).

    \b
    Examples:
      neurodata yinyang
      neurodata yinyang --size 100000 --seed 7 --format npy --out /tmp/yy
    """
    from .config import resolve
    from .datasets import yinyang as ds

    ds.check_flags(size, seed, split_name)
    flags: dict[str, tuple[Any, str]] = {
        "r_small": (r_small, "--r-small"), "r_big": (r_big, "--r-big"),
        "format": (fmt, "--format"), "encoding": (encoding, "--encoding"),
    }
    values = resolve(ds.NAME, config_file, flags, replace=frozenset({"splits"}))
    if size is not None:
        name = split_name or "train"
        values.set_flag("splits", {name: {}}, "--split")
        values.set_flag(f"splits.{name}.size", size, "--size")
        values.set_flag(f"splits.{name}.seed", 42 if seed is None else seed, "--seed")
    materialise(ds.NAME, ds.parse_config(values), out, overwrite, quiet)


@cli.command("2nmnist")
@click.option("--nmnist-root", type=click.Path(file_okay=False, path_type=Path),
              help="Folder with Train/ and Test/ (<digit>/*.bin) or Train.zip and Test.zip.")
@click.option("--download", is_flag=True, help="Fetch the official archives into --cache.")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path),
              help="Where --download keeps the archives (config: download.cache).")
@click.option("--split", "split", type=click.Choice(["train", "test", "all"]), default="all",
              show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="RandomState seed (default 42).")
@click.option("--k", type=click.IntRange(2, 10), help="Superimpose up to K digits (default 2).")
@click.option("--max-digit", type=click.IntRange(0, 9), help="Use digits 0..N (default 9).")
@click.option("--format", "fmt", type=click.Choice(["hdf5", "bin"]), help="Output format.")
@click.option("--workers", type=click.IntRange(min=1),
              help="Processes building shards (default: all cores).")
@scheduler_option
@run_options
@handle_errors
def two_nmnist(nmnist_root: Path | None, download: bool, cache: Path | None, split: str,
               seed: int | None, k: int | None, max_digit: int | None, fmt: str | None,
               workers: int | None, scheduler: str | None, config_file: Path | None, out: Path,
               overwrite: bool, quiet: bool) -> None:
    """2NMNIST: pairs of different NMNIST digits superimposed, one time-reversed.

    The paper's procedure, over sorted sources so every machine makes the same dataset.
    Reads the official Train/Test folders or zips (in place), or downloads the zips.

    \b
    Examples:
      neurodata 2nmnist --nmnist-root ~/datasets/NMNIST
      neurodata 2nmnist --download --format bin --split test
    """
    from dataclasses import replace

    if not download:  # a download takes long enough; start no idle workers before it
        start_local_workers("2nmnist", workers, scheduler)
    from .config import resolve
    from .datasets import two_nmnist as ds
    from .errors import ConfigError
    from .nmnist_source import download as fetch
    from .nmnist_source import locate

    if (nmnist_root is None) == (not download):
        raise ConfigError("give exactly one of --nmnist-root PATH and --download")
    if cache is not None and not download:
        raise ConfigError("--cache goes with --download")
    flags = {"seed": (seed, "--seed"), "k": (k, "--k"), "max_digit": (max_digit, "--max-digit"),
             "format": (fmt, "--format"), "download.cache": (cache and str(cache), "--cache")}
    values = resolve(ds.NAME, config_file, flags)
    executor = make_executor(values, workers, scheduler)
    cfg = ds.parse_config(values)  # all checked before any I/O
    wanted = ["train", "test"] if split == "all" else [split]
    root = nmnist_root
    if download:
        root = Path(cfg.cache).expanduser()
        for name in wanted:
            entry = cfg.downloads[name]
            fetch(entry.url, entry.md5, root / entry.file, quiet)
    cfg = replace(cfg, sources=tuple(locate(root, name) for name in wanted))
    materialise(ds.NAME, cfg, out, overwrite, quiet, executor)


@cli.command("es-imagenet")
@click.option("--imagenet-root", type=FOLDER, required=True,
              help="ImageNet folder holding train/<wnid>/* and/or val/.")
@click.option("--split", type=click.Choice(["train", "val"]),
              help="Which split to convert (default train).")
@click.option("--val-labels", type=CONFIG,
              help="Labels table '<file name> <label>' for a flat val/ "
                   "(default: the ILSVRC2012 ground truth shipped with neurodata).")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Event threshold on V/255 differences (default 0.18).")
@click.option("--min-events", type=click.IntRange(min=0),
              help="Skip images with fewer events (default 1000).")
@click.option("--format", "fmt", type=click.Choice(["hdf5", "npz"]),
              help="HDF5 event shards (default) or the released npz layout.")
@click.option("--shard-size", type=click.IntRange(min=1), help="Images per shard (default 1000).")
@click.option("--workers", type=click.IntRange(min=1),
              help="Processes building shards (default: all cores).")
@click.option("--limit", type=click.IntRange(min=1), help="Convert only the first N inputs.")
@scheduler_option
@run_options
@handle_errors
def es_imagenet(imagenet_root: Path, split: str | None, val_labels: Path | None,
                threshold: float | None, min_events: int | None, fmt: str | None,
                shard_size: int | None, workers: int | None, limit: int | None,
                scheduler: str | None, config_file: Path | None, out: Path, overwrite: bool,
                quiet: bool) -> None:
    """ES-ImageNet: ImageNet images converted to 8 steps of ON/OFF events by ODG.

    Event-exact to the authors' converter. Inputs are sorted, so the output does not depend on
    the filesystem or on --workers. A killed run resumes when the same command is run again.

    \b
    Examples:
      neurodata es-imagenet --imagenet-root ~/datasets/imagenet
      neurodata es-imagenet --imagenet-root ~/datasets/imagenet --split val --format npz
      neurodata es-imagenet --imagenet-root /shared/imagenet --out /shared/data \\
          --scheduler tcp://10.0.0.5:8786
    """
    from dataclasses import replace

    start_local_workers("es-imagenet", workers, scheduler)
    from .config import resolve
    from .datasets import es_imagenet as ds
    from .imagenet_source import locate

    flags = {"split": (split, "--split"), "threshold": (threshold, "--threshold"),
             "min_events": (min_events, "--min-events"), "format": (fmt, "--format"),
             "shard_size": (shard_size, "--shard-size"), "limit": (limit, "--limit")}
    values = resolve(ds.NAME, config_file, flags)
    executor = make_executor(values, workers, scheduler)
    cfg = ds.parse_config(values)
    cfg = replace(cfg, source=locate(imagenet_root, cfg.split, val_labels))
    materialise(ds.NAME, cfg, out, overwrite, quiet, executor)


@cli.command()
@click.argument("folder", type=FOLDER)
@click.option("--split", help="Split to show (default: train if present, else the first).")
@click.option("--index", type=click.IntRange(min=0), default=0, show_default=True,
              help="Sample to show (2NMNIST, ES-ImageNet).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="PNG to write (default: <dataset>-<version>-<split>[-<index>].png here).")
@handle_errors
def preview(folder: Path, split: str | None, index: int, output: Path | None) -> None:
    """Draw a PNG of a materialised folder and print its path.

    Yin-Yang: a scatter of one split, coloured by class. 2NMNIST: one sample's event frames
    over time. ES-ImageNet: one sample's 8 event frames and its Edge-Integral relief.
    """
    from .errors import ConfigError
    from .preview import preview as draw
    from .reader import open_dataset

    data = open_dataset(folder)
    if split is None:
        split = "train" if "train" in data.splits else data.splits[0]
    if split not in data.splits:
        raise ConfigError(f"--split {split}: {folder} holds {', '.join(data.splits)}")
    if data.dataset != "yinyang" and index >= len(data[split]):
        raise ConfigError(f"--index {index}: the {split} split has {len(data[split])} samples")
    if output is None:
        suffix = "" if data.dataset == "yinyang" else f"-{index}"
        output = Path(f"{data.dataset}-{data.manifest['version']}-{split}{suffix}.png")
    click.echo(draw(data, split, index, output))


@cli.command()
@click.argument("folder", type=FOLDER)
@handle_errors
def verify(folder: Path) -> None:
    """Re-hash a materialised folder against its SHA256SUMS and manifest.json.

    Names every missing, altered or unlisted file; exits 0 only when all is well.
    """
    from .manifest import verify as run_verify

    report = run_verify(folder)
    for problem in report.problems:
        click.echo(f"problem: {problem}")
    for kind in ("missing", "altered", "unlisted"):
        for rel in getattr(report, kind):
            click.echo(f"{kind}: {rel}")
    if report.ok:
        click.echo(f"OK: {report.checked} files match SHA256SUMS in {folder}")
        return
    bad = len(report.missing) + len(report.altered) + len(report.unlisted)
    click.echo(f"FAILED: {bad} file problems, {len(report.problems)} other problems in {folder}")
    sys.exit(1)


@cli.command()
@click.argument("folder", type=FOLDER)
@handle_errors
def info(folder: Path) -> None:
    """Print a short summary of a materialised folder, from its manifest."""
    from .manifest import finished_manifest

    m = finished_manifest(folder)
    total = sum(f["bytes"] for f in m["files"])
    click.echo(f"{m['dataset']} {m['version']}  (neurodata {m['tool']['version']})")
    if m.get("release_notes"):
        click.echo(f"  {m['release_notes']}")
    click.echo(f"  {len(m['files'])} files, {total:,} bytes")
    for name, split in m["splits"].items():
        stats = split.get("stats", {})
        line = ", ".join(f"{k} {_short(v)}" for k, v in stats.items() if not isinstance(v, list))
        click.echo(f"  {name}: {line}")
    libs = ", ".join(f"{k} {v}" for k, v in m.get("libraries", {}).items())
    click.echo(f"  libraries: {libs}")
    cfg = ", ".join(f"{k}={_short(v)}" for k, v in m.get("config", {}).items())
    click.echo(f"  config: {cfg}")


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return str(value)


def main() -> None:
    # numpy's OpenBLAS would start a thread per core at import; we do no linear algebra, and a
    # process without threads is one that local workers can safely be forked from.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # A closed pipe (neurodata info | head) is not an error worth a traceback.
    try:
        cli(prog_name="neurodata")
    except BrokenPipeError:
        os._exit(0)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    # A successful run ends without the interpreter's teardown: freeing every object and module
    # one by one took 40 ms after a large run (a sixth of a million-sample Yin-Yang run). Every
    # file is closed and every pool joined by now; the exit handlers still run.
    import atexit

    getattr(atexit, "_run_exitfuncs", lambda: None)()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader left early (| head): nothing left to say
        pass
    os._exit(0)
