"""Format codecs. Each writer takes a path and the data a dataset built, and nothing else."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

# kind -> "module:function"; imported on first use so that, say, npy output never loads h5py.
WRITERS: dict[str, str] = {
    "npy": "npy:write",
    "hdf5_plain": "h5plain:write",
    "text": "text:write",
    "events": "events:write",
    "nmnist_bin": "nmnist_bin:write",
    "esimagenet_npz": "esimagenet_npz:write",
}


def writer(kind: str) -> Callable[[Path, Any], str | None]:
    module, func = WRITERS[kind].split(":")
    return getattr(import_module(f"{__name__}.{module}"), func)


def write(kind: str, path: Path, data: Any) -> str | None:
    """Write ``data`` to ``path``; returns the file's sha256 when the writer hashed as it wrote."""
    return writer(kind)(path, data)


_OVERLAP_BYTES = 1 << 22


class HashingFile:
    """A binary file that hashes what goes through it, so nobody has to read it back."""

    def __init__(self, path: Path):
        import hashlib

        self._file = open(path, "wb")
        self._hash = hashlib.sha256()

    def write(self, data: Any) -> int:
        if len(data) < _OVERLAP_BYTES:
            self._hash.update(data)
            return self._file.write(data)
        # Both calls release the GIL, so on two cores the hash costs no extra time.
        import threading

        hasher = threading.Thread(target=self._hash.update, args=(data,))
        hasher.start()
        try:
            return self._file.write(data)
        finally:
            hasher.join()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def __enter__(self) -> HashingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()
