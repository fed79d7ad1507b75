"""Run the benchmarks (all, or those named) and print their ratios: `make bench`."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

BENCHES = {"yinyang": "bench_yinyang", "2nmnist": "bench_2nmnist",
           "es-imagenet": "bench_es_imagenet", "archives": "bench_archives",
           "reading": "bench_reading", "streaming": "bench_streaming",
           "shard-bytes": "bench_shard_bytes", "dask": "bench_dask", "s3": "bench_s3"}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHES)
    status = 0
    for name in names:
        if name not in BENCHES:
            print(f"unknown benchmark {name!r}; choose from {', '.join(BENCHES)}")
            return 2
        status |= importlib.import_module(BENCHES[name]).main()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
