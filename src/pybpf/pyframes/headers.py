"""CPython offsets from the headers ``python3-dev`` installs: compile a probe file with BTF, read it.

Owns the one compile step: a small C file that includes CPython's internal headers
(``Py_BUILD_CORE``) and declares pointers to the structures a stack walker reads is
compiled by the host compiler with ``-gbtf`` (GCC >= 12 emits BTF for x86-64 objects),
so the layout is the one the interpreter's own build used (same compiler ABI, same
``pyconfig.h``); :mod:`pybpf.btf` reads the object's ``.BTF`` and
:func:`pybpf.pyframes.offsets.offsets_from_btf` looks the fields up by name. Results are
kept per header directory for the life of the process.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading

from pybpf.btf.types import Btf
from pybpf.pyframes.offsets import PyOffsets, UnreadablePythonError, offsets_from_btf

__all__ = ["PROBE_SOURCE", "header_dirs", "header_offsets", "header_version"]

PROBE_SOURCE = """\
#define Py_BUILD_CORE 1
#include <Python.h>
#include <internal/pycore_frame.h>
#include <internal/pycore_runtime.h>
#include <internal/pycore_interp.h>
_PyRuntimeState *pybpf_runtime;
PyInterpreterState *pybpf_interp;
PyThreadState *pybpf_tstate;
struct _PyInterpreterFrame *pybpf_frame;
PyCodeObject *pybpf_code;
PyObject *pybpf_object;
PyASCIIObject *pybpf_ascii;
PyCompactUnicodeObject *pybpf_compact;
enum _frameowner pybpf_owner;
"""

_CFRAME = "_PyCFrame *pybpf_cframe;\n"
_lock = threading.Lock()
_cache: dict[tuple[int, int, float], PyOffsets] = {}


def header_dirs(version: tuple[int, int], prefixes: tuple[str, ...] = ()) -> list[str]:
    """Where the headers of CPython ``version`` may be: each ``PREFIX/include/python3.X``
    (the interpreter's own prefix first), then ``/usr/include`` and ``/usr/local/include``."""
    name = f"python{version[0]}.{version[1]}"
    out: list[str] = []
    for prefix in (*prefixes, "/usr", "/usr/local"):
        path = os.path.join(prefix, "include", name)
        if path not in out:
            out.append(path)
    return out


def header_version(directory: str) -> tuple[int, int, int] | None:
    """The ``PY_VERSION`` of the headers in ``directory`` (``patchlevel.h``), or None."""
    try:
        with open(os.path.join(directory, "patchlevel.h"), encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    m = re.search(r'#define\s+PY_VERSION\s+"(\d+)\.(\d+)\.(\d+)', text)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def _compiler() -> str:
    cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("gcc")
    if cc is None:
        raise UnreadablePythonError("deriving CPython offsets from its headers needs gcc (>= 12, for -gbtf): "
                                    "apt-get install gcc")
    return cc


def header_offsets(directory: str, version: tuple[int, int]) -> PyOffsets:
    """The offsets of CPython ``version`` as the headers in ``directory`` lay it out."""
    found = header_version(directory)
    if found is None:
        raise UnreadablePythonError(f"no CPython headers in {directory} (python{version[0]}.{version[1]}-dev "
                                    "installs them)")
    if found[:2] != version:
        raise UnreadablePythonError(f"the headers in {directory} are CPython {found[0]}.{found[1]}.{found[2]}, "
                                    f"not {version[0]}.{version[1]}")
    # the file itself, not its path: /proc/PID/root/usr/include/... of a process in another
    # mount namespace names other headers than our /usr/include/...
    st = os.stat(os.path.join(directory, "patchlevel.h"))
    key = (st.st_dev, st.st_ino, st.st_mtime)
    with _lock:
        cached = _cache.get(key)
        if cached is not None:
            return cached
        source = PROBE_SOURCE + (_CFRAME if version < (3, 13) else "")
        with tempfile.TemporaryDirectory(prefix="pybpf-pyoffsets-") as tmp:
            src, obj = os.path.join(tmp, "probe.c"), os.path.join(tmp, "probe.o")
            with open(src, "w") as f:
                f.write(source)
            cmd = [_compiler(), "-gbtf", "-c", "-o", obj, "-I", directory, src]
            try:
                run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise UnreadablePythonError(f"compiling the offsets probe against {directory}: {exc}") from None
            if run.returncode != 0:
                last = [line for line in run.stderr.splitlines() if line.strip()][-3:]
                raise UnreadablePythonError(f"compiling the offsets probe against {directory} failed "
                                            f"({' '.join(cmd[:2])}): " + " | ".join(last))
            btf = Btf.from_file(obj)
        shown = re.sub(r"^/proc/\d+/root(?=/)", "", directory)   # the path as the process sees it
        offsets = offsets_from_btf(btf, version, source=f"headers {shown} ({found[0]}.{found[1]}.{found[2]}, "
                                                        f"{os.path.basename(cmd[0])} -gbtf)")
        _cache[key] = offsets
        return offsets
