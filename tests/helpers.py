"""Helpers the tests share (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"


def reference(*parts: str) -> Path:
    path = REFERENCE.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"reference data missing: {path} (../shared must sit beside the repository)")
    return path


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` with its sha256: a snapshot to compare before and after."""
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            p = Path(root) / name
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def data_digest(folder: Path) -> dict[str, str]:
    """Every file's sha256 but the manifest's, which records when and how long a run took."""
    return {k: v for k, v in tree_digest(folder).items() if k != "manifest.json"}
