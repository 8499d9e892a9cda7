"""The CO-RE relocation engine: what libbpf 1.1 patches for each relocation, computed purely.

This module owns the relocation algorithm of libbpf's ``relo_core.c`` and the
candidate search of ``libbpf.c`` (``bpf_core_find_cands``), written against the
pure BTF parser (:mod:`pybpf.btf.types`):

* candidates: target types whose *essential* name (the name with a trailing
  ``___flavor`` cut off) and kind match the local type, in type-id order;
* the local spec: the access string (``0:1:2``) turned into accessors, with
  anonymous struct/union members walked through and array indices bounded;
* matching a spec to a candidate: named members searched through embedded
  anonymous members, field types checked for compatibility, arrays bounded
  (flexible arrays allowed);
* the values: byte offsets/sizes, bitfield shifts exactly as libbpf computes
  them, signedness, existence, type ids and sizes, enum values,
  ``bpf_core_types_are_compat`` and ``bpf_core_types_match``;
* the ambiguity rule (several matching candidates must agree), and the
  candidate cache that libbpf keeps per local type and prunes as relocations
  are resolved (so the order of relocations matters, as in libbpf);
* the patching step (``bpf_core_patch_insn``): the instruction class decides
  what is checked, what is patched and when the instruction is poisoned.

Nothing here touches the kernel or libbpf; :mod:`pybpf.spec.core` applies it to
objects and :func:`pybpf.check` exposes it.
"""

from __future__ import annotations

import errno
import itertools
import re
import struct
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from pybpf.btf.types import Btf

__all__ = [
    "KIND_SHORT", "RelocError", "RelocResult", "RelocInput", "Relocator", "essential_name",
    "FIELD_KINDS", "TYPE_KINDS", "ENUMVAL_KINDS", "essential_index", "parse_spec", "spec_match",
    "resolve_size", "Spec", "seed_index", "unseed_index",
]

# .BTF.ext kind names (pybpf.btf.ext.RELO_KINDS) -> libbpf's own short names (core_relo_kind_str).
KIND_SHORT: dict[str, str] = {
    "field_byte_offset": "byte_off", "field_byte_size": "byte_sz", "field_exists": "field_exists",
    "field_signed": "signed", "field_lshift_u64": "lshift_u64", "field_rshift_u64": "rshift_u64",
    "type_id_local": "local_type_id", "type_id_target": "target_type_id", "type_exists": "type_exists",
    "type_size": "type_size", "enumval_exists": "enumval_exists", "enumval_value": "enumval_value",
    "type_matches": "type_matches",
}
FIELD_KINDS = frozenset({"byte_off", "byte_sz", "field_exists", "signed", "lshift_u64", "rshift_u64"})
TYPE_KINDS = frozenset({"local_type_id", "target_type_id", "type_exists", "type_matches", "type_size"})
ENUMVAL_KINDS = frozenset({"enumval_exists", "enumval_value"})

_SPEC_MAX_LEN = 64  # BPF_CORE_SPEC_MAX_LEN
_U64 = (1 << 64) - 1
_U32_MAX = (1 << 32) - 1
_SHRT_MAX = 0x7FFF
_POISON_IMM = 195896080  # 0xbad2310, "bad relo": the verifier says "invalid func unknown#195896080"
_MODS = frozenset({"typedef", "volatile", "const", "restrict", "type_tag"})
_ENUMS = frozenset({"enum", "enum64"})
_COMPOSITE = frozenset({"struct", "union"})
# BPF instruction classes and sizes
_LD, _LDX, _ST, _STX, _ALU, _ALU64 = 0, 1, 2, 3, 4, 7
_SIZE_BYTES = {0x18: 8, 0x00: 4, 0x08: 2, 0x10: 1}
_BYTES_SIZE = {v: k for k, v in _SIZE_BYTES.items()}


class RelocError(Exception):
    """A libbpf error return (-errno) with libbpf's explanation (``why``)."""

    def __init__(self, err: int, why: str) -> None:
        super().__init__(why)
        self.err = err
        self.why = why


class _Poison(Exception):
    """-EUCLEAN: the instruction is to be poisoned."""


# ---- BTF helpers, as libbpf defines them ---------------------------------------------------

def essential_name(name: str) -> str:
    """``name`` without its last ``___flavor`` suffix (bpf_core_essential_name_len)."""
    n = len(name)
    for i in range(n - 5, -1, -1):
        s = name[i:i + 5]
        if s[0] != "_" and s[1:4] == "___" and s[4] != "_":
            return name[:i + 1]
    return name


def _skip(btf: Btf, tid: int) -> int:
    """skip_mods_and_typedefs: the id after typedefs and qualifiers."""
    for _ in range(256):
        if tid == 0 or btf.kind_of(tid) not in _MODS:
            return tid
        tid = btf[tid].type or 0
    raise RelocError(errno.EINVAL, f"type [{tid}]: modifier chain too deep")


def _kind(btf: Btf, tid: int) -> str:
    return "unkn" if tid == 0 else btf.kind_of(tid)


def _kind_compat(k1: str, k2: str) -> bool:
    """btf_kind_core_compat: same kind, or enum vs enum64."""
    return k1 == k2 or (k1 in _ENUMS and k2 in _ENUMS)


