"""The struct-based ELF reader of ``pybpf.spec.elf`` against pyelftools, on every object we have.

pybpf reads section and symbol tables itself (pyelftools cost most of
open+load's overhead); this pins its output to pyelftools' reading of the
same files, and checks it refuses what it cannot read with ObjectFormatError.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

import pybpf
from pybpf.errors import ObjectFormatError
from pybpf.spec.elf import ObjectSpec, _read_sections

from .conftest import ROOT

_TYPES = {"STT_NOTYPE": 0, "STT_OBJECT": 1, "STT_FUNC": 2, "STT_SECTION": 3}
_BINDS = {"STB_LOCAL": 0, "STB_GLOBAL": 1, "STB_WEAK": 2}


def _objects() -> list[Path]:
    found = sorted(Path(pybpf.__file__).parent.glob("bpf/*.bpf.o")) + sorted((ROOT / "tests" / "data").rglob("*.o"))
    return found


def _reference(data: bytes) -> tuple[list[tuple], list[tuple]]:
    elf = ELFFile(io.BytesIO(data))
    secs, syms = [], []
    for i, s in enumerate(elf.iter_sections()):
        body = b"" if s["sh_type"] in ("SHT_NOBITS", "SHT_NULL") else data[s["sh_offset"]:s["sh_offset"] + s["sh_size"]]
        secs.append((i, s.name, str(s["sh_type"]), s["sh_flags"], s["sh_offset"], s["sh_size"], body))
        if s["sh_type"] == "SHT_SYMTAB":
            for sym in s.iter_symbols():
                shndx = sym["st_shndx"]
                syms.append((sym.name, sym["st_value"], sym["st_size"], _TYPES.get(sym["st_info"]["type"], -1),
                             _BINDS.get(sym["st_info"]["bind"], -1), shndx if isinstance(shndx, int) else -1))
    return secs, syms


@pytest.mark.parametrize("path", _objects(), ids=lambda p: p.name)
def test_same_reading_as_pyelftools(path: Path) -> None:
    data = path.read_bytes()
    secs, syms = _read_sections(data, str(path))
    ref_secs, ref_syms = _reference(data)
    assert [(s.index, s.name, s.type, s.flags, s.offset, s.size, s.data) for s in secs] == ref_secs
    assert syms == ref_syms


def test_bad_tables_are_format_errors(bundled) -> None:
    good = Path(bundled("maps_test")).read_bytes()
    shoff = int.from_bytes(good[40:48], "little")
    cases = {
        "shoff past the end": good[:40] + (len(good) + 8).to_bytes(8, "little") + good[48:],
        "headers cut": good[:shoff + 100],
        "entry size": good[:58] + (40).to_bytes(2, "little") + good[60:],
        "shstrndx": good[:62] + (0x7FF0).to_bytes(2, "little") + good[64:],
    }
    for what, data in cases.items():
        with pytest.raises(ObjectFormatError, match="trunc-test"):
            ObjectSpec(data, name="trunc-test")
        assert what
    # a section whose body runs past the end
    raw = bytearray(good)
    first = shoff + 64  # section 1's header
    raw[first + 32:first + 40] = (len(good) * 2).to_bytes(8, "little")  # sh_size
    with pytest.raises(ObjectFormatError, match="runs past the end"):
        ObjectSpec(bytes(raw), name="x")
