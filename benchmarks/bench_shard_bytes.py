"""Bytes on disk: webdataset tar shards against HDF5 shards of the same samples (report, no goal).

The reading bench's data: ES-ImageNet from the first IMAGES_READ of the ES bench's JPEGs, and
2NMNIST's train split from the synthetic tree of 5,000 recordings, each written in both formats
with the same config. The tars hold each sample's fields as plain npy members (a streaming
reader reads them in place), plus 512-byte tar headers and padding per member; HDF5 stores the
events through the dataset's codec (ES-ImageNet: zstd level 4; 2NMNIST: raw, contiguous).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench_es_imagenet import make_inputs
from bench_reading import IMAGES_READ, nmnist_tree, run
from common import WORK, fresh, mb

FORMATS = ("hdf5", "webdataset")


def shard_bytes(folder: Path) -> int:
    """The bytes of a finished folder's data files, as its manifest lists them."""
    manifest = json.loads((folder / "manifest.json").read_text())
    return sum(int(f["bytes"]) for f in manifest["files"])


def compare(name: str, args: list[str], work: Path) -> dict[str, int]:
    """``name`` written with ``args`` in each format below ``work``: its data bytes per format."""
    from neurodata_cli.datasets import get

    out = {}
    for fmt in FORMATS:
        root = fresh(work / f"{name}-{fmt}")
        run(name, *args, "--format", fmt, "--out", str(root))
        out[fmt] = shard_bytes(root / name / get(name).version)
    return out


def line(what: str, sizes: dict[str, int]) -> str:
    wds, h5 = sizes["webdataset"], sizes["hdf5"]
    return (f"  {what}: webdataset {mb(wds)}, HDF5 {mb(h5)} -> {wds / h5:.2f}x the bytes "
            f"(report, no goal)")


def main() -> int:
    work = WORK / "shard-bytes"
    images = make_inputs(WORK / "es-imagenet" / "imagenet")
    tree = nmnist_tree(WORK / "reading" / "nmnist", 500)  # the reading bench's, made once
    print("shard bytes: webdataset tar shards vs HDF5 shards of the same samples")
    print(line(f"ES-ImageNet, {IMAGES_READ} images", compare(
        "es-imagenet", ["--imagenet-root", str(images), "--limit", str(IMAGES_READ)], work)))
    print(line("2NMNIST train, 5,000 recordings", compare(
        "2nmnist", ["--nmnist-root", str(tree), "--split", "train"], work)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