def resolve_size(btf: Btf, tid: int) -> int:
    """btf__resolve_size (a pointer is 8 bytes); RelocError(EINVAL/E2BIG) where libbpf fails."""
    nelems = 1
    for _ in range(32):  # MAX_RESOLVE_DEPTH
        k = _kind(btf, tid)
        if k in ("int", "struct", "union", "enum", "enum64", "datasec", "float"):
            size = btf[tid].size or 0
            break
        if k == "ptr":
            size = 8
            break
        if k in _MODS or k in ("var", "decl_tag"):
            tid = btf[tid].type or 0
            continue
        if k == "array":
            t = btf[tid]
            if t.nelems and nelems > _U32_MAX // t.nelems:
                raise RelocError(errno.E2BIG, f"array [{tid}] is too big")
            nelems *= t.nelems
            tid = t.type or 0
            continue
        raise RelocError(errno.EINVAL, f"type [{tid}] ({k}) has no size")
    else:
        raise RelocError(errno.EINVAL, f"type [{tid}] nests too deeply")
    if nelems and size > _U32_MAX // nelems:
        raise RelocError(errno.E2BIG, f"type [{tid}] is too big")
    return nelems * size


def _name(btf: Btf, tid: int) -> str:
    return btf._name_of(tid) if tid else ""


def _raw_u32_after_header(btf: Btf, tid: int) -> int:
    """The u32 following a type's 12-byte header, as libbpf's btf_int_encoding() reads it
    (for a non-int type that is whatever comes next: libbpf 1.1 reads it unconditionally)."""
    owner = btf
    while owner.base is not None and tid < owner.start_id:
        owner = owner.base
    pos = owner._offs[tid - owner.start_id] + 12
    if pos + 4 > len(owner._data):
        return 0
    return int(struct.unpack_from("<I", owner._data, pos)[0])


def _int_offset(btf: Btf, tid: int) -> int:
    return btf[tid].bit_offset


# ---- specs ---------------------------------------------------------------------------------

@dataclass(slots=True)
class _Acc:
    type_id: int
    idx: int
    name: str | None


@dataclass(slots=True)
class Spec:
    """bpf_core_spec: accessors (``acc``), the raw access indices and the bit offset."""

    btf: Btf
    root_type_id: int
    kind: str
    raw: list[int] = field(default_factory=list)
    acc: list[_Acc] = field(default_factory=list)
    bit_offset: int = 0

    def copy(self) -> Spec:
        """An independent copy (the matcher extends copies per candidate)."""
        return Spec(self.btf, self.root_type_id, self.kind, list(self.raw),
                    [_Acc(a.type_id, a.idx, a.name) for a in self.acc], self.bit_offset)

    @property
    def access(self) -> str:
        """The raw access string as clang wrote it (``0:1:2``)."""
        return ":".join(str(i) for i in self.raw)

    def c_path(self) -> str:
        """The field path as libbpf prints it: ``task_struct.real_parent``, ``x.a[3].b``."""
        btf = self.btf
        root = _name(btf, self.root_type_id) or "<anon>"
        if self.kind in TYPE_KINDS:
            return root
        if self.kind in ENUMVAL_KINDS:
            return f"{root}::{self.acc[0].name}" if self.acc else root
        out = [root]
        for i, a in enumerate(self.acc):
            if a.name:
                out.append("." + a.name)
            elif i > 0 or a.idx > 0:
                out.append(f"[{a.idx}]")
        return "".join(out)


def _is_flex_arr(btf: Btf, acc: _Acc, nelems: int) -> bool:
    if not acc.name or nelems > 0:
        return False
    return acc.idx == btf[acc.type_id].vlen - 1


def parse_spec(btf: Btf, type_id: int, access: str, kind: str) -> Spec:
    """bpf_core_parse_spec: the local spec of a relocation (``kind`` is libbpf's short name)."""
    if not access or access[0] == ":":
        raise RelocError(errno.EINVAL, f"empty access string {access!r}")
    spec = Spec(btf, type_id, kind)
    if kind in TYPE_KINDS:
        if access != "0":
            raise RelocError(errno.EINVAL, f"type relocation with access string {access!r}")
        return spec
    try:
        raw = [int(x) for x in access.split(":")]
    except ValueError:
        raise RelocError(errno.EINVAL, f"bad access string {access!r}") from None
    if len(raw) > _SPEC_MAX_LEN:
        raise RelocError(errno.E2BIG, "access string too long")
    spec.raw = raw
    tid = _skip(btf, type_id)
    t = btf[tid]
    spec.acc.append(_Acc(tid, raw[0], None))
    if kind in ENUMVAL_KINDS:
        if t.kind not in _ENUMS or len(raw) > 1 or raw[0] >= t.vlen or raw[0] < 0:
            raise RelocError(errno.EINVAL, f"enum value access {access!r} on {btf.c_name(type_id)}")
        spec.acc[0].name = t.values[raw[0]][0]
        return spec
    if kind not in FIELD_KINDS:
        raise RelocError(errno.EINVAL, f"unknown relocation kind {kind}")
    sz = resolve_size(btf, tid)
    spec.bit_offset = raw[0] * sz * 8
    for i in range(1, len(raw)):
        tid = _skip(btf, tid)
        t = btf[tid]
        idx = raw[i]
        if t.kind in _COMPOSITE:
            if idx >= t.vlen or idx < 0:
                raise RelocError(errno.EINVAL, f"member {idx} out of range in {btf.c_name(tid)}")
            mname, mtype, moff, _bits = t.members[idx]
            spec.bit_offset += moff
            if mname:
                spec.acc.append(_Acc(tid, idx, mname))
            tid = mtype
        elif t.kind == "array":
            elem = _skip(btf, t.type or 0)
            flex = _is_flex_arr(btf, spec.acc[-1], t.nelems)
            if not flex and idx >= t.nelems:
                raise RelocError(errno.EINVAL, f"index {idx} out of range of {btf.c_name(tid)}")
            spec.acc.append(_Acc(elem, idx, None))
            sz = resolve_size(btf, elem)
            spec.bit_offset += idx * sz * 8
            tid = elem
        else:
            raise RelocError(errno.EINVAL, f"access {access!r} (at idx {i}) steps into {t.kind} [{tid}]")
    return spec


