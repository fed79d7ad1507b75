"""ES-ImageNet (Lin et al., Frontiers in Neuroscience 2021): ImageNet through the ODG converter.

Each split's sorted inputs are cut into shards of ``shard_size`` images. A shard decodes its
images with Pillow and converts each with ``odg.convert``. An image that cannot be decoded, or
that gives fewer than ``min_events`` events, is skipped and listed in the manifest with its
reason; the split's statistics count inputs, conversions and skips, and each file's ``records``
counts the samples it stores.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from ...errors import ConfigError, RunError
from ...features import ClassLabel, Events, Features, Tensor, Text
from ...formats.hdf5 import HDF5, Codec
from ...formats.webdataset import WEBDATASET
from ...storage import is_url, join, url_digest, url_find, url_input, url_read_many
from ..base import (
    Block,
    Config,
    Dataset,
    InputFile,
    Invalid,
    Shard,
    file_listing,
    option,
)
from . import archives, odg
from .npz import NPZ
from .source import (
    IN_SUBFOLDER,
    MAX_INPUT_BYTES,
    Source,
    Unusable,
    decode_bytes,
    labels_of,
    list_inputs,
    locate,
    open_rgb,
)

SENSOR_SIZE = (odg.WINDOW[1], odg.WINDOW[1], 2)  # x, y < 240 in canvas coordinates


@dataclass(frozen=True)
class ESImageNetConfig(Config):
    imagenet_root: Path | str | None = option(
        None, "ImageNet as you keep it: a folder holding train/<wnid>/* and/or val/, the "
        "official ILSVRC2012_img_*.tar files, or the Kaggle copy (ILSVRC/Data/CLS-LOC/); or "
        "its URL (s3://bucket/imagenet).", manifest=False)
    split: Literal["train", "val"] = option("train", "Which split to convert.")
    val_labels: Path | str | None = option(
        None, "Labels table '<file name> <label>' for a flat val/ (default: the ILSVRC2012 "
        "ground truth shipped with neurodata).", manifest=False)
    threshold: float = option(odg.DEFAULT_THRESHOLD, "Event threshold on V/255 differences.",
                              lo=0, hi=1, open_bounds=True)
    min_events: int = option(1000, "Skip images with fewer events.", lo=0)
    limit: int | None = option(None, "Convert only the first N inputs.", lo=1)
    check_archives: bool = option(False, "Compare the official tars' md5 with the published "
                                  "values before any work.", yaml=False, manifest=False)
    shard_size: int = option(1000, "Images per shard.", lo=1)
    source: Source | None = None  # found by ``locate`` (and labelled by ``scan``)
    index: str | None = None  # the official tar's index, made by ``scan``; read by ``plan``

    @property
    def src(self) -> Source:
        """The located source: ``locate`` runs before every step that reads it."""
        assert self.source is not None, "located before use"
        return self.source

    def recorded(self) -> dict[str, Any]:
        assert self.source is not None  # recorded once located
        return {**super().recorded(), "source": self.source.describe(),
                "trace": [list(p) for p in odg.TRACE], "window": list(odg.WINDOW)}

    def origin(self) -> dict[str, Any]:
        return {"source": self.src.origin()}


@dataclass(frozen=True)
class Part:
    """One shard's inputs: paths as extracted, their labels, the first index, and each one's
    row of the archive's index (where it is, its size and kind; ``archives.scan``), when the
    inputs are an archive's members."""

    start: int
    sources: tuple[str, ...]
    labels: tuple[int, ...]
    members: np.ndarray | None = None  # int64 [n, 4], a copy of the shard's rows


