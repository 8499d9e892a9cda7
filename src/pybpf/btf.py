"""Pure-Python BTF: parsing, the type graph, C type names and numpy dtypes.

This module owns everything about BPF Type Format blobs (the ``.BTF`` section
of an object, ``/sys/kernel/btf/vmlinux``, split module BTF) and never touches
the kernel's bpf() syscall or libbpf.  Parsing is lazy: construction only
walks the type section once to record where each type starts (fast enough for
the ~150k types of vmlinux); a type is decoded into a :class:`BtfType` the
first time it is asked for.

Every malformed input raises :class:`pybpf.errors.ObjectFormatError` with a
one-line message: never ``IndexError``/``struct.error``/``RecursionError``.

Bitfields (documented choice): a struct's numpy dtype never contains a field
for a bitfield member.  Each run of adjacent bitfields is covered by one
storage field named ``_bitfield_<byte offset>`` (an unsigned integer when the
run is 1/2/4/8 bytes wide, else raw ``V<n>``), so the dtype's layout and
itemsize are exact.  :meth:`Btf.bitfields` lists every bitfield as a
:class:`Bitfield` (name, byte_offset, bit_shift, bit_size, signed, storage)
whose :meth:`Bitfield.get` / :meth:`Bitfield.set` read and write the value in
a numpy record or a bytes-like buffer.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from pybpf.errors import NotSupportedError, ObjectFormatError

__all__ = [
    "Bitfield",
    "Btf",
    "BtfType",
    "Variable",
    "KIND_NAMES",
    "raw_dtype",
]

BTF_MAGIC = 0xEB9F
KERNEL_BTF_PATH = "/sys/kernel/btf/vmlinux"

# Index = BTF_KIND_* value (linux/btf.h).
KIND_NAMES: tuple[str, ...] = (
    "unkn", "int", "ptr", "array", "struct", "union", "enum", "fwd", "typedef",
    "volatile", "const", "restrict", "func", "func_proto", "var", "datasec",
    "float", "decl_tag", "type_tag", "enum64",
)
(_UNKN, _INT, _PTR, _ARRAY, _STRUCT, _UNION, _ENUM, _FWD, _TYPEDEF, _VOLATILE,
 _CONST, _RESTRICT, _FUNC, _FUNC_PROTO, _VAR, _DATASEC, _FLOAT, _DECL_TAG,
 _TYPE_TAG, _ENUM64) = range(20)

# Bytes after the 12-byte common header: fixed part, and per-vlen-item part.
_EXTRA_FIXED = {_INT: 4, _ARRAY: 12, _VAR: 4, _DECL_TAG: 4}
_EXTRA_PER_ITEM = {_STRUCT: 12, _UNION: 12, _ENUM: 8, _FUNC_PROTO: 8, _DATASEC: 12, _ENUM64: 12}

_MODIFIERS = frozenset({_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG})
_QUALIFIER_WORDS = {_CONST: "const", _VOLATILE: "volatile", _RESTRICT: "restrict"}
_INT_SIGNED, _INT_CHAR, _INT_BOOL = 1, 2, 4
_LINKAGE_NAMES = {0: "static", 1: "global", 2: "extern"}
_CHAR_NAMES = frozenset({"char", "signed char", "unsigned char"})

# Deeper nesting than this is treated as a cycle in malformed input.
_MAX_DEPTH = 128
_MAX_DTYPE_BYTES = 1 << 31


def raw_dtype(size: int) -> np.dtype:
    """Opaque bytes of ``size``: the dtype used when an object has no BTF."""
    return np.dtype(f"V{int(size)}")


@dataclass(slots=True)
class BtfType:
    """One decoded BTF type; attributes that don't apply to a kind keep defaults."""

    id: int
    kind: str
    name: str = ""
    vlen: int = 0
    kflag: bool = False
    size: int | None = None
    type: int | None = None
    # int
    encoding: str = ""
    bits: int = 0
    bit_offset: int = 0
    # array
    nelems: int = 0
    index_type: int = 0
    # struct/union: (name, type_id, bit_offset, bitfield_size)
    members: list[tuple[str, int, int, int]] = field(default_factory=list)
    # enum/enum64: (name, value)
    values: list[tuple[str, int]] = field(default_factory=list)
    # func_proto: (name, type_id)
    params: list[tuple[str, int]] = field(default_factory=list)
    # var / func
    linkage: str = ""
    # datasec: (type_id, offset, size)
    vars: list[tuple[int, int, int]] = field(default_factory=list)
    # decl_tag
    component_idx: int = -1
    signed: bool = False  # enum/enum64 signedness (kflag, or negative values)


