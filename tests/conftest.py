"""Fixtures: run the CLI in-process. The demo plugin is seen by the tests only."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from neurodata_cli.cli import cli

# `make test` installs examples/plugin here, beside the venv's packages but not among them: the
# tests (and the processes they start) see the `ramp` dataset, the user's `neurodata` does not.
TEST_PLUGINS = Path(sys.prefix) / "test-plugins"
if TEST_PLUGINS.is_dir() and str(TEST_PLUGINS) not in sys.path:
    sys.path.append(str(TEST_PLUGINS))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (os.environ.get("PYTHONPATH"), str(TEST_PLUGINS)) if p)


@pytest.fixture
def run():
    """``run(*args, code=0)`` invokes ``neurodata`` in-process and checks the exit code."""
    runner = CliRunner()

    def invoke(*args: str, code: int | None = 0):
        result = runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)
        if code is not None:
            assert result.exit_code == code, (result.exit_code, result.output)
        return result

    return invoke
