"""Format codecs. Each writer takes a path and the data a dataset built, and nothing else."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

# kind -> "module:function"; imported on first use so that, say, npy output never loads h5py.
WRITERS: dict[str, str] = {
    "npy": "npy:write",
    "hdf5_groups": "hdf5:write_groups",
    "text": "text:write",
}


def writer(kind: str) -> Callable[[Path, Any], None]:
    module, func = WRITERS[kind].split(":")
    return getattr(import_module(f"{__name__}.{module}"), func)


def write(kind: str, path: Path, data: Any) -> None:
    writer(kind)(path, data)
