"""What a dataset's ``build`` yields, checked against the contract before a writer sees it.

The engine trusts no dataset (a plugin's least of all): a block that breaks the contract would
give files that ``verify`` passes but that read back wrong. So, for every block of a shard:

- every column is an array with one entry per sample, all of the same length;
- its events have the fields x, y, t, p, of integers, all of the same length, and its
  ``counts`` give one non-negative integer per sample, adding up to that length;
- columns keep the names, dtypes and per-sample shapes of the shard's first block, and events
  the dtypes the dataset declares (``event_dtypes``; else those of its first block). Strings may
  change width (the writers store them as strings);
- object arrays hold only what the format takes (``Writer.objects``: strings, or the .bin
  format's bytes), never other Python objects;
- the shard does the work it planned: its blocks' units (``Block.units``, by default its
  samples) add up to ``Shard.units``. For a dataset whose unit is the sample (the default) this
  is the planned sample count; ES-ImageNet counts inputs, one block each, converted or skipped.

A shard record keeps the schema its blocks had (``ShardCheck.schema``), and ``check_shards``
compares those of one split before the commit, so a split's shards store the same columns.
Each failure is a ``RunError`` naming the dataset, the shard and what is wrong.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .datasets.base import Block, Dataset, Shard
from .errors import RunError
from .formats import EVENT_FIELDS

# Column names become file names (npy) and HDF5 dataset names; the reader keeps "offsets" and
# "events" for itself.
COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
RESERVED_COLUMNS = frozenset({"offsets", "events"})


def _type(value: Any) -> str:
    return type(value).__name__


@lru_cache(maxsize=256)
def _name(dtype: np.dtype) -> str:
    """``str(dtype)``, remembered: numpy spells it out in Python, 15 us a call, and an
    ES-ImageNet shard checks a block of one sample per image."""
    return str(dtype)


class ShardCheck:
    """Checks one shard's blocks as they are built (call it on each, then ``finish``)."""

    def __init__(self, ds: Dataset[Any], cfg: Any, shard: Shard):
        self.where = f"{ds.name} shard {shard.key}"
        self.writer = ds.formats[cfg.format]
        self.planned, self.unit = shard.units, ds.unit
        self.units = 0
        # Column name -> signature (dtype and per-sample shape; None: an empty object column,
        # whose kind of object is not known yet). None until a block has columns.
        self.columns: dict[str, str | None] | None = None
        declared = ds.event_dtypes
        self.events: dict[str, str] | None = (
            {k: _name(np.dtype(declared[k])) for k in EVENT_FIELDS} if declared else None)
        # Whether blocks of samples carry events: declared, or known from the first block.
        self.has_events: bool | None = True if declared else None
        if not self.writer.stores_events:  # a format of columns, or of whole files (.bin)
            self.has_events = False

    def fail(self, what: str) -> RunError:
        return RunError(f"{self.where}: {what}")

    def __call__(self, block: Any) -> None:
        if not isinstance(block, Block):
            raise self.fail(f"build yielded a {_type(block)}, not a Block")
        n = self._columns(block)
        self._events(block, n)
        units = n if block.units is None else block.units
        if not isinstance(units, (int, np.integer)) or isinstance(units, bool) or units < 0:
            raise self.fail(f"a block's units are {units!r}, not a count")
        self.units += int(units)
        if self.units > self.planned:  # say so at once: a build may never end
            raise self.fail(f"yielded more than the {self.planned} {self.unit} its plan has")

    def finish(self) -> None:
        if self.units != self.planned:
            raise self.fail(f"yielded {self.units} {self.unit} where its plan has "
                            f"{self.planned}")

    def schema(self) -> dict[str, Any]:
        """What the shard stored: its columns' and events' dtypes (for ``check_shards``)."""
        return {"columns": dict(self.columns or {}), "events": dict(self.events or {})}

    # ---- columns -----------------------------------------------------------------------------
    def _columns(self, block: Block) -> int:
        columns = block.columns
        if not isinstance(columns, dict):
            raise self.fail(f"a block's columns are a {_type(columns)}, not a dict")
        n, first = 0, None
        signatures: dict[str, str | None] = {}
        for name, column in columns.items():
            if not isinstance(name, str) or not COLUMN.match(name) or name in RESERVED_COLUMNS:
                raise self.fail(f"column name {name!r} is not allowed (letters, digits and '_'; "
                                f"not {' or '.join(sorted(RESERVED_COLUMNS))})")
            if not isinstance(column, np.ndarray) or column.ndim == 0:
                raise self.fail(f"column {name!r} is a {_type(column)}, not an array with one "
                                "entry per sample")
            if first is None:
                n, first = len(column), name
            elif len(column) != n:
                raise self.fail(f"column {name!r} has {len(column)} entries where {first!r} "
                                f"has {n}")
            signatures[name] = self._signature(name, column)
        if not signatures:
            return 0  # a block of no samples (an input skipped)
        if self.columns is None:
            self.columns = signatures
            return n
        if set(signatures) != set(self.columns):
            raise self.fail(f"a block has columns {', '.join(sorted(signatures))} where the "
                            f"first had {', '.join(sorted(self.columns))}")
        differ = _differ(self.columns, signatures)
        if differ is not None:
            name, ref, sig = differ
            raise self.fail(f"column {name!r} changed from {ref} to {sig} between blocks")
        return n

    def _signature(self, name: str, column: np.ndarray) -> str | None:
        """The column's dtype as compared between blocks and shards, with its per-sample
        shape: strings by kind only (their width may change), objects by what they hold."""
        kind = column.dtype.kind
        if kind in "UO" and column.ndim != 1:
            raise self.fail(f"column {name!r} holds strings in {column.ndim} dimensions; a "
                            "string column has one string per sample")
        if kind == "O":
            allowed = self.writer.objects
            found = set()
            for cls in set(map(type, column)):  # the types, not each value: one C loop
                if not issubclass(cls, allowed):
                    what = " and ".join(t.__name__ for t in allowed) or "no Python objects"
                    raise self.fail(f"column {name!r} holds a {cls.__name__}; the "
                                    f"{self.writer.name} format stores {what} in an object "
                                    "column (give numbers a numeric dtype)")
                found.add(next(t.__name__ for t in allowed if issubclass(cls, t)))
            if len(found) > 1:
                raise self.fail(f"column {name!r} mixes {' and '.join(sorted(found))}")
            base = found.pop() if found else None
            if base is None:
                return None
        elif column.dtype.hasobject:
            raise self.fail(f"column {name!r} has Python objects inside its dtype "
                            f"{column.dtype}")
        else:
            base = {"U": "str", "S": "bytes"}.get(kind) or _name(column.dtype)
        tail = column.shape[1:]
        return f"{base} {tail}" if tail else base

    # ---- events ------------------------------------------------------------------------------
    def _events(self, block: Block, n: int) -> None:
        events, counts = block.events, block.counts
        if events is None and counts is None:
            if n and self.has_events:
                raise self.fail(f"a block of {n} samples has no events")
            if n:
                self.has_events = False
            return
        if events is None or counts is None:
            raise self.fail("a block gives " + ("counts without events" if events is None
                                                else "events without counts"))
        if not self.writer.stores_events:
            raise self.fail(f"the {self.writer.name} format takes no events")
        if self.has_events is False:
            raise self.fail("a block gives events where the first block had none")
        self.has_events = True
        if not isinstance(events, dict) or set(events) != set(EVENT_FIELDS):
            got = ", ".join(map(str, events)) if isinstance(events, dict) else _type(events)
            raise self.fail(f"events have fields {got}; they must be x, y, t, p")
        length = None
        dtypes = {}
        for field in EVENT_FIELDS:
            values = events[field]
            if not isinstance(values, np.ndarray) or values.ndim != 1:
                raise self.fail(f"event field {field!r} is not a 1-D array")
            if values.dtype.kind not in "biu":
                raise self.fail(f"event field {field!r} is {values.dtype}; events are integers")
            if length is None:
                length = len(values)
            elif len(values) != length:
                raise self.fail(f"event field {field!r} has {len(values)} events where 'x' has "
                                f"{length}")
            dtypes[field] = _name(values.dtype)
        if self.events is None:
            self.events = dtypes
        for field, dtype in dtypes.items():
            if dtype != self.events[field]:
                raise self.fail(f"event field {field!r} is {dtype} where the dataset's events "
                                f"are {self.events[field]}")
        if not isinstance(counts, np.ndarray) or counts.ndim != 1 or \
                counts.dtype.kind not in "iu":
            raise self.fail("counts must be a 1-D array of integers, one per sample")
        if len(counts) != n:
            raise self.fail(f"counts has {len(counts)} entries for a block of {n} samples")
        if counts.dtype.kind == "i" and (counts < 0).any():
            raise self.fail("counts has a negative entry")
        total = int(counts.sum(dtype=np.uint64)) if len(counts) else 0
        if total != length:
            raise self.fail(f"counts add up to {total} events but the block has {length}")


