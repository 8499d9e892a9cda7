"""USDT (SystemTap SDT) probes of an ELF file, read purely from its ``.note.stapsdt`` notes.

This module owns the parsing of USDT probe notes: provider, name, the probe's
address (adjusted for prelinking through ``.stapsdt.base``), the semaphore
(the ``_ENABLED()`` counter a tracer bumps), their file offsets, and each
argument spec (``-4@%eax``, ``8@-16(%rbp)``, ``-8@$42``) decoded into size,
signedness, register and offset the way libbpf's USDT attach decodes them.
It reads files with pyelftools only: no kernel, no libbpf, any user.
"""

from __future__ import annotations

import errno
import os
import re
import struct
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from pybpf.errors import BpfError, ObjectFormatError

__all__ = [
    "UsdtArg",
    "UsdtArgError",
    "UsdtProbe",
    "describe_probes",
    "mapped_files",
    "parse_arg",
    "parse_args",
    "process_files",
    "process_probes",
    "read_probes",
]

NT_STAPSDT = 3
_NOTE_NAME = b"stapsdt"

# every x86-64 register spelling the compiler may use in an arg spec -> its pt_regs name
_REG64 = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp")
_REGISTERS: dict[str, str] = {"rip": "rip"}
for _r in _REG64:
    _base = _r[1:]  # ax, bx, ..., sp
    _REGISTERS[_r] = _r
    _REGISTERS["e" + _base] = _r
    _REGISTERS[_base] = _r
    if _base.endswith("x"):
        _REGISTERS[_base[0] + "l"] = _r  # al, bl, cl, dl
        _REGISTERS[_base[0] + "h"] = _r  # ah, bh, ch, dh (libbpf refuses these; kept for listing)
    else:
        _REGISTERS[_base + "l"] = _r  # sil, dil, bpl, spl
for _n in range(8, 16):
    for _suffix in ("", "d", "w", "b"):
        _REGISTERS[f"r{_n}{_suffix}"] = f"r{_n}"

_ARG_RE = re.compile(r"^(?:(?P<sign>-?)(?P<size>\d+)@)?(?P<operand>.+)$")
_DEREF_RE = re.compile(r"^(?P<off>[-+]?(?:0x[0-9a-fA-F]+|\d+))?\(%(?P<reg>[a-z0-9]+)\)$")
_REG_RE = re.compile(r"^%(?P<reg>[a-z0-9]+)$")
_CONST_RE = re.compile(r"^\$(?P<value>[-+]?(?:0x[0-9a-fA-F]+|\d+))$")


class UsdtArgError(ObjectFormatError):
    """An argument spec that is not one of the forms a USDT attach can read."""


@dataclass(frozen=True)
class UsdtArg:
    """One decoded argument spec: ``kind`` is ``reg`` (value in a register),
    ``reg_deref`` (value at ``register + offset``) or ``const`` (``offset`` is the value)."""

    spec: str
    size: int
    signed: bool
    kind: str
    register: str | None
    offset: int

    @property
    def c_type(self) -> str:
        """The C integer type the argument reads back as (``int32_t``, ``uint64_t``...)."""
        return f"{'' if self.signed else 'u'}int{self.size * 8}_t"


