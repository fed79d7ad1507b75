"""Output folders in an object store (issue 26, items 1, 2 and 5), against a local S3 server."""

from __future__ import annotations

import os

import pytest


def test_a_url_where_only_local_paths_work_is_refused_in_one_line(run, tmp_path, monkeypatch):
    """Never a local folder named ``s3:`` that a user would take for the bucket."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    for args in (["yinyang", "--out", "s3://bucket/ds", "--size", "10"],
                 ["yinyang", "--config", "s3://bucket/c.yaml", "--out", "folder"],
                 ["verify", "s3://bucket/ds/yinyang/1.0.0"],
                 ["info", "s3://bucket/ds/yinyang/1.0.0"],
                 ["preview", "s3://bucket/ds/yinyang/1.0.0"],
                 ["export", "folder", "spikingjelly", "--to", "s3://bucket/sj"],
                 ["key", "yinyang", "--config", "s3://bucket/c.yaml"]):
        result = run(*args, code=2)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "a URL is not supported here" in lines[0], result.output
    assert sorted(os.listdir(tmp_path)) == ["folder"]
    assert not os.listdir(tmp_path / "folder")


def test_the_python_api_refuses_a_url_out_too(tmp_path):
    from neurodata_cli import materialise
    from neurodata_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="out s3://b/x: a URL is not supported"):
        materialise("yinyang", out="s3://b/x", size=10)
