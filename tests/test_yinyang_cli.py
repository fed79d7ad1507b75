"""Yin-Yang through the command line: reproducibility, manifests, verify, refusal, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import tree_digest

from neurodata_cli import __version__

FOLDER = ("yinyang", "1.0.0")


def folder(out):
    return out.joinpath(*FOLDER)


@pytest.mark.parametrize("fmt", ["hdf5", "npy"])
def test_two_runs_give_identical_bytes_and_sha256sum_accepts(run, tmp_path, fmt):
    for name in ("a", "b"):
        run("yinyang", "--format", fmt, "--size", "3000", "--seed", "9", "--out",
            tmp_path / name, "--quiet")
    a, b = folder(tmp_path / "a"), folder(tmp_path / "b")
    assert (a / "SHA256SUMS").read_bytes() == (b / "SHA256SUMS").read_bytes()
    data = {k: v for k, v in tree_digest(a).items() if k != "manifest.json"}
    assert data == {k: v for k, v in tree_digest(b).items() if k != "manifest.json"}
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "-c", "--strict", "--quiet", "SHA256SUMS"], cwd=a, check=True)


def test_sha256sums_format_and_manifest_contents(run, tmp_path):
    run("yinyang", "--format", "npy", "--out", tmp_path, "--quiet")
    f = folder(tmp_path)
    text = (f / "SHA256SUMS").read_bytes()
    assert b"\r" not in text and text.endswith(b"\n")
    paths = [line.split("  ", 1)[1] for line in text.decode().splitlines()]
    assert paths == sorted(paths) and len(paths) == 7 and "manifest.json" in paths
    m = json.loads((f / "manifest.json").read_text())
    assert m["dataset"] == "yinyang" and m["version"] == "1.0.0"
    assert m["tool"]["version"] == __version__
    assert m["libraries"]["numpy"] == np.__version__
    assert m["config"]["splits"]["train"] == {"size": 5000, "seed": 42}
    assert m["config"]["r_small"] == 0.1 and m["config"]["format"] == "npy"
    train = m["splits"]["train"]["stats"]
    assert train["samples"] == 5000 and sum(train["class_counts"].values()) == 5000
    files = {e["path"]: e for e in m["files"]}
    assert files["train_samples.npy"]["records"] == 5000
    assert files["train_samples.npy"]["bytes"] == (f / "train_samples.npy").stat().st_size
    assert "libhdf5" not in m["libraries"]


def test_hdf5_is_written_by_h5py_so_the_manifest_lists_libhdf5(run, tmp_path):
    import h5py

    run("yinyang", "--size", "10", "--out", tmp_path, "--quiet")
    m = json.loads((folder(tmp_path) / "manifest.json").read_text())
    assert m["libraries"]["libhdf5"] == h5py.version.hdf5_version
    assert m["libraries"]["h5py"] == h5py.__version__
    with h5py.File(folder(tmp_path) / "yinyang-train-00000-of-00001.h5", "r") as f:
        assert f["samples/samples"].shape == (10, 4)
    assert m["files"][0]["records"] == 10 and m["splits"]["train"]["records"] == 10


def test_info_and_verify_describe_the_columns(run, tmp_path):
    """Both say what each sample holds, from the dataset's declared features."""
    run("yinyang", "--size", "10", "--encoding", "spike-times", "--out", tmp_path, "--quiet")
    want = ["samples: float64[4]: x, y, 1 - x, 1 - y",
            "labels: int64: class index 0..2 (yin, yang, dot)"]
    for command in ("info", "verify"):
        lines = [line.strip() for line in run(command, folder(tmp_path)).output.splitlines()]
        assert lines[lines.index(want[0]):][:3] == [*want, next(
            line for line in lines if line.startswith("spike_times: float64[5]"))]


def test_verify_passes_then_names_flipped_missing_and_extra_files(run, tmp_path):
    run("yinyang", "--format", "npy", "--out", tmp_path, "--quiet")
    f = folder(tmp_path)
    assert "OK: 6 data files and manifest.json match" in run("verify", f).output

    blob = bytearray((f / "test_samples.npy").read_bytes())
    blob[200] ^= 0x01
    (f / "test_samples.npy").write_bytes(bytes(blob))
    (f / "validation_labels.npy").unlink()
    (f / "notes.txt").write_text("extra\n")
    out = run("verify", f, code=1).output
    assert "altered: test_samples.npy" in out
    assert "missing: validation_labels.npy" in out
    assert "unlisted: notes.txt" in out


