"""2NMNIST: the .bin codec, the procedure against a plain oracle, inputs, outputs, errors."""

from __future__ import annotations

import json
import stat
import sys
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
from helpers import data_sums, read_shard, reference
from hypothesis import given, settings
from hypothesis import strategies as st
from nmnist_synth import make_tree, oracle_2nmnist, recording, zip_tree

from neurodata_cli import open_dataset
from neurodata_cli.datasets.two_nmnist import binfmt as nmnist_bin
from neurodata_cli.datasets.two_nmnist import procedure
from neurodata_cli.datasets.two_nmnist.source import Recording
from neurodata_cli.errors import RunError

VERSION = ("2nmnist", "2.1.0")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("nmnist"), {"train": 7, "test": 3}, seed=3)


def out_folder(out):
    return out.joinpath(*VERSION)


# ---- the .bin codec ---------------------------------------------------------------------------

def test_real_recording_round_trips_byte_for_byte(tmp_path):
    data = reference("nmnist", "sample_nmnist.bin").read_bytes()
    events = nmnist_bin.decode(data)
    assert events.size == 4325 and set(np.unique(events["p"])) == {0, 1}
    assert nmnist_bin.encode(events) == data
    (tmp_path / "x.bin").write_bytes(
        nmnist_bin.encode(nmnist_bin.read(reference("nmnist", "sample_nmnist.bin"))))
    assert (tmp_path / "x.bin").read_bytes() == data


def test_decode_matches_the_bytewise_reader():
    from nmnist_synth import read_bin_bytewise

    data = reference("nmnist", "sample_nmnist.bin").read_bytes()
    ev = nmnist_bin.decode(data)
    path = reference("nmnist", "sample_nmnist.bin")
    assert list(zip(ev["x"], ev["y"], ev["t"], ev["p"], strict=True)) == read_bin_bytewise(path)


def test_a_length_not_a_multiple_of_5_names_the_file():
    with pytest.raises(RunError, match="broken.bin"):
        nmnist_bin.decode(b"\x00" * 12, "broken.bin")


@pytest.mark.parametrize("field,value", [("t", 1 << 23), ("x", 256), ("y", 300), ("p", 2),
                                         ("x", -1)])
def test_the_writer_refuses_what_the_format_cannot_hold(field, value):
    ev = {"x": np.array([1]), "y": np.array([1]), "t": np.array([5]), "p": np.array([1])}
    ev[field] = np.array([value])
    with pytest.raises(RunError, match=f"{field} value"):
        nmnist_bin.encode(ev, "out.bin")


# ---- the procedure ----------------------------------------------------------------------------

@pytest.mark.parametrize("seed,max_digit,swap", [(42, 9, False), (7, 9, False), (42, 4, False),
                                                 (1, 9, True)])
def test_bin_output_equals_the_oracle_from_folders(run, tmp_path, tree, seed, max_digit, swap):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"reverse_polarity: {str(swap).lower()}\n")
    run("2nmnist", "--nmnist-root", tree, "--format", "bin", "--seed", seed, "--max-digit",
        max_digit, "--config", cfg, "--out", tmp_path, "--quiet")
    folder = out_folder(tmp_path)
    for name in ("Train", "Test"):
        want = oracle_2nmnist(str(tree / name), seed, max_digit, swap)
        got = {p.name: p.read_bytes() for p in (folder / name).iterdir()}
        assert got == want
    assert run("verify", folder).exit_code == 0


def test_zips_read_in_place_give_the_same_bytes_as_folders(run, tmp_path, tree):
    zips = zip_tree(tree, tmp_path / "zips", names=("train.zip", "Test.zip"))
    run("2nmnist", "--nmnist-root", tree, "--format", "bin", "--out", tmp_path / "a", "--quiet")
    run("2nmnist", "--nmnist-root", zips, "--format", "bin", "--out", tmp_path / "b", "--quiet")
    a, b = out_folder(tmp_path / "a"), out_folder(tmp_path / "b")
    assert data_sums(a) == data_sums(b)
    assert sorted(p.name for p in zips.iterdir()) == ["Test.zip", "train.zip"]  # not extracted


