"""The top-level ``configs/``: the paper's config of each dataset, and a small one for CI
fixtures (issue 25 item 6). The paper's are what ``neurodata config NAME`` prints; each fixture
config builds, over synthetic inputs where the dataset has inputs."""

from __future__ import annotations

import pytest
from helpers import REPO
from imagenet_synth import ilsvrc
from nmnist_synth import make_tree

from neurodata_cli import open_dataset
from neurodata_cli.datasets import get

CONFIGS = REPO / "configs"
DATASETS = ("yinyang", "2nmnist", "es-imagenet")


def test_configs_holds_a_paper_and_a_fixture_config_per_dataset():
    assert sorted(p.name for p in CONFIGS.iterdir()) == sorted(
        f"{name}{kind}.yaml" for name in DATASETS for kind in ("", "-fixture"))


@pytest.mark.parametrize("name", DATASETS)
def test_the_paper_config_is_what_neurodata_config_prints(run, name):
    lines = (CONFIGS / f"{name}.yaml").read_text(encoding="utf-8").splitlines(keepends=True)
    body = "".join(line for line in lines if not line.startswith("#"))
    assert body == run("config", name).output, (
        f"configs/{name}.yaml differs from the defaults: keep its comment lines, then paste "
        f"the output of: neurodata config {name}")


def test_the_yinyang_configs_build(run, tmp_path):
    run("yinyang", "--config", CONFIGS / "yinyang.yaml", "--out", tmp_path / "paper", "--quiet")
    run("yinyang", "--out", tmp_path / "default", "--quiet")
    folder = f"yinyang/{get('yinyang').version}"
    assert ((tmp_path / "paper" / folder / "SHA256SUMS").read_bytes()
            == (tmp_path / "default" / folder / "SHA256SUMS").read_bytes())
    run("yinyang", "--config", CONFIGS / "yinyang-fixture.yaml", "--out", tmp_path / "ci",
        "--quiet")
    data = open_dataset(tmp_path / "ci" / folder)
    assert {s: len(data[s]) for s in data.splits} == {"train": 500, "test": 100}
    assert run("verify", tmp_path / "ci" / folder).output.startswith("OK")


def test_the_2nmnist_fixture_config_builds_from_a_root_given_by_flag(run, tmp_path):
    root = make_tree(tmp_path / "nmnist", {"train": 2, "test": 1})
    run("2nmnist", "--config", CONFIGS / "2nmnist-fixture.yaml", "--nmnist-root", root,
        "--out", tmp_path / "ci", "--quiet")
    data = open_dataset(tmp_path / "ci" / "2nmnist" / get("2nmnist").version)
    assert data.manifest["config"]["max_digit"] == 1
    digits = {int(d) for s in data.splits for i in range(len(data[s]))
              for d in data[s].info(i)["label"].nonzero()[0]}
    assert digits <= {0, 1} and len(data["train"]) > 0


def test_the_es_imagenet_fixture_config_builds_from_a_root_given_by_flag(run, tmp_path):
    root = ilsvrc(tmp_path / "imagenet")
    for split in ("train", "val"):
        run("es-imagenet", "--config", CONFIGS / "es-imagenet-fixture.yaml", "--imagenet-root",
            root, "--split", split, "--out", tmp_path / "ci", "--quiet")
    data = open_dataset(tmp_path / "ci" / "es-imagenet" / get("es-imagenet").version)
    assert data.manifest["splits"]["train"]["config"]["limit"] == 16
    assert data.manifest["splits"]["train"]["stats"]["images"] == 4
