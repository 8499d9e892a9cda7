"""Pure object specs: what a ``.bpf.o`` contains, read from its ELF, ``.BTF`` and ``.BTF.ext``.

Never imports :mod:`pybpf._sys`: ``pybpf inspect`` runs on a machine without libbpf.
The names of :mod:`pybpf.spec.elf` are offered here too, loaded on first use (PEP 562), so
that importing a small module of this package (``pybpf.spec.elfheader``, ``pybpf.spec.parsed``:
what ``pybpf.open()`` needs when an object's parse is known) does not import the parser.
"""

from __future__ import annotations

from typing import Any

# pybpf.spec.elf.__all__ (tests/test_spec_parsed.py keeps them equal)
__all__ = [
    "CoreRelo", "FuncInfo", "GlobalSpec", "LineInfo", "MapSpec", "ObjectSpec", "ProgramSpec",
    "RELO_KINDS", "check_elf_header", "inspect", "section_program_type",
]


def __getattr__(name: str) -> Any:
    """The names of :mod:`pybpf.spec.elf`, imported on first use."""
    if name in __all__:
        from pybpf.spec import elf

        value = getattr(elf, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
