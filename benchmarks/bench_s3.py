"""ES-ImageNet into a local S3 server (moto's server mode on a loopback port) against into a
local folder, 2 local workers, whole runs of the CLI, in one run (issue 26: goal >= 0.8x).

Both write the same bytes; the S3 run builds each shard in a temporary folder, uploads it into
the stage, then copies the stage to the final keys (server side) and writes the manifest and
SHA256SUMS last. Needs the dev extra (moto[server], s3fs). NEURODATA_BENCH_SCALE as for
bench_es_imagenet.

The server runs in its own process on the same cores, so the CPU time of both runs is printed
too (neurodata's processes, and the server's): what bounds the ratio on this machine.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

from common import WORK, fresh, median, neurodata

ROUNDS = 3


def cpu_of(pid: int) -> float:
    """A running process's user and system CPU seconds (Linux)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def timed(cmd: list[str], env: dict[str, str], server: int) -> tuple[float, float, float]:
    """(seconds, CPU seconds of the command's processes, CPU seconds of the S3 server)."""
    cpu, served, start = children_cpu(), cpu_of(server), time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return (time.perf_counter() - start, children_cpu() - cpu, cpu_of(server) - served)


def main() -> int:
    try:
        import boto3
        import moto.server  # noqa: F401
    except ImportError:
        print("s3: skipped, moto[server] is not installed (pip install '.[dev]')")
        return 0
    import bench_es_imagenet as es
    from bench_streaming import start_server

    root = es.make_inputs(WORK / "es-imagenet" / "imagenet")
    proc, endpoint = start_server()  # its own process: its CPU time is its own
    try:
        env = dict(os.environ)
        client = boto3.client("s3", endpoint_url=endpoint)
        print(f"s3: {es.IMAGES:,} ImageNet-sized JPEGs, shards of 100, hdf5, 2 workers")
        args = ["es-imagenet", "--imagenet-root", str(root), "--shard-size", "100",
                "--workers", "2", "--quiet"]
        local, remote = [], []
        for k in range(ROUNDS):  # interleaved, so that both see the same machine load
            local.append(timed(neurodata() + args + ["--out", str(fresh(WORK / "s3-local"))],
                               env, proc.pid))
            client.create_bucket(Bucket=f"bench-{k}")
            remote.append(timed(neurodata() + args + ["--out", f"s3://bench-{k}/out"], env,
                                proc.pid))
        (lt, lc, _), (rt, rc, sc) = (tuple(median([r[i] for r in runs]) for i in range(3))
                                     for runs in (local, remote))
        print(f"  into a local folder: {lt:.2f} s, {es.IMAGES / lt:,.0f} images/s")
        print(f"  into the local S3 server: {rt:.2f} s, {es.IMAGES / rt:,.0f} images/s "
              f"({lt / rt:.2f}x the local folder; goal >= 0.8x)")
        # Both runs keep the cores about as busy; the store's run has more CPU work to do.
        best = lt * (rc + sc) / lc
        print(f"    CPU: the local run {lc:.2f} s; the S3 run {rc:.2f} s in neurodata and {sc:.2f}"
              f" s in the S3 server on the same cores -> at the local run's use of the cores, "
              f"{best:.2f} s at best ({lt / best:.2f}x)")
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
