"""A small HDF5 writer for groups of contiguous datasets with plain attributes, without libhdf5.

Yin-Yang's one file is a few groups of two or three arrays. Importing h5py (and numpy under it)
took a third of a million-sample run, so this module writes the file itself, in the oldest form
every HDF5 reader knows: superblock version 0, version-1 object headers, and groups as symbol
tables (a version-1 B-tree, a local heap of names, symbol table nodes). String attributes are
variable-length UTF-8, as h5py writes a Python ``str``, and live in one global heap collection.

All metadata comes first and the raw data after it, 8-byte aligned; nothing in the file depends
on the time, the machine or the order of dict insertion (names and attributes are sorted), so
equal inputs give equal bytes. The tests read every file back with h5py and modify it with
libhdf5, which checks each structure as it loads it.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import HashingFile, MappedFile, Slot, array_nbytes
from .npy import Raw

UNDEF = 0xFFFF_FFFF_FFFF_FFFF  # the undefined address
LEAF_K, NODE_K = 4, 16  # libhdf5's defaults: 2K entries per symbol node, 2K children per node
SNOD_SIZE = 8 + 2 * LEAF_K * 40
TREE_SIZE = 24 + 2 * NODE_K * 8 + (2 * NODE_K + 1) * 8
HEAP_PREFIX = 32
HEAP_FREE_NULL = 1  # how a local heap says "no free block" on disk
GCOL_MIN = 4096  # a global heap collection is at least this big
SUPERBLOCK_SIZE = 96

# Object header message types.
DATASPACE, DATATYPE, FILL_VALUE, LAYOUT = 0x01, 0x03, 0x05, 0x08
ATTRIBUTE, SYMBOL_TABLE = 0x0C, 0x11
CONSTANT = 0x01  # message flag: the message never changes

# A string attribute's type: variable-length string, null-padded, UTF-8, over unsigned bytes.
VLEN_UTF8 = bytes([0x19, 0x01, 0x01, 0x00]) + struct.pack("<I", 16) + \
    bytes([0x10, 0, 0, 0]) + struct.pack("<IHH", 1, 0, 8)
_FLOATS = {4: (31, 23, 8, 23, 127), 8: (63, 52, 11, 52, 1023)}  # sign, exponent at/size, ...


@dataclass
class Dataset:
    array: Raw | Slot
    attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Group:
    children: dict[str, Group | Dataset] = field(default_factory=dict)
    attrs: Mapping[str, Any] = field(default_factory=dict)


def tree(data: Mapping[str, Any]) -> Group:
    """The shape ``write`` takes as a dict: ``{"attrs": {...}, "groups": {name: {"attrs": {...},
    "datasets": {name: array}}}}``, where an array is a ``Raw``, a ``Slot`` or a numpy array."""
    groups = {name: Group({d: Dataset(as_raw(a)) for d, a in g["datasets"].items()},
                          g.get("attrs", {}))
              for name, g in data["groups"].items()}
    return Group(dict(groups), data.get("attrs", {}))


def as_raw(array: Any) -> Raw | Slot:
    if isinstance(array, (Raw, Slot)):
        return array
    import numpy as np

    array = np.asarray(array, order="C")  # ascontiguousarray would make a 0-d array 1-d
    return Raw(memoryview(array).cast("B") if array.size else b"", array.dtype.str, array.shape)


def write(path: Path, data: Mapping[str, Any] | Group) -> str:
    """Write the file; returns its sha256."""
    meta, _, arrays = layout(data if isinstance(data, Group) else tree(data))
    with HashingFile(path) as f:
        f.write(meta)
        end = len(meta)
        for offset, array in arrays:
            if isinstance(array, Slot):
                raise TypeError("an array to be filled in place needs reserve(), not write()")
            f.write(b"\0" * (offset - end))
            end = offset + f.write(memoryview(array.data).cast("B"))
        return f.hexdigest()


def reserve(path: Path, data: Mapping[str, Any] | Group) -> MappedFile:
    """The file ``write`` would write, with each ``Slot``'s bytes left for its fill."""
    meta, size, arrays = layout(data if isinstance(data, Group) else tree(data))
    f = MappedFile(path, size)
    f.put(0, meta)
    for offset, array in arrays:
        if isinstance(array, Slot):
            f.give(array, offset)
        else:
            f.put(offset, array.data)
    return f


