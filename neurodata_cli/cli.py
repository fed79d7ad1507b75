"""The ``neurodata`` command line: one command per registered dataset, generated from its
schema, and ``verify``, ``info``, ``preview`` and ``config`` for finished folders."""

from __future__ import annotations

import difflib
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .errors import NeurodataError
from .objstore import load_url, refuse_url
from .storage import is_url
from .version import __version__


class _OrURL(click.ParamType):  # type: ignore[type-arg]  # generic in newer click only
    """A local path as ``inner`` checks it, or a URL kept as its string (``Path`` would fold
    its ``//``): the command then reads it from the store, or refuses it in one line."""

    name = "path"

    def __init__(self, inner: click.Path):
        self.inner = inner

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        return value if is_url(value) else self.inner.convert(value, param, ctx)


CONFIG = _OrURL(click.Path(exists=True, dir_okay=False, path_type=Path))
FOLDER = _OrURL(click.Path(exists=True, file_okay=False, path_type=Path))
PATH_OR_URL = _OrURL(click.Path(path_type=Path))


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Our errors become ``Error: ...`` on stderr with their exit code (2 usage, 1 runtime), and
    so do the operating system's (exit 1, one line naming the path)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NeurodataError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except BrokenPipeError:
            _quiet_pipe()
        except OSError as exc:  # a full disk, a folder we may not write: a runtime failure
            # One line, even where libhdf5 puts a newline in its message.
            click.echo(f"Error: {' '.join(str(exc).splitlines())}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted; rerun the same command to resume.", err=True)
            sys.exit(130)

    return wrapper


def _click_type(option: Any) -> Any:
    kind = option.kind
    if isinstance(kind, tuple):
        return click.Choice(kind)
    if kind is int:  # unbounded: a plain INT (IntRange(None, None) shows '[x<=None]')
        if option.lo is None and option.hi is None:
            return click.INT
        return click.IntRange(option.lo, option.hi)
    if kind is float:
        if option.lo is None and option.hi is None:
            return float
        return click.FloatRange(option.lo, option.hi, min_open=option.open_bounds,
                                max_open=option.open_bounds)
    if kind is Path:
        return PATH_OR_URL
    return str


def _params(ds: Any) -> list[click.Parameter]:
    """Click options from the dataset's schema, then the options every dataset shares."""
    params: list[click.Parameter] = []
    for option in ds.schema():
        flag = option.flag_name
        if flag is None:
            continue
        help_text = option.help
        if option.yaml:
            shown = option.default is not None and option.default is not False
            default = f"; default {option.default}" if shown and option.kind is not dict else ""
            help_text += f" (config: {option.key}{default})"
        if option.kind is bool:
            params.append(click.Option([flag, option.name], is_flag=True, default=None,
                                       help=help_text))
        else:
            params.append(click.Option([flag, option.name], type=_click_type(option),
                                       help=help_text))
    params += [
        click.Option(["--config", "config_file"], type=CONFIG,
                     help="YAML config laid over the defaults (see: neurodata config NAME)."),
        click.Option(["--out"], type=_OrURL(click.Path(file_okay=False, path_type=Path)),
                     default=Path("data"), show_default=True,
                     help="Output root; data goes to <out>/<dataset>/<version>/. A URL "
                          "(s3://bucket/prefix) writes into an object store: pip install "
                          "'neurodata[cloud]'."),
        click.Option(["--overwrite"], is_flag=True,
                     help="Replace finished output (a folder made with the same config is "
                          "otherwise reused as it is)."),
        click.Option(["--verify", "verify_reused"], is_flag=True,
                     help="Before reusing a finished folder, hash every file (default: check "
                          "that each is there with its size)."),
        click.Option(["--wait"], type=click.FloatRange(min=0), default=24 * 3600.0,
                     metavar="SECONDS",
                     help="Wait this long for another run of the same folder, then reuse what "
                          "it made (0: give up at once).  [default: 86400, a day]"),
        click.Option(["--dry-run"], is_flag=True,
                     help="Print the plan (splits, shards, inputs, output folder, an estimate "
                          "of its size) and write nothing."),
        click.Option(["--quiet"], is_flag=True, help="No progress bar and no summary."),
        click.Option(["--workers"], type=click.IntRange(min=1),
                     help="Processes building shards (default: all cores)."),
    ]
    if ds.distributed:
        params.append(click.Option(
            ["--scheduler"], metavar="ADDRESS",
            help="Run the shards on this Dask scheduler (config: executor.address); needs "
                 "pip install 'neurodata[dask]' and storage shared with the workers (or an "
                 "--out URL)."))
    return params


