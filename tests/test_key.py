"""``neurodata key NAME [flags]`` and ``neurodata_cli.key``: a folder's cache key, known
before building it, the same on every machine for the same config and inputs, and different
whenever the bytes would be (issue 25 item 4)."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest
from helpers import another_machine
from imagenet_synth import ilsvrc
from nmnist_synth import make_tree, zip_tree

import neurodata_cli.cache_key
import neurodata_cli.engine
from neurodata_cli import key
from neurodata_cli.datasets import get
from neurodata_cli.errors import ConfigError


def cli_key(run, *args) -> str:
    return run("key", *args).output.strip()


def test_the_yinyang_key_digests_the_resolved_config(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = cli_key(run, "yinyang", "--size", "50")
    assert re.fullmatch(r"yinyang-1\.0\.0-[0-9a-f]{64}", base)
    # What does not shape the bytes is accepted and changes nothing.
    assert cli_key(run, "yinyang", "--size", "50", "--out", "x", "--workers", "2",
                   "--quiet", "--overwrite") == base
    # The same resolved config, given another way.
    Path("c.yaml").write_text("splits:\n  train: {size: 50, seed: 42}\n")
    assert cli_key(run, "yinyang", "--config", "c.yaml") == base
    assert key("yinyang", size=50) == base
    assert key("yinyang", config="c.yaml") == base
    # What does shape them.
    others = {cli_key(run, "yinyang", "--size", "50", "--seed", "1"),
              cli_key(run, "yinyang", "--size", "50", "--format", "npy"),
              cli_key(run, "yinyang", "--size", "50", "--r-small", "0.12"),
              cli_key(run, "yinyang", "--size", "51")}
    assert len(others) == 4 and base not in others
    monkeypatch.setattr(neurodata_cli.engine, "_numpy", lambda: {"numpy": "0.0"})
    assert key("yinyang", size=50) != base
    monkeypatch.undo()
    monkeypatch.setattr(neurodata_cli.cache_key, "__version__", "0.0.0")
    assert key("yinyang", size=50) != base
    monkeypatch.undo()
    monkeypatch.setattr(get("yinyang"), "version", "9.0.0")
    assert key("yinyang", size=50).startswith("yinyang-9.0.0-")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]  # nothing written


def test_the_key_holds_what_the_manifest_records(run, tmp_path):
    shown = json.loads(run("key", "yinyang", "--size", "50", "--show").output)
    run("yinyang", "--size", "50", "--out", tmp_path, "--quiet")
    manifest = json.loads((tmp_path / "yinyang" / "1.0.0" / "manifest.json").read_text())
    for field in ("dataset", "builder", "version", "release_notes", "tool", "libraries",
                  "config"):
        assert shown[field] == manifest[field], field
    assert shown["inputs"] == []


@pytest.mark.parametrize("layout", ["folders", "zips"])
def test_the_2nmnist_key_is_the_same_on_another_machine(run, tmp_path, layout, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a build would write ./data
    tree = make_tree(tmp_path / "a", {"train": 2, "test": 1})
    roots = [tree, another_machine(tree, tmp_path / "b")]
    if layout == "zips":
        roots = [zip_tree(root, tmp_path / f"zip-{k}") for k, root in enumerate(roots)]
    keys = {cli_key(run, "2nmnist", "--nmnist-root", root) for root in roots}
    assert len(keys) == 1
    assert key("2nmnist", nmnist_root=roots[1]) in keys
    assert not list(tmp_path.glob("**/2nmnist"))  # nothing built
    assert not (tmp_path / "data").exists()


def test_the_2nmnist_key_sees_a_changed_input(run, tmp_path):
    tree = make_tree(tmp_path / "a", {"train": 2, "test": 1})
    before = cli_key(run, "2nmnist", "--nmnist-root", tree)
    first = sorted((tree / "Test").rglob("*.bin"))[0]
    first.unlink()
    assert cli_key(run, "2nmnist", "--nmnist-root", tree) != before
    # In a zip, a member rewritten at the same size has another CRC-32.
    zips = zip_tree(tree, tmp_path / "zips")
    before = cli_key(run, "2nmnist", "--nmnist-root", zips)
    with zipfile.ZipFile(zips / "Test.zip") as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    name = sorted(members)[0]
    members[name] = bytes(reversed(members[name]))
    with zipfile.ZipFile(zips / "Test.zip", "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    assert cli_key(run, "2nmnist", "--nmnist-root", zips) != before


def test_the_2nmnist_download_key_fetches_nothing(run, tmp_path):
    cache = tmp_path / "cache"
    base = cli_key(run, "2nmnist", "--download", "--cache", cache)
    assert not cache.exists()
    assert cli_key(run, "2nmnist", "--download", "--cache", tmp_path / "other") == base
    (tmp_path / "c.yaml").write_text(
        "download:\n  test: {url: 'http://127.0.0.1:9/x', md5: "
        f"'{'0' * 32}', file: Test.zip}}\n")
    assert cli_key(run, "2nmnist", "--download", "--cache", cache, "--config",
                   tmp_path / "c.yaml") != base
    assert cli_key(run, "2nmnist", "--download", "--split", "train") != base


@pytest.mark.parametrize("layout", ["folders", "official tars"])
def test_the_es_imagenet_key_is_the_same_on_another_machine(run, tmp_path, layout, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a build would write ./data
    root = ilsvrc(tmp_path / "a", tars=layout == "official tars")
    roots = [root, another_machine(root, tmp_path / "b")]
    for split in ("train", "val"):
        keys = {cli_key(run, "es-imagenet", "--imagenet-root", r, "--split", split)
                for r in roots}
        assert len(keys) == 1, split
    assert key("es-imagenet", imagenet_root=roots[0], split="val") in keys
    other = ilsvrc(tmp_path / "c", tars=layout == "official tars")
    for path in sorted(other.rglob("*")):  # one more byte in the last input
        if path.is_file():
            last = path
    last.write_bytes(last.read_bytes() + b"\0")
    assert cli_key(run, "es-imagenet", "--imagenet-root", other, "--split", "val") not in keys
    assert not list(tmp_path.glob("**/es-imagenet"))  # nothing built, no archive indexed
    assert not (tmp_path / "data").exists()


def test_key_errors_are_those_of_a_run(run, tmp_path):
    assert "--imagenet-root" in run("key", "es-imagenet", code=2).output
    assert "No such command" in run("key", "yinyan", code=2).output
    with pytest.raises(ConfigError, match="no option 'sise'"):
        key("yinyang", sise=5)