# ---- compatibility -------------------------------------------------------------------------

def _types_are_compat(lb: Btf, lid: int, tb: Btf, tid: int, level: int = 32) -> int:
    """__bpf_core_types_are_compat (type_exists, type_size, target_type_id)."""
    if not _kind_compat(_kind(lb, lid), _kind(tb, tid)):
        return 0
    depth = 32
    while True:
        depth -= 1
        if depth < 0:
            raise RelocError(errno.EINVAL, "type compatibility check nests too deeply")
        lid, tid = _skip(lb, lid), _skip(tb, tid)
        lk, tk = _kind(lb, lid), _kind(tb, tid)
        if not _kind_compat(lk, tk):
            return 0
        if lk in ("unkn", "struct", "union", "enum", "fwd", "enum64"):
            return 1
        if lk == "int":
            return int(_int_offset(lb, lid) == 0 and _int_offset(tb, tid) == 0)
        if lk == "ptr":
            lid, tid = lb[lid].type or 0, tb[tid].type or 0
            continue
        if lk == "array":
            lid, tid = lb[lid].type or 0, tb[tid].type or 0
            continue
        if lk == "func_proto":
            lt, tt = lb[lid], tb[tid]
            if len(lt.params) != len(tt.params):
                return 0
            for (_, lp), (_, tp) in zip(lt.params, tt.params):
                if level <= 0:
                    raise RelocError(errno.EINVAL, "function prototypes nest too deeply")
                r = _types_are_compat(lb, _skip(lb, lp), tb, _skip(tb, tp), level - 1)
                if r <= 0:
                    return r
            lid, tid = _skip(lb, lt.type or 0), _skip(tb, tt.type or 0)
            continue
        return 0


def _fields_are_compat(lb: Btf, lid: int, tb: Btf, tid: int) -> int:
    """bpf_core_fields_are_compat."""
    while True:
        lid, tid = _skip(lb, lid), _skip(tb, tid)
        lk, tk = _kind(lb, lid), _kind(tb, tid)
        if lk in _COMPOSITE and tk in _COMPOSITE:
            return 1
        if not _kind_compat(lk, tk):
            return 0
        if lk in ("ptr", "float"):
            return 1
        if lk in ("fwd", "enum", "enum64"):
            ln, tn = essential_name(_name(lb, lid)), essential_name(_name(tb, tid))
            return int(not ln or not tn or ln == tn)
        if lk == "int":
            return int(_int_offset(lb, lid) == 0 and _int_offset(tb, tid) == 0)
        if lk == "array":
            lid, tid = lb[lid].type or 0, tb[tid].type or 0
            continue
        return 0


def _names_match(ln: str, tn: str) -> bool:
    if not tn:
        return not ln
    return essential_name(ln) == essential_name(tn)


def _enums_match(lb: Btf, lid: int, tb: Btf, tid: int) -> int:
    lt, tt = lb[lid], tb[tid]
    if lt.size != tt.size or lt.vlen > tt.vlen:
        return 0
    tnames = [n for n, _ in tt.values]
    for ln, _ in lt.values:
        if not any(_names_match(ln, tn) for tn in tnames):
            return 0
    return 1


def _composites_match(lb: Btf, lid: int, tb: Btf, tid: int, behind_ptr: bool, level: int) -> int:
    lt, tt = lb[lid], tb[tid]
    if lt.vlen > tt.vlen:
        return 0
    for lname, ltype, _o, _b in lt.members:
        matched = False
        for tname, ttype, _o2, _b2 in tt.members:
            if not _names_match(lname, tname):
                continue
            r = _types_match(lb, ltype, tb, ttype, behind_ptr, level - 1)
            if r < 0:
                return r
            if r > 0:
                matched = True
                break
        if not matched:
            return 0
    return 1


def _types_match(lb: Btf, lid: int, tb: Btf, tid: int, behind_ptr: bool = False, level: int = 32) -> int:
    """__bpf_core_types_match (type_matches)."""
    if level <= 0:
        raise RelocError(errno.EINVAL, "type match nests too deeply")
    depth = 32
    while True:
        depth -= 1
        if depth < 0:
            raise RelocError(errno.EINVAL, "type match nests too deeply")
        lid, tid = _skip(lb, lid), _skip(tb, tid)
        if not _names_match(_name(lb, lid), _name(tb, tid)):
            return 0
        lk, tk = _kind(lb, lid), _kind(tb, tid)
        if lk == "unkn":
            return int(lk == tk)
        if lk == "fwd":
            lf = lb[lid].kflag
            if behind_ptr:
                if lk == tk:
                    return int(lf == tb[tid].kflag)
                return int((tk == "struct" and not lf) or (tk == "union" and lf))
            if lk != tk:
                return 0
            return int(lf == tb[tid].kflag)
        if lk in _ENUMS:
            if tk not in _ENUMS:
                return 0
            return _enums_match(lb, lid, tb, tid)
        if lk in _COMPOSITE:
            if behind_ptr:
                if lk == tk:
                    return 1
                if tk != "fwd":
                    return 0
                return int((lk == "union") == tb[tid].kflag)
            if lk != tk:
                return 0
            return _composites_match(lb, lid, tb, tid, behind_ptr, level)
        if lk == "int":
            if lk != tk:
                return 0
            lt, tt = lb[lid], tb[tid]
            return int(lt.size == tt.size and lt.signed == tt.signed)
        if lk == "ptr":
            if lk != tk:
                return 0
            behind_ptr = True
            lid, tid = lb[lid].type or 0, tb[tid].type or 0
            continue
        if lk == "array":
            if lk != tk:
                return 0
            lt, tt = lb[lid], tb[tid]
            if lt.nelems != tt.nelems:
                return 0
            lid, tid = lt.type or 0, tt.type or 0
            continue
        if lk == "func_proto":
            if lk != tk:
                return 0
            lt, tt = lb[lid], tb[tid]
            if len(lt.params) != len(tt.params):
                return 0
            for (_, lp), (_, tp) in zip(lt.params, tt.params):
                r = _types_match(lb, lp, tb, tp, behind_ptr, level - 1)
                if r <= 0:
                    return r
            lid, tid = lt.type or 0, tt.type or 0
            continue
        return 0