def dataset_command(name: str) -> click.Command:
    from .datasets import get

    ds = get(name)

    @handle_errors
    def callback(config_file: Path | None, out: Path, overwrite: bool, verify_reused: bool,
                 wait: float, dry_run: bool, quiet: bool, workers: int | None,
                 scheduler: str | None = None,
                 **values: Any) -> None:
        from .api import run

        if dry_run:
            from .api import dry_run as plan

            for line in plan(name, out, values, flags=True, config=config_file,
                             scheduler=scheduler).lines():
                click.echo(line)
            return
        summary = run(name, out, values, flags=True, config=config_file, overwrite=overwrite,
                      quiet=quiet, workers=workers, scheduler=scheduler, wait=wait,
                      verify=verify_reused)
        if not quiet:
            click.echo(summary.line)

    doc = (type(ds).__doc__ or name).strip()
    return click.Command(name, callback=callback, params=_params(ds), help=doc,
                         short_help=doc.splitlines()[0])


def key_command(name: str) -> click.Command:
    """``neurodata key NAME``: the dataset's flags, and its folder's cache key printed."""
    from .datasets import get

    ds = get(name)

    @handle_errors
    def callback(config_file: Path | None, show: bool, **values: Any) -> None:
        from .api import describe_key
        from .cache_key import digest

        for shared in ("out", "overwrite", "verify_reused", "wait", "dry_run", "quiet", "workers",
                       "scheduler"):
            values.pop(shared, None)  # accepted, so a build's flags can be pasted: no effect
        what = describe_key(name, values, flags=True, config=config_file)
        click.echo(json.dumps(what, indent=2, ensure_ascii=False) if show else digest(what))

    params = _params(ds) + [click.Option(["--show"], is_flag=True,
                                         help="Print what the key digests, as JSON.")]
    return click.Command(
        name, callback=callback, params=params,
        short_help=f"Cache key of {name} folders.",
        help=f"Print the cache key of the {name} folder these flags make, before building it: "
             "<dataset>-<version>-<sha256> of the dataset, version, resolved config, library "
             "versions and inputs (names, sizes, digests from their contents; no paths or "
             "times). The same on every machine; nothing is written or downloaded. --out, "
             "--overwrite, --dry-run, --quiet, --workers and --scheduler are accepted and "
             "change nothing.")


def unusable_command(name: str, why: str) -> click.Command:
    """A stand-in for a dataset that cannot be used: whatever its flags, it says why (exit 2)."""
    from .errors import ConfigError

    @handle_errors
    def callback(**_: Any) -> None:
        raise ConfigError(why)

    return click.Command(name, callback=callback, help=why, short_help=f"unusable: {why}",
                         add_help_option=False,
                         context_settings={"ignore_unknown_options": True,
                                           "allow_extra_args": True})


class Commands(click.Group):
    """Dataset commands are made on demand, so one command imports one dataset."""

    make = staticmethod(dataset_command)

    def list_commands(self, ctx: click.Context) -> list[str]:
        from .datasets import names

        self._warn(ctx)
        return names() + sorted(self.commands)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        """Click's, with the closest command suggested for a typo (``yinyan``)."""
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            close = difflib.get_close_matches(args[0], self.list_commands(ctx), n=1) if (
                args and "No such command" in exc.message) else []
            if close:
                raise click.UsageError(f"No such command {args[0]!r}. Did you mean "
                                       f"{close[0]!r}?", ctx) from None
            raise

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        from .datasets import names, problems

        usable = name in self.commands or name in names()
        self._warn(ctx, skip=None if usable else name)
        if name in self.commands:
            return self.commands[name]
        if name in names():
            try:
                return self.make(name)
            except NeurodataError as exc:  # a plugin that does not load: the rest still works
                return unusable_command(name, str(exc))
        why = problems().get(name)
        return unusable_command(name, why) if why else None

    @staticmethod
    def _warn(ctx: click.Context, skip: str | None = None) -> None:
        """One line on stderr per refused entry point, once per command line (the one that
        is run says why as its error instead)."""
        from .datasets import problems

        warned = ctx.find_root().meta.setdefault("neurodata.warned", set())
        for name, why in problems().items():
            if name not in warned and name != skip:
                warned.add(name)
                click.echo(f"Warning: {why}", err=True)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="neurodata")
def cli() -> None:
    """Materialise neuromorphic benchmark datasets exactly, reproducibly and fast.

    Each dataset goes to <out>/<dataset>/<version>/ with a SHA256SUMS and a manifest.json.
    """


class KeyCommands(Commands):
    """``neurodata key NAME [flags]``: one subcommand per dataset, with the dataset's flags."""

    make = staticmethod(key_command)


@cli.group(cls=KeyCommands)
def key() -> None:
    """Print a folder's cache key before building it: neurodata key NAME [NAME's flags].

    \b
    Example (a CI cache keyed on it: docs/ci.md):
      neurodata key yinyang --config configs/yinyang-fixture.yaml
    """


