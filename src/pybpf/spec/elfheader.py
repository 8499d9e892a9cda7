"""The first check of a BPF object: a 64-bit little-endian ELF for the BPF machine. Pure.

Kept apart from :mod:`pybpf.spec.elf` (which re-exports it) so that ``pybpf.open()`` can
check a file's header before reading it without importing the whole parser.
"""

from __future__ import annotations

import struct

from pybpf.errors import ObjectFormatError

__all__ = ["EM_BPF", "check_elf_header"]

EM_BPF = 247
MACHINES = {3: "x86", 62: "x86-64", 183: "aarch64", 40: "ARM", 243: "RISC-V", 21: "PowerPC64",
            22: "s390", 8: "MIPS", 20: "PowerPC", 2: "SPARC", 43: "SPARC64", 258: "LoongArch"}


def _fail(where: str, msg: str) -> ObjectFormatError:
    return ObjectFormatError(f"{where}: {msg}", path=where or None)


def check_elf_header(data: bytes, where: str) -> None:
    """ObjectFormatError unless ``data`` starts with a 64-bit little-endian BPF ELF header."""
    if len(data) < 4 or data[:4] != b"\x7fELF":
        raise _fail(where, "not an ELF file" if data else "empty file, not an ELF file")
    if len(data) < 64:
        raise _fail(where, f"truncated ELF header ({len(data)} bytes)")
    if data[4] != 2:
        raise _fail(where, "32-bit ELF, not a 64-bit BPF object")
    if data[5] != 1:
        raise _fail(where, "big-endian ELF, not a little-endian BPF object")
    (machine,) = struct.unpack_from("<H", data, 18)
    if machine != EM_BPF:
        arch = MACHINES.get(machine, f"machine {machine}")
        raise _fail(where, f"ELF for {arch}, not BPF")
