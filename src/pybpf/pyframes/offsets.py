"""Where CPython keeps what a stack walker reads: field offsets, from BTF or ``_Py_DebugOffsets``.

Owns :class:`PyOffsets` (the offsets the BPF frame walker and the code-object reader need)
and the two ways to get them without a table typed by hand:

* :func:`offsets_from_btf`: from the BTF of a small C file compiled against the CPython
  headers that ``python3-dev`` installs (``Include/internal``): member offsets looked up
  by name, as CO-RE looks up kernel fields (3.11 and 3.12 moved fields; each is found
  where the headers put it: ``f_code`` or ``f_executable``, ``cframe->current_frame`` or
  ``current_frame``).
* :func:`offsets_from_debug`: from the ``_Py_DebugOffsets`` block that CPython 3.13 puts
  at the start of ``_PyRuntime`` for out-of-process readers (cookie ``xdebugpy``).

Pure: bytes and BTF in, offsets out (reading a process or running a compiler is
:mod:`pybpf.pyframes.process` and :mod:`pybpf.pyframes.headers`).
"""

from __future__ import annotations

import json
import struct
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from pybpf.btf.types import Btf
from pybpf.errors import NotSupportedError, ObjectFormatError

__all__ = ["DEBUG_COOKIE", "DEBUG_OFFSETS_313", "PyOffsets", "UnreadablePythonError", "offsets_from_btf",
           "offsets_from_debug"]


class UnreadablePythonError(NotSupportedError):
    """This Python process cannot be read: another implementation, a version or build whose
    layout is not known here, or offsets that do not match what the process holds."""

    def __init__(self, message: str, *, pid: int | None = None) -> None:
        super().__init__(message, None, feature="reading CPython frames")
        self.pid = pid


