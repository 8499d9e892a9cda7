"""What a ``.bpf.o`` contains, read purely from its ELF, ``.BTF`` and ``.BTF.ext``.

This module owns the *spec layer*: programs (with the program type libbpf
would infer from ``SEC()``), BTF-defined maps and the internal
``.bss/.data/.rodata`` maps, global variables with their initial bytes, and
CO-RE relocation / func / line records.  It never opens a bpf fd, never calls
libbpf and works as any user.  Every malformed input becomes
:class:`pybpf.errors.ObjectFormatError` naming the file.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

try:  # BLAKE2 is built into CPython: hashlib would also load OpenSSL's libcrypto (3 MiB)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a CPython built without it
    from hashlib import blake2b

from pybpf.btf.types import Btf, read_file
from pybpf.btf.ext import RELO_KINDS, BtfExt, CoreRelo, FuncInfo, LineInfo, parse_btf_ext
from pybpf.errors import BpfError, ObjectFormatError
from pybpf.spec.elfheader import EM_BPF, check_elf_header  # noqa: F401 (EM_BPF: its name here as before)
from pybpf.kinds import MapFlag, MapType, ProgType

__all__ = [
    "CoreRelo", "FuncInfo", "GlobalSpec", "LineInfo", "MapSpec", "ObjectSpec", "ProgramSpec",
    "RELO_KINDS", "check_elf_header", "inspect", "section_program_type",
]


# libbpf's section_defs (1.1, plus a few later ones), same order and matching rules:
# "x+" matches "x" or "x/..."; "x/" matches any "x/..."; otherwise an exact match.
# (prefix, prog_type, expected_attach_type or None, sleepable)
_SEC_DEFS: tuple[tuple[str, str, str | None, bool], ...] = (
    ("socket", "socket_filter", None, False),
    ("sk_reuseport/migrate", "sk_reuseport", "sk_reuseport_select_or_migrate", False),
    ("sk_reuseport", "sk_reuseport", "sk_reuseport_select", False),
    ("kprobe+", "kprobe", None, False),
    ("uprobe+", "kprobe", None, False),
    ("uprobe.s+", "kprobe", None, True),
    ("kretprobe+", "kprobe", None, False),
    ("uretprobe+", "kprobe", None, False),
    ("uretprobe.s+", "kprobe", None, True),
    ("kprobe.multi+", "kprobe", "trace_kprobe_multi", False),
    ("kretprobe.multi+", "kprobe", "trace_kprobe_multi", False),
    ("uprobe.multi+", "kprobe", "trace_uprobe_multi", False),
    ("uretprobe.multi+", "kprobe", "trace_uprobe_multi", False),
    ("ksyscall+", "kprobe", None, False),
    ("kretsyscall+", "kprobe", None, False),
    ("usdt+", "kprobe", None, False),
    ("tc/ingress", "sched_cls", "tcx_ingress", False),
    ("tc/egress", "sched_cls", "tcx_egress", False),
    ("tcx/ingress", "sched_cls", "tcx_ingress", False),
    ("tcx/egress", "sched_cls", "tcx_egress", False),
    ("tc", "sched_cls", None, False),
    ("classifier", "sched_cls", None, False),
    ("action", "sched_act", None, False),
    ("tracepoint+", "tracepoint", None, False),
    ("tp+", "tracepoint", None, False),
    ("raw_tracepoint+", "raw_tracepoint", None, False),
    ("raw_tp+", "raw_tracepoint", None, False),
    ("raw_tracepoint.w+", "raw_tracepoint_writable", None, False),
    ("raw_tp.w+", "raw_tracepoint_writable", None, False),
    ("tp_btf+", "tracing", "trace_raw_tp", False),
    ("fentry+", "tracing", "trace_fentry", False),
    ("fmod_ret+", "tracing", "modify_return", False),
    ("fexit+", "tracing", "trace_fexit", False),
    ("fentry.s+", "tracing", "trace_fentry", True),
    ("fmod_ret.s+", "tracing", "modify_return", True),
    ("fexit.s+", "tracing", "trace_fexit", True),
    ("freplace+", "ext", None, False),
    ("lsm+", "lsm", "lsm_mac", False),
    ("lsm.s+", "lsm", "lsm_mac", True),
    ("lsm_cgroup+", "lsm", "lsm_cgroup", False),
    ("iter+", "tracing", "trace_iter", False),
    ("iter.s+", "tracing", "trace_iter", True),
    ("syscall", "syscall", None, True),
    ("xdp.frags/devmap", "xdp", "xdp_devmap", False),
    ("xdp/devmap", "xdp", "xdp_devmap", False),
    ("xdp.frags/cpumap", "xdp", "xdp_cpumap", False),
    ("xdp/cpumap", "xdp", "xdp_cpumap", False),
    ("xdp.frags", "xdp", "xdp", False),
    ("xdp", "xdp", "xdp", False),
    ("perf_event", "perf_event", None, False),
    ("lwt_in", "lwt_in", None, False),
    ("lwt_out", "lwt_out", None, False),
    ("lwt_xmit", "lwt_xmit", None, False),
    ("lwt_seg6local", "lwt_seg6local", None, False),
    ("sockops", "sock_ops", "cgroup_sock_ops", False),
    ("sk_skb/stream_parser", "sk_skb", "sk_skb_stream_parser", False),
    ("sk_skb/stream_verdict", "sk_skb", "sk_skb_stream_verdict", False),
    ("sk_skb", "sk_skb", None, False),
    ("sk_msg", "sk_msg", "sk_msg_verdict", False),
    ("lirc_mode2", "lirc_mode2", "lirc_mode2", False),
    ("flow_dissector", "flow_dissector", "flow_dissector", False),
    ("cgroup_skb/ingress", "cgroup_skb", "cgroup_inet_ingress", False),
    ("cgroup_skb/egress", "cgroup_skb", "cgroup_inet_egress", False),
    ("cgroup/skb", "cgroup_skb", None, False),
    ("cgroup/sock_create", "cgroup_sock", "cgroup_inet_sock_create", False),
    ("cgroup/sock_release", "cgroup_sock", "cgroup_inet_sock_release", False),
    ("cgroup/sock", "cgroup_sock", "cgroup_inet_sock_create", False),
    ("cgroup/post_bind4", "cgroup_sock", "cgroup_inet4_post_bind", False),
    ("cgroup/post_bind6", "cgroup_sock", "cgroup_inet6_post_bind", False),
    ("cgroup/bind4", "cgroup_sock_addr", "cgroup_inet4_bind", False),
    ("cgroup/bind6", "cgroup_sock_addr", "cgroup_inet6_bind", False),
    ("cgroup/connect4", "cgroup_sock_addr", "cgroup_inet4_connect", False),
    ("cgroup/connect6", "cgroup_sock_addr", "cgroup_inet6_connect", False),
    ("cgroup/sendmsg4", "cgroup_sock_addr", "cgroup_udp4_sendmsg", False),
    ("cgroup/sendmsg6", "cgroup_sock_addr", "cgroup_udp6_sendmsg", False),
    ("cgroup/recvmsg4", "cgroup_sock_addr", "cgroup_udp4_recvmsg", False),
    ("cgroup/recvmsg6", "cgroup_sock_addr", "cgroup_udp6_recvmsg", False),
    ("cgroup/getpeername4", "cgroup_sock_addr", "cgroup_inet4_getpeername", False),
    ("cgroup/getpeername6", "cgroup_sock_addr", "cgroup_inet6_getpeername", False),
    ("cgroup/getsockname4", "cgroup_sock_addr", "cgroup_inet4_getsockname", False),
    ("cgroup/getsockname6", "cgroup_sock_addr", "cgroup_inet6_getsockname", False),
    ("cgroup/sysctl", "cgroup_sysctl", "cgroup_sysctl", False),
    ("cgroup/getsockopt", "cgroup_sockopt", "cgroup_getsockopt", False),
    ("cgroup/setsockopt", "cgroup_sockopt", "cgroup_setsockopt", False),
    ("cgroup/dev", "cgroup_device", "cgroup_device", False),
    ("struct_ops+", "struct_ops", None, False),
    ("struct_ops.s+", "struct_ops", None, True),
    ("sk_lookup", "sk_lookup", "sk_lookup", False),
    ("netfilter", "netfilter", "netfilter", False),
)


def section_program_type(section: str) -> tuple[str | None, str | None, str | None, bool]:
    """(prog_type, expected_attach_type, attach_target, sleepable) for a SEC() name,
    using libbpf's matching rules; (None, None, None, False) if libbpf wouldn't know it."""
    for pfx, ptype, atype, sleepable in _SEC_DEFS:
        if pfx.endswith("+"):
            p = pfx[:-1]
            if section == p:
                return ptype, atype, None, sleepable
            if section.startswith(p + "/"):
                return ptype, atype, section[len(p) + 1:] or None, sleepable
        elif pfx.endswith("/"):
            if section.startswith(pfx):
                return ptype, atype, section[len(pfx):] or None, sleepable
        elif section == pfx:
            return ptype, atype, None, sleepable
    return None, None, None, False


@dataclass(slots=True)
class ProgramSpec:
    """A program as the ELF declares it (type inferred from ``SEC()`` as libbpf would)."""
    name: str
    section: str
    prog_type: str | None  # None: a section libbpf has no definition for
    expected_attach_type: str | None
    attach_target: str | None
    insn_offset: int  # bytes from the start of the section
    insn_count: int
    license: str
    sleepable: bool = False
    insns: bytes = b""

    @property
    def prog_type_id(self) -> int:
        """The program type's number (0 when libbpf would not know the section)."""
        return int(ProgType.parse(self.prog_type)) if self.prog_type else 0

    @property
    def insn_index(self) -> int:
        """Index of the program's first instruction in its section."""
        return self.insn_offset // 8


