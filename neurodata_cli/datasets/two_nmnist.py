"""2NMNIST (Jurado, Dunn, Shapero, IJCNN 2023): NMNIST recordings of different digits,
superimposed, one of them time-reversed, by the paper's procedure but the same everywhere.

Per split, with the seed reset for each: the recordings ``<digit>/<name>`` (digit <= max_digit)
are sorted as plain strings (the reference used glob order, which differs between machines),
shuffled with ``RandomState(seed).shuffle``, then cut into groups: ``n = randint(1, K + 1)``,
shortened to what is left and to before the first repeated digit. A draw is taken for every
group. Group g becomes sample g.

Which recordings are reversed: in every group, those at even 0-based positions are kept and those
at odd positions (the 2nd, the 4th, ...) are time-reversed, ``t' = max(t) - t`` over that
recording with its events reversed so times ascend. The reversed ones are written first, then
the kept ones, each in group order. For K = 2 this is exactly the paper's procedure: the second
recording of a pair, reversed, followed by the first. It needs no draws beyond the paper's, so
K = 2 consumes the random stream exactly as the reference does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..config import Reader, Values
from ..engine import Artifact, Shard, ShardResult
from ..errors import RunError
from ..formats import nmnist_bin
from ..formats.events import EventShard
from ..nmnist_source import SPLIT_DIRS, Recording, SplitSource, list_recordings
from ..nmnist_source import Reader as SourceReader

NAME = "2nmnist"
VERSION = "1.0.0"
RELEASE_NOTES = {
    "1.0.0": "The paper's superimposition over sorted sources (machine-independent); "
    "k-NMNIST for K > 2 reverses the recordings at odd positions of each group.",
}
UNIT = "samples"
SPLIT_SCOPED = True
SPLIT_KEYS = frozenset({"splits", "sources"})
FORMATS = ("hdf5", "bin")
LIBRARIES = ("deflate",)  # the compressor of HDF5 event chunks
SENSOR_SIZE = (34, 34, 2)
EVENT_DTYPES = {"x": np.uint8, "y": np.uint8, "t": np.uint32, "p": np.uint8}


@dataclass(frozen=True)
class Download:
    """Where ``--download`` fetches one split's archive, and what it must hash to."""

    url: str
    md5: str
    file: str


@dataclass(frozen=True)
class Config:
    sources: tuple[SplitSource, ...]
    seed: int
    k: int
    max_digit: int
    format: str
    reverse_polarity: bool
    shard_size: int
    cache: str  # download settings: not in config_dict, they do not shape the data
    downloads: dict[str, Download]


@dataclass(frozen=True)
class Group:
    """One output sample: recordings in group order, and which of them are reversed."""

    index: int
    recordings: tuple[Recording, ...]

    @property
    def digits(self) -> tuple[int, ...]:
        return tuple(r.digit for r in self.recordings)

    @property
    def reversed(self) -> tuple[bool, ...]:
        return tuple(i % 2 == 1 for i in range(len(self.recordings)))

    @property
    def output_order(self) -> list[int]:
        """Positions in the order their events are written: reversed ones first."""
        rev = [i for i, r in enumerate(self.reversed) if r]
        return rev + [i for i, r in enumerate(self.reversed) if not r]

    def file_name(self) -> str:
        return f"{self.index}_{'-'.join(map(str, self.digits))}.bin"


def parse_config(values: Values, sources: tuple[SplitSource, ...] = ()) -> Config:
    """Validate merged YAML and flags; ``sources`` are located later, once inputs exist."""
    top = Reader(values)
    seed = top.integer("seed", 0, 2**32 - 1)
    k = top.integer("k", 2, 10)
    max_digit = top.integer("max_digit", 0, 9)
    fmt = top.choice("format", FORMATS)
    reverse_polarity = top.boolean("reverse_polarity")
    shard_size = top.integer("shard_size", 1)
    dl = top.mapping("download")
    downloads = {}
    for key in ("train", "test"):
        one = dl.mapping(key)
        url, md5, file = one.string("url"), one.string("md5"), one.string("file")
        if len(md5) != 32 or any(c not in "0123456789abcdefABCDEF" for c in md5):
            raise one.fail("md5", f"{md5!r} is not an md5 hex digest")
        one.finish()
        downloads[key] = Download(url, md5, file)
    cache = dl.string("cache")
    dl.finish()
    top.finish()
    return Config(sources, seed, k, max_digit, fmt, reverse_polarity, shard_size, cache,
                  downloads)


