"""A stream over a URL checks each shard it reads whole against the manifest it opened with:
a damaged or replaced object stops the stream with one line naming it, before any of that
shard's samples is served (the samples of the intact shards before it are served as usual)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nmnist_synth import recording
from s3server import bucket, s3  # noqa: F401
from test_s3_input import upload

from neurodata_cli.datasets import get
from neurodata_cli.errors import RunError
from neurodata_cli.reader import open_dataset


def fixed_tree(root: Path, seed: int) -> Path:
    """An NMNIST tree whose recordings all hold 2,000 events: two seeds give 2NMNIST shards
    of the same sizes and different bytes."""
    rng = np.random.RandomState(seed)
    for folder, count in (("Train", 3), ("Test", 1)):
        for digit in range(10):
            (root / folder / str(digit)).mkdir(parents=True)
            for i in range(count):
                (root / folder / str(digit) / f"{i:05d}.bin").write_bytes(recording(rng, 2000))
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """2NMNIST folders in shards of 4: hdf5 from two trees (``hdf5``, ``other``), webdataset."""
    from click.testing import CliRunner

    from neurodata_cli.cli import cli

    base = tmp_path_factory.mktemp("streamed")
    made = {}
    for name, seed, fmt in (("hdf5", 1, "hdf5"), ("other", 2, "hdf5"), ("wds", 1, "webdataset")):
        tree = base / f"tree{seed}"
        if not tree.exists():
            fixed_tree(tree, seed)
        result = CliRunner().invoke(cli, ["2nmnist", "--nmnist-root", str(tree), "--out",
                                          str(base / name), "--shard-size", "4",
                                          "--format", fmt, "--quiet"])
        assert result.exit_code == 0, result.output
        made[name] = base / name / "2nmnist" / get("2nmnist").version
    return made


def train_shards(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("2nmnist-train-*") if p.suffix in (".h5", ".tar"))


def drain(stream) -> tuple[list, RunError]:  # noqa: ANN001
    """The samples a stream served before it raised, and its error."""
    got = []
    with pytest.raises(RunError) as caught:
        for sample in stream:
            got.append(sample)
    return got, caught.value


@pytest.mark.parametrize("fmt, change", [("hdf5", "flip"), ("wds", "flip"), ("wds", "cut")])
def test_a_flipped_byte_in_a_shard_stops_the_stream_before_its_samples(s3, bucket, folders,  # noqa: F811
                                                                        fmt, change):
    folder = folders[fmt]
    url = upload(s3, bucket, folder, "ds")
    name = train_shards(folder)[1]
    data = bytearray((folder / name).read_bytes())
    if change == "flip":
        data[len(data) // 2] ^= 0x01  # the same size, one bit off
    else:
        del data[-1024:]  # the tar's end-of-archive blocks: its samples still read whole
    s3.client().put_object(Bucket=bucket, Key=f"ds/{name}", Body=bytes(data))
    view = open_dataset(url)["train"]
    got, error = drain(view.stream())
    # Shard 0 is intact and served whole; nothing of shard 1.
    assert len(got) == view.store.starts[1]
    message = str(error)
    assert "\n" not in message
    assert f"{url}/{name}: differs from what its manifest records" in message
    assert f"neurodata verify {url}" in message
    assert ("another sha256" if change == "flip" else f"{len(data)} bytes") in message


def test_a_shard_replaced_mid_stream_by_another_runs_bytes_stops_it(s3, bucket, folders):  # noqa: F811
    """A commit that replaced the folder while a stream read it: the stream opened with the
    old manifest, and the new shard (another run's, of the same size) is refused."""
    ours, theirs = folders["hdf5"], folders["other"]
    name = train_shards(ours)[2]
    new = (theirs / name).read_bytes()
    assert len(new) == (ours / name).stat().st_size and new != (ours / name).read_bytes()
    url = upload(s3, bucket, ours, "ds")
    view = open_dataset(url)["train"]
    stream = iter(view.stream())
    got = [next(stream)]  # shards 0 and 1 are read (one ahead); shard 2 not yet
    s3.client().put_object(Bucket=bucket, Key=f"ds/{name}", Body=new)
    more, error = drain(stream)
    assert len(got + more) == view.store.starts[2]
    assert f"{url}/{name}: differs from what its manifest records" in str(error)


def test_an_npy_column_read_from_a_url_is_checked_too(s3, bucket, tmp_path):  # noqa: F811
    """An npy folder at a URL is read whole when opened (nothing to map): a flipped byte in a
    column is refused there in one line, as a stream of the other formats refuses it, rather
    than served as samples."""
    from click.testing import CliRunner

    from neurodata_cli.cli import cli

    result = CliRunner().invoke(cli, ["yinyang", "--size", "50", "--format", "npy", "--out",
                                      str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "yinyang" / get("yinyang").version
    url = upload(s3, bucket, folder, "ds")
    name = sorted(p.name for p in folder.glob("train_*.npy"))[-1]
    data = bytearray((folder / name).read_bytes())
    data[-3] ^= 0x01  # a sample's value, the same size
    s3.client().put_object(Bucket=bucket, Key=f"ds/{name}", Body=bytes(data))
    with pytest.raises(RunError) as caught:
        list(open_dataset(url)["train"].stream())
    message = str(caught.value)
    assert "\n" not in message
    assert f"{url}/{name}: differs from what its manifest records (another sha256)" in message
    assert f"neurodata verify {url}" in message