@dataclass(slots=True)
class MapSpec:
    """A map as the ELF declares it (a BTF-defined map or an internal data map)."""
    name: str
    type: str
    type_id: int  # numeric BPF_MAP_TYPE_*
    key_size: int = 0
    value_size: int = 0
    max_entries: int = 0
    flags: int = 0
    key_type_id: int = 0  # BTF ids; 0 when given by size only
    value_type_id: int = 0
    pinning: str = "none"
    numa_node: int = 0
    map_extra: int = 0
    inner: MapSpec | None = None
    internal: bool = False
    section: str = ".maps"

    @property
    def flag_names(self) -> list[str]:
        """The names of the map's flags."""
        return MapFlag.names(self.flags)


@dataclass(slots=True)
class GlobalSpec:
    """A global variable: its section, size, initial bytes and linkage."""
    section: str
    name: str
    type_id: int
    type_name: str
    offset: int
    size: int
    initial: bytes
    linkage: str


@dataclass(frozen=True)
class StructOpsSpec:
    """A struct_ops map (``SEC(".struct_ops")`` or ``SEC(".struct_ops.link")``): the kernel ops
    type it implements, and the members the object sets: ``programs`` (member -> BPF program)
    and ``data`` (member -> initial value, for the non-zero ones; a string for char arrays)."""

    name: str
    ops_type: str
    section: str
    size: int
    programs: dict[str, str]
    data: dict[str, int | str]

    @property
    def link(self) -> bool:
        """Registered through a bpf_link (updatable in place)."""
        return self.section == ".struct_ops.link"