# ---- the procedure: pure functions ------------------------------------------------------------

def make_groups(recordings: list[Recording], seed: int, k: int = 2,
                max_digit: int = 9) -> list[Group]:
    """The paper's grouping: sort, shuffle with the seed, then draw each group's size."""
    sources = sorted((r for r in recordings if r.digit <= max_digit), key=lambda r: r.key)
    rng = np.random.RandomState(seed)
    rng.shuffle(sources)
    groups, i, n = [], 0, len(sources)
    while i < n:
        size = min(int(rng.randint(1, k + 1)), n - i)
        seen = {sources[i].digit}
        for j in range(1, size):
            if sources[i + j].digit in seen:
                size = j
                break
            seen.add(sources[i + j].digit)
        groups.append(Group(len(groups), tuple(sources[i:i + size])))
        i += size
    return groups


def time_reverse(data: bytes, swap_polarity: bool = False) -> bytes:
    """A recording's ``.bin`` bytes reversed in time: ``t' = max(t) - t``, the events in reverse
    order so times ascend, x, y and polarity kept (polarity swapped on request)."""
    raw = nmnist_bin.records(data)[::-1]
    if not raw.size:
        return b""
    t = nmnist_bin.timestamps(raw)
    t = t.max() - t
    out = np.empty(raw.shape, dtype=np.uint8)
    out[:, :2] = raw[:, :2]
    polarity = raw[:, 2] & 0x80
    if swap_polarity:
        polarity ^= 0x80
    out[:, 2] = polarity | (t >> 16).astype(np.uint8)
    out[:, 3] = (t >> 8).astype(np.uint8)  # the casts keep the low 8 bits
    out[:, 4] = t.astype(np.uint8)
    return out.tobytes()


def superimpose(group: Group, recordings: list[bytes], swap_polarity: bool) -> bytes:
    """The sample's ``.bin`` bytes: the reversed recordings first, then the kept ones.

    Working on the format's bytes, a kept recording is copied as it is, never decoded.
    """
    return b"".join(time_reverse(recordings[i], swap_polarity) if group.reversed[i]
                    else recordings[i] for i in group.output_order)


# ---- what the engine asks of a dataset --------------------------------------------------------

def splits(cfg: Config) -> list[str]:
    return [s.split for s in cfg.sources]


def config_dict(cfg: Config) -> dict:
    return {
        "splits": splits(cfg),
        "sources": {s.split: s.describe() for s in cfg.sources},
        "seed": cfg.seed, "k": cfg.k, "max_digit": cfg.max_digit, "format": cfg.format,
        "reverse_polarity": cfg.reverse_polarity, "shard_size": cfg.shard_size,
    }


def input_paths(cfg: Config) -> list[str]:
    """What every worker of a cluster must be able to read."""
    return [s.path for s in cfg.sources]


def uses_hdf5(cfg: Config) -> bool:
    return cfg.format == "hdf5"


