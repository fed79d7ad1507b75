"""What a dataset's ``build`` yields, checked against its ``features`` before a writer sees it.

The engine trusts no dataset (a plugin's least of all): a block that breaks the declaration
would give files that ``verify`` passes but that read back wrong. So, for every block of a shard:

- its columns are the declared ones (an optional one in every block or in none), each an array
  with one entry per sample, all of the same length, of exactly the declared dtype and
  per-sample shape; a text column holds strings only (never other Python objects), with no NUL
  and nothing UTF-8 cannot encode;
- its events have the fields x, y, t, p of exactly the declared dtypes, all of the same length,
  and its ``counts`` give one non-negative integer per sample, adding up to that length;
- the shard does the work it planned: its blocks' units (``Block.units``, by default its
  samples) add up to ``Shard.units``. For a dataset whose unit is the sample (the default) this
  is the planned sample count; ES-ImageNet counts inputs, one block each, converted or skipped.

A shard record keeps the columns it stored, and ``check_shards`` compares those of one split
before the commit. Each failure is a ``RunError`` naming the dataset, the shard and what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .datasets.base import Block, Dataset, Shard
from .errors import RunError
from .features import EVENT_FIELDS, Feature


def _type(value: Any) -> str:
    return type(value).__name__


class ShardCheck:
    """Checks one shard's blocks as they are built (call it on each, then ``finish``)."""

    def __init__(self, ds: Dataset[Any], cfg: Any, shard: Shard):
        self.where = f"{ds.name} shard {shard.key}"
        self.features = ds.features
        self.writer = ds.formats[cfg.format]
        self.planned, self.unit = shard.units, ds.unit
        self.units = 0
        self.columns: frozenset[str] | None = None  # those of the first block of samples
        self.dtypes = ({k: np.dtype(v) for k, v in self.features.events.dtypes.items()}
                       if self.features.events is not None else None)
        if self.dtypes is not None and not self.writer.stores_events:
            raise self.fail(f"the {self.writer.name} format takes no events")

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
        """The columns the shard stored (for ``check_shards``)."""
        return {"columns": sorted(self.columns or ())}

    def _columns(self, block: Block) -> int:
        columns = block.columns
        if not isinstance(columns, dict):
            raise self.fail(f"a block's columns are a {_type(columns)}, not a dict")
        if not columns:
            return 0  # a block of no samples (an input skipped)
        declared = self.features.columns
        names = frozenset(columns)
        missing = sorted(k for k, f in declared.items() if not f.optional and k not in names)
        if names - set(declared) or missing:
            extra = sorted(map(str, names - set(declared)))
            raise self.fail(f"a block has columns {', '.join(sorted(map(str, names)))} where "
                            f"{', '.join(declared) or 'none'} are declared" +
                            (f" (not declared: {', '.join(extra)})" if extra else "") +
                            (f" (missing: {', '.join(missing)})" if missing else ""))
        if self.columns is None:
            self.columns = names
        elif names != self.columns:
            raise self.fail(f"a block has columns {', '.join(sorted(names))} where the first "
                            f"had {', '.join(sorted(self.columns))}")
        n = None
        for name, column in columns.items():
            if not isinstance(column, np.ndarray) or column.ndim == 0:
                raise self.fail(f"column {name!r} is a {_type(column)}, not an array with one "
                                "entry per sample")
            if n is None:
                n, first = len(column), name
            elif len(column) != n:
                raise self.fail(f"column {name!r} has {len(column)} entries where {first!r} "
                                f"has {n}")
            self._column(name, column, declared[name])
        return n or 0

    def _column(self, name: str, column: np.ndarray, feature: Feature) -> None:
        kind, shape = column.dtype.kind, column.shape[1:]
        if feature.dtype == "str":
            if kind not in "UO" or column.ndim != 1:
                raise self.fail(f"column {name!r} is {column.dtype} {shape or ''}; it is "
                                "declared as text, one string per sample")
            if kind == "O":
                for cls in set(map(type, column)):  # the types, not each value: one C loop
                    if not issubclass(cls, str):
                        raise self.fail(f"column {name!r} holds a {cls.__name__}; it is "
                                        "declared as text (str only)")
            # HDF5 refuses a NUL in a string; npy and JSON keep it but numpy's fixed-width
            # strings drop a trailing one on reading: "a\0" would read back as "a".
            text = "".join(column.tolist())
            if "\x00" in text:
                raise self.fail(f"column {name!r} holds a NUL character; text may not")
            try:
                text.encode("utf-8")  # how HDF5 and webdataset store it
            except UnicodeEncodeError as exc:
                raise self.fail(f"column {name!r} holds {text[exc.start]!r}, which UTF-8 "
                                "cannot encode (a lone surrogate)") from None
        elif column.dtype != feature.dtype or shape != feature.shape:
            got = f"{column.dtype}{list(shape) if shape else ''}"
            raise self.fail(f"column {name!r} is {got} where it is declared as "
                            f"{feature.describe()}")

    def _events(self, block: Block, n: int) -> None:
        events, counts = block.events, block.counts
        if self.dtypes is None:
            if events is not None or counts is not None:
                raise self.fail("a block gives events, and the dataset declares none")
            return
        if events is None or counts is None:
            if n or events is not None or counts is not None:
                raise self.fail(f"a block of {n} samples has no " +
                                ("counts" if events is not None else "events"))
            return
        if not isinstance(events, dict) or set(events) != set(EVENT_FIELDS):
            got = ", ".join(map(str, events)) if isinstance(events, dict) else _type(events)
            raise self.fail(f"events have fields {got}; they must be x, y, t, p")
        length = None
        for field in EVENT_FIELDS:
            values = events[field]
            if not isinstance(values, np.ndarray) or values.ndim != 1:
                raise self.fail(f"event field {field!r} is not a 1-D array")
            if values.dtype != self.dtypes[field]:
                raise self.fail(f"event field {field!r} is {values.dtype} where the dataset "
                                f"declares {self.dtypes[field]}")
            if length is None:
                length = len(values)
            elif len(values) != length:
                raise self.fail(f"event field {field!r} has {len(values)} events where 'x' has "
                                f"{length}")
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


def check_shards(dataset: str, records: list[dict[str, Any]], shard_dir: Path) -> None:
    """Every shard of a split stores the same columns (an optional one in all or in none).

    The two shards that disagree lose their records in ``shard_dir``, so that the next run
    builds them again (each was consistent alone, and either may be the odd one).
    """
    first: dict[str, tuple[str, list[str]]] = {}
    for record in records:
        mine = (record.get("schema") or {}).get("columns")
        if not mine:  # a shard of no samples (every input skipped) stores no columns
            continue
        key, theirs = first.setdefault(record["split"], (record["key"], mine))
        if mine != theirs:
            for stale in (key, record["key"]):
                (shard_dir / f"{stale}.json").unlink(missing_ok=True)
            raise RunError(f"{dataset} shard {record['key']}: stores columns {', '.join(mine)} "
                           f"where shard {key} stores {', '.join(theirs)} (every shard of a "
                           "split must store the same; the next run builds both again)")