def test_rerun_is_refused_and_changes_nothing_then_overwrite_replaces(run, tmp_path):
    run("yinyang", "--format", "npy", "--size", "100", "--out", tmp_path, "--quiet")
    before = tree_digest(folder(tmp_path))
    result = run("yinyang", "--format", "npy", "--size", "200", "--out", tmp_path, code=1)
    assert "--overwrite" in result.output
    assert tree_digest(folder(tmp_path)) == before
    run("yinyang", "--format", "npy", "--size", "200", "--out", tmp_path, "--overwrite", "--quiet")
    assert np.load(folder(tmp_path) / "train_samples.npy").shape == (200, 4)
    assert run("verify", folder(tmp_path)).exit_code == 0
    assert sorted(p.name for p in (tmp_path / "yinyang").iterdir()) == [
        ".1.0.0.inputs.json", ".1.0.0.lock", "1.0.0"]


@pytest.mark.parametrize("fmt, fail_at", [("npy", 1), ("npy", 2), ("hdf5", 1), ("hdf5", 3),
                                          ("npy --encoding spike-times", 6)])
def test_a_failed_run_leaves_nothing_that_looks_complete(run, tmp_path, monkeypatch, fmt,
                                                        fail_at):
    # A file that cannot be written (the disk fills) at any point of the run.
    import os

    from neurodata_cli import manifest

    calls, real = [], os.replace

    def replace(a, b):
        calls.append(b)
        if len(calls) == fail_at:
            raise OSError(28, "No space left on device")
        return real(a, b)

    monkeypatch.setattr(manifest.os, "replace", replace)
    failed = run("yinyang", "--format", *fmt.split(), "--out", tmp_path, "--quiet",
                 "--workers", "1", code=1)
    assert "No space left on device" in failed.output and "Traceback" not in failed.output
    assert str(calls[fail_at - 1]) in failed.output  # the file is named
    assert not folder(tmp_path).exists()
    monkeypatch.undo()
    run("yinyang", "--format", *fmt.split(), "--out", tmp_path, "--quiet")
    assert run("verify", folder(tmp_path)).exit_code == 0


def test_summary_line_and_info(run, tmp_path):
    out = run("yinyang", "--out", tmp_path).output
    assert "train 5000, validation 1000, test 1000 samples" in out and "yinyang 1.0.0" in out
    info = run("info", folder(tmp_path)).output
    assert "yinyang 1.0.0" in info and "train (hdf5, 5000 samples)" in info


def test_config_file_and_flags_are_resolved_into_the_manifest(run, tmp_path):
    cfg = tmp_path / "my.yaml"
    cfg.write_text("r_small: 0.2\nr_big: 0.6\nformat: npy\nsplits:\n  a: {size: 30, seed: 1}\n")
    run("yinyang", "--config", cfg, "--r-big", "0.7", "--out", tmp_path / "o", "--quiet")
    m = json.loads((folder(tmp_path / "o") / "manifest.json").read_text())
    assert m["config"]["r_small"] == 0.2 and m["config"]["r_big"] == 0.7
    assert m["config"]["splits"] == {"a": {"size": 30, "seed": 1}}
    assert m["config"]["spike_times"]["t_bias"] == 0.9  # packaged default fills the gap