@cli.command()
@click.argument("folder", type=FOLDER)
@click.option("--split", help="Split to show (default: train if present, else the first).")
@click.option("--index", type=click.IntRange(min=0), default=0, show_default=True,
              help="Sample to show (event datasets).")
@click.option("-o", "--output", type=_OrURL(click.Path(dir_okay=False, path_type=Path)),
              help="PNG to write (default: <dataset>-<version>-<split>[-<index>].png here).")
@handle_errors
def preview(folder: Path | str, split: str | None, index: int, output: Path | None) -> None:
    """Draw a PNG of a materialised folder (or its URL) and print its path.

    Each dataset draws its own: a split's scatter, or one sample's event frames.
    """
    refuse_url(output, "preview -o")
    if is_url(folder):  # the manifest and the one split it draws, into a temporary folder
        import tempfile

        from .objstore import download_split

        with tempfile.TemporaryDirectory(prefix="neurodata-preview-") as tmp:
            _preview(Path(download_split(str(folder), split, tmp)), split, index, output, folder)
        return
    _preview(Path(folder), split, index, output, folder)


def _preview(folder: Path, split: str | None, index: int, output: Path | None,
             shown: str | Path) -> None:
    from .datasets.base import Dataset
    from .errors import ConfigError
    from .preview import save
    from .reader import open_dataset

    data = open_dataset(folder)
    if type(data.spec).preview is Dataset.preview:  # a plugin may draw nothing
        raise ConfigError(f"{data.dataset} has no preview: its dataset class "
                          f"({type(data.spec).__module__}) defines no preview method")
    if split is None:
        split = "train" if "train" in data.splits else data.splits[0]
    if split not in data.splits:
        raise ConfigError(f"--split {split}: {shown} holds {', '.join(data.splits)}")
    view = data[split]
    if index >= len(view):
        raise ConfigError(f"--index {index}: the {split} split has {len(view)} samples")
    output = output or Path(data.spec.preview_name(split, index).replace(
        data.spec.name, data.dataset, 1))
    click.echo(save(data.spec.preview(view, split, index), output))


@cli.command()
@click.argument("folder", type=FOLDER)
@handle_errors
def verify(folder: Path) -> None:
    """Re-hash a materialised folder against its SHA256SUMS and manifest.json.

    Names every missing, altered or unlisted file, and anything a finished folder never holds
    (links, FIFOs, devices, extra folders); follows no link and opens nothing that could block.
    The run record run.json (where the inputs were read on the machine that built it) is not
    listed, and is not reported. Exits 0 only when all is well.
    """
    from .manifest import verify as run_verify
    from .objstore import verify_url

    report = verify_url(str(folder)) if is_url(folder) else run_verify(folder)
    for problem in report.problems:
        click.echo(f"problem: {problem}")
    for kind in ("missing", "altered", "unlisted"):
        for rel in getattr(report, kind):
            click.echo(f"{kind}: {rel!r}" if "\n" in rel or "\r" in rel else f"{kind}: {rel}")
    if report.ok:  # the manifest is among the files checked; data files are the rest
        click.echo(f"OK: {data_files(report.checked - 1)} and manifest.json match SHA256SUMS "
                   f"in {folder}")
        for line in _features(folder):
            click.echo(f"  {line}")
        return
    bad = len(report.missing) + len(report.altered) + len(report.unlisted)
    click.echo(f"FAILED: {bad} file problems, {len(report.problems)} other problems in {folder}")
    sys.exit(1)


@cli.command()
@click.argument("folder", type=FOLDER)
@handle_errors
def info(folder: Path) -> None:
    """Print a short summary of a materialised folder, from its manifest.

    Given a root (such as the default data/) that holds <dataset>/<version>/ folders, list each
    finished folder under it in one line.
    """
    from .manifest import load

    found = _folders_under(folder)
    if found:
        _list_folders(folder, found)
        return
    m = load_url(str(folder)) if is_url(folder) else load(folder)
    total = sum(f.get("bytes", 0) for f in m["files"])
    click.echo(f"{m['dataset']} {m['version']}  (neurodata {m.get('tool', {}).get('version')})")
    if m.get("release_notes"):
        click.echo(f"  {m['release_notes']}")
    click.echo(f"  {data_files(len(m['files']))}, {total:,} bytes")
    shared = m.get("config", {})
    for name, split in m["splits"].items():
        stats = split.get("stats", {})
        line = ", ".join(f"{k} {_short(v)}" for k, v in stats.items() if not isinstance(v, list))
        click.echo(f"  {name} ({split.get('format')}, {split['records']} samples): {line}")
        own = {k: v for k, v in split.get("config", {}).items() if shared.get(k) != v}
        if own:  # what this split was made from (its inputs, and where they were read from)
            click.echo(f"    {', '.join(f'{k}={_short(v)}' for k, v in own.items())}")
    click.echo("  each sample holds:")
    for line in _features(folder, m):
        click.echo(f"    {line}")
    libs = ", ".join(f"{k} {v}" for k, v in m.get("libraries", {}).items())
    click.echo(f"  libraries: {libs}")
    cfg = ", ".join(f"{k}={_short(v)}" for k, v in m.get("config", {}).items())
    click.echo(f"  config: {cfg}")