# ---- matching a spec against a candidate ----------------------------------------------------

def _match_member(lb: Btf, lacc: _Acc, tb: Btf, tid: int, spec: Spec) -> tuple[int, int]:
    """bpf_core_match_member: (found, next target type id)."""
    tid = _skip(tb, tid)
    tt = tb[tid] if tid else None
    if tt is None or tt.kind not in _COMPOSITE:
        return 0, 0
    lmember = lb[lacc.type_id].members[lacc.idx]
    lname = lmember[0]
    for i, (tname, ttype, toff, _bits) in enumerate(tt.members):
        if len(spec.raw) == _SPEC_MAX_LEN:
            raise RelocError(errno.E2BIG, "struct/union/array nesting too deep")
        spec.bit_offset += toff
        spec.raw.append(i)
        if not tname:
            found, nxt = _match_member(lb, lacc, tb, ttype, spec)
            if found:
                return found, nxt
        elif tname == lname:
            spec.acc.append(_Acc(tid, i, tname))
            found = _fields_are_compat(lb, lmember[1], tb, ttype)
            if not found:
                spec.acc.pop()
            return found, ttype
        spec.bit_offset -= toff
        spec.raw.pop()
    return 0, 0


def spec_match(local: Spec, tb: Btf, targ_id: int) -> tuple[int, Spec]:
    """bpf_core_spec_match: (1 and the target spec) or (0, partial spec)."""
    targ = Spec(tb, targ_id, local.kind)
    kind = local.kind
    if kind in TYPE_KINDS:
        if kind == "type_matches":
            return _types_match(local.btf, local.root_type_id, tb, targ_id), targ
        return _types_are_compat(local.btf, local.root_type_id, tb, targ_id), targ
    lacc0 = local.acc[0]
    if kind in ENUMVAL_KINDS:
        tid = _skip(tb, targ_id)
        tt = tb[tid] if tid else None
        if tt is None or tt.kind not in _ENUMS:
            return 0, targ
        want = essential_name(lacc0.name or "")
        for i, (vname, _v) in enumerate(tt.values):
            if essential_name(vname) == want:
                targ.acc.append(_Acc(tid, i, vname))
                targ.raw.append(i)
                return 1, targ
        return 0, targ
    tid = targ_id
    for i, lacc in enumerate(local.acc):
        tid = _skip(tb, tid)
        if lacc.name:
            found, tid = _match_member(local.btf, lacc, tb, tid, targ)
            if found <= 0:
                return found, targ
        else:
            if i > 0:
                tt = tb[tid] if tid else None
                if tt is None or tt.kind != "array":
                    return 0, targ
                flex = _is_flex_arr(tb, targ.acc[i - 1], tt.nelems)
                if not flex and lacc.idx >= tt.nelems:
                    return 0, targ
                tid = _skip(tb, tt.type or 0)
            if len(targ.raw) == _SPEC_MAX_LEN:
                raise RelocError(errno.E2BIG, "struct/union/array nesting too deep")
            targ.acc.append(_Acc(tid, lacc.idx, None))
            targ.raw.append(lacc.idx)
            targ.bit_offset += lacc.idx * resolve_size(tb, tid) * 8
    return 1, targ


# ---- values ----------------------------------------------------------------------------------

@dataclass(slots=True)
class _Res:
    orig_val: int = 0
    new_val: int = 0
    poison: bool = False
    validate: bool = True
    fail_memsz_adjust: bool = False
    orig_sz: int = 0
    new_sz: int = 0
    orig_type_id: int = 0
    new_type_id: int = 0


def _calc_field(kind: str, spec: Spec | None, insn_idx: int, local: bool) -> tuple[int, int, int, bool]:
    """bpf_core_calc_field_relo: (value, field size, field type id, validate)."""
    if kind == "field_exists":
        return (1 if spec is not None else 0), 0, 0, True
    if spec is None:
        raise _Poison()
    btf = spec.btf
    acc = spec.acc[-1]
    if not acc.name:
        if kind == "byte_off":
            return spec.bit_offset // 8, resolve_size(btf, acc.type_id), acc.type_id, True
        if kind == "byte_sz":
            return resolve_size(btf, acc.type_id), 0, 0, True
        raise RelocError(errno.EINVAL, f"relo {kind} at insn #{insn_idx} can't be applied to array access")
    t = btf[acc.type_id]
    _mname, mtype, _moff, bit_sz = t.members[acc.idx]
    field_type_id = _skip(btf, mtype)
    mt = btf[field_type_id] if field_type_id else None
    bit_off = spec.bit_offset
    bitfield = bit_sz > 0
    if bitfield:
        byte_sz = (mt.size or 0) if mt is not None else 0
        if byte_sz <= 0:
            raise RelocError(errno.EINVAL, f"bitfield of {btf.c_name(acc.type_id)} has no storage size")
        byte_off = bit_off // 8 // byte_sz * byte_sz
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise RelocError(errno.E2BIG, f"relo {kind} at insn #{insn_idx} can't be satisfied for bitfield")
            byte_sz *= 2
            byte_off = bit_off // 8 // byte_sz * byte_sz
    else:
        byte_sz = resolve_size(btf, field_type_id)
        byte_off = bit_off // 8
        bit_sz = byte_sz * 8
    validate = not bitfield
    field_sz = 0
    if kind == "byte_off":
        val = byte_off
        if not bitfield:
            field_sz = byte_sz
    elif kind == "byte_sz":
        val = byte_sz
    elif kind == "signed":
        if mt is not None and mt.kind in _ENUMS:
            val = int(mt.kflag or bool((_raw_u32_after_header(btf, field_type_id) >> 24) & 1))
        elif mt is not None:
            # libbpf 1.1: btf_int_encoding(mt) & BTF_INT_SIGNED, whatever mt's kind
            val = (_raw_u32_after_header(btf, field_type_id) >> 24) & 1
        else:
            val = 0
        validate = True
    elif kind == "lshift_u64":
        val = 64 - (bit_off + bit_sz - byte_off * 8)
    elif kind == "rshift_u64":
        val = 64 - bit_sz
        validate = True
    else:
        raise RelocError(errno.EOPNOTSUPP, f"unrecognized CO-RE relocation {kind}")
    return val & _U64, field_sz, (field_type_id if kind == "byte_off" and not bitfield else 0), validate


