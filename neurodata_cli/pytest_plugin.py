"""The pytest plugin (entry point ``pytest11``): datasets as test fixtures, made once.

``neurodata_materialise("yinyang", size=500, seed=1)`` returns the folder of that config
(``<cache>/yinyang-<key>/yinyang/1.0.0``), materialised on first use and reused after: by the
next test, the next session, and the other pytest-xdist workers, which wait for the one that
builds it (the engine's folder lock). Open it with ``neurodata_cli.open_dataset(folder)``.

The cache is ``$NEURODATA_CACHE`` when set, else pytest's cache folder
(``.pytest_cache/d/neurodata``; ``pytest --cache-clear`` empties it), else (``-p
no:cacheprovider``) the session's temporary folder. See docs/ci.md.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# Keywords of ``materialise`` that change how a folder is made or checked, never its bytes:
# they do not name the folder.
RUN_KEYWORDS = frozenset({"workers", "scheduler", "verify", "wait", "quiet"})


def cache_root(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where fixtures are materialised: one place for every worker of a session."""
    env = os.environ.get("NEURODATA_CACHE")
    if env:
        return Path(env).expanduser()
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("neurodata"))
    base = tmp_path_factory.getbasetemp()
    # An xdist worker's temporary folder is its own; their parent is the session's.
    return (base.parent if hasattr(config, "workerinput") else base) / "neurodata"


def folder_key(dataset: str, options: dict[str, Any]) -> str:
    """A short digest of the dataset and its options: each config gets its own output root,
    so that two configs of one dataset never refuse each other's folder."""
    named = {k: v for k, v in options.items() if k not in RUN_KEYWORDS}
    if "config" in named:  # a YAML file: by what it says, so that an edit gets a new folder
        try:
            named["config"] = hashlib.sha256(Path(named["config"]).read_bytes()).hexdigest()
        except (OSError, TypeError):
            pass  # materialise names the file it cannot read
    text = json.dumps([dataset, named], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.fixture(scope="session")
def neurodata_materialise(request: pytest.FixtureRequest,
                          tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``neurodata_materialise(dataset, **options) -> Path``: the materialised folder of that
    config, built once and reused (``verify=True`` hashes it before reuse)."""
    root = cache_root(request.config, tmp_path_factory)

    def make(dataset: str, **options: Any) -> Path:
        from .api import materialise

        out = root / f"{dataset}-{folder_key(dataset, options)}"
        return materialise(dataset, out=out, **options).folder

    return make
