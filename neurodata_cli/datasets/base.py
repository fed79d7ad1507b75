"""The dataset contract: what a dataset says about itself, and nothing the engine does.

A dataset is one subclass of ``Dataset`` in its own folder. It declares its name, version and
release notes, its options (``options``: a frozen dataclass of ``option`` fields), its output
formats, how its work splits into shards (``plan``), how one shard is built (``build``, pure:
samples as arrays, no files written) and how a stored sample reads back (``sample``, ``frames``,
``preview``). The engine does the staging, writing, resume, checksums, parallelism and progress.
"""

from __future__ import annotations

import copy
import os
import re
import stat
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, NamedTuple, TypeVar, Union

from ..errors import ConfigError
from ..features import Features

if TYPE_CHECKING:
    import numpy as np

# A dataset's name (and output name) becomes a command and a folder, its version a folder: plain
# words only, never a path ('/', '..') nor a hidden name.
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")


def plain_name(name: object) -> bool:
    """Whether ``name`` may name a dataset: lowercase letters, digits, '-' and '_'."""
    return isinstance(name, str) and NAME.match(name) is not None


@dataclass(frozen=True)
class Option:
    """How one config field is given: a YAML key, a flag and a manifest entry (see ``option``).

    ``kind`` comes from the field's type: int, float, str, bool, Path, a ``Literal`` of
    choices, or dict (checked by ``parse``); ``Optional`` makes None a value.
    """

    default: Any = None
    help: str = ""
    key: str = ""  # the YAML key, dotted for nested mappings ("spike_times.t_early")
    flag: bool | str = True
    yaml: bool = True
    manifest: bool = True
    lo: float | None = None
    hi: float | None = None
    open_bounds: bool = False  # lo < value < hi instead of lo <= value <= hi
    replace: bool = False  # a mapping from a config file replaces the default instead of merging
    parse: Callable[[Any, str], Any] | None = None  # (config Reader, key) -> value, for dicts
    name: str = ""  # the field's name: the keyword of ``materialise``
    kind: Any = None

    @property
    def flag_name(self) -> str | None:
        if self.flag is False:
            return None
        if isinstance(self.flag, str):
            return self.flag
        return "--" + self.key.replace(".", "-").replace("_", "-")


