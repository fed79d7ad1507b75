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


def convert(run, root: Path | str, out: Path, *args: str) -> Path:
    for split in ("train", "val"):
        run("es-imagenet", "--imagenet-root", root, "--split", split, "--out", out,
            "--shard-size", "4", "--min-events", "10", "--quiet", *args)
    return out / "es-imagenet" / version()


def kill_after_two_shards(command: list[str], stage: Path) -> None:
    """Run ``command`` and kill -9 it once two of its shards are recorded in ``stage``."""
    proc = subprocess.Popen(command)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(stage.glob(".*/.neurodata/shards/*"))) < 2:
        time.sleep(0.002)
    assert proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


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
    stage = tmp_path / "cut" / "es-imagenet"
    kill_after_two_shards([EXE, "es-imagenet", *args, "--out", str(tmp_path / "cut"),
                           "--workers", "2", "--quiet"], stage)
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


# ---- every member as GNU tar extracts it ------------------------------------------------------
# Tars written header by header (TarInfo.tobuf), so that they can hold what `tarfile` does not
# write: GNU sparse members, `./` names, links, devices. GNU tar, extracting them, is the oracle.

BLOCK = tarfile.BLOCKSIZE
NAMED = {"alpha": 0, "beta": 1}  # class folders that are not wnids: labelled by sorted order


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "",
           fmt: int = tarfile.GNU_FORMAT) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mtime = kind, link, 0
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info.tobuf(fmt) + data + bytes(-len(data) % BLOCK)


def sparse_member(name: str, data: bytes) -> bytes:
    """An old-GNU sparse member (type 'S') holding ``data`` with a hole for its zero bytes:
    a run of 512-byte blocks of zeros inside it is left out of the archive, as GNU tar does."""
    blocks = [data[i:i + BLOCK] for i in range(0, len(data), BLOCK)]
    zero = [i for i, b in enumerate(blocks[:-1]) if b == bytes(BLOCK)]
    assert len(zero) >= 2 and zero[-1] - zero[0] == len(zero) - 1  # one run, not at the end
    a, b = zero[0] * BLOCK, (zero[-1] + 1) * BLOCK
    stored = data[:a] + data[b:]
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mtime, info.mode = tarfile.GNUTYPE_SPARSE, len(stored), 0, 0o644
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    maps = [(0, a), (b, len(data) - b)]
    for k, (offset, numbytes) in enumerate(maps):  # the sparse map: in the header itself
        header[386 + 24 * k:410 + 24 * k] = tarfile.itn(offset, 12) + tarfile.itn(numbytes, 12)
    header[483:495] = tarfile.itn(len(data), 12)  # the size once extracted
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % tarfile.calc_chksums(bytes(header))[0]
    return bytes(header) + stored + bytes(-len(stored) % BLOCK)


def gnu_tar(members: list[bytes]) -> bytes:
    body = b"".join(members) + bytes(2 * BLOCK)
    return body + bytes(-len(body) % tarfile.RECORDSIZE)


def bmp_with_zeros() -> bytes:
    """A BMP whose middle rows are black: zero bytes that a sparse member leaves out."""
    image = synthetic(11, (120, 90))
    image.paste((0, 0, 0), (0, 30, 120, 70))
    buffer = io.BytesIO()
    image.save(buffer, "BMP")
    return buffer.getvalue()


def jpegs(prefix: str, n: int = 2, seed: int = 0) -> list[bytes]:
    return [member(f"{prefix}{k}.JPEG", jpeg_bytes(synthetic(seed + k))) for k in range(n)]


