"""What users load works in tonic: 2NMNIST in time order, ES-ImageNet framed by a stated call."""

from __future__ import annotations

import numpy as np
import pytest
from imagenet_synth import make_tree as imagenet_tree
from nmnist_synth import make_tree as nmnist_tree

from neurodata_cli import open_dataset
from neurodata_cli.datasets import get
from neurodata_cli.datasets.two_nmnist import binfmt

T = pytest.importorskip("tonic.transforms")  # a dev extra: CI has it


def plain_time_sorted(events: np.ndarray) -> np.ndarray:
    """The reference: events ordered by t, equal times in their given order, written plainly."""
    keyed = sorted(range(len(events)), key=lambda k: (int(events["t"][k]), k))
    return events[keyed]


def plain_frames(events: np.ndarray, n_bins: int) -> np.ndarray:
    """Event counts over equal time bins, one event at a time ([T, 2, 34, 34], channel = p)."""
    out = np.zeros((n_bins, 2, 34, 34), dtype=np.int64)
    t0, t1 = int(events["t"].min()), int(events["t"].max())
    for e in events:
        out[(int(e["t"]) - t0) * n_bins // (t1 - t0 + 1), e["p"], e["y"], e["x"]] += 1
    return out


@pytest.mark.parametrize("fmt", ["hdf5", "bin"])
def test_tonic_frames_and_denoises_2nmnist_samples_as_their_time_sorted_events(run, tmp_path,
                                                                              fmt):
    tree = nmnist_tree(tmp_path / "nm", {"train": 3, "test": 1})
    run("2nmnist", "--nmnist-root", tree, "--split", "train", "--format", "bin", "--out",
        tmp_path / "authors", "--quiet")
    run("2nmnist", "--nmnist-root", tree, "--split", "train", "--format", fmt, "--out",
        tmp_path / "ours", "--quiet")
    version = get("2nmnist").version
    authors = tmp_path / "authors" / "2nmnist" / version / "Train"
    ds = open_dataset(tmp_path / "ours" / "2nmnist" / version)["train"]
    frame = T.ToFrame(sensor_size=(34, 34, 2), n_time_bins=10)
    denoise = T.Denoise(filter_time=10_000)
    unsorted_differs = 0
    for i in range(len(ds)):
        events, label = ds[i]
        raw = binfmt.read(next(authors.glob(f"{i}_*.bin")))  # the authors' order
        reference = plain_time_sorted(raw)
        assert np.array_equal(frame(events), frame(reference))
        assert np.array_equal(denoise(events), denoise(reference))
        assert np.array_equal(ds.to_frames(i, 10), plain_frames(reference, 10))
        if label.sum() == 2:
            unsorted_differs += not np.array_equal(frame(raw), frame(reference))
    assert unsorted_differs  # the authors' order would have binned them wrongly


def test_the_stated_tonic_call_gives_es_imagenet_frames(run, tmp_path):
    imagenet_tree(tmp_path / "im", classes=2, per_class=3)
    run("es-imagenet", "--imagenet-root", tmp_path / "im", "--out", tmp_path, "--quiet")
    ds = open_dataset(tmp_path / "es-imagenet" / get("es-imagenet").version)["train"]
    # The README's call: one frame per step t = 1..8, in canvas coordinates, channel = p.
    to_frame = T.ToFrame(sensor_size=(240, 240, 2), time_window=1, start_time=1, end_time=9)
    assert T.ToFrame(sensor_size=(240, 240, 2), n_time_bins=8)(ds[0][0]).sum() == 0  # not this
    for i in range(len(ds)):
        events, _ = ds[i]
        info = ds.info(i)
        frames = to_frame(events)
        assert frames.shape == (8, 2, 240, 240) and frames.sum() == len(events)
        # to_frames is the same, channels swapped (0 positive), centred and cropped to 224.
        dr, dc = (254 - int(info["height"])) // 2, (254 - int(info["width"])) // 2
        big = np.zeros((8, 2, 600, 600), dtype=np.int64)
        big[:, :, 100:340, 100:340] = frames
        crop = big[:, :, 116 - dr:116 - dr + 224, 116 - dc:116 - dc + 224]
        assert np.array_equal(crop, ds.to_frames(i).transpose(1, 0, 2, 3)[:, ::-1])
