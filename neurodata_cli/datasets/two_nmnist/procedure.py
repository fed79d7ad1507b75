"""The 2NMNIST procedure as pure functions (Jurado, Dunn, Shapero, IJCNN 2023).

Per split, with the seed reset for each: the recordings ``<digit>/<name>`` (digit <= max_digit)
are sorted as plain strings (the reference used glob order, which differs between machines),
shuffled with ``RandomState(seed).shuffle``, then cut into groups: ``n = randint(1, K + 1)``,
shortened to what is left and to before the first repeated digit. A draw is taken for every
group. Group g becomes sample g.

Which recordings are reversed: in every group, those at even 0-based positions are kept and those
at odd positions (the 2nd, the 4th, ...) are time-reversed, ``t' = max(t) - t`` over that
recording with its events reversed so times ascend. The reversed ones are written first, then
the kept ones, each in group order. For K = 2 this is exactly the paper's procedure: the second
recording of a pair, reversed, followed by the first. It needs no draws beyond the paper's, so
K = 2 consumes the random stream exactly as the reference does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .binfmt import records, timestamps
from .source import Recording


@dataclass(frozen=True)
class Group:
    """One output sample: recordings in group order, and which of them are reversed."""

    index: int
    recordings: tuple[Recording, ...]

    @property
    def digits(self) -> tuple[int, ...]:
        return tuple(r.digit for r in self.recordings)

    @property
    def reversed(self) -> tuple[bool, ...]:
        return tuple(i % 2 == 1 for i in range(len(self.recordings)))

    @property
    def output_order(self) -> list[int]:
        """Positions in the order their events are written: reversed ones first."""
        rev = [i for i, r in enumerate(self.reversed) if r]
        return rev + [i for i, r in enumerate(self.reversed) if not r]

    def file_name(self) -> str:
        return f"{self.index}_{'-'.join(map(str, self.digits))}.bin"

    def source(self) -> list[str]:
        """The group's recordings in group order."""
        return [r.rel for r in self.recordings]

    def reversed_sources(self) -> list[str]:
        return [r.rel for r, rev in zip(self.recordings, self.reversed, strict=True) if rev]


def make_groups(recordings: list[Recording], seed: int, k: int = 2,
                max_digit: int = 9) -> list[Group]:
    """The paper's grouping: sort, shuffle with the seed, then draw each group's size."""
    sources = sorted((r for r in recordings if r.digit <= max_digit), key=lambda r: r.key)
    rng = np.random.RandomState(seed)
    rng.shuffle(sources)  # type: ignore[arg-type]  # any mutable sequence; stubs say ArrayLike
    groups: list[Group] = []
    i, n = 0, len(sources)
    while i < n:
        size = min(int(rng.randint(1, k + 1)), n - i)
        seen = {sources[i].digit}
        for j in range(1, size):
            if sources[i + j].digit in seen:
                size = j
                break
            seen.add(sources[i + j].digit)
        groups.append(Group(len(groups), tuple(sources[i:i + size])))
        i += size
    return groups


def time_reverse(data: bytes, swap_polarity: bool = False) -> bytes:
    """A recording's ``.bin`` bytes reversed in time: ``t' = max(t) - t``, the events in reverse
    order so times ascend, x, y and polarity kept (polarity swapped on request)."""
    raw = records(data)[::-1]
    if not raw.size:
        return b""
    t = timestamps(raw)
    t = t.max() - t
    out = np.empty(raw.shape, dtype=np.uint8)
    out[:, :2] = raw[:, :2]
    polarity = raw[:, 2] & 0x80
    if swap_polarity:
        polarity ^= 0x80
    out[:, 2] = polarity | (t >> 16).astype(np.uint8)
    out[:, 3] = (t >> 8).astype(np.uint8)  # the casts keep the low 8 bits
    out[:, 4] = t.astype(np.uint8)
    return out.tobytes()


def superimpose(group: Group, recordings: list[bytes], swap_polarity: bool) -> bytes:
    """The sample's ``.bin`` bytes: the reversed recordings first, then the kept ones.

    Working on the format's bytes, a kept recording is copied as it is, never decoded.
    """
    return b"".join(time_reverse(recordings[i], swap_polarity) if group.reversed[i]
                    else recordings[i] for i in group.output_order)
