"""Progress that moves while the work runs, on a terminal only, and never with --quiet."""

from __future__ import annotations

import sys

import pytest
from imagenet_synth import save, synthetic
from nmnist_synth import make_tree as nmnist_tree

from neurodata_cli import engine, materialise, progress


@pytest.fixture
def bars(monkeypatch):
    """Every bar a run makes, with the updates it got."""
    made = []

    class Bar:
        def __init__(self, total, unit, desc, quiet, initial=0, scale=True):
            self.total, self.quiet, self.updates = total, quiet, []
            made.append(self)

        def update(self, n):
            if n:
                self.updates.append(n)

        def close(self):
            pass

    monkeypatch.setattr(engine, "progress", Bar)
    return made


@pytest.mark.parametrize("workers", [1, 2])
def test_2nmnist_moves_in_blocks_of_samples_not_shards(tmp_path, bars, workers):
    tree = nmnist_tree(tmp_path / "nm", {"train": 60, "test": 2})
    materialise("2nmnist", out=tmp_path / "o", nmnist_root=tree, split="train",
                workers=workers, shard_size=400)
    (bar,) = bars
    assert sum(bar.updates) == bar.total
    if workers == 1:  # every block of 100 samples, as it is made
        assert max(bar.updates) <= 100 and len(bar.updates) >= bar.total // 100
    else:  # from the workers, a few times a second: more often than once a shard
        assert len(bar.updates) >= 2


def test_yinyang_moves_within_a_large_split(tmp_path, bars):
    materialise("yinyang", out=tmp_path, size=2_500_000, format="npy", workers=1)
    (bar,) = bars
    assert bar.updates == [1 << 20, 1 << 20, 2_500_000 - 2 * (1 << 20)]


def test_es_imagenet_moves_per_image(tmp_path, bars):
    for k in range(5):
        save(synthetic(k, (160, 120)), tmp_path / "im" / "train" / "n1" / f"{k}.JPEG")
    (tmp_path / "im" / "train" / "n1" / "broken.JPEG").write_bytes(b"")
    materialise("es-imagenet", out=tmp_path / "o", imagenet_root=tmp_path / "im",
                min_events=10, workers=1)
    (bar,) = bars
    assert bar.updates == [1] * 6  # skipped images count as done too


def test_bars_show_on_a_terminal_only_and_never_with_quiet(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    shown = progress.progress(10, "samples", "x", quiet=False)
    assert type(shown).__name__ == "tqdm" and shown.delay == 1  # silent for a short run
    shown.close()
    assert type(progress.progress(10, "samples", "x", quiet=True)).__name__ == "_NoBar"
    with progress.silenced(True):  # a download inside a --quiet run
        assert type(progress.progress(10, "B", "Train.zip", quiet=False)).__name__ == "_NoBar"
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert type(progress.progress(10, "samples", "x", quiet=False)).__name__ == "_NoBar"
