"""The dataset contract: what a dataset says about itself, and nothing the engine does.

A dataset is one subclass of ``Dataset`` in its own folder. It declares its name, version and
release notes, its config schema (``options``), its output formats, how its work splits into
shards (``plan``), how one shard is built (``build``, pure: samples as arrays, no files written)
and how a stored sample reads back (``sample``, ``frames``, ``preview``). The engine does the
staging, writing, resume, checksums, parallelism and progress.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

if TYPE_CHECKING:
    import numpy as np

    from ..formats import Writer

REQUIRED = object()  # an option's default when it has none

# A dataset's name (and output name) becomes a command and a folder, its version a folder: plain
# words only, never a path ('/', '..') nor a hidden name.
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")


def plain_name(name: object) -> bool:
    """Whether ``name`` may name a dataset: lowercase letters, digits, '-' and '_'."""
    return isinstance(name, str) and NAME.match(name) is not None


@dataclass(frozen=True)
class Option:
    """One config field, declared once: it becomes a YAML key, a flag and a manifest entry.

    ``kind`` is int, float, str, bool, "path", a tuple of choices, or dict (checked by ``parse``).
    ``flag`` is True for ``--key-with-dashes``, a string for another spelling, or False for a
    YAML-only key. ``yaml=False`` makes a flag-only option. ``manifest=False`` keeps it out of
    the recorded config and of the fingerprint a resumed run must match (it does not shape data).
    """

    key: str  # the YAML key, dotted for nested mappings ("spike_times.t_early")
    kind: Any
    default: Any = None
    help: str = ""
    flag: bool | str = True
    yaml: bool = True
    manifest: bool = True
    lo: float | None = None
    hi: float | None = None
    open_bounds: bool = False  # lo < value < hi instead of lo <= value <= hi
    replace: bool = False  # a mapping from a config file replaces the default instead of merging
    parse: Callable[[Any, str], Any] | None = None  # (config Reader, key) -> value, for dicts

    @property
    def name(self) -> str:
        """The Python name: the config attribute and the keyword of ``materialise``."""
        return self.key.replace(".", "_").replace("-", "_")

    @property
    def flag_name(self) -> str | None:
        if self.flag is False:
            return None
        if isinstance(self.flag, str):
            return self.flag
        return "--" + self.key.replace(".", "-").replace("_", "-")


class Config:
    """A validated config: options by Python name, read-only, picklable. It remembers where
    each option came from (a flag, or a key in a file), for errors that name it."""

    def __init__(self, values: dict[str, Any], recorded: dict[str, Any],
                 origins: dict[str, str] | None = None):
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_recorded", dict(recorded))
        object.__setattr__(self, "_origins", dict(origins or {}))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"config has no {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a Config is read-only; use replace()")

    def __getstate__(self) -> dict[str, Any]:
        return {"values": self._values, "recorded": self._recorded, "origins": self._origins}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "_values", state["values"])
        object.__setattr__(self, "_recorded", state["recorded"])
        object.__setattr__(self, "_origins", state["origins"])

    def replace(self, record: bool = False, **changes: Any) -> Config:
        """A copy with ``changes``; ``record``: also record them in the manifest's config."""
        recorded = {**self._recorded, **changes} if record else self._recorded
        return Config({**self._values, **changes}, recorded, self._origins)

    def recorded(self) -> dict[str, Any]:
        """What the manifest records: every option that shapes the data, plus what the dataset
        added with ``replace(record=True)`` (the inputs it located)."""
        return dict(self._recorded)

    def where(self, key: str) -> str:
        """Where the option with YAML key ``key`` came from: a flag, or a key in a file."""
        return self._origins.get(key, f"key '{key}'")

    def __repr__(self) -> str:
        return f"Config({self._values!r})"


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


@dataclass
class SplitFile:
    """A file made from a whole split's statistics (a label table), after all its shards."""

    path: str
    text: str