def plan(cfg: Config) -> list[Shard]:
    shards = []
    for src in cfg.sources:
        groups = make_groups(list_recordings(src), cfg.seed, cfg.k, cfg.max_digit)
        if not groups:
            raise RunError(f"{src.describe()} holds no <digit>/*.bin recordings with digit "
                              f"<= {cfg.max_digit}")
        count = -(-len(groups) // cfg.shard_size)
        for i in range(count):
            part = tuple(groups[i * cfg.shard_size:(i + 1) * cfg.shard_size])
            shards.append(Shard(f"{src.split}-{i:05d}-of-{count:05d}", src.split, len(part),
                                (src, i, count, part)))
        if cfg.format == "bin":
            shards.append(Shard(f"{src.split}-pairs", src.split, 0, (src, -1, count,
                                                                      tuple(groups))))
    return shards


def build(cfg: Config, shard: Shard) -> ShardResult:
    src, index, count, groups = shard.payload
    if index < 0:
        return ShardResult([Artifact(f"pairs-{src.split}.csv", "text", pairs_csv(groups),
                                     len(groups), src.split)])
    reader = SourceReader(src)
    samples, digests = [], []
    try:
        for group in groups:
            recordings = []
            for rec in group.recordings:
                data = reader.read(rec.rel)
                nmnist_bin.records(data, reader.name(rec.rel))  # a whole number of events
                digests.append(f"{rec.rel} {hashlib.sha256(data).hexdigest()}")
                recordings.append(data)
            samples.append(superimpose(group, recordings, cfg.reverse_polarity))
    finally:
        reader.close()
    stats = {src.split: {
        "samples": len(groups),
        "superimposed": sum(len(g.recordings) > 1 for g in groups),
        "single": sum(len(g.recordings) == 1 for g in groups),
        "events": sum(len(s) for s in samples) // 5,
        "input_recordings": digests,
    }}
    if cfg.format == "bin":
        folder = SPLIT_DIRS[src.split]
        arts = [Artifact(f"{folder}/{g.file_name()}", "nmnist_bin", data, 1, src.split)
                for g, data in zip(groups, samples, strict=True)]
        return ShardResult(arts, stats)
    path = f"{NAME}-{src.split}-{index:05d}-of-{count:05d}.h5"
    return ShardResult([Artifact(path, "events", event_shard(cfg, src.split, groups, samples),
                                 len(groups), src.split)], stats)


def event_shard(cfg: Config, split: str, groups: tuple[Group, ...],
                samples: list[bytes]) -> EventShard:
    """The shard's samples (``.bin`` bytes each) decoded into the event-shard columns."""
    offsets = np.zeros(len(samples) + 1, dtype=np.uint64)
    np.cumsum([len(s) // 5 for s in samples], out=offsets[1:])
    total = int(offsets[-1])
    events = {k: np.empty(total, dtype=dt) for k, dt in EVENT_DTYPES.items()}
    for start, data in zip(offsets[:-1].tolist(), samples, strict=True):
        nmnist_bin.decode_into(nmnist_bin.records(data), events, start)
    label = np.zeros((len(groups), 10), dtype=np.uint8)
    for row, g in enumerate(groups):
        label[row, list(g.digits)] = 1
    return EventShard(
        events=events,
        offsets=offsets,
        samples={
            "label": label,
            "index": np.array([g.index for g in groups], dtype=np.uint32),
            "source": np.array([source_text(g) for g in groups], dtype=object),
            "reversed": np.array([reversed_text(g) for g in groups], dtype=object),
        },
        attrs={"dataset": NAME, "version": VERSION, "split": split,
               "sensor_size": list(SENSOR_SIZE), "time_unit": "us", "seed": cfg.seed,
               "k": cfg.k, "reverse_polarity": cfg.reverse_polarity},
    )


def source_text(g: Group) -> str:
    """The group's recordings in group order, ``+``-joined (``3/00012.bin+6/00451.bin``)."""
    return "+".join(r.rel for r in g.recordings)


def reversed_text(g: Group) -> str:
    return "+".join(r.rel for r, rev in zip(g.recordings, g.reversed, strict=True) if rev)


def pairs_csv(groups: tuple[Group, ...]) -> str:
    lines = ["sample,labels,sources,reversed"]
    lines += [f"{g.index},{'-'.join(map(str, g.digits))},{source_text(g)},{reversed_text(g)}"
              for g in groups]
    return "\n".join(lines) + "\n"


def finalize_stats(split: str, stats: dict) -> dict:
    """Replace the per-recording digests with one fingerprint of the split's inputs."""
    stats = dict(stats)
    lines = sorted(stats.pop("input_recordings", []))
    stats["inputs"] = {"recordings": len(lines),
                       "sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest()}
    return stats


def describe(stats: dict[str, dict]) -> str:
    return "; ".join(f"{split} {s['samples']} samples ({s['superimposed']} superimposed + "
                     f"{s['single']} single)" for split, s in stats.items())
