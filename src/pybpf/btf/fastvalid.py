"""A vectorised proof that a large BTF keeps the kernel's rules (the fast path of validation).

:func:`pybpf.btf.validate.validate_btf` checks a blob type by type in Python: about 2.5 s for
a whole vmlinux BTF. This module checks the same rules over numpy arrays of the raw records
(one array per field, members/values/parameters flattened), in a few hundred milliseconds.
It only ever answers "valid" or "not sure": on any rule it sees broken, and on anything it
does not model (split BTF, a header whose length is not a multiple of 4, types whose
resolution does not settle), it returns False and the per-type validator runs, which
finds and names the problem. So a blob this module accepts is one the per-type validator
accepts (``tests/test_check.py`` checks that on mutated BTFs).

The graph rule (no cycle except through a pointer to a struct/union, no chain deeper than
the kernel's 32) is proved with longest paths: if no path of the resolution graph is longer
than 32 edges, no depth-first walk in any order goes deeper. Pure: numpy, no libbpf.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pybpf.btf.model import (
    _ARRAY, _CONST, _DATASEC, _DECL_TAG, _ENUM, _ENUM64, _FLOAT, _FUNC, _FUNC_PROTO, _FWD, _INT, _PTR,
    _RESTRICT, _STRUCT, _TYPE_TAG, _TYPEDEF, _UNION, _VAR, _VOLATILE,
)

if TYPE_CHECKING:
    from pybpf.btf.model import TypeGraph

__all__ = ["proves_valid", "MIN_TYPES"]

MIN_TYPES = 64  # blobs this large go through this proof first (smaller ones: per type at once)
_MAX_RESOLVE_DEPTH = 32
_U32_MAX = 0xFFFF_FFFF
_MODS = (_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG)
_SIZED = (_INT, _PTR, _ARRAY, _STRUCT, _UNION, _ENUM, _ENUM64, _FLOAT)
_NOT_A_VALUE = (_VAR, _DATASEC, _FUNC, _DECL_TAG)
_NO_VLEN = (_INT, _PTR, _ARRAY, _FWD, _TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _VAR, _FLOAT, _DECL_TAG, _TYPE_TAG)
_KFLAG_OK = (_STRUCT, _UNION, _ENUM, _ENUM64, _FWD, _DECL_TAG, _TYPE_TAG)
_NAME_REQUIRED = (_TYPEDEF, _FWD, _FUNC, _VAR, _DATASEC, _DECL_TAG, _TYPE_TAG)
_NAME_FORBIDDEN = (_PTR, _ARRAY, _FUNC_PROTO, _CONST, _VOLATILE, _RESTRICT)


class _NotSure(Exception):
    """Something this module does not prove: the per-type validator decides."""


def proves_valid(btf: TypeGraph) -> bool:
    """True only if every type ``btf`` defines keeps the rules of :func:`validate_btf`."""
    if getattr(btf, "base", None) is not None:
        return False
    try:
        return _check(btf)
    except _NotSure:
        return False


def _member(np: Any, values: Any, allowed: tuple[int, ...]) -> Any:
    """``values`` (any size) that are one of ``allowed`` (small numbers)."""
    table = np.zeros(max(allowed) + 2, dtype=bool)
    table[list(allowed)] = True
    return table[np.minimum(values, len(table) - 1)]


def _expand(np: Any, u32: Any, w: Any, vlen: Any, width: int, field: int) -> tuple[Any, Any]:
    """(owner index, word) of field ``field`` of every item of variable-length records."""
    total = int(vlen.sum())
    owner = np.repeat(np.arange(len(w)), vlen)
    if not total:
        return owner, np.zeros(0, dtype=np.int64)
    first = np.repeat(np.cumsum(vlen) - vlen, vlen)
    j = np.arange(total) - first
    return owner, np.repeat(w + 3, vlen) + width * j + field


def _check(btf: Any) -> bool:  # a parsed Btf: its raw records are read
    import numpy as np

    data = btf._data
    offs = np.asarray(btf._offs, dtype=np.int64)
    n = len(offs) + 1  # ids 0..n-1
    if not len(offs):
        raise _NotSure
    u32 = np.frombuffer(data, dtype="<u4", count=len(data) // 4).astype(np.int64)
    w = offs // 4
    if (offs % 4).any():
        raise _NotSure
    name_off, info, st = u32[w], u32[w + 1], u32[w + 2]
    kind = (info >> 24) & 0x1F
    vlen = info & 0xFFFF
    kflag = info >> 31
    # per id (index 0 = void)
    K = np.concatenate(([0], kind))
    ST = np.concatenate(([0], st))
    VL = np.concatenate(([0], vlen))

    strs = np.frombuffer(btf._strs, dtype=np.uint8)
    nstr = len(strs)
    nul = np.flatnonzero(strs == 0)
    bad_byte = ((strs < 0x20) | (strs > 0x7E)) & (strs != 0)
    cum = np.concatenate(([0], np.cumsum(bad_byte, dtype=np.int32)))

    def names_ok(offsets: Any) -> tuple[Any, Any]:
        """(in range and printable, non-empty) per string offset."""
        if (offsets >= nstr).any():
            raise _NotSure
        end = nul[np.searchsorted(nul, offsets)]
        return cum[end] - cum[offsets] == 0, end > offsets

    def isin(k: Any, kinds: tuple[int, ...]) -> Any:
        table = np.zeros(32, dtype=bool)
        table[list(kinds)] = True
        return table[k]

    def refs_ok(r: Any) -> None:
        if (r >= n).any():
            raise _NotSure

    def fail_if(cond: Any) -> None:
        if np.any(cond):
            raise _NotSure

    # names of the types
    printable, nonempty = names_ok(name_off)
    fail_if(~printable)
    fail_if(isin(kind, _NAME_REQUIRED) & ~nonempty)
    fail_if(isin(kind, _NAME_FORBIDDEN) & nonempty)
    fail_if(isin(kind, _NO_VLEN) & (vlen != 0))
    fail_if((kflag != 0) & ~isin(kind, _KFLAG_OK))

    sel = {k: np.flatnonzero(kind == k) for k in range(20)}
    # int: decode rule and meta rule
    i = sel[_INT]
    enc = u32[w[i] + 3]
    bits, bit_off, size = enc & 0xFF, (enc >> 16) & 0xFF, st[i]
    fail_if(~_member(np, size, (1, 2, 4, 8, 16)) | (bits > size * 8) | (bits + bit_off > size * 8))
    fail_if((bits == 0) | (bits > 128))
    INT_BITS = np.zeros(n, dtype=np.int64)
    INT_OFF = np.zeros(n, dtype=np.int64)
    INT_BITS[i + 1], INT_OFF[i + 1] = bits, bit_off
    for k in (_ENUM, _ENUM64):
        fail_if(~_member(np, st[sel[k]], (1, 2, 4, 8)))
    fail_if(~_member(np, st[sel[_FLOAT]], (2, 4, 8, 12, 16)))
    fail_if(vlen[sel[_FUNC]] > 2)
    fail_if(u32[w[sel[_VAR]] + 3] > 2)
    comp = u32[w[sel[_DECL_TAG]] + 3]
    comp = np.where(comp >= 1 << 31, comp - (1 << 32), comp)
    fail_if(comp < -1)

    # references stored in the header word
    hdr_ref = np.flatnonzero(isin(kind, (_PTR, _FUNC_PROTO, _VAR, _FUNC, _DECL_TAG) + _MODS))
    refs_ok(st[hdr_ref])
    TYPE = np.zeros(n, dtype=np.int64)
    TYPE[hdr_ref + 1] = st[hdr_ref]
    a = sel[_ARRAY]
    a_elem, a_index, a_nelems = u32[w[a] + 3], u32[w[a] + 4], u32[w[a] + 5]
    refs_ok(a_elem)
    refs_ok(a_index)
    TYPE[a + 1] = a_elem

    # members, enum values, params, datasec entries
    comp_i = np.flatnonzero(isin(kind, (_STRUCT, _UNION)))
    m_owner, m_w = _expand(np, u32, w[comp_i], vlen[comp_i], 3, 0)
    m_name, m_type, m_off = u32[m_w], u32[m_w + 1], u32[m_w + 2]
    refs_ok(m_type)
    for k, rec in ((_ENUM, 2), (_ENUM64, 3)):
        _o, vw = _expand(np, u32, w[sel[k]], vlen[sel[k]], rec, 0)
        ok, _ne = names_ok(u32[vw])
        fail_if(~ok)
    fp = sel[_FUNC_PROTO]
    p_owner, p_w = _expand(np, u32, w[fp], vlen[fp], 2, 0)
    p_name, p_type = u32[p_w], u32[p_w + 1]
    refs_ok(p_type)
    ok, p_named = names_ok(p_name)
    fail_if(~ok)
    ok, _ne = names_ok(m_name)
    fail_if(~ok)
    ds = sel[_DATASEC]
    d_owner, d_w = _expand(np, u32, w[ds], vlen[ds], 3, 0)
    d_type, d_off, d_size = u32[d_w], u32[d_w + 1], u32[d_w + 2]
    refs_ok(d_type)
    ds_size = st[ds].copy()
    fixes = getattr(btf, "_datasec_fix", None) or {}
    if fixes:  # an object's DATASECs as libbpf fixes them up: sizes and offsets from the ELF
        d_off = d_off.copy()
        for j, tid in enumerate((ds + 1).tolist()):
            fix = fixes.get(tid)
            if fix is None:
                continue
            ds_size[j] = fix[0]
            for e in np.flatnonzero(d_owner == j).tolist():
                name = btf._name_of(int(d_type[e]))
                if name in fix[1]:
                    d_off[e] = fix[1][name]

    # strip modifiers (R) and sizes (S), settled by iteration
    is_mod = np.zeros(n, dtype=bool)
    is_mod[1:] = isin(kind, _MODS)
    R = np.arange(n)
    mod_ids = np.flatnonzero(is_mod)
    for _ in range(_MAX_RESOLVE_DEPTH + 2):
        nxt = R.copy()
        nxt[mod_ids] = R[TYPE[mod_ids]]
        if np.array_equal(nxt, R):
            break
        R = nxt
    else:
        raise _NotSure
    S = np.zeros(n, dtype=np.int64)
    base_sized = isin(K, (_INT, _STRUCT, _UNION, _ENUM, _ENUM64, _FLOAT, _DATASEC))
    S[base_sized] = ST[base_sized]
    S[K == _PTR] = 8
    S[0] = 0
    arr_ids = a + 1
    for _ in range(2 * _MAX_RESOLVE_DEPTH + 4):
        nxt = S.copy()
        nxt[mod_ids] = S[TYPE[mod_ids]]
        nxt[arr_ids] = a_nelems * S[a_elem]
        nxt = np.minimum(nxt, 1 << 40)
        if np.array_equal(nxt, S):
            break
        S = nxt
    else:
        raise _NotSure
    fail_if(S > _U32_MAX)

    KR = K[R]  # kind after stripping modifiers, per id
    # pointers and modifiers refer to values
    pm = np.flatnonzero(isin(kind, (_PTR,) + _MODS))
    fail_if(isin(K[st[pm]], _NOT_A_VALUE))
    # arrays: an int index, a sized element
    fail_if((R[a_index] == 0) | (KR[a_index] != _INT))
    fail_if(~isin(KR[a_elem], _SIZED))
    # members
    mt = R[m_type]
    fail_if(~isin(K[mt], _SIZED))
    msize = S[mt]
    owner_k = kind[comp_i][m_owner]
    owner_kflag = kflag[comp_i][m_owner]
    bitfield = np.where(owner_kflag != 0, m_off >> 24, 0)
    bit_off = np.where(owner_kflag != 0, m_off & 0xFFFFFF, m_off)
    fail_if((owner_k == _UNION) & (bit_off != 0))
    if len(bit_off) > 1:
        same = m_owner[1:] == m_owner[:-1]
        fail_if(same & (bit_off[1:] < bit_off[:-1]))
    bk = K[mt]
    is_bf = bitfield != 0
    width = np.where(bk == _INT, INT_BITS[mt], np.where(isin(bk, (_ENUM, _ENUM64)), S[mt] * 8, -1))
    fail_if(is_bf & (width < 0))
    fail_if(is_bf & (bitfield > width))
    fail_if(is_bf & (bit_off % 8 + bitfield > 128))
    old_int = ~is_bf & (bk == _INT) & ((INT_BITS[mt] != msize * 8) | (INT_OFF[mt] != 0))
    plain = ~is_bf & ~old_int
    fail_if(plain & (bit_off % 8 != 0))
    end = np.where(is_bf, bit_off + bitfield,
                   np.where(old_int, bit_off + INT_OFF[mt] + INT_BITS[mt], bit_off + msize * 8))
    fail_if(end > st[comp_i][m_owner] * 8)
    # functions, prototypes, variables
    f = sel[_FUNC]
    fail_if(K[st[f]] != _FUNC_PROTO)
    fail_if(isin(K[st[fp]], _NOT_A_VALUE))
    last = np.ones(len(p_owner), dtype=bool)
    if len(p_owner) > 1:
        last[:-1] = p_owner[1:] != p_owner[:-1]
    fail_if((p_type == 0) & (~last | p_named))
    fail_if((p_type != 0) & isin(K[p_type], _NOT_A_VALUE))
    v = sel[_VAR]
    fail_if(~isin(KR[st[v]], _SIZED))
    # datasecs
    dk = K[d_type]
    fail_if(~isin(dk, (_VAR, _FUNC)))
    dsize = ds_size[d_owner]
    fail_if((dsize != 0) & ((d_off > dsize) | (d_size > dsize - d_off)))
    var_entry = dk == _VAR
    fail_if(var_entry & (d_size != 0) & (d_size < S[R[TYPE[d_type]]]))
    # decl tags
    dt = sel[_DECL_TAG]
    tgt = st[dt]
    tk = K[tgt]
    fail_if((tgt == 0) | isin(tk, (_DATASEC, _DECL_TAG)))
    has_comp = comp >= 0
    count = np.where(isin(tk, (_STRUCT, _UNION)), VL[tgt], np.where(tk == _FUNC, VL[TYPE[tgt]], -1))
    fail_if(has_comp & ((count < 0) | (comp >= count)))

    _graph(np, n, K, TYPE, a + 1, a_elem, comp_i + 1, m_owner, m_type, fp + 1, p_owner, p_type,
           ds + 1, d_owner, d_type)
    return True


def _graph(np: Any, n: int, K: Any, TYPE: Any, arr: Any, arr_elem: Any, comp: Any, m_owner: Any, m_type: Any,
           protos: Any, p_owner: Any, p_type: Any, secs: Any, d_owner: Any, d_type: Any) -> None:
    """No resolution path longer than the kernel's depth (and so no cycle): longest paths settle."""
    src: list[Any] = []
    dst: list[Any] = []

    def edge(s: Any, d: Any) -> None:
        keep = d != 0
        src.append(s[keep])
        dst.append(d[keep])

    node = lambda t, via: 2 * t + via  # noqa: E731
    ptr = np.flatnonzero(K == _PTR)
    for via in (0, 1):
        edge(node(ptr, via), node(TYPE[ptr], 1))
    mods = np.flatnonzero(_member(np, K, _MODS))
    for via in (0, 1):
        edge(node(mods, via), node(TYPE[mods], via))
    for via in (0, 1):
        edge(node(arr, via), node(arr_elem, 0))
        edge(node(comp[m_owner], 0) if via == 0 else np.zeros(0, dtype=np.int64),
             node(m_type, 0) if via == 0 else np.zeros(0, dtype=np.int64))
        edge(node(protos, via), node(TYPE[protos], 1))
        edge(node(protos[p_owner], via), node(p_type, 1))
        vt = np.flatnonzero(_member(np, K, (_VAR, _DECL_TAG)))
        edge(node(vt, via), node(TYPE[vt], 0))
        fn = np.flatnonzero(K == _FUNC)
        edge(node(fn, via), node(TYPE[fn], 1))
        edge(node(secs[d_owner], via), node(d_type, 0))
    s = np.concatenate(src)
    d = np.concatenate(dst)
    # a zero target (void) was dropped; node(0, 1) is void through a pointer: drop it too
    keep = (d >> 1) != 0
    s, d = s[keep], d[keep]
    if not len(s):
        return
    order = np.argsort(s, kind="stable")  # edges grouped by source: maxima by segment
    s, d = s[order], d[order]
    depth = np.zeros(2 * n, dtype=np.int64)
    changed = np.ones(2 * n, dtype=bool)
    for _ in range(_MAX_RESOLVE_DEPTH + 1):
        live = changed[d]  # only edges into a node whose depth just grew can raise their source
        if not live.any():
            return
        ls, vals = s[live], depth[d[live]] + 1
        starts = np.flatnonzero(np.concatenate(([True], ls[1:] != ls[:-1])))
        heads = ls[starts]
        best = np.maximum(depth[heads], np.maximum.reduceat(vals, starts))
        changed = np.zeros(2 * n, dtype=bool)
        changed[heads] = best != depth[heads]
        depth[heads] = best
    if changed.any():
        raise _NotSure
