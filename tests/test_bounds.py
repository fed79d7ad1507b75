"""Bounded everywhere: no input makes a run hang, grow without end, or print an endless line.

Yin-Yang radii the walk cannot finish with, Ctrl-C during the C walk, YAML alias bombs, and
``verify`` on FIFOs, devices, links, extra folders and duplicated lines.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from neurodata_cli.datasets.yinyang import walk

EXE = shutil.which("neurodata", path=str(Path(sys.executable).parent))
# --r-small just outside and just inside the bound, with the default --r-big 0.5.
OUTSIDE, INSIDE = 2.28e-4, 2.33e-4


# ---- Yin-Yang radii ----------------------------------------------------------------------------

def neurodata(*args: object, timeout: float = 20) -> subprocess.CompletedProcess:
    """The installed command in a subprocess: one that hangs fails the test, not the suite."""
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("args, flag, words", [
    (["--r-small", "1e-300", "--r-big", "1e-299"], "--r-small", "underflow"),
    (["--r-small", "1e299", "--r-big", "1e300"], "--r-small", "overflow"),
    (["--r-small", "0.1", "--r-big", "1e300"], "--r-big", "overflow"),
    (["--r-small", "1e-7"], "--r-small", "tries on average"),
    (["--r-small", OUTSIDE], "--r-small", "tries on average"),
])
def test_radii_the_walk_cannot_finish_with_are_refused_naming_the_flag(tmp_path, args, flag,
                                                                       words):
    result = neurodata("yinyang", *args, "--size", "10", "--out", tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"Error: invalid {flag}: ") and words in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_radii_from_a_config_file_name_its_key(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("r_small: 1.0e-7\n")
    result = neurodata("yinyang", "--config", cfg, "--out", tmp_path / "o")
    assert result.returncode == 2
    assert "key 'r_small' in" in result.stderr and "tiny.yaml" in result.stderr
    assert not (tmp_path / "o").exists()


def test_the_python_api_refuses_them_too(tmp_path):
    code = "from neurodata_cli.datasets.yinyang import walk; walk.generate(1, 1, 1e-7, 0.5)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=20, cwd=tmp_path)
    assert "ValueError: r_small 1e-07 is too small" in result.stderr


def test_radii_just_inside_the_bound_still_generate():
    assert OUTSIDE < walk.MIN_RATIO * 0.5 < INSIDE
    samples, labels = walk.generate(3, 1, INSIDE, 0.5)
    assert samples.shape == (3, 4) and set(labels) <= {0, 1, 2}


@pytest.mark.parametrize("ratio", [0.05, 0.2, 0.5, 0.7, 0.97])
def test_the_bound_is_the_generators_own_acceptance_rate(ratio):
    # The areas the bound is computed from, against the reference's rule on a million points.
    r_big, n = 0.5, 1_000_000
    rng = np.random.default_rng(7)
    x, y = rng.random(n) * 2 * r_big, rng.random(n) * 2 * r_big
    r_small = ratio * r_big
    inside = np.sqrt((x - r_big) ** 2 + (y - r_big) ** 2) <= r_big
    d_right = np.sqrt((x - 1.5 * r_big) ** 2 + (y - r_big) ** 2)
    d_left = np.sqrt((x - 0.5 * r_big) ** 2 + (y - r_big) ** 2)
    dot = (d_right < r_small) | (d_left < r_small)
    yang = ~dot & ((d_right <= r_small) | ((d_left > r_small) & (d_left <= 0.5 * r_big))
                   | ((y > r_big) & (d_right > 0.5 * r_big)))
    seen = [np.mean(inside & c) for c in (~dot & ~yang, yang, dot)]
    assert np.allclose(walk.class_fractions(ratio), seen, rtol=0.03, atol=5e-4)


# ---- Ctrl-C during the C walk ------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("workers, to_group", [(1, False), (2, False), (2, True)])
def test_ctrl_c_stops_a_slow_walk_within_seconds(tmp_path, workers, to_group):
    # Radii just inside the bound: the paper's 7,000 samples would take minutes.
    cmd = [EXE, "yinyang", "--r-small", str(INSIDE), "--out", str(tmp_path),
           "--quiet", "--workers", str(workers)]
    # Its own session, so that a SIGINT to the group reaches every process as Ctrl-C does; a
    # test runner that ignores SIGINT must not pass that on.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 30
        while len(list(tmp_path.rglob("*.part"))) < workers:  # every walk has started
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)
        pool = _children(proc.pid)
        assert len(pool) == (workers if workers > 1 else 0)
        start = time.monotonic()
        if to_group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert took < 2.5, took
    assert proc.returncode == 130
    assert err.decode() == "Interrupted; rerun the same command to resume.\n"
    time.sleep(0.2)
    assert not [pid for pid in pool if _alive(pid)]
    assert not (tmp_path / "yinyang" / "1.0.0").exists()


INTERRUPTED_THEN_RESUMED = f"""
import os, signal, threading
import numpy as np
from neurodata_cli.datasets.yinyang import walk
walker = walk.Walker(5, {INSIDE}, 0.5)
threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
try:
    walker.take(100_000)
