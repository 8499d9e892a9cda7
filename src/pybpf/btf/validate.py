"""Whole-blob BTF validation, to the rules the kernel's BTF verifier applies.

libbpf 1.1 trusts the BTF it parses: a bitfield on an array member divides by
zero in its CO-RE relocation, a pointer<->array cycle recurses its C dumper off
the stack, a struct member of kind VAR divides by zero in ``btf__align_of``.
The kernel rejects all of these when BTF is loaded into it (``kernel/bpf/btf.c``:
``btf_check_all_metas`` and ``btf_check_all_types``), so the kernel's rules are
the ones a well-formed blob already keeps: checking them before libbpf sees a
blob costs real inputs nothing. This module checks, for every type the blob
defines:

* the meta rules: ``vlen``/``kind_flag`` only where the kind uses them, names
  where required (typedef, fwd, func, var, datasec, tags) and absent where C has
  none (pointers, arrays, qualifiers, prototypes), int/enum/float sizes and
  encodings, func/var linkage, decl_tag component indices;
* references: what each kind may refer to (a struct member, array element or
  variable must be a sized type reached through typedefs/qualifiers only,
  never a VAR/DATASEC/FUNC/FWD/void; a func's type is a FUNC_PROTO; a DATASEC
  lists VARs or extern FUNCs inside its size);
* struct/union layout: bitfields only on int/enum members and no wider than
  them (at most 128 bits with their offset), offsets in order (0 in a union),
  byte-aligned non-bitfield members, every member inside the struct's size,
  sizes that fit the kernel's u32;
* the type graph: no cycle that does not pass through a pointer to a
  struct/union, and no resolution chain deeper than the kernel's 32.

Every failure is :class:`pybpf.errors.ObjectFormatError` naming the type.
Pure: stdlib only, no libbpf.
"""

from __future__ import annotations

import sys

from pybpf.btf.model import BtfType, TypeGraph
from pybpf.errors import NotSupportedError, ObjectFormatError


Btf = TypeGraph  # the annotations below name what they get: a parsed BTF

__all__ = ["validate_btf", "padding_bits", "MAX_RESOLVE_DEPTH"]

MAX_RESOLVE_DEPTH = 32  # the kernel's MAX_RESOLVE_DEPTH (kernel/bpf/btf.c)
_U32_MAX = 0xFFFF_FFFF

_NO_VLEN = frozenset({"int", "ptr", "array", "fwd", "typedef", "volatile", "const", "restrict",
                      "var", "float", "decl_tag", "type_tag"})
# kind_flag means something only for these (bitfield offsets, enum signedness, fwd union,
# decl_tag/type_tag attributes).
_KFLAG_OK = frozenset({"struct", "union", "enum", "enum64", "fwd", "decl_tag", "type_tag"})
_NAME_REQUIRED = frozenset({"typedef", "fwd", "func", "var", "datasec", "decl_tag", "type_tag"})
_NAME_FORBIDDEN = frozenset({"ptr", "array", "func_proto", "const", "volatile", "restrict"})
_MODIFIERS = frozenset({"typedef", "const", "volatile", "restrict", "type_tag"})
_SIZED = frozenset({"int", "ptr", "array", "struct", "union", "enum", "enum64", "float"})
# May never be the target of a pointer, modifier, member, element, parameter or variable.
_NOT_A_VALUE = frozenset({"var", "datasec", "func", "decl_tag"})


def _bad(btf: Btf, tid: int, t: BtfType | None, msg: str) -> ObjectFormatError:
    where = f"{btf.name}: " if btf.name else ""
    what = f"{t.kind} {t.name + ' ' if t is not None and t.name else ''}" if t is not None else ""
    return ObjectFormatError(f"{where}bad BTF: {what}[{tid}]: {msg}", path=btf.name or None)


def _strip_modifiers(btf: Btf, tid: int) -> int:
    """Skip typedefs and qualifiers (not VARs) down to the type they name."""
    for _ in range(MAX_RESOLVE_DEPTH + 1):
        if btf.kind_of(tid) not in _MODIFIERS:
            return tid
        tid = btf[tid].type or 0
    return tid  # too deep: the graph check reports it


# Without numpy imported yet, its import (~0.1 s) costs more than checking this many types one
# by one (~18 us each): an object's BTF (hundreds of types) is checked per type, and a tool's
# start does not wait for numpy; a vmlinux (100k+ types) still gets the vectorised proof.
_MIN_TYPES_COLD = 8192


