"""A zlib stream for data made of long runs of one value, in one pass.

Each run becomes a literal (its value) followed by back-references one byte back, of at most 258
bytes each, in a single fixed-Huffman deflate block (RFC 1950/1951); leftovers of 1 or 2 bytes
are literals. Any zlib reader inflates it (HDF5's gzip filter among them). For a column such as
ES-ImageNet's t, a few dozen runs per 64 Ki-element chunk, this is a few microseconds where
libdeflate takes about 70. Data without runs is still encoded correctly, only not compactly.

The C version (``_runs.c``) writes the same bytes as ``encode_python``; the tests check both.
"""

from __future__ import annotations

import zlib

import numpy as np

try:
    from ._runs import encode as _encode_c
except ImportError:  # no compiler at install time: the same bytes, more slowly
    _encode_c = None

# The fixed literal/length code (RFC 1951, 3.2.6) and the length codes' bases and extra bits.
_LENGTH_BASE = (3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83,
                99, 115, 131, 163, 195, 227, 258)
_LENGTH_EXTRA = (0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5,
                 5, 0)
MAX_MATCH = 258


def encode(data: bytes | np.ndarray) -> bytes:
    """The zlib stream (header, one fixed-Huffman block, Adler-32) of ``data``'s bytes."""
    raw = memoryview(np.ascontiguousarray(data)).cast("B") if isinstance(data, np.ndarray) \
        else memoryview(data)
    if _encode_c is not None:
        return _encode_c(raw)
    return encode_python(bytes(raw))


class _Bits:
    """Deflate's bit order: fields least-significant bit first, Huffman codes most first."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.value = 0
        self.count = 0

    def put(self, value: int, width: int) -> None:
        self.value |= value << self.count
        self.count += width
        while self.count >= 8:
            self.out.append(self.value & 0xFF)
            self.value >>= 8
            self.count -= 8

    def code(self, code: int, width: int) -> None:
        self.put(int(format(code, f"0{width}b")[::-1], 2), width)

    def to_bytes(self) -> bytes:
        return bytes(self.out) + (bytes([self.value]) if self.count else b"")


def _literal_or_length(bits: _Bits, symbol: int) -> None:
    if symbol < 144:
        bits.code(0x30 + symbol, 8)
    elif symbol < 256:
        bits.code(0x190 + symbol - 144, 9)
    elif symbol < 280:
        bits.code(symbol - 256, 7)
    else:
        bits.code(0xC0 + symbol - 280, 8)


def _match(bits: _Bits, length: int) -> None:
    """A back-reference of ``length`` (3..258) bytes at distance 1."""
    index = max(i for i, base in enumerate(_LENGTH_BASE) if base <= length)
    _literal_or_length(bits, 257 + index)
    bits.put(length - _LENGTH_BASE[index], _LENGTH_EXTRA[index])
    bits.code(0, 5)  # distance code 0: distance 1


def encode_python(data: bytes) -> bytes:
    """The readable version of the C encoder: the same bytes."""
    bits = _Bits()
    bits.put(1, 1)  # BFINAL
    bits.put(1, 2)  # BTYPE 01: fixed Huffman codes
    i, n = 0, len(data)
    while i < n:
        value, j = data[i], i + 1
        while j < n and data[j] == value:
            j += 1
        _literal_or_length(bits, value)
        left = j - i - 1
        while left >= 3:
            take = min(left, MAX_MATCH)
            _match(bits, take)
            left -= take
        for _ in range(left):
            _literal_or_length(bits, value)
        i = j
    _literal_or_length(bits, 256)  # end of block
    return b"\x78\x01" + bits.to_bytes() + zlib.adler32(data).to_bytes(4, "big")
