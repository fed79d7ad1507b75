"""The contract every registered dataset gets from the engine, the plugin ``ramp`` included.

For each dataset: 1 and 2 workers give the same bytes; a run killed with SIGKILL mid-run leaves
no worker behind and resumes to the same bytes, keeping its finished shards; a finished folder
is not overwritten without --overwrite; verify catches a flipped byte, a lost file and an edited
manifest; open_dataset serves exactly the stored samples (ES-ImageNet's inputs include images
that are skipped).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import tree_digest
from imagenet_synth import make_tree as imagenet_tree
from imagenet_synth import odd_files, save, synthetic
from nmnist_synth import make_tree as nmnist_tree

from neurodata_cli import datasets, open_dataset

NAMES = ["yinyang", "2nmnist", "es-imagenet", "ramp"]


def inputs(name: str, root: Path, long: bool) -> list[str]:
    """Arguments for a small run of ``name`` on inputs made under ``root`` (``long``: enough
    shards, of some length, for a run to be killed in the middle)."""
    if name == "yinyang":
        if not long:
            return []
        cfg = root / "yy.yaml"
        cfg.write_text("splits:\n" + "".join(f"  s{k}: {{size: 300000, seed: {k}}}\n"
                                             for k in range(16)))
        return ["--config", str(cfg)]
    if name == "2nmnist":
        tree = nmnist_tree(root / "nmnist", {"train": 80 if long else 6, "test": 3})
        return ["--nmnist-root", str(tree), "--shard-size", "8" if long else "7"]
    if name == "es-imagenet":
        if long:
            for k in range(80):
                save(synthetic(k % 40, (400, 300)), root / "im" / "train" / f"n{k % 2:08d}" /
                     f"img{k:03d}.JPEG")
            return ["--imagenet-root", str(root / "im"), "--shard-size", "1",
                    "--min-events", "10"]
        imagenet_tree(root / "im", classes=2, per_class=3)
        odd_files(root / "im" / "train" / "n09999999")  # skipped: too few events, unreadable
        return ["--imagenet-root", str(root / "im"), "--shard-size", "3"]
    if name == "ramp":
        return ["--size", "6000000" if long else "1000", "--seed", "3",
                "--shard-size", "100000" if long else "300"]
    raise AssertionError(name)


@pytest.fixture(params=NAMES)
def name(request):
    if request.param not in datasets.names():
        pytest.fail(f"{request.param} is not registered: run make test, or pip install "
                    "--no-deps --target .venv/test-plugins ./examples/plugin")
    return request.param


def folder(out: Path, name: str) -> Path:
    return out / name / datasets.get(name).version


def test_one_and_two_workers_give_the_same_bytes(run, tmp_path, name):
    args = inputs(name, tmp_path, long=False)
    for workers in ("1", "2"):
        run(name, *args, "--workers", workers, "--out", tmp_path / workers, "--quiet")
    assert tree_digest(folder(tmp_path / "1", name)) == tree_digest(folder(tmp_path / "2", name))


# A config other than the one inputs() gives (a later flag wins).
OTHER = {"yinyang": ["--size", "50"], "2nmnist": ["--seed", "7"],
         "es-imagenet": ["--threshold", "0.3"], "ramp": ["--seed", "4"]}


def test_a_finished_folder_is_reused_or_not_overwritten_without_the_flag(run, tmp_path, name):
    args = [*inputs(name, tmp_path, long=False), "--out", tmp_path / "o"]
    run(name, *args, "--quiet")
    before = tree_digest(folder(tmp_path / "o", name))
    assert "reused" in run(name, *args).output  # the same config: nothing written
    assert "--overwrite" in run(name, *args, *OTHER[name], code=1).output
    assert tree_digest(folder(tmp_path / "o", name)) == before
    args.append("--quiet")
    run(name, *args, "--overwrite")
    assert tree_digest(folder(tmp_path / "o", name)) == before  # the same config, the same bytes


def test_verify_catches_a_flipped_byte_a_lost_file_and_an_edited_manifest(run, tmp_path, name):
    run(name, *inputs(name, tmp_path, long=False), "--out", tmp_path, "--quiet")
    f = folder(tmp_path, name)
    assert run("verify", f).exit_code == 0
    data = sorted(e["path"] for e in json.loads((f / "manifest.json").read_text())["files"])
    blob = bytearray((f / data[0]).read_bytes())
    blob[len(blob) // 2] ^= 0x01
    (f / data[0]).write_bytes(bytes(blob))
    (f / data[-1]).unlink()
    manifest = json.loads((f / "manifest.json").read_text())
    first = next(iter(manifest["splits"].values()))
    first["records"] += 1
    (f / "manifest.json").write_text(json.dumps(manifest))
    out = run("verify", f, code=1).output
    assert f"altered: {data[0]}" in out and f"missing: {data[-1]}" in out
    assert "altered: manifest.json" in out
    done = subprocess.run(["sha256sum", "-c", "--strict", "--quiet", "SHA256SUMS"], cwd=f,
                          capture_output=True, text=True)
    assert done.returncode != 0 and "manifest.json" in done.stdout


def test_open_dataset_serves_exactly_the_stored_samples(run, tmp_path, name):
    run(name, *inputs(name, tmp_path, long=False), "--out", tmp_path, "--quiet")
    f = folder(tmp_path, name)
    manifest = json.loads((f / "manifest.json").read_text())
    data = open_dataset(f)
    assert data.splits == sorted(manifest["splits"])
    for split, entry in manifest["splits"].items():
        ds = data[split]
        assert len(ds) == entry["records"] == entry["stats"]["samples"]
        together = ds.read_many(reversed(range(len(ds))))[::-1]
        for i in range(len(ds)):
            # ds[i] is (what was stored as the data, the stored label), the same read one by one,
            # from the end, or in a batch (as a DataLoader asks).
            value, label = ds[i]
            record = ds.record(i)
            stored = next(record[k] for k in ("events", "features", "samples") if k in record)
            np.testing.assert_array_equal(value, stored)
            np.testing.assert_array_equal(label, record.get("label", record.get("labels")))
            for again in (ds[i - len(ds)], together[i]):
                np.testing.assert_array_equal(again[0], value)
                np.testing.assert_array_equal(again[1], label)
        with pytest.raises(IndexError):
            ds[len(ds)]
        stats = entry["stats"]
        if "images" in stats:  # inputs, conversions and skips are statistics, not records
            assert stats["skipped"] and stats["images"] == len(ds) + len(stats["skipped"])


def test_every_format_serves_the_declared_features(run, tmp_path, name):
    """In each of the dataset's formats, a stored sample holds the declared columns (a native
    layout may keep fewer), each of its declared dtype and shape, and events exactly when the
    dataset declares them, in the declared order."""
    spec = datasets.get(name)
    declared = spec.features.columns
    for fmt in spec.formats:
        out = tmp_path / fmt
        run(name, *inputs(name, tmp_path / "in", long=False), "--format", fmt, "--out", out,
            "--quiet")
        data = open_dataset(folder(out, name))
        for split in data.splits:
            ds = data[split]
            for i in range(min(len(ds), 5)):
                record = ds.record(i)
                assert ("events" in record) == (spec.features.events is not None)
                columns = {k: v for k, v in record.items() if k != "events"}
                assert set(columns) <= set(declared), (fmt, sorted(columns))
                if fmt in ("hdf5", "npy"):  # the formats that store every column
                    assert {k for k, f in declared.items() if not f.optional} <= set(columns)
                for key, value in columns.items():
                    want = declared[key]
                    if want.dtype == "str":
                        assert isinstance(value, str), (fmt, key, value)
                    else:
                        got = np.asarray(value)
                        assert (got.dtype, got.shape) == (np.dtype(want.dtype), want.shape), \
                            (fmt, key, got.dtype, got.shape)
                        # One type for a scalar in every format: numpy's, never a 0-d array.
                        assert not want.shape == () or isinstance(value, np.generic), \
                            (fmt, key, type(value))
                if "events" in record and spec.features.events.sort_by_t:
                    assert (np.diff(record["events"]["t"].astype(np.int64)) >= 0).all()


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_leaves_no_worker_and_the_rerun_resumes_to_the_same_bytes(run, tmp_path, name):
    args = inputs(name, tmp_path, long=True)
    run(name, *args, "--out", tmp_path / "whole", "--workers", "1", "--quiet")
    exe = Path(sys.executable).with_name("neurodata")
    cut = tmp_path / "cut"
    proc = subprocess.Popen([str(exe), name, *args, "--out", str(cut), "--workers", "2",
                             "--quiet"])
    records = next(iter([]), None)
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while time.monotonic() < deadline and proc.poll() is None:
        workers = children(proc.pid) or workers
        records = list(cut.glob(f"{name}/.*.partial/.neurodata/shards/*.json"))
        if len(records) >= 2:
            break
        time.sleep(0.002)
    assert proc.poll() is None, "the run finished before it could be killed"
    workers = children(proc.pid) or workers
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert workers
    deadline = time.monotonic() + 2
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(alive(w) for w in workers), "a worker outlived the killed command"
    assert not folder(cut, name).exists()
    kept = {}
    for record in cut.glob(f"{name}/.*.partial/.neurodata/shards/*.json"):
        for entry in json.loads(record.read_text())["files"]:
            kept[entry["path"]] = (record.parent.parent.parent / entry["path"]).stat().st_ino
    result = run(name, *args, "--out", cut, "--workers", "2")
    assert "shards resumed" in result.output
    assert tree_digest(folder(cut, name)) == tree_digest(folder(tmp_path / "whole", name))
    for path, inode in kept.items():  # finished shards were kept, not written again
        assert (folder(cut, name) / path).stat().st_ino == inode
