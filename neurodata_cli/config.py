"""YAML configs, flags and keywords, resolved into a dataset's validated config dataclass.

A dataset's ``options`` (a frozen dataclass) give the defaults. A user's ``--config`` file is
laid over them, and flags (or ``materialise``'s keywords) over both. Every value remembers where
it came from, so an error names the flag, the keyword, or the key and the file.
"""

from __future__ import annotations

import copy
import difflib
import math
import numbers
import operator
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, overload

import yaml

from .datasets.base import Config, Dataset, Invalid, Option, nested
from .errors import ConfigError
from .storage import is_url

# Every whole-number option fits a signed 64-bit integer: numpy columns and HDF5 attributes hold
# no more, and a larger value would pass the flags only to fail as a traceback when written.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def int_bounds(lo: float | None, hi: float | None) -> tuple[int, int]:
    """An option's bounds as whole numbers, within what a 64-bit integer holds."""
    return (INT_MIN if lo is None else max(INT_MIN, math.ceil(lo)),
            INT_MAX if hi is None else min(INT_MAX, math.floor(hi)))


def clip(text: str, limit: int = 200) -> str:
    """``text`` on one line of at most ``limit`` characters, its middle cut to '…': an error
    that echoes a user's value (a list of a million items, a key of a megabyte) stays short."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    return f"{text[:head]}…{text[len(text) - (limit - head - 1):]}"


MAX_CONFIG_BYTES = 1 << 20
MAX_DEPTH = 64  # nesting a config may use; deeper, the composer and our merging would recurse


class _Refused(yaml.MarkedYAMLError):
    """What ``_Loader`` refuses, at the mark where it starts."""


class _Loader(yaml.SafeLoader):
    """``safe_load``'s loader, refusing aliases and deep nesting.

    An alias stands for its anchor's whole value, so a few hundred bytes of nested aliases stand
    for billions of items (which took minutes and gigabytes before any check); a config never
    needs one."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(problem=f"the alias *{clip(str(event.anchor), 40)} is refused (write "
                                   "the value out)", problem_mark=event.start_mark)
        if self.depth >= MAX_DEPTH:
            raise _Refused(problem=f"values nest more than {MAX_DEPTH} levels deep",
                           problem_mark=self.peek_event().start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        # PyYAML keeps the last of a key given twice: a config would run with one of two values
        # the user wrote, silently. Refused, naming both lines.
        first: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = self.construct_object(key_node)
                try:
                    earlier = first.setdefault(key, key_node.start_mark)
                except TypeError:  # not hashable: construct_mapping says so
                    continue
                if earlier is not key_node.start_mark:
                    raise _Refused(problem=f"the key {clip(str(key), 60)!r} is given twice "
                                           f"(first on line {earlier.line + 1})",
                                   problem_mark=key_node.start_mark)
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: Any) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            raise _Refused(problem="an integer with too many digits",
                           problem_mark=node.start_mark) from None


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping as ``safe_load`` does (tags that would construct objects are refused),
    without aliases."""
    try:
        # At most MAX_CONFIG_BYTES: '--config /dev/zero' (or a pipe that never ends) read whole
        # took all memory. A pipe is read, so that '--config <(...)' works.
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES} bytes; "
                              "a config is a few keys")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        first = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
        raise ConfigError(f"config file {path}{where} is not plain YAML data: "
                          f"{clip(first)}") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise ConfigError(f"config file {path} holds a value Python cannot read: "
                          f"{clip(str(exc))}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys at the top level")
    return data


class Values:
    """A merged mapping whose leaves remember their origin (a flag, or a key in a file)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.origin: dict[str, str] = {}
        self.config_file: Path | None = None  # the user's --config, if one was given

    def lay_file(self, data: Mapping[str, Any], path: Path, replace: frozenset[str]) -> None:
        """Lay a file's keys over what is there; mappings merge, except keys in ``replace``."""
        self._lay(self.data, data, "", str(path), replace)

    def _lay(self, dst: dict[str, Any], src: Mapping[str, Any], prefix: str, path: str,
             replace: frozenset[str]) -> None:
        for key, value in src.items():
            dotted = f"{prefix}{key}"
            if not isinstance(key, str):
                raise ConfigError(f"config file {path}: key {clip(repr(key))} is not a string")
            if isinstance(value, dict) and isinstance(dst.get(key), dict) and dotted not in replace:
                self._lay(dst[key], value, dotted + ".", path, replace)
                continue
            dst[key] = value
            self._forget(dotted)
            self._mark(dotted, value, lambda k: f"key '{k}' in {path}")

    def _forget(self, dotted: str) -> None:
        for k in [k for k in self.origin if k == dotted or k.startswith(dotted + ".")]:
            del self.origin[k]

    def _mark(self, dotted: str, value: Any, describe: Callable[[str], str]) -> None:
        self.origin[dotted] = describe(dotted)
        if isinstance(value, dict):
            for k, v in value.items():
                self._mark(f"{dotted}.{k}", v, describe)

    def set_flag(self, dotted: str, value: Any, flag: str) -> None:
        """Set a value from a command-line flag."""
        node = self.data
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        self._forget(dotted)
        self._mark(dotted, value, lambda _k: flag)

    def where(self, dotted: str) -> str:
        return clip(self.origin.get(dotted, f"key '{dotted}'"))