W0, W1 = WNIDS[:2]
SUB_REASON = "in a subfolder of the class folder (only files directly in a class folder are inputs)"
CASES = {  # class -> its tar's members; then what the run skips, as source -> reason
    "dot-slash": ({"alpha": [member("./", kind=tarfile.DIRTYPE), *jpegs("./a")],
                   "beta": jpegs("b", seed=5)}, {}),
    "subfolder": ({W0: [*jpegs("x"), member("sub/", kind=tarfile.DIRTYPE),
                        member("sub/y.JPEG", jpeg_bytes(synthetic(9)))]},
                  {f"train/{W0}/sub": "a directory", f"train/{W0}/sub/y.JPEG": SUB_REASON}),
    # A folder only the extraction makes (no member of its own) is listed as the folders list it.
    "subfolder without its own member": (
        {W0: [*jpegs("x"), member("deep/er/y.JPEG", jpeg_bytes(synthetic(9)))]},
        {f"train/{W0}/deep": "a directory", f"train/{W0}/deep/er": SUB_REASON,
         f"train/{W0}/deep/er/y.JPEG": SUB_REASON}),
    # Followed by a larger member: read at its full length from its data, it took those bytes.
    "sparse": ({W0: [jpegs("x")[0], sparse_member("s.bmp", bmp_with_zeros()),
                     member("z.JPEG", jpeg_bytes(synthetic(7, (400, 300))))]}, {}),
    # LF and CR (the index was newline-separated text), a GNU long name, a pax header.
    "odd names": ({W0: [member("a\nb.JPEG", jpeg_bytes(synthetic(1))),
                        member("c\rd.JPEG", jpeg_bytes(synthetic(2))),
                        member("l" * 150 + ".JPEG", jpeg_bytes(synthetic(3))),
                        member("\u00e9t\u00e9.JPEG", jpeg_bytes(synthetic(4)),
                               fmt=tarfile.PAX_FORMAT), *jpegs("x")]}, {}),
    "links": ({W0: [*jpegs("x"), member("s.JPEG", kind=tarfile.SYMTYPE, link="x0.JPEG"),
                    member("h.JPEG", kind=tarfile.LNKTYPE, link="x0.JPEG"),
                    member("f.JPEG", kind=tarfile.FIFOTYPE),
                    member("d.JPEG", kind=tarfile.CHRTYPE)]},
              {f"train/{W0}/s.JPEG": "a symbolic link", f"train/{W0}/h.JPEG": "a hard link",
               f"train/{W0}/f.JPEG": "not a regular file (FIFO, socket or device)",
               f"train/{W0}/d.JPEG": "not a regular file (FIFO, socket or device)"}),
}


def train_tar(root: Path, classes: dict[str, list[bytes]]) -> Path:
    root.mkdir(parents=True)
    (root / "ILSVRC2012_img_train.tar").write_bytes(gnu_tar(
        [member(f"{name}.tar", gnu_tar(members)) for name, members in classes.items()]))
    return root


def gnu_extract(root: Path, dest: Path) -> Path:
    """The folders GNU tar extracts the train tar to: each <wnid>.tar into train/<wnid>/."""
    tars = dest / "tars"
    tars.mkdir(parents=True)
    subprocess.run(["tar", "-xf", str(root / "ILSVRC2012_img_train.tar"), "-C", str(tars)],
                   check=True)
    for inner in sorted(tars.glob("*.tar")):
        (dest / "train" / inner.stem).mkdir(parents=True)
        subprocess.run(["tar", "-xf", str(inner), "-C", str(dest / "train" / inner.stem)],
                       check=True)
    return dest


def one_split(run, root: Path, out: Path, split: str = "train") -> tuple[Path, dict]:
    run("es-imagenet", "--imagenet-root", root, "--split", split, "--out", out,
        "--min-events", "10", "--workers", "1", "--quiet")
    folder = out / "es-imagenet" / version()
    return folder, json.loads((folder / "manifest.json").read_text())["splits"][split]


def members_of(archive: Path) -> int:
    """Members of the inner tars (or of a flat tar) that are not the archive's own folder."""
    count = 0
    with tarfile.open(archive) as outer:
        for info in outer:
            if info.name.endswith(".tar"):
                with tarfile.open(fileobj=outer.extractfile(info)) as inner:
                    count += sum(m.name not in (".", "./") for m in inner)
            else:
                count += info.name not in (".", "./")
    return count


def samples(folder: Path) -> list[tuple[str, int, bytes]]:
    data = open_dataset(folder)["train"]
    return [(str(r["source"]), int(r["label"]), r["events"].tobytes())
            for r in map(data.record, range(len(data)))]