@dataclass(slots=True)
class _Section:
    index: int
    name: str
    type: str
    flags: int
    offset: int
    size: int
    data: bytes


def _fail(where: str, msg: str) -> ObjectFormatError:
    return ObjectFormatError(f"{where}: {msg}", path=where or None)


_SHT_NAMES = {0: "SHT_NULL", 1: "SHT_PROGBITS", 2: "SHT_SYMTAB", 3: "SHT_STRTAB", 4: "SHT_RELA",
              5: "SHT_HASH", 6: "SHT_DYNAMIC", 7: "SHT_NOTE", 8: "SHT_NOBITS", 9: "SHT_REL",
              11: "SHT_DYNSYM", 14: "SHT_INIT_ARRAY", 15: "SHT_FINI_ARRAY", 17: "SHT_GROUP",
              18: "SHT_SYMTAB_SHNDX"}  # what pyelftools names (others: the number)
_SHN_SPECIAL = (0, 0xFFF1, 0xFFF2)  # UNDEF, ABS, COMMON: not a section index
_SHDR = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr
_SYM = struct.Struct("<IBBHQQ")       # Elf64_Sym


def _cstr(table: bytes, off: int, where: str, what: str) -> str:
    if not 0 <= off < len(table):
        if off == 0 and not table:
            return ""
        raise _fail(where, f"{what}: name offset {off} is outside its string table ({len(table)} bytes)")
    end = table.find(b"\0", off)
    if end < 0:
        raise _fail(where, f"{what}: name at offset {off} is not NUL-terminated")
    try:
        return table[off:end].decode("utf-8")
    except UnicodeDecodeError:
        shown = table[off:end].decode("utf-8", "replace")
        raise _fail(where, f"{what} has a name that is not UTF-8 ({shown!r})") from None


