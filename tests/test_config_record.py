"""The config a manifest records is what SHA256SUMS covers: the same config must record the same
bytes, whatever way the options are declared."""

from __future__ import annotations

import json
from pathlib import Path

import imagenet_synth
import nmnist_synth
import pytest

from neurodata_cli import materialise
from neurodata_cli.datasets import get
from neurodata_cli.errors import ConfigError


def _recorded(tmp: Path) -> str:
    """The manifest's config sections (shared and per split), in the manifest's key order."""
    (folder,) = [p for p in (tmp / "out").glob("*/*") if p.is_dir()]
    m = json.loads((folder / "manifest.json").read_text())
    parts = {"config": m["config"], **{s: v["config"] for s, v in m["splits"].items()}}
    return json.dumps(parts, ensure_ascii=False).replace(str(tmp), "TMP")


def _cases(tmp: Path) -> dict[str, list]:
    nmnist_synth.make_tree(tmp / "nm", {"train": 1, "test": 1})
    imagenet_synth.make_tree(tmp / "im", classes=2, per_class=1, photos=False)
    return {
        "yinyang": ["yinyang", "--size", "7", "--seed", "3", "--encoding", "spike-times"],
        "2nmnist": ["2nmnist", "--nmnist-root", tmp / "nm", "--split", "test", "--k", "3"],
        "es-imagenet": ["es-imagenet", "--imagenet-root", tmp / "im", "--min-events", "0",
                        "--format", "npz", "--shard-size", "5"],
        "ramp": ["ramp", "--size", "4", "--seed", "2"],
    }


PINNED = {
    'yinyang': (
        '{"config": {"r_small": 0.1, "r_big": 0.5, "encoding": "spike-times", '
        '"spike_times": {"t_early": 0.15, "t_late": 2.0, "t_bias": 0.9}, '
        '"splits": {"train": {"size": 7, "seed": 3}}, "format": "hdf5"}, '
        '"train": {"r_small": 0.1, "r_big": 0.5, "encoding": "spike-times", '
        '"spike_times": {"t_early": 0.15, "t_late": 2.0, "t_bias": 0.9}, '
        '"splits": {"train": {"size": 7, "seed": 3}}, "format": "hdf5"}}'),
    '2nmnist': (
        '{"config": {"seed": 42, "k": 3, "max_digit": 9, "reverse_polarity": false, '
        '"format": "hdf5", "shard_size": 5000}, "test": {"seed": 42, "k": 3, "max_digit": 9, '
        '"reverse_polarity": false, "format": "hdf5", "shard_size": 5000, '
        '"sources": {"test": "Test"}}}'),
    'es-imagenet': (
        '{"config": {"threshold": 0.18, "min_events": 0, "format": "npz", "trace": [[1, 0], '
        '[0, 2], [2, 1], [1, 0], [0, 1], [2, 2], [1, 0], [1, 1], [2, 1]], "window": [16, '
        '240]}, "train": {"split": "train", "threshold": 0.18, "min_events": 0, '
        '"limit": null, "format": "npz", "shard_size": 5, "source": {"split": "train", '
        '"read_from": "folders", "layout": "folders", '
        '"labels": "sorted folders", "label_map": {"n00001000": 0, "n00001007": 1}}, '
        '"trace": [[1, 0], [0, 2], [2, 1], [1, 0], [0, 1], [2, 2], [1, 0], [1, 1], [2, 1]], '
        '"window": [16, 240]}}'),
    'ramp': (
        '{"config": {"size": 4, "seed": 2, "format": "hdf5", "shard_size": 1000}, '
        '"train": {"size": 4, "seed": 2, "format": "hdf5", "shard_size": 1000}}'),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_the_recorded_config_is_pinned(run, tmp_path, name):
    args = _cases(tmp_path)[name]
    run(*args, "--out", tmp_path / "out", "--quiet")
    assert _recorded(tmp_path) == PINNED[name]


def test_the_python_api_names_the_keyword_it_was_given(tmp_path):
    with pytest.raises(ConfigError, match=r"split='\.\./x'"):
        materialise("yinyang", tmp_path, size=5, split="../x")
    with pytest.raises(ConfigError, match="threshold=2"):
        materialise("es-imagenet", tmp_path, imagenet_root=tmp_path, threshold=2)
    with pytest.raises(ConfigError, match="reverse_polarity='yes'.*true or false"):
        materialise("2nmnist", tmp_path, nmnist_root=tmp_path, reverse_polarity="yes")
    assert not any(tmp_path.iterdir())


def test_plain_python_values_make_the_same_data_as_flags(run, tmp_path):
    nmnist_synth.make_tree(tmp_path / "nm", {"train": 1, "test": 1})
    run("2nmnist", "--nmnist-root", tmp_path / "nm", "--split", "test", "--k", "3",
        "--out", tmp_path / "cli", "--quiet")
    materialise("2nmnist", tmp_path / "api", nmnist_root=tmp_path / "nm", split="test", k=3)
    version = get("2nmnist").version
    sums = [(tmp_path / o / "3nmnist" / version / "SHA256SUMS").read_text()
            for o in ("cli", "api")]
    assert sums[0] == sums[1]


def test_a_config_file_leaves_the_defaults_as_they_were(run, tmp_path):
    before = run("config", "2nmnist").output
    (tmp_path / "c.yaml").write_text("download:\n  train:\n    url: http://127.0.0.1:9/x\n")
    run("2nmnist", "--config", tmp_path / "c.yaml", code=2)  # no --nmnist-root: refused
    assert run("config", "2nmnist").output == before
