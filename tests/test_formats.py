"""HDF5 shards through HDF5's own filter pipeline: what a user reads back is what tool 0.6.0's
hand-made codec gave (tests/data/hdf5-0.6, written by it), and what plain h5py reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from nmnist_synth import make_tree

from neurodata_cli import open_dataset
from neurodata_cli.datasets import get

OLD = Path(__file__).parent / "data" / "hdf5-0.6"


def plain(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every shard's datasets as plain h5py reads them (hdf5plugin imported: any codec)."""
    import h5py
    import hdf5plugin  # noqa: F401

    out = {}
    for path in sorted(folder.glob("*.h5")):
        with h5py.File(path) as f:
            out[path.name] = {name: f[name][()] for group in ("events", "samples")
                              if group in f for name in (f"{group}/{k}" for k in f[group])}
    return out


def same_data(old: Path, new: Path) -> None:
    """Same decoded events, labels and columns, through plain h5py and through open_dataset."""
    a, b = plain(old), plain(new)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys()
        for key in a[name]:
            assert a[name][key].dtype == b[name][key].dtype, key
            np.testing.assert_array_equal(a[name][key], b[name][key], err_msg=key)
    dold, dnew = open_dataset(old), open_dataset(new)
    assert dold.splits == dnew.splits
    for split in dold.splits:
        x, y = dold[split], dnew[split]
        assert len(x) == len(y) > 0
        for i in range(len(x)):
            rx, ry = x.record(i), y.record(i)
            assert rx.keys() == ry.keys()
            for key in rx:
                np.testing.assert_array_equal(rx[key], ry[key], err_msg=key)


def test_2nmnist_decodes_as_0_6_did(run, tmp_path):
    tree = make_tree(tmp_path / "nmsrc", {"train": 1, "test": 1})
    for path in tree.rglob("*.bin"):
        path.write_bytes(path.read_bytes()[:5 * 400])
    run("2nmnist", "--nmnist-root", tree, "--out", tmp_path, "--workers", "1", "--split",
        "train", "--shard-size", "1000", "--quiet")
    same_data(OLD / "2nmnist" / "2.0.0", tmp_path / "2nmnist" / get("2nmnist").version)


def test_es_imagenet_decodes_as_0_6_did(run, tmp_path):
    run("es-imagenet", "--imagenet-root", OLD / "imagenet", "--out", tmp_path, "--workers", "1",
        "--shard-size", "3", "--quiet")
    same_data(OLD / "es-imagenet" / "2.0.0", tmp_path / "es-imagenet" / get("es-imagenet").version)


def test_yinyang_decodes_as_0_6_did(run, tmp_path):
    run("yinyang", "--size", "50", "--format", "hdf5", "--out", tmp_path, "--quiet")
    same_data(OLD / "yinyang" / "1.0.0", tmp_path / "yinyang" / get("yinyang").version)


READ_FRESH = """
import sys
import h5py
from neurodata_cli import open_dataset
events, label = open_dataset(sys.argv[1])["train"][0]
assert "hdf5plugin" in sys.modules  # imported by the reader, for the shard's zstd events
try:
    with h5py.File(sys.argv[2]) as f:
        h5py.h5z.unregister_filter(32015)  # as a process without hdf5plugin has it
        f["events/x"][:10]
except OSError:
    print(len(events))
"""


def test_the_reader_imports_hdf5plugin_itself_and_plain_h5py_needs_it(run, tmp_path):
    import subprocess
    import sys

    run("es-imagenet", "--imagenet-root", OLD / "imagenet", "--out", tmp_path, "--workers", "1",
        "--limit", "1", "--quiet")
    folder = tmp_path / "es-imagenet" / get("es-imagenet").version
    shard = next(folder.glob("*.h5"))
    done = subprocess.run([sys.executable, "-c", READ_FRESH, str(folder), str(shard)],
                          capture_output=True, text=True, cwd=tmp_path)  # the installed package
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 1000  # a whole sample read, and plain h5py refused without it


# sha256 of the shard below as neurodata 0.7.0 wrote it, with these libraries: a change to how
# events are written must not change a version's bytes (HDF5 places chunks and groups in the
# file in the order it is given them).
KEPT = {("2.0.0", "7.1.0"):
        "745348de45089837b93b3cc4ad975640a4b0296ebf7923a77d3995d2289b2173"}


def test_a_zstd_event_shard_keeps_its_bytes(tmp_path):
    """Events of many chunks, in blocks of any size: the shard's bytes stay those 0.7.0 wrote
    (with the same libhdf5 and hdf5plugin). Writing several chunks a call, for one, moves the
    last ones past the samples group."""
    from dataclasses import replace

    import h5py
    import hdf5plugin
    import pytest

    from neurodata_cli.datasets.base import Block, Shard
    from neurodata_cli.datasets.two_nmnist import TwoNMNIST
    from neurodata_cli.formats.hdf5 import HDF5, Codec

    kept = KEPT.get((h5py.version.hdf5_version, hdf5plugin.version))
    if kept is None:
        pytest.skip("bytes recorded for other libhdf5/hdf5plugin versions")

    class Coded(TwoNMNIST):
        features = replace(TwoNMNIST.features, events=replace(TwoNMNIST.features.events,
                                                              codec=Codec("zstd", 5, 1000)))

    class Cfg:
        seed, k, reverse_polarity = 42, 2, False

    rng = np.random.default_rng(4)
    sizes = rng.integers(0, 30000, 300)  # 4.7 million events, 4,700 chunks a field
    blocks = []
    for i, n in enumerate(sizes):
        events = {"x": rng.integers(0, 34, n).astype(np.uint8),
                  "y": rng.integers(0, 34, n).astype(np.uint8),
                  "t": np.sort(rng.integers(0, 10**6, n)).astype(np.uint32),
                  "p": rng.integers(0, 2, n).astype(np.uint8)}
        blocks.append(Block({"label": np.eye(10, dtype=np.uint8)[[i % 10]],
                             "source": np.array([f"s{i}"], dtype=object)},
                            events, np.array([n], np.uint64)))
    files = HDF5.write(tmp_path, Coded(), Cfg(), Shard("train", 0, 1, len(sizes)), blocks)
    assert files[0]["sha256"] == kept
