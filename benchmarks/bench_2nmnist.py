"""2NMNIST: a 70,000-recording synthetic tree, whole process, against a byte-by-byte baseline
and against the floor.

The baseline is the reference's pipeline in plain Python (decode each recording byte by byte,
superimpose, encode byte by byte and write), timed on a subset in the same run and scaled.
The floor is a process that reads every input recording and writes the same bytes, as plainly
as Python can, in the output's shape: one file per recording into one folder (the .bin layout;
we write fewer files, as pairs are joined, but each through a temporary name and a rename),
or appended to one file per 5,000 recordings (HDF5 shards). The same floors are timed again
with the hashes every run of ours must compute: the sha256 of each input recording (the
manifest's input fingerprint) and of each output file (``SHA256SUMS``), so the bench shows how
much of the gap to the floor those are. Our runs use all cores, then one worker, for the
scaling. Set NEURODATA_BENCH_SCALE (e.g. 0.1) for a quicker, smaller run.
"""

from __future__ import annotations

import glob
import os
import sys
import time
from pathlib import Path

import numpy as np
from common import WORK, fresh, median, neurodata, timed_process, warm

SCALE = float(os.environ.get("NEURODATA_BENCH_SCALE", "1"))
TRAIN, TEST = int(60_000 * SCALE), int(10_000 * SCALE)
BASE_RECORDINGS = max(200, int(3_000 * SCALE))
ROUNDS = 3


def make_tree(root: Path) -> Path:
    """About 4k events per recording, times sorted within 0.3 s, both polarities."""
    marker = root / f".complete-{TRAIN}-{TEST}"
    if marker.exists():
        return root
    fresh(root)
    rng = np.random.RandomState(0)
    for split, total in (("Train", TRAIN), ("Test", TEST)):
        for i in range(total):
            n = int(rng.randint(3000, 5000))
            t = np.sort(rng.randint(0, 300_000, size=n)).astype(np.uint32)
            raw = np.empty((n, 5), dtype=np.uint8)
            raw[:, 0] = rng.randint(0, 34, size=n)
            raw[:, 1] = rng.randint(0, 34, size=n)
            raw[:, 2] = (rng.randint(0, 2, size=n).astype(np.uint8) << 7) | (t >> 16)
            raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
            d = root / split / str(i % 10)
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{i:05d}.bin").write_bytes(raw.tobytes())
    marker.touch()
    return root


def baseline(split_dir: str, out: Path, limit: int) -> float:
    """The reference-style pipeline over the first ``limit`` sources; returns seconds."""
    start = time.perf_counter()
    sources = sorted(p[len(split_dir) + 1:-4] for p in glob.glob(f"{split_dir}/*/*.bin"))
    np.random.seed(42)
    np.random.shuffle(sources)
    sources = sources[:limit]

    def read(rel):
        with open(os.path.join(split_dir, rel + ".bin"), "rb") as f:
            data = f.read()
        return [(data[i], data[i + 1], data[i + 2] >> 7,
                 ((data[i + 2] & 127) << 16) | (data[i + 3] << 8) | data[i + 4])
                for i in range(0, len(data), 5)]

    def write(path, events):
        buf = bytearray()
        for x, y, p, t in events:
            buf += bytes([x, y, (p << 7) | (t >> 16), (t >> 8) & 255, t & 255])
        with open(path, "wb") as f:
            f.write(buf)

    i = g = 0
    while i < len(sources):
        n = np.random.randint(1, 3)
        if n == 2 and (i + 1 == len(sources) or sources[i][0] == sources[i + 1][0]):
            n = 1
        first = read(sources[i])
        if n == 2:
            second = read(sources[i + 1])
            tmax = max(e[3] for e in second)
            events = [(x, y, p, tmax - t) for x, y, p, t in reversed(second)] + first
            write(out / f"{g}_{sources[i][0]}-{sources[i + 1][0]}.bin", events)
        else:
            write(out / f"{g}_{sources[i][0]}.bin", first)
        i += n
        g += 1
    return time.perf_counter() - start


