"""The engine with a toy dataset: commits cut short, staged runs of another config, locks."""

from __future__ import annotations

import json
import os

import pytest
from helpers import tree_digest
from toy_dataset import Toy

from neurodata_cli import datasets, engine, materialise, open_dataset
from neurodata_cli.errors import RunError
from neurodata_cli.manifest import verify


@pytest.fixture(autouse=True)
def toy(monkeypatch):
    monkeypatch.setitem(datasets.BUILTIN, "toy", "toy_dataset:Toy")
    datasets._specs.cache_clear()
    datasets.get.cache_clear()
    yield
    datasets._specs.cache_clear()
    datasets.get.cache_clear()


def fail_once(monkeypatch, when):
    """Make os.replace fail the first time ``when(src, dst)`` holds."""
    real, state = os.replace, {"done": False}

    def replace(src, dst):
        if not state["done"] and when(str(src), str(dst)):
            state["done"] = True
            raise OSError(28, "No space left on device", str(dst))
        return real(src, dst)

    monkeypatch.setattr(engine.os, "replace", replace)


@pytest.mark.parametrize("where", ["stage to folder", "folder to trash", "manifest"])
def test_a_commit_cut_short_is_finished_by_the_rerun(tmp_path, monkeypatch, where):
    clean = materialise("toy", out=tmp_path / "clean", workers=1).folder
    materialise("toy", out=tmp_path / "o", workers=1)  # a finished train split
    when = {
        "stage to folder": lambda s, d: s.endswith(".partial") and d.endswith("1.0.0"),
        "folder to trash": lambda s, d: d.endswith(".replaced"),
        "manifest": lambda s, d: d.endswith("manifest.json") and ".partial" in d,
    }[where]
    fail_once(monkeypatch, when)
    monkeypatch.setattr(engine, "_exchange", lambda a, b: False)  # the two renames' way
    with pytest.raises(OSError):
        materialise("toy", out=tmp_path / "o", split="val", workers=1)
    folder = tmp_path / "o" / "toy" / "1.0.0"
    if folder.exists():  # the finished train split, exactly as it was, or the merged whole
        assert not [p for p in folder.iterdir() if p.name.startswith(".")]
        assert verify(folder).ok
    monkeypatch.undo()
    datasets.BUILTIN["toy"] = "toy_dataset:Toy"
    materialise("toy", out=tmp_path / "o", split="val", workers=1)
    materialise("toy", out=tmp_path / "clean", split="val", workers=1)
    assert tree_digest(folder) == tree_digest(clean)
    assert sorted(open_dataset(folder).splits) == ["train", "val"]


def test_a_first_commit_cut_short_is_finished_by_the_rerun(tmp_path, monkeypatch):
    fail_once(monkeypatch, lambda s, d: s.endswith(".partial") and d.endswith("1.0.0"))
    with pytest.raises(OSError):
        materialise("toy", out=tmp_path / "o", workers=1)
    assert not (tmp_path / "o" / "toy" / "1.0.0").exists()
    monkeypatch.undo()
    datasets.BUILTIN["toy"] = "toy_dataset:Toy"
    summary = materialise("toy", out=tmp_path / "o", workers=1)
    clean = materialise("toy", out=tmp_path / "clean", workers=1).folder
    assert tree_digest(summary.folder) == tree_digest(clean)


def test_a_staged_run_of_another_config_is_refused_if_it_finished_a_shard(tmp_path,
                                                                         monkeypatch):
    real = Toy.build

    def dies_at_shard_1(self, cfg, shard):
        if shard.index == 1:
            raise KeyboardInterrupt
        return real(self, cfg, shard)

    monkeypatch.setattr(Toy, "build", dies_at_shard_1)
    with pytest.raises(KeyboardInterrupt):
        materialise("toy", out=tmp_path, workers=1)
    monkeypatch.setattr(Toy, "build", real)
    with pytest.raises(RunError, match="different config is staged"):
        materialise("toy", out=tmp_path, offset=5, workers=1)
    summary = materialise("toy", out=tmp_path, offset=5, workers=1, overwrite=True)
    assert summary.resumed_shards == 0
    assert open_dataset(summary.folder)["train"][3][0].tolist() == [3, 5]


def test_a_staged_run_with_no_finished_shard_is_replaced_without_asking(tmp_path, monkeypatch):
    def dies(self, cfg, shard):
        raise KeyboardInterrupt

    monkeypatch.setattr(Toy, "build", dies)
    with pytest.raises(KeyboardInterrupt):
        materialise("toy", out=tmp_path, workers=1)
    monkeypatch.undo()
    datasets.BUILTIN["toy"] = "toy_dataset:Toy"
    summary = materialise("toy", out=tmp_path, offset=5, workers=1)
    assert open_dataset(summary.folder)["train"][0][0].tolist() == [0, 5]


def test_a_second_run_into_a_locked_folder_is_refused(tmp_path):
    import fcntl

    base = tmp_path / "toy"
    base.mkdir()
    with open(base / ".1.0.0.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write(f"{os.getpid()} somehost\n")  # as a run says who holds it
        held.flush()
        # wait=0: no waiting beyond the moment a killed run's workers take to die.
        with pytest.raises(RunError, match=rf"another neurodata run \(pid {os.getpid()} on "
                                           r"somehost\) is writing .* within 0 s \(wait=\)"):
            materialise("toy", out=tmp_path, workers=1, wait=0)
    assert not (base / "1.0.0").exists()
    materialise("toy", out=tmp_path, workers=1)


def test_reserved_and_unsafe_split_names_are_refused(tmp_path):
    from neurodata_cli.errors import ConfigError

    for name in ("all", "../x", ""):
        with pytest.raises(ConfigError):
            materialise("toy", out=tmp_path, split=name, workers=1)
    assert not any((tmp_path / "toy").glob("*1.0.0*")) if (tmp_path / "toy").exists() else True


def test_records_count_samples_stored_everywhere(tmp_path):
    summary = materialise("toy", out=tmp_path, size=5, workers=1)
    m = json.loads((summary.folder / "manifest.json").read_text())
    assert m["splits"]["train"]["records"] == 5 == m["splits"]["train"]["stats"]["samples"]
    assert sorted(f["records"] for f in m["files"] if "features" in f["path"]) == [1, 2, 2]
    assert len(open_dataset(summary.folder)["train"]) == 5