def test_hdf5_events_equal_the_bin_bytes(run, tmp_path, tree):
    run("2nmnist", "--nmnist-root", tree, "--format", "bin", "--out", tmp_path / "b", "--quiet")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("shard_size: 11\n")
    run("2nmnist", "--nmnist-root", tree, "--config", cfg, "--out", tmp_path / "h", "--quiet")
    bins, h5 = out_folder(tmp_path / "b"), out_folder(tmp_path / "h")
    for split, name in (("train", "Train"), ("test", "Test")):
        shards = sorted(h5.glob(f"2nmnist-{split}-*-of-*.h5"))
        assert len(shards) > 1 and shards[0].name.endswith(f"-00000-of-{len(shards):05d}.h5")
        index = 0
        for path in shards:
            shard = read_shard(path)
            assert shard.attrs["split"] == split and list(shard.attrs["sensor_size"]) == [34, 34, 2]
            assert shard.attrs["time_unit"] == "us" and shard.attrs["schema_version"] == 1
            assert shard.attrs["event_order"].startswith("by t")
            assert shard.events["x"].dtype == np.uint8 and shard.events["t"].dtype == np.uint32
            for i in range(len(shard.offsets) - 1):
                lo, hi = shard.offsets[i], shard.offsets[i + 1]
                ev = {k: shard.events[k][lo:hi] for k in "xytp"}
                labels = np.flatnonzero(shard.samples["label"][i])
                sources = shard.samples["source"][i].split("+")
                digits = [int(s.split("/")[0]) for s in sources]
                assert sorted(digits) == list(labels)
                expected = bins / name / f"{index}_{'-'.join(map(str, digits))}.bin"
                # The same events, in time order: a stable sort of the authors' order.
                authors = nmnist_bin.read(expected)
                authors = authors[np.argsort(authors["t"], kind="stable")]
                assert nmnist_bin.encode(ev) == nmnist_bin.encode(authors)
                assert shard.samples["index"][i] == index
                index += 1
        assert index == len(list((bins / name).iterdir()))


def test_provenance_csv_and_manifest_counts(run, tmp_path, tree):
    run("2nmnist", "--nmnist-root", tree, "--format", "bin", "--split", "test", "--out",
        tmp_path, "--quiet")
    folder = out_folder(tmp_path)
    rows = (folder / "pairs-test.csv").read_text().splitlines()
    assert rows[0] == "sample,labels,sources,reversed"
    m = json.loads((folder / "manifest.json").read_text())
    stats = m["splits"]["test"]["stats"]
    assert stats["samples"] == len(rows) - 1 == stats["superimposed"] + stats["single"]
    pairs = [r.split(",") for r in rows[1:]]
    assert sum(1 for r in pairs if "-" in r[1]) == stats["superimposed"]
    for _sample, _labels, sources, rev in pairs:
        srcs = sources.split("+")
        assert (rev == srcs[1]) if len(srcs) == 2 else rev == ""
    assert stats["inputs"]["recordings"] == 30 and len(stats["inputs"]["sha256"]) == 64
    assert "pairs-test.csv" in (folder / "SHA256SUMS").read_text()


def test_hdf5_manifest_records_libhdf5(run, tmp_path, tree):
    import h5py

    run("2nmnist", "--nmnist-root", tree, "--split", "test", "--out", tmp_path, "--quiet")
    m = json.loads((out_folder(tmp_path) / "manifest.json").read_text())
    assert m["libraries"]["libhdf5"] == h5py.version.hdf5_version
    assert m["libraries"]["h5py"] == h5py.__version__


def test_splits_can_be_added_to_one_folder_one_at_a_time(run, tmp_path, tree):
    run("2nmnist", "--nmnist-root", tree, "--split", "train", "--out", tmp_path, "--quiet")
    run("2nmnist", "--nmnist-root", tree, "--split", "test", "--out", tmp_path, "--quiet")
    folder = out_folder(tmp_path)
    m = json.loads((folder / "manifest.json").read_text())
    assert list(m["splits"]) == ["test", "train"]
    assert run("verify", folder).exit_code == 0
    again = ["2nmnist", "--nmnist-root", tree, "--split", "train", "--out", tmp_path]
    assert "reused" in run(*again).output  # the same config: nothing to do
    assert "train split" in run(*again, "--seed", "7", code=1).output
    together = tmp_path / "together"
    run("2nmnist", "--nmnist-root", tree, "--out", together, "--quiet")
    assert (out_folder(together) / "SHA256SUMS").read_text() == (folder / "SHA256SUMS").read_text()