class ESImageNet(Dataset[ESImageNetConfig]):
    """ES-ImageNet: ImageNet images converted to 8 steps of ON/OFF events by ODG.

    Event-exact to the authors' converter. Inputs are sorted, so the output does not depend on
    the filesystem, the layout the images are kept in, or --workers. A killed run resumes when
    the same command is run again.

    \b
    Examples:
      neurodata es-imagenet --imagenet-root ~/datasets/imagenet
      neurodata es-imagenet --imagenet-root ~/datasets/imagenet --split val --format npz
      neurodata es-imagenet --imagenet-root /shared/imagenet --out /shared/data \\
          --scheduler tcp://10.0.0.5:8786
    """

    name = "es-imagenet"
    version = "2.2.0"
    release_notes = {
        "1.0.0": "Event-exact ODG conversion (the authors' traconvert.py) of sorted ImageNet "
        "inputs; HDF5 event shards or the released npz layout.",
        "2.0.0": "One label space: a class folder that is an ILSVRC2012 wnid takes its index in "
        "the released class map whatever subset is present, as the val table does (subsets "
        "were labelled 0..K-1 by their sorted folders). Other folders keep sorted labels, and "
        "train and val must then hold the same classes. Full-ImageNet outputs are unchanged.",
        "2.1.0": "HDF5 shards compressed by HDF5's filter pipeline with zstd level 5 (hdf5plugin, "
        "after HDF5's shuffle) instead of gzip streams made by libdeflate: about 35% of the npz "
        "bytes (was 37-38%) and random reads twice as fast. The .h5 files' bytes differ from "
        "2.0.0; every decoded event, label and column is the same. Plain h5py needs `import "
        "hdf5plugin`. The npz files are byte-identical.",
        "2.2.0": "HDF5 shards compressed with zstd level 4 instead of 5: a one-worker conversion "
        "spends about a third less time compressing, for 37% of the npz bytes instead of 36%, "
        "and random reads as fast. The .h5 files' bytes differ from 2.1.0; every decoded event, "
        "label and column is the same. The npz and webdataset files are byte-identical.",
    }
    formats = {"hdf5": HDF5, "npz": NPZ, "webdataset": WEBDATASET}
    unit = "images"
    # A sample holds about 25,000 events. Measured on 491 bench samples (after tool 0.6.0), a random
    # read and the bytes against the npz: zstd 5 in chunks of 32,768: 0.25 ms, 35.5%; gzip 1:
    # 0.53 ms, 36.9%; zstd 3: 0.25 ms, 39.1%; blosc2 (zstd 5): 0.37 ms, 36.0%; lz4: 0.16 ms,
    # 48% (over the 40% goal); zstd 9: 0.30 ms, 35.0%; chunks of 65,536: no faster. Level 4
    # (2.2.0) compresses a shard of 1,000 images in 0.40 s of CPU against level 5's 0.63 s, for
    # 37.3% of the npz bytes on the bench's 4,000 images (level 5: 35.8%): the one-worker
    # conversion's goal (1.6x decoding alone) holds with it, and not with level 5 (1.59-1.66x).
    features = Features(
        {"label": ClassLabel(np.int16, 1000, "ILSVRC2012 class index in the released class map "
                                             "(sorted WordNet ids)"),
         "height": Tensor(np.uint8, doc="the resized image's height (ODG's canvas less 4)"),
         "width": Tensor(np.uint8, doc="the resized image's width"),
         "index": Tensor(np.uint32, doc="the input's number among the split's sorted inputs"),
         "source": Text("the input's path as extracted, relative to the ImageNet root")},
        Events(np.uint8, np.uint8, np.uint8, np.uint8, SENSOR_SIZE, "step",
               "by t; within a t positive (p=1) then negative, each by y then x",
               codec=Codec("zstd", 4, 1 << 15)))
    split_scoped = True
    split_keys = frozenset({"split", "source", "limit", "shard_size"})
    distributed = True
    libraries = ("Pillow",)
    preload = ("PIL.Image", "PIL.JpegImagePlugin", "PIL.PngImagePlugin")
    options = ESImageNetConfig

    def check(self, cfg: ESImageNetConfig) -> None:
        if cfg.imagenet_root is None:
            raise Invalid("imagenet_root", "es-imagenet needs --imagenet-root")

    def splits(self, cfg: ESImageNetConfig) -> list[str]:
        return [cfg.split]

    def locate(self, cfg: ESImageNetConfig) -> ESImageNetConfig:
        assert cfg.imagenet_root is not None  # check() refuses a config without it
        source = locate(cfg.imagenet_root, cfg.split, cfg.val_labels)
        if cfg.check_archives:
            if not source.archive:
                raise ConfigError(f"--check-archives: {cfg.imagenet_root} holds no official "
                                  f"tar of {cfg.split} (it was read as {source.found})")
            archives.md5_check(_local(source.archive), cfg.split)
        return replace(cfg, source=source, index=None)

    def needs_scan(self, cfg: ESImageNetConfig) -> bool:
        return bool(cfg.src.archive)

    def scan(self, cfg: ESImageNetConfig, cache: Path) -> ESImageNetConfig:
        """Index the official tar once, into the stage; label train by the classes in it."""
        source = cfg.src
        archives.scan(_local(source.archive), cfg.split, cache)
        if source.layout == "folders":
            scheme, classes = labels_of(archives.scanned_classes(cache, cfg.split), [],
                                        source.archive, "")
            source = replace(source, classes=classes, scheme=scheme)
        return replace(cfg, source=source, index=str(cache))

    def inputs(self, cfg: ESImageNetConfig) -> list[str]:
        if cfg.src.archive:  # not its index: the plan reads it, and each shard carries its rows
            return [cfg.src.archive]
        return [str(join(cfg.src.root, cfg.split))]

    def plan(self, cfg: ESImageNetConfig) -> list[Shard]:
        index = None
        if cfg.src.archive:  # the scan's index, read here only: shards carry their part
            assert cfg.index is not None  # scanned: an archive needs a scan
            index = archives.scan(_local(cfg.src.archive), cfg.split, Path(cfg.index))
        items = list_inputs(cfg.src, index)
        if cfg.limit is not None:
            items = items[:cfg.limit]
        if not items:
            raise RunError(f"{join(cfg.src.root, cfg.split)} holds no input files")
        _check_utf8(items)
        count = -(-len(items) // cfg.shard_size)
        shards = []
        for i in range(count):
            start = i * cfg.shard_size
            part = items[start:start + cfg.shard_size]
            rels, labels, rows, _ = zip(*part, strict=True)
            members = index[1][list(rows)] if index is not None else None
            shards.append(Shard(cfg.split, i, count, len(part),
                                Part(start, rels, labels, members)))
        return shards

    def input_listing(self, cfg: ESImageNetConfig, shards: list[Shard]) -> list[InputFile]:
        """Each input by its path as extracted, with its size: a member's from the archive's
        index (and the archive itself, whose time tells a rewritten member of the same size),
        a file's by a stat."""
        parts: list[Part] = [s.payload for s in shards]
        if cfg.src.archive:
            return _listing(cfg.src.archive) + [
                InputFile(rel, int(row[2])) for part in parts
                for rel, row in zip(part.sources, cast(np.ndarray, part.members), strict=True)]
        rels = [rel for p in parts for rel in p.sources]
        if is_url(cfg.src.root):  # sizes and ETags from one listing of the store
            objects = url_find(str(join(cfg.src.root, cfg.split)))
            found = [objects.get(rel.split("/", 1)[1]) for rel in rels]
            return [InputFile(rel, -1) if info is None else
                    InputFile(rel, int(info["size"]), url_digest(info))
                    for rel, info in zip(rels, found, strict=True)]
        return file_listing(Path(cfg.src.root), rels)

    def build(self, cfg: ESImageNetConfig, shard: Shard) -> Iterator[Block]:
        """One block per input: its sample, or nothing and a skip recorded."""
        part: Part = shard.payload
        root = _local(cfg.src.root)
        reader = (archives.MemberReader(_local(cfg.src.archive))
                  if part.members is not None else None)
        try:
            yield from self._convert(cfg, part, root, reader)
        finally:
            if reader is not None:
                reader.close()

    def _convert(self, cfg: ESImageNetConfig, part: Part, root: Path | str,
                 reader: archives.MemberReader | None) -> Iterator[Block]:
        ahead: dict[str, bytes] = {}  # images read ahead from a store
        for k, (rel, label) in enumerate(zip(part.sources, part.labels, strict=True)):
            stats = {"images": 1, "converted": 0, "too_few_events": 0, "unreadable": 0,
                     "events": 0, "skipped": []}
            try:
                if reader is None:
                    if rel.count("/") > 2:  # below a class folder's own entries
                        raise Unusable(IN_SUBFOLDER)
                    if is_url(root) and rel not in ahead:
                        ahead = _read_ahead(str(root), part.sources[k:k + AHEAD])
                    data = ahead.pop(rel, None)
                    rgb = decode_bytes(data) if data is not None else open_rgb(join(root, rel))
                else:
                    assert part.members is not None  # a reader only for an archive's members
                    rgb = decode_bytes(reader.read(rel, part.members[k].tolist(), MAX_INPUT_BYTES))
            except Unusable as exc:
                stats["unreadable"] = 1
                stats["skipped"] = [{"source": rel, "reason": str(exc)}]
                yield Block({}, stats=stats, units=1)
                continue
            except (RunError, MemoryError):  # the run's failure, not the file's: never a skip
                raise
            except Exception as exc:  # Pillow raises many kinds for a bad file: all unreadable
                # No absolute paths and no object addresses: the manifest is checksummed.
                reason = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", rel,
                                _reason(exc).replace(str(join(root, rel)), rel))
                stats["unreadable"] = 1
                stats["skipped"] = [{"source": rel, "reason": f"unreadable: {reason}"}]
                yield Block({}, stats=stats, units=1)
                continue
            ev = odg.convert(rgb, cfg.threshold)
            if len(ev) < cfg.min_events:
                note = "" if ev.height and ev.width else f", resized to {ev.height}x{ev.width}"
                stats["too_few_events"] = 1
                stats["skipped"] = [{"source": rel, "reason": f"too few events: {len(ev)} < "
                                                              f"{cfg.min_events}{note}"}]
                yield Block({}, stats=stats, units=1)
                continue
            stats["converted"], stats["events"] = 1, len(ev)
            columns: dict[str, np.ndarray] = {"label": np.array([label], np.int16),
                       "height": np.array([ev.height], np.uint8),
                       "width": np.array([ev.width], np.uint8),
                       "index": np.array([part.start + k], np.uint32),
                       "source": np.array([rel], dtype=object)}
            events = {"x": ev.col, "y": ev.row, "t": ev.t, "p": ev.p}
            yield Block(columns, events, np.array([len(ev)], np.uint64), stats, units=1)

    def finish_stats(self, split: str, stats: dict[str, Any]) -> dict[str, Any]:
        return {**stats, "skipped": stats.get("skipped", [])}

    def shard_attrs(self, cfg: ESImageNetConfig, shard: Shard) -> dict[str, Any]:
        return {"threshold": cfg.threshold, "min_events": cfg.min_events,
                "trace": np.array(odg.TRACE, dtype=np.uint8), "window": list(odg.WINDOW),
                "coordinates": "canvas (H+4) x (W+4); x = col, y = row"}

    exports = {"spikingjelly": "ROOT for spikingjelly.datasets.ESImageNet(root=ROOT): links to "
                                "the npz files, so nothing is downloaded or written here"}

    def export(self, name: str, folder: Any, manifest: dict[str, Any], target: Any) -> str:
        from .npz import spikingjelly_root

        return spikingjelly_root(Path(folder), manifest, Path(target))

    def describe(self, stats: dict[str, dict[str, Any]]) -> str:
        return "; ".join(
            f"{split} {s['images']} images: {s['converted']} converted, {s['too_few_events']} "
            f"too few events, {s['unreadable']} unreadable" for split, s in stats.items())

    # ---- reading back -----------------------------------------------------------------------
    def sample(self, record: dict[str, Any]) -> tuple[np.ndarray, int]:
        return record["events"], int(record["label"])

    def frames(self, record: dict[str, Any], **kwargs: Any) -> np.ndarray:
        """``[2, 8, 224, 224]``, centred and cropped as the authors' loader does."""
        from .draw import frames

        return frames(record["events"], int(record["height"]), int(record["width"]))

    def preview(self, data: Any, split: str, index: int) -> Any:
        from .draw import preview

        return preview(data.record(index), f"ES-ImageNet {split} sample {index}")


