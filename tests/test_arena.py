"""Arena maps: a BPF program (bpf_src/arena_list.bpf.c, built with clang 19) builds a linked list
with real pointers in the arena, and Python walks it through the numpy view of the arena.

pybpf creates and maps the arena itself on every libbpf release (see pybpf.maps.arena). A kernel
that refuses arena maps (this machine's 6.18 build answers EPERM to root with every capability,
as it does to fentry loads: DESIGN.md) gets a NotSupportedError that says exactly that, and the
object is left open, nothing loaded.
"""

from __future__ import annotations

import errno
import shutil

import numpy as np
import pytest

import pybpf
from tests.conftest import needs_kernel

REFUSED = "the kernel refused it with EPERM although this process has CAP_BPF and CAP_SYS_ADMIN: " \
          "this kernel does not allow BPF arena maps"


def _node_dtype(obj: pybpf.Object) -> np.dtype:
    assert obj.btf is not None
    return obj.btf.dtype(obj.btf.find("list_node", "struct"))


def _load_or_refused(obj: pybpf.Object) -> bool:
    """Load; False when this kernel refuses arena maps (after checking the error says so)."""
    try:
        obj.load()
    except pybpf.NotSupportedError as exc:
        assert REFUSED in str(exc) and exc.errno == errno.EPERM and exc.feature == "arena"
        assert obj.state == "open"
        return False
    return True


def test_bpf_builds_a_list_python_walks_it(bundled, kernel):
    with pybpf.open(bundled("arena_list")) as obj:
        obj.rodata["count"] = 100
        if not _load_or_refused(obj):
            return
        arena = obj.maps["arena"].arena()
        assert obj.maps["arena"].type == "arena" and arena.size == 4 * arena.size // arena.pages
        assert obj.programs["build_list"].test_run(ctx_in=b"").retval == 0
        assert int(obj.bss["built"]) == 100
        dtype = _node_dtype(obj)
        seen = []
        pointer = int(obj.bss["head"])
        while pointer:
            node = arena.at(pointer, dtype)
            seen.append((int(node["index"]), int(node["value"])))
            pointer = int(node["next"])
        assert seen == [(i, (i + 1) ** 2) for i in reversed(range(100))]
        # the same bytes through the whole-arena view, and a write BPF's pointer reads back
        first = arena.offset(int(obj.bss["head"]), dtype.itemsize)
        record = arena.view()[first:first + dtype.itemsize].view(dtype)[0]
        assert int(record["index"]) == 99
        arena.at(int(obj.bss["head"]), dtype)["value"] = 7
        assert int(record["value"]) == 7
        view = arena.view()
    assert int(view[first:first + dtype.itemsize].view(dtype)[0]["value"]) == 7  # outlives the object


def test_arena_errors_are_typed(bundled, kernel):
    with pybpf.open(bundled("arena_list")) as obj:
        with pytest.raises(pybpf.BpfError, match="mapped when its object loads"):
            obj.maps["arena"].arena()
        with pytest.raises(pybpf.WrongMapTypeError, match="not an arena"):
            obj.maps[".bss"].arena()
        if not _load_or_refused(obj):
            return
        arena = obj.maps["arena"].arena()
        with pytest.raises(pybpf.InvalidArgumentError, match="outside arena"):
            arena.at(arena.base + arena.size, np.uint64)
        with pytest.raises(pybpf.InvalidArgumentError, match="outside arena"):
            arena.offset(0)


def test_map_extra_is_refused_before_the_kernel_is_asked(kernel, tmp_path):
    clang = shutil.which("clang-19") or shutil.which("clang")
    if clang is None:
        needs_kernel("needs clang 19 (make setup installs clang-19)")
    source = tmp_path / "fixed.bpf.c"
    source.write_text('#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n'
                      "struct { __uint(type, BPF_MAP_TYPE_ARENA); __uint(map_flags, BPF_F_MMAPABLE);\n"
                      "         __uint(max_entries, 1); __uint(map_extra, 1 << 20); } arena SEC(\".maps\");\n"
                      'SEC("syscall") int f(void *ctx) { return 0; }\n'
                      'char LICENSE[] SEC("license") = "GPL";\n')
    with pybpf.open(pybpf.build(source, tmp_path / "fixed.bpf.o", clang=clang)) as obj:
        with pytest.raises(pybpf.NotSupportedError, match="drop map_extra"):
            obj.load()
        assert obj.state == "open"
