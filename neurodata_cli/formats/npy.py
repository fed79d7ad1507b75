"""NumPy ``.npy`` files, as the published Yin-Yang splits are stored."""

from pathlib import Path

import numpy as np


def write(path: Path, array: np.ndarray) -> None:
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)


def read(path: Path, mmap: bool = False) -> np.ndarray:
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
