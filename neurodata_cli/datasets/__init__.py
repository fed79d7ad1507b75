"""The registry: the datasets that ship with neurodata, and any that other packages add
through the entry-point group ``neurodata.datasets`` (each entry names a ``Dataset`` subclass).

An entry point is checked before it is used: its name must be plain (it becomes a command and a
folder), must not be a built-in dataset's or a command's, and only one package may register it.
A refused entry never stops the rest: the CLI warns once, naming the package and the entry, and
asking for that name is an error saying why (``problems``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import import_module
from typing import Any

from ..errors import ConfigError
from ..features import check_features
from .base import VERSION, Config, Dataset, Writer, plain_name

GROUP = "neurodata.datasets"
BUILTIN = {
    "yinyang": "neurodata_cli.datasets.yinyang:YinYang",
    "2nmnist": "neurodata_cli.datasets.two_nmnist:TwoNMNIST",
    "es-imagenet": "neurodata_cli.datasets.es_imagenet:ESImageNet",
}
# The CLI's own commands (cli.py; a test keeps the two in step): no dataset may take their names.
COMMANDS = frozenset({"config", "export", "info", "key", "preview", "verify"})


@dataclass
class Registry:
    specs: dict[str, str] = field(default_factory=dict)  # name -> "module:Class", built-ins first
    packages: dict[str, str] = field(default_factory=dict)  # name -> the package registering it
    problems: dict[str, str] = field(default_factory=dict)  # refused name -> why, one line


def _package(entry: Any) -> str:
    dist = getattr(entry, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "an unknown package"


@lru_cache(maxsize=1)
def _specs() -> Registry:
    """The built-in datasets, then every entry point that passes the checks."""
    from importlib.metadata import entry_points

    reg = Registry(dict(BUILTIN), {name: "neurodata" for name in BUILTIN})
    claims: dict[str, list[tuple[str, str]]] = {}  # name -> (package, spec) of each entry
    for entry in sorted(entry_points(group=GROUP), key=lambda e: (e.name, e.value)):
        claim = (_package(entry), entry.value)
        if claim not in claims.setdefault(entry.name, []):  # one package seen twice: one claim
            claims[entry.name].append(claim)
    for name, found in claims.items():
        found.sort()  # by package
        listed = " and ".join(f"{package} ({spec})" for package, spec in found)
        said = (f"package {listed} registers" if len(found) == 1
                 else f"packages {listed} register") + f" dataset {name!r}"
        if name in BUILTIN:
            reg.problems[name] = f"{said}, the name of a built-in dataset; ignored"
        elif name in COMMANDS:
            reg.problems[name] = f"{said}, the name of a neurodata command; ignored"
        elif not plain_name(name):
            reg.problems[name] = (f"{said}, which is not a plain name (lowercase letters, "
                                  "digits, '-' and '_'); ignored")
        elif len(found) > 1:
            reg.problems[name] = f"{said}: a name can have one dataset; uninstall one of them"
        else:
            reg.specs[name], reg.packages[name] = found[0][1], found[0][0]
    return reg


def names() -> list[str]:
    return list(_specs().specs)


def problems() -> dict[str, str]:
    """Entry points refused, by name: why, in one line naming the package."""
    return dict(_specs().problems)


@cache
def get(name: str) -> Dataset[Any]:
    """The dataset registered under ``name``."""
    reg = _specs()
    spec = reg.specs.get(name)
    if spec is None:
        if name in reg.problems:
            raise ConfigError(reg.problems[name])
        raise ConfigError(f"no dataset {name!r}; known: {', '.join(reg.specs)} (others come "
                          f"from packages that register the entry point group {GROUP})")
    where = f"dataset {name!r} ({spec}, from {reg.packages[name]})"
    module, _, attr = spec.partition(":")
    try:
        cls = getattr(import_module(module), attr)
    except Exception as exc:  # a plugin that does not import: say which, in one line
        raise ConfigError(f"{where} cannot be loaded: "
                          f"{' '.join(f'{type(exc).__name__}: {exc}'.split())}") from None
    if not (isinstance(cls, type) and issubclass(cls, Dataset)):
        raise ConfigError(f"{where} is not a neurodata Dataset class")
    try:
        ds = cls()
    except Exception as exc:
        raise ConfigError(f"{where} cannot be made: "
                          f"{' '.join(f'{type(exc).__name__}: {exc}'.split())}") from None
    if getattr(ds, "name", None) != name:
        raise ConfigError(f"{where} names a dataset called {getattr(ds, 'name', None)!r}")
    if not (isinstance(ds.options, type) and issubclass(ds.options, Config)):
        raise ConfigError(f"{where} declares its options as {type(ds.options).__name__}, not as "
                          "a dataclass of Config (Option tuples are gone: see docs/plugins.md)")
    formats = getattr(ds, "formats", None)
    if not (isinstance(formats, dict) and all(isinstance(k, str) and isinstance(w, Writer)
                                              for k, w in formats.items())):
        # A tuple of writers once became a --format choice of object reprs, then a TypeError.
        raise ConfigError(f"{where} declares formats as {type(formats).__name__}, not as a dict "
                          "of format name to writer (formats = {'hdf5': HDF5})")
    version = getattr(ds, "version", None)
    if not isinstance(version, str) or not VERSION.match(version):
        raise ConfigError(f"{where} has version {version!r}, which is not a plain version "
                          "(letters, digits, '.', '+', '-' and '_')")
    problem = check_features(getattr(ds, "features", None))
    if problem is not None:
        raise ConfigError(f"{where}: {problem}")
    return ds
