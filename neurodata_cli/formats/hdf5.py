"""Attributes written through h5py, reproducibly (the event shards use them)."""

from __future__ import annotations

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
