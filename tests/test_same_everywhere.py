"""A folder is the same on every machine: the same config over the same inputs gives byte-identical
``manifest.json`` and ``SHA256SUMS`` whatever the input root, the ``--out`` path or the install
(issue 25 item 5). Where a run read its inputs goes into ``run.json``, which SHA256SUMS does not
cover."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import another_machine
from imagenet_synth import ilsvrc, odd_files
from nmnist_synth import make_tree, zip_tree

import neurodata_cli
from neurodata_cli.datasets import get

PACKAGE = str(Path(neurodata_cli.__file__).resolve().parent)


def checksummed(folder: Path) -> dict[str, bytes]:
    """The two files that say what a folder is."""
    return {name: (folder / name).read_bytes() for name in ("manifest.json", "SHA256SUMS")}


def assert_same(a: Path, b: Path, *places: Path) -> None:
    """Byte-identical metadata, and no path of the machine (input roots, outputs, the installed
    package) in any checksummed file."""
    assert checksummed(a) == checksummed(b)
    listed = [line.split("  ", 1)[1] for line in (a / "SHA256SUMS").read_text().splitlines()]
    for rel in listed:
        data = (a / rel).read_bytes()
        for place in (*places, a, b, Path(PACKAGE)):
            assert os.fsencode(place) not in data, (rel, place)


def test_yinyang_is_the_same_from_two_outputs(run, tmp_path):
    for out in ("one", "two"):
        run("yinyang", "--size", "50", "--out", tmp_path / out / "deep", "--quiet")
    version = get("yinyang").version
    assert_same(tmp_path / "one" / "deep" / "yinyang" / version,
                tmp_path / "two" / "deep" / "yinyang" / version, tmp_path)


@pytest.mark.parametrize("layout", ["folders", "zips"])
@pytest.mark.parametrize("fmt", ["hdf5", "bin"])
def test_2nmnist_is_the_same_from_two_roots(run, tmp_path, layout, fmt):
    tree = make_tree(tmp_path / "a", {"train": 2, "test": 1})
    roots = [tree, another_machine(tree, tmp_path / "b")]
    if layout == "zips":
        roots = [zip_tree(root, tmp_path / f"zip-{k}") for k, root in enumerate(roots)]
    folders = []
    for k, root in enumerate(roots):
        out = tmp_path / f"out-{k}"
        run("2nmnist", "--nmnist-root", root, "--format", fmt, "--out", out, "--quiet")
        folders.append(out / "2nmnist" / get("2nmnist").version)
    assert_same(*folders, *roots)
    record = json.loads((folders[1] / "run.json").read_text())
    assert str(roots[1].absolute()) in record["splits"]["test"]["inputs"]["sources"]["test"]


@pytest.mark.parametrize("layout", ["folders", "official tars"])
@pytest.mark.parametrize("fmt", ["hdf5", "npz"])
def test_es_imagenet_is_the_same_from_two_roots(run, tmp_path, layout, fmt):
    root = ilsvrc(tmp_path / "a", tars=layout == "official tars")
    if layout == "folders":  # and inputs skipped with a reason, which names no path either
        odd_files(root / "train" / "n01440764")
    roots = [root, another_machine(root, tmp_path / "b")]
    folders = []
    for k, where in enumerate(roots):
        out = tmp_path / f"out-{k}"
        for split in ("train", "val"):  # val is labelled by the table neurodata ships
            run("es-imagenet", "--imagenet-root", where, "--split", split, "--format", fmt,
                "--min-events", "0", "--out", out, "--quiet")
        folders.append(out / "es-imagenet" / get("es-imagenet").version)
    assert_same(*folders, *roots)
    source = json.loads((folders[0] / "manifest.json").read_text())["splits"]["val"]["config"][
        "source"]
    assert source["read_from"] == layout and source["labels"] == "ilsvrc2012_val_labels.txt"
    where = json.loads((folders[0] / "run.json").read_text())["splits"]["val"]["inputs"]
    assert where["source"]["root"] == str(roots[0].absolute())
    assert where["source"]["labels"].startswith(PACKAGE)


def test_the_run_record_is_outside_the_checksums_and_kept_by_a_merge(run, tmp_path):
    tree = make_tree(tmp_path / "a", {"train": 1, "test": 1})
    other = another_machine(tree, tmp_path / "b")
    run("2nmnist", "--nmnist-root", tree, "--split", "train", "--out", tmp_path / "o", "--quiet")
    run("2nmnist", "--nmnist-root", other, "--split", "test", "--out", tmp_path / "o", "--quiet")
    folder = tmp_path / "o" / "2nmnist" / get("2nmnist").version
    record = json.loads((folder / "run.json").read_text())
    assert record["splits"]["train"]["inputs"]["sources"]["train"] == str(tree / "Train")
    assert record["splits"]["test"]["inputs"]["sources"]["test"] == str(other / "Test")
    assert record["splits"]["test"]["folder"] == str(folder)
    assert "run.json" not in (folder / "SHA256SUMS").read_text()
    assert "run.json" not in (folder / "manifest.json").read_text()
    assert run("verify", folder).output.startswith("OK: 2 data files and manifest.json")
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "-c", "--strict", "--quiet", "SHA256SUMS"], cwd=folder,
                       check=True)


@pytest.mark.parametrize("name", ["run.json", "manifest.json"])
def test_a_data_file_may_not_take_the_name_of_a_folder_record(tmp_path, monkeypatch, name):
    from toy_dataset import Toy

    from neurodata_cli import datasets, materialise
    from neurodata_cli.datasets.base import SplitFile
    from neurodata_cli.errors import RunError

    monkeypatch.setitem(datasets.BUILTIN, "toy", "toy_dataset:Toy")
    datasets._specs.cache_clear()
    datasets.get.cache_clear()
    monkeypatch.setattr(Toy, "split_files", lambda self, cfg, split, stats: [
        SplitFile(name, "mine\n")])
    try:
        with pytest.raises(RunError, match=f"toy writes a data file named {name}"):
            materialise("toy", out=tmp_path, workers=1)
    finally:
        datasets._specs.cache_clear()
        datasets.get.cache_clear()
    assert not (tmp_path / "toy" / "1.0.0").exists()
