"""BTF types as JSON text, streamed: the encoder behind ``pybpf btf dump --format json``.

One type becomes one JSON object (``id``, ``kind``, ``name`` and each attribute that applies to
its kind and is not at its default; the schema of :class:`pybpf.btf.types.BtfType`), encoded
straight from the raw type records: no :class:`BtfType` objects, no big Python structure, so the
~130k types of vmlinux stream in well under a second and in little memory. Malformed input gets
the same one-line :class:`~pybpf.errors.ObjectFormatError` as :meth:`Btf.__getitem__`.

Pure: stdlib only (and :mod:`pybpf.btf.types`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import struct
from collections.abc import Iterable, Iterator
from json.encoder import encode_basestring_ascii as _quote  # type: ignore[attr-defined]
from typing import TextIO

from pybpf.btf.types import KIND_NAMES, Btf, BtfType, _bad

__all__ = ["iter_type_json", "type_json_text", "write_json"]

_LINKAGE = {0: "static", 1: "global", 2: "extern"}
_REFS = frozenset({2, 8, 9, 10, 11, 18})  # ptr, typedef, volatile, const, restrict, type_tag
_HDR = struct.Struct("<III")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")


class _Encoder:
    """Per-Btf state: encoded-string cache and bound helpers."""

    def __init__(self, btf: Btf) -> None:
        self.btf = btf
        self.n = len(btf)
        self.strs: dict[int, str] = self._all_strings(btf)
        self.kinds = [_quote(k) for k in KIND_NAMES]

    @staticmethod
    def _all_strings(btf: Btf) -> dict[int, str]:
        """Every string of an ASCII string section, JSON-quoted, by offset (one C-speed pass);
        anything else (offsets into a string's middle, non-ASCII, a base's strings) on demand."""
        raw = btf._strs
        if btf.base is not None or not raw.isascii():
            return {}
        parts = raw.decode("ascii").split("\0")[:-1]  # the section ends with a NUL
        offsets = itertools.accumulate((len(x) + 1 for x in parts), initial=0)
        return dict(zip(offsets, map(_quote, parts)))

    def s(self, off: int) -> str:
        q = self.strs.get(off)
        if q is None:
            q = self.strs[off] = _quote(self.btf._str(off))
        return q

    def linkage(self, value: int) -> str:
        return _quote(_LINKAGE.get(value, str(value)))

    def ref(self, x: int, tid: int) -> int:
        if x >= self.n:
            raise _bad(self.btf.name, f"type [{tid}] refers to type id {x}, out of range (have {self.n})")
        return x

    def encode(self, tid: int) -> str:  # noqa: C901 - one branch per BTF kind, as in Btf._decode
        btf = self.btf
        if tid < btf.start_id:
            if tid == 0:
                return '{"id": 0, "kind": "void", "name": ""}'
            if btf.base is not None:
                return _Encoder(btf.base).encode(tid)
        if not 0 < tid < self.n:
            raise IndexError(f"BTF type id {tid} out of range (have {self.n})")
        if tid in btf._datasec_fix:  # rewritten sizes/offsets live in the decoded type only
            return json.dumps(_reference(btf, tid))
        d = btf._data
        pos = btf._offs[tid - btf.start_id]
        name_off, info, st = _HDR.unpack_from(d, pos)
        k = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        kflag = info >> 31
        head = f'{{"id": {tid}, "kind": {self.kinds[k]}, "name": {self.s(name_off)}'
        if vlen:
            head += f', "vlen": {vlen}'
        if kflag:
            head += ', "kflag": true'
        p = pos + 12
        ref = self.ref
        s = self.s
        # most common first: vmlinux is ~45% funcs, ~25% func_protos, then pointers and modifiers
        if k == 12:  # func
            if st >= self.n:
                ref(st, tid)
            return f'{head}, "type": {st}, "linkage": {self.linkage(vlen)}}}'
        if k == 13:  # func_proto
            out = f'{head}, "type": {ref(st, tid)}'
            if vlen:
                params = ", ".join(f'{{"name": {s(n)}, "type": {ref(pt, tid)}}}'
                                   for n, pt in struct.iter_unpack("<II", d[p:p + 8 * vlen]))
                out += f', "params": [{params}]'
            return out + "}"
        if k in _REFS:  # ptr, typedef, volatile, const, restrict, type_tag
            if st >= self.n:
                ref(st, tid)
            return f'{head}, "type": {st}}}'
        if k == 1:  # int
            (enc,) = _U32.unpack_from(d, p)
            bits_enc = (enc >> 24) & 0x0F
            bit_offset = (enc >> 16) & 0xFF
            bits = enc & 0xFF
            if st not in (1, 2, 4, 8, 16) or bits > st * 8 or bits + bit_offset > st * 8:
                raise _bad(btf.name, f"int [{tid}] has size {st} and {bits} bits")
            out = f'{head}, "size": {st}'
            encoding = ("bool" if bits_enc & 4 else "char" if bits_enc & 2 else "signed" if bits_enc & 1 else "")
            if encoding:
                out += f', "encoding": "{encoding}"'
            if bits:
                out += f', "bits": {bits}'
            if bit_offset:
                out += f', "bit_offset": {bit_offset}'
            return out + (', "signed": true}' if bits_enc & 1 else "}")
        if k == 3:  # array
            elem, index, nelems = _HDR.unpack_from(d, p)
            out = f'{head}, "type": {ref(elem, tid)}'
            if nelems:
                out += f', "nelems": {nelems}'
            if ref(index, tid):
                out += f', "index_type": {index}'
            return out + "}"
        if k in (4, 5):  # struct, union
            if not vlen:
                return f'{head}, "size": {st}}}'
            if kflag:
                members = ", ".join(
                    f'{{"name": {s(mn)}, "type": {ref(mt, tid)}, "bit_offset": {mo & 0xFFFFFF}, '
                    f'"bitfield_size": {mo >> 24}}}'
                    for mn, mt, mo in struct.iter_unpack("<III", d[p:p + 12 * vlen]))
            else:
                members = ", ".join(
                    f'{{"name": {s(mn)}, "type": {ref(mt, tid)}, "bit_offset": {mo}, "bitfield_size": 0}}'
                    for mn, mt, mo in struct.iter_unpack("<III", d[p:p + 12 * vlen]))
            return f'{head}, "size": {st}, "members": [{members}]}}'
        if k == 6:  # enum
            raw = list(struct.iter_unpack("<Ii", d[p:p + 8 * vlen]))
            signed = bool(kflag)  # the signedness, as in the decoded types and libbpf's C dump
            out = f'{head}, "size": {st}'
            if raw:
                values = ", ".join(f'{{"name": {s(n)}, "value": {v if signed else v & 0xFFFFFFFF}}}'
                                   for n, v in raw)
                out += f', "values": [{values}]'
            return out + (', "signed": true}' if signed else "}")
        if k == 19:  # enum64
            out = f'{head}, "size": {st}'
            if vlen:
                vals = []
                for n, lo, hi in struct.iter_unpack("<III", d[p:p + 12 * vlen]):
                    v = lo | (hi << 32)
                    if kflag and v >> 63:
                        v -= 1 << 64
                    vals.append(f'{{"name": {s(n)}, "value": {v}}}')
                out += f', "values": [{", ".join(vals)}]'
            return out + (', "signed": true}' if kflag else "}")
        if k == 14:  # var
            (lk,) = _U32.unpack_from(d, p)
            out = f'{head}, "type": {ref(st, tid)}'
            linkage = _LINKAGE.get(lk, str(lk))
            return out + (f', "linkage": {_quote(linkage)}}}' if linkage else "}")
        if k == 15:  # datasec
            out = f'{head}, "size": {st}'
            if vlen:
                vs = ", ".join(f'{{"type": {ref(a, tid)}, "offset": {b}, "size": {c}}}'
                               for a, b, c in struct.iter_unpack("<III", d[p:p + 12 * vlen]))
                out += f', "vars": [{vs}]'
            return out + "}"
        if k == 17:  # decl_tag
            (component_idx,) = _I32.unpack_from(d, p)
            out = f'{head}, "type": {ref(st, tid)}'
            return out + (f', "component_idx": {component_idx}}}' if component_idx != -1 else "}")
        if k == 16:  # float
            return f'{head}, "size": {st}}}'
        if k == 7:  # fwd
            return head + "}"
        raise _bad(btf.name, f"unknown kind {k} for type [{tid}]")


def _reference(btf: Btf, tid: int) -> dict[str, object]:
    """The decoded type as a dict (slow path, for DATASECs rewritten by ``fix_datasec``)."""
    t = btf[tid]
    out: dict[str, object] = {"id": t.id, "kind": t.kind, "name": t.name}
    for f in dataclasses.fields(BtfType):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        value = getattr(t, f.name)
        if f.name in out or value == default:
            continue
        if f.name == "vars":
            value = [{"type": a, "offset": b, "size": c} for a, b, c in value]
        out[f.name] = value
    return out


def type_json_text(btf: Btf, tid: int) -> str:
    """Type ``tid`` of ``btf`` as one line of JSON text."""
    return _Encoder(btf).encode(tid)


def iter_type_json(btf: Btf, ids: Iterable[int] | None = None) -> Iterator[str]:
    """JSON text of each type in ``ids`` (default: every type), one string per type."""
    enc = _Encoder(btf)
    encode = enc.encode
    for tid in (range(1, len(btf)) if ids is None else ids):
        yield encode(tid)


def write_json(out: TextIO, btf: Btf, path: str, ids: Iterable[int] | None = None) -> None:
    """Write ``{"file": path, "types": [...]}`` to ``out``, one type per line.

    Every type is encoded before the first byte is written, so malformed BTF raises with
    nothing written; the text is held as one string per type (about the size of the output),
    never as Python dicts.
    """
    texts = list(iter_type_json(btf, ids))
    out.write(f'{{"file": {_quote(path)}, "types": [\n')
    for i in range(0, len(texts), 4096):
        out.write((",\n" if i else "") + ",\n".join(texts[i:i + 4096]))
    out.write("\n]}\n")
