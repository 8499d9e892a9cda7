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


def _append_section(out: bytearray, raw: bytes, section: str, data: bytes) -> None:
    """Move section ``section``'s contents to the end of the file as ``data`` (its new size):
    ELF places sections anywhere, so strings can grow without moving anything else."""
    elf = ELFFile(io.BytesIO(raw))
    index = next(i for i, sec in enumerate(elf.iter_sections()) if sec.name == section)
    out.extend(bytes(-len(out) % 8))
    hdr = elf["e_shoff"] + index * elf["e_shentsize"]
    struct.pack_into("<QQ", out, hdr + 24, len(out), len(data))  # sh_offset, sh_size
    out.extend(data)


def rename(raw: bytes, btf: dict[tuple[str, ...], str] | None = None,
           symbols: dict[str, str] | None = None) -> bytes:
    """A copy of object ``raw`` with names changed to any text: BTF names by
    ``("struct", NAME)``, ``("member", STRUCT, NAME)``, ``("var", NAME)``, ``("func", NAME)``
    (the new strings appended to a copy of the string section), ELF symbols by name (the same
    in ``.strtab``). What a hostile compiler or a hand-edited object can hold."""
    out = bytearray(raw)
    spec, base = _btf_base(raw)
    parsed = spec.btf
    assert parsed is not None
    blob = bytearray(spec.sections[".BTF"].data)
    hdr_len, type_off, _type_len, str_off, str_len = struct.unpack_from("<IIIII", blob, 4)
    strings = bytearray(blob[hdr_len + str_off:hdr_len + str_off + str_len])

    def new_string(text: str) -> int:
        strings.extend(text.encode("utf-8", "surrogatepass") + b"\0")
        return len(strings) - len(text.encode("utf-8", "surrogatepass")) - 1

    for key, new in (btf or {}).items():
        kind, name = key[0], key[-1]
        found = False
        for tid in range(parsed.start_id, len(parsed)):
            t = parsed[tid]
            pos = parsed._offs[tid - parsed.start_id] - parsed._offs[0] + hdr_len + type_off
            if kind == "member" and t.kind in ("struct", "union") and t.name == key[1]:
                for i, member in enumerate(t.members):
                    if member[0] == name:
                        struct.pack_into("<I", blob, pos + 12 + 12 * i, new_string(new))
                        found = True
            elif kind == t.kind and t.name == name:
                struct.pack_into("<I", blob, pos, new_string(new))
                found = True
        if not found:
            raise KeyError(key)
    struct.pack_into("<I", blob, 4 + 16, len(strings))
    blob[hdr_len + str_off:] = strings
    _append_section(out, raw, ".BTF", bytes(blob))

    if symbols:
        elf = ELFFile(io.BytesIO(raw))
        symtab = elf.get_section_by_name(".symtab")
        strtab_sec = elf.get_section(symtab["sh_link"])
        strtab = bytearray(strtab_sec.data())
        for sname, _st_name, index in _symbols(raw)[2]:
            if sname in symbols:
                encoded = symbols[sname].encode("utf-8", "surrogatepass")
                struct.pack_into("<I", out, symtab["sh_offset"] + 24 * index, len(strtab))
                strtab.extend(encoded + b"\0")
        missing = set(symbols) - {s[0] for s in _symbols(raw)[2]}
        if missing:
            raise KeyError(sorted(missing))
        _append_section(out, raw, strtab_sec.name, bytes(strtab))
    return bytes(out)


# ---- kernel images (for btf extract) ------------------------------------------------------------

def elf_with_btf(btf: bytes) -> bytes:
    """A minimal little-endian ELF64 with a .BTF section."""
    shstr = b"\0.BTF\0.shstrtab\0"
    body = btf + shstr
    shoff = 64 + len(body)
    shoff += (-shoff) % 8
    hdr = bytearray(64)
    hdr[:16] = b"\x7fELF\x02\x01\x01" + bytes(9)
    struct.pack_into("<HHIQQQIHHHHHH", hdr, 16, 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 3, 2)
    def sh(name: int, typ: int, off: int, size: int) -> bytes:
        return struct.pack("<IIQQQQIIQQ", name, typ, 0, 0, off, size, 0, 0, 1, 0)
    secs = sh(0, 0, 0, 0) + sh(1, 1, 64, len(btf)) + sh(6, 3, 64 + len(btf), len(shstr))
    return bytes(hdr) + body + bytes(shoff - 64 - len(body)) + secs


def bzimage(payload: bytes) -> bytes:
    """An x86 boot image around ``payload`` (setup header, boot protocol 2.15)."""
    setup = bytearray(1024)  # setup_sects = 1 -> protected-mode code at 1024
    setup[0x1F1] = 1
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x20F)
    struct.pack_into("<II", setup, 0x248, 32, len(payload))
    return bytes(setup) + bytes(32) + payload + b"\x00\x10\x00\x00"


def lz4_legacy(data: bytes) -> bytes:
    import lz4.block
    out = bytearray(b"\x02\x21\x4c\x18")
    for i in range(0, len(data), 8 << 20):
        block = lz4.block.compress(data[i:i + (8 << 20)], store_size=False)
        out += struct.pack("<I", len(block)) + block
    return bytes(out)
