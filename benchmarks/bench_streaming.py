"""Reading a split from an S3-compatible server (moto's, on a loopback port, in its own process)
against reading the same split from local files, in the main process, one run.

Goal (issue 26): streaming a split from the store in order is at least as fast as reading the
same split from local HDF5 in order (``ds[i]`` for i in order, the map-style read). Until
``--format webdataset`` lands, the HDF5 shards themselves are streamed over the URL
(``open_dataset(url)[split].stream()``: one GET a shard, every event decoded at once); see
``WEBDATASET`` below for the hook. Also printed, with no goal: random access over the URL
(ranged reads through h5py) against the local files, the cost docs/cluster.md quotes.

``NEURODATA_BENCH_SMALL=1`` makes the inputs small (a quick look, not the bench's figures).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_reading import nmnist_tree
from common import WORK, fresh, median, neurodata, warm

SMALL = bool(os.environ.get("NEURODATA_BENCH_SMALL"))
IMAGES = 120 if SMALL else 600  # ES-ImageNet inputs converted (the ES bench's JPEGs)
PER_DIGIT = 60 if SMALL else 500  # 2NMNIST: recordings per digit of the synthetic tree
RANDOM = 100 if SMALL else 300  # samples read at random over the URL
ROUNDS = 3

# HOOK (webdataset): the format streamed from the store once ``--format webdataset`` exists
# (h-wds, issue 26 item 3). While a dataset has no such format, its HDF5 shards are streamed
# instead and the line says so; the local anchor is HDF5 read in order either way.
WEBDATASET = "webdataset"

SERVER = """
import sys, time
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
print("ready", flush=True)
sys.stdin.read()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server() -> tuple[subprocess.Popen, str]:
    """moto's S3 in a child process (its threads never share this process's GIL)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
                       "FSSPEC_S3_ENDPOINT_URL": endpoint})
    return proc, endpoint


def upload(endpoint: str, folder: Path, bucket: str) -> str:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=bucket)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, path.relative_to(folder).as_posix())
    return f"s3://{bucket}"


def run(*args: str) -> None:
    subprocess.run(neurodata() + list(args) + ["--quiet"], check=True)


def timed(fn, n: int) -> float:
    """Median over ROUNDS of ``fn()``'s time, in ms per sample of the ``n`` it reads."""
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) / n * 1e3)
    return median(times)


def compare(name: str, local: Path, url: str, streamed: Path, streamed_format: str) -> bool:
    from neurodata_cli import open_dataset
    from neurodata_cli.storage import url_fs

    n = len(open_dataset(local)["train"])
    files = [f for f in open_dataset(local).manifest["files"] if f["split"] == "train"]
    size = sum(f["bytes"] for f in files)
    print(f"streaming: {name}, {n} samples in {len(files)} shards of {size / len(files) / 1e6:.1f} "
          f"MB on average (ms per sample)")

    # Each round opens the split afresh, as an epoch over a split of more shards than a
    # process keeps open (16) does: otherwise HDF5's chunk cache, which holds a small shard's
    # decoded events whole, would serve the later rounds without decompressing anything.
    def in_order() -> None:
        view = open_dataset(local)["train"]
        for i in range(n):
            view[i]

    def stream() -> None:
        for _ in open_dataset(url)["train"].stream():
            pass

    def stream_local() -> None:
        for _ in open_dataset(local)["train"].stream():
            pass

    def stream_format_local() -> None:  # the streamed format's decoding alone: no network
        for _ in open_dataset(streamed)["train"].stream():
            pass

    fs, _ = url_fs(url)
    objects = [url_fs(f"{url}/{f['path']}")[1]
               for f in open_dataset(url).manifest["files"] if f["split"] == "train"]

    def fetch_only() -> None:  # the store's side alone: every shard's bytes, all requests at once
        fs.cat(objects)

    anchor, ours, ours_local = timed(in_order, n), timed(stream, n), timed(stream_local, n)
    decode, fetch = timed(stream_format_local, n), timed(fetch_only, n)
    met = anchor / ours >= 1
    print(f"  stream() of the {streamed_format} split from the local S3 server, in order: "
          f"{ours:.3f} ms, local HDF5 in order (ds[i]) {anchor:.3f} ms -> {anchor / ours:.2f}x "
          f"[goal >= 1x: {'met' if met else 'NOT met'}]")
    # What bounds it, measured beside it: neither half alone can beat the anchor by more.
    print(f"    bounds: the shards' bytes alone from the server {fetch:.3f} ms "
          f"({anchor / fetch:.2f}x), stream() of the local {streamed_format} files (no network) "
          f"{decode:.3f} ms ({anchor / decode:.2f}x)")
    print(f"    (stream() of the local HDF5 files: {ours_local:.3f} ms)")
    order = np.random.default_rng(3).permutation(n)[:RANDOM].tolist()

    def at_random(where: Path | str) -> None:
        # Opened afresh each round: no block of an earlier round is cached.
        view = open_dataset(where)["train"]
        for i in order:
            view[i]

    remote_random = timed(lambda: at_random(url), len(order))
    local_random = timed(lambda: at_random(local), len(order))
    print(f"  {len(order)} samples at random over the URL (h5py through ranged reads, the "
          f"split opened afresh): {remote_random:.2f} ms, local {local_random:.3f} ms -> "
          f"{remote_random / local_random:.1f}x the time (no goal)")
    return met


def main() -> int:
    from bench_es_imagenet import make_inputs

    from neurodata_cli.datasets import get

    work = WORK / "streaming"
    made = {}
    images = make_inputs(WORK / "es-imagenet" / "imagenet")
    tree = nmnist_tree(work / f"nmnist-{PER_DIGIT}", PER_DIGIT)
    # Several shards a split, as a store holds them: the next is fetched while one is used.
    jobs = {"es-imagenet": ["--imagenet-root", str(images), "--limit", str(IMAGES),
                            "--shard-size", str(IMAGES // 3)],
            "2nmnist": ["--nmnist-root", str(tree), "--split", "train",
                        "--shard-size", str(PER_DIGIT * 2)]}
    streamed = {}
    for name, args in jobs.items():
        ds = get(name)
        fmt = WEBDATASET if WEBDATASET in ds.formats else "hdf5"
        streamed[name] = fmt
        for f in sorted({"hdf5", fmt}):
            out = fresh(work / f"{name}-{f}")
            run(name, *args, "--format", f, "--out", str(out))
            made[name, f] = out / name / ds.version  # 2nmnist: K = 2, the default
        warm(work, "*.h5")
    proc, endpoint = start_server()
    ok = True
    try:
        for k, name in enumerate(jobs):
            url = upload(endpoint, made[name, streamed[name]], f"bench-{k}")
            ok &= compare(name, made[name, "hdf5"], url, made[name, streamed[name]],
                          streamed[name])
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