@pytest.mark.parametrize("case", list(CASES))
def test_every_member_is_converted_or_skipped_as_gnu_tar_extracts_it(run, tmp_path, case):
    classes, skipped = CASES[case]
    root = train_tar(tmp_path / "tars", classes)
    made, split = one_split(run, root, tmp_path / "o")
    stats = split["stats"]
    assert {s["source"]: s["reason"] for s in stats["skipped"]} == skipped
    members = members_of(root / "ILSVRC2012_img_train.tar")
    made_by_extraction = 2 if case == "subfolder without its own member" else 0
    assert stats["images"] == members + made_by_extraction == stats["converted"] + len(
        stats["skipped"])
    assert split["records"] == stats["converted"]
    data = open_dataset(made)["train"]
    assert len(data) == stats["converted"]
    if case == "links":  # GNU tar makes a hard link a file; only regular members are images
        folder = folders(tmp_path / "f", {f"train/{W0}/x{k}.JPEG": jpeg_bytes(synthetic(k))
                                          for k in range(2)})
        (folder / "train" / W0 / "s.JPEG").symlink_to("x0.JPEG")
    else:
        folder = gnu_extract(root, tmp_path / "f")
    if case == "sparse":  # a member with a hole, which GNU tar fills with the zeros it held
        assert len(sparse_member("s.bmp", bmp_with_zeros())) < len(bmp_with_zeros())
        assert (folder / "train" / W0 / "s.bmp").read_bytes() == bmp_with_zeros()
    theirs, their_split = one_split(run, folder, tmp_path / "of")
    if case == "links":  # the same samples (their input indices differ: fewer entries)
        assert [samples(made)] == [samples(theirs)]
        assert their_split["stats"]["skipped"] == [{"source": f"train/{W0}/s.JPEG",
                                                    "reason": "a symbolic link"}]
    else:  # the same samples, sources, labels and input indices; the same skips
        assert data_sums(made) == data_sums(theirs)
        assert their_split["stats"] == stats
    if case == "dot-slash":
        labels = {data.record(i)["source"].split("/")[1]: int(data.record(i)["label"])
                  for i in range(len(data))}
        assert labels == NAMED


def test_a_val_tar_made_with_dot_slash_names_is_read_as_extracted(run, tmp_path):
    files = {k: v for k, v in images().items() if k.startswith("val/")}
    root = tmp_path / "tars"
    root.mkdir()
    (root / "ILSVRC2012_img_val.tar").write_bytes(gnu_tar(
        [member("./", kind=tarfile.DIRTYPE)]
        + [member(f"./{rel[4:]}", data) for rel, data in files.items()]))
    made, split = one_split(run, root, tmp_path / "o", "val")
    assert split["stats"]["images"] == members_of(root / "ILSVRC2012_img_val.tar") == len(files)
    theirs, _ = one_split(run, folders(tmp_path / "f", files), tmp_path / "of", "val")
    assert data_sums(made) == data_sums(theirs)


DUPLICATES = {  # archive -> its members; then the two names the refusal must give
    "inner": ("ILSVRC2012_img_train.tar",
              [member(f"{W0}.tar", gnu_tar([*jpegs("a"), jpegs("./a")[0]]))],
              (f"{W0}.tar:a0.JPEG", f"{W0}.tar:./a0.JPEG")),
    "outer": ("ILSVRC2012_img_train.tar",
              [member(f"{W0}.tar", gnu_tar(jpegs("a"))), member(f"./{W0}.tar",
                                                                gnu_tar(jpegs("b")))],
              (f"{W0}.tar", f"./{W0}.tar")),
    "val": ("ILSVRC2012_img_val.tar",
            [member(f"{VAL[0][0]}", jpeg_bytes(synthetic(1))),
             member(f"{VAL[1][0]}", jpeg_bytes(synthetic(2))),
             member(f"{VAL[0][0]}", jpeg_bytes(synthetic(3)))],
            (VAL[0][0], VAL[0][0])),
}


