"""uprobe_multi links: one link on the 50 functions of a C program built here, counted per
function through the attach cookie; the same through SEC("uprobe.multi/BINARY:PATTERN").

On a libbpf older than 1.3 (Debian 12's 1.1) pybpf makes the link with its own bpf(2) call
and finds the functions' offsets itself; with 1.3 and later libbpf makes it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import pybpf
from pybpf.link import uprobe_multi
from tests.conftest import ROOT, needs_kernel

FUNCS = [f"f{i:02d}" for i in range(50)]


@pytest.fixture(scope="module")
def many_funcs(tmp_path_factory: pytest.TempPathFactory) -> str:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        needs_kernel("needs a C compiler (gcc)")
    out = tmp_path_factory.mktemp("uprobe_multi") / "many_funcs"
    subprocess.run([compiler, "-O2", "-o", str(out), str(ROOT / "tests/data/many_funcs.c")], check=True)
    return str(out)


class Runner:
    """many_funcs started and waiting: ``go()`` makes it call f_i i + 1 times and exit."""

    def __init__(self, binary: str) -> None:
        self.p = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.p.stdout is not None and self.p.stdout.readline().strip() == "ready"

    def go(self) -> str:
        out, _ = self.p.communicate("go\n", timeout=30)
        assert self.p.returncode == 0
        return out

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.communicate()


@pytest.fixture
def runner(many_funcs: str) -> Iterator[Runner]:
    r = Runner(many_funcs)
    try:
        yield r
    finally:
        r.close()


def _open(bundled, pid: int) -> pybpf.Object:
    obj = pybpf.open(bundled("uprobe_multi_count"))
    obj.rodata["target_tgid"] = pid
    return obj.load()


def test_one_link_counts_fifty_functions_by_cookie(bundled, kernel, many_funcs, runner):
    with _open(bundled, runner.p.pid) as obj:
        prog = obj.programs["count_calls"]
        assert prog.expected_attach_type == "trace_uprobe_multi"
        with prog.attach_uprobe_multi(many_funcs, FUNCS, pid=runner.p.pid, cookies=range(50)) as link:
            assert link.info().type == "uprobe_multi"
            assert isinstance(link, pybpf.BpfLink)
            runner.go()
            calls = obj.bss["calls"].copy()
        assert list(calls[:50]) == [i + 1 for i in range(50)]
        assert not calls[50:].any() and int(obj.bss["out_of_range"]) == 0


def test_return_probes_and_a_pattern(bundled, kernel, many_funcs, runner):
    with _open(bundled, runner.p.pid) as obj:
        # a pattern: every function matches, all with cookie 0
        with obj.programs["count_returns"].attach_uprobe_multi(many_funcs, "f[0-4]?", retprobe=True,
                                                                pid=runner.p.pid):
            runner.go()
        assert int(obj.bss["calls"][0]) == sum(range(1, 51))


def test_section_names_binary_and_pattern(bundled, kernel, many_funcs, runner, tmp_path):
    source = tmp_path / "sec.bpf.c"
    source.write_text(f"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
const volatile __u32 target_tgid = 0;
__u64 hits;
SEC("uprobe.multi/{many_funcs}:f1?")
int on_f1x(void *ctx)
{{
    if ((bpf_get_current_pid_tgid() >> 32) == target_tgid)
        __sync_fetch_and_add(&hits, 1);
    return 0;
}}
char LICENSE[] SEC("license") = "GPL";
""")
    with pybpf.open(pybpf.build(source, output=tmp_path / "sec.bpf.o")) as obj:
        obj.rodata["target_tgid"] = runner.p.pid
        obj.load()
        prog = obj.programs["on_f1x"]
        assert prog.auto_attachable and prog.type == "kprobe"
        with prog.attach() as link:
            assert link.info().type == "uprobe_multi"
            runner.go()
        assert int(obj.bss["hits"]) == sum(range(11, 21))  # f10..f19 are called 11..20 times


def test_bad_targets_are_named(bundled, kernel, many_funcs):
    with _open(bundled, 0) as obj:
        prog = obj.programs["count_calls"]
        with pytest.raises(pybpf.BpfError, match="has no function 'nope'"):
            prog.attach_uprobe_multi(many_funcs, ["f01", "nope"])
        with pytest.raises(pybpf.BpfError, match="no function of .* matches 'zz\\*'"):
            prog.attach_uprobe_multi(many_funcs, "zz*")
        with pytest.raises(ValueError, match="3 cookies for 2 functions"):
            prog.attach_uprobe_multi(many_funcs, ["f01", "f02"], cookies=[1, 2, 3])
        with pytest.raises(ValueError, match="needs a list of functions"):
            prog.attach_uprobe_multi(many_funcs, "f*", cookies=[1])
        with pytest.raises(pybpf.BpfError, match="cannot find the binary"):
            prog.attach_uprobe_multi("/nonexistent/binary", ["f01"])
        with pytest.raises(pybpf.ObjectFormatError, match="not a readable ELF"):
            prog.attach_uprobe_multi(str(ROOT / "tests/data/many_funcs.c"), ["f01"])
        assert not obj.links


def test_path_taken_matches_libbpf():
    """The libbpf API where it exists (1.3+), pybpf's own BPF_LINK_CREATE before."""
    assert uprobe_multi.uses_libbpf() == (pybpf.features.libbpf_version() >= (1, 3))


def test_explicit_verb_named_for_a_bare_section(bundled, kernel):
    with pybpf.open(bundled("uprobe_multi_count")) as obj:
        obj.load()
        with pytest.raises(pybpf.BpfError, match=r"attach_uprobe_multi\(binary"):
            obj.programs["count_calls"].attach()
