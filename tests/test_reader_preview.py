"""The Python reader over every format, and previews checked for their content."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from imagenet_synth import PHOTOS, photo, save
from nmnist_synth import make_tree as nmnist_tree
from nmnist_synth import oracle_2nmnist, write_bin_bytewise
from PIL import Image

from neurodata_cli import open_dataset, preview
from neurodata_cli.datasets.es_imagenet import draw as es_draw
from neurodata_cli.datasets.es_imagenet import odg
from neurodata_cli.datasets.es_imagenet.source import decode
from neurodata_cli.datasets.two_nmnist import draw as nm_draw
from neurodata_cli.datasets.yinyang import draw as yy_draw
from neurodata_cli.datasets.yinyang import walk as yinyang


def draw(data, split: str, index: int, out: Path) -> Path:
    """What ``neurodata preview`` draws for that sample."""
    return preview.save(data.spec.preview(data[split], split, index), out)


def folder(out: Path, dataset: str) -> Path:
    from neurodata_cli.datasets import get

    return out / dataset / get(dataset).version


# ---- Yin-Yang --------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["npy", "hdf5"])
def test_yinyang_reader_gives_the_generated_arrays(run, tmp_path, fmt):
    run("yinyang", "--format", fmt, "--encoding", "spike-times", "--out", tmp_path)
    data = open_dataset(folder(tmp_path, "yinyang"))
    assert data.splits == ["test", "train", "validation"]
    assert data.manifest["dataset"] == "yinyang"
    train = data["train"]
    samples, labels = yinyang.generate(5000, 42)
    assert len(train) == 5000
    for i in (0, 1, 4999):
        features, label = train[i]
        np.testing.assert_array_equal(features, samples[i])
        assert label == labels[i]
    record = train.record(3)
    assert record["spike_times"].shape == (5,) and int(record["labels"]) == labels[3]


def test_yinyang_preview_colours_match_classes(run, tmp_path):
    run("yinyang", "--out", tmp_path)
    data = open_dataset(folder(tmp_path, "yinyang"))
    out = draw(data, "train", 0, tmp_path / "yy.png")
    image = np.asarray(Image.open(out).convert("RGB"))
    columns = data["train"].columns()
    features, labels = columns["samples"], columns["labels"]
    hits = 0
    for (x, y), label in zip(features[:, :2], labels, strict=True):
        cx, cy = yy_draw.position(x, y, 0.5)
        hits += tuple(image[cy, cx]) == yy_draw.CLASS_COLOURS[label]
    # Dots drawn later can cover earlier ones of another class only along the class borders.
    assert hits / len(labels) > 0.97
    assert out.read_bytes() == draw(data, "train", 0, tmp_path / "b.png").read_bytes()


# ---- 2NMNIST ---------------------------------------------------------------------------------

def decode_bytes(data: bytes) -> np.ndarray:
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    t = ((raw[:, 2] & 127) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    return np.stack([raw[:, 0], raw[:, 1], t, raw[:, 2] >> 7], axis=1)


@pytest.mark.parametrize("fmt", ["hdf5", "bin"])
def test_2nmnist_reader_gives_the_superimposed_events(run, tmp_path, fmt):
    root = nmnist_tree(tmp_path / "nmnist", {"train": 4, "test": 2})
    run("2nmnist", "--nmnist-root", root, "--format", fmt, "--out", tmp_path, "--workers", "1")
    data = open_dataset(folder(tmp_path, "2nmnist"))
    want = oracle_2nmnist(str(root / "Train"))
    ds = data["train"]
    assert len(ds) == len(want)
    names = sorted(want, key=lambda n: int(n.split("_")[0]))
    for i, name in enumerate(names):
        events, label = ds[i]
        assert events.dtype.names == ("x", "y", "t", "p")
        expected = decode_bytes(want[name])
        expected = expected[np.argsort(expected[:, 2], kind="stable")]  # served in time order
        got = np.stack([events[k].astype(np.int64) for k in "xytp"], axis=1)
        np.testing.assert_array_equal(got, expected)
        digits = [int(d) for d in name[:-4].split("_")[1].split("-")]
        assert np.flatnonzero(label).tolist() == sorted(digits)
        frames = ds.to_frames(i, 5)
        assert frames.shape == (5, 2, 34, 34) and frames.sum() == len(events)
        record, info = ds.record(i), ds.info(i)
        assert info.keys() == record.keys() - {"events"}
        assert all(np.array_equal(info[k], record[k]) for k in info)


def test_2nmnist_shards_store_events_raw_for_plain_h5py(run, tmp_path):
    import h5py

    root = nmnist_tree(tmp_path / "nmnist", {"train": 4, "test": 2})
    run("2nmnist", "--nmnist-root", root, "--out", tmp_path, "--workers", "1")
    ds = open_dataset(folder(tmp_path, "2nmnist"))["train"]
    path, = folder(tmp_path, "2nmnist").glob("2nmnist-train-*.h5")
    with h5py.File(path) as f:
        assert f.attrs["event_codec"] == "raw" and f.attrs["event_chunk"] == 0
        assert f.attrs["event_filters"] == "contiguous, no filters; read with h5py"
        # Contiguous: the bytes at the field's offset are its values (what the reader maps).
        assert all(f["events"][k].chunks is None for k in "xytp")
        off = f["samples/offsets"][()]
        for i in range(len(ds)):
            events, _ = ds[i]
            for k in "xytp":
                np.testing.assert_array_equal(f["events"][k][off[i]:off[i + 1]], events[k])


def test_2nmnist_preview_shows_both_recordings(run, tmp_path):
    # Digit 3 fires only in the left half, digit 8 only in the right: a pair shows both halves.
    rng = np.random.RandomState(1)
    for d, lo in ((3, 0), (8, 17)):
        for k in range(3):
            n = 2000
            t = np.sort(rng.randint(0, 300_000, n))
            events = [(int(rng.randint(lo, lo + 17)), int(rng.randint(0, 34)), int(tt),
                       int(rng.randint(0, 2))) for tt in t]
            path = tmp_path / "nm" / "Train" / str(d) / f"{k:05d}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(write_bin_bytewise(events))
            (tmp_path / "nm" / "Test" / str(d)).mkdir(parents=True, exist_ok=True)
    (tmp_path / "nm" / "Test" / "3" / "00000.bin").write_bytes(write_bin_bytewise([(1, 1, 5, 1)]))
    run("2nmnist", "--nmnist-root", tmp_path / "nm", "--split", "train", "--out", tmp_path)
    data = open_dataset(folder(tmp_path, "2nmnist"))
    ds = data["train"]
    pair = next(i for i in range(len(ds)) if ds[i][1].sum() == 2)
    out = draw(data, "train", pair, tmp_path / "p.png")
    image = np.asarray(Image.open(out).convert("RGB"))
    for b in range(6):
        left, top, right, bottom = nm_draw.tile_box(b)
        tile = image[top:bottom, left:right]
        coloured = (tile != 255).any(axis=2)
        half = (right - left) // 2
        assert coloured[:, :half].mean() > 0.05 and coloured[:, half:].mean() > 0.05


# ---- ES-ImageNet -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for k, name in enumerate(PHOTOS):
        save(photo(name).convert("RGB"), root / "train" / f"n{k % 2:08d}" / f"{k:02d}.JPEG")
    return root


@pytest.mark.parametrize("fmt", ["hdf5", "npz"])
def test_es_imagenet_reader_gives_the_converted_events(run, tmp_path, photos, fmt):
    run("es-imagenet", "--imagenet-root", photos, "--format", fmt, "--out", tmp_path,
        "--shard-size", "3", "--workers", "1")
    data = open_dataset(folder(tmp_path, "es-imagenet"))
    ds = data["train"]
    sources = sorted(p for p in (photos / "train").rglob("*.JPEG"))
    assert len(ds) == len(sources)
    for i, src in enumerate(sources):
        events, label = ds[i]
        want = odg.convert(decode(src))
        for name, field in (("x", "col"), ("y", "row"), ("t", "t"), ("p", "p")):
            np.testing.assert_array_equal(events[name], getattr(want, field))
        assert label == int(src.parent.name[-1])
        frames = ds.to_frames(i)
        assert frames.shape == (2, 8, 224, 224)
        assert frames[0].sum() <= (want.p == 1).sum() and frames.sum() > 0.9 * len(want)


def test_reader_is_lazy_picklable_and_indexes_across_shards(run, tmp_path, photos):
    run("es-imagenet", "--imagenet-root", photos, "--out", tmp_path, "--shard-size", "3")
    ds = open_dataset(folder(tmp_path, "es-imagenet"))["train"]
    first = ds[4]
    copy = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(copy[4][0], first[0])
    np.testing.assert_array_equal(ds[-1][0], ds[len(ds) - 1][0])
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_a_torch_dataloader_takes_the_reader_as_it_is(run, tmp_path, photos):
    torch = pytest.importorskip("torch")
    run("es-imagenet", "--imagenet-root", photos, "--out", tmp_path, "--shard-size", "3")
    ds = open_dataset(folder(tmp_path, "es-imagenet"))["train"]

    class Frames(torch.utils.data.Dataset):
        def __len__(self):
            return len(ds)

        def __getitem__(self, i):
            return torch.from_numpy(ds.to_frames(i)).float(), ds[i][1]

    loader = torch.utils.data.DataLoader(Frames(), batch_size=3, num_workers=2)
    batches = list(loader)
    assert sum(len(b[1]) for b in batches) == len(ds)
    assert batches[0][0].shape == (3, 2, 8, 224, 224)
    # Structured event arrays pass through as they are (torch cannot collate them).
    events = list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2,
                                              collate_fn=lambda sample: sample))
    np.testing.assert_array_equal(events[2][0], ds[2][0])
    # With batches, the DataLoader reads each through read_many (its __getitems__ hook).
    calls = []
    ds.store.read_many = lambda indices, read=ds.store.read_many: calls.append(indices) or \
        read(indices)
    order = np.random.default_rng(0).permutation(len(ds)).tolist()
    batches = list(torch.utils.data.DataLoader(ds, batch_size=4, sampler=order,
                                               collate_fn=lambda batch: batch))
    assert len(calls) == len(batches) and sorted(sum(calls, [])) == sorted(order)
    served = [sample for batch in batches for sample in batch]
    for i, (events, label) in zip(order, served, strict=True):
        np.testing.assert_array_equal(events, ds[i][0])
        assert label == ds[i][1]


def gradient_magnitude_crop(rgb: np.ndarray) -> np.ndarray:
    """|grad V| of the resized value image, placed and cropped as the frames are."""
    v = odg.value_image(rgb).astype(np.float64)
    h, w = v.shape
    canvas = np.zeros((256, 256))
    dx, dy = (254 - h) // 2, (254 - w) // 2
    canvas[dx + 1:dx + 1 + h, dy + 1:dy + 1 + w] = v  # the trace's mean offset is about (1, 1)
    gy, gx = np.gradient(canvas)
    return np.hypot(gx, gy)[16:240, 16:240]


def test_es_imagenet_preview_has_8_frames_and_a_relief_of_the_photo(run, tmp_path, photos):
    run("es-imagenet", "--imagenet-root", photos, "--out", tmp_path)
    data = open_dataset(folder(tmp_path, "es-imagenet"))
    ds = data["train"]
    sources = sorted(p for p in (photos / "train").rglob("*.JPEG"))
    correlations = []
    for i, src in enumerate(sources):
        ei = es_draw.edge_integral(ds.to_frames(i))
        grad = gradient_magnitude_crop(decode(src))
        correlations.append(np.corrcoef(np.abs(ei).ravel(), grad.ravel())[0, 1])
    assert min(correlations) > 0.3, correlations

    out = draw(data, "train", 1, tmp_path / "es.png")
    image = np.asarray(Image.open(out).convert("RGB")).astype(int)
    frames = ds.to_frames(1)
    for t in range(1, 9):
        left, top, right, bottom = es_draw.frame_box(t)
        tile = image[top:bottom, left:right]
        red = (tile == preview.ON).all(axis=2) | (tile == preview.BOTH).all(axis=2)
        blue = (tile == preview.OFF).all(axis=2) | (tile == preview.BOTH).all(axis=2)
        on, off = frames[0, t - 1] > 0, frames[1, t - 1] > 0
        red[:16, :40] = on[:16, :40]  # the "t=N" caption covers a corner
        blue[:16, :40] = off[:16, :40]
        np.testing.assert_array_equal(red, on)
        np.testing.assert_array_equal(blue, off)
    left, top, right, bottom = es_draw.relief_box()
    relief = image[top:bottom, left:right]
    assert (relief[..., 0] == relief[..., 1]).all() and (relief[..., 0] == relief[..., 2]).all()
    assert relief[..., 0].std() > 5


def test_preview_command_prints_the_path_and_refuses_bad_choices(run, tmp_path, photos):
    run("es-imagenet", "--imagenet-root", photos, "--out", tmp_path, "--limit", "2")
    target = folder(tmp_path, "es-imagenet")
    result = run("preview", target, "--index", "1", "-o", tmp_path / "x.png")
    assert result.output.strip() == str(tmp_path / "x.png")
    assert Image.open(tmp_path / "x.png").size[0] > 1000
    assert "--index 5" in run("preview", target, "--index", "5", code=2).output
    assert "--split val" in run("preview", target, "--split", "val", code=2).output
    run("verify", target)  # the preview was written elsewhere: the folder is untouched


def test_photo_set_is_real():
    assert all(photo(name).size[0] >= 300 for name in PHOTOS)


@pytest.mark.parametrize("dataset", ["2nmnist", "es-imagenet"])
def test_threads_share_a_reader_while_it_opens_and_closes_shards(run, tmp_path, photos, dataset):
    """Threads reading one reader across many shards each get their sample whole, never an
    error (memory-mapped raw fields and filtered ones)."""
    from concurrent.futures import ThreadPoolExecutor

    if dataset == "2nmnist":
        root = nmnist_tree(tmp_path / "nmnist", {"train": 12, "test": 2})
        run("2nmnist", "--nmnist-root", root, "--out", tmp_path, "--workers", "1",
            "--shard-size", "1", "--split", "train")
    else:
        run("es-imagenet", "--imagenet-root", photos, "--out", tmp_path, "--shard-size", "1")
    ds = open_dataset(folder(tmp_path, dataset))["train"]
    want = [ds[i][0] for i in range(len(ds))]
    assert len(want) > 4
    order = np.random.default_rng(0).integers(0, len(ds), 800).tolist()

    def read(i: int) -> bool:
        return np.array_equal(ds[i][0], want[i])

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(read, order))


@pytest.mark.parametrize("fmt", ["hdf5", "npz"])
def test_read_many_gives_each_sample_in_the_order_asked(run, tmp_path, photos, fmt):
    run("es-imagenet", "--imagenet-root", photos, "--format", fmt, "--out", tmp_path,
        "--shard-size", "3", "--quiet")
    ds = open_dataset(folder(tmp_path, "es-imagenet"))["train"]
    for batch in ([4, 0, 5, 1], [2, 3], list(range(len(ds)))[::-1], [6]):
        got = ds.read_many(batch)
        for i, (events, label) in zip(batch, got, strict=True):
            np.testing.assert_array_equal(events, ds[i][0])
            assert label == ds[i][1]


def test_event_shards_record_their_codec_and_plain_h5py_reads_them(run, tmp_path, photos):
    import h5py

    from neurodata_cli.datasets import get

    codec = get("es-imagenet").features.events.codec
    run("es-imagenet", "--imagenet-root", photos, "--out", tmp_path, "--quiet")
    ds = open_dataset(folder(tmp_path, "es-imagenet"))["train"]
    path = next(folder(tmp_path, "es-imagenet").glob("*.h5"))
    if codec.name in ("zstd", "blosc2", "lz4"):
        import hdf5plugin  # noqa: F401  (what docs/format.md tells a plain h5py user)
    with h5py.File(path) as f:
        assert f.attrs["event_codec"] == codec.name
        assert f.attrs["event_codec_level"] == codec.level
        assert f.attrs["event_chunk"] == codec.chunk == f["events/x"].chunks[0]
        off = f["samples/offsets"][()]
        for i in range(len(off) - 1):
            for k in "xytp":
                np.testing.assert_array_equal(f["events"][k][off[i]:off[i + 1]], ds[i][0][k])