@dataclass(frozen=True, slots=True)
class Variable:
    """A variable of a DATASEC: ``type_id`` is the variable's type (not the VAR id)."""

    name: str
    type_id: int
    offset: int
    size: int
    section: str
    linkage: str = "global"
    var_id: int = 0


@dataclass(frozen=True, slots=True)
class Bitfield:
    """Where a bitfield lives: ``byte_offset`` is that of its storage field in
    the record, ``bit_shift`` counts from that field's least significant bit."""

    name: str
    byte_offset: int
    bit_shift: int
    bit_size: int
    signed: bool
    storage: str
    storage_size: int

    def _bytes(self, rec: Any) -> bytes:
        if isinstance(rec, (bytes, bytearray, memoryview)):
            return bytes(rec[self.byte_offset:self.byte_offset + self.storage_size])
        return np.asarray(rec).tobytes()[self.byte_offset:self.byte_offset + self.storage_size]

    def get(self, rec: Any) -> int:
        """The value in a numpy record (or whole-struct bytes)."""
        raw = int.from_bytes(self._bytes(rec), "little")
        v = (raw >> self.bit_shift) & ((1 << self.bit_size) - 1)
        if self.signed and v >> (self.bit_size - 1):
            v -= 1 << self.bit_size
        return v

    def set(self, rec: Any, value: int) -> None:
        """Store ``value`` into a writable numpy record/0-d array or a bytearray."""
        mask = ((1 << self.bit_size) - 1) << self.bit_shift
        raw = int.from_bytes(self._bytes(rec), "little")
        raw = (raw & ~mask) | ((int(value) << self.bit_shift) & mask)
        new = raw.to_bytes(self.storage_size, "little")
        if isinstance(rec, (bytearray, memoryview)):
            rec[self.byte_offset:self.byte_offset + self.storage_size] = new
            return
        arr = np.asarray(rec)
        view = arr.reshape(1).view(np.uint8)
        view[self.byte_offset:self.byte_offset + self.storage_size] = np.frombuffer(new, np.uint8)


def _bad(name: str, msg: str) -> ObjectFormatError:
    where = f"{name}: " if name else ""
    return ObjectFormatError(f"{where}bad BTF: {msg}")


