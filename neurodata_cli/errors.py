"""Errors that the CLI turns into a message and an exit code."""


class NeurodataError(Exception):
    """A failure the user should see as one clear message."""

    exit_code = 1


class ConfigError(NeurodataError):
    """Bad flags or config: exit 2, before anything is written."""

    exit_code = 2


class RunError(NeurodataError):
    """A runtime failure (bad input file, refused output folder): exit 1."""

    exit_code = 1
