"""A dataset's output is checked, not trusted: blocks against the contract, names at
registration, and a disk that fills while HDF5 flushes.

Each misbehaving build below used to give a folder that ``verify`` passed but that read back
wrong (or raised); now the run stops with one line naming the dataset, the shard and the fault,
exit 1, and leaves no finished folder.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from neurodata_cli import datasets, open_dataset
from neurodata_cli.api import materialise
from neurodata_cli.datasets.base import Block, Config, Dataset, Shard, option
from neurodata_cli.errors import ConfigError, RunError
from neurodata_cli.features import Events, Features, Tensor, Text
from neurodata_cli.formats.hdf5 import HDF5
from neurodata_cli.formats.npy import NPY

EVENTS = {"x": np.uint8, "y": np.uint8, "t": np.uint32, "p": np.uint8}


def events(n: int, dtypes: dict = EVENTS) -> dict[str, np.ndarray]:
    return {k: np.arange(n).astype(dt) for k, dt in dtypes.items()}


def good(shard: Shard) -> Block:
    """Shard i's two samples: one event, then two."""
    return Block({"label": np.arange(2) + 2 * shard.index}, events(3), np.array([1, 2]))


# case -> (what build yields for shard k, a piece of the error line)
CASES = {
    "ragged columns": (lambda k: [Block({"label": np.arange(2), "more": np.arange(3)},
                                        events(3), np.array([1, 2]))],
                       "column 'more' has 3 entries where 'label' has 2"),
    "counts short of the events": (lambda k: [Block({"label": np.arange(2)}, events(5),
                                                    np.array([1, 2]))],
                                   "counts add up to 3 events but the block has 5"),
    "counts past the events": (lambda k: [Block({"label": np.arange(2)}, events(3),
                                                np.array([1, 9]))],
                               "counts add up to 10 events but the block has 3"),
    "a count per event, not per sample": (lambda k: [Block({"label": np.arange(2)}, events(3),
                                                           np.ones(3, np.uint64))],
                                          "counts has 3 entries for a block of 2 samples"),
    "negative counts": (lambda k: [Block({"label": np.arange(2)}, events(3),
                                         np.array([4, -1]))], "counts has a negative entry"),
    "ragged event fields": (lambda k: [Block({"label": np.arange(2)},
                                             {**events(3), "t": np.arange(2, dtype=np.uint32)},
                                             np.array([1, 2]))],
                            "event field 't' has 2 events where 'x' has 3"),
    "fewer samples than planned": (lambda k: [Block({"label": np.arange(1)}, events(1),
                                                    np.array([1]))],
                                   "yielded 1 samples where its plan has 2"),
    "more samples than planned": (lambda k: [Block({"label": np.arange(2)}, events(3),
                                                   np.array([1, 2]))] * 2,
                                  "yielded more than the 2 samples its plan has"),
    "event dtypes other than declared": (
        lambda k: [Block({"label": np.arange(2)}, events(3, {**EVENTS, "x": np.int64}),
                         np.array([1, 2]))],
        "event field 'x' is int64 where the dataset declares uint8"),
    "a column dtype other than declared": (
        lambda k: [Block({"label": np.arange(1, dtype=np.int64)}, events(1), np.array([1])),
                   Block({"label": np.arange(1, dtype=np.float32)}, events(1), np.array([1]))],
        "column 'label' is float32 where it is declared as int64"),
    "a column shape other than declared": (
        lambda k: [Block({"label": np.zeros((2, 3), np.int64)}, events(3), np.array([1, 2]))],
        "column 'label' is int64[3] where it is declared as int64"),
    "an optional column only one block has": (
        lambda k: [Block({"label": np.arange(1), "more": np.arange(1)}, events(1), np.array([1])),
                   Block({"label": np.arange(1)}, events(1), np.array([1]))],
        "a block has columns label where the first had label, more"),
    "an optional column only one shard has": (
        lambda k: [Block({"label": np.arange(2), **({"more": np.arange(2)} if k else {})},
                         events(3), np.array([1, 2]))],
        "shard train-00001-of-00002: stores columns label, more where shard "
        "train-00000-of-00002 stores label"),
    "Python objects in a text column": (
        lambda k: [Block({"label": np.arange(2), "name": np.array([{"a": 1}, {"a": 2}],
                                                                  dtype=object)}, events(3),
                         np.array([1, 2]))],
        "column 'name' holds a dict; it is declared as text (str only)"),
    "a NUL in a text column": (  # npy and webdataset dropped a trailing one, HDF5 raised
        lambda k: [Block({"label": np.arange(2), "name": np.array(["a\x00", "b"], dtype=object)},
                         events(3), np.array([1, 2]))],
        "column 'name' holds a NUL character"),
    "a lone surrogate in a text column": (  # HDF5 and webdataset raised UnicodeEncodeError
        lambda k: [Block({"label": np.arange(2), "name": np.array(["\ud800", "b"], dtype=object)},
                         events(3), np.array([1, 2]))],
        "column 'name' holds '\\ud800', which UTF-8 cannot encode"),
    "a column not declared": (lambda k: [Block({"label": np.arange(2), "../x": np.arange(2)},
                                               events(3), np.array([1, 2]))],
                              "(not declared: ../x)"),
    "a declared column missing": (lambda k: [Block({"more": np.arange(2)}, events(3),
                                                   np.array([1, 2]))],
                                  "(missing: label)"),
    "events without counts": (lambda k: [Block({"label": np.arange(2)}, events(3))],
                              "a block of 2 samples has no counts"),
    "samples without events": (lambda k: [Block({"label": np.arange(2)})],
                               "a block of 2 samples has no events"),
}


