"""The registry: the datasets that ship with neurodata, and any that other packages add
through the entry-point group ``neurodata.datasets`` (each entry names a ``Dataset`` subclass)."""

from __future__ import annotations

from functools import cache, lru_cache
from importlib import import_module

from ..errors import ConfigError
from .base import Dataset

GROUP = "neurodata.datasets"
BUILTIN = {
    "yinyang": "neurodata_cli.datasets.yinyang:YinYang",
    "2nmnist": "neurodata_cli.datasets.two_nmnist:TwoNMNIST",
    "es-imagenet": "neurodata_cli.datasets.es_imagenet:ESImageNet",
}


@lru_cache(maxsize=1)
def _specs() -> dict[str, str]:
    """Dataset name -> "module:Class", the built-in ones first."""
    from importlib.metadata import entry_points

    specs = dict(BUILTIN)
    for entry in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        specs.setdefault(entry.name, entry.value)
    return specs


def names() -> list[str]:
    return list(_specs())


@cache
def get(name: str) -> Dataset:
    """The dataset registered under ``name``."""
    spec = _specs().get(name)
    if spec is None:
        raise ConfigError(f"no dataset {name!r}; known: {', '.join(_specs())} (others come from "
                          f"packages that register the entry point group {GROUP})")
    module, _, attr = spec.partition(":")
    cls = getattr(import_module(module), attr)
    ds = cls()
    if ds.name != name:
        raise ConfigError(f"entry point {name!r} names a dataset called {ds.name!r}")
    return ds
