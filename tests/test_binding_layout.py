"""Every struct declared in the cffi cdef has the size and field offsets of the C headers.

A small C program, compiled with the system compiler against the installed
libbpf and kernel UAPI headers, prints sizeof/offsetof for each struct and
field cffi knows; the two must agree exactly, or libbpf would read garbage.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from pybpf._sys.libbpf import VERSION, ffi, has_symbol

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
        assert ffi.sizeof(ctype) == expected[(ctype, "sizeof")], f"sizeof({ctype})"
        for name, offset in _fields(ctype):
            if (ctype, name) in expected:
                assert offset == expected[(ctype, name)], f"offsetof({ctype}, {name})"
                checked += 1
    assert checked > 100


def test_version_gate_and_optional_symbols():
    assert VERSION >= (1, 1)
    assert has_symbol("bpf_object__open_file")
    assert not has_symbol("definitely_not_a_libbpf_symbol")
