"""``--format webdataset``: tar shards of the same samples as HDF5, with fixed bytes, that
open_dataset, the ``webdataset`` library and Hugging Face ``datasets`` all read back exactly."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from helpers import tree_digest
from test_contract import NAMES, folder, inputs

from neurodata_cli import datasets, open_dataset
from neurodata_cli.formats.webdataset import events


@pytest.fixture(scope="module", params=NAMES)
def made(request, tmp_path_factory):
    """(name, webdataset folder, HDF5 folder, webdataset folder of a run with 2 workers)."""
    from click.testing import CliRunner

    from neurodata_cli.cli import cli

    name = request.param
    root = tmp_path_factory.mktemp(name)
    args = inputs(name, root / "in", long=False)
    if name == "yinyang":  # small, and with the optional column
        args = ["--size", "300", "--encoding", "spike-times"]

    def run(fmt: str, out: str, workers: str) -> Path:
        done = CliRunner().invoke(cli, [name, *map(str, args), "--format", fmt, "--workers",
                                        workers, "--out", str(root / out), "--quiet"])
        assert done.exit_code == 0, done.output
        return folder(root / out, name)

    return (name, run("webdataset", "w1", "1"), run("hdf5", "h", "1"),
            run("webdataset", "w2", "2"))


def tars(f: Path, split: str) -> list[Path]:
    return sorted(f.glob(f"*-{split}-*.tar"))


def same(a, b, what: str) -> None:
    if isinstance(a, str) or isinstance(b, str):
        assert a == b, what
        return
    a, b = np.asarray(a), np.asarray(b)
    assert (a.dtype, a.shape) == (b.dtype, b.shape), what
    np.testing.assert_array_equal(a, b, err_msg=what)


def test_the_same_bytes_on_every_run_and_with_1_or_2_workers(made):
    name, wds, _, wds2 = made
    assert tree_digest(wds) == tree_digest(wds2)
    assert (wds / "SHA256SUMS").read_bytes() == (wds2 / "SHA256SUMS").read_bytes()


def test_tar_members_have_fixed_headers_and_are_grouped_by_sample_key(made):
    name, wds, _, _ = made
    manifest = json.loads((wds / "manifest.json").read_text())
    assert {e["path"] for e in manifest["files"]} == {p.name for p in wds.glob("*.tar")}
    for entry in manifest["files"]:
        path = wds / entry["path"]
        shard_key = re.fullmatch(rf"{name}-(.+)\.tar", path.name).group(1)
        with tarfile.open(path) as tar:
            assert tar.pax_headers["NEURODATA.features"]  # the description, as a global header
            members = tar.getmembers()
        keys = []
        for m in members:
            assert m.isreg() and (m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) == \
                (0, 0, 0, "", "", 0o644), m.name
            key = m.name.split(".", 1)[0]
            if not keys or keys[-1] != key:
                keys.append(key)
        # One key per sample, numbered from 0 in the shard, unique in the split.
        assert keys == [f"{shard_key}-{j:06d}" for j in range(entry["records"])]


def test_open_dataset_serves_what_the_hdf5_folder_serves(made):
    name, wds, h5, _ = made
    a, b = open_dataset(wds), open_dataset(h5)
    assert a.splits == b.splits
    for split in a.splits:
        x, y = a[split], b[split]
        assert len(x) == len(y)
        for i in range(len(x)):
            got, want = x.record(i), y.record(i)
            assert list(got) == list(want), (split, i)
            for key in want:
                same(got[key], want[key], f"{split} {i} {key}")
            assert x.info(i).keys() == want.keys() - {"events"}
            for u, v in zip(x[i], y[i], strict=True):
                same(u, v, f"{split} {i}")
        if name == "yinyang":  # read whole, for its preview
            for key, column in y.columns().items():
                np.testing.assert_array_equal(x.columns()[key], column)


def test_the_webdataset_library_reads_every_sample_as_stored(made):
    import webdataset

    name, wds, _, _ = made
    data = open_dataset(wds)
    spec = datasets.get(name)
    for split in data.splits:
        urls = [str(p) for p in tars(wds, split)]
        samples = list(webdataset.WebDataset(urls, shardshuffle=False).decode())
        ours = data[split]
        assert len(samples) == len(ours)
        for i, sample in enumerate(samples):
            record = ours.record(i)
            if spec.features.events is not None:
                got = events(sample)
                assert got.dtype.names == ("x", "y", "t", "p")
                for k in got.dtype.names:
                    assert got[k].dtype == spec.features.events.dtypes[k]
                    np.testing.assert_array_equal(got[k], record["events"][k])
            for key, feature in spec.features.columns.items():
                if key not in record:
                    continue
                value = sample["json"].get(key, sample.get(f"{key}.npy"))
                if feature.dtype == "str":
                    assert value == record[key]
                else:
                    np.testing.assert_array_equal(value, record[key])
                if feature.classes and feature.shape == ():
                    assert sample["cls"] == record[key]


def test_hugging_face_datasets_loads_every_sample(made, tmp_path, monkeypatch):
    import datasets as hf
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    name, wds, _, _ = made
    data = open_dataset(wds)
    spec = datasets.get(name)
    files = {split: [str(p) for p in tars(wds, split)] for split in data.splits}
    loaded = hf.load_dataset("webdataset", data_files=files, cache_dir=str(tmp_path))
    for split in data.splits:
        rows, ours = loaded[split], data[split]
        assert len(rows) == len(ours)
        for i in range(len(rows)):
            row, record = rows[i], ours.record(i)
            if "events" in record:
                got = events(row)
                for k in ("x", "y", "t", "p"):
                    np.testing.assert_array_equal(got[k], record["events"][k])
            for key, feature in spec.features.columns.items():
                if key in record:
                    value = row["json"][key] if key in row["json"] else row[f"{key}.npy"]
                    np.testing.assert_array_equal(np.asarray(value, dtype=object if
                                                  feature.dtype == "str" else None),
                                                  record[key])


def test_a_dotted_split_name_still_gives_one_key_per_sample(run, tmp_path):
    import webdataset

    run("yinyang", "--size", "20", "--split", "v1.2", "--format", "webdataset", "--out",
        tmp_path, "--quiet")
    f = folder(tmp_path, "yinyang")
    (tar,) = f.glob("*.tar")
    samples = list(webdataset.WebDataset(str(tar), shardshuffle=False).decode())
    # Readers split a member's name at its first dot: the split's dot is not in the key.
    assert [s["__key__"] for s in samples] == [f"v1_2-00000-of-00001-{j:06d}" for j in range(20)]
    ds = open_dataset(f)["v1.2"]
    for i, s in enumerate(samples):
        np.testing.assert_array_equal(ds[i][0], s["samples.npy"])
        assert ds[i][1] == s["cls"]


@pytest.mark.parametrize("keep, error", [
    (lambda k, m: k < 3, "holds 1 samples, its manifest says 10"),  # json, cls, npy of one
    (lambda k, m: m.name != "train-00000-of-00001-000001.cls",
     "sample 1 holds other members than sample 0 (json, cls, features.npy)")])
def test_a_tar_that_disagrees_with_its_manifest_is_named(run, tmp_path, keep, error):
    from neurodata_cli.errors import RunError

    run("ramp", "--size", "10", "--format", "webdataset", "--out", tmp_path, "--quiet")
    f = folder(tmp_path, "ramp")
    (path,) = f.glob("*.tar")
    with tarfile.open(path) as tar:
        kept = [(m, tar.extractfile(m).read()) for k, m in enumerate(tar.getmembers())
                if keep(k, m)]
    with tarfile.open(path, "w") as tar:
        for member, data in kept:
            tar.addfile(member, io.BytesIO(data))
    with pytest.raises(RunError, match=re.escape(f"{path.name}: {error}")):
        open_dataset(f)["train"][3]