@pytest.mark.parametrize(
    "args, words",
    [
        (["--size", "0"], ["--size"]),
        (["--size", "10", "--seed", "-1"], ["--seed"]),
        (["--size", "10", "--seed", str(2**32)], ["--seed"]),
        (["--size", "ten"], ["--size"]),
        (["--r-small", "abc"], ["--r-small"]),
        (["--r-small", "0.6"], ["--r-small", "r_big"]),
        (["--r-small", "0"], ["--r-small"]),
        (["--r-small", "-0.1"], ["--r-small"]),
        (["--r-big", "nan"], ["--r-big"]),
        (["--r-big", "inf"], ["--r-big"]),
        (["--seed", "3"], ["--seed", "--size"]),
        (["--format", "csv"], ["--format"]),
    ],
)
def test_bad_flags_exit_2_naming_the_flag_and_write_nothing(run, tmp_path, args, words):
    result = run("yinyang", *args, "--out", tmp_path, code=2)
    for word in words:
        assert word in result.output
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "text, words",
    [
        ("r_smal: 0.1\n", ["r_smal", "my.yaml"]),
        ("r_small: '0.1'\n", ["r_small", "my.yaml"]),
        ("r_small: true\n", ["r_small"]),
        ("splits:\n  train: {size: 0, seed: 1}\n", ["splits.train.size", "my.yaml"]),
        ("splits:\n  train: {size: 5, seed: -4}\n", ["splits.train.seed"]),
        ("splits:\n  train: {size: 5, seed: 1, colour: red}\n", ["splits.train.colour"]),
        ("splits:\n  ../x: {size: 5, seed: 1}\n", ["../x"]),
        ("spike_times: {t_early: 2.0, t_late: 1.0}\n", ["spike_times.t_early"]),
        ("spike_times: {t_bias: fast}\n", ["spike_times.t_bias"]),
        ("- just\n- a list\n", ["mapping", "my.yaml"]),
        ("r_small: [unclosed\n", ["my.yaml", "YAML"]),
        ("r_small: !!python/object/apply:os.system ['touch PWNED']\n", ["my.yaml"]),
    ],
)
def test_bad_config_files_exit_2_naming_key_and_file(run, tmp_path, monkeypatch, text, words):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "my.yaml"
    cfg.write_text(text)
    result = run("yinyang", "--config", cfg, "--out", tmp_path / "o", code=2)
    for word in words:
        assert word in result.output
    assert not (tmp_path / "o").exists()
    assert not (tmp_path / "PWNED").exists()


def test_missing_config_file_exits_2(run, tmp_path):
    assert "--config" in run("yinyang", "--config", tmp_path / "nope.yaml", code=2).output


def test_installed_console_script_and_module_entry_point(tmp_path):
    exe = shutil.which("neurodata", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert exe, "the neurodata console script is not installed beside this python"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    assert __version__ in out
    # The packaged config is found from any working directory, without the repository.
    r = subprocess.run([sys.executable, "-m", "neurodata_cli", "yinyang", "--size", "5",
                        "--out", "o"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "yinyang" / "1.0.0" / "yinyang-train-00000-of-00001.h5").is_file()
    r = subprocess.run([exe, "yinyang", "--r-small", "x"], cwd=tmp_path, capture_output=True,
                       text=True)
    assert r.returncode == 2 and "--r-small" in r.stderr


def test_the_console_script_keeps_exit_codes_and_output(tmp_path):
    # Output is flushed, failures keep their codes, and a closed pipe ends quietly.
    from pathlib import Path

    script = shutil.which("neurodata", path=str(Path(sys.executable).parent))
    ok = subprocess.run([script, "yinyang", "--size", "500", "--format", "npy", "--out",
                         str(tmp_path)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "yinyang 1.0.0" in ok.stdout and str(tmp_path) in ok.stdout
    again = subprocess.run([script, "yinyang", "--size", "600", "--format", "npy", "--out",
                            str(tmp_path)], capture_output=True, text=True)
    assert again.returncode == 1 and "--overwrite" in again.stderr + again.stdout
    usage = subprocess.run([script, "yinyang", "--size", "0"], capture_output=True, text=True)
    assert usage.returncode == 2 and "--size" in usage.stderr
    piped = subprocess.run(f"'{script}' info '{folder(tmp_path)}' | head -c 5", shell=True,
                           capture_output=True, text=True)
    assert piped.returncode == 0 and piped.stdout == "yinya"


@pytest.mark.parametrize("size", [0, 1, 4096, 2**20 + 1, 20_000_123])
def test_file_hashes_of_any_size(tmp_path, size):
    import hashlib
    import os

    from neurodata_cli.formats import sha256_file

    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