@dataclass(frozen=True)
class PyOffsets:
    """Offsets (bytes) into CPython's runtime, interpreter, thread, frame, code and str objects.

    ``cframe_current_frame`` is -1 when the thread state holds the current frame itself
    (3.13: ``tstate->current_frame``); otherwise ``tstate_frame`` is the ``cframe``
    pointer and this the frame's offset in ``_PyCFrame`` (3.11, 3.12).
    ``frame_is_entry`` is -1 where frames have no ``is_entry`` flag (3.12+: an entry frame
    is one whose caller is a C-stack shim frame)."""

    version: tuple[int, int]
    source: str = field(compare=False)   # where they came from: not part of what they are
    runtime_interpreters_head: int
    interp_next: int
    interp_threads_head: int
    tstate_next: int
    tstate_interp: int
    tstate_native_thread_id: int
    tstate_frame: int
    cframe_current_frame: int
    frame_previous: int
    frame_code: int
    frame_is_entry: int
    frame_owner: int
    frame_owner_cstack: int     # FRAME_OWNED_BY_CSTACK (a shim frame's owner), -1: none or not known
    code_filename: int
    code_name: int
    code_qualname: int
    code_firstlineno: int
    object_type: int
    str_length: int
    str_state: int
    str_ascii_data: int         # sizeof(PyASCIIObject): where a compact ASCII str's characters start
    str_compact_data: int       # sizeof(PyCompactUnicodeObject): where other compact strs' start
    str_kind_shift: int = 2     # bit positions in the state word (PEP 393 order)
    str_compact_bit: int = 5
    str_ascii_bit: int = 6
    free_threaded: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``pyprofile --offsets FILE`` reads it back with :meth:`from_dict`)."""
        doc = asdict(self)
        doc["version"] = f"{self.version[0]}.{self.version[1]}"
        return doc

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, doc: Any, where: str = "offsets") -> PyOffsets:
        """The offsets of a :meth:`to_dict` document; ObjectFormatError naming a missing or bad key."""
        if not isinstance(doc, dict):
            raise ObjectFormatError(f"{where}: not a JSON object of offsets")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in doc:
                if f.default is not MISSING:   # has a default
                    continue
                raise ObjectFormatError(f"{where}: no {f.name!r}")
            value = doc[f.name]
            if f.name == "version":
                parts = str(value).split(".")
                if len(parts) != 2 or not all(p.isdigit() for p in parts):
                    raise ObjectFormatError(f"{where}: version {value!r} is not MAJOR.MINOR")
                value = (int(parts[0]), int(parts[1]))
            elif f.name == "source":
                value = str(value)
            elif f.name == "free_threaded":
                value = bool(value)
            elif isinstance(value, bool) or not isinstance(value, int) or not -1 <= value < 1 << 20:
                raise ObjectFormatError(f"{where}: {f.name} = {value!r} is not an offset")
            values[f.name] = value
        unknown = set(doc) - {f.name for f in fields(cls)}
        if unknown:
            raise ObjectFormatError(f"{where}: unknown keys {sorted(unknown)}")
        return cls(**values)


# ---- from BTF (headers) ------------------------------------------------------------------

def _struct(btf: Btf, name: str) -> int:
    """The struct behind a typedef or struct name."""
    for kind in ("typedef", "struct"):
        for tid in btf.find_all(name, kind):
            real = btf.resolve(tid)
            if btf[real].kind in ("struct", "union") and btf[real].vlen:
                return real
    raise ObjectFormatError(f"the headers' BTF has no struct {name!r}")


def _member(btf: Btf, tid: int, name: str) -> tuple[int, int, int] | None:
    """(byte offset, type id, bit offset) of member ``name`` of struct ``tid``, searching
    anonymous members; None when absent."""
    t = btf[btf.resolve(tid)]
    for mname, mtype, bit_off, _bits in t.members:
        if mname == name:
            return bit_off // 8, mtype, bit_off
        if not mname and btf[btf.resolve(mtype)].kind in ("struct", "union"):
            inner = _member(btf, mtype, name)
            if inner is not None:
                return bit_off // 8 + inner[0], inner[1], bit_off + inner[2]
    return None


def _path(btf: Btf, struct_name: str, *names: str, optional: bool = False) -> int:
    """Byte offset of ``struct_name.a.b...`` (nested struct members, not pointers); -1 when
    ``optional`` and absent."""
    tid = _struct(btf, struct_name)
    total = 0
    for name in names:
        found = _member(btf, tid, name)
        if found is None:
            if optional:
                return -1
            raise ObjectFormatError(f"the headers' {struct_name} has no member {'.'.join(names)!r}")
        total += found[0]
        tid = found[1]
    return total


def _first(btf: Btf, struct_name: str, *candidates: str) -> int:
    for name in candidates:
        off = _path(btf, struct_name, name, optional=True)
        if off >= 0:
            return off
    raise ObjectFormatError(f"the headers' {struct_name} has none of {', '.join(candidates)}")


def _bits(btf: Btf, struct_name: str, state: str, name: str) -> int:
    """Bit position of bitfield ``name`` inside member ``state`` (a struct of bitfields)."""
    found = _member(btf, _struct(btf, struct_name), state)
    if found is None:
        raise ObjectFormatError(f"the headers' {struct_name} has no member {state!r}")
    inner = _member(btf, found[1], name)
    if inner is None:
        raise ObjectFormatError(f"the headers' {struct_name}.{state} has no bitfield {name!r}")
    return inner[2]


def _enum_value(btf: Btf, name: str) -> int:
    """The value of enumerator ``name`` in any enum of ``btf``, -1 when none has it."""
    for t in btf:
        if t.kind in ("enum", "enum64"):
            for ename, value in t.values:
                if ename == name:
                    return int(value)
    return -1


def offsets_from_btf(btf: Btf, version: tuple[int, int], source: str = "headers") -> PyOffsets:
    """The offsets of the CPython whose headers made ``btf`` (a file that declares pointers to
    ``_PyRuntimeState``, ``PyThreadState``, ``_PyInterpreterFrame``, ``PyCodeObject`` ...)."""
    has_cframe = _path(btf, "PyThreadState", "cframe", optional=True) >= 0
    return PyOffsets(
        version=version,
        source=source,
        runtime_interpreters_head=_path(btf, "_PyRuntimeState", "interpreters", "head"),
        interp_next=_path(btf, "PyInterpreterState", "next"),
        interp_threads_head=_path(btf, "PyInterpreterState", "threads", "head"),
        tstate_next=_path(btf, "PyThreadState", "next"),
        tstate_interp=_path(btf, "PyThreadState", "interp"),
        tstate_native_thread_id=_path(btf, "PyThreadState", "native_thread_id"),
        tstate_frame=_path(btf, "PyThreadState", "cframe" if has_cframe else "current_frame"),
        cframe_current_frame=_path(btf, "_PyCFrame", "current_frame") if has_cframe else -1,
        frame_previous=_path(btf, "_PyInterpreterFrame", "previous"),
        frame_code=_first(btf, "_PyInterpreterFrame", "f_code", "f_executable"),
        frame_is_entry=_path(btf, "_PyInterpreterFrame", "is_entry", optional=True),
        frame_owner=_path(btf, "_PyInterpreterFrame", "owner"),
        frame_owner_cstack=_enum_value(btf, "FRAME_OWNED_BY_CSTACK"),
        code_filename=_path(btf, "PyCodeObject", "co_filename"),
        code_name=_path(btf, "PyCodeObject", "co_name"),
        code_qualname=_path(btf, "PyCodeObject", "co_qualname"),
        code_firstlineno=_path(btf, "PyCodeObject", "co_firstlineno"),
        object_type=_path(btf, "PyObject", "ob_type"),
        str_length=_path(btf, "PyASCIIObject", "length"),
        str_state=_path(btf, "PyASCIIObject", "state"),
        str_ascii_data=btf.sizeof(_struct(btf, "PyASCIIObject")),
        str_compact_data=btf.sizeof(_struct(btf, "PyCompactUnicodeObject")),
        str_kind_shift=_bits(btf, "PyASCIIObject", "state", "kind"),
        str_compact_bit=_bits(btf, "PyASCIIObject", "state", "compact"),
        str_ascii_bit=_bits(btf, "PyASCIIObject", "state", "ascii"),
        free_threaded=_path(btf, "PyObject", "ob_tid", optional=True) >= 0,
    )


# ---- from _Py_DebugOffsets (3.13) -----------------------------------------------------------

DEBUG_COOKIE = b"xdebugpy"

# The layout of CPython 3.13's _Py_DebugOffsets (Include/internal/pycore_runtime.h): a cookie,
# then uint64 fields, section by section. This is the format of the block, which 3.13 keeps
# stable across its patch releases; the offsets themselves are what the interpreter wrote in it.
DEBUG_OFFSETS_313: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("", ("version", "free_threaded")),
    ("runtime_state", ("size", "finalizing", "interpreters_head")),
    ("interpreter_state", ("size", "id", "next", "threads_head", "gc", "imports_modules", "sysdict",
                           "builtins", "ceval_gil", "gil_runtime_state", "gil_runtime_state_enabled",
                           "gil_runtime_state_locked", "gil_runtime_state_holder")),
    ("thread_state", ("size", "prev", "next", "interp", "current_frame", "thread_id", "native_thread_id",
                      "datastack_chunk", "status")),
    ("interpreter_frame", ("size", "previous", "executable", "instr_ptr", "localsplus", "owner")),
    ("code_object", ("size", "filename", "name", "qualname", "linetable", "firstlineno", "argcount",
                     "localsplusnames", "localspluskinds", "co_code_adaptive")),
    ("pyobject", ("size", "ob_type")),
    ("type_object", ("size", "tp_name", "tp_repr", "tp_flags")),
    ("tuple_object", ("size", "ob_item", "ob_size")),
    ("list_object", ("size", "ob_item", "ob_size")),
    ("dict_object", ("size", "ma_keys", "ma_values")),
    ("float_object", ("size", "ob_fval")),
    ("long_object", ("size", "lv_tag", "ob_digit")),
    ("bytes_object", ("size", "ob_size", "ob_sval")),
    ("unicode_object", ("size", "state", "length", "asciiobject_size")),
    ("gc", ("size", "collecting")),
)


def debug_offsets_size() -> int:
    """Bytes of a 3.13 ``_Py_DebugOffsets`` block (cookie included)."""
    return 8 + 8 * sum(len(names) for _, names in DEBUG_OFFSETS_313)


def parse_debug_offsets(raw: bytes) -> dict[str, int]:
    """The fields of a 3.13 ``_Py_DebugOffsets`` block as ``{"section.field": value}``."""
    if len(raw) < debug_offsets_size():
        raise ObjectFormatError(f"_Py_DebugOffsets: {len(raw)} bytes, need {debug_offsets_size()}")
    if raw[:8] != DEBUG_COOKIE:
        raise ObjectFormatError(f"_Py_DebugOffsets: cookie {raw[:8]!r}, not {DEBUG_COOKIE!r}")
    values: dict[str, int] = {}
    pos = 8
    for section, names in DEBUG_OFFSETS_313:
        for name in names:
            (values[f"{section}.{name}" if section else name],) = struct.unpack_from("<Q", raw, pos)
            pos += 8
    return values


def offsets_from_debug(raw: bytes) -> PyOffsets:
    """The offsets a CPython 3.13 wrote in its ``_Py_DebugOffsets`` (the start of ``_PyRuntime``)."""
    v = parse_debug_offsets(raw)
    version = ((v["version"] >> 24) & 0xFF, (v["version"] >> 16) & 0xFF)
    if version != (3, 13):
        raise UnreadablePythonError(
            f"_Py_DebugOffsets of CPython {version[0]}.{version[1]}: pybpf reads the 3.13 layout of that block")
    for key in ("runtime_state.interpreters_head", "thread_state.current_frame", "interpreter_frame.previous",
                "code_object.qualname", "unicode_object.asciiobject_size"):
        if v[key] >= 1 << 20:
            raise ObjectFormatError(f"_Py_DebugOffsets: {key} = {v[key]} is not an offset")
    ascii_size = v["unicode_object.asciiobject_size"]
    return PyOffsets(
        version=version,
        source="_Py_DebugOffsets",
        runtime_interpreters_head=v["runtime_state.interpreters_head"],
        interp_next=v["interpreter_state.next"],
        interp_threads_head=v["interpreter_state.threads_head"],
        tstate_next=v["thread_state.next"],
        tstate_interp=v["thread_state.interp"],
        tstate_native_thread_id=v["thread_state.native_thread_id"],
        tstate_frame=v["thread_state.current_frame"],
        cframe_current_frame=-1,
        frame_previous=v["interpreter_frame.previous"],
        frame_code=v["interpreter_frame.executable"],
        frame_is_entry=-1,
        frame_owner=v["interpreter_frame.owner"],
        frame_owner_cstack=-1,   # 3.13's shim frames hold None, not a code object: skipped by type
        code_filename=v["code_object.filename"],
        code_name=v["code_object.name"],
        code_qualname=v["code_object.qualname"],
        code_firstlineno=v["code_object.firstlineno"],
        object_type=v["pyobject.ob_type"],
        str_length=v["unicode_object.length"],
        str_state=v["unicode_object.state"],
        str_ascii_data=ascii_size,
        # 3.12+ (PEP 623): PyCompactUnicodeObject = PyASCIIObject + utf8_length + utf8 pointer
        str_compact_data=ascii_size + 16,
        free_threaded=bool(v["free_threaded"]),
    )