def option(default: Any = None, help: str = "", **how: Any) -> Any:
    """A config field with its default, help and bounds (``Option``'s keywords): it becomes the
    flag ``--name-with-dashes``, the YAML key ``name`` and a manifest entry.

    ``key="a.b"`` nests the YAML key (the field is ``a_b``); ``flag`` is a string for another
    spelling or False for a YAML-only key; ``yaml=False`` makes a flag-only option;
    ``manifest=False`` keeps it out of the recorded config and of the fingerprint a resumed run
    must match (it does not shape the data). A field declared without ``option`` is no flag and
    no key: a value the dataset fills in itself (``dataclasses.replace`` in ``locate``).
    """
    meta = {"option": Option(default, help, **how)}
    if isinstance(default, dict):  # a dataclass field needs a factory for a mutable default
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Config:
    """The options every dataset has; a dataset's options subclass it (one frozen dataclass).

    ``format`` takes the dataset's formats as choices, the first the default. ``shard_size`` is
    no option until a dataset declares it again with its default, bounds and help.
    """

    format: str = option("", "Output format.")
    shard_size: int = option(0, flag=False, yaml=False, manifest=False)

    def recorded(self) -> dict[str, Any]:
        """What the manifest records: every option that shapes the data, nested by key. A
        dataset adds what it located (its inputs) by extending this."""
        return nested({o.key: getattr(self, o.name) for o in schema(type(self)) if o.manifest})

    def origin(self) -> dict[str, Any]:
        """Where this machine's run found its inputs (absolute paths, an archive's location):
        the run record beside the manifest keeps it, never a checksummed file, so that the same
        config over the same inputs gives the same folder on every machine."""
        return {}


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` as ``{"a": {"b": 1}}``."""
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = out
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


C = TypeVar("C", bound=Config)


def _kind(hint: Any) -> Any:
    """An option's kind from its field's type (``int | None`` is int)."""
    if typing.get_origin(hint) in (Union, UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        # ``Path | str``: a path option that also takes a URL (kept as the string)
        (hint,) = [Path] if Path in args else args
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    return typing.get_origin(hint) or hint


# A dict, not functools.cache: mypy does not take a frozen dataclass's class as Hashable.
_SCHEMAS: dict[type[Config], tuple[Option, ...]] = {}


def schema(cls: type[Config]) -> tuple[Option, ...]:
    """The options of a config class: its own fields in order, then ``Config``'s."""
    if cls not in _SCHEMAS:
        hints = typing.get_type_hints(cls)
        shared = {f.name for f in fields(Config)}
        ordered = sorted((f for f in fields(cls) if "option" in f.metadata),
                         key=lambda f: f.name in shared)
        _SCHEMAS[cls] = tuple(replace(o, name=f.name, key=o.key or f.name,
                                      kind=_kind(hints[f.name]))
                              for f in ordered for o in [f.metadata["option"]])
    return _SCHEMAS[cls]


class Invalid(ConfigError):
    """A value ``Dataset.check`` refuses; the config layer names the flag or file and key."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


@dataclass(frozen=True)
class Shard:
    """One unit of work. The engine derives its key and file names from split, index, count."""

    split: str
    index: int
    count: int
    # The work it plans, in the dataset's ``unit``: what progress counts and orders work by.
    # Its blocks' units must add up to it (the engine checks): its samples where blocks leave
    # ``Block.units`` unset, or inputs converted or skipped (ES-ImageNet).
    units: int
    payload: Any = None  # a small picklable dataclass of the dataset's

    @property
    def key(self) -> str:
        return f"{self.split}-{self.index:05d}-of-{self.count:05d}"


@dataclass
class Block:
    """Consecutive samples of one shard, as columns: what ``build`` yields.

    ``columns`` hold one entry per sample along their first axis (labels, features, sources).
    Event datasets also give ``events`` (x, y, t, p, concatenated over the block's samples) and
    ``counts`` (events per sample). ``stats`` are added into the split's statistics. A shard
    yields its samples in blocks of any size; the progress bar moves by each block's ``units``.
    The engine checks every block before a writer sees it (``neurodata_cli/blocks.py``).
    """

    columns: dict[str, np.ndarray]
    events: dict[str, np.ndarray] | None = None
    counts: np.ndarray | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    units: int | None = None  # what progress counts for it (default: its samples)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


class InputFile(NamedTuple):
    """One input a run reads, as a resumed run must find it again: its name as the user knows
    it, its size (-1: missing or not a regular file), and what tells a rewrite apart when it is
    free (a zip's CRC-32, a file's modification time), since reading every input again to hash
    it would cost what resuming saves."""

    name: str
    size: int
    digest: str = ""


def file_listing(root: Path, rels: Iterable[str], prefix: str = "") -> list[InputFile]:
    """``prefix + rel``, the size and the modification time of each file ``root/rel``, by one
    stat each: a file rewritten at the same size has another time."""
    out = []
    for rel in rels:
        try:
            st = os.stat(os.path.join(root, rel))
        except OSError:  # gone, or a dangling link: the run will say so when it reads it
            out.append(InputFile(prefix + rel, -1))
            continue
        regular = stat.S_ISREG(st.st_mode)
        out.append(InputFile(prefix + rel, st.st_size if regular else -1,
                             f"mtime_ns:{st.st_mtime_ns}" if regular else ""))
    return out


def dist_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions of these distributions, "absent" for one not installed."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


class Store:
    """Stored samples of one split: ``len``, ``read(i)`` (every stored field of sample i),
    ``read_many(indices)``, and ``columns()`` for small datasets read whole."""

    def __len__(self) -> int:
        raise NotImplementedError

    def read(self, i: int) -> dict[str, Any]:
        raise NotImplementedError

    def read_many(self, indices: Iterable[int]) -> list[dict[str, Any]]:
        return [self.read(i) for i in indices]

    def info(self, i: int) -> dict[str, Any]:
        """Sample i's stored fields but its events (a store that keeps them apart skips them)."""
        return {k: v for k, v in self.read(i).items() if k != "events"}

    def columns(self) -> dict[str, np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__} is read sample by sample")

    def check_index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} of {n}")
        return int(i) % n


class Writer:
    """Encodes a shard's blocks (as ``features`` declare them) into files below the stage, and
    opens those files again for reading. Every writer takes the same blocks."""

    name: str = ""
    libraries: tuple[str, ...] = ()  # distributions whose versions shape the bytes
    # False: the format takes no ``Block.events`` (columns only); events given to it are
    # refused, not dropped.
    stores_events: bool = True
    # True: ``open`` also takes a folder's URL (a string, ``s3://...``) and reads through fsspec.
    reads_urls: bool = False

    def versions(self) -> dict[str, str]:
        return dist_versions(self.libraries)

    def check(self, cfg: Config, shards: list[Shard]) -> None:
        """Refuse, before any work, a plan this format cannot store (raise ConfigError)."""

    def write(self, stage: Path, ds: Dataset[Any], cfg: Config, shard: Shard,
              blocks: Iterable[Block]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def table(self, split: str, block: Block) -> list[Any]:
        """Rows a block adds to its split's table (a layout's label file), in sample order."""
        return []

    def split_files(self, split: str, rows: list[Any]) -> list[SplitFile]:
        """Files made from a whole split's ``table`` rows, once its shards are all done."""
        return []

    def open(self, folder: Path, split: str, files: list[dict[str, Any]]) -> Store:
        raise NotImplementedError


@dataclass
class SplitFile:
    """A file made from a whole split's statistics (a label table), after all its shards."""

    path: str
    text: str


class Dataset(Generic[C]):
    """The contract. Subclasses set the class attributes and override what they need;
    ``Dataset[MyConfig]`` types the config ``plan`` and ``build`` get."""

    name: ClassVar[str]
    version: ClassVar[str]
    release_notes: ClassVar[dict[str, str]] = {}
    options: ClassVar[type[Config]] = Config  # the config: a frozen dataclass of ``option``s
    # Output formats by name, the first the default: writer objects (``formats.hdf5.HDF5``, ...).
    formats: ClassVar[dict[str, Writer]] = {}
    unit: ClassVar[str] = "samples"
    split_scoped: ClassVar[bool] = False  # runs may add splits to one folder one at a time
    split_keys: ClassVar[frozenset[str]] = frozenset()  # config keys that may differ per split
    distributed: ClassVar[bool] = False  # may run on a Dask cluster (--scheduler)
    preload: ClassVar[tuple[str, ...]] = ()  # modules a worker imports before its first shard
    libraries: ClassVar[tuple[str, ...]] = ()  # distributions that shape the data (a decoder)
    # What each sample holds (``features.Features``): columns, events, sensor size, time unit.
    features: ClassVar[Features] = Features()

    # ---- config and inputs ------------------------------------------------------------------
    def schema(self) -> tuple[Option, ...]:
        """The options given by flags or keys: the config's, with the formats as choices."""
        out = []
        for o in schema(self.options):
            if o.name == "format":
                if not self.formats:
                    continue
                o = replace(o, kind=tuple(self.formats), default=next(iter(self.formats)))
            if o.flag is not False or o.yaml:
                out.append(o)
        return tuple(out)

    def check(self, cfg: C) -> C | None:
        """Checks between options (raise ``Invalid(key, message)``), and values made from
        others: returns the config ``plan`` gets (None: ``cfg`` as it is)."""

    def locate(self, cfg: C) -> C:
        """Find the inputs (raise ConfigError or RunError); runs before anything is written."""
        return cfg

    def dry_locate(self, cfg: C) -> tuple[C | None, list[str]]:
        """``locate`` for ``--dry-run``, which writes nothing: the config to plan (None when
        the inputs are not there yet), and lines saying what a run would do first."""
        return self.locate(cfg), []

    def needs_scan(self, cfg: C) -> bool:
        """Whether ``scan`` has work to do (then it runs once the run's stage exists)."""
        return False

    def scan(self, cfg: C, cache: Path) -> C:
        """Index inputs where listing them is slow (an archive of a million members), keeping
        the index in ``cache``, the run's staging area, so a resumed run reads it instead."""
        return cfg

    def splits(self, cfg: C) -> list[str]:
        """The splits this config writes."""
        return ["train"]

    def output_name(self, cfg: C) -> str:
        """The dataset's name in its output folder, manifest and files (a config may make a
        dataset of another name: k-NMNIST)."""
        return self.name

    def inputs(self, cfg: C) -> list[str]:
        """Paths every cluster worker must be able to read."""
        return []

    def input_listing(self, cfg: C, shards: list[Shard]) -> list[InputFile]:
        """Every input the planned ``shards`` read (``file_listing`` helps). The engine keeps it
        in the stage: a killed run resumes only over the very same inputs, and starts again,
        saying what changed, over others. A dataset without inputs lists none."""
        return []

    def pinned_inputs(self, cfg: C) -> list[InputFile] | None:
        """The inputs by their published digests (a download's md5), known without fetching or
        reading them: what ``neurodata key`` digests instead of locating and listing them.
        None: locate and list them."""
        return None

    # ---- the work ---------------------------------------------------------------------------
    def plan(self, cfg: C) -> list[Shard]:
        raise NotImplementedError

    def build(self, cfg: C, shard: Shard) -> Iterable[Block]:
        raise NotImplementedError

    def split_files(self, cfg: C, split: str, stats: dict[str, Any]) -> list[SplitFile]:
        """Files written once a split's shards are all done."""
        return []

    def shard_attrs(self, cfg: C, shard: Shard) -> dict[str, Any]:
        """Parameters stored in every shard file (HDF5), beside the features' attributes."""
        return {}

    def finish_stats(self, split: str, stats: dict[str, Any]) -> dict[str, Any]:
        """The split's statistics as the manifest records them (merged from its blocks)."""
        return stats

    def describe(self, stats: dict[str, dict[str, Any]]) -> str:
        """The summary line's middle part."""
        return ", ".join(f"{split} {s.get('samples', 0)}" for split, s in stats.items()) \
            + f" {self.unit}"

    # ---- reading back -----------------------------------------------------------------------
    def sample(self, record: dict[str, Any]) -> Any:
        """What ``data[split][i]`` gives, from everything stored for sample i."""
        if "events" in record:
            return record["events"], record.get("label")
        return record.get("features"), record.get("label")

    def frames(self, record: dict[str, Any], *args: Any, **kwargs: Any) -> np.ndarray:
        raise NotImplementedError(f"{self.name} samples have no frames")

    def preview(self, data: Any, split: str, index: int) -> Any:
        """A Pillow image of ``data[split]`` (a ``reader.SplitView``) around sample ``index``."""
        raise NotImplementedError(f"{self.name} has no preview")

    # Other tools' layouts a finished folder can be exported to (by name, with a line of help).
    exports: ClassVar[dict[str, str]] = {}

    def export(self, name: str, folder: Any, manifest: dict[str, Any], target: Any) -> str:
        """Make ``target`` (outside ``folder``) what the tool ``name`` reads; returns a line
        saying what was made."""
        raise NotImplementedError(name)

    def preview_name(self, split: str, index: int) -> str:
        return f"{self.name}-{self.version}-{split}-{index}.png"