def test_one_and_two_workers_give_identical_bytes(run, tmp_path, tree):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("shard_size: 9\n")
    for workers in (1, 2):
        run("2nmnist", "--nmnist-root", tree, "--workers", workers, "--config", cfg, "--out",
            tmp_path / str(workers), "--quiet")
    assert ((out_folder(tmp_path / "1") / "SHA256SUMS").read_bytes()
            == (out_folder(tmp_path / "2") / "SHA256SUMS").read_bytes())


# ---- k-NMNIST ---------------------------------------------------------------------------------

def plain_k_groups(recs, seed, k):
    """The documented rule, written plainly: draw n in 1..K, cut before a repeated digit."""
    sources = sorted(recs, key=lambda r: r.key)
    rng = np.random.RandomState(seed)
    rng.shuffle(sources)
    groups, i = [], 0
    while i < len(sources):
        n = rng.randint(1, k + 1)
        group = [sources[i]]
        while len(group) < n and i + len(group) < len(sources):
            nxt = sources[i + len(group)]
            if nxt.digit in [r.digit for r in group]:
                break
            group.append(nxt)
        groups.append(group)
        i += len(group)
    return groups


@pytest.mark.parametrize("k", [2, 3, 5, 10])
def test_k_rule_reduces_to_the_paper_and_follows_its_definition(k):
    rng = np.random.RandomState(k)
    recs = [Recording(f"{d}/{rng.randint(0, 99999):05d}.bin", d)
            for d in rng.randint(0, 10, size=400)]
    recs = list({r.rel: r for r in recs}.values())
    groups = procedure.make_groups(recs, 42, k)
    want = plain_k_groups(recs, 42, k)
    assert [list(g.recordings) for g in groups] == want
    assert sorted(r.rel for g in groups for r in g.recordings) == sorted(r.rel for r in recs)
    for g in groups:
        assert 1 <= len(g.recordings) <= k and len(set(g.digits)) == len(g.digits)
        assert g.reversed == tuple(i % 2 == 1 for i in range(len(g.recordings)))


def test_k3_writes_reversed_recordings_first(run, tmp_path, tree):
    run("2nmnist", "--nmnist-root", tree, "--k", "3", "--split", "test", "--format", "bin",
        "--out", tmp_path, "--quiet")
    folder = tmp_path / "3nmnist" / VERSION[1]  # a 3-NMNIST is not called 2NMNIST
    assert not (tmp_path / "2nmnist").exists()
    m = json.loads((folder / "manifest.json").read_text())
    assert (m["dataset"], m["builder"], m["config"]["k"]) == ("3nmnist", "2nmnist", 3)
    rows = [r.split(",") for r in (folder / "pairs-test.csv").read_text().splitlines()[1:]]
    triple = next(r for r in rows if len(r[2].split("+")) == 3)
    a, b, c = (nmnist_bin.decode((tree / "Test" / s).read_bytes()) for s in triple[2].split("+"))
    got = nmnist_bin.decode((folder / "Test" / f"{triple[0]}_{triple[1]}.bin").read_bytes())
    b_reversed = b[::-1].copy()
    b_reversed["t"] = b["t"].max() - b_reversed["t"]
    want = np.concatenate([b_reversed, a, c])
    assert got.tobytes() == want.tobytes()
    data = open_dataset(folder)
    assert data.dataset == "3nmnist" and len(data["test"]) == len(rows)
    result = run("preview", folder, "--split", "test", "-o", tmp_path / "p.png")
    assert result.output.strip().endswith("p.png")
    assert data["test"].dataset == "3nmnist"


# ---- bad input --------------------------------------------------------------------------------

def test_a_failing_shard_stops_a_two_worker_run_without_hanging(run, tmp_path):
    # Every recording is broken, so whichever process (this one or the pool's) takes a shard
    # fails; the run must end with the error, not wait for the rest.
    tree = make_tree(tmp_path / "t", {"train": 1, "test": 2}, seed=2)
    for path in (tree / "Test").rglob("*.bin"):
        path.write_bytes(path.read_bytes()[:-1])
    cfg = tmp_path / "small.yaml"
    cfg.write_text("shard_size: 1\n")
    result = run("2nmnist", "--nmnist-root", tree, "--split", "test", "--workers", "2",
                 "--config", cfg, "--out", tmp_path / "o", code=1)
    assert "5-byte" in result.output
    assert not out_folder(tmp_path / "o").exists()


