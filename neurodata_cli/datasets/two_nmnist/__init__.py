"""2NMNIST (Jurado, Dunn, Shapero, IJCNN 2023): NMNIST recordings of different digits,
superimposed, one of them time-reversed; the procedure is in ``procedure.py``."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ...config import Reader
from ...errors import ConfigError, RunError
from ...features import Events, Features, MultiHot, Tensor, Text
from ...formats.hdf5 import HDF5, Codec
from ...formats.webdataset import WEBDATASET
from ..base import Block, Config, Dataset, InputFile, Shard, option
from . import binfmt
from .procedure import Group, make_groups, superimpose
from .source import Reader as SourceReader
from .source import SplitSource, download, list_recordings, listing, locate

SENSOR_SIZE = (34, 34, 2)
BLOCK = 100  # samples per block
EVENT_ORDER = "by t; equal times keep the authors' order (reversed recordings first)"
MENDELEY = "https://data.mendeley.com/public-files/datasets/468j46mzdv/files"
# ``bytes``: the archive's size, if known; a download past it is stopped (without it, at
# source.MAX_DOWNLOAD_BYTES).
DOWNLOADS = {
    "train": {"url": f"{MENDELEY}/39c25547-014b-4137-a934-9d29fa53c7a0/file_downloaded",
              "md5": "20959b8e626244a1b502305a9e6e2031", "file": "Train.zip", "bytes": None},
    "test": {"url": f"{MENDELEY}/05a4d654-7e03-4c15-bdfa-9bb2bcbea494/file_downloaded",
             "md5": "69ca8762b2fe404d9b9bad1103e97832", "file": "Test.zip", "bytes": None},
}


def _archive(reader: Reader, key: str) -> dict[str, Any]:
    """Where ``--download`` fetches one split's archive (``url``: one URL, or a list tried in
    order), what it must hash to, and its size if known (a download past it is stopped)."""
    one = reader.mapping(key)
    if isinstance(one.data.get("url"), list):
        one.used.add("url")
        urls = one.data["url"]
        if not urls or not all(isinstance(u, str) and u for u in urls):
            raise one.fail("url", f"expected a URL or a list of URLs, got {urls!r}")
    else:
        urls = [one.string("url")]
    md5, file = one.string("md5"), one.string("file")
    if len(md5) != 32 or any(c not in "0123456789abcdefABCDEF" for c in md5):
        raise one.fail("md5", f"{md5!r} is not an md5 hex digest")
    size = None if one.data.get("bytes") is None else one.integer("bytes", lo=1)
    one.used.add("bytes")
    one.finish()
    return {"urls": urls, "md5": md5, "file": file, "bytes": size}


@dataclass(frozen=True)
class TwoNMNISTConfig(Config):
    nmnist_root: Path | str | None = option(None, "Folder with Train/ and Test/ (<digit>/*.bin) "
                                            "or Train.zip and Test.zip; or their URL "
                                            "(s3://bucket/nmnist).", manifest=False)
    fetch: bool = option(False, "Fetch the official archives into --cache.", flag="--download",
                         yaml=False, manifest=False)
    download_cache: Path = option(Path("~/.cache/neurodata/nmnist"), "Where --download keeps "
                                  "the archives.", key="download.cache", flag="--cache",
                                  manifest=False)
    download_train: dict[str, Any] = option(DOWNLOADS["train"], key="download.train",
                                            flag=False, manifest=False, parse=_archive)
    download_test: dict[str, Any] = option(DOWNLOADS["test"], key="download.test", flag=False,
                                           manifest=False, parse=_archive)
    split: Literal["train", "test", "all"] = option("all", "Which splits to make.", yaml=False,
                                                    manifest=False)
    seed: int = option(42, "RandomState seed, reset for each split.", lo=0, hi=2**32 - 1)
    k: int = option(2, "Superimpose up to K distinct digits (2 = the paper).", lo=2, hi=10)
    max_digit: int = option(9, "Use recordings of digits 0..N.", lo=0, hi=9)
    reverse_polarity: bool = option(False, "Also swap ON/OFF in reversed recordings.",
                                    flag=False)
    shard_size: int = option(5000, "Samples per shard.", lo=1)
    sources: tuple[SplitSource, ...] = ()  # found by ``locate``

    def recorded(self) -> dict[str, Any]:
        return {**super().recorded(), "sources": {s.split: s.recorded() for s in self.sources}}

    def origin(self) -> dict[str, Any]:
        return {"sources": {s.split: s.describe() for s in self.sources}}


@dataclass(frozen=True)
class Part:
    """One shard's groups, and the split source they are read from."""

    source: SplitSource
    groups: tuple[Group, ...]