@dataclass(frozen=True)
class Case(Config):
    case: str = option("good", "What build yields.")


@dataclass(frozen=True)
class ColumnsCase(Config):
    case: str = option("strings", "What build yields.")


class Fake(Dataset):
    """Fake: two shards of two samples each, built as the --case option says."""

    name = "fake"
    version = "1.0.0"
    formats = {"hdf5": HDF5}
    features = Features({"label": Tensor(np.int64), "more": Tensor(np.int64, optional=True),
                         "name": Text(optional=True)},
                        Events(*EVENTS.values(), (34, 34, 2), "us", "as built"))
    options = Case

    def plan(self, cfg):
        return [Shard("train", k, 2, 2) for k in range(2)]

    def build(self, cfg, shard):
        if cfg.case == "good":
            yield good(shard)
        else:
            yield from CASES[cfg.case][0](shard.index)


class Columns(Dataset):
    """Columns: a dataset of columns only (the npy format), string labels among them."""

    name = "columns"
    version = "1.0.0"
    formats = {"npy": NPY, "hdf5": HDF5}
    features = Features({"x": Tensor(np.float64), "name": Text(optional=True)})
    options = ColumnsCase

    def plan(self, cfg):
        return [Shard("train", k, 2, 2) for k in range(2)]

    def build(self, cfg, shard):
        if cfg.case == "objects":  # dicts: stored as pointers, a different file every run
            yield Block({"x": np.array([{"k": i} for i in range(2)], dtype=object)})
        elif cfg.case == "events":
            yield Block({"x": np.arange(2.0)}, events(3), np.array([1, 2]))
        elif cfg.case == "dtype":  # a dtype per shard: one header for another's bytes
            yield Block({"x": np.arange(2, dtype=np.int16 if shard.index else np.float64)})
        else:  # names of other lengths, as str objects, one block a sample
            for i in range(2):
                name = "s" * (1 + i + 3 * shard.index)
                yield Block({"x": np.array([float(i)]), "name": np.array([name], dtype=object)})


