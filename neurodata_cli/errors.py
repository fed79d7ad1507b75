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


class FolderExists(RunError):
    """The output folder holds something this run may not replace (exit 1).

    A finished folder made with another config, one that fails its check (a listed file
    missing or cut short), or one that is not a finished neurodata folder at all. The message
    says how to replace it: ``overwrite=True`` from Python, ``--overwrite`` from the command
    line. A folder made with the same config is never refused: the run reuses it.
    """
