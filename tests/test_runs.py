"""The run-length zlib encoder: its C and Python versions agree, and zlib inflates both."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurodata_cli.formats import runs


def test_the_c_encoder_is_built():
    assert runs._encode_c is not None


def check(data: bytes) -> None:
    python = runs.encode_python(data)
    assert zlib.decompress(python) == data
    assert runs._encode_c(data) == python


@pytest.mark.parametrize("length", [0, 1, 2, 3, 4, 10, 11, 18, 19, 226, 227, 257, 258, 259, 260,
                                    261, 516, 517, 65520, 65521, 65522, 131042, 131043, 200_000])
def test_runs_of_every_awkward_length(length):
    check(b"\x07" * length)
    check(b"a" * length + b"\xff" * 3 + b"\x00" * length)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(1, 700)), max_size=40))
def test_run_structured_data(pieces):
    check(b"".join(bytes([value]) * count for value, count in pieces))


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=3000))
def test_any_bytes_at_all(data):
    check(data)


def test_a_column_of_runs_is_small_and_arrays_are_accepted():
    column = np.repeat(np.arange(1, 9, dtype=np.uint8), 8192)
    encoded = runs.encode(column)
    assert zlib.decompress(encoded) == column.tobytes()
    assert len(encoded) < 500  # 13 bits per 258 bytes, and little else