@pytest.mark.parametrize("case", list(DUPLICATES))
def test_two_members_extracting_to_one_path_stop_the_run_naming_both(run, tmp_path, case):
    name, members, (first, second) = DUPLICATES[case]
    root = tmp_path / "in"
    root.mkdir()
    (root / name).write_bytes(gnu_tar(members))
    result = run("es-imagenet", "--imagenet-root", root, "--split", name[15:-4], "--out",
                 tmp_path / "o", code=1)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"{first!r} and {second!r}" in lines[0] and name in lines[0]
    assert "ambiguous" in lines[0]
    assert not (tmp_path / "o" / "es-imagenet" / version()).exists()


def test_a_kaggle_csv_listing_an_image_twice_is_refused_naming_both_lines(run, tmp_path):
    root = kaggle(tmp_path / "k", {k: v for k, v in images().items() if k.startswith("val/")})
    with open(root / "LOC_val_solution.csv", "a", newline="") as handle:
        csv.writer(handle).writerow([VAL[1][0][:-5], f"{WNIDS[0]} 1 2 3 4"])
    result = run("es-imagenet", "--imagenet-root", root, "--split", "val", "--out",
                 tmp_path / "o", code=2)
    line = result.output.strip().splitlines()[-1]
    assert "LOC_val_solution.csv lines 3 and 7" in line and VAL[1][0][:-5] in line


@pytest.mark.parametrize("layout", ["official tars", "folders"])
def test_a_name_that_is_not_utf8_is_refused_naming_it(run, tmp_path, layout):
    name = "x\udcff.JPEG"  # the byte 0xff, as tarfile and the file system decode it
    if layout == "folders":
        cls = tmp_path / "in" / "train" / W0
        cls.mkdir(parents=True)
        (cls / name).write_bytes(jpeg_bytes(synthetic(1)))
        root = tmp_path / "in"
    else:
        root = train_tar(tmp_path / "in", {W0: [member(name, jpeg_bytes(synthetic(1)))]})
    result = run("es-imagenet", "--imagenet-root", root, "--out", tmp_path / "o", code=2)
    line = result.output.strip().splitlines()[-1]
    assert f"b'train/{W0}/x\\xff.JPEG'" in line and "not UTF-8" in line
    assert not (tmp_path / "o" / "es-imagenet" / version()).exists()


def _lying_size(raw: bytes, size: int) -> bytes:
    """A member whose header claims ``size`` bytes, with its checksum made to match."""
    header = bytearray(raw[:BLOCK])
    header[124:136] = tarfile.itn(size, 12)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % tarfile.calc_chksums(bytes(header))[0]
    return bytes(header) + raw[BLOCK:]