def _numpy_imported() -> bool:
    """numpy's namespace is there (a stand-in that imports it on first use does not count)."""
    module = sys.modules.get("numpy")
    return module is not None and "ndarray" in vars(module)


def validate_btf(btf: Btf, *, fast: bool = True) -> None:
    """Raise ObjectFormatError unless every type ``btf`` defines keeps the kernel's rules.

    A large blob (a vmlinux) is first given to the vectorised proof of
    :mod:`pybpf.btf.fastvalid` (unless ``fast`` is False: a small blob, no numpy wanted); when
    that cannot prove it valid, every type is checked here."""
    start, end = btf.start_id, len(btf)
    if fast and end - start >= (64 if _numpy_imported() else _MIN_TYPES_COLD):
        from pybpf.btf import fastvalid  # numpy loads inside
        if end - start >= fastvalid.MIN_TYPES and fastvalid.proves_valid(btf):
            return
    for tid in range(start, end):
        btf[tid]  # decodes: string offsets and type ids in range
    for tid in range(start, end):
        _check_meta(btf, tid, btf[tid])
    _check_graph(btf)
    sizes: dict[int, int] = {}
    for tid in range(start, end):
        _check_refs(btf, tid, btf[tid], sizes)


def _check_meta(btf: Btf, tid: int, t: BtfType) -> None:
    k = t.kind
    for name in _names(t):
        if not (name.isascii() and name.isprintable()):
            raise _bad(btf, tid, t, f"name {name!r} is not printable ASCII (the kernel takes C identifiers, "
                                    f"section names and tags only)")
    if k in _NO_VLEN and t.vlen:
        raise _bad(btf, tid, t, f"vlen {t.vlen} on a kind that has no members")
    if t.kflag and k not in _KFLAG_OK:
        raise _bad(btf, tid, t, "kind_flag set on a kind that does not use it")
    if k in _NAME_REQUIRED and not t.name:
        raise _bad(btf, tid, t, "has no name")
    if k in _NAME_FORBIDDEN and t.name:
        raise _bad(btf, tid, t, f"has a name ({t.name!r}) although C gives this kind none")
    if k == "int":
        if t.bits == 0 or t.bits > 128:
            raise _bad(btf, tid, t, f"{t.bits} bits")
    elif k in ("enum", "enum64"):
        if t.size not in (1, 2, 4, 8):
            raise _bad(btf, tid, t, f"size {t.size} (must be 1, 2, 4 or 8)")
    elif k == "float":
        if t.size not in (2, 4, 8, 12, 16):
            raise _bad(btf, tid, t, f"size {t.size} (must be 2, 4, 8, 12 or 16)")
    elif k == "func":
        if t.vlen > 2:
            raise _bad(btf, tid, t, f"linkage {t.vlen} (must be static, global or extern)")
    elif k == "var":
        if t.linkage not in ("static", "global", "extern"):
            raise _bad(btf, tid, t, f"linkage {t.linkage} (must be static, global or extern)")
    elif k == "decl_tag":
        if t.component_idx < -1:
            raise _bad(btf, tid, t, f"component index {t.component_idx}")


def _names(t: BtfType) -> list[str]:
    return ([t.name] + [m[0] for m in t.members] + [v[0] for v in t.values]
            + [p[0] for p in t.params])


def _sized(btf: Btf, tid: int, t: BtfType, ref: int, what: str, sizes: dict[int, int]) -> int:
    """The size of ``ref``, which ``t`` lays out by value; raise unless it is a complete type."""
    target = _strip_modifiers(btf, ref)
    kind = btf.kind_of(target)
    if kind not in _SIZED:
        raise _bad(btf, tid, t, f"{what} has type {kind} [{target}], which has no size")
    return _size(btf, target, sizes)


def _size(btf: Btf, tid: int, sizes: dict[int, int]) -> int:
    """Byte size of a sized type (the graph check already ruled out cycles and depth)."""
    s = sizes.get(tid)
    if s is not None:
        return s
    chain = []
    cur = tid
    while True:
        kind = btf.kind_of(cur)
        if kind in _MODIFIERS:
            chain.append((cur, 1))
            cur = btf[cur].type or 0
        elif kind == "array":
            t = btf[cur]
            chain.append((cur, t.nelems))
            cur = t.type or 0
        else:
            break
        if cur in sizes:
            break
    if cur in sizes:
        s = sizes[cur]
    elif btf.kind_of(cur) == "ptr":
        s = 8
    else:
        s = btf[cur].size or 0
    sizes[cur] = s
    for link, mult in reversed(chain):
        s *= mult
        if s > _U32_MAX:
            raise _bad(btf, link, btf[link], f"size {s} does not fit in 32 bits")
        sizes[link] = s
    return sizes[tid]


