"""`neurodata es-imagenet` end to end: events, formats, layouts, splits, resume, workers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import data_digest, power_cut_at_shard, read_shard, reference, tree_digest
from hypothesis import given, settings
from hypothesis import strategies as st
from imagenet_synth import make_tree, odd_files, png_claiming, save, synthetic
from odg_oracle import odg
from PIL import Image

from neurodata_cli import open_dataset
from neurodata_cli.datasets.es_imagenet.source import decode

VERSION = "2.2.0"


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """Real photographs and synthetic images in three classes, plus every odd kind of file."""
    root = tmp_path_factory.mktemp("imagenet")
    make_tree(root, classes=3, per_class=4)
    odd_files(root / "train" / "n09999999")
    return root


def sources(root: Path, split: str = "train") -> list[str]:
    folder = root / split
    return sorted(str(p.relative_to(root)) for p in folder.rglob("*") if p.is_file())



def oracle_for(root: Path, rel: str, threshold: float = 0.18):
    return odg(decode(root / rel), threshold)


def read_hdf5_samples(folder: Path, split: str) -> list[dict]:
    out = []
    for path in sorted(folder.glob(f"es-imagenet-{split}-*.h5")):
        shard = read_shard(path)
        off = shard.offsets
        for i in range(len(off) - 1):
            sl = slice(int(off[i]), int(off[i + 1]))
            out.append({"x": shard.events["x"][sl], "y": shard.events["y"][sl],
                        "t": shard.events["t"][sl], "p": shard.events["p"][sl],
                        **{k: v[i] for k, v in shard.samples.items()}})
    return out


def as_pos_neg(s: dict) -> tuple[np.ndarray, np.ndarray]:
    out = []
    for polarity in (1, 0):
        keep = s["p"] == polarity
        out.append(np.stack([s["y"][keep], s["x"][keep], s["t"][keep]], axis=1))
    return out[0], out[1]


def test_hdf5_events_labels_and_skips_match_the_oracle(run, tmp_path, tree):
    run("es-imagenet", "--imagenet-root", tree, "--out", tmp_path, "--shard-size", "5",
        "--workers", "1")
    folder = tmp_path / "es-imagenet" / VERSION
    classes = sorted(p.name for p in (tree / "train").iterdir())
    samples = read_hdf5_samples(folder, "train")
    kept = []
    for index, rel in enumerate(sources(tree)):
        try:
            pos, neg, h, w = oracle_for(tree, rel)
        except Exception:
            continue
        if len(pos) + len(neg) >= 1000:
            kept.append((index, rel, pos, neg, h, w))
    assert [s["source"] for s in samples] == [k[1] for k in kept]
    for s, (index, rel, pos, neg, h, w) in zip(samples, kept, strict=True):
        got_pos, got_neg = as_pos_neg(s)
        np.testing.assert_array_equal(got_pos, pos)
        np.testing.assert_array_equal(got_neg, neg)
        assert (s["height"], s["width"], s["index"]) == (h, w, index)
        assert s["label"] == classes.index(rel.split("/")[1])
    with h5py.File(sorted(folder.glob("*.h5"))[0]) as f:
        assert f["samples/label"].dtype == np.int16
        assert {f["events"][k].dtype for k in "xytp"} == {np.dtype(np.uint8)}
        assert f.attrs["threshold"] == pytest.approx(0.18)
        assert f.attrs["trace"].tolist() == [[1, 0], [0, 2], [2, 1], [1, 0], [0, 1], [2, 2],
                                             [1, 0], [1, 1], [2, 1]]
        assert list(f.attrs["sensor_size"]) == [240, 240, 2]
    manifest = json.loads((folder / "manifest.json").read_text())
    stats = manifest["splits"]["train"]["stats"]
    reasons = {s["source"].split("/")[-1]: s["reason"] for s in stats["skipped"]}
    assert set(reasons) == {"flat.JPEG", "truncated.JPEG", "empty.JPEG"}
    assert reasons["flat.JPEG"] == "too few events: 0 < 1000"
    assert reasons["truncated.JPEG"].startswith("unreadable: OSError")
    assert str(tree) not in json.dumps(stats)
    assert (stats["converted"], stats["too_few_events"], stats["unreadable"]) == (len(kept), 1, 2)
    assert stats["images"] == len(sources(tree))
    run("verify", folder)


def test_every_mode_goes_through_convert_rgb(tree):
    folder = tree / "train" / "n09999999"
    for name, mode in [("grey.JPEG", "L"), ("palette.png", "P"), ("rgba.png", "RGBA"),
                       ("cmyk.JPEG", "CMYK"), ("png_inside.JPEG", "RGB")]:
        with Image.open(folder / name) as image:
            assert image.mode == mode
            np.testing.assert_array_equal(decode(folder / name), np.asarray(image.convert("RGB")))


def test_npz_layout_is_the_release_and_reads_with_numpy(run, tmp_path, tree):
    run("es-imagenet", "--imagenet-root", tree, "--out", tmp_path, "--format", "npz",
        "--shard-size", "4")
    folder = tmp_path / "es-imagenet" / VERSION
    lines = (folder / "trainlabel.txt").read_text().splitlines()
    classes = sorted(p.name for p in (tree / "train").iterdir())
    assert len(lines) == 18  # 12 in the three classes and 6 odd files; 3 are skipped
    for line in lines:
        name, label, h, w = line.split()
        path = folder / "train" / name
        assert name.startswith(f"class{label}/")
        rel = next(r for r in sources(tree) if Path(r).stem == Path(name).stem)
        assert int(label) == classes.index(rel.split("/")[1])
        pos, neg, oh, ow = oracle_for(tree, rel)
        with np.load(path) as npz:
            assert sorted(npz.files) == ["neg", "pos"]
            assert npz["pos"].dtype == np.uint8 and npz["pos"].shape[1] == 3
            np.testing.assert_array_equal(npz["pos"], pos)
            np.testing.assert_array_equal(npz["neg"], neg)
        assert (int(h), int(w)) == (oh, ow)
        with zipfile.ZipFile(path) as z:
            assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    run("verify", folder)


def flat_val(root: Path, names_labels: dict[str, int]) -> None:
    for k, name in enumerate(names_labels):
        save(synthetic(300 + k, (150 + k, 110)), root / "val" / name)


def test_val_from_folders_from_a_table_and_from_the_shipped_table(run, tmp_path):
    # Folders, labelled by the train class folders.
    root = tmp_path / "folders"
    make_tree(root, classes=2, per_class=2, photos=False)
    make_tree(root, classes=2, per_class=1, split="val", photos=False)
    run("es-imagenet", "--imagenet-root", root, "--split", "val", "--out", tmp_path / "o1",
        "--min-events", "10")
    got = read_hdf5_samples(tmp_path / "o1" / "es-imagenet" / VERSION, "val")
    assert [(s["source"], int(s["label"])) for s in got] == [
        ("val/n00001000/n00001000_0000.JPEG", 0), ("val/n00001007/n00001007_0000.JPEG", 1)]

    # A flat folder and a table of our own, in the npz layout SpikingJelly reads.
    root = tmp_path / "flat"
    table = {"b.JPEG": 7, "a.JPEG": 3, "c.JPEG": 0}
    flat_val(root, table)
    (tmp_path / "labels.txt").write_text(
        "".join(f"{k} {v}\n" for k, v in table.items()) + "unused.JPEG 9\n")
    run("es-imagenet", "--imagenet-root", root, "--split", "val", "--val-labels",
        tmp_path / "labels.txt", "--format", "npz", "--out", tmp_path / "o2", "--min-events", "10")
    folder = tmp_path / "o2" / "es-imagenet" / VERSION
    lines = (folder / "vallabel.txt").read_text().splitlines()
    assert [line.split()[:2] for line in lines] == [["a.npz", "3"], ["b.npz", "7"], ["c.npz", "0"]]
    assert sorted(p.name for p in (folder / "val").iterdir()) == ["a.npz", "b.npz", "c.npz"]

    # ILSVRC2012 names need no table: the ground truth ships with the package.
    root = tmp_path / "ilsvrc"
    truth = dict(line.split() for line in reference("es-imagenet", "valorigin.txt")
                 .read_text().splitlines()[:3])
    flat_val(root, truth)
    run("es-imagenet", "--imagenet-root", root, "--split", "val", "--out", tmp_path / "o3",
        "--min-events", "10")
    got = read_hdf5_samples(tmp_path / "o3" / "es-imagenet" / VERSION, "val")
    assert [(s["source"], int(s["label"])) for s in got] == [
        (f"val/{k}", int(v)) for k, v in sorted(truth.items())]


def test_the_shipped_tables_equal_the_reference():
    from neurodata_cli.datasets.es_imagenet import source

    shipped = (Path(source.__file__).with_name(source.DEFAULT_VAL_LABELS)).read_bytes()
    assert shipped == reference("es-imagenet", "valorigin.txt").read_bytes()


def test_imagenet_class_folders_give_the_released_train_labels(tmp_path):
    from neurodata_cli.datasets.es_imagenet.source import list_inputs, locate

    released = [line.split() for line in
                reference("es-imagenet", "trainlabel_dir.txt").read_text().splitlines()]
    for wnid, _ in released:
        (tmp_path / "train" / wnid).mkdir(parents=True)
    for wnid, _ in released[::-1][:5] + released[:5]:
        (tmp_path / "train" / wnid / f"{wnid}_1.JPEG").write_bytes(b"")
    got = dict((rel.split("/")[1], label)
               for rel, label, *_ in list_inputs(locate(tmp_path, "train")))
    assert got == {wnid: int(label) for wnid, label in released[:5] + released[-5:]}


def test_train_and_val_share_one_folder_and_one_sha256sums(run, tmp_path):
    root = tmp_path / "in"
    make_tree(root, classes=2, per_class=2, photos=False)
    make_tree(root, classes=2, per_class=2, split="val", photos=False)
    out = tmp_path / "out"
    args = ["es-imagenet", "--imagenet-root", root, "--out", out, "--min-events", "10"]
    run(*args)
    folder = out / "es-imagenet" / VERSION
    before = tree_digest(folder)
    assert "reused" in run(*args).output  # the same config
    refused = run(*args, "--threshold", "0.3", code=1)
    assert "already holds the train split, made with a different config" in refused.output
    assert tree_digest(folder) == before
    wrong = run(*args, "--split", "val", "--threshold", "0.3", code=1)
    assert "different config" in wrong.output and "threshold" in wrong.output
    run(*args, "--split", "val")
    sums = (folder / "SHA256SUMS").read_text()
    assert "es-imagenet-train-00000-of-00001.h5" in sums
    assert "es-imagenet-val-00000-of-00001.h5" in sums
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(manifest["splits"]) == ["train", "val"]
    assert subprocess.run(["sha256sum", "-c", "--strict", "--quiet", "SHA256SUMS"],
                          cwd=folder).returncode == 0
    run("verify", folder)
    run(*args, "--overwrite")  # replaces train only
    assert sorted(json.loads((folder / "manifest.json").read_text())["splits"]) == [
        "train", "val"]


def test_one_and_two_workers_give_identical_bytes(run, tmp_path, tree):
    for fmt in ("hdf5", "npz"):
        digests = []
        for workers in ("1", "2"):
            out = tmp_path / f"{fmt}{workers}"
            run("es-imagenet", "--imagenet-root", tree, "--out", out, "--format", fmt,
                "--shard-size", "3", "--workers", workers)
            digests.append(data_digest(out / "es-imagenet" / VERSION))
        assert digests[0] == digests[1]
        assert (digests[0]["SHA256SUMS"]) == digests[1]["SHA256SUMS"]


def test_a_failed_run_resumes_to_identical_bytes(run, tmp_path, tree, monkeypatch):
    from neurodata_cli.datasets.es_imagenet import ESImageNet as es_imagenet

    run("es-imagenet", "--imagenet-root", tree, "--out", tmp_path / "whole", "--shard-size", "4",
        "--workers", "1")
    args = ["es-imagenet", "--imagenet-root", tree, "--out", tmp_path / "cut", "--shard-size",
            "4", "--workers", "1"]
    with power_cut_at_shard(monkeypatch, es_imagenet, 3), pytest.raises(RuntimeError):
        run(*args)
    assert not (tmp_path / "cut" / "es-imagenet" / VERSION).exists()
    stage = tmp_path / "cut" / "es-imagenet" / f".{VERSION}.train.partial"
    (stage / "es-imagenet-train-00002-of-00005.h5.1234-abcd.part").write_bytes(b"half a file")
    # Left by an attempt that planned differently (more inputs then), or written in place by a
    # killed writer of a shard this run does not have: neither may reach the finished folder.
    (stage / "es-imagenet-train-00003-of-00009.h5").write_bytes(b"an older plan's shard")
    (stage / "old" / "deep").mkdir(parents=True)
    (stage / "old" / "deep" / "x.npz").write_bytes(b"half a file")
    result = run(*args)
    assert "2 shards resumed" in result.output
    assert data_digest(tmp_path / "cut" / "es-imagenet" / VERSION) == data_digest(
        tmp_path / "whole" / "es-imagenet" / VERSION)
    assert not (tmp_path / "cut" / "es-imagenet" / VERSION / "old").exists()


def test_kill_9_then_the_same_command_resumes_to_identical_bytes(run, tmp_path):
    root = tmp_path / "in"
    for k in range(40):
        save(synthetic(k, (400, 300)), root / "train" / f"n{k % 2:08d}" / f"img{k:03d}.JPEG")
    run("es-imagenet", "--imagenet-root", root, "--out", tmp_path / "whole", "--shard-size", "1",
        "--workers", "1", "--min-events", "10")
    cmd = [sys.executable, "-m", "neurodata_cli", "es-imagenet", "--imagenet-root", str(root),
           "--out", str(tmp_path / "cut"), "--shard-size", "1", "--workers", "1",
           "--min-events", "10", "--quiet"]
    proc = subprocess.Popen(cmd)
    records = tmp_path / "cut" / "es-imagenet" / f".{VERSION}.train.partial" / ".neurodata" / \
        "shards"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if records.is_dir() and len(list(records.glob("*.json"))) >= 3:
            break
        time.sleep(0.002)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "cut" / "es-imagenet" / VERSION).exists()
    result = run(*cmd[3:-1])
    assert "shards resumed" in result.output
    assert data_digest(tmp_path / "cut" / "es-imagenet" / VERSION) == data_digest(
        tmp_path / "whole" / "es-imagenet" / VERSION)


@pytest.mark.parametrize(("args", "code", "words"), [
    (["--imagenet-root", "{tmp}/nothing"], 2, "--imagenet-root"),
    (["--imagenet-root", "{tmp}"], 1, "no train/ folder"),
    (["--imagenet-root", "{root}", "--val-labels", "{root}/labels.txt"], 2, "--split val"),
    (["--imagenet-root", "{root}", "--split", "val", "--val-labels", "{root}/bad.txt"], 2,
     "line 2"),
    (["--imagenet-root", "{root}", "--split", "val", "--val-labels", "{root}/labels.txt"], 1,
     "z.JPEG has no label"),
    (["--imagenet-root", "{root}", "--threshold", "1.5"], 2, "--threshold"),
    (["--imagenet-root", "{root}", "--min-events", "-1"], 2, "--min-events"),
    (["--imagenet-root", "{root}", "--format", "npz"], 1, "would both be written"),
])
def test_usage_and_input_errors(run, tmp_path, args, code, words):
    root = tmp_path / "in"
    save(synthetic(1), root / "train" / "n1" / "a.JPEG")
    save(synthetic(2), root / "train" / "n1" / "a.png", "PNG")
    save(synthetic(3), root / "val" / "y.JPEG")
    save(synthetic(4), root / "val" / "z.JPEG")
    (root / "labels.txt").write_text("y.JPEG 1\n")
    (root / "bad.txt").write_text("y.JPEG 1\nz.JPEG one\n")
    args = [a.format(tmp=tmp_path, root=root) for a in args]
    result = run("es-imagenet", *args, "--out", tmp_path / "out", code=code)
    assert words in result.output
    assert not (tmp_path / "out" / "es-imagenet" / VERSION).exists()


def test_pool_workers_import_the_installed_package_not_the_current_folder(tmp_path):
    """Run from a folder that holds a neurodata_cli (a checkout): workers must not import it."""
    root = tmp_path / "in"
    for k in range(4):
        save(synthetic(k, (200, 150)), root / "train" / "n1" / f"{k}.JPEG")
    decoy = tmp_path / "cwd" / "neurodata_cli"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("# a package without the modules a worker needs\n")
    # The console script, as users run it (python -m would itself import the decoy).
    script = shutil.which("neurodata", path=str(Path(sys.executable).parent))
    cmd = [script, "es-imagenet", "--imagenet-root", str(root), "--out", str(tmp_path / "out"),
           "--shard-size", "1", "--workers", "2", "--min-events", "10"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    done = subprocess.run(cmd, cwd=tmp_path / "cwd", env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "4 converted" in done.stdout


# ---- one label space ----------------------------------------------------------------------------

def test_a_subset_of_imagenet_gets_train_and_val_labels_from_one_ilsvrc_index(run, tmp_path):
    released = dict(line.split() for line in
                    reference("es-imagenet", "trainlabel_dir.txt").read_text().splitlines())
    wnids = sorted(released)[::211][:5]  # five classes from across the index
    wanted = {int(released[w]) for w in wnids}
    truth = [line.split() for line in
             reference("es-imagenet", "valorigin.txt").read_text().splitlines()]
    val = [(name, int(label)) for name, label in truth if int(label) in wanted][:6]
    root = tmp_path / "in"
    for k, wnid in enumerate(wnids):
        save(synthetic(k, (160, 120)), root / "train" / wnid / f"{wnid}_1.JPEG")
    for k, (name, _) in enumerate(val):
        save(synthetic(10 + k, (160, 120)), root / "val" / name)
    run("es-imagenet", "--imagenet-root", root, "--out", tmp_path, "--min-events", "10",
        "--quiet")
    run("es-imagenet", "--imagenet-root", root, "--split", "val", "--out", tmp_path,
        "--min-events", "10", "--quiet")
    data = open_dataset(tmp_path / "es-imagenet" / VERSION)
    train = data["train"]
    assert sorted(train[i][1] for i in range(len(train))) == sorted(wanted)
    assert all(train[i][1] == int(released[train.info(i)["source"].split("/")[1]])
               for i in range(len(train)))
    assert sorted(data["val"][i][1] for i in range(len(data["val"]))) == sorted(
        label for _, label in val)
    source = data.manifest["splits"]["train"]["config"]["source"]
    assert source["labels"] == "ilsvrc2012"
    assert source["label_map"] == {w: int(released[w]) for w in wnids}


def test_other_class_folders_keep_sorted_labels_and_must_match_between_splits(run, tmp_path):
    root = tmp_path / "in"
    for k, name in enumerate(["cats", "dogs", "owls"]):
        save(synthetic(k, (160, 120)), root / "train" / name / "a.JPEG")
    for k, name in enumerate(["cats", "dogs"]):
        save(synthetic(k, (160, 120)), root / "val" / name / "b.JPEG")
    for split in ("train", "val"):
        result = run("es-imagenet", "--imagenet-root", root, "--split", split, "--out",
                     tmp_path / "o", code=2)
        assert "owls" in result.output and "different class folders" in result.output
    save(synthetic(5, (160, 120)), root / "val" / "owls" / "c.JPEG")
    run("es-imagenet", "--imagenet-root", root, "--out", tmp_path / "o", "--min-events", "10",
        "--quiet")
    train = open_dataset(tmp_path / "o" / "es-imagenet" / VERSION)["train"]
    assert [train[i][1] for i in range(3)] == [0, 1, 2]
    mixed = tmp_path / "mixed"
    save(synthetic(1, (160, 120)), mixed / "train" / "n01440764" / "a.JPEG")
    save(synthetic(2, (160, 120)), mixed / "train" / "cats" / "a.JPEG")
    assert "mixes" in run("es-imagenet", "--imagenet-root", mixed, "--out", tmp_path / "m",
                          code=2).output


def test_the_spikingjelly_export_links_the_npz_files_and_writes_nothing_here(run, tmp_path):
    root = tmp_path / "in"
    truth = [line.split() for line in
             reference("es-imagenet", "valorigin.txt").read_text().splitlines()][:4]
    for k, wnid in enumerate(["n01440764", "n01443537", "n01484850"]):
        save(synthetic(k, (160, 120)), root / "train" / wnid / f"{wnid}_1.JPEG")
    for k, (name, _) in enumerate(truth):
        save(synthetic(9 + k, (160, 120)), root / "val" / name)
    for split in ("train", "val"):
        run("es-imagenet", "--imagenet-root", root, "--split", split, "--format", "npz",
            "--out", tmp_path / "o", "--min-events", "10", "--quiet")
    folder = tmp_path / "o" / "es-imagenet" / VERSION
    before = tree_digest(folder)
    out = run("export", folder, "spikingjelly", "--to", tmp_path / "sj").output
    assert "7 links" in out
    events = tmp_path / "sj" / "events_np"
    # SpikingJelly's layout: events_np/{train,test}/class<L>/<file>.npz; val is its "test".
    train = sorted(p.relative_to(events / "train").as_posix()
                   for p in (events / "train").rglob("*.npz"))
    assert train == ["class0/n01440764_1.npz", "class1/n01443537_1.npz", "class2/n01484850_1.npz"]
    test = sorted(p.relative_to(events / "test").as_posix() for p in (events / "test").rglob("*"))
    assert [t for t in test if t.endswith(".npz")] == sorted(
        f"class{label}/{name[:-5]}.npz" for name, label in truth)
    for link in events.rglob("*.npz"):
        assert link.is_symlink() and folder in link.resolve().parents
        with np.load(link) as npz:  # what SpikingJelly's loader reads
            assert set(npz.files) == {"pos", "neg"}
    assert tree_digest(folder) == before and run("verify", folder).exit_code == 0
    assert "exists" in run("export", folder, "spikingjelly", "--to", tmp_path / "sj",
                           code=1).output
    assert "inside" in run("export", folder, "spikingjelly", "--to", folder / "sj",
                           code=2).output
    assert "no export" in run("export", folder, "tonic", "--to", tmp_path / "t", code=2).output


def plain_loader_frames(pos: np.ndarray, neg: np.ndarray, h: int, w: int) -> np.ndarray:
    """The loader's framing, one event at a time: a 256 x 256 canvas per channel (0 positive)
    and step, the image shifted by ((254 - H) // 2, (254 - W) // 2), cropped to 16:240."""
    canvas = np.zeros((2, 8, 256, 256), dtype=np.uint8)
    for channel, events in ((0, pos), (1, neg)):
        for row, col, t in events.tolist():
            canvas[channel, t - 1, row + (254 - h) // 2, col + (254 - w) // 2] = 1
    return canvas[:, :, 16:240, 16:240]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 3000), h=st.integers(1, 254), w=st.integers(1, 254),
       seed=st.integers(0, 2**16))
