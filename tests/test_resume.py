"""A resume is only a resume of the same run: a staged run whose inputs changed starts again,
saying what changed, and ends with the folder a clean run over the new inputs gives."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from helpers import power_cut_at_shard, tree_digest
from imagenet_synth import jpeg_bytes, synthetic
from imagenet_synth import make_tree as make_imagenet
from nmnist_synth import make_tree, recording, zip_tree

from neurodata_cli.datasets import get

# ---- 2NMNIST: a bad recording stops the run, the user removes or replaces it, reruns ----------


def planned(split_dir: Path, seed: int = 42) -> list[Path]:
    """The recordings in the order the procedure places them in shards: sorted, shuffled."""
    keys = sorted(f"{p.parent.name}/{p.stem}" for p in split_dir.glob("*/*.bin"))
    np.random.RandomState(seed).shuffle(keys)
    return [split_dir / f"{key}.bin" for key in keys]


def nmnist_folder(out: Path) -> Path:
    return out / "2nmnist" / get("2nmnist").version


@pytest.mark.parametrize("layout", ["folders", "zips"])
@pytest.mark.parametrize("fix", ["removed", "changed"])
def test_2nmnist_rerun_after_the_bad_recording_is_fixed_equals_a_clean_run(run, tmp_path,
                                                                          layout, fix):
    tree = make_tree(tmp_path / "tree", {"train": 1, "test": 4}, seed=3)
    first, bad = planned(tree / "Test")[0], planned(tree / "Test")[-1]  # first and last shard
    good = bad.read_bytes()
    bad.write_bytes(good[:-1])  # not a whole number of events: it stops the run
    root = zip_tree(tree, tmp_path / "zips") if layout == "zips" else tree
    args = ["2nmnist", "--nmnist-root", root, "--split", "test", "--shard-size", "4",
            "--workers", "1"]
    result = run(*args, "--out", tmp_path / "cut", code=1)
    assert "5-byte events" in result.output
    shards = list((tmp_path / "cut").glob("*/.*.partial/.neurodata/shards/*.json"))
    assert len(shards) >= 3  # the shards before the bad one are finished

    if fix == "removed":
        bad.unlink()
        changed = [bad]
    else:  # the tree extracted again: a good copy of the bad one, and a recording of a
        # finished shard that differs at the same size (the zip's CRC, or the file's time,
        # tells them apart)
        bad.write_bytes(good)
        events = len(first.read_bytes()) // 5
        first.write_bytes(recording(np.random.RandomState(5), events))
        changed = sorted([bad, first])
    if layout == "zips":
        shutil.rmtree(root)
        zip_tree(tree, root)
    result = run(*args, "--out", tmp_path / "cut")
    run(*args, "--out", tmp_path / "clean")
    assert tree_digest(nmnist_folder(tmp_path / "cut")) == tree_digest(
        nmnist_folder(tmp_path / "clean"))
    names = [("Test.zip:" if layout == "zips" else "") + p.relative_to(tree).as_posix()
             for p in changed]
    assert (f"inputs changed since the interrupted run ({len(names)} {fix}: "
            f"{', '.join(names)}); starting again") in result.stderr
    assert "resumed" not in result.output


def test_2nmnist_resumes_when_nothing_changed_and_stages_of_older_runs_start_again(run,
                                                                                   tmp_path):
    tree = make_tree(tmp_path / "tree", {"train": 1, "test": 4}, seed=3)
    bad = planned(tree / "Test")[-1]
    good = bad.read_bytes()
    bad.write_bytes(good[:-1])
    args = ["2nmnist", "--nmnist-root", tree, "--split", "test", "--shard-size", "4",
            "--workers", "1", "--out", tmp_path / "cut"]
    run(*args, code=1)
    bad.write_bytes(good[:-2])  # the same name, another size: still bad, so it stops again
    result = run(*args, code=1)
    assert f"(1 changed: {bad.relative_to(tree).as_posix()})" in result.stderr
    bad.write_bytes(good[:-1])
    run(*args, code=1)
    result = run(*args, code=1)  # the same inputs: this one resumes, and says nothing of them
    assert "inputs" not in result.stderr and "5-byte events" in result.stderr
    listing = next((tmp_path / "cut").glob("*/.*.partial/.neurodata/inputs.json.gz"))
    listing.unlink()  # as a stage left by a neurodata that kept no listing
    bad.write_bytes(good)
    result = run(*args)
    assert "the interrupted run recorded no input listing; starting again" in result.stderr
    run(*args[:-2], "--out", tmp_path / "clean")
    assert tree_digest(nmnist_folder(tmp_path / "cut")) == tree_digest(
        nmnist_folder(tmp_path / "clean"))


# ---- ES-ImageNet: a run cut short, one image deleted, the same command again -----------------

VAL = [f"ILSVRC2012_val_{k:08d}.JPEG" for k in range(1, 11)]  # in the shipped val labels
TRAIN = [f"n{1000 + k % 2:08d}/n{1000 + k % 2:08d}_{k:04d}.JPEG" for k in range(10)]


def tar_of(path: Path, members: dict[str, bytes]) -> bytes:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path.read_bytes()


def official(root: Path, split: str, images: dict[str, bytes]) -> None:
    """``ILSVRC2012_img_val.tar`` (the JPEGs, flat), or ``ILSVRC2012_img_train.tar`` (one
    ``<wnid>.tar`` of JPEGs per class)."""
    if split == "train":
        classes: dict[str, dict[str, bytes]] = {}
        for rel, data in images.items():
            wnid, name = rel.split("/")
            classes.setdefault(wnid, {})[name] = data
        images = {f"{wnid}.tar": tar_of(root / f"{wnid}.tar", members)
                  for wnid, members in classes.items()}
    tar_of(root / f"ILSVRC2012_img_{split}.tar", images)
    for inner in root.glob("n*.tar"):
        inner.unlink()


def folders(root: Path, split: str, images: dict[str, bytes]) -> None:
    for rel, data in images.items():
        (root / split / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / split / rel).write_bytes(data)


@pytest.mark.parametrize(("layout", "split"), [("folders", "val"), ("official tar", "val"),
                                               ("official tar", "train")])
def test_es_imagenet_rerun_after_an_image_is_deleted_equals_a_clean_run(run, tmp_path,
                                                                       monkeypatch, layout,
                                                                       split):
    from neurodata_cli.datasets.es_imagenet import ESImageNet

    names = VAL if split == "val" else TRAIN
    images = {name: jpeg_bytes(synthetic(k, (96, 72))) for k, name in enumerate(names)}
    make = official if layout == "official tar" else folders
    root = tmp_path / "in"
    root.mkdir()
    make(root, split, images)
    args = ["es-imagenet", "--imagenet-root", root, "--split", split, "--shard-size", "2",
            "--min-events", "10", "--workers", "1"]
    with power_cut_at_shard(monkeypatch, ESImageNet, 3), pytest.raises(RuntimeError):
        run(*args, "--out", tmp_path / "cut")

    gone = sorted(names)[1]  # an image of a finished shard
    del images[gone]
    if layout == "folders":  # deleted in place: the other files keep their times
        (root / split / gone).unlink()
    else:
        shutil.rmtree(root)
        root.mkdir()
        make(root, split, images)
    result = run(*args, "--out", tmp_path / "cut")
    run(*args, "--out", tmp_path / "clean")
    folder = Path("es-imagenet") / get("es-imagenet").version
    assert tree_digest(tmp_path / "cut" / folder) == tree_digest(tmp_path / "clean" / folder)
    assert "inputs changed since the interrupted run (" in result.stderr
    assert f"1 removed: {split}/{gone}" in result.stderr and "starting again" in result.stderr
    assert "resumed" not in result.output


def test_a_class_folder_deleted_after_a_cut_is_refused_naming_what_differs(run, tmp_path,
                                                                          monkeypatch):
    from neurodata_cli.datasets.es_imagenet import ESImageNet

    make_imagenet(tmp_path / "in", classes=3, per_class=2, photos=False)
    args = ["es-imagenet", "--imagenet-root", tmp_path / "in", "--shard-size", "1",
            "--min-events", "10", "--workers", "1", "--out", tmp_path / "cut"]
    real_build = ESImageNet.build

    def cut_at_the_last_shard(self, cfg, shard):
        if shard.index == shard.count - 1:
            raise RuntimeError("power cut")
        return real_build(self, cfg, shard)

    monkeypatch.setattr(ESImageNet, "build", cut_at_the_last_shard)
    with pytest.raises(RuntimeError):
        run(*args)
    monkeypatch.setattr(ESImageNet, "build", real_build)
    shutil.rmtree(sorted((tmp_path / "in" / "train").iterdir())[-1])  # its labels change
    result = run(*args, code=1)
    assert "different config is staged" in result.stderr
    assert "(it differs in source); rerun its command" in result.stderr
    run(*args, "--overwrite")
    run(*args[:-2], "--out", tmp_path / "clean")
    folder = Path("es-imagenet") / get("es-imagenet").version
    assert tree_digest(tmp_path / "cut" / folder) == tree_digest(tmp_path / "clean" / folder)


def test_an_input_changed_while_the_run_builds_is_never_committed(run, tmp_path, monkeypatch):
    from neurodata_cli.datasets.two_nmnist import TwoNMNIST

    tree = make_tree(tmp_path / "tree", {"train": 1, "test": 4}, seed=3)
    first = planned(tree / "Test")[0]  # read by the first shard
    args = ["2nmnist", "--nmnist-root", tree, "--split", "test", "--shard-size", "4",
            "--workers", "1", "--out", tmp_path / "out"]
    real_build, calls = TwoNMNIST.build, []

    def rewrite_after_the_first_shard(self, cfg, shard):
        calls.append(shard.key)
        if len(calls) == 2:  # the first shard read it already: the folder would mix versions
            first.write_bytes(recording(np.random.RandomState(9), len(first.read_bytes()) // 5))
        return real_build(self, cfg, shard)

    monkeypatch.setattr(TwoNMNIST, "build", rewrite_after_the_first_shard)
    result = run(*args, code=1)
    name = first.relative_to(tree).as_posix()
    assert f"inputs changed during the run (1 changed: {name}); nothing was committed" in (
        result.output)
    assert not nmnist_folder(tmp_path / "out").exists()
    monkeypatch.setattr(TwoNMNIST, "build", real_build)
    result = run(*args)  # starts again over the inputs as they are now
    assert f"1 changed: {name}" in result.stderr
    run(*args[:-1], tmp_path / "clean")
    assert tree_digest(nmnist_folder(tmp_path / "out")) == tree_digest(
        nmnist_folder(tmp_path / "clean"))