def _read_sections(data: bytes, where: str) -> tuple[list[_Section], list[tuple[str, int, int, int, int, int]]]:
    """All sections, and symbols as (name, value, size, type, bind, shndx).

    A direct ``struct`` reader of the ELF64 little-endian section and symbol
    tables (pyelftools took 5-8 ms per object, most of pybpf's open+load
    overhead): every offset and size is checked against the file first."""
    (shoff,) = struct.unpack_from("<Q", data, 40)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 58)
    if shoff == 0:
        return [], []
    if shentsize != _SHDR.size:
        raise _fail(where, f"section header size {shentsize} is not {_SHDR.size}")
    if shoff + _SHDR.size > len(data):
        raise _fail(where, f"section headers at {shoff} run past the end of the file ({len(data)} bytes)")
    first = _SHDR.unpack_from(data, shoff)
    if shnum == 0:      # extended numbering: the count is in section 0's sh_size
        shnum = first[5]
    if shstrndx == 0xFFFF:  # SHN_XINDEX: the index is in section 0's sh_link
        shstrndx = first[6]
    if shoff + shnum * _SHDR.size > len(data):
        raise _fail(where, f"{shnum} section headers at {shoff} run past the end of the file "
                           f"({len(data)} bytes)")
    headers = [_SHDR.unpack_from(data, shoff + i * _SHDR.size) for i in range(shnum)]
    if not 0 <= shstrndx < shnum:
        raise _fail(where, f"section name table index {shstrndx} out of range ({shnum} sections)")

    def body(h: tuple) -> bytes:
        if h[1] in (0, 8):  # SHT_NULL, SHT_NOBITS
            return b""
        return data[h[4]:h[4] + h[5]]

    for i, h in enumerate(headers):
        if h[1] != 8 and h[4] + h[5] > len(data):
            raise _fail(where, f"section {i} ({h[4]}+{h[5]}) runs past the end of the file")
    shstrtab = body(headers[shstrndx])
    secs: list[_Section] = []
    symtab = None
    for i, h in enumerate(headers):
        name = _cstr(shstrtab, h[0], where, f"section [{i}]")
        stype = _SHT_NAMES.get(h[1], h[1])
        secs.append(_Section(i, name, str(stype), h[2], h[4], h[5], body(h)))
        if h[1] == 2:
            symtab = h
    syms: list[tuple[str, int, int, int, int, int]] = []
    if symtab is not None:
        if symtab[9] != _SYM.size:
            raise _fail(where, f"symbol table entry size {symtab[9]} is not {_SYM.size}")
        link = symtab[6]
        if not 0 <= link < shnum:
            raise _fail(where, f"symbol table's string table index {link} out of range ({shnum} sections)")
        strtab = body(headers[link])
        raw = data[symtab[4]:symtab[4] + symtab[5] - symtab[5] % _SYM.size]
        for n, (st_name, info, _other, shndx, value, size) in enumerate(_SYM.iter_unpack(raw)):
            typ, bind = info & 0xF, info >> 4
            syms.append((_cstr(strtab, st_name, where, f"symbol {n}"), value, size,
                         typ if typ <= 3 else -1, bind if bind <= 2 else -1,
                         -1 if shndx in _SHN_SPECIAL else shndx))
    return secs, syms


