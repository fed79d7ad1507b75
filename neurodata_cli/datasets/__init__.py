"""Dataset modules. Each one declares NAME, VERSION, RELEASE_NOTES and its config, and provides
``plan(cfg)`` and a pure ``build(cfg, shard)``; the engine does everything else."""

from __future__ import annotations

from importlib import import_module

from ..engine import Dataset

MODULES = {"yinyang": "yinyang", "2nmnist": "two_nmnist", "es-imagenet": "es_imagenet"}


def get(name: str) -> Dataset:
    return import_module(f"{__name__}.{MODULES[name]}")  # type: ignore[return-value]
