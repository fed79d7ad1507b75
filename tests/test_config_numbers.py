"""Number options: any value a user can type is one line and exit 2, never a traceback."""

from __future__ import annotations

import numpy as np
import pytest

from neurodata_cli import materialise
from neurodata_cli.errors import ConfigError

HUGE = str(10**20)  # past a 64-bit integer: numpy and HDF5 cannot store it


@pytest.mark.parametrize("args,flag", [
    (["yinyang", "--size", HUGE], "--size"),
    (["yinyang", "--size", "1e20"], "--size"),
    (["es-imagenet", "--imagenet-root", "ROOT", "--min-events", HUGE], "--min-events"),
    (["es-imagenet", "--imagenet-root", "ROOT", "--limit", HUGE], "--limit"),
    (["2nmnist", "--nmnist-root", "ROOT", "--seed", HUGE], "--seed"),
])
def test_a_whole_number_flag_out_of_range_is_exit_2_naming_it(run, tmp_path, args, flag):
    (tmp_path / "ROOT").mkdir()
    args = [str(tmp_path / a) if a == "ROOT" else a for a in args]
    result = run(*args, "--out", tmp_path / "o", code=2)
    lines = result.output.strip().splitlines()
    assert flag in lines[-1] and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("text,words", [
    (f"min_events: {HUGE}\n", ["min_events", "cfg.yaml", "outside"]),
    (f"shard_size: {HUGE}\n", ["shard_size", "cfg.yaml", "outside"]),
    ("min_events: " + "9" * 5000 + "\n", ["cfg.yaml"]),  # more digits than Python converts
    ("min_events: 1.0e20\n", ["min_events", "whole number"]),
    ("threshold: 1" + "0" * 400 + "\n", ["threshold", "finite"]),  # past what a float holds
])
def test_a_whole_number_key_out_of_range_is_exit_2_naming_it(run, tmp_path, text, words):
    (tmp_path / "im").mkdir()
    (tmp_path / "cfg.yaml").write_text(text)
    result = run("es-imagenet", "--imagenet-root", tmp_path / "im", "--config",
                 tmp_path / "cfg.yaml", "--out", tmp_path / "o", code=2)
    line = result.output.strip()
    assert "\n" not in line and len(line) < 300 and all(w in line for w in words)
    assert not (tmp_path / "o").exists()


def test_the_python_api_checks_whole_numbers_the_same_way(tmp_path):
    with pytest.raises(ConfigError, match="size"):
        materialise("yinyang", tmp_path, size=10**20, quiet=True)
    with pytest.raises(ConfigError, match="whole number"):
        materialise("yinyang", tmp_path, size=1e3, quiet=True)
    materialise("yinyang", tmp_path, size=np.int64(3), quiet=True)  # numpy's ints are whole
    assert (tmp_path / "yinyang").is_dir()
