"""Helpers the tests share (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"  # the published reference files, copied into the repository


def reference(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"reference data missing: {path}")
    return path


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` with its sha256: a snapshot to compare before and after.
    The run record (``run.json``: where and when a run read its inputs) is left out: two runs
    of one folder record two times."""
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            p = Path(root) / name
            rel = str(p.relative_to(folder))
            if rel != "run.json":
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def data_digest(folder: Path) -> dict[str, str]:
    """Every file's sha256 (the manifest holds no times, so it is compared too)."""
    return tree_digest(folder)


class Shard:
    """An HDF5 shard read whole with plain h5py: ``events``, ``offsets``, ``samples``, ``attrs``."""

    def __init__(self, path: Path):
        import h5py

        with h5py.File(path, "r") as f:
            self.events = {k: f["events"][k][()] for k in "xytp"} if "events" in f else {}
            self.offsets = f["samples/offsets"][()] if "offsets" in f["samples"] else None
            self.samples = {
                name: ds.asstr()[()] if h5py.check_string_dtype(ds.dtype) else ds[()]
                for name, ds in f["samples"].items() if name != "offsets"}
            self.attrs = dict(f.attrs)


def read_shard(path: Path) -> Shard:
    return Shard(path)


def data_sums(folder: Path) -> str:
    """SHA256SUMS without the manifest's line: the data files' checksums alone (the manifest
    also records how the inputs were kept: folders, zips or tars)."""
    lines = (Path(folder) / "SHA256SUMS").read_text().splitlines(keepends=True)
    return "".join(line for line in lines if not line.endswith("  manifest.json\n"))


@contextmanager
def power_cut_at_shard(monkeypatch: pytest.MonkeyPatch, cls: type, n: int) -> Iterator[None]:
    """Within the block, ``cls.build`` raises RuntimeError("power cut") as its ``n``-th shard
    starts (a run cut short with shards finished); the real build is back after it."""
    real, calls = cls.build, []

    def cut(self, cfg, shard):
        calls.append(shard.key)
        if len(calls) == n:
            raise RuntimeError("power cut")
        return real(self, cfg, shard)

    monkeypatch.setattr(cls, "build", cut)
    try:
        yield
    finally:
        monkeypatch.setattr(cls, "build", real)


def another_machine(src: Path, dst: Path) -> Path:
    """A copy of ``src`` with other modification times, as a checkout elsewhere would have."""
    import shutil

    shutil.copytree(src, dst)
    for root, _, names in os.walk(dst):
        for name in names:
            os.utime(Path(root) / name, ns=(10**18, 10**18))  # September 2001
    return dst
