"""The fast Yin-Yang generator against the published data and the authors' per-sample loop."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from helpers import reference
from hypothesis import given, settings
from hypothesis import strategies as st
from yinyang_oracle import reference_yinyang

from neurodata_cli.datasets.yinyang import walk as yinyang

PUBLISHED = [("train", 5000, 42), ("validation", 1000, 41), ("test", 1000, 40)]
# Any seed, and radii from small to large; r_small is r_big times the ratio.
SEEDS = st.integers(0, 2**32 - 1)
R_BIGS = st.floats(0.05, 20.0)
RATIOS = st.floats(0.1, 0.95)


def test_the_c_accelerator_is_built():
    # The installed package must carry it; otherwise these tests would only cover the fallback.
    assert yinyang._c is not None


@pytest.mark.parametrize("split,size,seed", PUBLISHED)
def test_npy_output_is_the_published_data_byte_for_byte(run, tmp_path, split, size, seed):
    run("yinyang", "--format", "npy", "--out", tmp_path, "--quiet")
    folder = tmp_path / "yinyang" / "1.0.0"
    pub = reference("yinyang", "publication_data")
    for kind in ("samples", "labels"):
        ours = (folder / f"{split}_{kind}.npy").read_bytes()
        assert ours == (pub / f"{split}_{kind}.npy").read_bytes()


def test_hdf5_output_holds_the_published_arrays(run, tmp_path):
    run("yinyang", "--out", tmp_path, "--quiet")
    pub = reference("yinyang", "publication_data")
    for split, size, seed in PUBLISHED:
        path = tmp_path / "yinyang" / "1.0.0" / f"yinyang-{split}-00000-of-00001.h5"
        with h5py.File(path, "r") as f:
            group = f["samples"]
            samples = np.load(pub / f"{split}_samples.npy")
            labels = np.load(pub / f"{split}_labels.npy")
            assert group["samples"].dtype == samples.dtype and group["labels"].dtype == labels.dtype
            assert np.array_equal(group["samples"][()], samples)
            assert np.array_equal(group["labels"][()], labels)
            assert f.attrs["seed"] == seed and f.attrs["size"] == size
            assert f.attrs["r_small"] == 0.1 and f.attrs["r_big"] == 0.5
            assert [str(n) for n in f.attrs["class_names"]] == ["yin", "yang", "dot"]
            assert f.attrs["split"] == split


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 120),
    seed=SEEDS,
    r_big=R_BIGS,
    ratio=RATIOS,
    block=st.sampled_from([64, 97, 1000, 1 << 18]),
)
def test_fast_generator_equals_the_per_sample_loop(size, seed, r_big, ratio, block):
    r_small = r_big * ratio
    want_samples, want_labels = reference_yinyang(size, seed, r_small, r_big)
    for accelerated in (True, False):
        samples, labels = yinyang.generate(size, seed, r_small, r_big, block=block,
                                           accelerated=accelerated)
        assert samples.tobytes() == want_samples.tobytes()
        assert np.array_equal(labels, want_labels) and labels.dtype == np.int64


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(1, 400),
    seed=SEEDS,
    r_big=R_BIGS,
    ratio=RATIOS,
    margin=st.sampled_from([1e-6, 1e-3, 0.05, 0.5]),
)
def test_tries_near_a_boundary_take_the_exact_path_and_agree(size, seed, r_big, ratio, margin):
    # In use, a try within 1e-9 (relative) of a boundary, about one in 10**8, is judged by the
    # exact sqrt comparisons. A wider margin sends many tries that way, and the bytes must not
    # change.
    r_small = r_big * ratio
    want_samples, want_labels = reference_yinyang(size, seed, r_small, r_big)
    samples, labels = yinyang.generate(size, seed, r_small, r_big, margin=margin)
    assert samples.tobytes() == want_samples.tobytes()
    assert np.array_equal(labels, want_labels)


def test_the_c_walk_refuses_buffers_that_do_not_match():
    samples, labels = np.empty((10, 4)), np.empty(11, dtype=np.int64)
    with pytest.raises(ValueError, match="n x 4"):
        yinyang._c.walk(yinyang._c.seed(1), samples, labels, 0.1, 0.5)
    for margin in (0.0, 1e-12, 1.0):
        with pytest.raises(ValueError, match="margin"):
            yinyang._c.walk(yinyang._c.seed(1), samples, labels[:10], 0.1, 0.5, margin)


@settings(max_examples=40, deadline=None)
@given(seed=SEEDS, pieces=st.lists(st.integers(0, 90), min_size=1, max_size=6),
       block=st.sampled_from([64, 97, 1 << 18]))
def test_a_walk_taken_in_pieces_is_the_walk_taken_at_once(seed, pieces, block):
    want = reference_yinyang(sum(pieces), seed)
    for accelerated in (True, False):
        walker = yinyang.Walker(seed, accelerated=accelerated, block=block)
        got = [walker.take(n) for n in pieces]
        assert np.concatenate([g[0] for g in got]).tobytes() == want[0].tobytes()
        assert np.array_equal(np.concatenate([g[1] for g in got]), want[1])


def test_a_large_run_equals_the_python_walk():
    fast = yinyang.generate(200_000, 7)
    slow = yinyang.generate(200_000, 7, accelerated=False)
    assert fast[0].tobytes() == slow[0].tobytes() and np.array_equal(fast[1], slow[1])


def test_points_on_a_boundary_are_classed_as_the_reference_does():
    # Radii whose squares are not exact doubles push points near boundaries through both the
    # cheap comparison and the exact one; the oracle decides.
    for r_small, r_big in [(0.1, 0.5), (1 / 3, 0.7), (0.3, 0.3000001)]:
        want = reference_yinyang(400, 5, r_small, r_big)
        got = yinyang.generate(400, 5, r_small, r_big, block=64)
        assert got[0].tobytes() == want[0].tobytes() and np.array_equal(got[1], want[1])


def test_which_class_matches_the_reference_on_a_grid():
    from yinyang_oracle import which_class as ref_class

    grid = np.linspace(0.0, 1.0, 61)
    for x in grid:
        for y in grid:
            assert yinyang.which_class(float(x), float(y), 0.1, 0.5) == ref_class(x, y, 0.1, 0.5)


def test_spike_time_encoding(run, tmp_path):
    run("yinyang", "--size", "50", "--format", "npy", "--encoding", "spike-times",
        "--out", tmp_path, "--quiet")
    folder = tmp_path / "yinyang" / "1.0.0"
    samples = np.load(folder / "train_samples.npy")
    times = np.load(folder / "train_spike_times.npy")
    assert times.shape == (50, 5) and times.dtype == np.float64
    assert np.array_equal(times[:, :4], 0.15 + samples * (2.0 - 0.15))
    assert np.all(times[:, 4] == 0.9)


def test_spike_times_are_configurable_and_in_hdf5(run, tmp_path):
    cfg = tmp_path / "st.yaml"
    cfg.write_text("encoding: spike-times\nspike_times: {t_early: 0.5, t_late: 3.0, t_bias: 1.0}\n")
    run("yinyang", "--config", cfg, "--size", "20", "--out", tmp_path / "o", "--quiet")
    with h5py.File(tmp_path / "o" / "yinyang" / "1.0.0" / "yinyang-train-00000-of-00001.h5") as f:
        samples, times = f["samples/samples"][()], f["samples/spike_times"][()]
    assert np.array_equal(times[:, :4], 0.5 + samples * 2.5) and np.all(times[:, 4] == 1.0)


def test_the_python_walk_writes_what_the_c_walk_writes(run, tmp_path, monkeypatch):
    run("yinyang", "--size", "3000", "--seed", "9", "--format", "npy", "--out", tmp_path / "c",
        "--quiet")
    monkeypatch.setattr(yinyang, "_c", None)  # the Python walk
    run("yinyang", "--size", "3000", "--seed", "9", "--format", "npy", "--out", tmp_path / "py",
        "--quiet")
    a, b = (tmp_path / k / "yinyang" / "1.0.0" for k in ("c", "py"))
    assert (a / "SHA256SUMS").read_bytes() == (b / "SHA256SUMS").read_bytes()
    ma, mb = (json.loads((f / "manifest.json").read_text()) for f in (a, b))
    assert ma["splits"]["train"]["stats"] == mb["splits"]["train"]["stats"]
