"""neurodata: materialise neuromorphic benchmark datasets, exactly and fast.

``materialise(name, out=..., **options)`` writes a dataset and returns its summary;
``open_dataset(folder)`` serves a materialised folder's samples; ``key(name, **options)`` is
the cache key of the folder ``materialise`` would make, known before building it.
``materialise`` raises ``FolderExists`` when the folder holds what it may not replace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ConfigError, FolderExists, NeurodataError, RunError
from .version import __version__

if TYPE_CHECKING:
    from .api import key, materialise
    from .reader import open_dataset

__all__ = ["key", "materialise", "open_dataset", "ConfigError", "FolderExists",
           "NeurodataError", "RunError", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `neurodata --version` does not import numpy.
    if name == "open_dataset":
        from .reader import open_dataset

        return open_dataset
    if name == "materialise":
        from .api import materialise

        return materialise
    if name == "key":
        from .api import key

        return key
    raise AttributeError(f"module 'neurodata_cli' has no attribute {name!r}")
