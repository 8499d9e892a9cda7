"""Symbolization: kernel and user addresses -> function names, in bulk.

    from pybpf.symbolize import Symbolizer
    sym = Symbolizer()
    sym.kernel(kstack).names          # ['__schedule', 'schedule', ...]
    sym.remember(pid)                 # keep its mappings: it may exit before we resolve
    sym.user(pid, ustack).names       # ['hot', 'main', '__libc_start_call_main', ...]

Sources: ``/proc/kallsyms`` (kernel, modules, JIT-compiled BPF programs), the ELF files a
process maps (``.symtab``/``.dynsym``, through ``/proc/PID/root`` so containers resolve,
separate debug files by build-id, the vDSO), ``/tmp/perf-PID.map`` for JIT code, and
DWARF line tables (pyelftools) for ``file:line``. This package reads ``/proc`` and files
only: it never makes a bpf() call.
"""

from __future__ import annotations

from pybpf.symbolize.elf import ElfSymbols, LineTable
from pybpf.symbolize.kallsyms import KernelSymbols
from pybpf.symbolize.process import Mapping, PerfMap, ProcessMaps, read_maps
from pybpf.symbolize.symbolizer import UNKNOWN, Frame, Frames, Symbolizer

__all__ = ["UNKNOWN", "ElfSymbols", "Frame", "Frames", "KernelSymbols", "LineTable", "Mapping", "PerfMap",
           "ProcessMaps", "Symbolizer", "read_maps"]