FLOOR = """
import hashlib, os, sys
root, out, layout, hashed = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "sha256"
paths = sorted(os.path.join(d, n) for split in ("Train", "Test")
               for d, _, names in os.walk(os.path.join(root, split)) for n in names)
shard = None
for i, path in enumerate(paths):
    with open(path, "rb") as f:
        data = f.read()
    if hashed:
        hashlib.sha256(data).hexdigest()
    if layout == "files":
        with open(os.path.join(out, f"{i}.bin"), "wb") as f:
            f.write(data)
    else:
        if i % 5000 == 0:
            shard = open(os.path.join(out, f"shard-{i // 5000:05d}"), "wb")
        shard.write(data)
if shard is not None:
    shard.close()
if hashed:  # as SHA256SUMS is made: each finished file read back and hashed
    for name in sorted(os.listdir(out)):
        digest = hashlib.sha256()
        with open(os.path.join(out, name), "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
"""


def main() -> int:
    work = WORK / "2nmnist"
    t0 = time.perf_counter()
    tree = make_tree(work / "tree")
    print(f"2nmnist: synthetic tree of {TRAIN + TEST:,} recordings ready "
          f"({time.perf_counter() - t0:.0f} s)")

    def timed_baseline() -> float:
        out = fresh(work / "base")
        warm(tree, "*.bin")
        return baseline(str(tree / "Train"), out, BASE_RECORDINGS)

    base = median([timed_baseline() for _ in range(2)])
    base_total = base * (TRAIN + TEST) / BASE_RECORDINGS
    print(f"  byte-by-byte baseline: {BASE_RECORDINGS / base:,.0f} recordings/s -> "
          f"{base_total:.0f} s for all {TRAIN + TEST:,} (scaled from {BASE_RECORDINGS:,})")
    # Interleaved rounds, medians: writing 48,000 small files takes this machine's file system
    # a different time from one run to the next.
    runs: dict[str, list[tuple[float, int]]] = {
        name: [] for name in ("floor-files", "floor-shards", "floor-files-sha256",
                              "floor-shards-sha256", "bin", "hdf5", "bin-1", "hdf5-1")}
    for _ in range(ROUNDS):
        for name, results in runs.items():
            out = fresh(work / name)
            warm(tree, "*.bin")
            if name.startswith("floor"):
                layout, _, hashed = name[6:].partition("-")
                cmd = [sys.executable, "-c", FLOOR, str(tree), str(out), layout, hashed]
            else:
                fmt, _, workers = name.partition("-")
                cmd = neurodata() + ["2nmnist", "--nmnist-root", str(tree), "--format", fmt,
                                     "--out", str(out), "--quiet"]
                cmd += ["--workers", workers] if workers else []
            results.append(timed_process(cmd))
    seconds = {name: median([r[0] for r in results]) for name, results in runs.items()}

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    for name in (n for n in runs if n.startswith("floor")):
        what = name[6:].replace("-sha256", ", with the sha256 of each input and output")
        print(f"  floor, {what}: {seconds[name]:.1f} s (median of {ROUNDS}: "
              f"{', '.join(f'{r[0]:.1f}' for r in runs[name])})")
    for fmt, floor in (("bin", "floor-files"), ("hdf5", "floor-shards")):
        results = runs[fmt]
        s, rss = seconds[fmt], max(r[1] for r in results)
        ratio, over, scaling = base_total / s, s / seconds[floor], seconds[f"{fmt}-1"] / s
        print(f"  neurodata --format {fmt} (all cores): {s:.1f} s whole process (median of "
              f"{ROUNDS}: {', '.join(f'{r[0]:.1f}' for r in results)}), "
              f"{(TRAIN + TEST) / s:,.0f} recordings/s; {ratio:.1f}x the baseline "
              f"[goal >= 10x: {met(ratio >= 10)}]; {over:.2f}x its floor [goal <= 1.5x: "
              f"{met(over <= 1.5)}], {s / seconds[floor + '-sha256']:.2f}x that floor with the "
              f"hashes (no goal); peak RSS {rss / 1e6:.0f} MB")
        print(f"    1 worker: {seconds[f'{fmt}-1']:.1f} s (median of {ROUNDS}: "
              f"{', '.join(f'{r[0]:.1f}' for r in runs[f'{fmt}-1'])}); all cores are "
              f"{scaling:.2f}x one worker [goal >= 1.6x: {met(scaling >= 1.6)}]")
    print(f"  hdf5 against bin, all cores: {seconds['bin'] / seconds['hdf5']:.2f}x as fast "
          f"[goal >= 1x: {met(seconds['hdf5'] <= seconds['bin'])}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