class Dataset:
    """The contract. Subclasses set the class attributes and override what they need."""

    name: ClassVar[str]
    version: ClassVar[str]
    release_notes: ClassVar[dict[str, str]] = {}
    options: ClassVar[tuple[Option, ...]] = ()
    # Output formats by name, the first the default: writer objects (``formats.hdf5.HDF5``, ...).
    formats: ClassVar[dict[str, Writer]] = {}
    unit: ClassVar[str] = "samples"
    # Samples per shard by default (a --shard-size flag); None: one shard per split.
    shard_size: ClassVar[int | None] = None
    split_scoped: ClassVar[bool] = False  # runs may add splits to one folder one at a time
    split_keys: ClassVar[frozenset[str]] = frozenset()  # config keys that may differ per split
    distributed: ClassVar[bool] = False  # may run on a Dask cluster (--scheduler)
    preload: ClassVar[tuple[str, ...]] = ()  # modules a worker imports before its first shard
    libraries: ClassVar[tuple[str, ...]] = ()  # distributions that shape the data (a decoder)
    attrs: ClassVar[dict[str, Any]] = {}  # stored with every shard (sensor size, time unit)
    # Event datasets: the dtypes of x, y, t, p as stored (a shard of no samples still has them).
    event_dtypes: ClassVar[dict[str, Any] | None] = None
    # How HDF5 shards store the events (``formats.hdf5.Codec``); None: gzip level 1.
    event_codec: ClassVar[Any] = None

    # ---- config and inputs ------------------------------------------------------------------
    def schema(self) -> tuple[Option, ...]:
        """The dataset's options and the engine's: the format, and the shard size."""
        extra = []
        if self.formats:
            choices = tuple(self.formats)
            extra.append(Option("format", choices, choices[0], help="Output format."))
        if self.shard_size is not None:
            extra.append(Option("shard_size", int, self.shard_size, lo=1,
                                help=f"{self.unit.capitalize()} per shard."))
        return self.options + tuple(extra)

    def prepare(self, values: Any) -> None:
        """Turn flag-only options into config keys before validation (``config.Values``)."""

    def check(self, cfg: Config) -> None:
        """Checks between options; raise ``config_error(cfg, key, message)``."""

    def locate(self, cfg: Config) -> Config:
        """Find the inputs (raise ConfigError or RunError); runs before anything is written."""
        return cfg

    def needs_scan(self, cfg: Config) -> bool:
        """Whether ``scan`` has work to do (then it runs once the run's stage exists)."""
        return False

    def scan(self, cfg: Config, cache: Path) -> Config:
        """Index inputs where listing them is slow (an archive of a million members), keeping
        the index in ``cache``, the run's staging area, so a resumed run reads it instead."""
        return cfg

    def splits(self, cfg: Config) -> list[str]:
        """The splits this config writes."""
        return ["train"]

    def output_name(self, cfg: Config) -> str:
        """The dataset's name in its output folder, manifest and files (a config may make a
        dataset of another name: k-NMNIST)."""
        return self.name

    def inputs(self, cfg: Config) -> list[str]:
        """Paths every cluster worker must be able to read."""
        return []

    def input_listing(self, cfg: Config, shards: list[Shard]) -> list[InputFile]:
        """Every input the planned ``shards`` read (``file_listing`` helps). The engine keeps it
        in the stage: a killed run resumes only over the very same inputs, and starts again,
        saying what changed, over others. A dataset without inputs lists none."""
        return []

    # ---- the work ---------------------------------------------------------------------------
    def plan(self, cfg: Config) -> list[Shard]:
        raise NotImplementedError

    def build(self, cfg: Config, shard: Shard) -> Iterable[Block]:
        raise NotImplementedError

    def split_files(self, cfg: Config, split: str, stats: dict[str, Any]) -> list[SplitFile]:
        """Files written once a split's shards are all done."""
        return []

    def shard_attrs(self, cfg: Config, shard: Shard) -> dict[str, Any]:
        """Attributes stored in every shard file (HDF5): sensor size, time unit, parameters."""
        return dict(self.attrs)

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

    def frames(self, record: dict[str, Any], **kwargs: Any) -> np.ndarray:
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