class Reader:
    """Typed access to one mapping of a ``Values``; collects unknown keys and names origins."""

    def __init__(self, values: Values, data: Mapping[str, Any] | None = None, prefix: str = ""):
        self.values = values
        self.data = values.data if data is None else data
        self.prefix = prefix
        self.used: set[str] = set()

    def where(self, key: str) -> str:
        return self.values.where(self.prefix + key)

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"invalid {self.where(key)}: {clip(message, 300)}")

    def _get(self, key: str) -> Any:
        self.used.add(key)
        if key not in self.data:
            raise ConfigError(f"missing {self.where(key)}: it has no value and no default")
        return self.data[key]

    def integer(self, key: str, lo: float | None = None, hi: float | None = None) -> int:
        """A whole number within ``lo..hi``, and always within a 64-bit integer."""
        value = self._get(key)
        try:
            if isinstance(value, bool):
                raise TypeError
            value = operator.index(value)  # int, or numpy's integers from the Python API
        except TypeError:
            raise self.fail(key, f"expected a whole number, got {_short(value)}") from None
        lo, hi = int_bounds(lo, hi)
        if not lo <= value <= hi:
            raise self.fail(key, f"{_short(value)} is outside {lo}..{hi}")
        return value

    def number(self, key: str) -> float:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise self.fail(key, f"expected a number, got {_short(value)}")
        try:
            value = float(value)
        except OverflowError:  # an integer past what a float holds
            value = math.inf
        if not math.isfinite(value):
            raise self.fail(key, f"expected a finite number, got {value}")
        return value

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = self._get(key)
        if value not in choices:
            raise self.fail(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def boolean(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value

    @overload
    def string(self, key: str, optional: Literal[False] = False) -> str: ...
    @overload
    def string(self, key: str, optional: bool) -> str | None: ...

    def string(self, key: str, optional: bool = False) -> str | None:
        if optional and self.data.get(key) is None:
            self.used.add(key)
            return None
        value = self._get(key)
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"expected a non-empty string, got {value!r}")
        return value

    def mapping(self, key: str) -> Reader:
        value = self._get(key)
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {value!r}")
        return Reader(self.values, value, f"{self.prefix}{key}.")

    def finish(self) -> None:
        """Refuse keys nobody asked for: a typo must not pass silently."""
        unknown = sorted(set(map(str, self.data)) - self.used)
        if unknown:
            raise ConfigError(f"unknown {self.where(unknown[0])}"
                              f"{did_you_mean(unknown[0], self.used)}")


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``known`` to a typo, or nothing."""
    close = difflib.get_close_matches(word, sorted(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: an error stays one readable line."""
    try:
        text = repr(value)
    except ValueError:  # an integer of more digits than Python prints
        return "a number of thousands of digits"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def defaults(ds: Dataset[Any]) -> dict[str, Any]:
    """The options' defaults as a YAML mapping (what ``neurodata config NAME`` prints)."""
    return copy.deepcopy(nested({o.key: str(o.default) if isinstance(o.default, Path)
                                 else o.default for o in ds.schema() if o.yaml}))


def resolve(ds: Dataset[Any], config_file: Path | None, given: Mapping[str, Any],
            flags: bool = False) -> Values:
    """Defaults, then ``config_file``, then ``given`` values by option name: from the command
    line (``flags``; errors name the flag) or from ``materialise`` (errors name the keyword).
    None stands for a value not given."""
    values = Values()
    replace = frozenset(o.key for o in ds.schema() if o.replace)
    values.lay_file(defaults(ds), Path(f"<{ds.name} defaults>"), replace)
    if config_file is not None:
        data = load_yaml(config_file)
        for option in ds.schema():
            if not option.yaml and option.key in data:
                raise ConfigError(f"unknown key '{option.key}' in {config_file}: it is the flag "
                                  f"{option.flag_name} only")
        values.lay_file(data, Path(config_file), replace)
        values.config_file = Path(config_file)
    by_name = {o.name: o for o in ds.schema()}
    for name, value in given.items():
        if value is not None:
            option = by_name[name]
            values.set_flag(option.key, value, (option.flag_name or name) if flags
                            else f"{name}={_short(value)}")
    return values


def _read(reader: Reader, option: Option, key: str) -> Any:
    if option.parse is not None:
        return option.parse(reader, key)
    if reader.data.get(key) is None and option.default is None:
        reader.used.add(key)
        return None
    kind = option.kind
    if isinstance(kind, tuple):
        return reader.choice(key, kind)
    if kind is bool:
        return reader.boolean(key)
    if kind is int:
        return reader.integer(key, option.lo, option.hi)
    if kind is float:
        value = reader.number(key)
        lo, hi = option.lo, option.hi
        low = lo is not None and (value <= lo if option.open_bounds else value < lo)
        high = hi is not None and (value >= hi if option.open_bounds else value > hi)
        if low or high:
            brackets = "()" if option.open_bounds else "[]"
            raise reader.fail(key, f"{value} is outside {brackets[0]}{lo}, {hi}{brackets[1]}")
        return value
    if kind is Path:
        raw = reader.data.get(key)
        if isinstance(raw, os.PathLike):  # from the Python API
            reader.used.add(key)
            return Path(raw).expanduser()
        text = reader.string(key)
        # A URL (s3://bucket/x) stays a string: Path would fold its '//'.
        return text if is_url(text) else Path(text).expanduser()
    return reader.string(key)


def parse(ds: Dataset[Any], values: Values) -> Config:
    """Validate merged values into the dataset's config; errors name the flag or key."""
    top = Reader(values)
    readers: dict[str, Reader] = {"": top}
    out: dict[str, Any] = {}
    for option in ds.schema():
        *parents, last = option.key.split(".")
        prefix = ""
        reader = top
        for part in parents:
            child = prefix + part
            if child not in readers:
                readers[child] = reader.mapping(part)
            reader, prefix = readers[child], child + "."
        out[option.name] = (_read(reader, option, last) if option.yaml or last in reader.data
                            else option.default)
        reader.used.add(last)
    for reader in readers.values():
        reader.finish()
    try:
        cfg = ds.options(**out)
        return ds.check(cfg) or cfg  # a check that returns nothing leaves it as it is
    except Invalid as exc:
        if _unset(values, exc.key):  # required and given nowhere: the message says what to give
            hint = (f" (or the key '{exc.key}' in {values.config_file})"
                    if values.config_file is not None else "")
            raise ConfigError(f"{clip(exc.message, 300)}{hint}") from None
        raise ConfigError(f"invalid {values.where(exc.key)}: {clip(exc.message, 300)}") from None


def _unset(values: Values, dotted: str) -> bool:
    """No value for ``dotted`` came from a file or flag (its default is None)."""
    node: Any = values.data
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node is None and values.origin.get(dotted, "").endswith(" defaults>")


def take_executor(values: Values) -> tuple[str, str | None]:
    """Remove and check the ``executor`` mapping: ``(kind, address)``.

    ``{kind: local}`` (the default) is the local process pool; ``{kind: dask, address: ...}`` an
    existing Dask scheduler. It decides where shards run, never what they hold, so it stays out
    of the dataset's config (and of the fingerprint a resumed run must match).
    """
    if "executor" not in values.data:
        return "local", None
    top = Reader(values)
    spec = top.mapping("executor")
    kind = spec.choice("kind", ("local", "dask"))
    address = spec.string("address", optional=True)
    if kind == "dask" and address is None:
        raise spec.fail("address", "a dask executor needs the scheduler address "
                                   "(e.g. tcp://10.0.0.5:8786)")
    spec.finish()
    del values.data["executor"]
    return kind, address
