"""ES-ImageNet on a Dask LocalCluster (1 and 2 worker processes) against the local pool.

Same ImageNet-sized JPEGs as bench_es_imagenet (made there if missing), whole runs of the CLI,
timed from the client. Ends with a projection, from the measured rate per core, of the wall
time for all 1.28 million ImageNet train images on 100 cores.
Needs the dask extra: pip install '.[dask]'.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from common import WORK, fresh, median, neurodata

ROUNDS = 2
IMAGENET_TRAIN = 1_281_167


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    try:
        from distributed import LocalCluster
    except ImportError:
        print("dask: skipped, dask[distributed] is not installed (pip install '.[dask]')")
        return 0
    import bench_es_imagenet as es

    work = WORK / "dask"
    root = es.make_inputs(WORK / "es-imagenet" / "imagenet")
    images = es.IMAGES
    print(f"dask: {images:,} ImageNet-sized JPEGs, shards of 100, hdf5")

    def convert(extra: list[str]) -> float:
        out = fresh(work / "out")
        return timed(neurodata() + ["es-imagenet", "--imagenet-root", str(root), "--out",
                                    str(out), "--shard-size", "100", "--quiet"] + extra)

    results = {}
    # Dask's worker processes start with the current folder on sys.path: from the repository
    # root they would import the source tree (without the compiled kernels) instead of the
    # installed package. Benchmark what users run.
    os.chdir(fresh(work / "cwd"))
    for workers in (1, 2):
        results[f"pool {workers}"] = median(
            [convert(["--workers", str(workers)]) for _ in range(ROUNDS)])
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          host="127.0.0.1", dashboard_address=None, silence_logs=50) as cluster:
            results[f"dask {workers}"] = median(
                [convert(["--scheduler", cluster.scheduler_address]) for _ in range(ROUNDS)])
    for name, seconds in results.items():
        kind, workers = name.split()
        label = "local pool" if kind == "pool" else "Dask LocalCluster"
        ratio = results[f"pool {workers}"] / seconds
        print(f"  {label}, {workers} worker{'s' if workers != '1' else ''}: {seconds:.2f} s, "
              f"{images / seconds:,.0f} images/s ({ratio:.2f}x the local pool)")
    per_core = images / results["dask 1"]
    seconds = IMAGENET_TRAIN / (per_core * 100)
    print(f"  PROJECTION (not measured): {IMAGENET_TRAIN:,} images on 100 cores at this "
          f"machine's {per_core:,.0f} images/s per core (1 Dask worker, whole run) -> "
          f"{seconds:,.0f} s ({seconds / 60:.1f} min) of wall time, if storage keeps up and "
          f"the cluster scales linearly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
