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

from neurodata_cli.datasets import yinyang

PUBLISHED = [("train", 5000, 42), ("validation", 1000, 41), ("test", 1000, 40)]
# Any seed, and radii from small to large; r_small is r_big times the ratio.
SEEDS = st.integers(0, 2**32 - 1)
R_BIGS = st.floats(0.05, 20.0)
RATIOS = st.floats(0.1, 0.95)


def test_the_c_accelerator_is_built():
    # The installed package must carry it; otherwise these tests would only cover the fallback.
    assert yinyang._generate_c is not None


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
    with h5py.File(tmp_path / "yinyang" / "1.0.0" / "yinyang.h5", "r") as f:
        for split, size, seed in PUBLISHED:
            group = f[split]
            samples = np.load(pub / f"{split}_samples.npy")
            labels = np.load(pub / f"{split}_labels.npy")
            assert group["samples"].dtype == samples.dtype and group["labels"].dtype == labels.dtype
            assert np.array_equal(group["samples"][()], samples)
            assert np.array_equal(group["labels"][()], labels)
            assert group.attrs["seed"] == seed and group.attrs["size"] == size
            assert group.attrs["r_small"] == 0.1 and group.attrs["r_big"] == 0.5
            assert [str(n) for n in group.attrs["class_names"]] == ["yin", "yang", "dot"]


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


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(2, 300),
    seed=SEEDS,
    r_big=R_BIGS,
    ratio=RATIOS,
    split=st.sampled_from([624, 700, 1900, 4000, 9000, 10**6]),
)
def test_the_helper_thread_changes_nothing(size, seed, r_big, ratio, split):
    # Helpers starting anywhere, including past the end (they never meet the main walk), writing
    # from rows the main walk reaches (it then takes them back and goes on alone), or with room
    # for a single row (the rows after it are drawn where it stopped). Rows past n stay as
    # they were: the buffers may be views into one file that holds more after them.
    r_small = r_big * ratio
    want_samples, want_labels = reference_yinyang(size, seed, r_small, r_big)
    for first_row in {min(size // 2 + 8, size - 1), max(1, size // 4), size - 1}:
        for spare in (0, 7):
            samples = np.full((size + spare, 4), -1.0)
            labels = np.full(size + spare, -1, dtype=np.int64)
            _, *counts = yinyang._generate_c(seed, size, samples, labels, r_small, r_big, split,
                                             first_row)
            assert samples[:size].tobytes() == want_samples.tobytes()
            assert np.array_equal(labels[:size], want_labels)
            assert (samples[size:] == -1).all() and (labels[size:] == -1).all()
            assert counts == np.bincount(want_labels, minlength=3).tolist()


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
    # exact comparisons, one try at a time, wherever the four-at-once judging met it. A wider
    # margin sends many tries that way, and the bytes must not change.
    r_small = r_big * ratio
    want_samples, want_labels = reference_yinyang(size, seed, r_small, r_big)
    for split, first_row in ((0, 0), (624, max(1, size // 2))) if size > 1 else ((0, 0),):
        samples, labels = np.empty((size, 4)), np.empty(size, dtype=np.int64)
        yinyang._generate_c(seed, size, samples, labels, r_small, r_big, split, first_row, margin)
        assert samples.tobytes() == want_samples.tobytes()
        assert np.array_equal(labels, want_labels)


def test_the_helper_must_start_writing_inside_the_output():
    samples, labels = np.empty((10, 4)), np.empty(10, dtype=np.int64)
    for first_row in (0, 10, 11):
        with pytest.raises(ValueError, match="first_row"):
            yinyang._generate_c(1, 10, samples, labels, 0.1, 0.5, 624, first_row)
    with pytest.raises(ValueError, match="n rows"):
        yinyang._generate_c(1, 11, samples, labels, 0.1, 0.5, 0, 0)
    for margin in (0.0, 1e-12, 1.0):
        with pytest.raises(ValueError, match="margin"):
            yinyang._generate_c(1, 10, samples, labels, 0.1, 0.5, 0, 0, margin)


def test_the_helper_thread_meets_the_main_walk_on_a_large_run():
    size = 200_000
    split, first_row = yinyang._layout(size, 0.1, 0.5)
    split = split or int(size / 2 * yinyang.words_per_sample(0.1, 0.5))  # even on one CPU
    first_row = first_row or size // 2 + 5000
    one = np.empty((size, 4)), np.empty(size, dtype=np.int64)
    two = np.empty((size, 4)), np.empty(size, dtype=np.int64)
    assert yinyang._generate_c(7, size, *one, 0.1, 0.5, 0, 0)[0] == size
    # Started about halfway, the helper supplies the second half.
    met, *_ = yinyang._generate_c(7, size, *two, 0.1, 0.5, split, first_row)
    assert size * 0.4 < met < size * 0.6
    assert one[0].tobytes() == two[0].tobytes()
    assert np.array_equal(one[1], two[1])


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
    with h5py.File(tmp_path / "o" / "yinyang" / "1.0.0" / "yinyang.h5", "r") as f:
        samples, times = f["train/samples"][()], f["train/spike_times"][()]
    assert np.array_equal(times[:, :4], 0.5 + samples * 2.5) and np.all(times[:, 4] == 1.0)


@pytest.mark.parametrize("shape,descr", [((5000, 4), "<f8"), ((1000,), "<i8"), ((1,), "<i8"),
                                         ((0, 4), "<f8"), ((10**12, 5), "<f8"), ((7, 5), "<f8")])
def test_our_npy_header_is_the_one_numpy_writes(shape, descr):
    import io

    from neurodata_cli.formats import npy

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False,
                                                  "shape": shape})
    assert npy.header(descr, shape) == buffer.getvalue()


def test_the_numpy_free_npy_path_writes_what_the_array_path_writes(run, tmp_path, monkeypatch):
    run("yinyang", "--size", "3000", "--seed", "9", "--format", "npy", "--out", tmp_path / "raw",
        "--quiet")
    monkeypatch.setattr(yinyang, "_generate_c", None)  # arrays from the Python walk
    run("yinyang", "--size", "3000", "--seed", "9", "--format", "npy", "--out", tmp_path / "arr",
        "--quiet")
    a, b = (tmp_path / k / "yinyang" / "1.0.0" for k in ("raw", "arr"))
    assert (a / "SHA256SUMS").read_bytes() == (b / "SHA256SUMS").read_bytes()
    ma, mb = (json.loads((f / "manifest.json").read_text()) for f in (a, b))
    assert ma["splits"]["train"]["stats"] == mb["splits"]["train"]["stats"]


def test_the_numpy_version_is_read_without_importing_numpy(monkeypatch):
    import sys

    from neurodata_cli.manifest import _numpy_version

    monkeypatch.delitem(sys.modules, "numpy")
    assert _numpy_version() == np.__version__
    assert "numpy" not in sys.modules
