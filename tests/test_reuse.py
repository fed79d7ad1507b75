"""The same config into a finished folder reuses it; another config is refused (FolderExists,
in the caller's words); runs of one folder queue on its lock and then reuse what the first made
(issue 25, items 1 and 2)."""

from __future__ import annotations

import fcntl
import io
import os
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from helpers import tree_digest
from imagenet_synth import jpeg_bytes, synthetic
from nmnist_synth import make_tree as nmnist_tree

from neurodata_cli import FolderExists, RunError, materialise

EXE = str(Path(sys.executable).with_name("neurodata"))


def folder(out: Path) -> Path:
    return out / "yinyang" / "1.0.0"


def stamps(path: Path) -> dict[str, int]:
    """Every file's modification time but the lock's (which names its last holder): a run
    that writes nothing leaves them all."""
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in path.rglob("*")
            if p.suffix != ".lock"}


def test_the_same_config_reuses_the_folder_and_writes_nothing(run, tmp_path):
    args = ["yinyang", "--size", "300", "--out", tmp_path]
    run(*args)
    before, times = tree_digest(folder(tmp_path)), stamps(tmp_path)
    again = run(*args)
    assert again.output.count("\n") == 1 and f"reused {folder(tmp_path)}" in again.output
    assert "sizes checked" in again.output
    assert "every file hashed" in run(*args, "--verify").output
    assert tree_digest(folder(tmp_path)) == before and stamps(tmp_path) == times
    summary = materialise("yinyang", out=tmp_path, size=300)
    assert summary.reused and summary.folder == folder(tmp_path) and summary.files == 1
    assert summary.splits["train"]["records"] == 300 and stamps(tmp_path) == times


def test_another_config_is_refused_in_the_callers_words(run, tmp_path):
    materialise("yinyang", out=tmp_path, size=300)
    before = tree_digest(folder(tmp_path))
    with pytest.raises(FolderExists) as caught:
        materialise("yinyang", out=tmp_path, size=301)
    message = str(caught.value)
    assert isinstance(caught.value, RunError) and "overwrite=True" in message
    assert "--" not in message and "different config" in message
    cli = run("yinyang", "--size", "301", "--out", tmp_path, code=1)
    assert "--overwrite" in cli.output and "overwrite=True" not in cli.output
    assert tree_digest(folder(tmp_path)) == before
    assert not materialise("yinyang", out=tmp_path, size=301, overwrite=True).reused


def test_a_damaged_folder_is_refused_naming_the_file_and_never_rebuilt(run, tmp_path):
    args = ["yinyang", "--size", "300", "--out", tmp_path]
    run(*args)
    shard = folder(tmp_path) / "yinyang-train-00000-of-00001.h5"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1  # the same size: only hashing sees it
    shard.write_bytes(data)
    assert "reused" in run(*args).output
    out = run(*args, "--verify", code=1).output
    assert f"{shard} is altered" in out and "--overwrite" in out
    shard.write_bytes(data[:100])
    out = run(*args, code=1).output
    assert f"{shard} has 100 bytes where its manifest lists {len(data)}" in out
    shard.unlink()
    assert f"{shard} is missing" in run(*args, code=1).output
    assert not shard.exists()  # refused: nothing rebuilt over it
    run(*args, "--overwrite")
    assert "reused" in run(*args, "--verify").output


def test_other_inputs_are_refused_and_a_copy_of_the_same_inputs_is_reused(run, tmp_path):
    tree = nmnist_tree(tmp_path / "nm", {"train": 2, "test": 1})
    args = ["2nmnist", "--nmnist-root", tree, "--out", tmp_path / "o", "--split", "train"]
    run(*args)
    for path in tree.rglob("*.bin"):  # touched (a fresh checkout, a restored cache): the same
        os.utime(path, (1, 1))
    assert "reused" in run(*args).output
    first = sorted((tree / "Train" / "3").glob("*.bin"))[0]
    first.write_bytes(first.read_bytes()[:-5])  # one event fewer: other inputs
    out = run(*args, code=1).output
    assert "other inputs" in out and "train" in out and "--overwrite" in out


def test_a_folder_without_its_run_record_is_not_reused_on_trust(run, tmp_path):
    """run.json holds what the inputs were: without it, a folder of the same config from other
    inputs would pass for this run's. It is refused, naming the record, until --overwrite."""
    one = nmnist_tree(tmp_path / "a", {"train": 2, "test": 1}, seed=1)
    other = nmnist_tree(tmp_path / "b", {"train": 2, "test": 1}, seed=2)
    out = tmp_path / "o"
    run("2nmnist", "--nmnist-root", one, "--out", out, "--workers", "1")
    (out / "2nmnist" / "2.1.0" / "run.json").unlink()
    said = run("2nmnist", "--nmnist-root", other, "--out", out, "--workers", "1", code=1).output
    assert "inputs it keeps no record of" in said and "run.json" in said
    assert "reused" not in said
    run("2nmnist", "--nmnist-root", other, "--out", out, "--workers", "1", "--overwrite")
    assert "reused" in run("2nmnist", "--nmnist-root", other, "--out", out).output


def test_a_split_added_to_a_folder_is_still_a_merge_and_then_all_splits_are_reused(run,
                                                                                   tmp_path):
    tree = nmnist_tree(tmp_path / "nm", {"train": 2, "test": 1})
    args = ["2nmnist", "--nmnist-root", tree, "--out", tmp_path / "o"]
    run(*args, "--split", "train")
    assert "reused" not in run(*args, "--split", "test").output
    assert "reused" in run(*args).output  # train and test, both there with this config
    out = run(*args, "--seed", "7", "--split", "test", code=1).output
    assert "already holds the test split, made with a different config (seed)" in out


