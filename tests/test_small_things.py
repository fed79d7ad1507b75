"""Small things a new user hit (issue 25, item 8): each is one clear line with the right exit
code (usage and config 2, runtime 1), never a traceback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import power_cut_at_shard, tree_digest
from imagenet_synth import make_tree as imagenet_tree
from nmnist_synth import make_tree

from neurodata_cli import datasets
from neurodata_cli.api import materialise
from neurodata_cli.datasets.base import Block, Config, Dataset, Shard, option
from neurodata_cli.errors import ConfigError
from neurodata_cli.formats.hdf5 import HDF5


def one_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_preview_of_a_plugin_without_one_is_one_line(run, tmp_path):
    pytest.importorskip("neurodata_ramp")
    folder = materialise("ramp", tmp_path, size=3).folder
    line = one_line(run("preview", folder, "-o", tmp_path / "p.png", code=2))
    assert line == ("Error: ramp has no preview: its dataset class (neurodata_ramp) defines no "
                    "preview method")
    assert not (tmp_path / "p.png").exists()


class TupleFormats(Dataset[Config]):
    """A plugin that lists its writers in a tuple."""

    name = "tupled"
    version = "1.0.0"
    formats = (HDF5,)  # type: ignore[assignment]

    def plan(self, cfg):
        return [Shard("train", 0, 1, 1)]

    def build(self, cfg, shard):
        yield Block({"label": np.arange(1)})


@pytest.fixture
def register(monkeypatch):
    """``register(name, "module:Class")`` adds a dataset for one test, as a plugin would."""

    def add(name: str, spec: str) -> None:
        monkeypatch.setitem(datasets.BUILTIN, name, spec)
        datasets._specs.cache_clear()
        datasets.get.cache_clear()

    yield add
    monkeypatch.undo()
    datasets._specs.cache_clear()
    datasets.get.cache_clear()


def test_formats_given_as_a_tuple_are_refused_at_registration(run, register, tmp_path):
    register("tupled", "test_small_things:TupleFormats")
    said = ("dataset 'tupled' (test_small_things:TupleFormats, from neurodata) declares formats "
            "as tuple, not as a dict of format name to writer (formats = {'hdf5': HDF5})")
    assert one_line(run("tupled", "--out", tmp_path, code=2)) == f"Error: {said}"
    helped = run("--help").output
    assert "object at 0x" not in helped and "unusable" in helped
    assert not any(tmp_path.iterdir())


@dataclass(frozen=True)
class UnboundedConfig(Config):
    offset: int = option(0, "Added to every label (any whole number).")


class Unbounded(TupleFormats):
    """A dataset with an option of no bounds."""

    name = "unbounded"
    formats = {"hdf5": HDF5}
    options = UnboundedConfig


def test_an_unbounded_integer_has_no_none_in_its_help(run, register):
    register("unbounded", "test_small_things:Unbounded")
    helped = " ".join(run("unbounded", "--help").output.split())
    assert "--offset INTEGER Added to every label" in helped and "None" not in helped


def test_es_imagenet_without_a_root_asks_for_it(run, tmp_path):
    assert one_line(run("es-imagenet", "--out", tmp_path, code=2)) == \
        "Error: es-imagenet needs --imagenet-root"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("threshold: 0.2\n")
    assert one_line(run("es-imagenet", "--config", cfg, "--out", tmp_path, code=2)) == \
        f"Error: es-imagenet needs --imagenet-root (or the key 'imagenet_root' in {cfg})"
    assert not any(p.name != "c.yaml" for p in tmp_path.iterdir())


def test_a_command_typo_gets_a_suggestion(run):
    out = run("yinyan", code=2).output
    assert out.splitlines()[-1] == "Error: No such command 'yinyan'. Did you mean 'yinyang'?"


def test_a_key_typo_gets_a_suggestion(run, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("r_smal: 0.1\n")
    assert one_line(run("yinyang", "--config", cfg, "--out", tmp_path, code=2)) == \
        f"Error: unknown key 'r_smal' in {cfg}; did you mean 'r_small'?"
    cfg.write_text("spike_times: {t_erly: 1}\n")
    assert one_line(run("yinyang", "--config", cfg, "--out", tmp_path, code=2)).endswith(
        "did you mean 't_early'?")
    with pytest.raises(ConfigError, match="has no option 'r_smal'; did you mean 'r_small'"):
        materialise("yinyang", tmp_path, r_smal=0.1)


def test_the_summary_info_and_verify_count_data_files_alike(run, tmp_path):
    line = run("yinyang", "--size", "10", "--split", "train", "--out", tmp_path).output
    folder = tmp_path / "yinyang" / "1.0.0"
    assert "; 1 data file, " in line
    assert f"OK: 1 data file and manifest.json match SHA256SUMS in {folder}" in \
        run("verify", folder).output
    assert "  1 data file, " in run("info", folder).output


def test_a_run_of_one_split_counts_its_files_and_the_folders(run, tmp_path):
    tree = make_tree(tmp_path / "tree", {"train": 2, "test": 1}, seed=5)
    out = tmp_path / "o"
    run("2nmnist", "--nmnist-root", tree, "--split", "train", "--out", out, "--quiet")
    line = run("2nmnist", "--nmnist-root", tree, "--split", "test", "--out", out).output
    assert "; 1 data file (2 in the folder), " in line
    assert "OK: 2 data files and manifest.json match" in \
        run("verify", out / "2nmnist" / "2.1.0").output


def test_info_of_a_root_lists_every_dataset_and_version(run, tmp_path):
    run("yinyang", "--size", "10", "--out", tmp_path, "--quiet")
    run("2nmnist", "--nmnist-root", make_tree(tmp_path / "tree", {"train": 1, "test": 1}),
        "--split", "test", "--format", "bin", "--out", tmp_path, "--quiet")
    lines = run("info", tmp_path).output.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"2nmnist 2.1.0  {tmp_path / '2nmnist' / '2.1.0'}  (test ")
    assert lines[1] == (f"yinyang 1.0.0  {tmp_path / 'yinyang' / '1.0.0'}  (train 10 samples; "
                        "1 data file, 8,592 bytes)")
    assert run("info", tmp_path / "yinyang").output == lines[1] + "\n"
    broken = tmp_path / "zz" / "9.0.0"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_text("{}")
    out = run("info", tmp_path, code=1).output.splitlines()
    assert len(out) == 3 and out[2].startswith(f"{broken}: ") and "manifest.json" in out[2]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert one_line(run("info", empty, code=1)) == \
        f"Error: {empty} has no manifest.json: not a finished neurodata folder"


def test_the_demo_plugin_is_seen_by_the_tests_only():
    """`make test` must not leave `ramp` in the user's `neurodata --help`."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "neurodata"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    users = subprocess.run([str(exe), "--help"], env=env, capture_output=True, text=True)
    assert users.returncode == 0 and "yinyang" in users.stdout
    assert "ramp" not in users.stdout
    ours = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert "ramp" in ours.stdout and "ramp" in datasets.names()