class OldStyle(Fake):
    """Options declared as neurodata 0.6 did: a tuple."""

    name = "oldstyle"
    options = ("case",)  # type: ignore[assignment]


@pytest.fixture(autouse=True)
def fakes(monkeypatch):
    for name, cls in (("fake", "Fake"), ("columns", "Columns"), ("oldstyle", "OldStyle")):
        monkeypatch.setitem(datasets.BUILTIN, name, f"test_plugin_checks:{cls}")
    datasets._specs.cache_clear()
    datasets.get.cache_clear()
    yield
    monkeypatch.undo()
    datasets._specs.cache_clear()
    datasets.get.cache_clear()


def left_behind(out: Path) -> list[str]:
    """What a failed run left that could pass for output: a version folder, partial files, or
    any data file outside the hidden stage (where finished shards wait for a rerun)."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")
                  if p.name == "1.0.0" or p.name.endswith(".part")
                  or p.suffix in (".h5", ".npy") and ".partial" not in str(p))


def recorded(out: Path) -> list[str]:
    """Shards recorded as finished in a stage under ``out``."""
    return sorted(p.stem for p in out.rglob(".neurodata/shards/*.json"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_block_that_breaks_the_contract_stops_the_run(run, tmp_path, case):
    result = run("fake", "--case", case, "--out", tmp_path, "--quiet", "--workers", "1",
                 code=1)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: fake shard train-000"), lines
    assert CASES[case][1] in lines[0]
    assert left_behind(tmp_path) == []
    # The shard at fault is not kept for a resume (nor, between shards, the one it differs
    # from): a rerun after the build is fixed builds them again.
    assert lines[0].split()[3].rstrip(":") not in recorded(tmp_path)
    assert len(recorded(tmp_path)) == (0 if "one shard" in case
                                       else int("train-00001" in lines[0]))


def test_a_good_build_passes_and_a_bad_one_in_a_worker_process_says_so(run, tmp_path):
    run("fake", "--out", tmp_path / "good", "--quiet", "--workers", "2")
    data = open_dataset(tmp_path / "good" / "fake" / "1.0.0")["train"]
    assert [len(data[i][0]) for i in range(4)] == [1, 2, 1, 2]
    out = run("fake", "--case", "ragged columns", "--out", tmp_path / "bad", "--quiet",
              "--workers", "2", code=1).output
    assert out.startswith("Error: fake shard train-0000") and len(out.splitlines()) == 1


def test_shards_that_disagree_are_built_again_once_the_build_is_fixed(run, tmp_path,
                                                                      monkeypatch):
    case = "an optional column only one shard has"
    run("fake", "--case", case, "--out", tmp_path, "--quiet", "--workers", "1", code=1)
    monkeypatch.setattr(type(datasets.get("fake")), "build", lambda self, cfg, shard:
                        iter([good(shard)]))  # the plugin's bug fixed, the same config
    run("fake", "--case", case, "--out", tmp_path, "--quiet", "--workers", "1")
    columns = open_dataset(tmp_path / "fake" / "1.0.0")["train"].columns()
    assert list(columns["label"]) == [0, 1, 2, 3] and "more" not in columns


def test_the_npy_format_never_stores_python_objects(tmp_path):
    with pytest.raises(RunError, match="column 'x' is object where it is declared as float64"):
        materialise("columns", out=tmp_path, case="objects", workers=1)
    with pytest.raises(RunError, match="a block gives events, and the dataset declares none"):
        materialise("columns", out=tmp_path, case="events", workers=1)
    with pytest.raises(RunError, match="column 'x' is int16 where it is declared as float64"):
        materialise("columns", out=tmp_path, case="dtype", workers=1)
    assert left_behind(tmp_path) == []


def test_strings_are_stored_as_strings_the_same_bytes_every_run(tmp_path):
    sums = []
    for k in range(2):
        folder = materialise("columns", out=tmp_path / str(k), workers=1).folder
        sums.append((folder / "SHA256SUMS").read_text())
        for f in sorted(folder.glob("*.npy")):
            assert np.load(f, allow_pickle=False).dtype.kind in "fU"  # no pointers inside
    assert sums[0] == sums[1]
    names = open_dataset(folder)["train"].columns()["name"]
    assert list(names) == ["s", "ss", "ssss", "sssss"]
    h5 = materialise("columns", out=tmp_path / "h5", format="hdf5", workers=1).folder
    assert list(open_dataset(h5)["train"].columns()["name"]) == list(names)


def test_a_full_disk_while_hdf5_flushes_is_one_line_and_leaves_nothing_complete(
        run, tmp_path, monkeypatch):
    import h5py

    def full(self):
        raise RuntimeError("Can't flush cache (file write failed: time = Sat Dec  5 18:00:00 "
                           "2026\n, filename = 'x.h5', file descriptor = 5, errno = 28, error "
                           "message = 'No space left on device', buf = 0x55d0, total write size "
                           "= 4096)")

    real = h5py.File.flush
    monkeypatch.setattr(h5py.File, "flush", full)
    out = run("fake", "--out", tmp_path, "--quiet", "--workers", "1", code=1).output
    assert out.splitlines() == [out.strip()] and "No space left on device" in out
    assert "fake-train-00000-of-00002.h5" in out
    assert left_behind(tmp_path) == []
    assert not list(tmp_path.rglob("shards/*.json"))  # no shard recorded as finished
    monkeypatch.setattr(h5py.File, "flush", real)
    run("fake", "--out", tmp_path, "--quiet", "--workers", "1")  # room again: it finishes
    assert run("verify", tmp_path / "fake" / "1.0.0").exit_code == 0


# ---- registration ----------------------------------------------------------------------------

class Ramp2(Dataset):
    """Plugged: a dataset from a fake package."""

    name = "plugged"
    version = "1.0.0"
    formats = {"hdf5": HDF5}
    features = Features({"label": Tensor(np.int64)})

    def plan(self, cfg):
        return [Shard("train", 0, 1, 1)]

    def build(self, cfg, shard):
        yield Block({"label": np.arange(1)})


def entry(name: str, package: str, value: str = "test_plugin_checks:Ramp2") -> SimpleNamespace:
    return SimpleNamespace(name=name, value=value, group=datasets.GROUP,
                           dist=SimpleNamespace(name=package, version="1.0"))


@pytest.fixture
def plugins(monkeypatch):
    """Install fake entry points (the same shape importlib.metadata gives)."""

    def install(*entries):
        monkeypatch.setattr(importlib.metadata, "entry_points",
                            lambda group=None: [e for e in entries if e.group == group])
        datasets._specs.cache_clear()
        datasets.get.cache_clear()

    return install


def test_a_plugin_may_not_take_a_built_in_or_a_command_name(run, tmp_path, plugins):
    plugins(entry("yinyang", "evil-yy"), entry("verify", "evil-verify"),
            entry("plugged", "neurodata-plugged"))
    result = run("--help")
    warnings = [line for line in result.output.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 2
    assert "package evil-yy 1.0 (test_plugin_checks:Ramp2) registers dataset 'yinyang', the " \
           "name of a built-in dataset; ignored" in warnings[1]
    assert "evil-verify" in warnings[0] and "the name of a neurodata command" in warnings[0]
    listed = re.findall(r"^  (\S+)", result.output.split("Commands:")[1], re.M)
    assert listed.count("verify") == 1 and "plugged" in listed and "yinyang" in listed
    assert datasets.get("yinyang").__module__ == "neurodata_cli.datasets.yinyang"
    out = run("yinyang", "--size", "10", "--out", tmp_path, "--quiet").output
    assert "evil-yy" in out  # the user running yinyang hears that the plugin was ignored
    assert (tmp_path / "yinyang").is_dir()
    run("plugged", "--out", tmp_path, "--quiet")  # the good plugin works beside them


class BadColumn(Ramp2):
    """Plugged: it declares a column named as a path."""

    features = Features({"../label": Tensor(np.int64)})


class NoFeatures(Ramp2):
    """Plugged: it declares its columns as a plain dict."""

    features = {"label": np.int64}  # type: ignore[assignment]


@pytest.mark.parametrize(("cls", "why"), [
    ("BadColumn", "column name '../label' is not allowed (letters, digits and '_'; not events "
                  "or offsets)"),
    ("NoFeatures", "declares its features as a dict, not a Features")])
def test_a_plugin_whose_features_are_wrong_is_refused_by_name(run, tmp_path, plugins, cls, why):
    plugins(entry("plugged", "pkg", f"test_plugin_checks:{cls}"))
    out = run("plugged", "--out", tmp_path, code=2).output
    assert out.splitlines() == [f"Error: dataset 'plugged' (test_plugin_checks:{cls}, from pkg "
                                f"1.0): {why}"]
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_a_plugin_name_that_is_a_path_is_refused(run, tmp_path, plugins):
    plugins(entry("../escape", "evil-path"))
    out = run("../escape", "--out", tmp_path / "a" / "b", code=2).output
    assert out.splitlines() == ["Error: package evil-path 1.0 (test_plugin_checks:Ramp2) "
                                "registers dataset '../escape', which is not a plain name "
                                "(lowercase letters, digits, '-' and '_'); ignored"]
    assert not (tmp_path / "a").exists()
    with pytest.raises(ConfigError, match="not a plain name"):
        materialise("../escape", out=tmp_path)
    assert "Warning: package evil-path" in run("--help").output


def test_two_packages_registering_one_name_is_an_error_naming_both(run, tmp_path, plugins):
    plugins(entry("plugged", "pkg-one"), entry("plugged", "pkg-two", "other:Plugged"))
    out = run("plugged", "--out", tmp_path, code=2).output
    assert out.splitlines() == ["Error: packages pkg-one 1.0 (test_plugin_checks:Ramp2) and "
                                "pkg-two 1.0 (other:Plugged) register dataset 'plugged': a "
                                "name can have one dataset; uninstall one of them"]
    with pytest.raises(ConfigError, match="pkg-one 1.0 .* and pkg-two 1.0"):
        materialise("plugged", out=tmp_path)
    result = run("--help")  # the rest still works
    assert "Warning: packages pkg-one" in result.output and "yinyang" in result.output
    assert not any(tmp_path.iterdir())


def test_a_plugin_that_does_not_load_is_one_line(run, tmp_path, plugins):
    plugins(entry("broken", "pkg-broken", "no_such_module_here:X"))
    assert "broken" in run("--help").output
    out = run("broken", "--out", tmp_path, code=2).output
    assert out.splitlines() == [
        "Error: dataset 'broken' (no_such_module_here:X, from pkg-broken 1.0) cannot be "
        "loaded: ModuleNotFoundError: No module named 'no_such_module_here'"]


def test_the_reserved_names_are_the_cli_commands():
    from neurodata_cli.cli import cli

    assert set(cli.commands) == datasets.COMMANDS


def test_an_output_name_that_is_a_path_is_refused(tmp_path, monkeypatch):
    # The class the registry imported (pytest imports this file under another name).
    monkeypatch.setattr(type(datasets.get("fake")), "output_name",
                        lambda self, cfg: "../../out")
    with pytest.raises(ConfigError, match="fake names its output '../../out'"):
        materialise("fake", out=tmp_path / "a" / "b", workers=1)
    assert not any(tmp_path.iterdir())


def test_options_declared_as_a_tuple_are_refused_saying_how_to_declare_them(run):
    out = run("oldstyle", "--out", "x", code=2).output
    assert "Option tuples are gone" in out and "Traceback" not in out
