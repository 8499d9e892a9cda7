"""BTF-typed bytes as plain Python values, with the ``struct`` module: no numpy.

Owns two small translations for the paths that must not wait for numpy (a tool's start:
setting ``.rodata`` before load, decoding its first ring buffer records):

* :func:`int_format`: an integer-like type (int, bool, enum, pointer, through typedefs and
  qualifiers) as size, signedness and the name numpy gives it; :meth:`IntFormat.encode`
  range-checks a Python int exactly as :mod:`pybpf.maps.codec` does, with the same errors.
* :class:`RecordLayout`: a struct's members at their byte offsets; :meth:`RecordLayout.decode`
  makes a :class:`Record` (a dict: integers as ``int``, arrays, structs and unions as their
  raw ``bytes``), named as the fields of its numpy record dtype (anonymous struct/union
  members lifted, a repeated name prefixed with ``_``).
  Bitfields are not members here (:meth:`pybpf.btf.types.Btf.bitfields` reads them).

The numpy dtype of the same type (:mod:`pybpf.btf.dtype`) has the same offsets and sizes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from pybpf.btf.model import _MAX_DEPTH, TypeGraph, _bad

__all__ = ["IntFormat", "Record", "RecordLayout", "int_format"]

_INT_CODES = {(1, True): "b", (1, False): "B", (2, True): "h", (2, False): "H", (4, True): "i", (4, False): "I",
              (8, True): "q", (8, False): "Q"}
_FLOAT_CODES = {2: "e", 4: "f", 8: "d"}


@dataclass(frozen=True)
class IntFormat:
    """An integer-like C type: ``size`` bytes, little-endian, ``signed``; ``boolean`` for a C bool."""

    size: int
    signed: bool
    boolean: bool = False

    @property
    def name(self) -> str:
        """The type as numpy names it (``uint32``, ``int8``, ``bool``): errors say it so."""
        return "bool" if self.boolean else f"{'int' if self.signed else 'uint'}{8 * self.size}"

    @property
    def bounds(self) -> tuple[int, int]:
        """The smallest and largest value."""
        if self.boolean:
            return 0, 1
        bits = 8 * self.size
        return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if self.signed else (0, (1 << bits) - 1)

    def encode(self, value: int, what: str = "value") -> bytes:
        """The C bytes of ``value`` (an int or bool), refused as :func:`pybpf.maps.codec.to_bytes`
        refuses it (OverflowError naming the type and its range)."""
        number = int(value)
        low, high = self.bounds
        if self.boolean:
            if number not in (0, 1):  # a C bool holds 0 or 1; 2 or -1 is a mistake, not True
                raise OverflowError(f"{what}: {number} is out of range for bool (give True/False or 0/1)")
        elif not low <= number <= high:
            raise OverflowError(f"{what}: {number} is out of range for {self.name} [{low}, {high}]")
        return number.to_bytes(self.size, "little", signed=self.signed)

    def decode(self, raw: bytes) -> int | bool:
        """The value of ``raw`` (``size`` bytes)."""
        number = int.from_bytes(raw[:self.size], "little", signed=self.signed)
        return bool(number) if self.boolean else number


def int_format(btf: TypeGraph, tid: int) -> IntFormat | None:
    """The :class:`IntFormat` of type ``tid`` (typedefs, qualifiers and a VAR skipped), or None
    when it is not a 1-, 2-, 4- or 8-byte integer, bool, enum or pointer."""
    t = btf[btf.resolve(tid)]
    size = t.size or 0
    if t.kind == "int":
        if t.encoding == "bool" and size == 1:
            return IntFormat(1, False, True)
        return IntFormat(size, bool(t.signed)) if size in (1, 2, 4, 8) else None
    if t.kind in ("enum", "enum64"):
        return IntFormat(size, bool(t.signed)) if size in (1, 2, 4, 8) else None
    if t.kind == "ptr":
        return IntFormat(8, False)
    return None


class Record(dict):  # type: ignore[type-arg]
    """One decoded record: member name -> ``int`` (``float``, ``bool``) or ``bytes``;
    ``raw`` is the record's bytes (padded with zeros to the struct's size)."""

    __slots__ = ("raw",)
    raw: bytes


class RecordLayout:
    """The members of BTF struct or union ``tid`` of ``btf``, to decode records without numpy."""

    def __init__(self, btf: TypeGraph, tid: int) -> None:
        t = btf[btf.resolve(tid)]
        if t.kind not in ("struct", "union"):
            raise TypeError(f"BTF type [{tid}] is a {t.kind}, not a struct or union")
        self.size = t.size or 0
        self.offsets: dict[str, int] = {}
        self._codes: list[tuple[str, struct.Struct, int]] = []
        self._blobs: list[tuple[str, int, int]] = []
        self._add(btf, t.id, 0, 0)

    def _add(self, btf: TypeGraph, tid: int, base: int, depth: int) -> None:
        # the members numpy's record dtype has (pybpf.btf.dtype), named as there
        if depth > _MAX_DEPTH:
            raise _bad(btf.name, f"type [{tid}] nests too deeply (cycle?)")
        t = btf[tid]
        for name, mtype, bit_off, bit_size in t.members:
            r = btf[btf.resolve(mtype)]
            if bit_size or bit_off % 8 or (not t.kflag and r.kind == "int"
                                           and (r.bits != (r.size or 0) * 8 or r.bit_offset)):
                continue  # a bitfield
            offset = base + bit_off // 8
            if not name and r.kind in ("struct", "union"):  # anonymous: its members are the record's
                self._add(btf, r.id, offset, depth + 1)
                continue
            name = name or f"_anon{len(self.offsets)}"
            while name in self.offsets:
                name = "_" + name
            self.offsets[name] = offset
            code = _code(btf, mtype)
            if code is not None:
                self._codes.append((name, struct.Struct("<" + code), offset))
            else:
                self._blobs.append((name, offset, btf.sizeof(mtype)))

    def decode(self, raw: bytes) -> Record:
        """``raw`` (one record; shorter ones are zero-padded, longer ones cut) as a :class:`Record`."""
        if len(raw) != self.size:
            raw = raw[:self.size].ljust(self.size, b"\0")
        record = Record()
        record.raw = raw
        for name, code, offset in self._codes:
            record[name] = code.unpack_from(raw, offset)[0]
        for name, offset, size in self._blobs:
            record[name] = raw[offset:offset + size]
        return record


def _code(btf: TypeGraph, tid: int) -> str | None:
    """The ``struct`` code of a scalar member, None for an array, struct or union (bytes)."""
    fmt = int_format(btf, tid)
    if fmt is not None:
        return "?" if fmt.boolean else _INT_CODES[fmt.size, fmt.signed]
    t: Any = btf[btf.resolve(tid)]
    if t.kind == "float":
        return _FLOAT_CODES.get(t.size or 0)
    return None