def dry_inputs(name: str, root: Path) -> list[str]:
    """Arguments for a small run of ``name`` on inputs made under ``root``."""
    if name == "2nmnist":
        return ["--nmnist-root", make_tree(root / "nm", {"train": 2, "test": 1}),
                "--shard-size", "7"]
    if name == "es-imagenet":
        imagenet_tree(root / "im", classes=2, per_class=2)
        return ["--imagenet-root", root / "im", "--shard-size", "3"]
    return []


@pytest.mark.parametrize("name", ["yinyang", "2nmnist", "es-imagenet", "ramp"])
def test_dry_run_prints_the_plan_and_writes_nothing(run, tmp_path, name):
    if name not in datasets.names():
        pytest.skip("the demo plugin is not installed (make test does)")
    args = dry_inputs(name, tmp_path)
    before = tree_digest(tmp_path)
    out = tmp_path / "out"
    lines = run(name, *args, "--out", out, "--dry-run").output.splitlines()
    version = datasets.get(name).version
    assert lines[0].startswith(f"dry run, nothing written: {name} {version} into "
                               f"{out / name / version} (not there yet)")
    assert any(" shard" in line for line in lines[1:])
    assert any(line.startswith("  estimate: about ") for line in lines)
    assert not out.exists() and tree_digest(tmp_path) == before


def test_dry_run_leaves_an_unfinished_stage_as_it_is(run, tmp_path, monkeypatch):
    from neurodata_cli.datasets.yinyang import YinYang

    cfg = tmp_path / "yy.yaml"
    cfg.write_text("splits:\n  a: {size: 50, seed: 1}\n  b: {size: 50, seed: 2}\n")
    with power_cut_at_shard(monkeypatch, YinYang, 2), pytest.raises(RuntimeError):
        run("yinyang", "--config", cfg, "--out", tmp_path / "o", "--quiet", "--workers", "1")
    before = tree_digest(tmp_path / "o")
    assert any(".partial" in rel for rel in before)
    lines = run("yinyang", "--config", cfg, "--out", tmp_path / "o", "--dry-run").output
    assert "  a: 1 shard, 50 samples\n  b: 1 shard, 50 samples\n" in lines
    assert tree_digest(tmp_path / "o") == before


def test_dry_run_of_a_download_fetches_nothing(run, tmp_path):
    lines = run("2nmnist", "--download", "--cache", tmp_path / "cache", "--split", "test",
                "--out", tmp_path / "o", "--dry-run").output.splitlines()
    assert lines[1].startswith(f"  a run first downloads Test.zip into {tmp_path / 'cache'} "
                               "from https://")
    assert not any(tmp_path.iterdir())