def _check_refs(btf: Btf, tid: int, t: BtfType, sizes: dict[int, int]) -> None:
    k = t.kind
    if k in ("ptr",) or k in _MODIFIERS:
        target = t.type or 0
        if btf.kind_of(target) in _NOT_A_VALUE:
            raise _bad(btf, tid, t, f"refers to {btf.kind_of(target)} [{target}]")
    elif k == "array":
        if _strip_modifiers(btf, t.index_type) == 0 or btf.kind_of(_strip_modifiers(btf, t.index_type)) != "int":
            raise _bad(btf, tid, t, f"index type [{t.index_type}] is not an int")
        _sized(btf, tid, t, t.type or 0, "its element", sizes)
        _size(btf, tid, sizes)  # nelems x element size fits in 32 bits
    elif k in ("struct", "union"):
        _check_members(btf, tid, t, sizes)
    elif k == "func":
        if btf.kind_of(t.type or 0) != "func_proto":
            raise _bad(btf, tid, t, f"type [{t.type}] is a {btf.kind_of(t.type or 0)}, not a func_proto")
    elif k == "func_proto":
        if btf.kind_of(t.type or 0) in _NOT_A_VALUE:
            raise _bad(btf, tid, t, f"returns {btf.kind_of(t.type or 0)} [{t.type}]")
        for i, (pname, ptype) in enumerate(t.params):
            if ptype == 0:
                if i != len(t.params) - 1 or pname:
                    raise _bad(btf, tid, t, f"parameter {i} is void (only a last, unnamed one may be: ...)")
            elif btf.kind_of(ptype) in _NOT_A_VALUE:
                raise _bad(btf, tid, t, f"parameter {i} has type {btf.kind_of(ptype)} [{ptype}]")
    elif k == "var":
        _sized(btf, tid, t, t.type or 0, "the variable", sizes)
    elif k == "datasec":
        for i, (vt, off, size) in enumerate(t.vars):
            vk = btf.kind_of(vt)
            if vk not in ("var", "func"):
                raise _bad(btf, tid, t, f"entry {i} is a {vk} [{vt}], not a var")
            if t.size and (off > t.size or size > t.size - off):
                raise _bad(btf, tid, t, f"entry {i} ({btf[vt].name}, {off}+{size}) exceeds its size {t.size}")
            if vk == "var" and size and size < _size(btf, _strip_modifiers(btf, btf[vt].type or 0), sizes):
                raise _bad(btf, tid, t, f"entry {i} ({btf[vt].name}) is smaller than its type")
    elif k == "decl_tag":
        target = t.type or 0
        tk = btf.kind_of(target)
        if target == 0 or tk in ("datasec", "decl_tag"):
            raise _bad(btf, tid, t, f"tags {tk} [{target}]")
        if t.component_idx >= 0:
            tt = btf[target]
            count = (len(tt.members) if tk in ("struct", "union")
                     else len(btf[tt.type or 0].params) if tk == "func" else -1)
            if count < 0:
                raise _bad(btf, tid, t, f"component index {t.component_idx} on a {tk}")
            if t.component_idx >= count:
                raise _bad(btf, tid, t, f"component index {t.component_idx} out of range ({count})")