def _hidden(rel: Path) -> bool:
    """A run's stage or lock (``.1.0.0.train.partial``), not a finished folder."""
    return any(part.startswith(".") for part in rel.parts)


def _folders_under(root: Path) -> list[Path | str]:
    """The folders holding a manifest one or two levels below ``root`` (a local folder or a
    URL), unless ``root`` is itself such a folder."""
    from .manifest import MANIFEST

    patterns = (f"*/{MANIFEST}", f"*/*/{MANIFEST}")
    if is_url(root):
        from .storage import fresh

        fs, path = fresh(str(root).rstrip("/"))
        if fs.exists(f"{path}/{MANIFEST}"):
            return []
        rels = [Path(p).relative_to(path) for pattern in patterns
                for p in fs.glob(f"{path}/{pattern}")]
        return sorted(f"{str(root).rstrip('/')}/{r.parent.as_posix()}"
                      for r in rels if not _hidden(r))
    if os.path.lexists(root / MANIFEST):
        return []
    return sorted((p.parent for pattern in patterns
                   for p in root.glob(pattern) if not _hidden(p.relative_to(root))), key=str)


def _list_folders(root: Path, folders: list[Path | str]) -> None:
    """One line per finished folder under ``root``; exit 1 if a manifest is unreadable."""
    from .manifest import load

    bad = 0
    for path in folders:
        try:
            m = load_url(str(path)) if is_url(path) else load(Path(path))
        except NeurodataError as exc:
            click.echo(f"{path}: {exc}")
            bad += 1
            continue
        total = sum(f.get("bytes", 0) for f in m["files"])
        splits = ", ".join(f"{k} {v['records']}" for k, v in m["splits"].items())
        click.echo(f"{m['dataset']} {m['version']}  {path}  ({splits} samples; "
                   f"{data_files(len(m['files']))}, {total:,} bytes)")
    if bad:
        sys.exit(1)


@cli.command()
@click.argument("folder", type=FOLDER)
@click.argument("name")
@click.option("--to", "target", type=_OrURL(click.Path(file_okay=False, path_type=Path)),
              required=True,
              help="Where to make it (outside FOLDER).")
@handle_errors
def export(folder: Path, name: str, target: Path) -> None:
    """Make another tool's layout of a finished folder, without touching the folder.

    \b
    Example:
      neurodata export data/es-imagenet/2.0.0 spikingjelly --to sj-root
    """
    refuse_url(folder, "export")
    refuse_url(target, "export --to")

    from .errors import ConfigError
    from .reader import open_dataset

    data = open_dataset(folder)
    if name not in data.spec.exports:
        known = ", ".join(f"{k} ({v})" for k, v in data.spec.exports.items()) or "none"
        raise ConfigError(f"{data.dataset} has no export {name!r}; it has: {known}")
    click.echo(data.spec.export(name, folder, data.manifest, target))


@cli.command("config")
@click.argument("dataset")
@handle_errors
def show_config(dataset: str) -> None:
    """Print a dataset's default config as YAML, to copy and edit for --config."""
    import yaml

    from .config import defaults
    from .datasets import get

    click.echo(yaml.safe_dump(defaults(get(dataset)), sort_keys=False, allow_unicode=True),
               nl=False)


def _features(folder: Path, manifest: dict[str, Any] | None = None) -> list[str]:
    """What each sample of the folder holds, from its dataset's declared features (nothing
    when that dataset is not installed)."""
    from .datasets import get
    from .manifest import load

    m = manifest or (load_url(str(folder)) if is_url(folder) else load(folder))
    try:
        return get(m.get("builder", m["dataset"])).features.describe()
    except NeurodataError:
        return []


def data_files(n: int) -> str:
    """How every command counts files: the data files the manifest lists (shards and split
    files), never manifest.json or SHA256SUMS."""
    return f"{n} data file{'' if n == 1 else 's'}"


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return str(value)


def main() -> None:
    # numpy's OpenBLAS would start a thread per core at import; we do no linear algebra, and a
    # process without threads is one that local workers can safely be forked from.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        cli(prog_name="neurodata")
    except BrokenPipeError:
        _quiet_pipe()


def _quiet_pipe() -> None:
    """The reader left (``neurodata info | head``): end quietly. Python would report the pipe
    again when it flushes stdout at exit, so stdout points at nothing first."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (a test runner's)
        pass
    sys.exit(0)
