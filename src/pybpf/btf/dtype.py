"""numpy dtypes for BTF types: exact C layouts as records, subarrays and bitfields.

This module owns the translation of the type graph parsed by :mod:`pybpf.btf.types`
into numpy dtypes (``Btf.dtype``) and the bitfield listing (``Btf.bitfields``).
It is pure spec: numpy and the parser only, never the bpf() syscall or libbpf.
It builds on :mod:`pybpf.btf.model` only (one-way); ``Btf`` reaches these functions
through a lazy import so the parser stays importable on its own.

Bitfields (documented choice): a struct's numpy dtype never contains a field
for a bitfield member.  Each run of adjacent bitfields is covered by one
storage field named ``_bitfield_<byte offset>`` (an unsigned integer when the
run is 1/2/4/8 bytes wide, else raw ``V<n>``), so the dtype's layout and
itemsize are exact.  :meth:`Btf.bitfields` lists every bitfield as a
:class:`~pybpf.btf.types.Bitfield` (name, byte_offset, bit_shift, bit_size, signed,
storage) whose ``get`` / ``set`` read and write the value in a numpy record or
a bytes-like buffer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import numpy as np

from pybpf.btf.model import _MAX_DEPTH, Bitfield, BtfType, TypeGraph, _bad, raw_dtype
from pybpf.errors import NotSupportedError, ObjectFormatError

if TYPE_CHECKING:
    import numpy.typing as npt

Btf = TypeGraph  # the annotations below name what they get: a parsed BTF

__all__ = ["bitfields_of", "dtype_of"]

_CHAR_NAMES = frozenset({"char", "signed char", "unsigned char"})
_MAX_DTYPE_BYTES = 1 << 31  # refuse layouts numpy would try to allocate for real


def dtype_of(btf: Btf, tid: int) -> np.dtype:
    """numpy dtype with the exact layout of type ``tid`` (see module doc for bitfields)."""
    try:
        return _dtype(btf, tid, 0)
    except (ValueError, TypeError, OverflowError, MemoryError) as e:
        if isinstance(e, ObjectFormatError):
            raise
        raise _bad(btf.name, f"type [{tid}] has no valid numpy layout ({e})") from None


def _dtype(btf: Btf, tid: int, depth: int) -> np.dtype:
    # The cache lives on the Btf: fix_datasec() invalidates a DATASEC's entry.
    dt = btf._dtypes.get(tid)
    if dt is not None:
        return dt
    if depth > _MAX_DEPTH:
        raise _bad(btf.name, f"type [{tid}] nests too deeply (cycle?)")
    t = btf[tid]
    k = t.kind
    if k in ("typedef", "const", "volatile", "restrict", "type_tag", "var"):
        dt = _dtype(btf, t.type or 0, depth + 1)
    elif k == "int":
        dt = _int_dtype(t)
    elif k in ("enum", "enum64"):
        size = t.size or 0
        if size in (1, 2, 4, 8):
            base = np.dtype(f"<{'i' if t.signed else 'u'}{size}")
        else:
            base = raw_dtype(size)
        dt = np.dtype(base, metadata={"enum": dict(t.values)})
    elif k == "float":
        dt = np.dtype(f"<f{t.size}") if t.size in (2, 4, 8) else raw_dtype(t.size or 0)
    elif k == "ptr":
        dt = np.dtype("<u8")
    elif k == "array":
        dt = _array_dtype(btf, t, depth)
    elif k in ("struct", "union"):
        dt = _record_dtype(btf, t, depth)
    elif k == "datasec":
        names: list[str] = []
        formats: list[np.dtype] = []
        offsets: list[int] = []
        for vt, off, _sz in t.vars:
            v = btf[vt]
            if v.kind != "var":
                continue
            names.append(_unique(v.name or f"_var{vt}", names))
            formats.append(_dtype(btf, vt, depth + 1))
            offsets.append(off)
        dt = _make_record(btf, t, names, formats, offsets, t.size or 0)
    else:
        raise NotSupportedError(f"BTF type [{tid}] ({k} {t.name}) has no data layout",
                                feature="dtype")
    btf._dtypes[tid] = dt
    return dt


def _int_dtype(t: BtfType) -> np.dtype:
    size = t.size or 0
    if t.encoding == "bool" and size == 1:
        return np.dtype("?")
    if size in (1, 2, 4, 8):
        return np.dtype(f"<{'i' if t.signed else 'u'}{size}")
    return raw_dtype(size)


def _is_char(btf: Btf, tid: int) -> bool:
    t = btf[btf._strip_quals(tid)]
    return t.kind == "int" and t.size == 1 and (t.name in _CHAR_NAMES or t.encoding == "char")


def _array_dtype(btf: Btf, t: BtfType, depth: int) -> np.dtype:
    elem = t.type or 0
    if _is_char(btf, elem):
        return np.dtype(f"S{t.nelems}") if t.nelems else np.dtype(("u1", (0,)))
    if btf.sizeof(elem) * t.nelems > _MAX_DTYPE_BYTES:
        raise _bad(btf.name, f"array [{t.id}] is implausibly large")
    sub = _dtype(btf, elem, depth + 1)
    if sub.subdtype is not None:  # int a[2][3] -> ('<i4', (2, 3)), not nested subarrays
        base, shape = sub.subdtype
        return np.dtype((base, (t.nelems, *shape)))
    return np.dtype((sub, (t.nelems,)))


def _unique(name: str, taken: list[str]) -> str:
    n = name
    while n in taken:
        n = "_" + n
    return n


def _make_record(btf: Btf, t: BtfType, names: list[str], formats: list[np.dtype],
                 offsets: list[int], itemsize: int) -> np.dtype:
    if itemsize > _MAX_DTYPE_BYTES:
        raise _bad(btf.name, f"{t.kind} [{t.id}] is implausibly large")
    for n, f, o in zip(names, formats, offsets):
        if o + f.itemsize > itemsize:
            raise _bad(btf.name, f"{t.kind} [{t.id}] member {n!r} at {o} "
                                 f"(+{f.itemsize}) exceeds size {itemsize}")
    # cast: numpy 2.5's stubs (Python >= 3.12) take a dtype dict only as their TypedDict
    return np.dtype(cast("npt.DTypeLike", {"names": names, "formats": formats, "offsets": offsets,
                                            "itemsize": itemsize}))


def _member_bitfield(btf: Btf, t: BtfType, mtype: int, bit_off: int, bf_size: int) -> tuple[int, int]:
    """(bit offset, bit size) if this member is a bitfield, else (bit_off, 0)."""
    if bf_size:
        return bit_off, bf_size
    r = btf[btf.resolve(mtype)]
    if not t.kflag and r.kind == "int" and (r.bits != (r.size or 0) * 8 or r.bit_offset):
        return bit_off + r.bit_offset, r.bits  # pre-kflag bitfield encoding
    if bit_off % 8:
        return bit_off, btf.sizeof(mtype) * 8
    return bit_off, 0


def _record_dtype(btf: Btf, t: BtfType, depth: int) -> np.dtype:
    names: list[str] = []
    formats: list[np.dtype] = []
    offsets: list[int] = []
    runs: list[list[int]] = []  # [start_byte, end_byte) of adjacent bitfields
    for mname, mtype, boff, bsz in t.members:
        boff, bsz = _member_bitfield(btf, t, mtype, boff, bsz)
        if bsz:
            lo, hi = boff // 8, (boff + bsz + 7) // 8
            if runs and lo <= runs[-1][1] and t.kind == "struct":
                runs[-1][1] = max(runs[-1][1], hi)
            else:
                runs.append([lo, hi])
            continue
        off = boff // 8
        mdt = _dtype(btf, mtype, depth + 1)
        if not mname and btf[btf.resolve(mtype)].kind in ("struct", "union"):
            # Anonymous struct/union: lift its fields so rec["x"] works.
            if mdt.names:
                for sub in mdt.names:
                    sdt, soff = mdt.fields[sub][:2]  # type: ignore[index]  # has names: has fields
                    names.append(_unique(sub, names))
                    formats.append(sdt)
                    offsets.append(off + soff)
            continue
        names.append(_unique(mname or f"_anon{len(names)}", names))
        formats.append(mdt)
        offsets.append(off)
    for lo, hi in runs:
        n = hi - lo
        names.append(_unique(f"_bitfield_{lo}", names))
        formats.append(np.dtype(f"<u{n}") if n in (1, 2, 4, 8) else raw_dtype(n))
        offsets.append(lo)
    return _make_record(btf, t, names, formats, offsets, t.size or 0)


def bitfields_of(btf: Btf, tid: int) -> list[Bitfield]:
    """``Btf.bitfields``: walk the members, nested records included, in order."""
    out: list[Bitfield] = []
    _collect_bitfields(btf, tid, 0, "", out, 0)
    return out


def _collect_bitfields(btf: Btf, tid: int, base: int, prefix: str, out: list[Bitfield],
                       depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise _bad(btf.name, f"type [{tid}] nests too deeply (cycle?)")
    t = btf[btf.resolve(tid)]
    if t.kind not in ("struct", "union"):
        return
    dt = btf.dtype(t.id)
    storages = [(n, dt.fields[n][1], dt.fields[n][0].itemsize)  # type: ignore[index]  # has names: has fields
                for n in (dt.names or ()) if n.lstrip("_").startswith("bitfield_")]
    for mname, mtype, boff, bsz in t.members:
        boff, bsz = _member_bitfield(btf, t, mtype, boff, bsz)
        if bsz:
            if not mname:
                continue  # unnamed padding bitfield
            byte = boff // 8
            sname, soff, ssize = next(((n, o, s) for n, o, s in storages
                                       if o <= byte < o + s), ("", byte, 1))
            r = btf[btf.resolve(mtype)]
            signed = bool((r.kind == "int" and r.signed) or (r.kind in ("enum", "enum64") and r.signed))
            out.append(Bitfield(prefix + mname, base + soff, boff - soff * 8, bsz, signed,
                                (prefix + sname) if sname else "", ssize))
        else:
            r = btf[btf.resolve(mtype)]
            if r.kind in ("struct", "union"):
                p = prefix if not mname else f"{prefix}{mname}."
                _collect_bitfields(btf, r.id, base + boff // 8, p, out, depth + 1)
