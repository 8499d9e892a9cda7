"""Decoding of the ``.BTF.ext`` section: func_info, line_info and CO-RE relocations.

Pure data: records carry section names and byte offsets exactly as clang wrote
them; :mod:`pybpf.spec.elf` maps them onto programs.  Layouts follow libbpf's
``struct btf_ext_header`` / ``bpf_func_info`` / ``bpf_line_info`` /
``bpf_core_relo``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pybpf.btf.types import Btf
from pybpf.errors import NotSupportedError, ObjectFormatError

__all__ = ["CoreRelo", "FuncInfo", "LineInfo", "BtfExt", "RELO_KINDS", "parse_btf_ext"]

# enum bpf_core_relo_kind, in value order.
RELO_KINDS: tuple[str, ...] = (
    "field_byte_offset", "field_byte_size", "field_exists", "field_signed",
    "field_lshift_u64", "field_rshift_u64", "type_id_local", "type_id_target",
    "type_exists", "type_size", "enumval_exists", "enumval_value", "type_matches",
)
_MAX_RECORDS = 1 << 22  # cap on records per section: a guard against absurd counts


@dataclass(frozen=True, slots=True)
class FuncInfo:
    """A ``.BTF.ext`` func_info record: the BTF FUNC of an instruction offset."""
    section: str
    insn_offset: int  # bytes from the start of the ELF section
    type_id: int  # a BTF FUNC
    name: str


@dataclass(frozen=True, slots=True)
class LineInfo:
    """A ``.BTF.ext`` line_info record: source file, line and column of an instruction."""
    section: str
    insn_offset: int
    file_name: str
    line: str  # the source line text
    line_num: int
    column: int


@dataclass(frozen=True, slots=True)
class CoreRelo:
    """A ``.BTF.ext`` CO-RE relocation: instruction, local type, access string, kind."""
    program: str  # function symbol containing the instruction ("" if none)
    section: str
    insn_offset: int
    insn_index: int
    kind: str
    type_id: int
    access: str
    path: str


@dataclass(slots=True)
class BtfExt:
    """The decoded ``.BTF.ext`` section, records grouped by ELF section."""
    func_info: list[FuncInfo]
    line_info: list[LineInfo]
    core_relos: list[CoreRelo]


def _records(data: bytes, off: int, length: int, min_rec: int, what: str, where: str
             ) -> list[tuple[int, int, int, bytes]]:
    """Walk one info block: [u32 rec_size] then {sec_name_off, num, records...}*.
    Returns (sec_name_off, rec_size, index, raw record) tuples."""
    out: list[tuple[int, int, int, bytes]] = []
    if length == 0:
        return out
    end = off + length
    if off < 0 or end > len(data) or length < 4:
        raise ObjectFormatError(f"{where}: .BTF.ext {what} block out of range")
    (rec_size,) = struct.unpack_from("<I", data, off)
    if rec_size < min_rec or rec_size % 4 or rec_size > 1024:
        raise ObjectFormatError(f"{where}: .BTF.ext {what} record size {rec_size} is invalid")
    pos = off + 4
    while pos < end:
        if pos + 8 > end:
            raise ObjectFormatError(f"{where}: .BTF.ext {what} block truncated")
        sec_off, num = struct.unpack_from("<II", data, pos)
        pos += 8
        if num > _MAX_RECORDS or pos + num * rec_size > end:
            raise ObjectFormatError(f"{where}: .BTF.ext {what} count {num} exceeds the block")
        for i in range(num):
            out.append((sec_off, rec_size, i, data[pos:pos + rec_size]))
            pos += rec_size
    return out


def _str(btf: Btf, off: int, where: str) -> str:
    try:
        return btf._str(off)
    except ObjectFormatError:
        raise ObjectFormatError(f"{where}: .BTF.ext string offset {off} out of range") from None


def access_path(btf: Btf, type_id: int, access: str, kind: str) -> str:
    """Spell an access string out: ``task_struct.real_parent``, ``enum foo::BAR``.

    Field accesses are parsed by the CO-RE engine (:func:`pybpf.btf.relo.parse_spec`, as
    libbpf parses them), so ``pybpf inspect`` and ``pybpf check`` show the same path."""
    from pybpf.btf.relo import KIND_SHORT, RelocError, parse_spec  # relo builds on types, not on ext
    if kind.startswith("type_"):
        return btf.c_name(type_id)
    if kind.startswith("enumval_"):
        try:
            idx = int(access)
        except ValueError:
            raise ObjectFormatError(f"bad CO-RE access string {access!r}") from None
        r = btf[btf.resolve(type_id)]
        if idx < 0 or idx >= len(r.values):
            raise ObjectFormatError(f"CO-RE enum access {access!r} out of range for {btf.c_name(type_id)}")
        return f"{btf.c_name(type_id)}::{r.values[idx][0]}"
    try:
        return parse_spec(btf, type_id, access, KIND_SHORT.get(kind, kind)).c_path()
    except RelocError as e:
        raise ObjectFormatError(f"CO-RE access {access!r} on {btf.c_name(type_id)}: {e.why}") from None


def parse_btf_ext(data: bytes, btf: Btf, where: str, program_at, *,  # type: ignore[no-untyped-def]
                  core_only: bool = False) -> BtfExt:
    """Decode ``.BTF.ext``; ``program_at(section, insn_offset)`` names the function.
    ``core_only``: only the CO-RE records, with their access strings as paths."""
    if len(data) < 8:
        raise ObjectFormatError(f"{where}: .BTF.ext truncated ({len(data)} bytes)")
    magic, version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
    if magic != 0xEB9F:
        raise ObjectFormatError(f"{where}: .BTF.ext has bad magic 0x{magic:04x}")
    if version != 1:
        raise ObjectFormatError(f"{where}: .BTF.ext version {version} not supported")
    if hdr_len < 24 or hdr_len > len(data):
        raise ObjectFormatError(f"{where}: .BTF.ext header length {hdr_len} out of range")
    fields = list(struct.unpack_from("<IIII", data, 8))
    fields += list(struct.unpack_from("<II", data, 24)) if hdr_len >= 32 else [0, 0]
    fi_off, fi_len, li_off, li_len, cr_off, cr_len = fields

    func_info: list[FuncInfo] = []
    if core_only:
        fi_len = li_len = 0
    for sec_off, _sz, _i, rec in _records(data, hdr_len + fi_off, fi_len, 8, "func_info", where):
        insn_off, tid = struct.unpack_from("<II", rec)
        name = btf[tid].name if 0 < tid < len(btf) else ""
        func_info.append(FuncInfo(_str(btf, sec_off, where), insn_off, tid, name))

    line_info: list[LineInfo] = []
    seen: dict[int, str] = {}  # section and file names repeat on every record

    def text(off: int) -> str:
        s = seen.get(off)
        if s is None:
            s = seen[off] = _str(btf, off, where)
        return s

    for sec_off, _sz, _i, rec in _records(data, hdr_len + li_off, li_len, 16, "line_info", where):
        insn_off, file_off, line_off, line_col = struct.unpack_from("<IIII", rec)
        line_info.append(LineInfo(text(sec_off), insn_off, text(file_off), text(line_off), line_col >> 10,
                                  line_col & 0x3FF))

    relos: list[CoreRelo] = []
    for sec_off, _sz, _i, rec in _records(data, hdr_len + cr_off, cr_len, 16, "core_relo", where):
        insn_off, tid, acc_off, kind = struct.unpack_from("<IIII", rec)
        sec = _str(btf, sec_off, where)
        if kind >= len(RELO_KINDS):
            raise ObjectFormatError(f"{where}: unknown CO-RE relocation kind {kind}")
        if not 0 < tid < len(btf):
            raise ObjectFormatError(f"{where}: CO-RE relocation type id {tid} out of range")
        kname = RELO_KINDS[kind]
        access = _str(btf, acc_off, where)
        try:
            path = access if core_only else access_path(btf, tid, access, kname)
        except NotSupportedError:
            path = access
        relos.append(CoreRelo(program_at(sec, insn_off), sec, insn_off, insn_off // 8, kname,
                              tid, access, path))
    return BtfExt(func_info, line_info, relos)