def hold(lock: Path):
    """Take a folder's lock as a run does, saying who holds it."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock, "a+")
    fcntl.flock(handle, fcntl.LOCK_EX)
    handle.write(f"{os.getpid()} {socket.gethostname()}\n")
    handle.flush()
    return handle


def wait_for(paths: list[Path], text: str, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + 60
    while not all(text in p.read_text() for p in paths):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [
            p.read_text() for p in paths]
        time.sleep(0.05)


def test_four_runs_at_once_queue_one_builds_the_others_reuse(tmp_path):
    # The test holds the lock first, so all four are sure to meet on it.
    held = hold(tmp_path / "o" / "yinyang" / ".1.0.0.lock")
    cmd = [EXE, "yinyang", "--size", "2000", "--out", str(tmp_path / "o"), "--workers", "1"]
    logs = [(tmp_path / f"out{k}", tmp_path / f"err{k}") for k in range(4)]
    procs = [subprocess.Popen(cmd, stdout=open(out, "w"), stderr=open(err, "w"))
             for out, err in logs]
    wait_for([err for _, err in logs], f"waiting for the run (pid {os.getpid()} on "
             f"{socket.gethostname()}) that holds", procs)
    held.close()
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    lines = [out.read_text() for out, _ in logs]
    assert sum("reused" in line for line in lines) == 3
    assert sum("train 2000 samples" in line for line in lines) == 1  # built once
    sums = folder(tmp_path / "o") / "SHA256SUMS"
    assert subprocess.run(["sha256sum", "-c", "--strict", "--quiet", sums.name],
                          cwd=sums.parent).returncode == 0


XDIST_TESTS = '''
import hashlib
import os
from pathlib import Path

import pytest


@pytest.mark.parametrize("k", range(4))
def test_fixture(neurodata_materialise, k):
    folder = neurodata_materialise("yinyang", size=500, seed=1, workers=1)
    sums = hashlib.sha256((folder / "SHA256SUMS").read_bytes()).hexdigest()
    seen = Path(os.environ["SEEN"]) / f"{os.environ.get('PYTEST_XDIST_WORKER')}-{k}"
    seen.write_text(f"{(folder / 'manifest.json').stat().st_ino} {sums}")
'''


def test_pytest_xdist_workers_share_one_folder_built_once(tmp_path):
    (tmp_path / "test_fixtures.py").write_text(XDIST_TESTS)
    seen = tmp_path / "seen"
    seen.mkdir()
    env = {**os.environ, "SEEN": str(seen), "NEURODATA_CACHE": str(tmp_path / "cache")}
    # (hypothesis, which the dev set-up installs, costs each worker a second to import)
    done = subprocess.run([sys.executable, "-m", "pytest", "-n", "4", "-q", "-p", "xdist",
                           "-p", "no:hypothesispytest", "test_fixtures.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
    records = {p.read_text() for p in seen.iterdir()}
    workers = {p.name.split("-")[0] for p in seen.iterdir()}
    # One manifest (a second build would have replaced it) with one SHA256SUMS, seen by all.
    assert len(records) == 1 and len(workers) > 1, (records, workers)
    assert [p.name for p in (tmp_path / "cache").iterdir()][0].startswith("yinyang-")


def tar_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_config_known_only_after_indexing_an_archive_is_reused_too(run, tmp_path):
    # ES-ImageNet labels the official train tar's classes when it indexes it (in the stage):
    # the comparison waits for that, and the stage goes again.
    wnids = ("n01440764", "n01443537")
    inner = {w: tar_of({f"{w}_{k}.JPEG": jpeg_bytes(synthetic(k)) for k in range(2)})
             for w in wnids}
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ILSVRC2012_img_train.tar").write_bytes(
        tar_of({f"{w}.tar": data for w, data in inner.items()}))
    args = ["es-imagenet", "--imagenet-root", tmp_path / "in", "--out", tmp_path / "o",
            "--min-events", "10"]
    run(*args)
    base = tmp_path / "o" / "es-imagenet"
    before = sorted(p.name for p in base.iterdir())
    assert "reused" in run(*args).output
    assert sorted(p.name for p in base.iterdir()) == before  # no stage left
    assert "threshold" in run(*args, "--threshold", "0.3", code=1).output
    assert sorted(p.name for p in base.iterdir()) == before


CONFIG_FIXTURE_TEST = '''
import json
import os


def test_fixture(neurodata_materialise):
    folder = neurodata_materialise("yinyang", config="c.yaml", workers=1)
    manifest = json.loads((folder / "manifest.json").read_text())
    seed = manifest["splits"]["train"]["config"]["splits"]["train"]["seed"]
    assert seed == int(os.environ["SEED"])
'''


def test_the_fixture_gives_an_edited_config_file_its_own_folder(tmp_path):
    """The fixture names the folder by the config file's contents, not its path: editing the
    file made the next session fail with FolderExists (docs/ci.md: each config its folder)."""
    (tmp_path / "test_config_fixture.py").write_text(CONFIG_FIXTURE_TEST)
    env = {**os.environ, "NEURODATA_CACHE": str(tmp_path / "cache")}
    for seed in (1, 2):
        (tmp_path / "c.yaml").write_text(f"splits:\n  train: {{size: 50, seed: {seed}}}\n")
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "-p", "no:hypothesispytest", "test_config_fixture.py"],
                              cwd=tmp_path, env={**env, "SEED": str(seed)},
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