def _differ(ref: dict[str, str | None], new: dict[str, str | None]
            ) -> tuple[str, str, str] | None:
    """(name, the reference's signature, the new one) for the first that differs, or None.
    The reference takes a new signature where it knew none (an empty object column, whose
    kind of object was not known yet). Both hold the same names (the callers check)."""
    for name, sig in new.items():
        known = ref[name]
        if known is None:
            ref[name] = sig
        elif sig is not None and sig != known:
            return name, known, sig
    return None


def check_shards(dataset: str, records: list[dict[str, Any]], shard_dir: Path) -> None:
    """Every shard of a split stores the same columns and event dtypes (from the schemas the
    shard records keep; a record without one, from an older run, is not compared).

    The two shards that disagree lose their records in ``shard_dir``, so that the next run
    builds them again (each was consistent alone, and either may be the odd one).
    """
    first: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for record in records:
        schema = record.get("schema")
        if not schema:
            continue
        for part in ("columns", "events"):
            mine = schema.get(part) or {}
            if not mine:  # a shard of no samples (every input skipped) stores no columns
                continue
            key, theirs = first.setdefault((record["split"], part), (record["key"], dict(mine)))
            what = None
            if set(mine) != set(theirs):
                what = (f"stores {part} {', '.join(sorted(mine))} where shard {key} stores "
                        f"{', '.join(sorted(theirs))}")
            elif (differ := _differ(theirs, mine)) is not None:
                name, known, sig = differ
                noun = "column" if part == "columns" else "event field"
                what = f"{noun} {name!r} is {sig} where shard {key} stores {known}"
            if what is not None:
                for stale in (key, record["key"]):
                    (shard_dir / f"{stale}.json").unlink(missing_ok=True)
                raise RunError(f"{dataset} shard {record['key']}: {what} (every shard of a "
                               "split must store the same; the next run builds both again)")