def _check_members(btf: Btf, tid: int, t: BtfType, sizes: dict[int, int]) -> None:
    struct_bits = (t.size or 0) * 8
    is_union = t.kind == "union"
    last = 0
    for i, (mname, mtype, bit_off, bitfield) in enumerate(t.members):
        what = f"member {mname or i!r}"
        msize = _sized(btf, tid, t, mtype, what, sizes)
        if is_union and bit_off:
            raise _bad(btf, tid, t, f"{what} of a union at bit offset {bit_off}")
        if bit_off < last:
            raise _bad(btf, tid, t, f"{what} at bit offset {bit_off} comes before the previous member")
        last = bit_off
        base = btf[_strip_modifiers(btf, mtype)]
        if bitfield:
            if base.kind == "int":
                width = base.bits
            elif base.kind in ("enum", "enum64"):
                width = (base.size or 0) * 8
            else:
                raise _bad(btf, tid, t, f"{what} is a bitfield of {bitfield} bits on a {base.kind}: "
                                        f"only int and enum members can be bitfields")
            if bitfield > width:
                raise _bad(btf, tid, t, f"{what} is a bitfield of {bitfield} bits on a {width}-bit type")
            if bit_off % 8 + bitfield > 128:
                raise _bad(btf, tid, t, f"{what}: a bitfield spans more than 128 bits")
            end = bit_off + bitfield
        elif base.kind == "int" and (base.bits != msize * 8 or base.bit_offset):
            end = bit_off + base.bit_offset + base.bits  # an old-style bitfield int
        else:
            if bit_off % 8:
                raise _bad(btf, tid, t, f"{what} at bit offset {bit_off} is not byte-aligned")
            end = bit_off + msize * 8
        if end > struct_bits:
            raise _bad(btf, tid, t, f"{what} (bits {bit_off}..{end}) exceeds the {t.size}-byte {t.kind}")


def _successors(btf: Btf, tid: int, via_ptr: bool) -> list[tuple[int, bool]]:
    """Edges of the resolution graph: what resolving ``tid`` needs resolved first.
    Reached through a pointer (``via_ptr``), a struct/union needs nothing: that is
    where C breaks a cycle."""
    k = btf.kind_of(tid)
    if k in ("struct", "union"):
        return [] if via_ptr else [(m[1], False) for m in btf[tid].members]
    t = btf[tid]
    if k == "ptr":
        return [(t.type or 0, True)]
    if k in _MODIFIERS:
        return [(t.type or 0, via_ptr)]
    if k == "array":
        return [(t.type or 0, False)]
    if k == "func_proto":  # a prototype's types need not be complete
        return [(t.type or 0, True)] + [(p, True) for _n, p in t.params]
    if k in ("var", "decl_tag"):
        return [(t.type or 0, False)]
    if k == "func":
        return [(t.type or 0, True)]
    if k == "datasec":
        return [(v, False) for v, _o, _s in t.vars]
    return []


def _check_graph(btf: Btf) -> None:
    """No cycle except through a pointer to a struct/union; resolving types in id order (as the
    kernel does), no chain of unresolved types deeper than MAX_RESOLVE_DEPTH."""
    start = btf.start_id
    done: set[tuple[int, bool]] = set()  # resolved, as the kernel does, in id order
    on_stack: set[tuple[int, bool]] = set()
    for root in range(start, len(btf)):
        node = (root, False)
        if node in done:
            continue
        stack = [(node, iter(_successors(btf, root, False)))]
        on_stack.add(node)
        while stack:
            cur, it = stack[-1]
            for nxt in it:
                if nxt[0] < start or nxt[0] == 0:  # void, or a base type: already checked
                    continue
                if nxt in on_stack:
                    raise _bad(btf, nxt[0], btf[nxt[0]], "is part of a type cycle that no pointer to a "
                                                         "struct or union breaks")
                if nxt not in done:
                    stack.append((nxt, iter(_successors(btf, nxt[0], nxt[1]))))
                    on_stack.add(nxt)
                    if len(stack) > MAX_RESOLVE_DEPTH + 1:
                        raise _bad(btf, root, btf[root], f"resolving it needs a chain of more than "
                                                         f"{MAX_RESOLVE_DEPTH} types")
                    break
            else:
                stack.pop()
                on_stack.discard(cur)
                done.add(cur)


def padding_bits(btf: Btf) -> int:
    """Bits of explicit padding a C rendering of every struct this blob defines would need:
    the gaps between members and before each struct's end. libbpf's C dumper writes one
    ``long: 64;`` line per 64 bits of it, so a valid but absurd layout (a member at a
    256 MiB offset) would cost it minutes and gigabytes."""
    total = 0
    for tid in range(btf.start_id, len(btf)):
        if btf.kind_of(tid) != "struct":
            continue
        t = btf[tid]
        end = 0
        for _name, mtype, bit_off, bitfield in t.members:
            total += max(0, bit_off - end)
            try:
                bits = bitfield or btf.sizeof(mtype) * 8
            except (ObjectFormatError, NotSupportedError):  # unsized: validate() reports it
                bits = 0
            end = max(end, bit_off + bits)
        total += max(0, (t.size or 0) * 8 - end)
    return total