AHEAD = 32  # images of a folder in a store read at once, by concurrent requests


def _read_ahead(root: str, rels: tuple[str, ...]) -> dict[str, bytes]:
    """The images ``rels`` of a store's folder, read concurrently; one that fails or is too
    large is left out, for ``open_rgb`` to read alone and say why."""
    rels = tuple(r for r in rels if r.count("/") <= 2)
    got = url_read_many([str(join(root, r)) for r in rels], MAX_INPUT_BYTES + 1)
    return {r: data for r, data in zip(rels, got, strict=True)
            if isinstance(data, bytes) and len(data) <= MAX_INPUT_BYTES}


def _local(path: str) -> Path | str:
    """A located path: a URL stays its string (``Path`` would fold its ``//``)."""
    return path if is_url(path) else Path(path)


def _listing(archive: str) -> list[InputFile]:
    """The archive itself, by name, size and what tells a rewrite apart (a time, an ETag)."""
    if is_url(archive):
        return [InputFile(*url_input(archive))]
    return file_listing(Path(archive).parent, [Path(archive).name])


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_utf8(items: list[tuple[str, int, int, int]]) -> None:
    """Names that are not UTF-8 (undecodable bytes, kept as surrogates by the file system and
    by tarfile) are refused before any work (exit 2): every format stores names as UTF-8."""
    try:
        "".join(rel for rel, *_ in items).encode("utf-8")
    except UnicodeEncodeError:
        rel = next(r for r, *_ in items if re.search("[\ud800-\udfff]", r))
        shown = rel.encode("utf-8", "surrogateescape")
        raise ConfigError(f"input {shown!r} has a name that is not UTF-8, and the output "
                          "stores each input's name as UTF-8; rename it") from None


__all__ = ["ESImageNet", "ConfigError"]
