"""The plain values of the BTF type graph: kind numbers, ``BtfType`` records, ``Bitfield``.

Shared by the parser (:mod:`pybpf.btf.types`) and the numpy side (:mod:`pybpf.btf.dtype`),
which both build on it, so neither needs the other's module at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pybpf.errors import ObjectFormatError

if TYPE_CHECKING:
    import numpy as np

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

# Deeper nesting than this is treated as a cycle in malformed input.
_MAX_DEPTH = 128


def raw_dtype(size: int) -> np.dtype:
    """Opaque bytes of ``size``: the dtype used when an object has no BTF."""
    import numpy as np  # lazily: the parser and `btf dump` need no numpy
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
    signed: bool = False  # enum/enum64 signedness: the kind_flag (unsigned values when clear)


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
        import numpy as np
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
        import numpy as np
        arr = np.asarray(rec)
        view = arr.reshape(1).view(np.uint8)
        view[self.byte_offset:self.byte_offset + self.storage_size] = np.frombuffer(new, np.uint8)


def _bad(name: str, msg: str) -> ObjectFormatError:
    where = f"{name}: " if name else ""
    return ObjectFormatError(f"{where}bad BTF: {msg}")


class TypeGraph(Protocol):
    """What the modules built on the parse (numpy dtypes, validation) need of a parsed BTF
    (``pybpf.btf.Btf`` is one)."""

    name: str
    _dtypes: dict[int, np.dtype]

    def __getitem__(self, tid: int) -> BtfType: ...

    def resolve(self, tid: int) -> int:
        """The id behind typedefs and qualifiers."""

    def _strip_quals(self, tid: int) -> int: ...

    def sizeof(self, tid: int) -> int:
        """The size in bytes of type ``tid``."""

    def dtype(self, tid: int) -> np.dtype:
        """The numpy dtype of type ``tid``."""

    def __len__(self) -> int: ...

    @property
    def start_id(self) -> int:
        """The first type id this blob defines."""

    def kind_of(self, tid: int) -> str:
        """The kind name of ``tid``, without decoding it."""
