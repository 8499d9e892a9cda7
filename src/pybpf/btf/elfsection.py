"""One named section out of an ELF file's bytes, for BTF read from ``.o``/vmlinux/``.ko`` files.

Deliberately small and bounded: the section header table and the one section asked for are
checked against the file's size before they are sliced, and any inconsistency is an
``ObjectFormatError`` naming the file.  Full ELF parsing of BPF objects is the spec layer's.
"""

from __future__ import annotations

import struct

from pybpf.errors import ObjectFormatError

__all__ = ["elf_section"]

_ELFCLASS = {1: ("I", 52, 40), 2: ("Q", 64, 64)}  # word format, header size, section header size


def elf_section(data: bytes, name: str, where: str) -> bytes | None:
    """The contents of section ``name`` of the ELF image ``data``, or None if it has none."""
    def bad(why: str) -> ObjectFormatError:
        return ObjectFormatError(f"{where}: not a valid ELF file: {why}", path=where)

    if len(data) < 52 or data[:4] != b"\x7fELF":
        raise bad("no ELF header")
    cls, order = data[4], data[5]
    if cls not in _ELFCLASS or order not in (1, 2):
        raise bad(f"unknown ELF class {cls} or data encoding {order}")
    word, ehsize, shsize = _ELFCLASS[cls]
    end = "<" if order == 1 else ">"
    if len(data) < ehsize:
        raise bad("truncated ELF header")
    if cls == 2:
        shoff, = struct.unpack_from(end + "Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x3A)
    else:
        shoff, = struct.unpack_from(end + "I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x2E)
    if shnum == 0:
        return None
    if shentsize != shsize or shoff + shnum * shsize > len(data):
        raise bad("section header table out of bounds")
    fmt = end + ("IIQQQQIIQQ" if cls == 2 else "IIIIIIIIII")

    def header(index: int) -> tuple[int, int, int, int]:
        f = struct.unpack_from(fmt, data, shoff + index * shsize)
        sh_name, sh_type, sh_offset, sh_size = f[0], f[1], f[4], f[5]
        return sh_name, sh_type, sh_offset, sh_size

    if shstrndx >= shnum:
        raise bad("section name table index out of range")
    _, _, str_off, str_size = header(shstrndx)
    if str_off + str_size > len(data):
        raise bad("section name table out of bounds")
    names = data[str_off:str_off + str_size]
    wanted = name.encode()
    for index in range(shnum):
        sh_name, sh_type, offset, size = header(index)
        if sh_name >= len(names) or names[sh_name:names.find(b"\0", sh_name)] != wanted:
            continue
        if sh_type == 8:  # SHT_NOBITS: no bytes in the file
            return b""
        if offset + size > len(data):
            raise bad(f"section {name} out of bounds")
        return bytes(data[offset:offset + size])
    return None
