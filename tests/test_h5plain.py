"""Our HDF5 writer, read back by h5py and modified by libhdf5, which checks what it loads."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurodata_cli.formats import h5plain
from neurodata_cli.formats.npy import Raw

DTYPES = ["<f8", "<f4", "<i8", "<i4", "<i2", "|i1", "<u8", "<u4", "<u2", "|u1", ">f8", ">i4"]
# Names as a user might give splits, and some that sort differently as bytes than as text.
names = st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)),
                min_size=1, max_size=12).filter(lambda s: s != ".")
text = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
               max_size=20)
attr_values = st.one_of(
    text,
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.lists(text, min_size=1, max_size=5),
)
attrs = st.dictionaries(names, attr_values, max_size=4)


@st.composite
def arrays(draw) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 5), max_size=3)))
    count = int(np.prod(shape))
    data = draw(st.binary(min_size=count * dtype.itemsize, max_size=count * dtype.itemsize))
    return np.frombuffer(data, dtype=dtype).reshape(shape)


groups = st.dictionaries(
    names,
    st.fixed_dictionaries({"attrs": attrs,
                           "datasets": st.dictionaries(names, arrays(), max_size=4)}),
    max_size=20,
)


def same_attr(read, written) -> bool:
    if isinstance(written, list):
        return list(read) == written and read.dtype == object
    if isinstance(written, str):
        return read == written
    if isinstance(written, int):
        return read == written and np.asarray(read).dtype == np.int64
    return read == written and np.asarray(read).dtype == np.float64


def check(path, data) -> None:
    with h5py.File(path, "r") as f:
        assert set(f.attrs) == set(data["attrs"])
        for key, value in data["attrs"].items():
            assert same_attr(f.attrs[key], value), key
        assert set(f) == set(data["groups"])
        for name, group in data["groups"].items():
            g = f[name]
            assert set(g.attrs) == set(group["attrs"])
            for key, value in group["attrs"].items():
                assert same_attr(g.attrs[key], value), (name, key)
            assert set(g) == set(group["datasets"])
            for dname, array in group["datasets"].items():
                d = g[dname]
                assert d.dtype == array.dtype and d.shape == array.shape
                assert np.asarray(d[()]).astype(array.dtype).tobytes() == array.tobytes()
                assert d.chunks is None and d.compression is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(root=attrs, groups=groups)
def test_h5py_reads_back_every_group_attribute_and_array(tmp_path_factory, root, groups):
    path = tmp_path_factory.mktemp("h5") / "f.h5"
    data = {"attrs": root, "groups": groups}
    digest = h5plain.write(path, data)
    import hashlib

    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    check(path, data)


@pytest.mark.parametrize("count", [1, 8, 9, 255, 256, 257, 300])
def test_groups_of_any_size_are_found_by_name(tmp_path, count):
    # 8 names fill a symbol node, 256 a one-level B-tree; beyond, the tree grows a level.
    names = [f"split{i:03d}" for i in range(count)][::-1]
    data = {"attrs": {}, "groups": {n: {"attrs": {"i": i}, "datasets": {}}
                                    for i, n in enumerate(names)}}
    h5plain.write(tmp_path / "f.h5", data)
    with h5py.File(tmp_path / "f.h5", "r") as f:
        assert list(f) == sorted(names)
        for i, n in enumerate(names):
            assert n in f and f[n].attrs["i"] == i
        assert "split" not in f and "zzz" not in f and "split0000" not in f


@pytest.mark.parametrize("count", [3, 300])
def test_libhdf5_can_go_on_writing_the_file(tmp_path, count):
    path = tmp_path / "f.h5"
    data = {"attrs": {"dataset": "yinyang"},
            "groups": {f"g{i}": {"attrs": {"class_names": ["yin", "yang", "dot"]},
                                 "datasets": {"x": np.arange(6.0).reshape(2, 3)}}
                       for i in range(count)}}
    h5plain.write(path, data)
    with h5py.File(path, "r+") as f:
        f.create_group("added").attrs["note"] = "x" * 200
        f["g0"].create_dataset("y", data=np.arange(4))
        f["g0"].attrs["more"] = ["a", "b"]
        del f[f"g{count - 1}"]
        f.attrs["dataset"] = "changed"
    with h5py.File(path, "r") as f:
        assert len(f) == count and f"g{count - 1}" not in f
        assert f["added"].attrs["note"] == "x" * 200 and list(f["g0/y"][()]) == [0, 1, 2, 3]
        assert list(f["g0"].attrs["more"]) == ["a", "b"] and f.attrs["dataset"] == "changed"
        assert list(f["g1"].attrs["class_names"]) == ["yin", "yang", "dot"]
        assert f["g1/x"][1, 2] == 5.0


def test_same_content_gives_same_bytes_whatever_the_insertion_order(tmp_path):
    a = np.arange(10, dtype="<i8")
    one = {"attrs": {"b": 1, "a": "x"}, "groups": {"y": {"attrs": {}, "datasets": {"q": a}},
                                                 "x": {"attrs": {}, "datasets": {"p": a}}}}
    two = {"attrs": {"a": "x", "b": 1}, "groups": {"x": {"attrs": {}, "datasets": {"p": a}},
                                                 "y": {"attrs": {}, "datasets": {"q": a}}}}
    h5plain.write(tmp_path / "1.h5", one)
    h5plain.write(tmp_path / "2.h5", two)
    assert (tmp_path / "1.h5").read_bytes() == (tmp_path / "2.h5").read_bytes()


def test_raw_buffers_are_written_as_their_arrays(tmp_path):
    rows = np.arange(12, dtype="<f8").reshape(3, 4)
    data = {"attrs": {}, "groups": {"train": {"attrs": {}, "datasets": {
        "samples": Raw(memoryview(rows.tobytes()), "<f8", (3, 4))}}}}
    h5plain.write(tmp_path / "f.h5", data)
    with h5py.File(tmp_path / "f.h5", "r") as f:
        assert np.array_equal(f["train/samples"][()], rows)


@pytest.mark.parametrize("attrs, error", [
    ({"flag": True}, TypeError),
    ({"mixed": ["a", 1]}, TypeError),
    ({"none": None}, TypeError),
])
def test_attributes_without_an_hdf5_form_are_refused(tmp_path, attrs, error):
    with pytest.raises(error, match="attribute"):
        h5plain.write(tmp_path / "f.h5", {"attrs": attrs, "groups": {}})


def test_bad_names_and_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot name"):
        h5plain.write(tmp_path / "f.h5", {"groups": {"a/b": {"datasets": {}}}})
    with pytest.raises(ValueError, match="do not make"):
        h5plain.write(tmp_path / "f.h5", {"groups": {"a": {"datasets": {
            "x": Raw(b"\0" * 12, "<f8", (2,))}}}})
    with pytest.raises(TypeError, match="no HDF5 type"):
        h5plain.write(tmp_path / "f.h5", {"groups": {"a": {"datasets": {
            "x": np.zeros(2, dtype=np.complex128)}}}})
