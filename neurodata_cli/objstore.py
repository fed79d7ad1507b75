"""Output folders in an object store (``--out s3://bucket/prefix``), through fsspec.

Nothing here imports fsspec at module level: a local output needs no extra package, and a URL
needs ``pip install 'neurodata[cloud]'``.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import ConfigError

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(value: Any) -> bool:
    """Whether ``value`` is a URL string (``scheme://...``); a ``Path`` never is."""
    return isinstance(value, str) and bool(_SCHEME.match(value))


def refuse_url(value: Any, what: str) -> None:
    """One line (exit 2) for a URL where only a local path works: never a local folder named
    ``s3:`` that a user would take for the bucket."""
    if is_url(value):
        raise ConfigError(f"{what} {value}: a URL is not supported here; give a local path")