def _calc_type(kind: str, spec: Spec | None) -> tuple[int, bool]:
    if spec is None:
        return 0, True
    if kind == "target_type_id":
        return spec.root_type_id, False
    if kind in ("type_exists", "type_matches"):
        return 1, True
    if kind == "type_size":
        return resolve_size(spec.btf, spec.root_type_id), True
    raise RelocError(errno.EOPNOTSUPP, f"unrecognized CO-RE relocation {kind}")


def _calc_enumval(kind: str, spec: Spec | None) -> int:
    if kind == "enumval_exists":
        return 1 if spec is not None else 0
    if spec is None:
        raise _Poison()
    acc = spec.acc[0]
    t = spec.btf[acc.type_id]
    v = t.values[acc.idx][1]
    if t.kind == "enum":  # __s32 widened to __u64
        v &= 0xFFFFFFFF
        if v >> 31:
            v -= 1 << 32
    return v & _U64


def _calc_relo(kind: str, insn_idx: int, local: Spec, targ: Spec | None) -> _Res:
    """bpf_core_calc_relo."""
    res = _Res()
    try:
        if kind in FIELD_KINDS:
            res.orig_val, res.orig_sz, res.orig_type_id, res.validate = _calc_field(kind, local, insn_idx, True)
            res.new_val, res.new_sz, res.new_type_id, _ = _calc_field(kind, targ, insn_idx, False)
            if res.orig_sz != res.new_sz:
                assert targ is not None
                ot = local.btf[res.orig_type_id] if res.orig_type_id else None
                nt = targ.btf[res.new_type_id] if res.new_type_id else None
                ok = False
                if ot is not None and nt is not None:
                    if ot.kind == "ptr" and nt.kind == "ptr":
                        ok = True
                    elif (ot.kind == "int" and nt.kind == "int"
                          and ((_raw_u32_after_header(local.btf, ot.id) >> 24) & 0xF) != 1
                          and ((_raw_u32_after_header(targ.btf, nt.id) >> 24) & 0xF) != 1):
                        ok = True
                res.fail_memsz_adjust = not ok
        elif kind in TYPE_KINDS:
            res.orig_val, res.validate = _calc_type(kind, local)
            res.new_val, _ = _calc_type(kind, targ)
        elif kind in ENUMVAL_KINDS:
            res.orig_val = _calc_enumval(kind, local)
            res.new_val = _calc_enumval(kind, targ)
        else:
            raise RelocError(errno.EOPNOTSUPP, f"unrecognized CO-RE relocation {kind}")
    except _Poison:
        res.poison = True
    return res


# ---- results ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RelocInput:
    """One CO-RE relocation record placed in its program."""

    index: int  # libbpf's "relo #K": the record's index within its section's records
    program: str
    section: str
    insn: int  # instruction index within the program
    kind: str  # libbpf's short name
    type_id: int  # local root type
    access: str  # the access string ("0:1:2")
    insn_bytes: bytes  # the instruction (16 bytes when followed by another)


@dataclass(frozen=True, slots=True)
class RelocResult:
    """What libbpf does with one relocation on one target.

    ``value`` is the new value libbpf patches in (as its debug log prints it), or None
    when the instruction is poisoned or the relocation fails. ``ok`` is False for a
    poisoned instruction and for a failure (``fatal``: the whole load fails there).
    """

    index: int
    program: str
    section: str
    insn: int
    kind: str
    type_id: int
    access: str
    path: str
    local_type: str
    value: int | None
    orig: int | None
    ok: bool
    poisoned: bool = False
    fatal: bool = False
    patch: str = ""  # "imm", "off", "imm64": which part of the instruction changes
    mem_size: tuple[int, int] | None = None  # (old, new) load/store width when it changes
    target_type_id: int | None = None
    target_access: str = ""
    target_path: str = ""
    candidates: int = 0
    reason: str = ""  # why it failed or was poisoned
    dead_code: bool = False  # poisoned, but no path reaches the instruction (pybpf.spec.reach)

    def as_dict(self) -> dict[str, object]:
        """The result as plain data (``pybpf check --json``)."""
        return {"insn": self.insn, "kind": self.kind, "access": self.access, "path": self.path,
                "value": self.value, "ok": self.ok, "poisoned": self.poisoned, "dead_code": self.dead_code,
                "fatal": self.fatal,
                "index": self.index, "section": self.section, "local_type": self.local_type,
                "target_type_id": self.target_type_id, "target_access": self.target_access,
                "target_path": self.target_path, "reason": self.reason}