_SYM_TYPES = {"STT_NOTYPE": 0, "STT_OBJECT": 1, "STT_FUNC": 2, "STT_SECTION": 3}
_SYM_BINDS = {"STB_LOCAL": 0, "STB_GLOBAL": 1, "STB_WEAK": 2}
_STT_OBJECT, _STT_FUNC, _STB_LOCAL = 1, 2, 0
_SHF_ALLOC, _SHF_EXECINSTR = 0x2, 0x4


def _guard(where: str, fn, *args):  # type: ignore[no-untyped-def]
    """Run an ELF-reading step, turning any foreign exception into ObjectFormatError."""
    try:
        return fn(*args)
    except BpfError:
        raise
    except RecursionError:
        raise _fail(where, "corrupted object (structure nests too deeply)") from None
    except Exception as e:  # pyelftools raises many types on corrupt input
        raise _fail(where, f"corrupted ELF ({type(e).__name__}: {e})") from None


# Digests of object files whose BTF passed validate() in this process (validation is most of the
# pure parse of a CO-RE object: 1-7 ms; a re-open of the same bytes skips it).
_VALIDATED: set[bytes] = set()
_VALIDATED_MAX = 1024


KCONFIG = ".kconfig"


def _kconfig_layout(btf: Btf) -> dict[str, tuple[int, int]]:
    """(offset, size) of each ``__kconfig`` extern in the map libbpf builds for them: sorted by
    alignment (largest first), then size (smallest first), then name; each aligned in turn."""
    entries = []
    for v in btf.datasec(KCONFIG):
        size = btf.sizeof(v.type_id)
        try:
            align = max(btf.alignof(v.type_id), 1)  # libbpf's btf__align_of (no numpy)
        except (BpfError, RecursionError):
            align = 1
        entries.append((-align, size, v.name, align))
    layout: dict[str, tuple[int, int]] = {}
    offset = 0
    for _neg, size, name, align in sorted(entries):
        offset = (offset + align - 1) // align * align
        layout[name] = (offset, size)
        offset += size
    return layout


def _is_data_section(name: str) -> bool:
    return name in (".bss", ".data", ".rodata") or name.startswith((".data.", ".rodata."))


