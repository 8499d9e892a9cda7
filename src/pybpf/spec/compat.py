"""Objects written for a newer libbpf, presented so that libbpf 1.1 can open them. Pure.

``SEC(".struct_ops.link")`` (libbpf 1.2) declares struct_ops maps that are registered
through a bpf_link, which can then be updated in place. libbpf 1.1 knows only
``SEC(".struct_ops")``: it skips the ``.struct_ops.link`` section and its relocations, and
the struct_ops programs then fail to load. :func:`struct_ops_link_as_legacy` renames the
section (and its relocation section, and the BTF DATASEC) to ``.struct_ops`` in a copy of
the image, by ending each name at the dot before ``link`` (the names may share bytes in the
string tables, so nothing is moved). pybpf then creates those maps with ``BPF_F_LINK`` and
registers them with its own ``BPF_LINK_CREATE`` (see :mod:`pybpf.link.struct_ops`).
"""

from __future__ import annotations

import struct

__all__ = ["STRUCT_OPS_LINK_SEC", "STRUCT_OPS_SEC", "struct_ops_link_as_legacy"]

STRUCT_OPS_SEC = ".struct_ops"
STRUCT_OPS_LINK_SEC = ".struct_ops.link"
_BTF_MAGIC = 0xEB9F
_BTF_HEADER = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, type_off/len, str_off/len


def _cut(image: bytearray, name_at: int, name: bytes) -> None:
    """End the NUL-terminated ``name`` found at ``name_at`` at the dot before its ``link``."""
    if bytes(image[name_at:name_at + len(name) + 1]) != name + b"\0":
        raise ValueError(f"{name!r} is not at {name_at}")
    image[name_at + len(name) - len(b".link")] = 0


def struct_ops_link_as_legacy(data: bytes, where: str = "") -> bytes:
    """A copy of the image whose ``.struct_ops.link`` section reads as ``.struct_ops``."""
    from pybpf.spec.elf import _SHDR, _read_sections  # the parser: only for such an object
    sections, _ = _read_sections(data, where)  # every header and string table checked first
    image = bytearray(data)
    (shoff,) = struct.unpack_from("<Q", data, 40)
    shstrndx = struct.unpack_from("<H", data, 62)[0]
    if shstrndx == 0xFFFF:
        shstrndx = _SHDR.unpack_from(data, shoff)[6]
    names_at = sections[shstrndx].offset
    for section in sections:
        name = section.name.encode()
        if name in (STRUCT_OPS_LINK_SEC.encode(), b".rel" + STRUCT_OPS_LINK_SEC.encode()):
            name_off = _SHDR.unpack_from(data, shoff + section.index * _SHDR.size)[0]
            if image[names_at + name_off + len(name) - len(b".link")] != 0:  # not cut already (shared bytes)
                _cut(image, names_at + name_off, name)
        elif section.name == ".BTF" and len(section.data) >= _BTF_HEADER.size:
            magic, _, _, hdr_len, _, _, str_off, str_len = _BTF_HEADER.unpack_from(section.data)
            if magic != _BTF_MAGIC:
                continue
            strings_at = section.offset + hdr_len + str_off
            strings = bytes(image[strings_at:strings_at + str_len])
            found = strings.find(b"\0" + STRUCT_OPS_LINK_SEC.encode() + b"\0")
            if found >= 0:
                _cut(image, strings_at + found + 1, STRUCT_OPS_LINK_SEC.encode())
    return bytes(image)