@dataclass(frozen=True)
class UsdtProbe:
    """One USDT probe note of one ELF file.

    ``address`` is the probe's virtual address (after the ``.stapsdt.base`` adjustment),
    ``offset`` its file offset (what a uprobe is placed on); ``semaphore`` is the
    semaphore's virtual address (0: none) and ``semaphore_offset`` its file offset
    (the uprobe ``ref_ctr_offset``)."""

    path: str
    provider: str
    name: str
    address: int
    offset: int
    base: int
    semaphore: int
    semaphore_offset: int
    args_spec: str
    args: tuple[UsdtArg, ...]
    # the file the probe was read from when that is not ``path``: /proc/PID/exe or
    # /proc/PID/map_files/..., the very inode a process runs (its binary may be replaced on disk)
    source: str = field(default="", compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The probe as plain data (``pybpf usdt list --json``)."""
        out = asdict(self)
        del out["source"]
        out["args"] = [asdict(arg) | {"c_type": arg.c_type} for arg in self.args]
        return out


def _int(text: str) -> int:
    return int(text, 0)


def parse_arg(spec: str) -> UsdtArg:
    """Decode one x86-64 argument spec such as ``-4@%eax``, ``8@-16(%rbp)``, ``4@$7``."""
    match = _ARG_RE.match(spec.strip())
    if match is None:
        raise UsdtArgError(f"USDT argument spec {spec!r} is not SIZE@OPERAND")
    size = int(match["size"]) if match["size"] else 8
    signed = bool(match["sign"])
    if size not in (1, 2, 4, 8):
        raise UsdtArgError(f"USDT argument spec {spec!r}: size {size} is not 1, 2, 4 or 8")
    operand = match["operand"]
    if (m := _REG_RE.match(operand)) is not None:
        kind, reg_name, offset = "reg", m["reg"], 0
    elif (m := _DEREF_RE.match(operand)) is not None:
        kind, reg_name, offset = "reg_deref", m["reg"], _int(m["off"] or "0")
    elif (m := _CONST_RE.match(operand)) is not None:
        return UsdtArg(spec, size, signed, "const", None, _int(m["value"]))
    else:
        raise UsdtArgError(f"USDT argument spec {spec!r}: operand {operand!r} is not %REG, "
                           f"OFF(%REG) or $CONST (indexed and symbolic forms are not supported)")
    if reg_name not in _REGISTERS:
        raise UsdtArgError(f"USDT argument spec {spec!r}: unknown register %{reg_name}")
    return UsdtArg(spec, size, signed, kind, _REGISTERS[reg_name], offset)


def parse_args(specs: str) -> tuple[UsdtArg, ...]:
    """Decode a note's whole argument string (specs separated by spaces)."""
    return tuple(parse_arg(part) for part in specs.split())


def _vaddr_to_offset(elf: ELFFile, vaddr: int) -> int:
    for segment in elf.iter_segments():
        if segment["p_type"] != "PT_LOAD":
            continue
        start = segment["p_vaddr"]
        if start <= vaddr < start + max(segment["p_memsz"], segment["p_filesz"]):
            return int(vaddr - start + segment["p_offset"])
    # relocatable objects and odd files: fall back to the section holding the address
    for section in elf.iter_sections():
        start = section["sh_addr"]
        if section["sh_flags"] & 2 and start <= vaddr < start + section["sh_size"]:
            return int(vaddr - start + section["sh_offset"])
    return vaddr


def _notes(data: bytes, little: bool) -> list[bytes]:
    """The descriptors of the stapsdt notes in one note section's raw bytes."""
    fmt = "<III" if little else ">III"
    pos, out = 0, []
    while pos + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from(fmt, data, pos)
        pos += 12
        name = data[pos:pos + namesz].rstrip(b"\0")
        pos += (namesz + 3) & ~3
        desc = data[pos:pos + descsz]
        pos += (descsz + 3) & ~3
        if ntype == NT_STAPSDT and name == _NOTE_NAME:
            out.append(desc)
    return out


# what pyelftools raises on damaged headers (offsets past the file, sizes that overflow a seek)
_DAMAGE = (ELFError, struct.error, ValueError, OverflowError, IndexError, KeyError, UnicodeDecodeError,
           MemoryError, AssertionError)


def read_probes(path: str | os.PathLike[str]) -> list[UsdtProbe]:
    """Every USDT probe note of the ELF file at ``path`` (an empty list if it has none).

    Damaged headers are an ``ObjectFormatError``: a section is read only after its offset
    and size are checked against the file's, so no header makes it read past the file
    (or allocate what it claims)."""
    where = os.fspath(path)
    try:
        with open(where, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            try:
                return _read_notes(stream, where, size)
            except _DAMAGE as exc:
                if isinstance(exc, BpfError):
                    raise
                raise ObjectFormatError(f"{where}: damaged ELF headers ({type(exc).__name__}: {exc})",
                                        path=where) from None
            except OSError as exc:  # a seek or read past what the file can be (EINVAL)
                if isinstance(exc, BpfError):
                    raise
                raise ObjectFormatError(f"{where}: damaged ELF headers ({exc.strerror or exc})",
                                        exc.errno, path=where) from None
    except FileNotFoundError:
        raise BpfError(f"no such file {where!r}", errno.ENOENT) from None
    except IsADirectoryError:
        raise BpfError(f"{where!r} is a directory, not an ELF file", errno.EISDIR) from None
    except PermissionError:
        raise BpfError(f"{where!r}: permission denied", errno.EACCES) from None


def _read_notes(stream: Any, where: str, size: int) -> list[UsdtProbe]:
    elf = ELFFile(stream)
    if elf.elfclass != 64:
        raise ObjectFormatError(f"{where}: USDT notes are read from 64-bit ELF files only", path=where)
    little = elf.little_endian
    base_section = elf.get_section_by_name(".stapsdt.base")
    base_addr = int(base_section["sh_addr"]) if base_section is not None else None
    probes = []
    for section in elf.iter_sections():
        if section["sh_type"] != "SHT_NOTE" or section.name != ".note.stapsdt":
            continue
        offset, length = int(section["sh_offset"]), int(section["sh_size"])
        if offset > size or length > size - offset:
            raise ObjectFormatError(f"{where}: section .note.stapsdt (offset {offset}, {length} bytes) runs "
                                    f"past the end of the file ({size} bytes)", path=where)
        stream.seek(offset)
        for desc in _notes(stream.read(length), little):
            probes.append(_probe(elf, where, desc, little, base_addr))
    return probes


def _probe(elf: ELFFile, where: str, desc: bytes, little: bool, base_addr: int | None) -> UsdtProbe:
    if len(desc) < 24:
        raise ObjectFormatError(f"{where}: truncated stapsdt note ({len(desc)} bytes)", path=where)
    pc, base, semaphore = struct.unpack_from("<QQQ" if little else ">QQQ", desc, 0)
    strings = desc[24:].split(b"\0")
    if len(strings) < 3:
        raise ObjectFormatError(f"{where}: stapsdt note without provider, name and arguments",
                                path=where)
    provider, name, arg_text = (s.decode("utf-8", "replace") for s in strings[:3])
    if base_addr is not None and base:  # prelinked: move by how far .stapsdt.base moved
        pc += base_addr - base
        if semaphore:
            semaphore += base_addr - base
    try:
        args = parse_args(arg_text)
    except UsdtArgError as exc:
        raise UsdtArgError(f"{where}: probe {provider}:{name}: {exc}", path=where) from None
    return UsdtProbe(
        path=where, provider=provider, name=name, address=pc, offset=_vaddr_to_offset(elf, pc),
        base=base, semaphore=semaphore,
        semaphore_offset=_vaddr_to_offset(elf, semaphore) if semaphore else 0,
        args_spec=arg_text, args=args)


_DELETED = " (deleted)"


def process_files(pid: int) -> list[tuple[str, str]]:
    """The ELF files a process maps executable, its main binary first, as (the path the process
    sees, a path that opens the very file it maps).

    The second is ``/proc/PID/exe`` for the binary and ``/proc/PID/map_files/START-END`` for a
    library (root, or CAP_CHECKPOINT_RESTORE): they reach the inode the process runs even
    after a package upgrade replaced or removed the file on disk, and across mount
    namespaces. Without access to map_files, a library is read through ``/proc/PID/root``."""
    exe_link = f"/proc/{pid}/exe"
    try:
        with open(f"/proc/{pid}/maps") as maps:
            lines = maps.read().splitlines()
        exe = os.readlink(exe_link)
    except FileNotFoundError:
        raise BpfError(f"no process with pid {pid}", errno.ESRCH) from None
    except PermissionError:
        raise BpfError(f"cannot read /proc/{pid}/maps (permission denied)", errno.EACCES) from None
    exe = exe.removesuffix(_DELETED)
    files: list[tuple[str, str]] = [(exe, exe_link)] if exe.startswith("/") else []
    seen = {exe}
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or "x" not in fields[1] or not fields[5].startswith("/"):
            continue
        shown = fields[5].removesuffix(_DELETED)
        if shown in seen:
            continue
        seen.add(shown)
        source = f"/proc/{pid}/map_files/{fields[0]}"
        if not _can_open(source):
            source = f"/proc/{pid}/root{shown}"
            if fields[5].endswith(_DELETED) or not os.path.exists(source):
                continue  # gone from disk and no map_files access: nothing to read it through
        files.append((shown, source))
    return files


def _can_open(path: str) -> bool:
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
    except OSError:
        return False
    return True


def mapped_files(pid: int) -> list[str]:
    """The ELF files a process maps executable, its main binary first (paths as it sees them)."""
    return [shown for shown, _ in process_files(pid)]


def process_probes(pid: int) -> list[UsdtProbe]:
    """The USDT probes of a process: its binary's and those of every library it maps.

    Each file is read through what :func:`process_files` gives (the inode the process runs);
    paths are reported as the process sees them, and ``source`` keeps what was read (what
    an attach must use too)."""
    probes: list[UsdtProbe] = []
    for shown, source in process_files(pid):
        try:
            found = read_probes(source)
        except ObjectFormatError:
            continue  # a mapped non-ELF file (a font, a cache...)
        probes.extend(replace(p, path=shown, source=source) for p in found)
    return probes


def describe_probes(probes: list[UsdtProbe], limit: int = 40) -> str:
    """``provider:name`` of the probes, for error messages (``(none)`` when empty)."""
    names = sorted({f"{p.provider}:{p.name}" for p in probes})
    if not names:
        return "(none)"
    text = ", ".join(names[:limit])
    return text + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
