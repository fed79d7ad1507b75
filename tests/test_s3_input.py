"""Inputs read from an S3 bucket (moto's server on a loopback port), and finished folders read
back from one: the bytes equal a run over a local copy of the same inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nmnist_synth import make_tree, zip_tree
from s3server import bucket, s3  # noqa: F401
from test_archives import convert, images, layouts, official  # noqa: F401  (layouts: a fixture)

from neurodata_cli.datasets import get
from neurodata_cli.reader import open_dataset


def upload(s3, bucket: str, local: Path, prefix: str) -> str:  # noqa: F811
    """Every file below ``local`` into ``bucket/prefix``; the folder's URL."""
    client = s3.client()
    for path in sorted(local.rglob("*")):
        if path.is_file():
            client.put_object(Bucket=bucket, Key=f"{prefix}/{path.relative_to(local).as_posix()}",
                              Body=path.read_bytes())
    return f"s3://{bucket}/{prefix}"


def sums(folder: Path) -> str:
    return (folder / "SHA256SUMS").read_text()


@pytest.fixture(scope="module")
def nmnist(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("nmnist")
    tree = make_tree(base / "tree", {"train": 3, "test": 2}, seed=5)
    return {"folders": tree, "zips": zip_tree(tree, base / "zips")}


def two_nmnist(run, root: object, out: Path, *args: str) -> Path:
    run("2nmnist", "--nmnist-root", root, "--out", out, "--shard-size", "8", "--quiet", *args)
    return out / "2nmnist" / get("2nmnist").version


@pytest.mark.parametrize("layout", ["folders", "zips"])
def test_2nmnist_from_a_bucket_gives_the_bytes_of_a_local_run(run, tmp_path, s3, bucket,  # noqa: F811
                                                              nmnist, layout):
    url = upload(s3, bucket, nmnist[layout], "nmnist")
    local = two_nmnist(run, nmnist[layout], tmp_path / "local")
    remote = two_nmnist(run, url, tmp_path / "remote", "--workers", "2")
    assert sums(remote) == sums(local)
    # Resume keeps the store's sizes and ETags, never a time: a rerun is a reuse.
    again = ("2nmnist", "--nmnist-root", url, "--out", tmp_path / "remote", "--shard-size", "8")
    assert "reused" in run(*again).output
    if layout == "folders":  # a rewritten recording of the same size has another ETag,
        # seen in the same process too (a zip's members are known by their CRC-32, as locally)
        key = sorted(o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"]
                     if o["Key"].endswith(".bin"))[0]
        body = s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        s3.client().put_object(Bucket=bucket, Key=key, Body=body[:-1] + bytes([body[-1] ^ 1]))
        assert "reused" not in run(*again, code=None).output


@pytest.mark.parametrize("layout", ["folders", "official tars", "kaggle"])
def test_es_imagenet_from_a_bucket_gives_the_bytes_of_a_local_run(run, tmp_path, s3, bucket,  # noqa: F811
                                                                  layouts, layout):  # noqa: F811
    url = upload(s3, bucket, layouts[layout], "imagenet")
    local = convert(run, layouts[layout], tmp_path / "local")
    remote = convert(run, url, tmp_path / "remote", "--workers", "2")
    assert sums(remote).count("\n") >= 4
    assert sums(remote) == sums(local)
    if layout == "folders":  # its zstd shards (hdf5plugin's filter) read over a URL too
        there = open_dataset(upload(s3, bucket, local, "es"))["val"]
        here = open_dataset(local)["val"]
        assert same(there[1], here[1])
        assert all(same(a, b) for a, b in zip(there.stream(), (here[i] for i in range(
            len(here))), strict=True))


def test_a_missing_bucket_or_key_is_one_line(run, tmp_path, s3, bucket):  # noqa: F811
    for root in (f"s3://no-such-bucket-{bucket}/nmnist", f"s3://{bucket}/nothing-here"):
        result = run("2nmnist", "--nmnist-root", root, "--out", tmp_path, code=None)
        assert result.exit_code in (1, 2), result.output
        assert root in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    # The local folder's words: a folder with no manifest is not a finished one.
    for url in (f"s3://{bucket}/no/folder", f"s3://no-such-bucket-{bucket}/folder"):
        with pytest.raises(Exception, match="has no manifest.json: not a finished neurodata"):
            open_dataset(url)


@pytest.fixture(scope="module")
def made(tmp_path_factory, nmnist) -> Path:
    """A local 2NMNIST folder of several shards (raw events)."""
    from click.testing import CliRunner

    from neurodata_cli.cli import cli

    out = tmp_path_factory.mktemp("made")
    result = CliRunner().invoke(cli, ["2nmnist", "--nmnist-root", str(nmnist["folders"]),
                                      "--out", str(out), "--shard-size", "4", "--quiet"])
    assert result.exit_code == 0, result.output
    return out / "2nmnist" / get("2nmnist").version


def same(a, b) -> bool:
    return np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_open_dataset_reads_hdf5_from_a_bucket(s3, bucket, made):  # noqa: F811
    url = upload(s3, bucket, made, "ds")
    local, remote = open_dataset(made)["train"], open_dataset(url)["train"]
    n = len(local)
    assert len(remote) == n and n > 8
    for i in (0, n - 1, 5, 2):  # random access through ranged reads
        assert same(remote[i], local[i])
    assert {k: np.asarray(v).tolist() for k, v in remote.info(3).items()} == \
        {k: np.asarray(v).tolist() for k, v in local.info(3).items()}
    # In order, shard by shard.
    streamed = list(remote.stream())
    assert len(streamed) == n and all(same(s, local[i]) for i, s in enumerate(streamed))
    # Shuffled within a buffer: every sample once, in another order, repeatable by seed.
    shuffled = list(remote.stream(shuffle_buffer=5, seed=1))
    key = [int(s[0]["t"].sum()) for s in streamed]
    got = [int(s[0]["t"].sum()) for s in shuffled]
    assert sorted(got) == sorted(key) and got != key
    assert got == [int(s[0]["t"].sum()) for s in remote.stream(shuffle_buffer=5, seed=1)]
    # Two parts (as two DataLoader workers) share the shards: each sample exactly once.
    parts = [list(remote.stream(part=(k, 2))) for k in range(2)]
    assert all(parts) and sorted(int(s[0]["t"].sum()) for p in parts for s in p) == sorted(key)


def test_open_dataset_reads_webdataset_from_a_bucket(s3, bucket, made, nmnist,  # noqa: F811
                                                    tmp_path):
    """The streaming format over the store: random access by ranged reads, and in order or
    shuffled within a buffer by one request a shard; the same samples as the HDF5 folder."""
    from click.testing import CliRunner

    from neurodata_cli.cli import cli

    result = CliRunner().invoke(cli, ["2nmnist", "--nmnist-root", str(nmnist["folders"]),
                                      "--out", str(tmp_path), "--shard-size", "4",
                                      "--format", "webdataset", "--quiet"])
    assert result.exit_code == 0, result.output
    url = upload(s3, bucket, tmp_path / "2nmnist" / get("2nmnist").version, "wds")
    local, remote = open_dataset(made)["train"], open_dataset(url)["train"]
    n = len(local)
    assert len(remote) == n
    for i in (0, n - 1, 5, 2):
        assert same(remote[i], local[i])
    streamed = list(remote.stream())
    assert len(streamed) == n and all(same(s, local[i]) for i, s in enumerate(streamed))
    got = sorted(int(s[0]["t"].sum()) for s in remote.stream(shuffle_buffer=5, seed=2))
    assert got == sorted(int(s[0]["t"].sum()) for s in streamed)


def test_a_dataloader_with_two_workers_streams_each_sample_once(s3, bucket, made):  # noqa: F811
    torch = pytest.importorskip("torch")
    url = upload(s3, bucket, made, "ds")
    stream = open_dataset(url)["train"].stream(shuffle_buffer=4, seed=0)
    assert isinstance(stream, torch.utils.data.IterableDataset)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2,
                                         collate_fn=lambda sample: sample)
    got = sorted(int(events["t"].sum()) for events, _ in loader)
    local = open_dataset(made)["train"]
    assert got == sorted(int(local[i][0]["t"].sum()) for i in range(len(local)))