class Btf:
    """A parsed BTF blob; type ids continue those of ``base`` for split BTF."""

    _kernel: Btf | None = None

    def __init__(self, data: bytes, *, base: Btf | None = None, name: str = "") -> None:
        self.name = name
        self.base = base
        self._data = memoryview(bytes(data))
        d = self._data
        if len(d) < 24:
            raise _bad(name, f"truncated header ({len(d)} bytes)")
        magic, version, flags, hdr_len = struct.unpack_from("<HBBI", d, 0)
        if magic == 0x9FEB:
            raise _bad(name, "big-endian BTF is not supported")
        if magic != BTF_MAGIC:
            raise _bad(name, f"bad magic 0x{magic:04x} (want 0xeb9f)")
        if version != 1:
            raise _bad(name, f"unsupported version {version}")
        if hdr_len < 24 or hdr_len > len(d):
            raise _bad(name, f"header length {hdr_len} out of range")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", d, 8)
        body = len(d) - hdr_len
        if type_off + type_len > body or str_off + str_len > body:
            raise _bad(name, f"type/string sections ({type_off}+{type_len}, {str_off}+{str_len}) "
                             f"exceed data ({body} bytes after header)")
        if type_off % 4:
            raise _bad(name, "type section is not 4-byte aligned")
        self._strs = bytes(d[hdr_len + str_off:hdr_len + str_off + str_len])
        if base is None:
            if str_len == 0 or self._strs[0] != 0:
                raise _bad(name, "string section does not start with NUL")
            self._str_base = 0
            self._start_id = 1
        else:
            self._str_base = base._str_base + len(base._strs)
            self._start_id = len(base)
        if self._strs and self._strs[-1] != 0:
            raise _bad(name, "string section is not NUL-terminated")
        self._offs, self._kinds = self._scan(hdr_len + type_off, hdr_len + type_off + type_len)
        self._cache: dict[int, BtfType] = {}
        self._names: dict[str, list[int]] | None = None
        self._sizes: dict[int, int] = {}
        self._dtypes: dict[int, np.dtype] = {}
        self._datasec_fix: dict[int, tuple[int, dict[str, int]]] = {}

    # ---- construction -------------------------------------------------------------------
    def _scan(self, pos: int, end: int) -> tuple[list[int], bytearray]:
        """Record the start offset and kind of every type (one pass, no decoding)."""
        d = self._data
        offs: list[int] = []
        kinds = bytearray()
        unpack = struct.Struct("<4xI").unpack_from
        fixed, per_item = _EXTRA_FIXED, _EXTRA_PER_ITEM
        append, kappend = offs.append, kinds.append
        while pos < end:
            if pos + 12 > end:
                raise _bad(self.name, f"truncated type at offset {pos}")
            (info,) = unpack(d, pos)
            kind = (info >> 24) & 0x1F
            if kind == _UNKN or kind > _ENUM64:
                raise _bad(self.name, f"unknown kind {kind} for type [{self._start_id + len(offs)}]")
            nxt = pos + 12 + fixed.get(kind, 0) + (info & 0xFFFF) * per_item.get(kind, 0)
            if nxt > end:
                raise _bad(self.name, f"type [{self._start_id + len(offs)}] runs past the type section")
            append(pos)
            kappend(kind)
            pos = nxt
        return offs, kinds

    @classmethod
    def from_bytes(cls, data: bytes, *, base: Btf | None = None, name: str = "") -> Btf:
        """Parse a raw BTF blob (``.BTF`` section contents, vmlinux, split module BTF)."""
        return cls(data, base=base, name=name)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, base: Btf | None = None) -> Btf:
        """Parse a raw BTF file, or the ``.BTF`` section of an ELF object."""
        p = os.fspath(path)
        try:
            with open(p, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ObjectFormatError(f"{p}: cannot read: {e.strerror}", e.errno, path=p) from None
        if data[:4] == b"\x7fELF":
            from pybpf.spec import _elf_section_bytes  # lazy: spec imports us
            sec = _elf_section_bytes(data, ".BTF", p)
            if sec is None:
                raise ObjectFormatError(f"{p}: ELF object has no .BTF section", path=p)
            data = sec
        return cls(data, base=base, name=p)

    @classmethod
    def kernel(cls) -> Btf:
        """The running kernel's BTF (``/sys/kernel/btf/vmlinux``), parsed once per process."""
        if cls._kernel is None:
            cls._kernel = cls.from_file(KERNEL_BTF_PATH)
        return cls._kernel

    # ---- strings and raw access --------------------------------------------------------
    def _str(self, off: int) -> str:
        if off < self._str_base:
            assert self.base is not None
            return self.base._str(off)
        o = off - self._str_base
        if o >= len(self._strs):
            raise _bad(self.name, f"string offset {off} out of range")
        e = self._strs.index(b"\0", o)
        try:
            return self._strs[o:e].decode()
        except UnicodeDecodeError:
            return self._strs[o:e].decode("latin-1")

    def _check_id(self, tid: int, ref: int) -> int:
        if not 0 <= tid < len(self):
            raise _bad(self.name, f"type [{ref}] refers to type id {tid}, out of range "
                                  f"(have {len(self)})")
        return tid

    def __len__(self) -> int:
        return self._start_id + len(self._offs)

    def __iter__(self) -> Iterator[BtfType]:
        for i in range(1, len(self)):
            yield self[i]

    @property
    def start_id(self) -> int:
        """First type id defined by this blob (1, or the base's count for split BTF)."""
        return self._start_id

    def __getitem__(self, tid: int) -> BtfType:
        t = self._cache.get(tid)
        if t is not None:
            return t
        if tid == 0:
            t = BtfType(0, "void", "")
        elif tid < self._start_id and self.base is not None and tid > 0:
            return self.base[tid]
        elif not isinstance(tid, int) or not 0 < tid < len(self):
            raise IndexError(f"BTF type id {tid} out of range (have {len(self)})")
        else:
            t = self._decode(tid)
        self._cache[tid] = t
        return t

    def kind_of(self, tid: int) -> str:
        """The kind name of ``tid`` without decoding it."""
        if tid == 0:
            return "void"
        if tid < self._start_id and self.base is not None:
            return self.base.kind_of(tid)
        return KIND_NAMES[self._kinds[tid - self._start_id]]

    def _name_of(self, tid: int) -> str:
        """A type's name without decoding it (no recursion through referenced types)."""
        if tid < self._start_id:
            return self.base._name_of(tid) if self.base is not None and tid > 0 else ""
        (off,) = struct.unpack_from("<I", self._data, self._offs[tid - self._start_id])
        return self._str(off)

    def _decode(self, tid: int) -> BtfType:
        d = self._data
        pos = self._offs[tid - self._start_id]
        name_off, info, st = struct.unpack_from("<III", d, pos)
        k = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        kflag = bool(info >> 31)
        t = BtfType(tid, KIND_NAMES[k], self._str(name_off), vlen, kflag)
        p = pos + 12
        ref = lambda x: self._check_id(x, tid)  # noqa: E731
        if k == _INT:
            (enc,) = struct.unpack_from("<I", d, p)
            t.size = st
            bits_enc = (enc >> 24) & 0x0F
            t.encoding = ("bool" if bits_enc & _INT_BOOL else "char" if bits_enc & _INT_CHAR
                          else "signed" if bits_enc & _INT_SIGNED else "")
            t.signed = bool(bits_enc & _INT_SIGNED)
            t.bit_offset = (enc >> 16) & 0xFF
            t.bits = enc & 0xFF
            if st not in (1, 2, 4, 8, 16) or t.bits > st * 8 or t.bits + t.bit_offset > st * 8:
                raise _bad(self.name, f"int [{tid}] has size {st} and {t.bits} bits")
        elif k == _ARRAY:
            t.type, t.index_type, t.nelems = (ref(x) if i < 2 else x for i, x in
                                              enumerate(struct.unpack_from("<III", d, p)))
        elif k in (_STRUCT, _UNION):
            t.size = st
            for mn, mt, mo in struct.iter_unpack("<III", d[p:p + 12 * vlen]):
                if kflag:
                    t.members.append((self._str(mn), ref(mt), mo & 0xFFFFFF, mo >> 24))
                else:
                    t.members.append((self._str(mn), ref(mt), mo, 0))
        elif k == _ENUM:
            t.size = st
            raw = [(self._str(n), v) for n, v in struct.iter_unpack("<Ii", d[p:p + 8 * vlen])]
            t.signed = kflag or any(v < 0 for _, v in raw)
            t.values = raw if t.signed else [(n, v & 0xFFFFFFFF) for n, v in raw]
        elif k == _ENUM64:
            t.size = st
            vals = [(self._str(n), lo | (hi << 32))
                    for n, lo, hi in struct.iter_unpack("<III", d[p:p + 12 * vlen])]
            t.signed = kflag
            if kflag:
                vals = [(n, v - (1 << 64) if v >> 63 else v) for n, v in vals]
            t.values = vals
        elif k == _FUNC_PROTO:
            t.type = ref(st)
            t.params = [(self._str(n), ref(pt)) for n, pt in struct.iter_unpack("<II", d[p:p + 8 * vlen])]
        elif k == _VAR:
            t.type = ref(st)
            (lk,) = struct.unpack_from("<I", d, p)
            t.linkage = _LINKAGE_NAMES.get(lk, str(lk))
        elif k == _DATASEC:
            t.size = st
            t.vars = [(ref(a), b, c) for a, b, c in struct.iter_unpack("<III", d[p:p + 12 * vlen])]
            fix = self._datasec_fix.get(tid)
            if fix is not None:
                t.size = fix[0]
                t.vars = [(vt, fix[1].get(self._name_of(vt), vo), vs) for vt, vo, vs in t.vars]
        elif k == _FUNC:
            t.type = ref(st)
            t.linkage = _LINKAGE_NAMES.get(vlen, str(vlen))
        elif k == _DECL_TAG:
            t.type = ref(st)
            (t.component_idx,) = struct.unpack_from("<i", d, p)
        elif k == _FLOAT:
            t.size = st
        elif k == _FWD:
            pass
        else:  # ptr, typedef, volatile, const, restrict, type_tag
            t.type = ref(st)
        return t

    def validate(self) -> None:
        """Check the whole blob: every type decodes (string offsets and type ids in
        range) and every chain of pointers/typedefs/qualifiers ends. libbpf trusts
        what it parses; run this before handing untrusted BTF to it."""
        chained = {"ptr", "typedef", "const", "volatile", "restrict", "type_tag", "var", "decl_tag", "func"}
        for tid in range(self._start_id, len(self)):
            self[tid]
        for tid in range(self._start_id, len(self)):
            seen = 0
            cur = tid
            while cur and self.kind_of(cur) in chained:
                seen += 1
                if seen > len(self):
                    raise _bad(self.name, f"type [{tid}] is part of a reference cycle")
                cur = self[cur].type or 0
        # What C lays out by value must be complete and sized: members, array elements, vars.
        for tid in range(self._start_id, len(self)):
            t = self[tid]
            if t.kind in ("struct", "union"):
                for name, member_type, _off, _bits in t.members:
                    self._check_complete(member_type, f"member {name!r} of {t.kind} [{tid}]")
            elif t.kind == "array":
                self._check_complete(t.type or 0, f"element of array [{tid}]")
            elif t.kind == "var":
                self._check_complete(t.type or 0, f"variable {t.name!r} [{tid}]")

    def _check_complete(self, tid: int, what: str) -> None:
        target = self.resolve(tid)
        kind = self.kind_of(target)
        if kind not in ("int", "ptr", "array", "struct", "union", "enum", "enum64", "float"):
            raise _bad(self.name, f"{what} has incomplete type {kind} [{target}]")
        try:
            self.sizeof(target)
        except (ObjectFormatError, NotSupportedError) as exc:
            raise _bad(self.name, f"{what}: {exc}") from None

    # ---- lookup ------------------------------------------------------------------------
    def _name_index(self) -> dict[str, list[int]]:
        if self._names is None:
            names: dict[str, list[int]] = {}
            d, unpack = self._data, struct.Struct("<I").unpack_from
            for i, pos in enumerate(self._offs):
                (off,) = unpack(d, pos)
                if off:
                    names.setdefault(self._str(off), []).append(self._start_id + i)
            self._names = names
        return self._names

    def find(self, name: str, kind: str | None = None) -> int:
        """Id of the first type called ``name`` (of ``kind`` if given); KeyError if none."""
        for tid in self._name_index().get(name, ()):
            if kind is None or self.kind_of(tid) == kind:
                return tid
        if self.base is not None:
            return self.base.find(name, kind)
        raise KeyError(f"no BTF type {kind + ' ' if kind else ''}{name!r}")

    def find_all(self, name: str, kind: str | None = None) -> list[int]:
        """Ids of every type called ``name`` (of ``kind`` if given)."""
        own = [t for t in self._name_index().get(name, ()) if kind is None or self.kind_of(t) == kind]
        return (self.base.find_all(name, kind) if self.base is not None else []) + own

    def kind_counts(self) -> dict[str, int]:
        """How many types of each kind (the base's included for split BTF)."""
        counts: dict[str, int] = dict(self.base.kind_counts()) if self.base is not None else {}
        for k in self._kinds:
            counts[KIND_NAMES[k]] = counts.get(KIND_NAMES[k], 0) + 1
        return counts

    def resolve(self, tid: int) -> int:
        """Skip typedef/const/volatile/restrict/type_tag (and var) down to a real type."""
        for _ in range(_MAX_DEPTH):
            t = self[tid]
            if t.kind not in ("typedef", "const", "volatile", "restrict", "type_tag", "var"):
                return tid
            tid = t.type or 0
        raise _bad(self.name, f"modifier chain from type [{tid}] is a cycle or too deep")

    def _strip_quals(self, tid: int) -> int:
        """Skip only qualifiers (not typedefs)."""
        for _ in range(_MAX_DEPTH):
            t = self[tid]
            if t.kind not in ("const", "volatile", "restrict", "type_tag"):
                return tid
            tid = t.type or 0
        raise _bad(self.name, f"qualifier chain from type [{tid}] is a cycle or too deep")

    # ---- sizes -------------------------------------------------------------------------
    def sizeof(self, tid: int) -> int:
        """Size in bytes of type ``tid`` as the BPF target lays it out."""
        return self._sizeof(tid, 0)

    def _sizeof(self, tid: int, depth: int) -> int:
        s = self._sizes.get(tid)
        if s is not None:
            return s
        if depth > _MAX_DEPTH:
            raise _bad(self.name, f"type [{tid}] nests too deeply (cycle?)")
        t = self[tid]
        if t.kind in ("int", "struct", "union", "enum", "enum64", "float", "datasec"):
            s = t.size or 0
        elif t.kind == "ptr":
            s = 8
        elif t.kind == "array":
            s = t.nelems * self._sizeof(t.type or 0, depth + 1)
        elif t.kind in ("typedef", "const", "volatile", "restrict", "type_tag", "var"):
            s = self._sizeof(t.type or 0, depth + 1)
        else:
            raise NotSupportedError(f"BTF type [{tid}] ({t.kind} {t.name}) has no size",
                                    feature="sizeof")
        self._sizes[tid] = s
        return s

    # ---- C names -----------------------------------------------------------------------
    def c_name(self, tid: int) -> str:
        """C spelling of type ``tid``: ``struct pair``, ``char[16]``, ``int *``, ``int (*)[4]``."""
        return self._decl(tid, "", 0)

    def _decl(self, tid: int, inner: str, depth: int) -> str:
        if depth > _MAX_DEPTH:
            raise _bad(self.name, f"type [{tid}] nests too deeply (cycle?)")
        t = self[tid]
        k = t.kind
        if k == "ptr":
            return self._decl(t.type or 0, "*" + inner, depth + 1)
        if k == "array":
            s = f"({inner})" if inner.startswith("*") else inner
            return self._decl(t.type or 0, f"{s}[{t.nelems}]", depth + 1)
        if k == "func_proto":
            s = f"({inner})" if inner.startswith("*") else inner
            ps = [self._decl(pt, pn, depth + 1) if pt else "..." for pn, pt in t.params]
            return self._decl(t.type or 0, f"{s}({', '.join(ps) or 'void'})", depth + 1)
        if k in ("const", "volatile", "restrict"):
            word = k
            if self.kind_of(self._strip_quals(t.type or 0)) == "ptr":
                return self._decl(t.type or 0, f"{word} {inner}".rstrip() if not inner.startswith("[")
                                  else f"{word}{inner}", depth + 1)
            return f"{word} " + self._decl(t.type or 0, inner, depth + 1)
        if k == "type_tag":
            return self._decl(t.type or 0, inner, depth + 1)
        if k == "func":
            return self._decl(t.type or 0, t.name, depth + 1)
        if k == "var":
            return self._decl(t.type or 0, inner or t.name, depth + 1)
        if k in ("struct", "union", "enum", "enum64", "fwd"):
            kw = {"fwd": "union" if t.kflag else "struct", "enum64": "enum"}.get(k, k)
            base = f"{kw} {t.name or '(anon)'}"
        elif k == "void":
            base = "void"
        else:
            base = t.name or f"({k})"
        if not inner:
            return base
        return base + (inner if inner.startswith("[") else " " + inner)

    # ---- datasecs ----------------------------------------------------------------------
    def datasecs(self) -> list[str]:
        """Names of every DATASEC (``.bss``, ``.data``, ``.rodata``, ``.maps``, ...)."""
        return [self[tid].name for tid in self._datasec_ids()]

    def _datasec_ids(self) -> list[int]:
        return [self._start_id + i for i, k in enumerate(self._kinds) if k == _DATASEC]

    def _datasec_id(self, name: str) -> int:
        for tid in self._datasec_ids():
            if self[tid].name == name:
                return tid
        raise KeyError(f"no DATASEC {name!r}")

    def datasec(self, name: str) -> list[Variable]:
        """The variables of DATASEC ``name`` in offset order; KeyError if there is none."""
        ds = self[self._datasec_id(name)]
        out: list[Variable] = []
        for vt, off, sz in ds.vars:
            v = self[vt]
            if v.kind == "var":
                out.append(Variable(v.name, v.type or 0, off, sz, name, v.linkage, vt))
            else:  # e.g. an extern FUNC in .ksyms
                out.append(Variable(v.name, vt, off, sz, name, v.linkage or "extern", vt))
        return sorted(out, key=lambda x: x.offset)

    def fix_datasec(self, name: str, size: int, offsets: dict[str, int]) -> None:
        """Set a DATASEC's size and variable offsets (clang leaves them to the loader,
        which takes them from the ELF section and symbol table, as libbpf does)."""
        tid = self._datasec_id(name)
        self._datasec_fix[tid] = (size, dict(offsets))
        self._cache.pop(tid, None)
        self._sizes.pop(tid, None)
        self._dtypes.pop(tid, None)

    # ---- numpy dtypes ------------------------------------------------------------------
    def dtype(self, tid: int) -> np.dtype:
        """numpy dtype with the exact layout of type ``tid`` (see module doc for bitfields)."""
        try:
            return self._dtype(tid, 0)
        except (ValueError, TypeError, OverflowError, MemoryError) as e:
            if isinstance(e, ObjectFormatError):
                raise
            raise _bad(self.name, f"type [{tid}] has no valid numpy layout ({e})") from None

    def _dtype(self, tid: int, depth: int) -> np.dtype:
        dt = self._dtypes.get(tid)
        if dt is not None:
            return dt
        if depth > _MAX_DEPTH:
            raise _bad(self.name, f"type [{tid}] nests too deeply (cycle?)")
        t = self[tid]
        k = t.kind
        if k in ("typedef", "const", "volatile", "restrict", "type_tag", "var"):
            dt = self._dtype(t.type or 0, depth + 1)
        elif k == "int":
            dt = self._int_dtype(t)
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
            dt = self._array_dtype(t, depth)
        elif k in ("struct", "union"):
            dt = self._record_dtype(t, depth)
        elif k == "datasec":
            names, formats, offsets = [], [], []
            for vt, off, _sz in t.vars:
                v = self[vt]
                if v.kind != "var":
                    continue
                names.append(self._unique(v.name or f"_var{vt}", names))
                formats.append(self._dtype(vt, depth + 1))
                offsets.append(off)
            dt = self._make_record(t, names, formats, offsets, t.size or 0)
        else:
            raise NotSupportedError(f"BTF type [{tid}] ({k} {t.name}) has no data layout",
                                    feature="dtype")
        self._dtypes[tid] = dt
        return dt

    def _int_dtype(self, t: BtfType) -> np.dtype:
        size = t.size or 0
        if t.encoding == "bool" and size == 1:
            return np.dtype("?")
        if size in (1, 2, 4, 8):
            return np.dtype(f"<{'i' if t.signed else 'u'}{size}")
        return raw_dtype(size)

    def _is_char(self, tid: int) -> bool:
        t = self[self._strip_quals(tid)]
        return t.kind == "int" and t.size == 1 and (t.name in _CHAR_NAMES or t.encoding == "char")

    def _array_dtype(self, t: BtfType, depth: int) -> np.dtype:
        elem = t.type or 0
        if self._is_char(elem):
            return np.dtype(f"S{t.nelems}") if t.nelems else np.dtype(("u1", (0,)))
        if self.sizeof(elem) * t.nelems > _MAX_DTYPE_BYTES:
            raise _bad(self.name, f"array [{t.id}] is implausibly large")
        sub = self._dtype(elem, depth + 1)
        if sub.subdtype is not None:  # int a[2][3] -> ('<i4', (2, 3)), not nested subarrays
            base, shape = sub.subdtype
            return np.dtype((base, (t.nelems, *shape)))
        return np.dtype((sub, (t.nelems,)))

    @staticmethod
    def _unique(name: str, taken: list[str]) -> str:
        n = name
        while n in taken:
            n = "_" + n
        return n

    def _make_record(self, t: BtfType, names: list[str], formats: list[np.dtype],
                     offsets: list[int], itemsize: int) -> np.dtype:
        if itemsize > _MAX_DTYPE_BYTES:
            raise _bad(self.name, f"{t.kind} [{t.id}] is implausibly large")
        for n, f, o in zip(names, formats, offsets):
            if o + f.itemsize > itemsize:
                raise _bad(self.name, f"{t.kind} [{t.id}] member {n!r} at {o} "
                                      f"(+{f.itemsize}) exceeds size {itemsize}")
        return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                         "itemsize": itemsize})

    def _member_bitfield(self, t: BtfType, mtype: int, bit_off: int, bf_size: int) -> tuple[int, int]:
        """(bit offset, bit size) if this member is a bitfield, else (bit_off, 0)."""
        if bf_size:
            return bit_off, bf_size
        r = self[self.resolve(mtype)]
        if not t.kflag and r.kind == "int" and (r.bits != (r.size or 0) * 8 or r.bit_offset):
            return bit_off + r.bit_offset, r.bits  # pre-kflag bitfield encoding
        if bit_off % 8:
            return bit_off, self.sizeof(mtype) * 8
        return bit_off, 0

    def _record_dtype(self, t: BtfType, depth: int) -> np.dtype:
        names: list[str] = []
        formats: list[np.dtype] = []
        offsets: list[int] = []
        runs: list[list[int]] = []  # [start_byte, end_byte) of adjacent bitfields
        for mname, mtype, boff, bsz in t.members:
            boff, bsz = self._member_bitfield(t, mtype, boff, bsz)
            if bsz:
                lo, hi = boff // 8, (boff + bsz + 7) // 8
                if runs and lo <= runs[-1][1] and t.kind == "struct":
                    runs[-1][1] = max(runs[-1][1], hi)
                else:
                    runs.append([lo, hi])
                continue
            off = boff // 8
            mdt = self._dtype(mtype, depth + 1)
            if not mname and self[self.resolve(mtype)].kind in ("struct", "union"):
                # Anonymous struct/union: lift its fields so rec["x"] works.
                if mdt.names:
                    for sub in mdt.names:
                        sdt, soff = mdt.fields[sub][:2]
                        names.append(self._unique(sub, names))
                        formats.append(sdt)
                        offsets.append(off + soff)
                continue
            names.append(self._unique(mname or f"_anon{len(names)}", names))
            formats.append(mdt)
            offsets.append(off)
        for lo, hi in runs:
            n = hi - lo
            names.append(self._unique(f"_bitfield_{lo}", names))
            formats.append(np.dtype(f"<u{n}") if n in (1, 2, 4, 8) else raw_dtype(n))
            offsets.append(lo)
        return self._make_record(t, names, formats, offsets, t.size or 0)

    def bitfields(self, tid: int) -> list[Bitfield]:
        """Every bitfield of struct/union ``tid`` (anonymous members flattened, named
        nested records as ``outer.inner``), with offsets relative to ``tid``."""
        out: list[Bitfield] = []
        self._collect_bitfields(tid, 0, "", out, 0)
        return out

    def _collect_bitfields(self, tid: int, base: int, prefix: str, out: list[Bitfield],
                           depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise _bad(self.name, f"type [{tid}] nests too deeply (cycle?)")
        t = self[self.resolve(tid)]
        if t.kind not in ("struct", "union"):
            return
        dt = self.dtype(t.id)
        storages = [(n, dt.fields[n][1], dt.fields[n][0].itemsize)
                    for n in (dt.names or ()) if n.lstrip("_").startswith("bitfield_")]
        for mname, mtype, boff, bsz in t.members:
            boff, bsz = self._member_bitfield(t, mtype, boff, bsz)
            if bsz:
                if not mname:
                    continue  # unnamed padding bitfield
                byte = boff // 8
                sname, soff, ssize = next(((n, o, s) for n, o, s in storages
                                           if o <= byte < o + s), ("", byte, 1))
                r = self[self.resolve(mtype)]
                signed = bool((r.kind == "int" and r.signed) or (r.kind in ("enum", "enum64") and r.signed))
                out.append(Bitfield(prefix + mname, base + soff, boff - soff * 8, bsz, signed,
                                    (prefix + sname) if sname else "", ssize))
            else:
                r = self[self.resolve(mtype)]
                if r.kind in ("struct", "union"):
                    p = prefix if not mname else f"{prefix}{mname}."
                    self._collect_bitfields(r.id, base + boff // 8, p, out, depth + 1)

    def __repr__(self) -> str:
        return f"<Btf {self.name or '(bytes)'}: {len(self)} types>"
