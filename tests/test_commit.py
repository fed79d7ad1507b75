"""Commits killed at every file system call, then the same command or another one.

A kill is simulated in-process: from call N of the commit on, every call that changes the file
system raises ``Killed`` (a BaseException, so no ``except OSError`` cleans up after it), which is
what a process killed just before that system call leaves behind.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import data_digest
from nmnist_synth import make_tree

from neurodata_cli import engine, materialise
from neurodata_cli.errors import RunError
from neurodata_cli.manifest import verify

VERSION = "2.1.0"


class Killed(BaseException):
    """The process died here."""


@contextmanager
def killed_at(n: int, step: str = "_commit") -> Iterator[dict[str, Any]]:
    """Within the block, the run dies at the ``n``-th call that changes the file system within
    ``step`` (the commit, or the settling of commits left by killed runs)."""
    state = {"calls": 0, "armed": False, "dead": False}
    real_step = getattr(engine.Materialiser, step)
    patched: list[tuple[Any, str, Any]] = []

    def tick() -> None:
        if not state["armed"]:
            return
        if not state["dead"]:
            state["calls"] += 1
            state["dead"] = state["calls"] == n
        if state["dead"]:
            raise Killed

    def wrap(module: Any, name: str, writes: Callable[..., bool] | None = None) -> None:
        real = getattr(module, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if writes is None or writes(*args, **kwargs):
                tick()
            return real(*args, **kwargs)

        patched.append((module, name, real))
        setattr(module, name, call)

    def armed(self: Any, *args: Any) -> Any:
        state["armed"] = True
        try:
            return real_step(self, *args)
        finally:
            state["armed"] = False

    def opens_for_writing(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> bool:
        return any(c in mode for c in "wax+")

    for name in ("replace", "rename", "link", "unlink", "remove", "rmdir", "mkdir"):
        wrap(os, name)
    wrap(engine, "_exchange")  # the swap in one system call, where there is one
    wrap(io, "open", opens_for_writing)  # pathlib's writes
    wrap(builtins, "open", opens_for_writing)  # shutil's copies
    setattr(engine.Materialiser, step, armed)
    try:
        yield state
    finally:
        setattr(engine.Materialiser, step, real_step)
        for module, name, real in reversed(patched):
            setattr(module, name, real)


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("nmnist")
    return {"a": make_tree(base / "a", {"train": 1, "test": 1}, seed=1),
            "b": make_tree(base / "b", {"train": 1, "test": 1}, seed=2)}


# Each scenario: the runs before, the run whose commit is killed, then the runs of another
# config that follow it instead of a rerun. ``root`` picks the input tree.
TRAIN = {"split": "train"}
TEST = {"split": "test"}
SCENARIOS = {
    # a first commit: there is no folder yet
    "first": ([], TRAIN, [TEST]),
    # the issue: a split merged into a finished folder; then the other split is rebuilt from
    # other inputs with --overwrite, and the killed command is run again
    "merge": ([TRAIN], TEST, [{**TRAIN, "root": "b", "overwrite": True}, TEST]),
    # a finished folder replaced whole (another seed); then the other split with that seed
    "replace": ([TRAIN, TEST], {**TRAIN, "seed": 7, "overwrite": True}, [{**TEST, "seed": 7}]),
}


def attempt(roots: dict[str, Path], out: Path, command: dict[str, Any]) -> None:
    """Run one command as the CLI would; a refusal (exit 1) is an outcome, not a failure."""
    options = dict(command)
    root = roots[options.pop("root", "a")]
    try:
        materialise("2nmnist", out=out, nmnist_root=root, workers=1, format="hdf5", **options)
    except RunError:
        pass


def sequence(roots: dict[str, Path], out: Path, commands: list[dict[str, Any]]) -> Path:
    for command in commands:
        attempt(roots, out, command)
    return out / "2nmnist" / VERSION


def crash(roots: dict[str, Path], start: Path, out: Path, scenario: str, n: int) -> bool:
    """From a copy of ``start`` (the output of the scenario's first runs), its last run killed
    at commit call ``n``; False if it finished."""
    shutil.copytree(start, out)
    with killed_at(n) as state:
        try:
            attempt(roots, out, SCENARIOS[scenario][1])
        except Killed:
            return True
    assert state["calls"] < n
    return False


def beside(base: Path) -> list[str]:
    """What a dataset's folder holds besides the record of its inputs (written after a
    commit, so a commit killed before it leaves none)."""
    return sorted(p.name for p in base.iterdir() if p.name != f".{VERSION}.inputs.json")


def digest(folder: Path) -> dict[str, str] | None:
    return data_digest(folder) if folder.exists() else None


@pytest.mark.parametrize("scenario, swap", [
    ("first", "by one rename"), ("merge", "in one step"), ("merge", "by two renames"),
    ("replace", "in one step"), ("replace", "by two renames")])
def test_a_commit_killed_at_any_call_is_finished_or_undone_never_replayed_stale(
        roots, tmp_path, monkeypatch, scenario, swap):
    if swap == "by two renames":  # as where the system cannot swap two folders at once
        monkeypatch.setattr(engine, "_exchange", lambda a, b: False)
    before, killed, other = SCENARIOS[scenario]
    start = tmp_path / "before"
    start.mkdir()
    old = digest(sequence(roots, start, before))
    new = digest(sequence(roots, tmp_path / "killed", before + [killed]))
    landed = digest(sequence(roots, tmp_path / "landed", before + [killed] + other))
    skipped = digest(sequence(roots, tmp_path / "skipped", before + other))
    n = 0
    while True:
        n += 1
        out = tmp_path / str(n)
        if not crash(roots, start, out / "a", scenario, n):
            break
        base = out / "a" / "2nmnist"
        folder = base / VERSION
        # What a reader sees at once: the old folder or the new one, whole, never a mix; for
        # the instant between two renames, the old one beside it (the next run of any command
        # finishes the commit).
        trash = base / f".{VERSION}.replaced"
        assert digest(folder) in (old, new) or (swap == "by two renames" and digest(folder) is None
                                                and digest(trash) == old), n
        if folder.exists():
            assert verify(folder).ok, n
        # (a) the same command again: the new folder, and nothing else left beside it
        attempt(roots, out / "a", killed)
        assert digest(folder) == new, n
        assert verify(folder).ok, n
        assert beside(base) == [f".{VERSION}.lock", VERSION], n
        # (b) runs of another config instead: the folder a clean sequence gives. The killed run
        # counts once its plan is written (the next run finishes it first), else it never ran.
        crash(roots, start, out / "b", scenario, n)
        base = out / "b" / "2nmnist"
        counted = any(base.glob("*.commit/commit.json")) or digest(base / VERSION) == new
        final = sequence(roots, out / "b", other)
        assert digest(final) == (landed if counted else skipped), n
        assert verify(final).ok, n
    assert n > 10  # the commit made that many calls: each one was a kill point


def test_a_run_killed_again_while_it_finishes_a_killed_commit_still_ends_whole(
        roots, tmp_path, monkeypatch):
    """The issue's moment, the two renames cut apart, then each call of the next run's
    settling killed in turn."""
    monkeypatch.setattr(engine, "_exchange", lambda a, b: False)
    start = tmp_path / "before"
    start.mkdir()
    sequence(roots, start, [TRAIN])
    rebuild = {**TRAIN, "root": "b", "overwrite": True}
    want = digest(sequence(roots, tmp_path / "clean", [TRAIN, TEST, rebuild]))
    between = next(n for n in range(1, 100) if crash(roots, start, tmp_path / f"n{n}", "merge", n)
                   and not (tmp_path / f"n{n}" / "2nmnist" / VERSION).exists())
    m = 0
    while True:
        m += 1
        out = tmp_path / f"m{m}"
        assert crash(roots, start, out, "merge", between)
        with killed_at(m, "_finish_interrupted_commit") as state:
            try:
                attempt(roots, out, rebuild)
            except Killed:
                pass
        attempt(roots, out, rebuild)
        folder = out / "2nmnist" / VERSION
        assert digest(folder) == want, m
        assert beside(folder.parent) == [f".{VERSION}.lock", VERSION]
        if not state["dead"]:
            break
    assert m > 3


@pytest.mark.parametrize("cut", ["before the manifest", "between the renames", "after a swap"])
def test_a_plan_whose_folder_was_replaced_since_is_discarded_and_its_run_resumes(
        roots, tmp_path, monkeypatch, cut):
    out, base = tmp_path / "o", tmp_path / "o" / "2nmnist"
    attempt(roots, out, TRAIN)
    real_replace, real_rmtree = os.replace, shutil.rmtree

    def replace(src: Any, dst: Any) -> None:
        if cut == "between the renames" and str(dst).endswith(VERSION) or (
                cut == "before the manifest" and str(dst).endswith(".partial/manifest.json")):
            raise Killed
        real_replace(src, dst)

    def rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        if cut == "after a swap" and str(path).endswith(".partial"):
            raise Killed  # the old folder, swapped to the stage's name, is not yet removed
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    if cut == "between the renames":
        monkeypatch.setattr(engine, "_exchange", lambda a, b: False)
    with pytest.raises(Killed):
        attempt(roots, out, TEST)
    monkeypatch.undo()
    # The folder is replaced by hand (restored from elsewhere): the plan no longer applies.
    shutil.rmtree(base / VERSION, ignore_errors=True)
    shutil.rmtree(base / f".{VERSION}.replaced", ignore_errors=True)
    other = sequence(roots, tmp_path / "other", [{**TRAIN, "root": "b"}])
    shutil.copytree(other, base / VERSION)
    summary = materialise("2nmnist", out=out, nmnist_root=roots["a"], split="test", workers=1,
                          format="hdf5")
    # Its train split is the folder's as it is now, not the one the plan was made for; a stage
    # that still had its shard records is resumed.
    assert summary.resumed_shards == (1 if cut == "before the manifest" else 0)
    clean = sequence(roots, tmp_path / "clean", [{**TRAIN, "root": "b"}, TEST])
    assert data_digest(base / VERSION) == data_digest(clean)
    assert beside(base) == [f".{VERSION}.lock", VERSION]


def test_a_plan_that_cannot_be_checked_is_undone_and_the_folder_comes_back(
        roots, tmp_path, monkeypatch):
    import json

    out, base = tmp_path / "o", tmp_path / "o" / "2nmnist"
    attempt(roots, out, TRAIN)
    real = os.replace

    def replace(src: Any, dst: Any) -> None:
        if str(dst).endswith(VERSION):
            raise Killed
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(engine, "_exchange", lambda a, b: False)
    with pytest.raises(Killed):
        attempt(roots, out, TEST)
    monkeypatch.undo()
    assert not (base / VERSION).exists()
    # A plan as an older neurodata wrote it: it does not say which folder it replaces.
    plan = next(base.glob("*.commit/commit.json"))
    old = json.loads(plan.read_text())
    plan.write_text(json.dumps({k: old[k] for k in ("manifest", "merge", "fingerprint")}))
    attempt(roots, out, TEST)
    clean = sequence(roots, tmp_path / "clean", [TRAIN, TEST])
    assert data_digest(base / VERSION) == data_digest(clean)
    assert beside(base) == [f".{VERSION}.lock", VERSION]


def test_a_folder_that_lost_a_file_is_not_merged_into_and_the_run_resumes_once_repaired(
        roots, tmp_path):
    out, base = tmp_path / "o", tmp_path / "o" / "2nmnist"
    attempt(roots, out, TRAIN)
    lost = base / VERSION / "2nmnist-train-00000-of-00001.h5"
    before = data_digest(base / VERSION)
    lost.unlink()
    with pytest.raises(RunError, match=f"cannot commit .*{lost.name} is missing"):
        materialise("2nmnist", out=out, nmnist_root=roots["a"], split="test", workers=1,
                    format="hdf5")
    assert data_digest(base / VERSION) == {k: v for k, v in before.items() if k != lost.name}
    assert not list(base.glob("*.commit"))
    attempt(roots, out, {**TRAIN, "overwrite": True})
    summary = materialise("2nmnist", out=out, nmnist_root=roots["a"], split="test", workers=1,
                          format="hdf5")
    assert summary.resumed_shards == 1
    assert data_digest(base / VERSION) == data_digest(
        sequence(roots, tmp_path / "clean", [TRAIN, TEST]))


def test_an_edited_manifest_is_not_merged_into_a_folder_that_then_passes_verify(roots, tmp_path):
    # Before, the merge built the new manifest from the edited one and wrote SHA256SUMS anew:
    # a folder verify reported altered came out passing, with the edit (a count) in it.
    out, folder = tmp_path / "o", tmp_path / "o" / "2nmnist" / VERSION
    attempt(roots, out, TRAIN)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["splits"]["train"]["records"] += 1
    (folder / "manifest.json").write_text(json.dumps(manifest))
    edited = data_digest(folder)
    with pytest.raises(RunError, match="manifest.json does not match its SHA256SUMS"):
        materialise("2nmnist", out=out, nmnist_root=roots["a"], split="test", workers=1,
                    format="hdf5")
    assert data_digest(folder) == edited and not verify(folder).ok


# ---- a manifest of the wrong shape --------------------------------------------------------------

@pytest.mark.parametrize("edit", ["a list", "splits: null", "a split: 3", "files: [1]",
                                  "config: []", "split: []", "tool: 1", "stats: 5"])
def test_a_manifest_of_the_wrong_shape_is_refused_in_one_line_and_overwrite_repairs_it(
        run, roots, tmp_path, edit):
    import json

    args = ["2nmnist", "--nmnist-root", roots["a"], "--out", tmp_path, "--format", "hdf5",
            "--workers", "1", "--quiet"]
    run(*args, "--split", "train")
    manifest = tmp_path / "2nmnist" / VERSION / "manifest.json"
    m = json.loads(manifest.read_text())
    entry = m["files"][0]
    text = {"a list": [m], "splits: null": {**m, "splits": None},
            "a split: 3": {**m, "splits": {"train": 3}}, "files: [1]": {**m, "files": [1]},
            "config: []": {**m, "splits": {"train": {**m["splits"]["train"], "config": []}}},
            "split: []": {**m, "files": [{**entry, "split": []}]}, "tool: 1": {**m, "tool": 1},
            "stats: 5": {**m, "splits": {"train": {**m["splits"]["train"], "stats": 5}}}}[edit]
    manifest.write_text(json.dumps(text))
    for split in ("train", "test"):
        result = run(*args, "--split", split, code=1)
        assert str(manifest) in result.output and "--overwrite" in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    for command in ("verify", "info"):
        assert "manifest.json" in run(command, manifest.parent, code=1).output
    run(*args, "--split", "test", "--overwrite")
    assert verify(manifest.parent).ok
    assert list(json.loads(manifest.read_text())["splits"]) == ["test"]