def layout(root: Group) -> tuple[bytes, int, list[tuple[int, Raw | Slot]]]:
    """The metadata (from byte 0), the file's size, and where each array's bytes go."""
    plan = _Plan(root)
    return plan.metadata(), plan.size, [(n.data_addr, n.obj.array)  # type: ignore[union-attr]
                                        for n in plan.datasets if n.nbytes]


# ---- encoding -----------------------------------------------------------------------------------

def _pad8(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 8)


def _message(kind: int, body: bytes, flags: int = 0) -> bytes:
    body = _pad8(body)
    return struct.pack("<HHB3x", kind, len(body), flags) + body


def _object_header(messages: list[bytes]) -> bytes:
    body = b"".join(messages)
    return struct.pack("<BBHII4x", 1, 0, len(messages), 1, len(body)) + body


def _dataspace(shape: tuple[int, ...]) -> bytes:
    if not shape:  # scalar
        return struct.pack("<BBBB4x", 1, 0, 0, 0)
    dims = struct.pack(f"<{len(shape)}Q", *shape)
    return struct.pack("<BBBB4x", 1, len(shape), 1, 0) + dims + dims  # maximum = current


def _datatype(descr: str) -> bytes:
    """A numpy type string (``'<f8'``, ``'<i8'``, ``'|u1'``) as an HDF5 datatype message."""
    order, kind, size = descr[0], descr[1], int(descr[2:])
    big = 1 if order == ">" else 0
    if kind in "iu" and size in (1, 2, 4, 8):
        flags = big | (0x08 if kind == "i" else 0)
        return struct.pack("<B3BIHH", 0x10, flags, 0, 0, size, 0, 8 * size)
    if kind == "f" and size in _FLOATS:
        sign, exp_at, exp_size, man_size, bias = _FLOATS[size]
        return struct.pack("<B3BIHHBBBBI", 0x11, 0x20 | big, sign, 0, size, 0, 8 * size, exp_at,
                           exp_size, 0, man_size, bias)
    raise TypeError(f"no HDF5 type for numpy type {descr!r}")


class _Strings:
    """The global heap collection that holds every string attribute's bytes."""

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self.addr = 0

    def ref(self, text: str) -> bytes:
        data = text.encode("utf-8")
        self.items.append(data)
        return struct.pack("<IQI", len(data), self.addr, len(self.items))

    def used(self) -> int:
        return 16 + sum(16 + len(_pad8(d)) for d in self.items)

    def size(self) -> int:
        return max(GCOL_MIN, self.used() + 16) if self.items else 0  # room for a free object

    def encode(self) -> bytes:
        if not self.items:
            return b""
        size = self.size()
        out = [b"GCOL", struct.pack("<B3xQ", 1, size)]
        for index, data in enumerate(self.items, 1):
            out.append(struct.pack("<HH4xQ", index, 0, len(data)) + _pad8(data))
        out.append(struct.pack("<HH4xQ", 0, 0, size - self.used()))  # the free space
        return b"".join(out).ljust(size, b"\0")


def _attribute(name: str, value: Any, strings: _Strings) -> bytes:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, list, tuple)):
        raise TypeError(f"attribute {name!r}: no HDF5 form for {type(value).__name__}")
    if isinstance(value, str):
        dtype, space, data = VLEN_UTF8, _dataspace(()), strings.ref(value)
    elif isinstance(value, int):
        dtype, space, data = _datatype("<i8"), _dataspace(()), struct.pack("<q", value)
    elif isinstance(value, float):
        dtype, space, data = _datatype("<f8"), _dataspace(()), struct.pack("<d", value)
    else:
        if not all(isinstance(v, str) for v in value):
            raise TypeError(f"attribute {name!r}: only lists of strings are supported")
        dtype, space = VLEN_UTF8, _dataspace((len(value),))
        data = b"".join(strings.ref(v) for v in value)
    encoded = name.encode("utf-8") + b"\0"
    body = (struct.pack("<BBHHH", 1, 0, len(encoded), len(dtype), len(space)) + _pad8(encoded)
            + _pad8(dtype) + _pad8(space) + data)
    return _message(ATTRIBUTE, body)


