"""An object written outside the project (compiled here against vmlinux/vmlinux.h) goes
through exactly the public API: rodata, bss, data, a custom data section, string
literals (.rodata.str1.1), an mmapable array, a hash map and a CO-RE read."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from pathlib import Path

import pybpf
from tests.conftest import ROOT

SOURCE = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

const volatile int target_pid = 0;
const volatile char tag[8] = "unseen";
long counted = 0;
long weight = 3;
int custom_counter SEC(".data.stats_for_a_rather_long_section_name") = 40;
unsigned int parent_seen = 0;

struct value { __u64 n; __u32 ppid; char comm[16]; };

struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(map_flags, BPF_F_MMAPABLE);
         __uint(max_entries, 4); __type(key, __u32); __type(value, __u64); } by_slot SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 16);
         __type(key, int); __type(value, struct value); } by_pid SEC(".maps");

SEC("tp/syscalls/sys_enter_getppid")
int count_it(void *ctx)
{
    int pid = bpf_get_current_pid_tgid() >> 32;
    struct task_struct *task = (void *)bpf_get_current_task();
    struct value fresh = {}, *v;
    __u32 slot = 2;
    __u64 *s;

    if (pid != target_pid)
        return 0;
    bpf_printk("pid %d", pid);
    counted += weight;
    custom_counter++;
    parent_seen = BPF_CORE_READ(task, real_parent, tgid);
    s = bpf_map_lookup_elem(&by_slot, &slot);
    if (s)
        __sync_fetch_and_add(s, 1);
    v = bpf_map_lookup_elem(&by_pid, &pid);
    if (!v) {
        bpf_map_update_elem(&by_pid, &pid, &fresh, BPF_ANY);
        v = bpf_map_lookup_elem(&by_pid, &pid);
        if (!v)
            return 0;
    }
    v->n++;
    v->ppid = parent_seen;
    bpf_get_current_comm(v->comm, sizeof(v->comm));
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def unseen_object(tmp_path_factory) -> str:
    clang = shutil.which("clang")
    if clang is None:
        pytest.fail("clang is needed to build the test object (make setup installs it)")
    work = tmp_path_factory.mktemp("unseen")
    (work / "unseen_tool.bpf.c").write_text(SOURCE)
    out = work / "unseen_tool.bpf.o"
    subprocess.run([clang, "-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86", f"-I{ROOT / 'vmlinux'}",
                    "-c", str(work / "unseen_tool.bpf.c"), "-o", str(out)], check=True)
    subprocess.run(["llvm-strip", "-g", str(out)], check=True)
    return str(out)


def test_unseen_object_through_the_public_api(unseen_object, kernel):
    with pybpf.open(unseen_object) as obj:
        assert obj.rodata["tag"].tobytes().rstrip(b"\0") == b"unseen"
        obj.rodata["target_pid"] = os.getpid()
        custom = obj.section(".data.stats_for_a_rather_long_section_name")
        assert int(custom["custom_counter"]) == 40
        obj.data["weight"] = 5
        obj.load()
        with obj.programs["count_it"].attach():
            for _ in range(3):
                os.getppid()
        assert int(obj.bss["counted"]) == 15
        assert int(custom["custom_counter"]) == 43
        assert int(obj.bss["parent_seen"]) == os.getppid()
        assert list(obj.maps["by_slot"].view()) == [0, 0, 3, 0]
        value = obj.maps["by_pid"][os.getpid()]
        assert int(value["n"]) == 3 and int(value["ppid"]) == os.getppid()
        assert value["comm"] == Path("/proc/self/comm").read_bytes().strip()[:15]


NO_DATA_SECTION = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
struct flags { __u32 a:3; __u32 b:5; __u16 c; __u8 d:1; };
struct flags fl = {};
__u32 short_one SEC(".data.x") = 7;
SEC("tracepoint/syscalls/sys_enter_getppid")
int prog(void *ctx) { short_one++; fl.b = 3; return 0; }
char LICENSE[] SEC("license") = "GPL";
"""


def test_open_failure_carries_libbpf_reason(tmp_path):
    """clang 14 gives this object a .data DATASEC but no .data section: libbpf refuses
    it, and the error must say libbpf's reason, not a bare ENOENT."""
    source = tmp_path / "nodata.bpf.c"
    source.write_text(NO_DATA_SECTION)
    out = tmp_path / "nodata.bpf.o"
    subprocess.run(["clang", "-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86", f"-I{ROOT / 'vmlinux'}",
                    "-c", str(source), "-o", str(out)], check=True)
    try:
        obj = pybpf.open(out)
    except pybpf.ObjectFormatError as exc:
        assert "'.data'" in str(exc) and "failed to determine size" in str(exc)
        assert str(out) in str(exc)
    else:  # a compiler that emits the section: then the variables must be there
        with obj:
            assert int(obj.section(".data.x")["short_one"]) == 7
