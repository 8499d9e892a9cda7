"""Symbols of one ELF file (an executable, a shared library, the vDSO), for bulk lookups.

Owns reading what symbolization needs from an ELF64 little-endian file: the
``PT_LOAD`` segments (file offset -> virtual address, which undoes PIE and shared
library load bias), the function symbols of ``.symtab`` and ``.dynsym`` as sorted numpy
arrays, the GNU build-id and ``.gnu_debuglink``, and, on request, the DWARF line table
(through pyelftools) for ``file:line``. The symbol tables are read with numpy straight
from an mmap of the file: a 100k-symbol table loads without a Python loop over it.

The file is untrusted: every offset and size is checked against the file before use, and
a malformed file raises :class:`pybpf.errors.ObjectFormatError` naming it.
"""

from __future__ import annotations

import io
import mmap
import os
import re
import struct
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from pybpf.errors import ObjectFormatError

__all__ = ["ElfSymbols", "LineTable"]

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = np.dtype([("name", "<u4"), ("type", "<u4"), ("flags", "<u8"), ("addr", "<u8"), ("offset", "<u8"),
                  ("size", "<u8"), ("link", "<u4"), ("info", "<u4"), ("addralign", "<u8"),
                  ("entsize", "<u8")])
_PHDR = np.dtype([("type", "<u4"), ("flags", "<u4"), ("offset", "<u8"), ("vaddr", "<u8"), ("paddr", "<u8"),
                  ("filesz", "<u8"), ("memsz", "<u8"), ("align", "<u8")])
_SYM = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"), ("value", "<u8"),
                 ("size", "<u8")])
_SHT_SYMTAB, _SHT_NOTE, _SHT_DYNSYM = 2, 7, 11
_PT_LOAD, _PT_NOTE = 1, 4
_STT_FUNC, _STT_GNU_IFUNC = 2, 10
_NT_GNU_BUILD_ID = 3
_MAX_NAME = 4096
_VERSION = re.compile(r"@@?[A-Za-z_][\w.]*$")


@dataclass(frozen=True)
class LineTable:
    """Address -> (file, line) rows of a DWARF line program, sorted by address."""

    addrs: np.ndarray        # uint64, sorted
    files: list[str]         # file of each row
    lines: np.ndarray        # int64
    ends: np.ndarray         # uint64: where each row's sequence ends

    def lookup(self, vaddrs: np.ndarray) -> list[tuple[str, int] | None]:
        """(file, line) of each address, or None outside every sequence."""
        i = np.searchsorted(self.addrs, vaddrs, side="right") - 1
        out: list[tuple[str, int] | None] = []
        for addr, j in zip(vaddrs.tolist(), i.tolist()):
            out.append((self.files[j], int(self.lines[j])) if j >= 0 and addr < int(self.ends[j]) else None)
        return out


