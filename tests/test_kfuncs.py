"""kfunc prototypes: ``pybpf btf dump`` of the kernel's BTF and the shipped vmlinux.h declare every
function the BTF tags ``bpf_kfunc`` as bpftool >= 7.5 does (``extern ... __weak __ksym;`` under
``#ifndef BPF_NO_KFUNC_PROTOTYPES``), so BPF C that calls a kfunc without declaring it (bcc's
libbpf-tools do, e.g. ``bpf_task_from_pid``) compiles against pybpf's header and loads here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

import pybpf
from pybpf import cheader
from pybpf.btf.types import Btf
from tests.conftest import ROOT, needs_kernel

GUARD = "#ifndef BPF_NO_KFUNC_PROTOTYPES"
PROTOTYPE = re.compile(r"^extern .* __weak __ksym;$", re.M)
_ATTRIBUTE_WORDS = {"__attribute__", "btf_type_tag", "address_space"}


def _declared(block: str) -> list[str]:
    """The function name of each prototype line (the first ``name(`` that is not an attribute)."""
    names = []
    for line in PROTOTYPE.findall(block):
        names.append(next(w for w in re.findall(r"(\w+)\(", line) if w not in _ATTRIBUTE_WORDS))
    return names

# bcc's pattern (libbpf-tools): a kfunc called with no declaration of its own
KFUNC_USER = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

const volatile int want_pid = 0;
char target_comm[16];
__u64 found;

SEC("tracepoint/syscalls/sys_enter_kill")
int kill_entry(struct trace_event_raw_sys_enter *ctx)
{
	pid_t tpid = (pid_t)ctx->args[0];
	struct task_struct *task;

	if ((bpf_get_current_pid_tgid() >> 32) != want_pid)
		return 0;
	task = bpf_task_from_pid(tpid);
	if (!task)
		return 0;
	bpf_probe_read_kernel_str(target_comm, sizeof(target_comm), task->comm);
	found++;
	bpf_task_release(task);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


def _kernel_btf() -> str:
    if not os.path.exists(cheader.KERNEL_BTF):
        needs_kernel("no kernel BTF at /sys/kernel/btf/vmlinux")
    return cheader.KERNEL_BTF


def _tagged_kfuncs(path: str) -> set[str]:
    """The kfuncs of a BTF, found by pybpf's pure parser (independently of the libbpf dump)."""
    btf = Btf.from_file(path)
    names = set()
    for t in btf:
        if t.kind == "decl_tag" and t.name == "bpf_kfunc" and t.component_idx == -1:
            target = btf[t.type or 0]
            if target.kind == "func":
                names.add(target.name)
    return names


def _kfunc_block(header: str) -> str:
    start = header.index("/* BPF kfuncs */")
    return header[start:header.index("#endif\n", start) + len("#endif\n")]


def test_kernel_dump_declares_every_tagged_kfunc():
    path = _kernel_btf()
    header = cheader.dump_c(path)
    block = _kfunc_block(header)
    assert block.splitlines()[1] == GUARD
    declared = _declared(block)
    expected = _tagged_kfuncs(path)
    if not expected:
        needs_kernel("this kernel's BTF tags no kfunc (pahole without decl_tag_kfuncs)")
    assert sorted(declared) == declared, "sorted by name, as bpftool does"
    assert set(declared) == expected
    assert len(declared) == len(expected)
    assert "extern struct task_struct *bpf_task_from_pid(s32 pid) __weak __ksym;" in block
    # the block sits inside the header, before the preserve_access_index pop and the guard's end
    assert header.index(block) < header.rindex("#pragma clang attribute pop") < header.rindex("#endif")
    for macro in ("__ksym", "__weak", "__bpf_fastcall"):
        assert f"#ifndef {macro}\n" in header


def test_cli_dump_and_type_dumps():
    path = _kernel_btf()
    out = subprocess.run([sys.executable, "-m", "pybpf.cli", "btf", "dump", path], capture_output=True, text=True,
                         check=True).stdout
    assert GUARD in out and "bpf_task_from_pid(s32 pid) __weak __ksym;" in out
    one = cheader.dump_c(path, type_names=["task_struct"], guard=False)
    assert "BPF kfuncs" not in one  # a dump of chosen types is only those types


def test_same_block_as_bpftool_where_bpftool_writes_one():
    """bpftool >= 7.5 (Debian 13) writes the same block; Debian 12's 7.1 writes none."""
    path = _kernel_btf()
    bpftool = shutil.which("bpftool")
    if bpftool is None:
        needs_kernel("needs bpftool (make setup installs it)")
    theirs = subprocess.run([bpftool, "btf", "dump", "file", path, "format", "c"], capture_output=True, text=True,
                            check=True).stdout
    if "/* BPF kfuncs */" not in theirs:
        version = subprocess.run([bpftool, "version"], capture_output=True, text=True).stdout.split("\n")[0]
        assert re.search(r"v7\.[0-4]\.", version), f"bpftool {version} should write kfunc prototypes"
        return
    ours = _kfunc_block(cheader.dump_c(path))
    if "__bpf_fastcall" not in theirs:  # bpftool 7.5 (Debian 13) predates the fastcall marker
        ours = ours.replace("extern __bpf_fastcall ", "extern ")
    assert ours == _kfunc_block(theirs)


def test_shipped_header_has_the_prototypes():
    shipped = (ROOT / "vmlinux" / "vmlinux.h").read_text()
    block = _kfunc_block(shipped)
    assert block.splitlines()[1] == GUARD
    names = _declared(block)
    assert len(names) > 100 and "bpf_task_from_pid" in names and "bpf_arena_alloc_pages" in names
    assert (ROOT / "src/pybpf/include/vmlinux.h").read_text() == shipped


@pytest.mark.parametrize("clang", ["clang", "clang-19"])
def test_bcc_pattern_compiles_against_pybpf_header_and_loads(kernel, tmp_path, clang):
    if shutil.which(clang) is None:
        needs_kernel(f"needs {clang} (make setup installs it)")
    source = tmp_path / "sigsnoop_like.bpf.c"
    source.write_text(KFUNC_USER)
    obj_path = pybpf.build(source, tmp_path / "sigsnoop_like.bpf.o", clang=shutil.which(clang))
    target = subprocess.Popen(["sleep", "30"])
    try:
        with pybpf.open(obj_path) as obj:
            obj.rodata["want_pid"] = os.getpid()
            obj.load()
            with obj.programs["kill_entry"].attach():
                os.kill(target.pid, 0)  # signal 0: the syscall runs, nothing is delivered
            assert int(obj.bss["found"]) == 1
            assert pybpf.cstring(obj.bss["target_comm"]) == b"sleep"
    finally:
        target.send_signal(signal.SIGKILL)
        target.wait()


def test_opt_out_guard_lets_a_program_declare_its_own(tmp_path):
    """A program with its own (here: different) declaration builds with -DBPF_NO_KFUNC_PROTOTYPES."""
    source = tmp_path / "own.bpf.c"
    source.write_text('#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n'
                      "extern struct task_struct *bpf_task_from_pid(long pid) __ksym;\n"
                      'SEC("tracepoint/syscalls/sys_enter_kill") int f(void *ctx) { return 0; }\n'
                      'char LICENSE[] SEC("license") = "GPL";\n')
    with pytest.raises(pybpf.BuildError, match="conflicting types for 'bpf_task_from_pid'"):
        pybpf.build(source, tmp_path / "a.bpf.o")
    assert pybpf.build(source, tmp_path / "b.bpf.o", defines=["BPF_NO_KFUNC_PROTOTYPES"]).exists()