def test_a_truncated_recording_exits_1_naming_it_and_leaves_nothing_complete(run, tmp_path):
    tree = make_tree(tmp_path / "t", {"train": 2, "test": 1}, seed=1)
    bad = sorted((tree / "Test" / "4").iterdir())[0]
    bad.write_bytes(bad.read_bytes()[:-2])
    result = run("2nmnist", "--nmnist-root", tree, "--out", tmp_path / "o", code=1)
    assert bad.name in result.output and "5-byte" in result.output
    assert not out_folder(tmp_path / "o").exists()


def test_an_oversized_recording_exits_1_naming_it_and_leaves_nothing_complete(run, tmp_path):
    from neurodata_cli.datasets.two_nmnist.source import MAX_RECORDING_BYTES

    tree = make_tree(tmp_path / "t", {"train": 2, "test": 1}, seed=1)
    bad = sorted((tree / "Test" / "4").iterdir())[0]
    with open(bad, "r+b") as f:  # sparse: a size past the limit, without writing it
        f.truncate(MAX_RECORDING_BYTES + 5)
    result = run("2nmnist", "--nmnist-root", tree, "--out", tmp_path / "o", code=1)
    assert bad.name in result.output and "more than an NMNIST recording" in result.output
    assert not out_folder(tmp_path / "o").exists()


def test_zip_members_outside_the_archive_are_refused(run, tmp_path, tree):
    zips = zip_tree(tree, tmp_path / "zips")
    with zipfile.ZipFile(zips / "Test.zip", "a") as zf:
        zf.writestr("Test/../../evil.bin", recording(np.random.RandomState(0), 10))
    result = run("2nmnist", "--nmnist-root", zips, "--split", "test", "--out", tmp_path / "o",
                 code=1)
    assert "evil.bin" in result.output and "Test.zip" in result.output
    assert not (tmp_path / "o").exists()


# ---- zip members are read as unzip would, within bounds ---------------------------------------

def patch_member(archive, name: str, local: dict[int, bytes], central: dict[int, bytes]) -> None:
    """Overwrite fields of ``name``'s local header and central directory record (offsets from
    each record's start), to make archives zipfile itself will not write."""
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(name)
    blob = bytearray(archive.read_bytes())
    record = blob.find(b"PK\x01\x02")
    while blob[record + 46:record + 46 + len(name)] != name.encode():
        record = blob.find(b"PK\x01\x02", record + 4)
        assert record > 0
    for start, fields in ((info.header_offset, local), (record, central)):
        for offset, value in fields.items():
            blob[start + offset:start + offset + len(value)] = value
    archive.write_bytes(bytes(blob))


def lying_member(zips, name: str, size: int, claim: int) -> None:
    """Add ``name``: ``size`` zero bytes, deflated, whose headers claim ``claim`` bytes (with the
    CRC of the first ``claim``, so zipfile's own cut at the claimed size passes its CRC check)."""
    with zipfile.ZipFile(zips / "Train.zip", "a", zipfile.ZIP_DEFLATED) as zf:
        with zf.open(name, "w") as f:
            for _ in range(size >> 20):
                f.write(bytes(1 << 20))
    crc = zlib.crc32(bytes(claim)).to_bytes(4, "little")
    claimed = claim.to_bytes(4, "little")
    patch_member(zips / "Train.zip", name, {14: crc, 22: claimed}, {16: crc, 24: claimed})


