"""Fixtures: run the CLI in-process."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from neurodata_cli.cli import cli


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
