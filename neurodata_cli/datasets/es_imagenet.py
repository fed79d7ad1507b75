"""ES-ImageNet (Lin et al., Frontiers in Neuroscience 2021): ImageNet through the ODG converter.

Each split's sorted inputs are cut into shards of ``shard_size`` images. A shard decodes its
images with Pillow, converts each with ``odg.convert`` and writes either one HDF5 event shard or
one released-layout npz per image. An image that cannot be decoded, or that gives fewer than
``min_events`` events, is skipped and listed in the manifest with its reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from ..config import Reader, Values
from ..engine import Artifact, Shard, ShardResult
from ..errors import RunError
from ..formats.events import EventStream
from ..imagenet_source import SPLITS, Source, list_inputs, open_rgb
from . import odg

NAME = "es-imagenet"
VERSION = "1.0.0"
RELEASE_NOTES = {
    "1.0.0": "Event-exact ODG conversion (the authors' traconvert.py) of sorted ImageNet "
    "inputs; HDF5 event shards or the released npz layout.",
}
UNIT = "images"
LIBRARIES = ("Pillow", "deflate")  # the decoder, and the compressor of streamed HDF5 chunks
SPLIT_SCOPED = True
SPLIT_KEYS = frozenset({"split", "source", "limit", "shard_size"})
FORMATS = ("hdf5", "npz")
EVENT_DTYPES = {"x": np.uint8, "y": np.uint8, "t": np.uint8, "p": np.uint8}
SAMPLE_DTYPES = {"label": np.int16, "height": np.uint8, "width": np.uint8, "index": np.uint32,
                 "source": str}
SENSOR_SIZE = (odg.WINDOW[1], odg.WINDOW[1], 2)  # x, y < 240 in canvas coordinates


@dataclass(frozen=True)
class Config:
    split: str
    threshold: float
    min_events: int
    format: str
    shard_size: int
    limit: int | None
    source: Source | None = None  # located once the root is known


def parse_config(values: Values) -> Config:
    top = Reader(values)
    split = top.choice("split", SPLITS)
    threshold = top.number("threshold")
    if not 0 < threshold < 1:
        raise top.fail("threshold", f"{threshold} is outside (0, 1): values are V/255")
    min_events = top.integer("min_events", 0)
    fmt = top.choice("format", FORMATS)
    shard_size = top.integer("shard_size", 1)
    limit = None if top.data.get("limit") is None else top.integer("limit", 1)
    top.used.add("limit")
    top.finish()
    return Config(split, threshold, min_events, fmt, shard_size, limit)


# ---- what the engine asks of a dataset --------------------------------------------------------

def splits(cfg: Config) -> list[str]:
    return [cfg.split]


def config_dict(cfg: Config) -> dict:
    return {
        "split": cfg.split,
        "source": cfg.source.describe() if cfg.source else None,
        "threshold": cfg.threshold, "min_events": cfg.min_events, "format": cfg.format,
        "shard_size": cfg.shard_size, "limit": cfg.limit,
        "trace": [list(p) for p in odg.TRACE], "window": list(odg.WINDOW),
    }


def input_paths(cfg: Config) -> list[str]:
    """What every worker of a cluster must be able to read."""
    return [str(Path(cfg.source.root) / cfg.split)] if cfg.source else []


def uses_hdf5(cfg: Config) -> bool:
    return cfg.format == "hdf5"


def plan(cfg: Config) -> list[Shard]:
    if cfg.source is None:
        raise RunError("es-imagenet needs --imagenet-root")
    items = list_inputs(cfg.source)
    if cfg.limit is not None:
        items = items[:cfg.limit]
    if not items:
        raise RunError(f"{Path(cfg.source.root) / cfg.split} holds no input files")
    if cfg.format == "npz":
        _check_npz_names(items)
    count = -(-len(items) // cfg.shard_size)
    shards = []
    for i in range(count):
        start = i * cfg.shard_size
        part = items[start:start + cfg.shard_size]
        # Compact payloads: a million inputs must not cost a million tuples per worker task.
        payload = (i, count, start, "\n".join(rel for rel, _ in part),
                   np.array([label for _, label in part], dtype=np.int16))
        shards.append(Shard(f"{cfg.split}-{i:05d}-of-{count:05d}", cfg.split, len(part), payload))
    return shards


def build(cfg: Config, shard: Shard) -> ShardResult:
    index, count, start, rels_text, labels = shard.payload
    items = [(start + k, rel, int(label))
             for k, (rel, label) in enumerate(zip(rels_text.split("\n"), labels, strict=True))]
    stats = {"images": len(items), "converted": 0, "too_few_events": 0, "unreadable": 0,
             "events": 0, "skipped": []}
    samples = _convert(cfg, items, stats)
    if cfg.format == "npz":
        stats["label_lines"] = []
        return ShardResult(_npz_artifacts(cfg, samples, stats), {cfg.split: stats})
    stream = EventStream(
        event_dtypes=EVENT_DTYPES, sample_dtypes=SAMPLE_DTYPES,
        samples=(({"x": ev.col, "y": ev.row, "t": ev.t, "p": ev.p},
                  {"label": label, "height": ev.height, "width": ev.width, "index": i,
                   "source": rel})
                 for i, rel, label, ev in samples),
        attrs=_attrs(cfg),
        runs=frozenset({"t", "p"}),  # constant within each (t, polarity) block of the order
    )
    path = f"{NAME}-{cfg.split}-{index:05d}-of-{count:05d}.h5"
    return ShardResult([Artifact(path, "events", stream, len(items), cfg.split)],
                       {cfg.split: stats})


def _convert(cfg: Config, items: list[tuple[int, str, int]], stats: dict
             ) -> Iterator[tuple[int, str, int, odg.Events]]:
    """Decode and convert lazily, counting and recording what is skipped."""
    root = Path(cfg.source.root)
    for i, rel, label in items:
        try:
            rgb = open_rgb(root / rel)
        except Exception as exc:  # Pillow raises many kinds for a bad file; all mean unreadable
            stats["unreadable"] += 1
            reason = _reason(exc).replace(str(root / rel), rel)  # no absolute paths recorded
            stats["skipped"].append({"source": rel, "reason": f"unreadable: {reason}"})
            continue
        ev = odg.convert(rgb, cfg.threshold)
        if len(ev) < cfg.min_events:
            stats["too_few_events"] += 1
            note = "" if ev.height and ev.width else f", resized to {ev.height}x{ev.width}"
            stats["skipped"].append({"source": rel, "reason": f"too few events: {len(ev)} < "
                                                              f"{cfg.min_events}{note}"})
            continue
        stats["converted"] += 1
        stats["events"] += len(ev)
        yield i, rel, label, ev


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _npz_artifacts(cfg: Config, samples: Iterator, stats: dict) -> Iterator[Artifact]:
    for _, rel, label, ev in samples:
        name = npz_name(cfg.split, rel, label)
        stats["label_lines"].append(f"{name} {label} {ev.height} {ev.width}")
        yield Artifact(f"{cfg.split}/{name}", "esimagenet_npz",
                       (ev.polarity(True), ev.polarity(False)), 1, cfg.split)


def npz_name(split: str, rel: str, label: int) -> str:
    """The released file name, relative to the split folder: ``class<L>/<stem>.npz`` (train)
    or ``<stem>.npz`` (val)."""
    stem = PurePosixPath(rel).stem
    return f"class{label}/{stem}.npz" if split == "train" else f"{stem}.npz"


def _check_npz_names(items: list[tuple[str, int]]) -> None:
    seen: dict[str, str] = {}
    for rel, label in items:
        name = npz_name(rel.split("/", 1)[0], rel, label)
        if name in seen:
            raise RunError(f"{seen[name]} and {rel} would both be written as {name} in the npz "
                           "layout; rename one, or use --format hdf5")
        seen[name] = rel


def split_artifacts(cfg: Config, split: str, stats: dict) -> list[Artifact]:
    """The released label table beside the split folder (npz layout only)."""
    if cfg.format != "npz":
        return []
    lines = stats.get("label_lines", [])
    return [Artifact(f"{split}label.txt", "text", "".join(f"{line}\n" for line in lines),
                     len(lines), split)]


def finalize_stats(split: str, stats: dict) -> dict:
    stats = {k: v for k, v in stats.items() if k != "label_lines"}
    stats["skipped"] = stats.get("skipped", [])
    return stats


def _attrs(cfg: Config) -> dict:
    return {
        "dataset": NAME, "version": VERSION, "split": cfg.split,
        "sensor_size": list(SENSOR_SIZE), "time_unit": "step",
        "threshold": cfg.threshold, "min_events": cfg.min_events,
        "trace": np.array(odg.TRACE, dtype=np.uint8), "window": list(odg.WINDOW),
        "coordinates": "canvas (H+4) x (W+4); x = col, y = row",
        "event_order": "by t; within a t positive (p=1) then negative, each by y then x",
    }


def describe(stats: dict[str, dict]) -> str:
    return "; ".join(
        f"{split} {s['images']} images: {s['converted']} converted, {s['too_few_events']} too "
        f"few events, {s['unreadable']} unreadable" for split, s in stats.items())