except KeyboardInterrupt:
    got, want = walker.take(5), walk.generate(5, 5, {INSIDE}, 0.5)
    print(all(np.array_equal(a, b) for a, b in zip(got, want, strict=True)))
"""


def test_an_interrupted_walk_leaves_its_stream_where_it_was(tmp_path):
    # Through the Python API, a caller that catches KeyboardInterrupt and goes on must still get
    # the samples of one walk. (Run outside the checkout, so that the installed C walk is used.)
    result = subprocess.run([sys.executable, "-c", INTERRUPTED_THEN_RESUMED], capture_output=True,
                            text=True, timeout=20, cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert result.stdout == "True\n", result.stderr


# ---- YAML --------------------------------------------------------------------------------------

BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{k}: &{k} [{', '.join([f'*{p}'] * 9)}]\n"
    for p, k in zip("abcdefgh", "bcdefghi", strict=True))


def test_a_yaml_alias_bomb_is_refused_at_once_naming_the_file_and_line(tmp_path):
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text(BOMB + "r_small: *i\n")  # 9**9 items once expanded
    start = time.monotonic()
    result = neurodata("yinyang", "--config", cfg, "--out", tmp_path / "o", timeout=10)
    assert time.monotonic() - start < 3  # mostly the interpreter's start-up
    assert result.returncode == 2
    assert result.stderr == (f"Error: config file {cfg} line 2 is not plain YAML data: the alias "
                             "*a is refused (write the value out)\n")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("text, words", [
    ("r_small: [" + ", ".join(["0"] * 20_000) + "]\n", ["key 'r_small' in", "expected a number"]),
    ("encoding: '" + "x" * 100_000 + "'\n", ["key 'encoding' in", "expected one of"]),
    ("? " + "k" * 100_000 + "\n: 1\n", ["unknown key 'kkk"]),
    ("? " + "1" * 4000 + "\n: 1\n", ["key 1111", "is not a string"]),
    ("splits:\n  ? " + "s" * 100_000 + "\n  : {size: 1, seed: 1}\n", ["splits.sss", "at most 64"]),
    ("r_small: " + "1" * 5000 + "\n", ["line 1", "too many digits"]),
    ("r_small: " + "[" * 10_000 + "]" * 10_000 + "\n", ["line 1", "64 levels"]),
])
def test_config_errors_stay_one_short_line_whatever_the_value(run, tmp_path, text, words):
    cfg = tmp_path / "big.yaml"
    cfg.write_text(text)
    result = run("yinyang", "--config", cfg, "--out", tmp_path / "o", code=2)
    line = result.output
    assert line.startswith("Error: ") and line.count("\n") == 1 and len(line) < 600, line[:1000]
    assert "big.yaml" in line and all(w in line for w in words), line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("text, line", [
    ("r_small: 0.1\nr_big: 0.5\nr_small: 0.2\n", "line 3 is not plain YAML data: the key "
     "'r_small' is given twice (first on line 1)"),
    ("splits:\n  train: {size: 5, seed: 1}\n  train: {size: 9, seed: 3}\n", "line 3 is not "
     "plain YAML data: the key 'train' is given twice (first on line 2)"),
])
def test_a_key_given_twice_in_a_config_is_refused_naming_both_lines(run, tmp_path, text, line):
    # Before, PyYAML kept the last value and the run used it without a word.
    cfg = tmp_path / "twice.yaml"
    cfg.write_text(text)
    result = run("yinyang", "--config", cfg, "--out", tmp_path / "o", code=2)
    assert result.output == f"Error: config file {cfg} {line}\n"
    assert not (tmp_path / "o").exists()


def test_a_config_that_never_ends_is_refused_within_a_bounded_read(tmp_path):
    # Before, '--config /dev/zero' was read whole: all memory, then the kernel's kill.
    result = neurodata("yinyang", "--config", "/dev/zero", "--out", tmp_path / "o", timeout=20)
    assert result.returncode == 2
    assert result.stderr == ("Error: config file /dev/zero is larger than 1048576 bytes; a "
                             "config is a few keys\n")
    assert not (tmp_path / "o").exists()


# ---- verify ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished folder to copy and spoil: npy files side by side."""
    out = tmp_path_factory.mktemp("finished")
    subprocess.run([EXE, "yinyang", "--size", "10", "--format", "npy", "--out", out, "--quiet"],
                   check=True, timeout=60)
    return out / "yinyang" / "1.0.0"


