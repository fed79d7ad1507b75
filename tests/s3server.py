"""An S3-compatible server on a loopback port (moto's server mode), for the object-store tests.

``s3`` (session-scoped) starts it once and gives its endpoint; the environment then points
fsspec/s3fs and boto3 at it with test credentials, so a plain ``s3://bucket/...`` URL works in
the test process and in every process it starts (``FSSPEC_S3_ENDPOINT_URL``). ``bucket`` is a
fresh, empty bucket per test.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

_NAMES = itertools.count()


@dataclass(frozen=True)
class S3:
    endpoint: str

    def client(self):  # noqa: ANN201  (boto3 has no types here)
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint)


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
           "FSSPEC_S3_ENDPOINT_URL": endpoint}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield S3(endpoint)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture
def bucket(s3: S3) -> str:
    """A new empty bucket's name."""
    name = f"test-{os.getpid()}-{next(_NAMES)}"
    s3.client().create_bucket(Bucket=name)
    return name
