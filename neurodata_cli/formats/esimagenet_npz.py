"""The released ES-ImageNet sample file: an npz holding ``pos`` and ``neg``.

Each is uint8 [N, 3] of (row, col, t), as the authors' converter saves with
``np.savez_compressed``. We write the same zip, but with fixed member timestamps and modes, so the
bytes depend only on the events (numpy stamps members with the current time).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

KEYS = ("pos", "neg")
_EPOCH = (1980, 1, 1, 0, 0, 0)


def encode(pos: np.ndarray, neg: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in zip(KEYS, (pos, neg), strict=True):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array, dtype=np.uint8),
                                      allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def write(path: Path, data: tuple[np.ndarray, np.ndarray]) -> str:
    blob = encode(*data)
    Path(path).write_bytes(blob)
    return hashlib.sha256(blob).hexdigest()


def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as npz:
        return npz["pos"], npz["neg"]
