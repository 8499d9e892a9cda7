"""Finding the ELF file behind a uprobe target such as ``libc.so.6``, and its functions' file offsets."""

from __future__ import annotations

import errno
import fnmatch
import os
import subprocess

from pybpf.errors import BpfError, ObjectFormatError

__all__ = ["function_offsets", "resolve_binary"]


def _mapped_library(name: str) -> str | None:
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                if path.startswith("/") and os.path.basename(path) == name:
                    return path
    except OSError:
        pass
    return None


def _ldconfig_library(name: str) -> str | None:
    for ldconfig in ("/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"):
        try:
            out = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, check=False).stdout
        except OSError:
            continue
        for line in out.splitlines():
            left, _, path = line.partition("=>")
            if left.strip().split(" ", 1)[0] == name and "x86-64" in left:
                return path.strip()
    return None


def resolve_binary(binary: str) -> str:
    """An absolute path for ``binary``: a path as given, or a library name
    looked up in this process's mappings, then in the ldconfig cache."""
    if "/" in binary:
        path = os.path.abspath(binary)
    else:
        path = _mapped_library(binary) or _ldconfig_library(binary) or ""
    if not path or not os.path.exists(path):
        raise BpfError(f"cannot find the binary {binary!r} for a uprobe "
                       f"(give a path, or a library name this process maps or ldconfig knows)")
    return os.path.realpath(path)


_FUNCTION_TYPES = ("STT_FUNC", "STT_GNU_IFUNC")


def _functions(path: str) -> dict[str, int]:
    """Every defined function of the ELF file ``path`` (``.symtab``, then ``.dynsym``) -> its file
    offset, as libbpf computes it: the symbol's address within its section, plus the section's
    offset in the file."""
    from elftools.common.exceptions import ELFError  # pyelftools only when a uprobe needs it
    from elftools.elf.elffile import ELFFile

    found: dict[str, int] = {}
    try:
        with open(path, "rb") as stream:
            elf = ELFFile(stream)
            for table_name in (".symtab", ".dynsym"):
                table = elf.get_section_by_name(table_name)
                if table is None or not hasattr(table, "iter_symbols"):
                    continue
                for symbol in table.iter_symbols():
                    shndx = symbol["st_shndx"]
                    if symbol["st_info"]["type"] not in _FUNCTION_TYPES or not isinstance(shndx, int) \
                            or not symbol.name or symbol.name in found or not symbol["st_value"]:
                        continue
                    section = elf.get_section(shndx)
                    found[symbol.name] = int(symbol["st_value"] - section["sh_addr"] + section["sh_offset"])
    except OSError as exc:
        raise BpfError(f"cannot read {path}: {exc.strerror}", exc.errno) from None
    except (ELFError, ValueError, KeyError, IndexError) as exc:
        raise ObjectFormatError(f"{path}: not a readable ELF file ({exc})", path=path) from None
    return found


def function_offsets(path: str, functions: str | list[str]) -> list[tuple[str, int]]:
    """(name, file offset) of the functions of ``path`` matching a glob ``pattern`` (``*``, ``?``),
    or of each name of a list, in its order; a name the file lacks is an error naming it."""
    table = _functions(path)
    if isinstance(functions, str):
        matched = [(name, offset) for name, offset in table.items() if fnmatch.fnmatchcase(name, functions)]
        if not matched:
            raise BpfError(f"no function of {path} matches {functions!r}", errno.ENOENT)
        return sorted(matched, key=lambda item: item[1])
    missing = [name for name in functions if name not in table]
    if missing:
        raise BpfError(f"{path} has no function {', '.join(map(repr, missing[:5]))}"
                       + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""), errno.ENOENT)
    return [(name, table[name]) for name in functions]
