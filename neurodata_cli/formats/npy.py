"""NumPy ``.npy`` files, as the published Yin-Yang splits are stored."""

from pathlib import Path

import numpy as np

from . import HashingFile


def write(path: Path, array: np.ndarray) -> str:
    """The bytes ``np.save`` writes (format 1.0 header, C order); returns their sha256."""
    array = np.ascontiguousarray(array)
    with HashingFile(path) as f:
        header = np.lib.format.header_data_from_array_1_0(array)
        np.lib.format.write_array_header_1_0(f, header)
        f.write(memoryview(array).cast("B"))
        return f.hexdigest()


def read(path: Path, mmap: bool = False) -> np.ndarray:
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
