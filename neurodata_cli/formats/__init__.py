"""Format codecs. Each writer takes a path and the data a dataset built, and nothing else."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
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


# Writers that can lay their file out first and hand out its pages to be filled (see Slot).
RESERVERS: dict[str, str] = {
    "npy": "npy:reserve",
    "hdf5_plain": "h5plain:reserve",
}


def _function(table: dict[str, str], kind: str) -> Callable[..., Any]:
    module, func = table[kind].split(":")
    return getattr(import_module(f"{__name__}.{module}"), func)


def writer(kind: str) -> Callable[[Path, Any], str | None]:
    return _function(WRITERS, kind)


def reserve(kind: str, path: Path, data: Any) -> MappedFile:
    """Create the file with room for every ``Slot`` in ``data``; fill them, then ``finish``."""
    return _function(RESERVERS, kind)(path, data)


def array_nbytes(descr: str, shape: tuple[int, ...]) -> int:
    """The bytes of a C-order array of numpy type string ``descr`` (as '<f8') and ``shape``."""
    n = int(descr[2:])
    for d in shape:
        n *= d
    return n


@dataclass(eq=False)  # told apart by identity: two slots of one shape are two arrays
class Slot:
    """An array a writer lays out in its file and a dataset's ``Fill`` then writes in place.

    A generator that fills the output file's own pages needs no buffer of its own and no copy
    into the page cache: for a million Yin-Yang samples that halved the time spent writing.
    """

    descr: str  # a numpy type string, as '<f8'
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return array_nbytes(self.descr, self.shape)


@dataclass
class Fill:
    """One call that writes several slots (a generator that makes two arrays at once).

    ``run`` gets a writable buffer of each slot's bytes, by name.
    """

    slots: dict[str, Slot]
    run: Callable[[dict[str, memoryview]], None]


class MappedFile:
    """A file created at its final size and mapped: writers put their headers in, and the
    slots' buffers are views of its pages. ``finish`` hashes and closes it."""

    def __init__(self, path: Path, size: int):
        import mmap

        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            # Blocks are allocated now: a full disk is an OSError here, where a sparse file
            # would kill the process with SIGBUS at the first page that finds no room.
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, size)
            else:
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        except OSError as exc:  # posix_fallocate's error names no file
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        finally:
            os.close(fd)  # the map holds the file
        self._views: list[memoryview] = []
        self.buffers: dict[Slot, memoryview] = {}

    def put(self, offset: int, data: Any) -> None:
        view = memoryview(data).cast("B")
        self._map[offset:offset + view.nbytes] = view

    def give(self, slot: Slot, offset: int) -> None:
        view = memoryview(self._map)[offset:offset + slot.nbytes]
        self._views.append(view)
        self.buffers[slot] = view

    def finish(self) -> str:
        """The file's sha256; the file is closed (its pages are the page cache's)."""
        import hashlib

        digest = hashlib.sha256(self._map).hexdigest()
        self.close()
        return digest

    def close(self) -> None:
        for view in self._views:
            view.release()
        self._views, self.buffers = [], {}
        self._map.close()  # closing twice is harmless


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