def _insn_fields(raw: bytes, k: int) -> tuple[int, int, int, int, int]:
    """(code, dst, src, off, imm) of instruction k of ``raw``."""
    code, regs, off, imm = struct.unpack_from("<BBhi", raw, 8 * k)
    return code, regs & 0xF, regs >> 4, off, imm


class Relocator:
    """Resolve an object's CO-RE relocations against one target, as libbpf 1.1 does.

    ``targets`` is the main (vmlinux) BTF, then module BTFs searched only when the main
    one has no candidate (libbpf does so for the running kernel without btf_custom_path).
    One Relocator is one load: candidate lists are cached per local type and pruned
    as relocations resolve, so feed relocations in the object's order.
    """

    def __init__(self, local: Btf, target: Btf, modules: Sequence[Btf] = ()) -> None:
        self.local = local
        self.target = target
        self.modules = list(modules)
        self._cands: dict[int, list[tuple[Btf, int]]] = {}
        self.last_matches: list[Spec] = []  # target specs of every matching candidate of the last resolve()
        self._ess_index: dict[int, _EssentialIndex] = {}

    # candidates ------------------------------------------------------------------------------
    def _index(self, btf: Btf, own_only: bool = False) -> _EssentialIndex:
        key = id(btf)
        idx = self._ess_index.get(key)
        if idx is None:
            idx = essential_index(btf, own_only)
            self._ess_index[key] = idx
        return idx

    def _find_cands(self, local_id: int) -> list[tuple[Btf, int]]:
        lname = _name(self.local, local_id)
        if not lname:
            raise RelocError(errno.EINVAL, f"target candidate search failed for anonymous "
                                      f"[{local_id}] {_kind(self.local, local_id)}")
        ess = essential_name(lname)
        lk = _kind(self.local, local_id)
        out: list[tuple[Btf, int]] = []
        for tid in self._index(self.target).get(ess, ()):
            if _kind_compat(self.target.kind_of(tid), lk):
                out.append((self.target, tid))
        if out:
            return out
        for mod in self.modules:
            for tid in self._index(mod, own_only=True).get(ess, ()):
                if tid >= mod.start_id and _kind_compat(mod.kind_of(tid), lk):
                    out.append((mod, tid))
        return out

    # one relocation ----------------------------------------------------------------------------
    def resolve(self, r: RelocInput) -> RelocResult:
        """The outcome of relocation ``r`` (never raises for a libbpf-level failure)."""
        local_type = f"{_kind(self.local, r.type_id)} {_name(self.local, r.type_id) or '<anon>'}"
        self.last_matches = []
        base = dict(index=r.index, program=r.program, section=r.section, insn=r.insn, kind=r.kind,
                    type_id=r.type_id, access=r.access, local_type=local_type)
        path = r.access
        try:
            local = parse_spec(self.local, r.type_id, r.access, r.kind)
            path = local.c_path()
        except RelocError as e:
            return RelocResult(**base, path=path, value=None, orig=None, ok=False, fatal=True,  # type: ignore[arg-type]
                               reason=f"parsing [{r.type_id}] {local_type} + {r.access} failed: {e.why}")
        base["path"] = path
        try:
            res, targ, ncands = self._calc(r, local)
            return self._patch(r, res, targ, ncands, base, local)
        except RelocError as e:
            return RelocResult(**base, value=None, orig=None, ok=False, fatal=True, reason=e.why)  # type: ignore[arg-type]

    def _calc(self, r: RelocInput, local: Spec) -> tuple[_Res, Spec | None, int]:
        """bpf_core_calc_relo_insn: (result, chosen target spec, candidates that matched)."""
        if r.kind == "local_type_id":
            return _Res(orig_val=r.type_id, new_val=r.type_id, validate=False), None, 0
        cands = self._cands.get(r.type_id)
        if cands is None:
            cands = self._find_cands(r.type_id)
            self._cands[r.type_id] = cands
        if not _name(self.local, r.type_id):
            raise RelocError(errno.EOPNOTSUPP, f"<{r.kind}> relocation doesn't support anonymous types")
        kept: list[tuple[Btf, int]] = []
        best: tuple[_Res, Spec] | None = None
        for btf, cid in cands:
            found, cand = spec_match(local, btf, cid)
            if found < 0:
                raise RelocError(errno.EINVAL, f"error matching candidate [{cid}]")
            if not found:
                continue
            self.last_matches.append(cand)
            cres = _calc_relo(r.kind, r.insn, local, cand)
            if best is None:
                best = (cres, cand)
            elif cand.bit_offset != best[1].bit_offset:
                raise RelocError(errno.EINVAL, f"field offset ambiguity: {cand.bit_offset} != "
                                          f"{best[1].bit_offset} (candidates [{best[1].root_type_id}] "
                                          f"and [{cid}] of {_name(self.local, r.type_id)})")
            elif cres.poison != best[0].poison or cres.new_val != best[0].new_val:
                raise RelocError(errno.EINVAL, f"relocation decision ambiguity: candidates "
                                          f"[{best[1].root_type_id}] and [{cid}] give "
                                          f"{best[0].new_val} and {cres.new_val}")
            kept.append((btf, cid))
        if kept:
            cands[:] = kept  # libbpf prunes its cached candidate list
            assert best is not None
            return best[0], best[1], len(kept)
        return _calc_relo(r.kind, r.insn, local, None), None, 0

    def _patch(self, r: RelocInput, res: _Res, targ: Spec | None, ncands: int,
               base: dict[str, object], local: Spec) -> RelocResult:
        """bpf_core_patch_insn, minus the writing."""
        tinfo: dict[str, object] = {"candidates": ncands}
        if targ is not None:
            tinfo.update(target_type_id=targ.root_type_id, target_access=targ.access,
                         target_path=targ.c_path())
        if res.poison:
            return RelocResult(**base, value=None, orig=res.orig_val, ok=False, poisoned=True,  # type: ignore[arg-type]
                               reason=self._missing(r, local), **tinfo)  # type: ignore[arg-type]
        raw = r.insn_bytes
        if len(raw) < 8:
            raise RelocError(errno.EINVAL, f"insn #{r.insn} is outside the program")
        code, dst, src, off, imm = _insn_fields(raw, 0)
        cls = code & 7
        orig, new = res.orig_val, res.new_val
        if cls in (_ALU, _ALU64):
            if code & 0x08:
                raise RelocError(errno.EINVAL, f"insn #{r.insn} (ALU/ALU64) has a register source")
            if res.validate and (imm & _U64) != orig:
                raise RelocError(errno.EINVAL, f"unexpected insn #{r.insn} (ALU/ALU64) value: got {imm & _U32_MAX}, "
                                          f"exp {orig} -> {new}")
            return RelocResult(**base, value=new, orig=imm & _U64, ok=True, patch="imm", **tinfo)  # type: ignore[arg-type]
        if cls in (_LDX, _ST, _STX):
            if res.validate and (off & _U64) != orig:
                raise RelocError(errno.EINVAL, f"unexpected insn #{r.insn} (LDX/ST/STX) value: got {off & 0xFFFF}, "
                                          f"exp {orig} -> {new}")
            if new > _SHRT_MAX:
                raise RelocError(errno.ERANGE, f"insn #{r.insn} (LDX/ST/STX) value too big: {new}")
            if res.fail_memsz_adjust:
                return RelocResult(**base, value=None, orig=off & _U64, ok=False, poisoned=True,  # type: ignore[arg-type]
                                   reason=f"insn #{r.insn} (LDX/ST/STX) accesses field incorrectly: the field's "
                                          f"size changed ({res.orig_sz} -> {res.new_sz} bytes) and it is not "
                                          f"a pointer or unsigned integer", **tinfo)  # type: ignore[arg-type]
            mem: tuple[int, int] | None = None
            if res.new_sz != res.orig_sz:
                have = _SIZE_BYTES.get(code & 0x18, -1)
                if have != res.orig_sz:
                    raise RelocError(errno.EINVAL, f"insn #{r.insn} (LDX/ST/STX) unexpected mem size: got {have}, "
                                              f"exp {res.orig_sz}")
                if res.new_sz not in _BYTES_SIZE:
                    raise RelocError(errno.EINVAL, f"insn #{r.insn} (LDX/ST/STX) invalid new mem size: {res.new_sz}")
                mem = (res.orig_sz, res.new_sz)
            return RelocResult(**base, value=new, orig=off & _U64, ok=True, patch="off", mem_size=mem,  # type: ignore[arg-type]
                               **tinfo)  # type: ignore[arg-type]
        if cls == _LD:
            if code != 0x18 or src != 0 or off != 0 or len(raw) < 16:
                raise RelocError(errno.EINVAL, f"insn #{r.insn} (LDIMM64) has unexpected form")
            code2, dst2, src2, off2, imm2 = _insn_fields(raw, 1)
            if code2 or dst2 or src2 or off2:
                raise RelocError(errno.EINVAL, f"insn #{r.insn} (LDIMM64) has unexpected form")
            imm64 = (imm & _U32_MAX) | ((imm2 & _U32_MAX) << 32)
            if res.validate and imm64 != orig:
                raise RelocError(errno.EINVAL, f"unexpected insn #{r.insn} (LDIMM64) value: got {imm64}, "
                                          f"exp {orig} -> {new}")
            return RelocResult(**base, value=new, orig=imm64, ok=True, patch="imm64", **tinfo)  # type: ignore[arg-type]
        raise RelocError(errno.EINVAL, f"trying to relocate unrecognized insn #{r.insn}, code:{code:#x}")

    def _missing(self, r: RelocInput, local: Spec) -> str:
        """Name what the target lacks, for a poisoned relocation."""
        lt = self.local.c_name(r.type_id)
        cands = self._cands.get(r.type_id) or []
        if r.kind in ENUMVAL_KINDS:
            what = local.acc[0].name if local.acc else r.access
            if not cands:
                return f"{lt} does not exist on this target"
            return f"enum value {what} of {lt} does not exist on this target"
        if not cands:
            return f"{lt} does not exist on this target"
        # find the first accessor no candidate has
        names = [a.name for a in local.acc if a.name]
        for depth in range(1, len(local.acc) + 1):
            partial = local.copy()
            partial.acc = partial.acc[:depth]
            if not any(spec_match(partial, btf, cid)[0] > 0 for btf, cid in cands):
                a = local.acc[depth - 1]
                owner = self.local.c_name(a.type_id) if a.name else lt
                if a.name:
                    return f"field `{a.name}` of `{owner}` does not exist on this target"
                return f"index [{a.idx}] is out of range on this target ({local.c_path()})"
        return f"{local.c_path()} ({', '.join(n or '' for n in names)}) does not match on this target"

    def resolve_all(self, relos: Iterable[RelocInput]) -> list[RelocResult]:
        """Resolve every relocation of ``relos``, in order."""
        return [self.resolve(r) for r in relos]