def test_a_stream_pickles_for_spawned_dataloader_workers(s3, bucket, made):  # noqa: F811
    """Where DataLoader workers are spawned, not forked (macOS, Windows; Linux from Python
    3.14), each gets the stream pickled: the torch subclass, made at run time, must survive."""
    import pickle

    torch = pytest.importorskip("torch")
    stream = open_dataset(upload(s3, bucket, made, "ds"))["train"].stream(shuffle_buffer=4,
                                                                          seed=3)
    copy = pickle.loads(pickle.dumps(stream))
    assert isinstance(copy, torch.utils.data.IterableDataset)
    assert [int(e["t"].sum()) for e, _ in copy] == [int(e["t"].sum()) for e, _ in stream]


def test_open_dataset_reads_npy_from_a_bucket(run, tmp_path, s3, bucket):  # noqa: F811
    run("yinyang", "--out", tmp_path, "--size", "50", "--format", "npy", "--quiet")
    folder = next((tmp_path / "yinyang").iterdir())
    url = upload(s3, bucket, folder, "yy")
    local, remote = open_dataset(folder), open_dataset(url)
    assert remote.splits == local.splits
    for split in local.splits:
        assert len(remote[split]) == len(local[split])
        for i in (0, len(local[split]) - 1):
            assert same(remote[split][i], local[split][i])
        assert len(list(remote[split].stream())) == len(local[split])