class ElfSymbols:
    """The function symbols, load segments and build-id of one ELF file.

    ``path`` is where it was read (``/proc/PID/root/usr/lib/...`` for a container's file);
    ``data`` reads from bytes instead (the vDSO, copied out of a process). With ``lines`` (the
    default) a file with DWARF stays mapped, for :meth:`file_lines`; otherwise, or without DWARF,
    the file is closed once its symbols are read (an mmap holds an fd).
    """

    def __init__(self, path: str, *, data: bytes | None = None, name: str | None = None,
                 lines: bool = True) -> None:
        self.path = path
        self.name = name or path
        self._mm: mmap.mmap | None = None
        self._lock = threading.Lock()
        self._dwarf_info: Any = None
        self._cu_lines: dict[int, LineTable | None] = {}   # CU offset (-1: all CUs) -> its rows
        if data is None:
            try:
                with open(path, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    if size < _EHDR.size:
                        raise ObjectFormatError(f"{path}: not an ELF file ({size} bytes)", path=path)
                    self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError as exc:  # mmap of an empty or special file
                raise ObjectFormatError(f"{path}: cannot map it: {exc}", path=path) from None
            buf: bytes | mmap.mmap = self._mm
        else:
            buf = bytes(data)
        self._buf = buf
        try:
            self._parse()
            if not (lines and self.has_debug_info):
                self.close()   # everything is read: no fd held for it
        except ObjectFormatError:
            self.close()
            raise
        except (struct.error, ValueError, IndexError, OverflowError) as exc:
            self.close()
            raise ObjectFormatError(f"{path}: malformed ELF: {exc}", path=path) from None

    def close(self) -> None:
        """Drop the file mapping (symbols stay usable; ``file:line`` is read from the mapping,
        so files with DWARF keep theirs until closed). Idempotent."""
        mm, self._mm = self._mm, None
        self._dwarf_info = None
        if mm is not None:
            self._buf = b""
            try:
                mm.close()
            except BufferError:  # numpy views still hold it: the GC unmaps it with them
                pass

    def __repr__(self) -> str:
        return f"<ElfSymbols {self.name} {len(self.values)} symbols>"

    # ---- parsing -------------------------------------------------------------------------

    def _fail(self, what: str) -> ObjectFormatError:
        return ObjectFormatError(f"{self.path}: {what}", path=self.path)

    def _slice(self, off: int, size: int, what: str) -> memoryview:
        if off < 0 or size < 0 or off + size > len(self._buf):
            raise self._fail(f"{what} (offset {off}, {size} bytes) runs past the end of the file "
                             f"({len(self._buf)} bytes)")
        return memoryview(self._buf)[off:off + size]

    def _table(self, off: int, count: int, entsize: int, dtype: np.dtype, what: str) -> np.ndarray:
        if count == 0:
            return np.zeros(0, dtype)
        if entsize != dtype.itemsize:
            raise self._fail(f"{what}: entry size {entsize}, expected {dtype.itemsize}")
        return np.frombuffer(self._slice(off, count * entsize, what), dtype).copy()

    def _parse(self) -> None:
        head = bytes(self._slice(0, _EHDR.size, "ELF header"))
        (ident, etype, machine, _ver, _entry, phoff, shoff, _flags, _ehsize, phentsize, phnum,
         shentsize, shnum, shstrndx) = _EHDR.unpack(head)
        if ident[:4] != b"\x7fELF":
            raise self._fail("not an ELF file")
        if ident[4] != 2 or ident[5] != 1:
            raise self._fail("only 64-bit little-endian ELF files are read here")
        self.type = etype
        self.machine = machine
        phdrs = self._table(phoff, phnum, phentsize, _PHDR, "program headers")
        shdrs = np.zeros(0, _SHDR)
        if shoff:
            if shnum == 0:  # extended numbering: the count is in section 0's size
                shnum = int(self._table(shoff, 1, shentsize, _SHDR, "section 0")["size"][0])
            if shnum > 65536 * 16:
                raise self._fail(f"{shnum} sections")
            shdrs = self._table(shoff, shnum, shentsize, _SHDR, "section headers")
        loads = phdrs[phdrs["type"] == _PT_LOAD]
        self.load_offsets = loads["offset"].astype(np.uint64)
        self.load_vaddrs = loads["vaddr"].astype(np.uint64)
        self.load_sizes = loads["filesz"].astype(np.uint64)
        self.load_memsizes = loads["memsz"].astype(np.uint64)
        self._shdrs = shdrs
        self._shstr = b""
        if len(shdrs) and shstrndx < len(shdrs):
            s = shdrs[shstrndx]
            self._shstr = bytes(self._slice(int(s["offset"]), int(s["size"]), "section names"))
        self.build_id = self._build_id(phdrs, shdrs)
        self.debuglink = self._debuglink()
        self.has_debug_info = self.section(".debug_line") is not None
        self._read_symbols(shdrs)

    def section(self, name: str) -> np.void | None:
        """The section header called ``name``, or None."""
        needle = name.encode()
        for s in self._shdrs:
            off = int(s["name"])
            if off < len(self._shstr) and self._shstr[off:off + len(needle) + 1] == needle + b"\0":
                return s
        return None

    def _notes(self, off: int, size: int) -> bytes | None:
        data = bytes(self._slice(off, size, "note"))
        pos = 0
        while pos + 12 <= len(data):
            namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
            name_off = pos + 12
            desc_off = name_off + ((namesz + 3) & ~3)
            end = desc_off + ((descsz + 3) & ~3)
            if end > len(data):
                break
            if ntype == _NT_GNU_BUILD_ID and data[name_off:name_off + namesz].rstrip(b"\0") == b"GNU":
                return data[desc_off:desc_off + descsz]
            pos = end
        return None

    def _build_id(self, phdrs: np.ndarray, shdrs: np.ndarray) -> str | None:
        notes = [(int(s["offset"]), int(s["size"])) for s in shdrs if s["type"] == _SHT_NOTE]
        notes += [(int(p["offset"]), int(p["filesz"])) for p in phdrs if p["type"] == _PT_NOTE]
        for off, size in notes:
            found = self._notes(off, size)
            if found:
                return found.hex()
        return None

    def _debuglink(self) -> str | None:
        s = self.section(".gnu_debuglink")
        if s is None:
            return None
        raw = bytes(self._slice(int(s["offset"]), int(s["size"]), ".gnu_debuglink"))
        name = raw.split(b"\0", 1)[0]
        return name.decode("utf-8", "replace") if name and b"/" not in name else None

    def _read_symbols(self, shdrs: np.ndarray) -> None:
        tables = []
        for kind in (_SHT_SYMTAB, _SHT_DYNSYM):  # .symtab first: its names win at equal addresses
            for s in shdrs[shdrs["type"] == kind]:
                size, entsize = int(s["size"]), int(s["entsize"]) or _SYM.itemsize
                syms = self._table(int(s["offset"]), size // entsize, entsize, _SYM, "symbol table")
                link = int(s["link"])
                if link >= len(shdrs):
                    raise self._fail("symbol table links to no string table")
                strtab = shdrs[link]
                kinds = syms["info"] & 0xF
                keep = ((kinds == _STT_FUNC) | (kinds == _STT_GNU_IFUNC)) & (syms["shndx"] != 0) \
                    & (syms["value"] != 0)
                syms = syms[keep]
                if np.any(syms["name"] >= strtab["size"]):
                    raise self._fail("a symbol name points outside its string table")
                tables.append((syms, int(strtab["offset"]), int(strtab["size"])))
        self._names: dict[int, str] = {}
        # the string tables are copied out (small next to the file), so that the file need not
        # stay mapped, holding an fd, for names alone
        blobs: dict[tuple[int, int], int] = {}
        parts: list[bytes] = []
        for _, off, size in tables:
            if (off, size) not in blobs:
                blobs[(off, size)] = sum(len(p) for p in parts)
                parts.append(bytes(self._slice(off, size, "string table")) + b"\0")
        self._strtab = b"".join(parts)
        if not tables:
            self.values = np.zeros(0, np.uint64)
            self.sizes = np.zeros(0, np.uint64)
            self._name_at = np.zeros(0, np.int64)
            return
        values = np.concatenate([t[0]["value"] for t in tables])
        sizes = np.concatenate([t[0]["size"] for t in tables])
        bind = np.concatenate([t[0]["info"] >> 4 for t in tables])
        name_at = np.concatenate([t[0]["name"].astype(np.int64) + blobs[(t[1], t[2])] for t in tables])
        # one symbol per address: global (1) before weak (2) before local (0), then table order
        rank = np.select([bind == 1, bind == 2], [0, 1], 2)
        order = np.lexsort((np.arange(len(values)), rank, values))
        values, sizes, name_at = values[order], sizes[order], name_at[order]
        first = np.concatenate(([True], values[1:] != values[:-1]))
        self.values = values[first].astype(np.uint64)
        self.sizes = sizes[first].astype(np.uint64)
        self._name_at = name_at[first]

    # ---- lookups -------------------------------------------------------------------------

    def symbol_name(self, i: int) -> str:
        """The name of symbol ``i`` (decoded on first use)."""
        hit = self._names.get(i)
        if hit is None:
            start = int(self._name_at[i])
            end = self._strtab.find(b"\0", start, start + _MAX_NAME)
            hit = self._strtab[start:end if end >= 0 else start + _MAX_NAME].decode("utf-8", "replace")
            hit = _VERSION.sub("", hit)   # clock_gettime@@GLIBC_2.17 -> clock_gettime
            self._names[i] = hit
        return hit

    def names(self) -> list[str]:
        """Every symbol's name, in address order."""
        return [self.symbol_name(i) for i in range(len(self.values))]

    def file_to_vaddr(self, offsets: np.ndarray) -> np.ndarray:
        """File offsets -> link-time virtual addresses (through the PT_LOAD segments).

        Offsets in no segment map as if in the first (what perf does for odd mappings)."""
        off = np.asarray(offsets, np.uint64)
        if len(self.load_offsets) == 0:
            return off.copy()
        order = np.argsort(self.load_offsets)
        seg = np.searchsorted(self.load_offsets[order], off, side="right").astype(np.int64) - 1
        seg = order[np.clip(seg, 0, len(order) - 1)]
        return off - self.load_offsets[seg] + self.load_vaddrs[seg]

    def index(self, vaddrs: np.ndarray) -> np.ndarray:
        """The symbol holding each virtual address, -1 where none does.

        A symbol holds [value, value+size); one of size 0 (hand-written assembly) holds up
        to the next symbol."""
        v = np.asarray(vaddrs, np.uint64)
        if len(self.values) == 0:
            return np.full(len(v), -1, np.int64)
        i = np.searchsorted(self.values, v, side="right").astype(np.int64) - 1
        ok = i >= 0
        j = np.where(ok, i, 0)
        inside = (v - self.values[j]) < self.sizes[j]
        return np.where(ok & (inside | (self.sizes[j] == 0)), i, -1)

    def file_lines(self, vaddrs: np.ndarray) -> list[tuple[str, int] | None]:
        """``(file, line)`` of each virtual address from DWARF (pyelftools), None where unknown.

        Only the compile units holding the addresses are read (found through
        ``.debug_aranges``), each once: a lookup in libc's debug file reads a few CUs, not 2000.
        """
        out: list[tuple[str, int] | None] = [None] * len(vaddrs)
        if not self.has_debug_info or (self._mm is None and not self._buf):
            return out
        # pyelftools only for file:line: a profiler that names functions never imports it (start-up)
        from elftools.common.exceptions import DWARFError, ELFError

        with self._lock:
            try:
                dwarf = self._dwarf()
                aranges = dwarf.get_aranges()
                for n, addr in enumerate(np.asarray(vaddrs, np.uint64).tolist()):
                    key = aranges.cu_offset_at_addr(addr) if aranges is not None else -1
                    if key is None:
                        continue
                    if key not in self._cu_lines:
                        cus = [dwarf.get_CU_at(key)] if key >= 0 else list(dwarf.iter_CUs())
                        self._cu_lines[key] = _line_table(dwarf, cus)
                    table = self._cu_lines[key]
                    if table is not None:
                        out[n] = table.lookup(np.array([addr], np.uint64))[0]
            except (ELFError, DWARFError, ValueError, KeyError, IndexError, AttributeError, TypeError,
                    struct.error) as exc:
                raise self._fail(f"malformed DWARF: {exc}") from None
        return out

    def _dwarf(self) -> Any:
        if self._dwarf_info is None:
            from elftools.elf.elffile import ELFFile
            stream: Any = self._mm if self._mm is not None else io.BytesIO(bytes(self._buf))
            self._dwarf_info = ELFFile(stream).get_dwarf_info()
        return self._dwarf_info


def _line_table(dwarf: Any, cus: list[Any]) -> LineTable | None:
    rows: list[tuple[int, str, int, int]] = []
    for cu in cus:
        prog = dwarf.line_program_for_CU(cu)
        if prog is None:
            continue
        names = _line_files(prog)
        seq: list[tuple[int, str, int]] = []
        for entry in prog.get_entries():
            st = entry.state
            if st is None:
                continue
            if st.end_sequence:
                rows.extend((a, f, ln, st.address) for a, f, ln in seq)
                seq = []
            else:
                seq.append((st.address, names.get(st.file, "?"), st.line))
    if not rows:
        return None
    rows.sort(key=lambda r: r[0])
    return LineTable(np.array([r[0] for r in rows], np.uint64), [r[1] for r in rows],
                     np.array([r[2] for r in rows], np.int64), np.array([r[3] for r in rows], np.uint64))


def _line_files(prog: object) -> dict[int, str]:
    """File index -> base name in a line program (DWARF 5 counts from 0, earlier from 1)."""
    header = prog.header  # type: ignore[attr-defined]
    version = header["version"]
    out = {}
    for n, entry in enumerate(header["file_entry"]):
        name = entry.name.decode("utf-8", "replace") if isinstance(entry.name, bytes) else str(entry.name)
        out[n if version >= 5 else n + 1] = os.path.basename(name)
    return out
