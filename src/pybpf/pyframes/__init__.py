"""CPython frames from outside the process: offsets without hand-typed tables, verified.

    from pybpf.pyframes import PythonProcess
    with PythonProcess(pid) as proc:          # refuses (UnreadablePythonError) what it cannot read
        for thread in proc.threads():
            print(thread.tid, [str(proc.code_info(c)) for c in thread.frames])

Offsets come from CPython 3.13's ``_Py_DebugOffsets`` (read from the process), from the
BTF of a probe compiled against the installed headers (3.11, 3.12), or from a file
(:meth:`PyOffsets.to_json`); they are checked against the running interpreter before use.
This package reads ``/proc`` and files (and runs the C compiler once per header set):
it never makes a bpf() call. The BPF side that walks frames is ``bpf_src/pyprofile.bpf.c``.
"""

from __future__ import annotations

from pybpf.pyframes.headers import header_dirs, header_offsets, header_version
from pybpf.pyframes.offsets import (DEBUG_COOKIE, PyOffsets, UnreadablePythonError, offsets_from_btf,
                                    offsets_from_debug)
from pybpf.pyframes.process import CodeInfo, PythonProcess, ThreadInfo, load_offsets_file

__all__ = ["DEBUG_COOKIE", "CodeInfo", "PyOffsets", "PythonProcess", "ThreadInfo", "UnreadablePythonError",
           "header_dirs", "header_offsets", "header_version", "load_offsets_file", "offsets_from_btf",
           "offsets_from_debug"]
