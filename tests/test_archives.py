"""ImageNet as people keep it: the official tars read in place, and the Kaggle layout, give
the very bytes of a run on the same images extracted into folders."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from helpers import data_sums, reference
from imagenet_synth import PHOTOS, jpeg_bytes, photo, synthetic

from neurodata_cli import open_dataset
from neurodata_cli.datasets import get
from neurodata_cli.datasets.es_imagenet import archives

EXE = str(Path(sys.executable).with_name("neurodata"))
CLASSES = dict(line.split() for line in
               reference("es-imagenet", "trainlabel_dir.txt").read_text().splitlines())
WNIDS = sorted(CLASSES)[::150][:6]  # six classes from across the index
VAL = [line.split() for line in
       reference("es-imagenet", "valorigin.txt").read_text().splitlines()][:5]


def version() -> str:
    return get("es-imagenet").version


def images() -> dict[str, bytes]:
    """Path as extracted -> JPEG bytes: real photographs and synthetic images."""
    out, k = {}, 0
    for wnid in WNIDS:
        for i in range(2):
            image = photo(PHOTOS[k]).convert("RGB") if k < len(PHOTOS) else synthetic(k)
            out[f"train/{wnid}/{wnid}_{i:04d}.JPEG"] = jpeg_bytes(image)
            k += 1
    for j, (name, _) in enumerate(VAL):
        out[f"val/{name}"] = jpeg_bytes(synthetic(40 + j, (180, 140)))
    return out


def add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), 0
    tf.addfile(info, io.BytesIO(data))


def tar_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members.items():
            add(tf, name, data)
    return buffer.getvalue()


def official(root: Path, files: dict[str, bytes], inner_extra: dict[str, bytes] | None = None,
             outer_extra: dict[str, bytes] | None = None) -> Path:
    """ILSVRC2012_img_train.tar (a tar of <wnid>.tar) and ILSVRC2012_img_val.tar (flat)."""
    root.mkdir(parents=True, exist_ok=True)
    classes: dict[str, dict[str, bytes]] = {}
    for rel, data in files.items():
        if rel.startswith("train/"):
            _, wnid, name = rel.split("/")
            classes.setdefault(wnid, {})[name] = data
    for name, data in (inner_extra or {}).items():
        wnid, inner = name.split("/", 1)
        classes[wnid][inner] = data
    outer = {f"{wnid}.tar": tar_bytes(members) for wnid, members in classes.items()}
    outer.update(outer_extra or {})
    (root / "ILSVRC2012_img_train.tar").write_bytes(tar_bytes(outer))
    (root / "ILSVRC2012_img_val.tar").write_bytes(tar_bytes(
        {rel[4:]: data for rel, data in files.items() if rel.startswith("val/")}))
    return root


def folders(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def kaggle(root: Path, files: dict[str, bytes]) -> Path:
    folders(root / "ILSVRC" / "Data" / "CLS-LOC", files)
    wnid_of = {int(v): k for k, v in CLASSES.items()}
    with open(root / "LOC_val_solution.csv", "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["ImageId", "PredictionString"])
        for name, label in VAL:
            out.writerow([name[:-5], f"{wnid_of[int(label)]} 10 20 30 40 n01440764 1 2 3 4"])
    return root


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    base = tmp_path_factory.mktemp("layouts")
    files = images()
    return {"folders": folders(base / "folders", files),
            "official tars": official(base / "tars", files),
            "kaggle": kaggle(base / "kaggle", files)}


def convert(run, root: Path, out: Path, *args: str) -> Path:
    for split in ("train", "val"):
        run("es-imagenet", "--imagenet-root", root, "--split", split, "--out", out,
            "--shard-size", "4", "--min-events", "10", "--quiet", *args)
    return out / "es-imagenet" / version()


@pytest.mark.parametrize("fmt", ["hdf5", "npz"])
def test_every_layout_gives_the_bytes_of_the_extracted_folders(run, tmp_path, layouts, fmt):
    made = {name: convert(run, root, tmp_path / name.replace(" ", "-"), "--format", fmt)
            for name, root in layouts.items()}
    want = data_sums(made["folders"])
    assert want.count("\n") >= 4
    for name, folder in made.items():
        assert data_sums(folder) == want, name
        manifest = json.loads((folder / "manifest.json").read_text())
        for split in ("train", "val"):
            assert manifest["splits"][split]["config"]["source"]["read_from"] == name
    data = open_dataset(made["official tars"])
    assert [data["val"][i][1] for i in range(len(data["val"]))] == [int(v) for _, v in VAL]
    assert sorted({data["train"][i][1] for i in range(len(data["train"]))}) == sorted(
        int(CLASSES[w]) for w in WNIDS)
    assert "official tars" in run("info", made["official tars"]).output


def test_one_and_two_workers_give_the_same_bytes_from_the_tars(run, tmp_path, layouts):
    one = convert(run, layouts["official tars"], tmp_path / "1", "--workers", "1")
    two = convert(run, layouts["official tars"], tmp_path / "2", "--workers", "2")
    assert data_sums(one) == data_sums(two)


def test_a_killed_run_on_the_tars_resumes_without_indexing_again(run, tmp_path, monkeypatch):
    files = {f"train/{WNIDS[k % 2]}/{k:03d}.JPEG": jpeg_bytes(synthetic(k, (640, 480)))
             for k in range(60)}
    root = official(tmp_path / "in", files)
    args = ["--imagenet-root", str(root), "--shard-size", "1", "--min-events", "10"]
    run("es-imagenet", *args, "--out", tmp_path / "whole", "--workers", "1", "--quiet")
    proc = subprocess.Popen([EXE, "es-imagenet", *args, "--out", str(tmp_path / "cut"),
                             "--workers", "2", "--quiet"])
    stage = tmp_path / "cut" / "es-imagenet"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(stage.glob(".*/.neurodata/shards/*"))) < 2:
        time.sleep(0.002)
    assert proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(stage.glob(".*/.neurodata/index-train.npy"))  # the index is in the stage

    def no_second_scan(*args):
        raise AssertionError("the archive was indexed again")

    monkeypatch.setattr(archives, "_index", no_second_scan)
    result = run("es-imagenet", *args, "--out", tmp_path / "cut", "--workers", "2")
    assert "shards resumed" in result.output
    assert data_sums(stage / version()) == data_sums(tmp_path / "whole" / "es-imagenet" /
                                                     version())


def test_a_truncated_archive_stops_the_run_naming_where_it_ends(run, tmp_path):
    root = official(tmp_path / "in", images())
    blob = (root / "ILSVRC2012_img_train.tar").read_bytes()
    with tarfile.open(root / "ILSVRC2012_img_train.tar") as tf:
        third = tf.getmembers()[2]
    (root / "ILSVRC2012_img_train.tar").write_bytes(blob[:third.offset_data + 1000])
    result = run("es-imagenet", "--imagenet-root", root, "--out", tmp_path / "o", code=1)
    assert "truncated" in result.output and third.name in result.output
    assert not list((tmp_path / "o").glob("es-imagenet/.*.partial"))


def test_a_member_that_is_not_an_image_is_skipped_and_recorded(run, tmp_path):
    files = images()
    extra = {f"{WNIDS[0]}/readme.txt": b"not an image\n"}
    tars = official(tmp_path / "tars", files, inner_extra=extra)
    flat = folders(tmp_path / "folders", {**files, f"train/{WNIDS[0]}/readme.txt": extra[
        f"{WNIDS[0]}/readme.txt"]})
    made = [convert(run, root, tmp_path / f"o{k}") for k, root in enumerate((tars, flat))]
    stats = json.loads((made[0] / "manifest.json").read_text())["splits"]["train"]["stats"]
    assert [s["source"] for s in stats["skipped"]] == [f"train/{WNIDS[0]}/readme.txt"]
    assert data_sums(made[0]) == data_sums(made[1])


@pytest.mark.parametrize("name", ["/etc/evil.JPEG", "../evil.JPEG"])
def test_a_member_outside_the_archive_is_refused_naming_it(run, tmp_path, name):
    files = {k: v for k, v in images().items() if k.startswith("val/")}
    root = tmp_path / "in"
    root.mkdir()
    members = {rel[4:]: data for rel, data in files.items()}
    members[name] = b"x"
    (root / "ILSVRC2012_img_val.tar").write_bytes(tar_bytes(members))
    result = run("es-imagenet", "--imagenet-root", root, "--split", "val", "--out",
                 tmp_path / "o", code=1)
    assert name in result.output and "outside" in result.output


def test_a_corrupt_inner_tar_stops_the_run_naming_it(run, tmp_path):
    root = official(tmp_path / "in", images(), outer_extra={"n99999999.tar": b"\x01" * 3000})
    result = run("es-imagenet", "--imagenet-root", root, "--out", tmp_path / "o", code=1)
    assert "n99999999.tar" in result.output and "not a readable tar" in result.output


def test_check_archives_compares_the_published_md5_before_any_work(run, tmp_path):
    root = official(tmp_path / "in", images())
    result = run("es-imagenet", "--imagenet-root", root, "--check-archives", "--out",
                 tmp_path / "o", code=1)
    assert "ILSVRC2012_img_train.tar" in result.output and "1d675b47d978889d74fa0da5fadfb00e" \
        in result.output
    assert not (tmp_path / "o").exists()