class TwoNMNIST(Dataset[TwoNMNISTConfig]):
    """2NMNIST: pairs of different NMNIST digits superimposed, one time-reversed.

    The paper's procedure, over sorted sources so every machine makes the same dataset.
    Reads the official Train/Test folders or zips (in place), or downloads the zips.

    \b
    Examples:
      neurodata 2nmnist --nmnist-root ~/datasets/NMNIST
      neurodata 2nmnist --download --format bin --split test
    """

    name = "2nmnist"
    version = "2.1.0"
    release_notes = {
        "1.0.0": "The paper's superimposition over sorted sources (machine-independent); "
        "k-NMNIST for K > 2 reverses the recordings at odd positions of each group.",
        "2.0.0": "Events served in time order: HDF5 shards and open_dataset give each sample's "
        "events sorted by t (stable, so equal times keep the authors' order), which tonic's "
        "time-binning transforms assume. The .bin files keep the authors' bytes.",
        "2.1.0": "HDF5 events stored raw and contiguous (read through a memory map) instead of in "
        "raw chunks: the .h5 files' bytes differ from 2.0.0; every decoded event, label and "
        "column is the same. The .bin files are byte-identical.",
    }
    formats = {"hdf5": HDF5, "bin": binfmt.BIN, "webdataset": WEBDATASET}
    features = Features(
        {"label": MultiHot(np.uint8, tuple("0123456789")),
         "index": Tensor(np.uint32, doc="the sample's number in its split"),
         "source": Text("the recordings superimposed, in group order, joined by '+'"),
         "reversed": Text("those of them time-reversed, joined by '+'")},
        # Built in the authors' order (the .bin bytes); served and stored by t. Stored raw and
        # contiguous, read through a memory map: 7 bytes an event (1.4x the .bin files), and no
        # decoding on a read.
        Events(np.uint8, np.uint8, np.uint32, np.uint8, SENSOR_SIZE, "us", EVENT_ORDER,
               sort_by_t=True, codec=Codec("raw")))
    shard_size = 5000
    split_scoped = True
    split_keys = frozenset({"sources"})
    distributed = True
    options = TwoNMNISTConfig

    def check(self, cfg: TwoNMNISTConfig) -> None:
        if (cfg.nmnist_root is None) == (not cfg.fetch):
            raise ConfigError("give exactly one of --nmnist-root PATH and --download")

    def splits(self, cfg: TwoNMNISTConfig) -> list[str]:
        return [s.split for s in cfg.sources]

    def output_name(self, cfg: TwoNMNISTConfig) -> str:
        """``2nmnist`` for the paper's K = 2; another K makes its own dataset (``3nmnist``)."""
        return f"{cfg.k}nmnist"

    def locate(self, cfg: TwoNMNISTConfig) -> TwoNMNISTConfig:
        wanted = ["train", "test"] if cfg.split == "all" else [cfg.split]
        root = cfg.nmnist_root
        if cfg.fetch:
            root = cfg.download_cache
            entries = {"train": cfg.download_train, "test": cfg.download_test}
            for entry in (entries[name] for name in wanted):
                download(entry["urls"], entry["md5"], root / entry["file"], size=entry["bytes"])
        assert root is not None  # check() asks for --nmnist-root or --download
        return replace(cfg, sources=tuple(locate(root, name) for name in wanted))

    def dry_locate(self, cfg: TwoNMNISTConfig) -> tuple[TwoNMNISTConfig | None, list[str]]:
        """With --download, archives already in the cache are planned from (a run checks
        their md5 first); otherwise, what would be fetched."""
        if not cfg.fetch:
            return self.locate(cfg), []
        wanted = ["train", "test"] if cfg.split == "all" else [cfg.split]
        entries = {"train": cfg.download_train, "test": cfg.download_test}
        missing = [entries[n] for n in wanted
                   if not (cfg.download_cache / entries[n]["file"]).is_file()]
        if not missing:
            return replace(cfg, sources=tuple(locate(cfg.download_cache, n) for n in wanted)), \
                [f"archives in {cfg.download_cache}; a run checks their md5 first"]
        return None, [f"a run first downloads {e['file']} into {cfg.download_cache} from "
                      f"{' or '.join(e['urls'])}" for e in missing]

    def pinned_inputs(self, cfg: TwoNMNISTConfig) -> list[InputFile] | None:
        """With --download, the archives by their published md5 (nothing is fetched)."""
        if not cfg.fetch:
            return None
        wanted = ["train", "test"] if cfg.split == "all" else [cfg.split]
        entries = {"train": cfg.download_train, "test": cfg.download_test}
        # The archive's name and md5 pin its bytes (a download of others is refused).
        return [InputFile(entries[name]["file"], -1, f"md5:{entries[name]['md5']}")
                for name in wanted]

    def inputs(self, cfg: TwoNMNISTConfig) -> list[str]:
        return [s.path for s in cfg.sources]

    def plan(self, cfg: TwoNMNISTConfig) -> list[Shard]:
        shards = []
        for src in cfg.sources:
            groups = make_groups(list_recordings(src), cfg.seed, cfg.k, cfg.max_digit)
            if not groups:
                raise RunError(f"{src.describe()} holds no <digit>/*.bin recordings with digit "
                               f"<= {cfg.max_digit}")
            count = -(-len(groups) // cfg.shard_size)
            for i in range(count):
                part = tuple(groups[i * cfg.shard_size:(i + 1) * cfg.shard_size])
                shards.append(Shard(src.split, i, count, len(part), Part(src, part)))
        return shards

    def input_listing(self, cfg: TwoNMNISTConfig, shards: list[Shard]) -> list[InputFile]:
        """Each recording the groups read, by name and size (and CRC-32 in a zip)."""
        out = []
        for src in cfg.sources:
            out += listing(src, [rec.rel for s in shards if s.payload.source == src
                                 for g in s.payload.groups for rec in g.recordings])
        return out

    def build(self, cfg: TwoNMNISTConfig, shard: Shard) -> Iterator[Block]:
        """The shard's samples in blocks of ``BLOCK`` (so progress moves as they are made)."""
        part: Part = shard.payload
        reader = SourceReader(part.source)
        try:
            for start in range(0, len(part.groups), BLOCK):
                yield self._block(cfg, reader, part.groups[start:start + BLOCK])
        finally:
            reader.close()

    def _block(self, cfg: TwoNMNISTConfig, reader: SourceReader,
               groups: tuple[Group, ...]) -> Block:
        inputs: list[list[bytes]] = []  # each group's recordings, in group order
        digests = []
        reader.prefetch([rec.rel for group in groups for rec in group.recordings])
        for group in groups:
            recordings = []
            for rec in group.recordings:
                data = reader.read(rec.rel)
                name = reader.name(rec.rel)
                # A whole number of events, each on the sensor.
                binfmt.check_sensor(binfmt.records(data, name), *SENSOR_SIZE[:2], name)
                digests.append(f"{rec.rel} {hashlib.sha256(data).hexdigest()}")
                recordings.append(data)
            inputs.append(recordings)
        stats = {"superimposed": sum(len(g.recordings) > 1 for g in groups),
                 "single": sum(len(g.recordings) == 1 for g in groups),
                 "events": sum(len(r) for recordings in inputs for r in recordings) // 5,
                 "input_recordings": digests}
        return event_block(groups, inputs, stats, cfg.reverse_polarity)

    def finish_stats(self, split: str, stats: dict[str, Any]) -> dict[str, Any]:
        """Replace the per-recording digests with one fingerprint of the split's inputs."""
        lines = sorted(stats.pop("input_recordings", []))
        stats["inputs"] = {"recordings": len(lines),
                           "sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest()}
        return stats

    def shard_attrs(self, cfg: TwoNMNISTConfig, shard: Shard) -> dict[str, Any]:
        return {"seed": cfg.seed, "k": cfg.k,
                "reverse_polarity": cfg.reverse_polarity}

    def describe(self, stats: dict[str, dict[str, Any]]) -> str:
        return "; ".join(f"{split} {s['samples']} samples ({s['superimposed']} superimposed + "
                         f"{s['single']} single)" for split, s in stats.items())

    # ---- reading back -----------------------------------------------------------------------
    def frames(self, record: dict[str, Any], n_time_bins: int = 6) -> np.ndarray:
        """``[T, 2, 34, 34]`` event counts over ``n_time_bins`` equal time bins (channel 1 ON)."""
        from .draw import frames

        return frames(record["events"], n_time_bins)

    def preview(self, data: Any, split: str, index: int) -> Any:
        from .draw import preview

        return preview(data.record(index), f"{data.dataset.upper()} {split} sample {index}")


def event_block(groups: tuple[Group, ...], inputs: list[list[bytes]], stats: dict[str, Any],
                swap_polarity: bool) -> Block:
    """The samples of ``groups`` (each group's recordings in ``inputs``) as event columns, each
    sample's events in the authors' order: the bytes of its ``.bin`` file, decoded."""
    samples = [superimpose(group, recordings, swap_polarity)
               for group, recordings in zip(groups, inputs, strict=True)]
    counts = np.array([len(data) // 5 for data in samples], dtype=np.uint64)
    events = binfmt.decode_columns(b"".join(samples))
    label = np.zeros((len(groups), 10), dtype=np.uint8)
    for row, g in enumerate(groups):
        label[row, list(g.digits)] = 1
    columns: dict[str, np.ndarray] = {
        "label": label,
        "index": np.array([g.index for g in groups], dtype=np.uint32),
        "source": np.array(["+".join(g.source()) for g in groups], dtype=object),
        "reversed": np.array(["+".join(g.reversed_sources()) for g in groups], dtype=object),
    }
    return Block(columns, events, counts, stats)
