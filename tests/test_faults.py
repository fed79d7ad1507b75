"""Faults and hostile inputs: nothing hangs, nothing leaks, nothing is wrong without a word."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import data_sums, tree_digest
from imagenet_synth import save, synthetic
from nmnist_synth import make_tree as nmnist_tree
from nmnist_synth import recording, zip_tree

from neurodata_cli import open_dataset

EXE = str(Path(sys.executable).with_name("neurodata"))


def es_folder(out: Path) -> Path:
    return out / "es-imagenet" / "2.2.0"


def nm_folder(out: Path) -> Path:
    return out / "2nmnist" / "2.1.0"


def sha256sum_ok(folder: Path) -> bool:
    return subprocess.run(["sha256sum", "-c", "--strict", "--quiet", "SHA256SUMS"], cwd=folder,
                          capture_output=True).returncode == 0


# ---- one writer per output folder ------------------------------------------------------------

@pytest.mark.parametrize("splits", [("train", "test"), ("train", "train")])
def test_two_runs_started_together_never_corrupt_each_other(tmp_path, splits):
    tree = nmnist_tree(tmp_path / "nm", {"train": 12, "test": 6})
    clean = tmp_path / "clean"
    subprocess.run([EXE, "2nmnist", "--nmnist-root", str(tree), "--out", str(clean),
                    "--shard-size", "4", "--quiet"], check=True)
    for attempt in range(4):
        out = tmp_path / f"o{attempt}"
        procs = [subprocess.Popen([EXE, "2nmnist", "--nmnist-root", str(tree), "--split", split,
                                   "--out", str(out), "--shard-size", "4", "--quiet"],
                                  stderr=subprocess.PIPE, text=True) for split in splits]
        results = [(p.wait(), p.stderr.read()) for p in procs]
        for (code, err), split in zip(results, splits, strict=True):
            if code != 0:  # refused, saying why: the other run holds the folder, or is done
                assert code == 1 and ("another neurodata run" in err or "already holds" in err)
                if "another neurodata run" in err:  # run it again, now that the other is done
                    again = subprocess.run([EXE, "2nmnist", "--nmnist-root", str(tree),
                                            "--split", split, "--out", str(out),
                                            "--shard-size", "4", "--quiet"],
                                           capture_output=True, text=True)
                    assert again.returncode == 0 or (
                        splits[0] == splits[1] and "already holds" in again.stderr)
        folder = nm_folder(out)
        assert sorted(json.loads((folder / "manifest.json").read_text())["splits"]) == sorted(
            set(splits))
        want = {line for line in data_sums(nm_folder(clean)).splitlines()
                if any(f"-{s}-" in line for s in splits)}
        assert set(data_sums(folder).splitlines()) == want
        assert sha256sum_ok(folder) and not [p for p in folder.iterdir()
                                             if p.name.startswith(".")]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_no_worker_outlives_a_command_ended_by_a_signal(run, tmp_path, sig):
    # Enough shards (a second or more of work) that the signal comes while they are running.
    for k in range(40):
        save(synthetic(k, (640, 480)), tmp_path / "im" / "train" / f"n{k % 2:08d}" / f"{k}.JPEG")
    for k in range(40, 120):  # the same images again: cheaper to make, as long to convert
        (tmp_path / "im" / "train" / f"n{k % 2:08d}" / f"{k}.JPEG").write_bytes(
            (tmp_path / "im" / "train" / f"n{k % 2:08d}" / f"{k % 40}.JPEG").read_bytes())
    args = ["--imagenet-root", str(tmp_path / "im"), "--shard-size", "1", "--min-events", "10"]
    # As from a terminal: the signal's default action (a nohup'ed parent would ignore SIGHUP).
    proc = subprocess.Popen([EXE, "es-imagenet", *args, "--out", str(tmp_path / "cut"),
                             "--workers", "2", "--quiet"], stdout=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL))
    stage = tmp_path / "cut" / "es-imagenet"
    workers: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(stage.glob(".*/.neurodata/shards/*"))) < 2:
        workers = [int(c) for t in Path(f"/proc/{proc.pid}/task").iterdir()
                   for c in (t / "children").read_text().split()] or workers
        time.sleep(0.002)
    assert proc.poll() is None and workers
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=5)  # stdout closes: no worker holds it open
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.01)
    assert not any(Path(f"/proc/{w}").exists() for w in workers)
    result = run("es-imagenet", *args, "--out", tmp_path / "cut", "--workers", "2")
    assert "shards resumed" in result.output
    run("es-imagenet", *args, "--out", tmp_path / "whole", "--workers", "1", "--quiet")
    assert tree_digest(es_folder(tmp_path / "cut")) == tree_digest(es_folder(tmp_path / "whole"))


# ---- archives are checked, not trusted -------------------------------------------------------

def nmnist_zip(tmp_path: Path, extra: list[tuple[str, bytes]]) -> Path:
    tree = nmnist_tree(tmp_path / "tree", {"train": 2, "test": 1})
    zips = zip_tree(tree, tmp_path / "zips")
    with zipfile.ZipFile(zips / "Train.zip", "a", zipfile.ZIP_DEFLATED) as zf:
        for name, data in extra:
            zf.writestr(name, data)
    return zips


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_a_zip_with_a_member_twice_is_refused_naming_it(run, tmp_path):
    rng = np.random.RandomState(0)
    zips = nmnist_zip(tmp_path, [("Train/3/dup.bin", recording(rng)),
                                 ("Train/3/dup.bin", recording(rng))])
    result = run("2nmnist", "--nmnist-root", zips, "--out", tmp_path / "o", code=1)
    assert "Train/3/dup.bin" in result.output and "twice" in result.output
    assert not (tmp_path / "o").exists()


def test_a_member_that_inflates_past_a_recording_is_refused_before_inflating(run, tmp_path):
    zips = nmnist_zip(tmp_path, [("Train/4/bomb.bin", bytes(64 * 2**20))])
    assert (zips / "Train.zip").stat().st_size < 2**20
    result = run("2nmnist", "--nmnist-root", zips, "--out", tmp_path / "o", code=1)
    assert "Train/4/bomb.bin" in result.output and "inflates to 67108864 bytes" in result.output


def test_a_bad_crc_is_one_line_naming_archive_and_member(run, tmp_path):
    zips = nmnist_zip(tmp_path, [])
    with zipfile.ZipFile(zips / "Train.zip") as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(".bin"))
    blob = bytearray((zips / "Train.zip").read_bytes())
    blob[info.header_offset + 30 + len(info.filename) + 10] ^= 0xFF  # inside its data
    (zips / "Train.zip").write_bytes(bytes(blob))
    result = run("2nmnist", "--nmnist-root", zips, "--format", "bin", "--out", tmp_path / "o",
                 "--workers", "1", code=1)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Train.zip" in lines[0] and info.filename in lines[0]


# ---- every input is accounted for --------------------------------------------------------------

def test_odd_entries_in_a_class_folder_are_skipped_with_their_reason(run, tmp_path):
    cls = tmp_path / "im" / "train" / "n00000001"
    for k in range(2):
        save(synthetic(k, (120, 90)), cls / f"ok{k}.JPEG")
    (cls / "dir.JPEG").mkdir()
    os.mkfifo(cls / "fifo.JPEG")
    (cls / "dangling.JPEG").symlink_to(tmp_path / "nowhere")
    (cls / "zero.JPEG").symlink_to("/dev/zero")
    run("es-imagenet", "--imagenet-root", tmp_path / "im", "--out", tmp_path / "o",
        "--min-events", "10", "--workers", "1", "--quiet")
    stats = json.loads((es_folder(tmp_path / "o") / "manifest.json").read_text())[
        "splits"]["train"]["stats"]
    reasons = {s["source"].rsplit("/", 1)[1]: s["reason"] for s in stats["skipped"]}
    # Links are never followed (not even to /dev/zero): only regular files are images, as
    # only regular members of a tar are.
    assert reasons == {"dangling.JPEG": "a symbolic link", "dir.JPEG": "a directory",
                       "fifo.JPEG": "not a regular file (FIFO, socket or device)",
                       "zero.JPEG": "a symbolic link"}
    assert stats["images"] == 6 and stats["converted"] == 2


def test_a_fifo_in_a_flat_val_folder_does_not_hang(run, tmp_path):
    save(synthetic(1, (120, 90)), tmp_path / "im" / "val" / "a.JPEG")
    os.mkfifo(tmp_path / "im" / "val" / "b.JPEG")
    (tmp_path / "labels.txt").write_text("a.JPEG 3\nb.JPEG 4\n")
    run("es-imagenet", "--imagenet-root", tmp_path / "im", "--split", "val", "--val-labels",
        tmp_path / "labels.txt", "--out", tmp_path / "o", "--min-events", "10", "--quiet")
    stats = json.loads((es_folder(tmp_path / "o") / "manifest.json").read_text())[
        "splits"]["val"]["stats"]
    assert stats["converted"] == 1 and stats["skipped"][0]["source"] == "val/b.JPEG"


NAMES = ["a b.JPEG", "c,d.JPEG", "q'u\"ote.JPEG", "t\tab.JPEG", "cr\rx.JPEG", "lf\ny.JPEG",
         "back\\slash.JPEG", "naïve-日本.JPEG"]


def test_names_of_every_kind_pass_our_own_verify_in_hdf5(run, tmp_path):
    for k, name in enumerate(NAMES):
        save(synthetic(k, (120, 90)), tmp_path / "im" / "train" / "n0 ,\t1" / name)
    run("es-imagenet", "--imagenet-root", tmp_path / "im", "--out", tmp_path / "o",
        "--min-events", "10", "--shard-size", "3", "--quiet")
    folder = es_folder(tmp_path / "o")
    assert run("verify", folder).exit_code == 0 and sha256sum_ok(folder)
    ds = open_dataset(folder)["train"]
    assert sorted(ds.info(i)["source"].rsplit("/", 1)[1] for i in range(len(ds))) == sorted(NAMES)


def test_names_the_npz_layout_cannot_carry_are_refused_up_front(run, tmp_path):
    save(synthetic(1, (120, 90)), tmp_path / "im" / "train" / "n1" / "ok.JPEG")
    save(synthetic(2, (120, 90)), tmp_path / "im" / "train" / "n1" / "lf\nname.JPEG")
    result = run("es-imagenet", "--imagenet-root", tmp_path / "im", "--format", "npz",
                 "--out", tmp_path / "o", code=2)
    assert "'train/n1/lf\\nname.JPEG'" in result.output
    assert not (tmp_path / "o" / "es-imagenet").exists() or not any(
        (tmp_path / "o" / "es-imagenet").glob("*.partial"))


def test_npz_output_with_commas_quotes_and_unicode_passes_verify(run, tmp_path):
    for k, name in enumerate(["c,d.JPEG", "q'u\"ote.JPEG", "back\\slash.JPEG", "日本.JPEG"]):
        save(synthetic(k, (120, 90)), tmp_path / "im" / "train" / "n1" / name)
    run("es-imagenet", "--imagenet-root", tmp_path / "im", "--format", "npz", "--out",
        tmp_path / "o", "--min-events", "10", "--quiet")
    folder = es_folder(tmp_path / "o")
    assert run("verify", folder).exit_code == 0 and sha256sum_ok(folder)
    assert len(open_dataset(folder)["train"]) == 4


def test_2nmnist_names_of_every_kind_reach_the_csv_and_hdf5_intact(run, tmp_path):
    tree = nmnist_tree(tmp_path / "nm", {"train": 2, "test": 1})
    rng = np.random.RandomState(3)
    odd = ["a,b c.bin", "q\"t.bin", "x\ty.bin", "ü.bin"]
    for k, name in enumerate(odd):
        (tree / "Train" / str(k) / name).write_bytes(recording(rng))
    for fmt in ("bin", "hdf5"):
        run("2nmnist", "--nmnist-root", tree, "--split", "train", "--format", fmt, "--out",
            tmp_path / fmt, "--quiet")
        folder = nm_folder(tmp_path / fmt)
        assert run("verify", folder).exit_code == 0 and sha256sum_ok(folder)
    rows = list(csv.reader(io.StringIO((nm_folder(tmp_path / "bin") / "pairs-train.csv")
                                       .read_text())))
    assert all(len(row) == 4 for row in rows)
    sources = {s for row in rows[1:] for s in row[2].split("+")}
    assert {f"{k}/{name}" for k, name in enumerate(odd)} <= sources


def test_a_non_regular_recording_stops_the_run_naming_it(run, tmp_path):
    tree = nmnist_tree(tmp_path / "nm", {"train": 2, "test": 1})
    os.mkfifo(tree / "Train" / "5" / "fifo.bin")
    result = run("2nmnist", "--nmnist-root", tree, "--out", tmp_path / "o", code=1)
    assert "fifo.bin" in result.output and "not a regular file" in result.output


def test_a_folder_named_like_a_recording_in_a_zip_stops_the_run_as_in_a_tree(run, tmp_path):
    # Before, the zip's entry was skipped without a word (exit 0), where the tree it extracts
    # to stops the run: the two layouts gave different answers.
    tree = nmnist_tree(tmp_path / "nm", {"train": 2, "test": 1})
    zips = zip_tree(tree, tmp_path / "zips")
    with zipfile.ZipFile(zips / "Test.zip", "a") as zf:
        zf.writestr("Test/3/odd.bin/", b"")
    result = run("2nmnist", "--nmnist-root", zips, "--split", "test", "--out", tmp_path / "o",
                 code=1)
    line = result.output.strip()
    assert "'Test/3/odd.bin/'" in line and "a folder" in line and "\n" not in line
    assert not (tmp_path / "o" / "2nmnist" / "2.0.0").exists()


@pytest.mark.parametrize("text, words", [("a.JPEG ²\n", "line 1"), ("a.JPEG １\n", "line 1")])
def test_labels_are_ascii_digits_only(run, tmp_path, text, words):
    save(synthetic(1, (120, 90)), tmp_path / "im" / "val" / "a.JPEG")
    (tmp_path / "l.txt").write_text(text)
    result = run("es-imagenet", "--imagenet-root", tmp_path / "im", "--split", "val",
                 "--val-labels", tmp_path / "l.txt", "--out", tmp_path / "o", code=2)
    assert words in result.output and "Traceback" not in result.output


def test_a_byte_order_mark_is_not_part_of_the_first_name(run, tmp_path):
    save(synthetic(1, (120, 90)), tmp_path / "im" / "val" / "a.JPEG")
    (tmp_path / "l.txt").write_bytes("\ufeffa.JPEG 7\n".encode())
    run("es-imagenet", "--imagenet-root", tmp_path / "im", "--split", "val", "--val-labels",
        tmp_path / "l.txt", "--out", tmp_path / "o", "--min-events", "10", "--quiet")
    assert open_dataset(es_folder(tmp_path / "o"))["val"][0][1] == 7


# ---- the manifest is checked ------------------------------------------------------------------

@pytest.mark.parametrize("edit", ["files: null", "a list", "no splits", "not json"])
def test_a_malformed_manifest_is_one_line_and_exit_1(run, tmp_path, edit):
    run("yinyang", "--size", "10", "--out", tmp_path, "--quiet")
    folder = tmp_path / "yinyang" / "1.0.0"
    m = json.loads((folder / "manifest.json").read_text())
    text = {"files: null": json.dumps({**m, "files": None}), "a list": json.dumps([m]),
            "no splits": json.dumps({k: v for k, v in m.items() if k != "splits"}),
            "not json": "{"}[edit]
    (folder / "manifest.json").write_text(text)
    for command in ("verify", "info", "preview"):
        result = run(command, folder, code=1)
        assert "manifest.json" in result.output and "Traceback" not in result.output
    from neurodata_cli.errors import RunError

    with pytest.raises(RunError, match="manifest.json"):
        open_dataset(folder)


def test_a_manifest_of_json_null_is_named_as_such_not_as_missing(run, tmp_path):
    # Before: "has no manifest.json", of a folder that has one.
    run("yinyang", "--size", "10", "--out", tmp_path, "--quiet")
    folder = tmp_path / "yinyang" / "1.0.0"
    (folder / "manifest.json").write_text("null")
    for command in ("info", "preview"):
        assert run(command, folder, code=1).output == (f"Error: {folder / 'manifest.json'} is "
                                                       "not a JSON object\n")
    assert "is not a JSON object" in run("yinyang", "--size", "10", "--out", tmp_path,
                                         code=1).output


# ---- errors that help ---------------------------------------------------------------------------

def test_a_run_refused_for_bad_input_leaves_nothing_and_the_fix_just_runs(run, tmp_path):
    tree = nmnist_tree(tmp_path / "nm", {"train": 2, "test": 1})
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("2nmnist", "--nmnist-root", empty, "--out", tmp_path / "o", code=1).output
    assert not list((tmp_path / "o").glob("2nmnist/.*.partial"))
    run("2nmnist", "--nmnist-root", tree, "--out", tmp_path / "o", "--quiet")


def test_the_same_mistake_gets_the_same_exit_code(run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "Train" in run("2nmnist", "--nmnist-root", empty, "--out", tmp_path, code=1).output
    assert "train/" in run("es-imagenet", "--imagenet-root", empty, "--out", tmp_path,
                           code=1).output
    missing = tmp_path / "missing"
    run("2nmnist", "--nmnist-root", missing, "--out", tmp_path, code=2)
    run("es-imagenet", "--imagenet-root", missing, "--out", tmp_path, code=2)


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    subprocess.run([EXE, "yinyang", "--size", "10", "--out", str(tmp_path), "--quiet"],
                   check=True)
    read, write = os.pipe()
    os.close(read)
    done = subprocess.run([EXE, "info", str(tmp_path / "yinyang" / "1.0.0")], stdout=write,
                          stderr=subprocess.PIPE, text=True)
    os.close(write)
    assert done.returncode == 0 and done.stderr == ""


@pytest.fixture
def small_disk(tmp_path):
    """A 400 kB tmpfs (where this machine lets the tests mount one)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_disk_that_fills_is_one_line_naming_the_file_and_leaves_no_part(run, tmp_path,
                                                                            small_disk):
    tree = nmnist_tree(tmp_path / "nm", {"train": 6, "test": 2})
    result = run("2nmnist", "--nmnist-root", tree, "--out", small_disk, "--workers", "1",
                 code=1)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0] and ".h5" in lines[0]
    assert "Traceback" not in result.output
    assert not (small_disk / "2nmnist" / "2.1.0").exists()
    assert not list(small_disk.rglob("*.part"))  # no half-written file left behind
