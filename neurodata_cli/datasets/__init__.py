"""Dataset modules. Each one declares NAME, VERSION, RELEASE_NOTES and its config, and provides
``plan(cfg)`` and a pure ``build(cfg, shard)``; the engine does everything else."""

from __future__ import annotations

from importlib import import_module

from ..engine import Dataset

MODULES = {"yinyang": "yinyang", "2nmnist": "two_nmnist", "es-imagenet": "es_imagenet"}
# What local workers import besides their dataset's module, once, in the server they fork from.
# Kept here so that the server can start before the command imports the dataset itself.
WORKER_PRELOAD = {
    "2nmnist": ("deflate",),
    "es-imagenet": ("PIL.Image", "PIL.JpegImagePlugin", "PIL.PngImagePlugin", "deflate"),
}


def get(name: str) -> Dataset:
    return import_module(f"{__name__}.{MODULES[name]}")  # type: ignore[return-value]