class _EssentialIndex:
    """Type ids by essential name: the BTF's own name index, plus its few ``___flavor`` names."""

    def __init__(self, parts: list[Btf]) -> None:
        self._parts = [p._name_index() for p in parts]
        self._flavored: dict[str, list[int]] = {}
        for names in self._parts:
            for name, ids in names.items():
                if "___" in name:
                    ess = essential_name(name)
                    if ess != name:
                        self._flavored.setdefault(ess, []).extend(ids)

    def get(self, ess: str, default: Iterable[int] = ()) -> list[int]:
        ids: list[int] = []
        for names in self._parts:
            ids += names.get(ess, ())
        ids += self._flavored.get(ess, ())
        return sorted(ids) if ids else list(default)


class _PartialIndex:
    """Type ids of only some essential names, found in one pass over a large BTF's raw records
    without decoding its other names (``btf min`` asks for a few hundred of ~100k names)."""

    def __init__(self, ids: dict[str, list[int]]) -> None:
        self._ids = ids

    def get(self, ess: str, default: Iterable[int] = ()) -> list[int]:
        return self._ids.get(ess) or list(default)


def _trie_pattern(words: Iterable[bytes]) -> bytes:
    """A regular expression matching exactly ``words``, as a trie: one character test per
    letter, however many words (``re`` tries the branches of an alternation one by one)."""
    root: dict[int, dict] = {}
    for w in words:
        node = root
        for c in w:
            node = node.setdefault(c, {})
        node[-1] = {}

    def emit(node: dict[int, dict]) -> bytes:
        out = []
        while True:  # a chain of single letters is a literal, not a nest of groups
            branches = [(c, n) for c, n in node.items() if c >= 0]
            if len(branches) == 1 and -1 not in node:
                out.append(re.escape(bytes([branches[0][0]])))
                node = branches[0][1]
                continue
            break
        if branches:
            alts = b"|".join(re.escape(bytes([c])) + emit(n) for c, n in sorted(branches))
            out.append(b"(?:" + alts + b")" + (b"?" if -1 in node else b""))
        return b"".join(out)

    return emit(root)