def _replace(path: Path, make) -> None:
    path.unlink()
    make(path)


def _duplicate_last_line(sums: Path) -> None:
    lines = sums.read_text().splitlines(keepends=True)
    sums.write_text("".join(lines + lines[-1:]))


SPOILS = {
    # a listed file that would block, never end, or be read from elsewhere
    "fifo": (lambda f: _replace(f / "train_labels.npy", os.mkfifo),
             "listed file 'train_labels.npy' is a FIFO"),
    "link to /dev/zero": (lambda f: _replace(f / "train_labels.npy",
                                             lambda p: p.symlink_to("/dev/zero")),
                          "listed file 'train_labels.npy' is a symbolic link"),
    "link to a copy": (lambda f: (shutil.copy(f / "train_labels.npy", f.parent / "outside.npy"),
                                  _replace(f / "train_labels.npy",
                                           lambda p: p.symlink_to(f.parent / "outside.npy"))),
                       "listed file 'train_labels.npy' is a symbolic link"),
    "fifo manifest": (lambda f: _replace(f / "manifest.json", os.mkfifo),
                      "listed file 'manifest.json' is a FIFO"),
    "fifo sums": (lambda f: _replace(f / "SHA256SUMS", os.mkfifo),
                  "SHA256SUMS: it is a FIFO, not a regular file"),
    # extra entries and lines that verify said OK to
    "empty folder": (lambda f: (f / "empty").mkdir(), "folder 'empty' holds no listed file"),
    "link to a folder": (lambda f: (f / "elsewhere").symlink_to(f.parent),
                         "'elsewhere' is a symbolic link"),
    "link to a file": (lambda f: (f / "again.npy").symlink_to(f / "train_labels.npy"),
                       "'again.npy' is a symbolic link"),
    "duplicate line": (lambda f: _duplicate_last_line(f / "SHA256SUMS"),
                       "SHA256SUMS line 4 lists 'train_samples.npy' again (first on line 3)"),
    "endless line": (lambda f: (f / "SHA256SUMS").open("ab").write(b"0" * 300_000),
                     "SHA256SUMS line 4 is longer than 65536 bytes"),
}


@pytest.mark.parametrize("spoil", SPOILS)
def test_verify_reports_what_a_finished_folder_never_holds_and_never_hangs(tmp_path, finished,
                                                                          spoil):
    folder = tmp_path / "copy"
    shutil.copytree(finished, folder)
    make, words = SPOILS[spoil]
    make(folder)
    result = neurodata("verify", folder, timeout=20)
    assert result.returncode == 1, result.stdout
    assert f"problem: {words}" in result.stdout or words in result.stdout, result.stdout
    assert result.stdout.splitlines()[-1].startswith("FAILED") and not result.stderr


@pytest.mark.parametrize("command", ["info", "preview"])
def test_a_fifo_manifest_is_refused_by_the_commands_that_read_it(tmp_path, finished, command):
    folder = tmp_path / "copy"
    shutil.copytree(finished, folder)
    _replace(folder / "manifest.json", os.mkfifo)
    result = neurodata(command, folder, timeout=20)
    assert result.returncode == 1
    assert result.stderr == (f"Error: cannot read {folder / 'manifest.json'}: it is a FIFO, not "
                             "a regular file\n")


def test_verify_gives_up_on_a_read_that_stalls(tmp_path, finished, monkeypatch):
    # A hung network mount, as a read that never returns: reported, not waited for.
    from neurodata_cli import manifest

    release = __import__("threading").Event()
    real = manifest.sha256_regular

    def stalls(path, tick):
        if path.name == "train_labels.npy":
            release.wait(30)
        return real(path, tick)

    monkeypatch.setattr(manifest, "sha256_regular", stalls)
    start = time.monotonic()
    try:
        report = manifest.verify(finished, stall=0.3)
    finally:
        release.set()
    assert time.monotonic() - start < 3
    assert report.problems == ["cannot read 'train_labels.npy': no data for 0.3 s"]
    assert report.checked == 3 and not report.altered