DAMAGED = {  # members of one class tar; tarfile stops its listing quietly at the bad header
    "bad checksum": lambda a, b, c: [a, b[:10] + b"X" + b[11:], c],
    "size too small": lambda a, b, c: [_lying_size(a, len(a) - 3 * BLOCK), b, c],
    "size too large": lambda a, b, c: [_lying_size(a, len(a) + 2 * BLOCK), b, c],
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_a_damaged_header_inside_a_class_tar_stops_the_run(run, tmp_path, case):
    # GNU tar exits 2 on these; before, the members after the bad header were dropped unseen
    # (neither converted nor skipped) and the run said OK.
    root = train_tar(tmp_path / "in", {W0: DAMAGED[case](*jpegs("x", 3))})
    result = run("es-imagenet", "--imagenet-root", root, "--out", tmp_path / "o", code=1)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"{W0}.tar" in lines[0] and "header" in lines[0]
    assert not (tmp_path / "o" / "es-imagenet" / version()).exists()


def test_a_tar_rewritten_at_its_size_and_time_after_a_cut_stops_the_resume(run, tmp_path):
    # The index kept in the stage is reused while the archive's size and time are the same.
    # Before, a member found renamed was recorded as "unreadable: RunError: ... changed since
    # it was indexed" (with the archive's absolute path) and the run said OK.
    files = {f"train/{WNIDS[k % 2]}/{k:03d}.JPEG": jpeg_bytes(synthetic(k, (640, 480)))
             for k in range(40)}
    root = official(tmp_path / "in", files)
    tar = root / "ILSVRC2012_img_train.tar"
    args = ["--imagenet-root", str(root), "--shard-size", "1", "--min-events", "10",
            "--workers", "1", "--out", str(tmp_path / "cut")]
    stage = tmp_path / "cut" / "es-imagenet"
    kill_after_two_shards([EXE, "es-imagenet", *args, "--quiet"], stage)
    before = tar.stat()
    blob = bytearray(tar.read_bytes())
    last = blob.rindex(b"039.JPEG")  # the last member's name, in its header: renamed
    header = last - last % BLOCK
    blob[last:last + 3] = b"X39"
    blob[header + 148:header + 156] = b" " * 8
    blob[header + 148:header + 156] = b"%06o\0 " % tarfile.calc_chksums(
        bytes(blob[header:header + BLOCK]))[0]
    tar.write_bytes(bytes(blob))
    os.utime(tar, ns=(before.st_atime_ns, before.st_mtime_ns))
    result = run("es-imagenet", *args, code=1)
    line = result.output.strip().splitlines()[-1]
    assert "changed since it was indexed" in line and "touch" in line
    assert not (stage / version()).exists()
    os.utime(tar)  # as the message says: then it is indexed again, and the run starts again
    assert "starting again" in run("es-imagenet", *args).output


def test_an_image_gone_after_it_was_listed_stops_the_run(run, tmp_path, monkeypatch):
    # Before, it was recorded as "unreadable: No such file or directory", exit 0: a folder
    # that a run with the image, or without it, would not give.
    root = folders(tmp_path / "in", {k: v for k, v in images().items()
                                     if k.startswith("train/")})
    victim = root / "train" / WNIDS[1] / f"{WNIDS[1]}_0001.JPEG"
    dataset = type(get("es-imagenet"))
    real_plan = dataset.plan

    def plan_then_delete(self, cfg):
        shards = real_plan(self, cfg)
        victim.unlink()
        return shards

    monkeypatch.setattr(dataset, "plan", plan_then_delete)
    result = run("es-imagenet", "--imagenet-root", root, "--out", tmp_path / "o",
                 "--workers", "1", "--min-events", "10", code=1)
    line = result.output.strip().splitlines()[-1]
    assert f"cannot read {victim}" in line and "No such file" in line
    assert not (tmp_path / "o" / "es-imagenet" / version()).exists()


def test_an_out_inside_the_input_folder_is_refused_before_any_work(run, tmp_path):
    # Before, a rerun (or --overwrite) listed the folder the first run wrote inside a class
    # folder among its inputs: skipped, but every later input index shifted, exit 0.
    root = folders(tmp_path / "in", {k: v for k, v in images().items()
                                     if k.startswith("train/")})
    out = root / "train" / W0
    before = sorted(p.name for p in out.iterdir())
    result = run("es-imagenet", "--imagenet-root", root, "--out", out, "--min-events", "10",
                 code=2)
    line = result.output.strip().splitlines()[-1]
    assert "inside the input folder" in line and str(root / "train") in line
    assert sorted(p.name for p in out.iterdir()) == before
    run("es-imagenet", "--imagenet-root", root, "--out", root, "--min-events", "10", "--quiet")


def test_a_flat_val_beside_train_folders_of_sorted_labels_needs_its_own_table(run, tmp_path):
    # Before, train took labels 0, 1 by sorted order and val the ILSVRC2012 ground truth's
    # (65 for its first image): one folder, two label spaces, exit 0 for both splits.
    val = {f"val/{VAL[0][0]}": jpeg_bytes(synthetic(40))}
    root = folders(tmp_path / "in", {f"train/{name}/x.JPEG": jpeg_bytes(synthetic(k))
                                     for name, k in NAMED.items()} | val)
    result = run("es-imagenet", "--imagenet-root", root, "--split", "val", "--out",
                 tmp_path / "o", code=2)
    line = result.output.strip().splitlines()[-1]
    assert "sorted order" in line and "--val-labels" in line
    assert not (tmp_path / "o").exists()
    (tmp_path / "l.txt").write_text(f"{VAL[0][0]} 1\n")
    run("es-imagenet", "--imagenet-root", root, "--split", "val", "--out", tmp_path / "o",
        "--val-labels", tmp_path / "l.txt", "--min-events", "10", "--quiet")
