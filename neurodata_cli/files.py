"""Files written whole or not at all: what writers, the engine and the manifest share."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged(root: Path, rel: str, make_parent: bool = True) -> Iterator[Path]:
    """A temporary path to write ``root/rel`` at, renamed into place when the block ends: readers
    see the old file or the new one, never half of one, and a failed write leaves no temporary
    file behind.

    ``make_parent=False`` when the caller made the folder (a writer of one file per sample).
    """
    final = root / rel
    if make_parent:
        final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}-{os.urandom(4).hex()}.part")
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:  # a full disk names no file
            raise OSError(exc.errno, exc.strerror, str(final)) from None
        raise


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through ``staged``."""
    with staged(path.parent, path.name, make_parent=False) as tmp:
        tmp.write_bytes(data)