class _Node:
    """One object of the file (a group or a dataset) and where its parts go."""

    def __init__(self, obj: Group | Dataset):
        self.obj = obj
        self.header_addr = 0
        self.header_size = 0
        self.children: list[_Node] = []
        if isinstance(obj, Dataset):
            array = obj.array
            self.nbytes = array.nbytes if isinstance(array, Slot) else \
                memoryview(array.data).cast("B").nbytes
            self.data_addr = UNDEF
            return
        items = sorted((name.encode("utf-8"), child) for name, child in obj.children.items())
        for name, _ in items:
            if not name or b"/" in name or b"\0" in name or name == b".":
                raise ValueError(f"{name.decode()!r} cannot name an HDF5 object")
        self.children = [_Node(child) for _, child in items]
        # The local heap holds the names (the empty name first, as libhdf5 has it); symbol table
        # nodes hold up to 2K entries each, in name order.
        self.heap_data, self.offsets = b"\0" * 8, []
        for name, _ in items:
            self.offsets.append(len(self.heap_data))
            self.heap_data += _pad8(name + b"\0")
        n = len(items)
        self.chunks = [range(i, min(i + 2 * LEAF_K, n)) for i in range(0, n, 2 * LEAF_K)] or \
            [range(0)]
        # A key bounds the names of the children beside it: the right key of a child is the
        # offset of its last name, its left key the right key of the child before (the empty
        # name for the first).
        self.right = [self.offsets[c[-1]] if len(c) else 0 for c in self.chunks]
        # The B-tree, root level first; each node as the range of symbol nodes below it.
        level = [(i, min(i + 2 * NODE_K, len(self.chunks)))
                 for i in range(0, len(self.chunks), 2 * NODE_K)]
        self.levels = [level]
        while len(level) > 1:
            level = [(level[i][0], level[min(i + 2 * NODE_K, len(level)) - 1][1])
                     for i in range(0, len(level), 2 * NODE_K)]
            self.levels.insert(0, level)
        self.tree_addrs: list[list[int]] = []
        self.heap_addr = 0
        self.snod_addrs: list[int] = []

    @property
    def is_group(self) -> bool:
        return isinstance(self.obj, Group)

    def walk(self) -> list[_Node]:
        return [self] + [n for c in self.children for n in c.walk()]

    def body_size(self) -> int:
        """The bytes after a group's header: B-tree nodes, local heap, symbol table nodes."""
        if not self.is_group:
            return 0
        trees = sum(len(level) for level in self.levels)
        return TREE_SIZE * trees + HEAP_PREFIX + len(self.heap_data) + SNOD_SIZE * len(self.chunks)

    def place_body(self, addr: int) -> None:
        self.tree_addrs = []
        for level in self.levels:
            self.tree_addrs.append([addr + TREE_SIZE * i for i in range(len(level))])
            addr += TREE_SIZE * len(level)
        self.heap_addr = addr
        addr += HEAP_PREFIX + len(self.heap_data)
        self.snod_addrs = [addr + SNOD_SIZE * i for i in range(len(self.chunks))]

    def entry(self, name_offset: int) -> bytes:
        """This object's symbol table entry; a group caches its B-tree and heap addresses."""
        if self.is_group:
            return struct.pack("<QQI4xQQ", name_offset, self.header_addr, 1,
                               self.tree_addrs[0][0], self.heap_addr)
        return struct.pack("<QQI4x16x", name_offset, self.header_addr, 0)

    def messages(self, strings: _Strings) -> list[bytes]:
        if self.is_group:
            out = [_message(SYMBOL_TABLE, struct.pack("<QQ", self.tree_addrs[0][0]
                                                      if self.tree_addrs else 0, self.heap_addr))]
        else:
            raw = self.obj.array  # type: ignore[union-attr]
            nbytes = self.nbytes
            if nbytes != array_nbytes(raw.descr, raw.shape):
                raise ValueError(f"{nbytes} bytes do not make a {raw.descr} array of shape "
                                 f"{tuple(raw.shape)}")
            out = [
                _message(DATASPACE, _dataspace(tuple(raw.shape))),
                _message(DATATYPE, _datatype(raw.descr), CONSTANT),
                # Version 2: space allocated late, fill value written if set, the default fill.
                _message(FILL_VALUE, bytes([2, 2, 2, 1, 0, 0, 0, 0]), CONSTANT),
                _message(LAYOUT, struct.pack("<BBQQ", 3, 1, self.data_addr, nbytes)),
            ]
        attrs = self.obj.attrs
        return out + [_attribute(key, attrs[key], strings) for key in sorted(attrs)]

    def body(self) -> bytes:
        out = []
        for depth, (level, addrs) in enumerate(zip(self.levels, self.tree_addrs, strict=True)):
            height = len(self.levels) - 1 - depth
            if height:
                below, below_spans = self.tree_addrs[depth + 1], self.levels[depth + 1]
            else:
                below, below_spans = self.snod_addrs, [(i, i + 1) for i in range(len(self.chunks))]
            for i, (first, end) in enumerate(level):
                kids = [k for k, (a, b) in enumerate(below_spans) if first <= a and b <= end]
                left = addrs[i - 1] if i else UNDEF
                right = addrs[i + 1] if i + 1 < len(addrs) else UNDEF
                parts = [b"TREE", struct.pack("<BBHQQ", 0, height, len(kids), left, right),
                         struct.pack("<Q", self.right[first - 1] if first else 0)]
                for k in kids:
                    parts.append(struct.pack("<QQ", below[k], self.right[below_spans[k][1] - 1]))
                out.append(b"".join(parts).ljust(TREE_SIZE, b"\0"))
        out.append(b"HEAP" + struct.pack("<B3xQQQ", 0, len(self.heap_data), HEAP_FREE_NULL,
                                         self.heap_addr + HEAP_PREFIX) + self.heap_data)
        for chunk in self.chunks:
            entries = b"".join(self.children[j].entry(self.offsets[j]) for j in chunk)
            out.append((b"SNOD" + struct.pack("<BBH", 1, 0, len(chunk)) + entries)
                       .ljust(SNOD_SIZE, b"\0"))
        return b"".join(out)