def test_frames_in_c_equal_the_plain_loader_and_the_numpy_route(n, h, w, seed):
    from neurodata_cli.datasets.es_imagenet import draw
    from neurodata_cli.formats import EVENT_DTYPE

    rng = np.random.default_rng(seed)
    events = np.empty(n, EVENT_DTYPE)
    # Anywhere on the loader's 256 x 256 canvas once shifted, inside the crop 16:240 or not.
    events["y"] = rng.integers(0, 256 - (254 - h) // 2, n)
    events["x"] = rng.integers(0, 256 - (254 - w) // 2, n)
    events["t"], events["p"] = rng.integers(1, 9, n), rng.integers(0, 2, n)
    pos, neg = (np.stack([events["y"][m], events["x"][m], events["t"][m]], axis=1)
                for m in (events["p"] == 1, events["p"] == 0))
    want = plain_loader_frames(pos, neg, h, w)
    assert draw._frames_c is not None
    np.testing.assert_array_equal(draw.frames(events, h, w), want)
    np.testing.assert_array_equal(draw.frames_numpy(events, (254 - h) // 2 - 16,
                                                    (254 - w) // 2 - 16, np.zeros_like(want)), want)
    # Another dtype, or a view with gaps, to the same frames.
    wide = np.empty(n, [("x", "i4"), ("y", "i4"), ("t", "i8"), ("p", "i4")])
    for k in "xytp":
        wide[k] = events[k]
    np.testing.assert_array_equal(draw.frames(wide, h, w), want)
    np.testing.assert_array_equal(draw.frames(np.repeat(events, 2)[::2], h, w), want)


def exact_frames(events: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """frames of any events, one at a time in Python integers (no cast can wrap)."""
    out = np.zeros((2, 8, 224, 224), dtype=np.uint8)
    for x, y, t, p in zip(*(events[k].tolist() for k in "xytp"), strict=True):
        if 0 <= y + dr < 224 and 0 <= x + dc < 224:
            out[1 - p, t - 1, y + dr, x + dc] = 1
    return out


@pytest.mark.parametrize("fields", [
    ("i2", "i2", "i8", "i1"),  # the reader's, packed
    ("u1", "u1", "u1", "u1"),
    ("i4", "u2", "u4", "i8"),
    ("i8", "i8", "u8", "u8"),
    ("u8", "u8", "i2", "u2"),  # uint64 above INT64_MAX must not wrap into the crop
    (">i2", ">u4", ">i8", "i1"),  # another byte order: converted, then read in C
])
@pytest.mark.parametrize("aligned", [False, True])
def test_frames_in_c_read_field_views_of_any_integer_dtype(fields, aligned):
    from neurodata_cli.datasets.es_imagenet import draw

    dtype = np.dtype(list(zip("xytp", fields, strict=True)), align=aligned)
    rng = np.random.default_rng(len(fields[0]) + 7 * aligned)
    n = 500
    events = np.zeros(n, dtype)
    coords = rng.integers(-20, 260, (2, n))
    for k, v in zip("xy", coords, strict=True):
        info = np.iinfo(dtype[k])
        # Every extreme of the type, among coordinates in and around the canvas.
        v = np.clip(v, max(info.min, -20), info.max).tolist()
        extremes = [info.min, info.max, info.max - 5, info.min + 5, 0, -1 if info.min else 1]
        for i, j in zip(rng.integers(0, n, 40), rng.integers(0, len(extremes), 40), strict=True):
            v[i] = int(extremes[j])
        events[k] = np.array(v, dtype[k])
    events["t"], events["p"] = rng.integers(1, 9, n), rng.integers(0, 2, n)
    dr, dc = 100, -16  # a small image (up and right), and a wide one
    for view in (events, events[::-1], np.repeat(events, 3)[1::3], events[7:][::2]):
        want = exact_frames(view, dr, dc)
        np.testing.assert_array_equal(draw.frames_numpy(view, dr, dc, np.zeros_like(want)), want)
        got = np.zeros_like(want)
        # In place: strided views of the structured array, no copy (native byte order only).
        draw._frames_c(*(draw.native(view[k]) for k in "xytp"), dr, dc, got)
        np.testing.assert_array_equal(got, want)
    # Each field its own array, each with its own stride.
    got = np.zeros_like(want)
    draw._frames_c(*(draw.native(np.ascontiguousarray(view[k])) for k in "xytp"), dr, dc, got)
    np.testing.assert_array_equal(got, want)
    for k, value in (("t", 0), ("t", 9), ("p", 2)):
        bad = events.copy()
        bad[k][n - 1 - 3 * len(k)] = value  # the last events are read apart from the rest
        with pytest.raises(ValueError, match=f"event {n - 1 - 3 * len(k)} has t outside 1..8"):
            draw.frames(bad, 200, 200)
    floats = np.zeros(3, [("x", "i2"), ("y", "i2"), ("t", "f8"), ("p", "i1")])
    with pytest.raises(ValueError, match="frames: t is not a 1-D array of native integers"):
        draw.frames(floats, 200, 200)


@pytest.mark.parametrize("field, value", [("t", 0), ("t", 9), ("p", 2), ("p", -1)])
def test_frames_refuse_events_outside_the_8_steps_and_2_polarities(field, value):
    from neurodata_cli.datasets.es_imagenet import draw
    from neurodata_cli.formats import EVENT_DTYPE

    events = np.zeros(5, EVENT_DTYPE)
    events["t"], events["p"] = 1, 1
    events[field][3] = value
    for route in (events, events.astype([("x", "i4"), ("y", "i4"), ("t", "i8"), ("p", "i4")])):
        with pytest.raises(ValueError, match="t outside 1..8 or p outside 0, 1"):
            draw.frames(route, 200, 200)


@pytest.mark.parametrize("fmt", ["hdf5", "npz"])
def test_partly_skipped_inputs_serve_exactly_the_stored_samples(run, tmp_path, tree, fmt):
    out = tmp_path / fmt
    run("es-imagenet", "--imagenet-root", tree, "--format", fmt, "--out", out, "--shard-size",
        "4", "--quiet")
    folder = out / "es-imagenet" / VERSION
    manifest = json.loads((folder / "manifest.json").read_text())
    stats = manifest["splits"]["train"]["stats"]
    ds = open_dataset(folder)["train"]
    assert stats["skipped"] and len(ds) == stats["converted"] == manifest["splits"]["train"][
        "records"] == stats["images"] - len(stats["skipped"])
    if fmt == "npz":
        rows = [line.split() for line in (folder / "trainlabel.txt").read_text().splitlines()]
        files = [(folder / "train" / r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows]
    else:
        files = []
        for path in sorted(folder.glob("*.h5")):
            shard = read_shard(path)
            for i in range(len(shard.offsets) - 1):
                a, b = int(shard.offsets[i]), int(shard.offsets[i + 1])
                files.append(({k: v[a:b] for k, v in shard.events.items()},
                              int(shard.samples["label"][i]), int(shard.samples["height"][i]),
                              int(shard.samples["width"][i])))
    assert len(files) == len(ds)
    for i, (stored, label, h, w) in enumerate(files):
        events, got_label = ds[i]
        if fmt == "npz":
            with np.load(stored) as npz:
                pos, neg = npz["pos"], npz["neg"]
        else:
            pos, neg = as_pos_neg(stored)
        assert got_label == label
        np.testing.assert_array_equal(as_pos_neg(events)[0], pos)
        np.testing.assert_array_equal(as_pos_neg(events)[1], neg)
        np.testing.assert_array_equal(ds.to_frames(i), plain_loader_frames(pos, neg, h, w))


def test_images_past_pillows_pixel_limit_are_skipped_without_decoding(run, tmp_path):
    """Past the limit Pillow only warns (and decodes gigabytes) until twice it; both are
    skipped with the reason, told from the header."""
    limit = Image.MAX_IMAGE_PIXELS
    cls = tmp_path / "im" / "train" / "n00000001"
    save(synthetic(1, (120, 90)), cls / "ok.JPEG")
    width = limit // 1000 + 1
    (cls / "over.png").write_bytes(png_claiming(width, 1000))
    (cls / "twice.png").write_bytes(png_claiming(2 * width, 1000))
    run("es-imagenet", "--imagenet-root", tmp_path / "im", "--out", tmp_path / "o",
        "--min-events", "10", "--workers", "1", "--quiet")
    stats = json.loads((tmp_path / "o" / "es-imagenet" / VERSION / "manifest.json")
                       .read_text())["splits"]["train"]["stats"]
    reasons = {s["source"].rsplit("/", 1)[1]: s["reason"] for s in stats["skipped"]}
    assert reasons == {
        "over.png": f"too many pixels: {width}x1000 > Pillow's limit of {limit}",
        "twice.png": f"too many pixels: more than twice Pillow's limit of {limit}"}
    assert (stats["images"], stats["converted"], stats["unreadable"]) == (3, 1, 2)
