"""The one progress bar: tqdm on a terminal (rate and ETA), nothing elsewhere or with --quiet."""

from __future__ import annotations

import sys
from typing import Any


class _NoBar:
    def update(self, n: float = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress(total: float | None, unit: str, desc: str, quiet: bool, initial: float = 0,
             scale: bool = True) -> Any:
    """A bar counting ``unit`` towards ``total``; silent when quiet or stderr is no terminal."""
    if quiet or not sys.stderr.isatty():
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit=f" {unit}" if scale else unit, desc=desc,
                unit_scale=True, dynamic_ncols=True, leave=False, file=sys.stderr)
