"""ES-ImageNet into a local S3 server (moto's server mode on a loopback port) against into a
local folder, 2 local workers, whole runs of the CLI, in one run (issue 26: goal >= 0.8x).

Both write the same bytes; the S3 run builds each shard in a temporary folder, uploads it into
the stage, then copies the stage to the final keys (server side) and writes the manifest and
SHA256SUMS last. Needs the dev extra (moto[server], s3fs). NEURODATA_BENCH_SCALE as for
bench_es_imagenet.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from common import WORK, fresh, median, neurodata

ROUNDS = 3


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main() -> int:
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        print("s3: skipped, moto[server] is not installed (pip install '.[dev]')")
        return 0
    import logging

    import bench_es_imagenet as es

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    root = es.make_inputs(WORK / "es-imagenet" / "imagenet")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
               "FSSPEC_S3_ENDPOINT_URL": endpoint}
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="bench", aws_secret_access_key="bench")
        print(f"s3: {es.IMAGES:,} ImageNet-sized JPEGs, shards of 100, hdf5, 2 workers")
        args = ["es-imagenet", "--imagenet-root", str(root), "--shard-size", "100",
                "--workers", "2", "--quiet"]
        local, remote = [], []
        for k in range(ROUNDS):  # interleaved, so that both see the same machine load
            local.append(timed(neurodata() + args + ["--out", str(fresh(WORK / "s3-local"))],
                               env))
            client.create_bucket(Bucket=f"bench-{k}")
            remote.append(timed(neurodata() + args + ["--out", f"s3://bench-{k}/out"], env))
        lt, rt = median(local), median(remote)
        print(f"  into a local folder: {lt:.2f} s, {es.IMAGES / lt:,.0f} images/s")
        print(f"  into the local S3 server: {rt:.2f} s, {es.IMAGES / rt:,.0f} images/s "
              f"({lt / rt:.2f}x the local folder; goal >= 0.8x)")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
