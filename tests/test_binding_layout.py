"""Every struct declared in the cffi cdef has the field offsets of the C headers, and every
libbpf function pybpf requires is in libbpf 1.1: the binding holds on any libbpf 1.1..1.5.

A small C program, compiled with the system compiler against the installed libbpf and
kernel UAPI headers, prints sizeof/offsetof for each struct and field cffi knows. Every
offset must be equal. The size may be smaller than the header's: libbpf's ``*_opts`` and the
kernel's ``bpf_*_info`` structs grow by fields appended at the end (libbpf 1.5's
``bpf_object_open_opts`` is 88 bytes, 1.1's 80), and a caller passing the older, smaller
size (``sz``, ``info_len``) is what libbpf and the kernel accept. A struct whose layout is
fixed must be equal.

The symbol check reads the loaded libbpf's symbol versions (``LIBBPF_1.N.0``, readelf):
each function of the required cdef is in a version node no newer than 1.1, and each optional
one is listed with the release that added it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from cffi import FFI

from pybpf._sys.cdef import CDEF, OPTIONAL_CDEF, OPTIONAL_SYMBOLS
from pybpf._sys.libbpf import VERSION, ffi, has_symbol, library_path, optional_symbols

# cdef struct -> C type name (where the cdef renames padding, the field is skipped)
STRUCTS = [
    "struct bpf_object_open_opts", "struct bpf_uprobe_opts", "struct bpf_kprobe_opts",
    "struct bpf_tracepoint_opts", "struct bpf_perf_event_opts", "struct bpf_trace_opts",
    "struct bpf_iter_attach_opts", "union bpf_iter_link_info", "struct bpf_tc_hook", "struct bpf_tc_opts",
    "struct bpf_xdp_attach_opts", "struct bpf_map_create_opts", "struct bpf_map_batch_opts",
    "struct bpf_test_run_opts", "struct bpf_prog_info", "struct bpf_map_info", "struct bpf_btf_info",
    "struct ring_buffer_opts", "struct perf_buffer_opts", "struct btf_dump_opts",
    "struct user_ring_buffer_opts", "struct btf_type", "struct statfs", "struct bpf_link_update_opts",
    "struct bpf_prog_load_opts",
]


# layouts that never grow: equal sizes
FIXED = {"struct btf_type", "struct statfs"}

# optional cdef structs (OPTIONAL_CDEF) -> (the C type, the libbpf release whose headers have it):
# checked when the installed headers are that release or newer
NEWER_STRUCTS = {
    "struct bpf_tcx_opts": ("struct bpf_tcx_opts", (1, 3)),
    "struct bpf_uprobe_multi_opts": ("struct bpf_uprobe_multi_opts", (1, 3)),
    "struct bpf_token_create_opts": ("struct bpf_token_create_opts", (1, 4)),
    "struct bpf_object_open_opts_1_4": ("struct bpf_object_open_opts", (1, 4)),
}


def _fields(ctype: str) -> list[tuple[str, int]]:
    fields = ffi.typeof(ctype).fields or []
    return [(name, field.offset) for name, field in fields if not name.startswith("_pad")]


def _c_program() -> str:
    lines = [
        "#include <stdio.h>", "#include <stddef.h>", "#include <sys/vfs.h>",
        "#include <linux/bpf.h>", "#include <bpf/libbpf.h>", "#include <bpf/bpf.h>", "#include <bpf/btf.h>",
        "int main(void) {",
    ]
    for ctype in STRUCTS:
        lines.append(f'  printf("{ctype}|sizeof|%zu\\n", sizeof({ctype}));')
        for name, _offset in _fields(ctype):
            c_field = "gpl_compatible" if name == "gpl_compatible_bits" else name
            if c_field == "gpl_compatible":
                continue  # a C bitfield: offsetof is not allowed; the next field's offset pins it
            lines.append(f'  printf("{ctype}|{name}|%zu\\n", offsetof({ctype}, {c_field}));')
    for ctype, (c_type, (major, minor)) in NEWER_STRUCTS.items():
        lines.append(f"#if LIBBPF_MAJOR_VERSION > {major} || LIBBPF_MINOR_VERSION >= {minor}")
        lines.append(f'  printf("{ctype}|sizeof|%zu\\n", sizeof({c_type}));')
        for name, _offset in _fields(ctype):
            lines.append(f'  printf("{ctype}|{name}|%zu\\n", offsetof({c_type}, {name}));')
        lines.append("#endif")
    lines += ["  return 0;", "}"]
    return "\n".join(lines) + "\n"


def test_cdef_structs_match_c_headers(tmp_path):
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        pytest.fail("no C compiler found (apt-get install gcc)")
    source = tmp_path / "layout.c"
    source.write_text(_c_program())
    binary = tmp_path / "layout"
    build = subprocess.run([compiler, "-o", str(binary), str(source)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    output = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    expected: dict[tuple[str, str], int] = {}
    for line in output.splitlines():
        ctype, field, value = line.split("|")
        expected[(ctype, field)] = int(value)
    checked = 0
    for ctype in STRUCTS:
        if ctype in FIXED:
            assert ffi.sizeof(ctype) == expected[(ctype, "sizeof")], f"sizeof({ctype})"
        else:
            assert ffi.sizeof(ctype) <= expected[(ctype, "sizeof")], f"sizeof({ctype}) larger than the header's"
        for name, offset in _fields(ctype):
            if (ctype, name) in expected:
                assert offset == expected[(ctype, name)], f"offsetof({ctype}, {name})"
                checked += 1
    assert checked > 100
    for ctype in NEWER_STRUCTS:  # present in these headers: the same rules
        if (ctype, "sizeof") in expected:
            assert ffi.sizeof(ctype) <= expected[(ctype, "sizeof")], f"sizeof({ctype}) larger than the header's"
            for name, offset in _fields(ctype):
                assert offset == expected[(ctype, name)], f"offsetof({ctype}, {name})"


def test_version_gate_and_optional_symbols():
    assert VERSION >= (1, 1)
    assert has_symbol("bpf_object__open_file")
    assert not has_symbol("definitely_not_a_libbpf_symbol")


def _functions(cdef: str) -> set[str]:
    """The functions a cdef text declares (cffi's own parser, not a regex)."""
    f = FFI()
    f.cdef(CDEF)  # the optional text uses the required one's types
    before = set(dir(f.dlopen(None)))
    if cdef is CDEF:
        return {n for n in before if not n.isupper() and not n.startswith("LIBBPF_")}
    f.cdef(cdef)
    return {n for n in set(dir(f.dlopen(None))) - before if not n.isupper()}


def _symbol_versions(path: str) -> dict[str, tuple[int, int]]:
    """Each libbpf function the library exports -> (major, minor) of its LIBBPF_x.y.z node."""
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.fail("readelf is missing (binutils, installed with gcc by make setup)")
    out = subprocess.run([readelf, "--dyn-syms", "--wide", path], capture_output=True, text=True,
                         check=True).stdout
    versions = {}
    for line in out.splitlines():
        m = re.search(r"\s(\w+)@@?LIBBPF_(\d+)\.(\d+)\.\d+", line)
        if m and " UND " not in line:
            versions[m[1]] = (int(m[2]), int(m[3]))
    return versions


def test_required_symbols_are_in_libbpf_1_1_and_newer_ones_optional():
    path = library_path()
    assert path and os.path.exists(path), path
    versions = _symbol_versions(path)
    assert len(versions) > 250, path
    required = _functions(CDEF)  # libc's are in LIBC_CDEF, not here
    assert len(required) > 100
    missing = sorted(required - set(versions))
    assert not missing, f"required by the cdef, not exported by {path}: {missing}"
    too_new = sorted(f"{n} (LIBBPF_{versions[n][0]}.{versions[n][1]})" for n in required
                     if versions[n] > (1, 1))
    assert not too_new, f"newer than libbpf 1.1: move them to OPTIONAL_CDEF/OPTIONAL_SYMBOLS: {too_new}"
    optional = _functions(OPTIONAL_CDEF)
    assert optional == set(OPTIONAL_SYMBOLS), "every optional function has its release in OPTIONAL_SYMBOLS"
    present = optional_symbols()
    for name, since in OPTIONAL_SYMBOLS.items():
        assert since > (1, 1), name
        assert present[name] == (name in versions) == has_symbol(name), name
        if name in versions:  # the release written down is the library's own version node
            assert versions[name] == since, (name, versions[name], since)
    print(f"\nlibbpf {'.'.join(map(str, VERSION))} ({path}): optional present: "
          f"{sorted(n for n, p in present.items() if p)}; absent: {sorted(n for n, p in present.items() if not p)}")
