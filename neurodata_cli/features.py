"""What a dataset's samples hold, declared once (as TFDS's ``FeaturesDict`` does).

A dataset's ``features`` name its per-sample columns, each with its dtype and per-sample shape
(class labels with their names, multi-hot labels, fixed-shape arrays, text), and its events
(the dtypes of x, y, t, p, the sensor size, the time unit, the order a sample's events are
served in, and how HDF5 stores them). From this one declaration the engine checks every block
``build`` yields, every format encodes the same blocks, and ``info`` describes the columns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

EVENT_FIELDS = ("x", "y", "t", "p")
# Column names become file names (npy) and HDF5 dataset names; the reader keeps "offsets" and
# "events" for itself.
COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
RESERVED_COLUMNS = frozenset({"offsets", "events"})


@dataclass(frozen=True)
class Feature:
    """One value per sample: ``dtype`` ("str" for text) and its per-sample ``shape``."""

    dtype: str
    shape: tuple[int, ...] = ()
    doc: str = ""
    optional: bool = False  # a config may leave it out (all of a run's blocks alike)

    def describe(self) -> str:
        shape = f"[{', '.join(map(str, self.shape))}]" if self.shape else ""
        return f"{self.dtype}{shape}" + (f": {self.doc}" if self.doc else "")


def Tensor(dtype: Any, shape: tuple[int, ...] = (), doc: str = "", optional: bool = False
           ) -> Feature:
    """A number, or an array of a fixed shape, per sample."""
    return Feature(np.dtype(dtype).name, tuple(shape), doc, optional)


def Text(doc: str = "", optional: bool = False) -> Feature:
    """A string per sample, stored as UTF-8 (``build`` gives str objects or a unicode array)."""
    return Feature("str", (), doc, optional)


def ClassLabel(dtype: Any, names: tuple[str, ...] | int, doc: str = "") -> Feature:
    """A class index per sample: ``names`` are the classes in index order (or their count)."""
    count = names if isinstance(names, int) else len(names)
    shown = "" if isinstance(names, int) else f" ({', '.join(names[:10])}"
    shown += ", ...)" if shown and count > 10 else (")" if shown else "")
    return Feature(np.dtype(dtype).name, (), doc or f"class index 0..{count - 1}{shown}")


def MultiHot(dtype: Any, names: tuple[str, ...], doc: str = "") -> Feature:
    """A 0/1 flag per class: ``names`` are the classes in column order."""
    return Feature(np.dtype(dtype).name, (len(names),),
                   doc or f"1 for each class present ({', '.join(names)})")


@dataclass(frozen=True)
class Events:
    """A sample's events: x, y, t, p with their dtypes, on a sensor of ``sensor_size``
    (width, height, polarities), t in ``time_unit``.

    ``sort_by_t``: ``build`` gives each sample's events in the source's own order (the one a
    native layout keeps, such as the 2NMNIST ``.bin`` bytes), and they are served, and stored
    wherever a format keeps decoded events, stably sorted by t. ``order`` says the order served.
    ``codec`` is how HDF5 stores them (``formats.hdf5.Codec``; None: its default).
    """

    x: Any
    y: Any
    t: Any
    p: Any
    sensor_size: tuple[int, int, int]
    time_unit: str
    order: str
    sort_by_t: bool = False
    codec: Any = None

    @property
    def dtypes(self) -> dict[str, np.dtype]:
        return {k: np.dtype(getattr(self, k)) for k in EVENT_FIELDS}

    def served(self, events: Mapping[str, np.ndarray], counts: np.ndarray
               ) -> Mapping[str, np.ndarray]:
        """A block's events in the order they are served: each sample's stably sorted by t
        when ``sort_by_t`` (one sort for the whole block, by sample then t)."""
        t = events["t"]
        if not self.sort_by_t or len(t) < 2:
            return events
        sample = np.repeat(np.arange(len(counts), dtype=np.uint64), counts.astype(np.int64))
        if t.dtype.kind == "u" and t.dtype.itemsize <= 4:  # one key: sample, then t
            key = (sample << np.uint64(32)) | t.astype(np.uint64)
            if not (key[1:] < key[:-1]).any():  # in order already: nothing moves
                return events
            order = np.argsort(key, kind="stable")
        else:
            order = np.lexsort((t, sample))  # stable too
        return {k: v[order] for k, v in events.items()}


@dataclass(frozen=True)
class Features:
    """Everything a dataset's samples hold: per-sample ``columns`` and, for event datasets,
    their ``events``."""

    columns: dict[str, Feature] = field(default_factory=dict)
    events: Events | None = None

    def attrs(self) -> dict[str, Any]:
        """What a reader needs beside the arrays: the sensor size, the time unit, the order."""
        if self.events is None:
            return {}
        e = self.events
        return {"sensor_size": list(e.sensor_size), "time_unit": e.time_unit,
                "event_order": e.order}

    def describe(self) -> list[str]:
        """One line per column, and one for the events: what ``info`` shows."""
        lines = [f"{name}: {f.describe()}" + (" (optional)" if f.optional else "")
                 for name, f in self.columns.items()]
        if self.events is not None:
            e = self.events
            fields = ", ".join(f"{k} {e.dtypes[k].name}" for k in EVENT_FIELDS)
            w, h, _ = e.sensor_size
            lines.append(f"events: {fields}; sensor {w}x{h}, t in {e.time_unit}; {e.order}")
        return lines


def check_features(features: Any) -> str | None:
    """What is wrong with a dataset's declaration (None: nothing), for its registration."""
    if not isinstance(features, Features):
        return f"declares its features as a {type(features).__name__}, not a Features"
    for column, feature in features.columns.items():
        if not isinstance(column, str) or not COLUMN.match(column) or column in RESERVED_COLUMNS:
            return (f"column name {column!r} is not allowed (letters, digits and '_'; not "
                    f"{' or '.join(sorted(RESERVED_COLUMNS))})")
        if not isinstance(feature, Feature):
            return f"column {column!r} is declared as a {type(feature).__name__}, not a Feature"
    if features.events is not None:
        for field, dtype in features.events.dtypes.items():
            if dtype.kind not in "iu":
                return f"event field {field!r} is {dtype}; events are integers"
    return None