_TRIE_MAX_NAMES, _TRIE_MAX_LEN = 512, 128  # beyond these, one split of the strings is cheaper


def _wanted_offsets(strs: bytes, wanted: set[bytes]) -> dict[int, bytes]:
    """Offset -> string of every string of ``strs`` that is in ``wanted`` (every copy)."""
    if len(wanted) <= _TRIE_MAX_NAMES and max(map(len, wanted), default=0) <= _TRIE_MAX_LEN:
        if not wanted:
            return {}
        # one pass of C code over the bytes; each match starts after a NUL and ends at one
        pattern = re.compile(b"\0(" + _trie_pattern(wanted) + b")(?=\0)")
        return {m.start() + 1: m.group(1) for m in pattern.finditer(strs)}
    parts = strs.split(b"\0")
    hits = list(itertools.compress(range(len(parts)), map(wanted.__contains__, parts)))
    starts = list(itertools.accumulate(map((1).__add__, map(len, parts)), initial=0))
    return {starts[k]: parts[k] for k in hits}


def seed_index(btf: Btf, names: Iterable[str]) -> bool:
    """Prepare the candidate index of ``btf`` for these essential names only (relocations then
    ask for no other): False, and nothing done, when a name offset of ``btf`` does not start a
    string (the full index is then the exact one). A vmlinux has ~100k names: each pass over
    them is C code (``map``, ``compress``, a regular expression), none a loop in Python."""
    if btf.base is not None:
        return False
    strs = btf._strs
    wanted = {n.encode() for n in names if n}
    name_offs = btf._name_offs
    if name_offs and max(name_offs) >= len(strs):
        return False  # a name past the strings: the full index names the fault (ObjectFormatError)
    if bytes(map(strs.__getitem__, map((-1).__add__, name_offs))).strip(b"\0"):
        return False  # a name inside another string (offset 0 reads the final NUL: "" is fine)
    offs: dict[int, str] = {at: raw.decode("utf-8", "replace")
                            for at, raw in _wanted_offsets(strs, {w for w in wanted if b"___" not in w}).items()}
    at = strs.find(b"___")
    while at >= 0:  # flavored names (a few dozen in a vmlinux): their essential name may be wanted
        first = strs.rfind(b"\0", 0, at) + 1
        last = strs.find(b"\0", at)
        ess = essential_name(strs[first:last].decode("utf-8", "replace"))
        if ess.encode() in wanted:
            offs[first] = ess
        at = strs.find(b"___", last) if last >= 0 else -1
    found: dict[str, list[int]] = {}
    start = btf.start_id
    for i in itertools.compress(range(len(name_offs)), map(offs.__contains__, name_offs)):
        found.setdefault(offs[name_offs[i]], []).append(start + i)
    idx = _PartialIndex(found)
    if len(_INDEX_CACHE) > 16:
        _INDEX_CACHE.clear()
    _INDEX_CACHE[(id(btf), False)] = (btf, idx)  # type: ignore[assignment]
    return True


def unseed_index(btf: Btf) -> None:
    """Forget a partial index made by :func:`seed_index` (later lookups may ask any name)."""
    hit = _INDEX_CACHE.get((id(btf), False))
    if hit is not None and isinstance(hit[1], _PartialIndex):
        del _INDEX_CACHE[(id(btf), False)]


_INDEX_CACHE: dict[tuple[int, bool], tuple[Btf, _EssentialIndex]] = {}


def essential_index(btf: Btf, own_only: bool = False) -> _EssentialIndex:
    """Essential name -> type ids (ascending) of ``btf`` (and its base unless ``own_only``),
    cached per Btf object."""
    hit = _INDEX_CACHE.get((id(btf), own_only))
    if hit is not None and hit[0] is btf:
        return hit[1]
    chain = []
    b: Btf | None = btf
    while b is not None:
        chain.append(b)
        b = None if own_only else b.base
    out = _EssentialIndex(list(reversed(chain)))
    if len(_INDEX_CACHE) > 16:
        _INDEX_CACHE.clear()
    _INDEX_CACHE[(id(btf), own_only)] = (btf, out)
    return out