class ObjectSpec:
    """Everything a BPF object declares, parsed without loading it."""

    def __init__(self, data: bytes, name: str = "", path: str | None = None, *, validate: bool = True,
                 core_only: bool = False) -> None:
        self.path = path
        self._validate = validate
        self._core_only = core_only
        where = path or name or "<bytes>"
        self._where = where
        self.name = name or (os.path.basename(path).split(".")[0] if path else "")
        data = bytes(data)
        # the verdict of the BTF validation is a function of these bytes alone: cached per process
        self._digest = blake2b(data, digest_size=16).digest()
        check_elf_header(data, where)
        secs, syms = _guard(where, _read_sections, data, where)
        self.sections = {s.name: s for s in secs}
        self._secs = secs
        self._syms = syms
        lic = self.sections.get("license")
        self.license = lic.data.split(b"\0", 1)[0].decode("utf-8", "replace") if lic else ""
        btf_sec = self.sections.get(".BTF")
        self.btf: Btf | None = None
        if btf_sec is not None:
            try:
                self.btf = Btf.from_bytes(btf_sec.data, name=where)
            except ObjectFormatError as e:
                raise _fail(where, f".BTF section: {e}") from None
            self._fix_datasecs()
        self.programs: list[ProgramSpec] = self._programs()
        self.maps: list[MapSpec] = []
        self.globals: list[GlobalSpec] = []
        self.func_info: list[FuncInfo] = []
        self.line_info: list[LineInfo] = []
        self.core_relocations: list[CoreRelo] = []
        self.struct_ops: list[StructOpsSpec] = []
        self._btf_guard(self._parse_btf_parts)

    # ---- construction helpers ----------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, validate: bool = True, core_only: bool = False
                  ) -> ObjectSpec:
        """The spec of the object file at ``path``. ``validate=False`` skips checking its BTF to
        the kernel's rules, ``core_only`` reads only what CO-RE relocation needs (programs, BTF,
        relocation records; no maps, globals, line info or access paths): both only for
        callers that never hand the object to libbpf (``btf min``)."""
        p = os.fspath(path)
        return cls(read_file(p, check=lambda head: check_elf_header(head, p), what="BPF object"), path=p,
                   validate=validate, core_only=core_only)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "") -> ObjectSpec:
        """The spec of an object image in memory."""
        return cls(data, name=name)

    def _btf_guard(self, fn) -> None:  # type: ignore[no-untyped-def]
        try:
            fn()
        except BpfError as e:
            if isinstance(e, ObjectFormatError) and str(e).startswith(self._where):
                raise
            raise _fail(self._where, str(e)) from None
        except (IndexError, KeyError, ValueError, struct.error, RecursionError) as e:
            raise _fail(self._where, f"corrupted BTF ({type(e).__name__}: {e})") from None

    def _fix_datasecs(self) -> None:
        """Give DATASECs their ELF section sizes and symbol offsets, as libbpf does."""
        assert self.btf is not None
        names = set(self.btf.datasecs())
        for sname in names:
            sec = self.sections.get(sname)
            if sec is None:
                continue
            offs = {n: v for n, v, _sz, typ, _b, shndx in self._syms
                    if shndx == sec.index and typ == _STT_OBJECT}
            self.btf.fix_datasec(sname, sec.size, offs)
        if KCONFIG in names:
            self._kconfig_layout = _kconfig_layout(self.btf)
            size = max((off + sz for off, sz in self._kconfig_layout.values()), default=0)
            self.btf.fix_datasec(KCONFIG, size, {n: off for n, (off, _sz) in self._kconfig_layout.items()})

    def _programs(self) -> list[ProgramSpec]:
        progs: list[ProgramSpec] = []
        for name, value, size, typ, bind, shndx in self._syms:
            if typ != _STT_FUNC or not 0 <= shndx < len(self._secs):
                continue
            sec = self._secs[shndx]
            if not sec.flags & _SHF_EXECINSTR or sec.name == ".text" or bind == _STB_LOCAL:
                continue  # .text functions and static functions are subprograms
            if size == 0:
                size = max(sec.size - value, 0)
            if value + size > sec.size:
                raise _fail(self._where, f"program {name!r} ({value}+{size}) exceeds "
                                         f"section {sec.name!r}")
            ptype, atype, target, sleepable = section_program_type(sec.name)
            progs.append(ProgramSpec(name, sec.name, ptype, atype, target, value, size // 8,
                                     self.license, sleepable, sec.data[value:value + size]))
        progs.sort(key=lambda p: (self.sections[p.section].index, p.insn_offset))
        return progs

    def function_at(self, section: str, insn_offset: int) -> str:
        """Name of the function symbol (program or subprogram) covering an instruction."""
        sec = self.sections.get(section)
        if sec is None:
            return ""
        best = ""
        for name, value, size, typ, _b, shndx in self._syms:
            if typ == _STT_FUNC and shndx == sec.index and value <= insn_offset < value + max(size, 1):
                return name
            if typ == _STT_FUNC and shndx == sec.index and size == 0 and value <= insn_offset:
                best = name
        return best

    def _parse_btf_parts(self) -> None:
        # libbpf trusts the BTF it parses (a bitfield on an array divides by zero in CO-RE):
        # the kernel's BTF rules first, on the DATASECs as libbpf will fix them up.
        if self.btf is not None and self._validate and self._digest not in _VALIDATED:
            self.btf.validate()
            if len(_VALIDATED) >= _VALIDATED_MAX:
                _VALIDATED.clear()
            _VALIDATED.add(self._digest)
        # libbpf's order: BTF-defined maps, then internal maps in section order.
        if self.btf is not None and not self._core_only:
            self._btf_maps()
        if not self._core_only:
            self._internal_maps()
        if self.btf is None:
            return
        if not self._core_only:
            self._globals()
            self._struct_ops()
        ext = self.sections.get(".BTF.ext")
        if ext is not None:
            parsed: BtfExt = parse_btf_ext(ext.data, self.btf, self._where, self.function_at,
                                           core_only=self._core_only)
            self.func_info, self.line_info = parsed.func_info, parsed.line_info
            self.core_relocations = parsed.core_relos

    # ---- maps --------------------------------------------------------------------------
    def _internal_maps(self) -> None:
        for sec in self._secs:
            if not _is_data_section(sec.name) or not sec.flags & _SHF_ALLOC or sec.size == 0:
                continue
            vt = 0
            if self.btf is not None:
                try:
                    vt = self.btf._datasec_id(sec.name)
                except KeyError:
                    vt = 0
            ro = sec.name.startswith(".rodata")
            self.maps.append(MapSpec(sec.name, "array", 2, 4, sec.size, 1,
                                     (MapFlag.RDONLY_PROG if ro else 0) | MapFlag.MMAPABLE,
                                     0, vt, internal=True, section=sec.name))
        layout = getattr(self, "_kconfig_layout", None)
        if layout and self.btf is not None:  # libbpf makes this map for the __kconfig externs
            size = max(off + sz for off, sz in layout.values())
            self.maps.append(MapSpec(KCONFIG, "array", 2, 4, size, 1, MapFlag.RDONLY_PROG | MapFlag.MMAPABLE, 0,
                                     self.btf._datasec_id(KCONFIG), internal=True, section=KCONFIG))

    def _btf_maps(self) -> None:
        btf = self.btf
        assert btf is not None
        if ".maps" not in btf.datasecs():
            return
        for var in btf.datasec(".maps"):
            self.maps.append(self._map_from_def(var.name, var.type_id, 0))

    def _map_from_def(self, name: str, tid: int, depth: int) -> MapSpec:
        btf = self.btf
        assert btf is not None
        if depth > 2:
            raise _fail(self._where, f"map {name!r}: inner maps nest too deeply")
        st = btf[btf.resolve(tid)]
        if st.kind != "struct":
            raise _fail(self._where, f"map {name!r} is a {st.kind}, not a struct definition")
        ints: dict[str, int] = {}
        m = MapSpec(name, "unspec", 0)
        for mname, mtype, _off, _bf in st.members:
            t = btf[btf.resolve(mtype)]
            if mname in ("key", "value"):
                if t.kind != "ptr":
                    raise _fail(self._where, f"map {name!r}: {mname} is not a pointer type")
                setattr(m, f"{mname}_type_id", t.type or 0)
                setattr(m, f"{mname}_size", btf.sizeof(t.type or 0))
            elif mname == "values":
                # __array(values, struct inner): a zero-length array of pointers.
                if t.kind != "array":
                    raise _fail(self._where, f"map {name!r}: values is not an array")
                p = btf[btf.resolve(t.type or 0)]
                target = btf[btf.resolve(p.type or 0)] if p.kind == "ptr" else None
                if target is not None and target.kind == "struct":
                    m.inner = self._map_from_def(name + ".inner", target.id, depth + 1)
            elif t.kind == "ptr":
                arr = btf[btf.resolve(t.type or 0)]
                if arr.kind != "array":
                    raise _fail(self._where, f"map {name!r}: {mname} is not __uint()-encoded")
                ints[mname] = arr.nelems
            elif t.kind in ("enum", "enum64") and t.values:  # newer __ulong() encoding
                ints[mname] = t.values[0][1]
        if "key_size" in ints and not m.key_type_id:
            m.key_size = ints["key_size"]
        if "value_size" in ints and not m.value_type_id:
            m.value_size = ints["value_size"]
        m.type_id = ints.get("type", 0)
        m.type = MapType.name_of(m.type_id)
        m.max_entries = ints.get("max_entries", 0)
        m.flags = ints.get("map_flags", 0)
        m.numa_node = ints.get("numa_node", 0)
        m.map_extra = ints.get("map_extra", 0)
        pin = ints.get("pinning", 0)
        m.pinning = {0: "none", 1: "by_name"}.get(pin, f"unknown({pin})")
        if m.inner is not None and m.type in ("array_of_maps", "hash_of_maps") and not m.value_size:
            m.value_size = 4  # inner map fds
        return m

    def _struct_ops(self) -> None:
        btf = self.btf
        assert btf is not None
        for section in (".struct_ops", ".struct_ops.link"):
            sec = self.sections.get(section)
            if sec is None or section not in btf.datasecs():
                continue
            # which program each function-pointer slot points at: the section's relocations
            targets: dict[int, str] = {}
            rel = self.sections.get(".rel" + section)
            if rel is not None:
                for r_offset, r_info in struct.iter_unpack("<QQ", rel.data[:len(rel.data) - len(rel.data) % 16]):
                    index = r_info >> 32
                    if 0 < index < len(self._syms):
                        targets[r_offset] = self._syms[index][0]
            for var in btf.datasec(section):
                ops = btf[btf.resolve(var.type_id)]
                programs: dict[str, str] = {}
                data: dict[str, int | str] = {}
                for mname, mtype, bit_off, bits in ops.members or []:
                    where = var.offset + bit_off // 8
                    target = btf[btf.resolve(mtype)]
                    if where in targets and target.kind == "ptr":
                        programs[mname] = targets[where]
                        continue
                    size = btf.sizeof(mtype) if not bits else 0
                    raw = sec.data[where:where + size] if sec.data else b""
                    if not raw.strip(b"\0"):
                        continue
                    if target.kind == "array" and size == target.nelems:  # char name[16]
                        data[mname] = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
                    else:
                        data[mname] = int.from_bytes(raw, "little")
                self.struct_ops.append(StructOpsSpec(var.name, ops.name, section, var.size, programs, data))

    # ---- globals -----------------------------------------------------------------------
    def _globals(self) -> None:
        btf = self.btf
        assert btf is not None
        for dsname in btf.datasecs():
            if dsname == KCONFIG:  # externs: libbpf fills them at load from the kernel's config
                for v in btf.datasec(dsname):
                    self.globals.append(GlobalSpec(dsname, v.name, v.type_id, btf.c_name(v.type_id),
                                                   v.offset, v.size, b"", "extern"))
                continue
            if not _is_data_section(dsname):
                continue
            sec = self.sections.get(dsname)
            for v in btf.datasec(dsname):
                if sec is None:
                    initial = bytes(v.size)
                elif sec.type == "SHT_NOBITS":
                    if v.offset + v.size > sec.size:
                        raise _fail(self._where, f"variable {v.name!r} ({v.offset}+{v.size}) "
                                                 f"exceeds section {dsname!r}")
                    initial = bytes(v.size)
                else:
                    if v.offset + v.size > len(sec.data):
                        raise _fail(self._where, f"variable {v.name!r} ({v.offset}+{v.size}) "
                                                 f"exceeds section {dsname!r}")
                    initial = sec.data[v.offset:v.offset + v.size]
                self.globals.append(GlobalSpec(dsname, v.name, v.type_id, btf.c_name(v.type_id),
                                               v.offset, v.size, initial, v.linkage))

    # ---- queries -----------------------------------------------------------------------
    def program(self, name: str) -> ProgramSpec:
        """The program called ``name`` (KeyError if none)."""
        for p in self.programs:
            if p.name == name:
                return p
        raise KeyError(f"no program {name!r}")

    def map(self, name: str) -> MapSpec:
        """The map called ``name`` (KeyError if none)."""
        for m in self.maps:
            if m.name == name:
                return m
        raise KeyError(f"no map {name!r}")

    def global_(self, name: str) -> GlobalSpec:
        """The global variable called ``name`` (KeyError if none)."""
        for g in self.globals:
            if g.name == name:
                return g
        raise KeyError(f"no global variable {name!r}")

    def source_line(self, section: str, insn_offset: int) -> str | None:
        """Source text of the line info covering ``insn_offset`` (bytes) in ``section``."""
        best: LineInfo | None = None
        for li in self.line_info:
            if li.section == section and li.insn_offset <= insn_offset:
                if best is None or li.insn_offset >= best.insn_offset:
                    best = li
        return best.line if best is not None else None

    def btf_summary(self) -> dict[str, int]:
        """Type counts by kind (empty without BTF)."""
        return self.btf.kind_counts() if self.btf is not None else {}

    def __repr__(self) -> str:
        return (f"<ObjectSpec {self.name!r}: {len(self.programs)} programs, {len(self.maps)} maps, "
                f"{len(self.globals)} globals>")


def inspect(obj: str | os.PathLike[str] | bytes | bytearray | memoryview, name: str = "") -> ObjectSpec:
    """ObjectSpec of a path or of the bytes of an object."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return ObjectSpec.from_bytes(bytes(obj), name)
    return ObjectSpec.from_file(obj)

