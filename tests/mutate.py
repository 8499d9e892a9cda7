"""Byte-level edits of bundled objects and raw BTF for the robustness tests and the fuzzer.

Each edit changes one field the way a corrupted or hostile file would, located with the
pure parser (so the edit hits exactly the named struct member, symbol or name).
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

from elftools.elf.elffile import ELFFile
import io

from pybpf.spec.elf import ObjectSpec

ROOT = Path(__file__).resolve().parent.parent


def _btf_base(raw: bytes) -> tuple[ObjectSpec, int]:
    spec = ObjectSpec(raw, name="mutate")
    return spec, spec.sections[".BTF"].offset


def set_bitfield(raw: bytes, struct_name: str, member: str, bits: int) -> bytes:
    """Give ``struct_name.member`` a bitfield size of ``bits`` (setting the struct's kind_flag)."""
    out = bytearray(raw)
    spec, base = _btf_base(raw)
    btf = spec.btf
    assert btf is not None
    hdr_len, type_off = struct.unpack_from("<II", raw, base + 4)[0], struct.unpack_from("<I", raw, base + 8)[0]
    tid = btf.find(struct_name, "struct")
    pos = base + hdr_len + type_off + (btf._offs[tid - btf.start_id] - btf._offs[0])
    info = struct.unpack_from("<I", raw, pos + 4)[0]
    struct.pack_into("<I", out, pos + 4, info | 1 << 31)
    for i, (name, _mtype, off, bf) in enumerate(btf[tid].members):
        struct.pack_into("<I", out, pos + 12 + 12 * i + 8, (bits if name == member else bf) << 24 | off)
    return bytes(out)


def _symbols(raw: bytes) -> tuple[int, int, list[tuple[str, int, int]]]:
    """(symtab offset, strtab offset, [(name, st_name, index)])."""
    elf = ELFFile(io.BytesIO(raw))
    symtab = elf.get_section_by_name(".symtab")
    strtab = elf.get_section(symtab["sh_link"])
    syms = [(s.name, s["st_name"], i) for i, s in enumerate(symtab.iter_symbols())]
    return symtab["sh_offset"], strtab["sh_offset"], syms


def set_symbol_value(raw: bytes, name: str, value: int) -> bytes:
    out = bytearray(raw)
    symoff, _stroff, syms = _symbols(raw)
    for sname, _st_name, index in syms:
        if sname == name:
            struct.pack_into("<Q", out, symoff + 24 * index + 8, value)
            return bytes(out)
    raise KeyError(name)


def break_symbol_name(raw: bytes, name: str) -> bytes:
    """Make the first byte of symbol ``name`` 0xff (not UTF-8)."""
    out = bytearray(raw)
    _symoff, stroff, syms = _symbols(raw)
    for sname, st_name, _index in syms:
        if sname == name:
            out[stroff + st_name] = 0xFF
            return bytes(out)
    raise KeyError(name)


def break_section_name(raw: bytes, section: str) -> bytes:
    out = bytearray(raw)
    elf = ELFFile(io.BytesIO(raw))
    shstr = elf.get_section(elf["e_shstrndx"])
    for sec in elf.iter_sections():
        if sec.name == section:
            out[shstr["sh_offset"] + sec["sh_name"]] = 0xFF
            return bytes(out)
    raise KeyError(section)


def run_python(code: str, timeout: float = 60, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter on this worktree's pybpf: a crash shows as a
    negative return code (the signal), a hang as TimeoutExpired."""
    import os
    full_env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env=full_env, cwd=str(ROOT))