def test_a_member_that_inflates_past_its_declared_size_is_refused_in_bounded_memory(run, tmp_path):
    tree = make_tree(tmp_path / "t", {"train": 1, "test": 1}, seed=4)
    zips = zip_tree(tree, tmp_path / "zips")
    lying_member(zips, "Train/4/liar.bin", 128 << 20, 1000)  # a 1000-byte claim, 128 MiB inside
    assert (zips / "Train.zip").stat().st_size < 2**20
    tracemalloc.start()
    try:
        result = run("2nmnist", "--nmnist-root", zips, "--split", "train", "--workers", "1",
                     "--out", tmp_path / "o", code=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Train.zip" in lines[0] and "Train/4/liar.bin" in lines[0]
    assert "more than the 1000 bytes it declares" in lines[0]
    assert peak < 32 << 20  # not the 128 MiB the member holds
    assert not out_folder(tmp_path / "o").exists()


def _symlink(zf: zipfile.ZipFile, name: str) -> None:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix: unzip would make a link
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    zf.writestr(info, "../3/000001.bin")  # 15 bytes: three "events" of link text


def _bzip2(zf: zipfile.ZipFile, name: str) -> None:
    zf.writestr(name, recording(np.random.RandomState(1), 10), zipfile.ZIP_BZIP2)


@pytest.mark.parametrize("make,words", [
    (_symlink, ["symbolic link"]),
    (_bzip2, ["method 12"]),
    ({8: (99).to_bytes(2, "little")}, ["method 99"]),  # no method zipfile knows
    ({6: (1).to_bytes(2, "little")}, ["encrypted"]),  # flag bit 0
])
def test_zip_members_zipfile_cannot_read_as_a_recording_are_one_line(run, tmp_path, make, words):
    tree = make_tree(tmp_path / "t", {"train": 1, "test": 1}, seed=4)
    zips = zip_tree(tree, tmp_path / "zips")
    name = "Train/3/odd.bin"
    with zipfile.ZipFile(zips / "Train.zip", "a", zipfile.ZIP_DEFLATED) as zf:
        if callable(make):
            make(zf, name)
        else:
            zf.writestr(name, recording(np.random.RandomState(1), 10))
    if not callable(make):  # the same field in the local header, 2 bytes later centrally
        patch_member(zips / "Train.zip", name, make, {k + 2: v for k, v in make.items()})
    result = run("2nmnist", "--nmnist-root", zips, "--split", "train", "--workers", "1",
                 "--format", "bin", "--out", tmp_path / "o", code=1)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Train.zip" in lines[0] and name in lines[0]
    assert all(w in lines[0] for w in words)
    assert not out_folder(tmp_path / "o").exists()


def test_a_symlinked_recording_in_a_folder_is_read_through(run, tmp_path, tree):
    links = tmp_path / "links"
    for path in sorted(tree.rglob("*.bin")):
        (links / path.relative_to(tree)).parent.mkdir(parents=True, exist_ok=True)
        (links / path.relative_to(tree)).symlink_to(path)
    for root, out in ((tree, "a"), (links, "b")):
        run("2nmnist", "--nmnist-root", root, "--split", "test", "--format", "bin", "--out",
            tmp_path / out, "--quiet")
    assert data_sums(out_folder(tmp_path / "a")) == data_sums(out_folder(tmp_path / "b"))


@pytest.mark.parametrize("layout", ["folder", "zip"])
def test_an_event_off_the_34x34_sensor_is_refused_naming_the_recording(run, tmp_path, layout):
    tree = make_tree(tmp_path / "t", {"train": 1, "test": 1}, seed=4)
    bad = sorted((tree / "Test" / "2").iterdir())[0]
    data = bytearray(bad.read_bytes())
    data[5 * 7:5 * 7 + 2] = b"\xff\xff"  # event 7 at x = y = 255
    bad.write_bytes(bytes(data))
    root = tree if layout == "folder" else zip_tree(tree, tmp_path / "zips")
    result = run("2nmnist", "--nmnist-root", root, "--split", "test", "--out", tmp_path / "o",
                 code=1)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"2/{bad.name}" in lines[0]
    assert "x = 255, y = 255" in lines[0] and "34x34" in lines[0]
    assert not out_folder(tmp_path / "o").exists()


@pytest.mark.parametrize("args,code,words", [
    ([], 2, ["--nmnist-root", "--download"]),
    (["--nmnist-root", "X", "--download"], 2, ["exactly one"]),
    (["--nmnist-root", "MISSING"], 2, ["MISSING"]),
    (["--nmnist-root", "EMPTY"], 1, ["Train"]),
    (["--nmnist-root", "X", "--k", "11"], 2, ["--k"]),
    (["--nmnist-root", "X", "--format", "npz"], 2, ["--format"]),
])
def test_usage_and_input_errors(run, tmp_path, args, code, words):
    (tmp_path / "EMPTY").mkdir()
    args = [str(tmp_path / a) if a in ("X", "MISSING", "EMPTY") else a for a in args]
    result = run("2nmnist", *args, "--out", tmp_path / "o", code=code)
    for word in words:
        assert word in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("codec", ["raw", "zstd"])
def test_event_shard_bytes_do_not_depend_on_when_objects_are_freed(tmp_path, codec):
    """A sampling profiler (Dask workers run one) keeps frames, and with them h5py objects,
    alive for a while; HDF5 must place the file's objects the same all the same. Events given
    in one block or sample by sample make the same file too."""

    from neurodata_cli.datasets.base import Block, Shard
    from neurodata_cli.formats.hdf5 import HDF5, Codec

    Coded = with_codec(Codec(codec, 5, 1 << 14))

    rng = np.random.default_rng(0)
    n = 150_000
    events = {"x": rng.integers(0, 34, n).astype(np.uint8),
              "y": rng.integers(0, 34, n).astype(np.uint8),
              "t": np.sort(rng.integers(0, 10**6, n)).astype(np.uint32),
              "p": rng.integers(0, 2, n).astype(np.uint8)}
    columns = {"label": np.zeros((2, 10), np.uint8), "source": np.array(["a", "b"], dtype=object)}

    def whole():
        return [Block(columns, events, np.array([n // 2, n - n // 2], np.uint64))]

    def by_sample():
        return [Block({k: v[i:i + 1] for k, v in columns.items()},
                      {k: v[a:b] for k, v in events.items()}, np.array([b - a], np.uint64))
                for i, (a, b) in enumerate(((0, n // 2), (n // 2, n)))]

    class Cfg:
        seed, k, reverse_polarity = 42, 2, False

    kept = []

    def keep_frames(frame, event, arg):
        if event == "return":
            kept.append(frame)

    digests = []
    for k, make in enumerate((whole, by_sample, whole)):
        if k == 2:
            sys.setprofile(keep_frames)
        try:
            out = tmp_path / str(k)
            files = HDF5.write(out, Coded(), Cfg(), Shard("train", 0, 1, 2), make())
        finally:
            sys.setprofile(None)
        digests.append(files[0]["sha256"])
    assert kept
    assert digests[0] == digests[1] == digests[2]


CODECS = ["raw", "gzip", "zstd", "blosc2", "lz4"]


@pytest.mark.parametrize("codec", CODECS)
def test_event_fields_in_any_codec_read_back_as_given(tmp_path, codec):
    """Each codec, from blocks of wider dtypes than the stored ones and of sizes that straddle
    chunks: plain h5py (with hdf5plugin) and the reader give back the events, and the shard
    names its codec."""
    import h5py
    import hdf5plugin  # noqa: F401

    from neurodata_cli.datasets.base import Block, Shard
    from neurodata_cli.formats.hdf5 import HDF5, Codec

    c = 1000

    Coded = with_codec(Codec(codec, 3, c))

    rng = np.random.default_rng(1)
    sizes = [1, c - 1, 0, c, 2 * c + 808, 3]
    events = [{"x": rng.integers(0, 34, n), "y": rng.integers(0, 34, n),
               "t": np.sort(rng.integers(0, 2**32, n)), "p": rng.integers(0, 2, n)}
              for n in sizes]
    blocks = [Block({"label": np.zeros((1, 10), np.uint8)}, ev,
                    np.array([len(ev["x"])], np.uint64)) for ev in events]

    class Cfg:
        seed, k, reverse_polarity = 42, 2, False

    files = HDF5.write(tmp_path, Coded(), Cfg(), Shard("train", 0, 1, len(sizes)), blocks)
    with h5py.File(next(tmp_path.glob("*.h5"))) as f:
        assert f.attrs["event_codec"] == codec
        assert f.attrs["event_chunk"] == (0 if codec == "raw" else c)
        for k in "xytp":
            stored = f["events"][k]
            assert (stored.chunks is None) == (codec == "raw")
            np.testing.assert_array_equal(stored[()], np.concatenate([e[k] for e in events]))
    store = HDF5.open(tmp_path, "train", files)
    for order in (range(len(sizes)), [4, 0, 5, 2, 1, 3]):
        for i in order:
            got = store.read(i)["events"]
            for k in "xytp":
                np.testing.assert_array_equal(got[k], events[i][k])


def with_codec(codec, **dtypes):
    """2NMNIST with its events stored by ``codec`` (and in other dtypes)."""
    from dataclasses import replace

    from neurodata_cli.datasets.two_nmnist import TwoNMNIST

    class Coded(TwoNMNIST):
        features = replace(TwoNMNIST.features,
                           events=replace(TwoNMNIST.features.events, codec=codec, **dtypes))

    return Coded


def test_shards_say_how_events_are_stored(tmp_path):
    """A dataset (a plugin) stores the event dtypes it declares, and its shards record the
    chunk size and filters."""
    import h5py

    from neurodata_cli.datasets.base import Block, Shard
    from neurodata_cli.formats.hdf5 import HDF5, Codec

    Undeclared = with_codec(Codec("gzip", 3, 1000), x=np.uint16, t=np.int64)

    n = 2500
    events = {"x": np.arange(n, dtype=np.uint16) % 34, "y": np.zeros(n, np.uint8),
              "t": np.arange(n, dtype=np.int64), "p": np.ones(n, np.uint8)}

    class Cfg:
        seed, k, reverse_polarity = 42, 2, False

    block = Block({"label": np.zeros((1, 10), np.uint8)}, events, np.array([n], np.uint64))
    HDF5.write(tmp_path, Undeclared(), Cfg(), Shard("train", 0, 1, 1), [block])
    with h5py.File(next(tmp_path.glob("*.h5"))) as f:
        assert f.attrs["event_chunk"] == 1000 == f["events/t"].chunks[0]
        assert f.attrs["event_codec"] == "gzip" and f.attrs["event_codec_level"] == 3
        assert f.attrs["event_filters"] == ("chunks of 1000 events, shuffle, gzip level 3; "
                                            "read with h5py")
        assert f["events/x"].dtype == np.uint16 and f["events/t"].dtype == np.int64
        for k in "xytp":
            np.testing.assert_array_equal(f["events"][k][()], events[k])


def random_group(sizes: list[int], span: int, in_order: bool,
                 seed: int) -> tuple[procedure.Group, list[bytes]]:
    """A group of len(sizes) recordings of random .bin events (every other one reversed)."""
    rng = np.random.default_rng(seed)
    recordings = []
    for n in sizes:
        t = rng.integers(0, span, n)
        if in_order:
            t = np.sort(t)
        raw = np.empty((n, 5), np.uint8)
        raw[:, 0], raw[:, 1] = rng.integers(0, 256, n), rng.integers(0, 256, n)
        raw[:, 2] = (rng.integers(0, 2, n) << 7) | (t >> 16)
        raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
        recordings.append(raw.tobytes())
    group = procedure.Group(0, tuple(Recording(f"{d}/r.bin", d) for d in range(len(sizes))))
    return group, recordings


def check_sample_events(group: procedure.Group, recordings: list[bytes], swap: bool) -> None:
    """A sample's events as built (the authors' order) and as served (stably by t) against an
    oracle written here: the superimposed .bin bytes decoded by the format's spec (x, y, then p
    in the top bit and t in 23 bits), and those stably sorted by t. Another sample before it
    in the block must not move."""
    from neurodata_cli.datasets import two_nmnist

    raw = np.frombuffer(procedure.superimpose(group, recordings, swap), np.uint8).reshape(-1, 5)
    raw = raw.astype(np.uint32)
    want = {"x": raw[:, 0], "y": raw[:, 1], "p": raw[:, 2] >> 7,
            "t": ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]}
    order = np.argsort(want["t"], kind="stable")
    first = (procedure.Group(0, group.recordings[:1]), recordings[:1])
    block = two_nmnist.event_block((first[0], group), [first[1], recordings], {}, swap)
    ahead, total = int(block.counts[0]), len(raw)
    served = two_nmnist.TwoNMNIST.features.events.served(block.events, block.counts)
    before = np.argsort(block.events["t"][:ahead], kind="stable")
    for k in "xytp":
        np.testing.assert_array_equal(block.events[k][ahead:], want[k])
        np.testing.assert_array_equal(served[k][ahead:], want[k][order])
        np.testing.assert_array_equal(served[k][:ahead], block.events[k][:ahead][before])
        assert len(served[k]) == ahead + total


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(0, 400), min_size=1, max_size=4),
       span=st.sampled_from([3, 1000, 2**23]), order=st.sampled_from(["sorted", "any"]),
       swap=st.booleans(), seed=st.integers(0, 2**16))
def test_samples_equal_the_superimposed_bytes_decoded_and_sorted(sizes, span, order, swap,
                                                                 seed):
    """Groups of 1 to 4 recordings, times in order or not, with many equal times or few."""
    check_sample_events(*random_group(sizes, span, order == "sorted", seed), swap)