def test_dask_workers_read_the_inputs_from_the_bucket(run, tmp_path, s3, bucket, nmnist):  # noqa: F811
    distributed = pytest.importorskip("distributed")
    url = upload(s3, bucket, nmnist["zips"], "nmnist")
    local = two_nmnist(run, nmnist["zips"], tmp_path / "local", "--split", "test")
    # Started after the server: its workers inherit the endpoint, and open the store themselves.
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  silence_logs=50) as cluster:
        remote = two_nmnist(run, url, tmp_path / "remote", "--split", "test",
                            "--scheduler", cluster.scheduler_address)
    assert sums(remote) == sums(local)


def test_the_key_of_a_tar_in_a_bucket_follows_its_bytes(run, tmp_path, s3, bucket):  # noqa: F811
    root = official(tmp_path / "tars", images())
    url = upload(s3, bucket, root, "imagenet")
    args = ("key", "es-imagenet", "--imagenet-root", url, "--split", "val", "--show")
    shown = run(*args).output
    assert '"ILSVRC2012_img_val.tar"' in shown and ", -1" not in shown.replace("\n", "")
    first = run(*args[:-1]).output
    data = (root / "ILSVRC2012_img_val.tar").read_bytes()
    s3.client().put_object(Bucket=bucket, Key="imagenet/ILSVRC2012_img_val.tar",
                           Body=data[:-1] + b"\x01")  # same size, other bytes: another ETag
    assert run(*args[:-1]).output != first


def test_preview_draws_a_folder_in_a_bucket(run, tmp_path, s3, bucket, made):  # noqa: F811
    url = upload(s3, bucket, made, "ds")
    png = tmp_path / "p.png"
    assert run("preview", url, "--index", "2", "-o", png).output.strip() == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


NO_FSSPEC = """
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("fsspec", "s3fs"):
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, Refuse())
from neurodata_cli import materialise, open_dataset
from neurodata_cli.errors import ConfigError
run = materialise("2nmnist", sys.argv[2], nmnist_root=sys.argv[1], split="test", quiet=True,
                  workers=1)
assert len(open_dataset(run.folder)["test"]) > 0
try:
    materialise("2nmnist", sys.argv[2] + "-url", nmnist_root="s3://b/nmnist", split="test")
except ConfigError as exc:
    print(exc)
"""


def test_local_paths_need_no_fsspec_and_a_url_without_it_says_what_to_install(tmp_path, nmnist):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", NO_FSSPEC, str(nmnist["folders"]),
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("s3://b/nmnist: reading a URL needs fsspec; pip install "
                                  "'neurodata[cloud]'")


def test_check_archives_hashes_a_tar_in_a_bucket(run, tmp_path, s3, bucket):  # noqa: F811
    url = upload(s3, bucket, official(tmp_path / "tars", images()), "imagenet")
    result = run("es-imagenet", "--imagenet-root", url, "--split", "val", "--check-archives",
                 "--out", tmp_path / "out", code=1)
    assert f"{url}/ILSVRC2012_img_val.tar has md5" in result.output
    assert "not the published" in result.output
