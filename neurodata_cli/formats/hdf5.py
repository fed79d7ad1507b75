"""HDF5 written reproducibly: no object timestamps, fixed layouts, built-in filters only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

STR = h5py.string_dtype("utf-8")


def _attr(value: Any) -> Any:
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return np.array(value, dtype=STR)
    return value


def set_attrs(obj: h5py.HLObject, attrs: dict[str, Any]) -> None:
    # Sorted, so attribute order in the file does not depend on how the dict was built.
    for key in sorted(attrs):
        obj.attrs[key] = _attr(attrs[key])


def write_groups(path: Path, data: dict[str, Any]) -> None:
    """``{"attrs": {...}, "groups": {name: {"attrs": {...}, "datasets": {name: array}}}}``.

    Datasets are contiguous (small arrays that are read whole), so there is no chunking to vary.
    """
    with h5py.File(path, "w", libver="earliest") as f:
        set_attrs(f, data.get("attrs", {}))
        for name, group in data["groups"].items():
            g = f.create_group(name)
            set_attrs(g, group.get("attrs", {}))
            for dname, array in group["datasets"].items():
                g.create_dataset(dname, data=np.ascontiguousarray(array), track_times=False)
                f.flush()  # placement must not depend on garbage collection (see events.py)
