"""The one progress bar: tqdm on a terminal (rate and ETA), nothing elsewhere or with --quiet."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_silenced = False  # set for the length of a --quiet run: every bar in it stays silent


@contextmanager
def silenced(quiet: bool) -> Iterator[None]:
    """Within the block, bars made anywhere (an input's download) obey ``quiet``."""
    global _silenced
    saved, _silenced = _silenced, quiet
    try:
        yield
    finally:
        _silenced = saved


class _NoBar:
    def update(self, n: float = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress(total: float | None, unit: str, desc: str, quiet: bool, initial: float = 0,
             scale: bool = True) -> Any:
    """A bar counting ``unit`` towards ``total``; silent when quiet or stderr is no terminal."""
    if quiet or _silenced or not sys.stderr.isatty():
        return _NoBar()
    from tqdm import tqdm

    # delay: a run shorter than a second shows no bar at all.
    return tqdm(total=total, initial=initial, unit=f" {unit}" if scale else unit, desc=desc,
                unit_scale=True, dynamic_ncols=True, leave=False, file=sys.stderr, delay=1)
