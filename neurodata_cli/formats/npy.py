"""NumPy ``.npy`` files, as the published Yin-Yang splits are stored."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import HashingFile, MappedFile, Slot

if TYPE_CHECKING:
    import numpy as np

_ALIGN = 64  # numpy aligns the data to 64 bytes
_GROWTH_DIGITS = 21  # numpy leaves room in the header for the first axis to grow


@dataclass(frozen=True)
class Raw:
    """The bytes of a C-order array of a plain dtype (``descr`` as ``'<f8'``), without numpy:
    a run that needs nothing else from numpy need not import it (a fifth of a Yin-Yang run)."""

    data: Any  # any bytes-like object
    descr: str
    shape: tuple[int, ...]


def header(descr: str, shape: tuple[int, ...]) -> bytes:
    """The format 1.0 header ``np.save`` writes for a C-order array (the tests compare them)."""
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
    if shape:
        text += " " * (_GROWTH_DIGITS - len(repr(shape[0])))
    length = len(text) + 1  # and a newline
    pad = _ALIGN - (10 + length) % _ALIGN  # magic (6), version (2), length (2)
    return (b"\x93NUMPY\x01\x00" + (length + pad).to_bytes(2, "little") + text.encode("latin1")
            + b" " * pad + b"\n")


def write(path: Path, array: np.ndarray | Raw) -> str:
    """The bytes ``np.save`` writes (format 1.0 header, C order); returns their sha256."""
    with HashingFile(path) as f:
        if isinstance(array, Raw):
            f.write(header(array.descr, array.shape))
            f.write(memoryview(array.data).cast("B"))
            return f.hexdigest()
        import numpy as np

        array = np.ascontiguousarray(array)
        np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(array))
        f.write(memoryview(array).cast("B"))
        return f.hexdigest()


def reserve(path: Path, slot: Slot) -> MappedFile:
    """The file ``write`` would write, with the array's bytes left for ``slot``'s fill."""
    head = header(slot.descr, slot.shape)
    f = MappedFile(path, len(head) + slot.nbytes)
    f.put(0, head)
    f.give(slot, len(head))
    return f


def read(path: Path, mmap: bool = False) -> np.ndarray:
    import numpy as np

    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
