"""``pybpf features`` and ``pybpf --version``: what pybpf runs on here.

``features`` reports the system libbpf (version, file, and which of the APIs newer than 1.1
pybpf can use it has), the kernel (release, BTF, kprobes), this process's BPF capabilities
and the binding in use; ``-j`` gives the same as JSON. ``--version`` (``-V``) is the short
form: pybpf, libbpf, kernel and Python versions, and whether the compiled extension is in use.
"""

from __future__ import annotations

import platform
import sys
from typing import Any

import pybpf
from pybpf.cli.render import JSON_FLAG, console, guarded, json_wanted, print_json, table

__all__ = ["features_command", "version_info", "version_text"]


def _binding() -> dict[str, Any]:
    from pybpf._sys import fast

    return {"extension": fast.EXTENSION, "mode": fast.MODE,
            "what": "compiled extension pybpf._sys._fast (cffi API mode)" if fast.EXTENSION
            else "ABI-mode cffi binding (the compiled extension is not built or disabled)"}


def version_info() -> dict[str, Any]:
    """pybpf, libbpf, kernel and Python versions, and the binding in use (``pybpf --version -j``)."""
    lib = pybpf.features.libbpf()
    return {"pybpf": pybpf.__version__, "libbpf": lib.version, "libbpf_path": lib.path,
            "kernel": platform.release(), "python": platform.python_version(),
            "python_executable": sys.executable, "compiled_extension": _binding()["extension"]}


def version_text() -> str:
    """``pybpf --version``: one line per component."""
    v = version_info()
    return "\n".join([
        f"pybpf {v['pybpf']}",
        f"libbpf {v['libbpf']} ({v['libbpf_path'] or 'libbpf.so.1'})",
        f"kernel {v['kernel']}",
        f"Python {v['python']} ({v['python_executable']})",
        f"compiled extension: {'in use' if v['compiled_extension'] else 'not in use (ABI-mode binding)'}",
    ])


def _report() -> dict[str, Any]:
    found = pybpf.features.detect()
    return {"pybpf": pybpf.__version__, "python": platform.python_version(),
            "libbpf": pybpf.features.libbpf().to_dict(), "binding": _binding(),
            "kernel": {"release": found.kernel, "btf": found.kernel_btf, "kprobes": found.kprobes},
            "capabilities": sorted(found.capabilities)}


@guarded
def features_command(as_json: bool = JSON_FLAG()) -> None:
    """What pybpf runs on here: libbpf (version, optional APIs), kernel, capabilities, binding."""
    report = _report()
    if json_wanted(as_json):
        print_json(report)
        return
    lib = report["libbpf"]
    out = console()
    out.print(f"pybpf {report['pybpf']} on Python {report['python']}; {report['binding']['what']}")
    out.print(f"libbpf {lib['version']} ({lib['path'] or 'libbpf.so.1'}): needs >= 1.1; "
              "newer APIs are used when present")
    out.print(table("optional libbpf APIs", ["symbol", "since", "present"],
                    [(o["symbol"], o["since"], "yes" if o["present"] else "no") for o in lib["optional"]]))
    k = report["kernel"]
    out.print(f"kernel {k['release']}: BTF {'yes' if k['btf'] else 'no'}, kprobes {'yes' if k['kprobes'] else 'no'}")
    out.print(f"capabilities: {', '.join(report['capabilities']) or 'none'}")
