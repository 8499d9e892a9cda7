"""Serialising BTF: decoded :class:`~pybpf.btf.types.BtfType` values back to a raw blob.

This module owns the encoding of the BTF type and string sections (the inverse of
:mod:`pybpf.btf.types`): types are written in the order given, as ids 1..N, with
their references already expressed in that numbering; names are deduplicated
into a fresh string section. Used by :mod:`pybpf.spec.minimize`.
"""

from __future__ import annotations

import struct
from typing import Sequence

from pybpf.btf.types import BTF_MAGIC, KIND_NAMES, BtfType
from pybpf.errors import ObjectFormatError

__all__ = ["write_btf"]

_KIND = {name: i for i, name in enumerate(KIND_NAMES)}
_LINKAGE = {"static": 0, "global": 1, "extern": 2}


class _Strings:
    def __init__(self) -> None:
        self.buf = bytearray(b"\0")
        self.offs: dict[str, int] = {"": 0}

    def add(self, s: str) -> int:
        off = self.offs.get(s)
        if off is None:
            off = len(self.buf)
            self.buf += s.encode() + b"\0"
            self.offs[s] = off
        return off


def _linkage(value: str) -> int:
    if value in _LINKAGE:
        return _LINKAGE[value]
    try:
        return int(value)
    except ValueError:
        return 0


def write_btf(types: Sequence[BtfType]) -> bytes:
    """A raw BTF blob holding ``types`` as ids 1..len(types) (references must already use them)."""
    strs = _Strings()
    out = bytearray()
    n = len(types)

    def ref(tid: int | None, what: str) -> int:
        t = tid or 0
        if not 0 <= t <= n:
            raise ObjectFormatError(f"cannot write BTF: {what} refers to type {t} (have {n})")
        return t

    for t in types:
        k = _KIND.get(t.kind)
        if k is None or k == 0:
            raise ObjectFormatError(f"cannot write BTF: type kind {t.kind!r}")
        name = strs.add(t.name)
        kflag = int(bool(t.kflag))
        what = f"{t.kind} {t.name or '(anon)'}"
        if t.kind == "int":
            enc = (1 if t.signed else 0) | (2 if t.encoding == "char" else 0) | (4 if t.encoding == "bool" else 0)
            out += struct.pack("<III", name, k << 24, t.size or 0)
            out += struct.pack("<I", (enc << 24) | (t.bit_offset << 16) | t.bits)
        elif t.kind in ("ptr", "typedef", "volatile", "const", "restrict", "type_tag"):
            out += struct.pack("<III", name, (kflag << 31) | (k << 24), ref(t.type, what))
        elif t.kind == "array":
            out += struct.pack("<III", name, k << 24, 0)
            out += struct.pack("<III", ref(t.type, what), ref(t.index_type, what), t.nelems)
        elif t.kind in ("struct", "union"):
            bitfields = kflag or any(bits for _n, _t, _o, bits in t.members)
            out += struct.pack("<III", name, (int(bitfields) << 31) | (k << 24) | len(t.members), t.size or 0)
            for mname, mtype, off, bits in t.members:
                moff = (bits << 24) | off if bitfields else off
                out += struct.pack("<III", strs.add(mname), ref(mtype, what), moff)
        elif t.kind == "enum":
            kflag = int(bool(t.kflag or t.signed))  # an enum's kind_flag is its signedness
            out += struct.pack("<III", name, (kflag << 31) | (k << 24) | len(t.values), t.size or 0)
            for vname, v in t.values:
                out += struct.pack("<II", strs.add(vname), v & 0xFFFFFFFF)
        elif t.kind == "enum64":
            kflag = int(bool(t.kflag or t.signed))
            out += struct.pack("<III", name, (kflag << 31) | (k << 24) | len(t.values), t.size or 0)
            for vname, v in t.values:
                v &= (1 << 64) - 1
                out += struct.pack("<III", strs.add(vname), v & 0xFFFFFFFF, v >> 32)
        elif t.kind == "fwd":
            out += struct.pack("<III", name, (kflag << 31) | (k << 24), 0)
        elif t.kind == "func_proto":
            out += struct.pack("<III", name, (k << 24) | len(t.params), ref(t.type, what))
            for pname, ptype in t.params:
                out += struct.pack("<II", strs.add(pname), ref(ptype, what))
        elif t.kind == "func":
            out += struct.pack("<III", name, (k << 24) | _linkage(t.linkage), ref(t.type, what))
        elif t.kind == "var":
            out += struct.pack("<III", name, k << 24, ref(t.type, what))
            out += struct.pack("<I", _linkage(t.linkage))
        elif t.kind == "datasec":
            out += struct.pack("<III", name, (k << 24) | len(t.vars), t.size or 0)
            for vt, off, size in t.vars:
                out += struct.pack("<III", ref(vt, what), off, size)
        elif t.kind == "float":
            out += struct.pack("<III", name, k << 24, t.size or 0)
        elif t.kind == "decl_tag":
            out += struct.pack("<III", name, (kflag << 31) | (k << 24), ref(t.type, what))
            out += struct.pack("<i", t.component_idx)
        else:
            raise ObjectFormatError(f"cannot write BTF: type kind {t.kind!r}")
    while len(strs.buf) % 4:
        strs.buf += b"\0"
    hdr = struct.pack("<HBBIIIII", BTF_MAGIC, 1, 0, 24, 0, len(out), len(out), len(strs.buf))
    return hdr + bytes(out) + bytes(strs.buf)