class _Plan:
    """Addresses for every structure, then the bytes at them."""

    def __init__(self, root: Group):
        self.root = _Node(root)
        self.nodes = self.root.walk()
        self.datasets = [n for n in self.nodes if not n.is_group]
        self.strings = _Strings()
        self.size = 0
        # No structure's size depends on the addresses in it: size headers with placeholders.
        for node in self.nodes:
            node.header_size = len(_object_header(node.messages(self.strings)))
        self._place()

    def _place(self) -> None:
        addr = SUPERBLOCK_SIZE
        for node in self.nodes:
            node.header_addr = addr
            addr += node.header_size
            if node.is_group:
                node.place_body(addr)
                addr += node.body_size()
        self.strings.addr = addr
        addr += self.strings.size()
        for node in self.datasets:
            if node.nbytes:
                addr += -addr % 8
                node.data_addr = addr
                addr += node.nbytes
            # An empty dataset keeps the undefined address, as libhdf5 leaves it.
        self.size = addr

    def metadata(self) -> bytes:
        self.strings.items = []
        parts = [self._superblock()]
        for node in self.nodes:
            header = _object_header(node.messages(self.strings))
            assert len(header) == node.header_size
            parts.append(header)
            if node.is_group:
                parts.append(node.body())
        parts.append(self.strings.encode())
        return b"".join(parts)

    def _superblock(self) -> bytes:
        return (b"\x89HDF\r\n\x1a\n" + struct.pack("<8B", 0, 0, 0, 0, 0, 8, 8, 0)
                + struct.pack("<HHI", LEAF_K, NODE_K, 0)
                + struct.pack("<QQQQ", 0, UNDEF, self.size, UNDEF)
                + self.root.entry(0))

