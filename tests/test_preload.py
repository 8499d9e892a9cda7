"""What real tools set before load, and errors that carry the reason.

Loads ``bpf_src/preload.bpf.c`` (a stack trace map, a tp_btf program, ``__kconfig``
externs, a bool knob, ``uretprobe/readline``) and the other bundled objects into
this kernel.
"""

from __future__ import annotations

import errno
import gzip
import os
import re
import time

import numpy as np
import pytest

from typer.testing import CliRunner

import pybpf
from pybpf.btf.types import Btf
from pybpf.cli import app
from pybpf.cli.inspect import describe
from pybpf.spec.elf import ObjectSpec


def _kernel_config(name: str) -> str | None:
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            for line in f:
                if line.startswith(name + "="):
                    return line.split("=", 1)[1].strip()
    except OSError:
        return None
    return None


# ---- map sizes --------------------------------------------------------------------

def test_map_sizes_set_before_load(kernel: None, bundled) -> None:
    with pybpf.open(bundled("preload")) as obj:
        stackmap = obj.maps["stackmap"]
        assert stackmap.value_size == 127 * 8
        stackmap.value_size = 16 * 8  # what profile/offcputime do: perf_max_stack_depth * sizeof(u64)
        stackmap.key_size = 4
        assert stackmap.value_size == 128 and stackmap.value_dtype.itemsize == 128
        obj.load()
        assert stackmap.info.value_size == 128 and stackmap.info.key_size == 4
        with pytest.raises(pybpf.BpfError, match="only possible before load") as exc:
            stackmap.value_size = 256
        assert exc.value.errno is None  # pybpf's own check: no errno the kernel never returned
        assert "[EINVAL" not in str(exc.value)


# ---- attach targets, verifier log and statistics ----------------------------------

def test_set_attach_target_and_verifier_stats(kernel: None, bundled) -> None:
    with pybpf.open(bundled("preload")) as obj:
        program = obj.programs["on_switch"]  # SEC("tp_btf/sched_switch")
        program.set_attach_target(0, "sys_enter")
        obj.load(verifier_stats=True)
        assert program.log_level == 4
        info = program.info()
        vmlinux = Btf.from_file("/sys/kernel/btf/vmlinux")
        assert vmlinux[info.attach_btf_id].name == "btf_trace_sys_enter"
        stats = program.verifier_stats
        assert stats is not None and "processed" in program.verifier_log
        assert stats.insns_processed == info.verified_insns > 0
        assert stats.insn_limit == 1_000_000 and stats.verification_time_us is not None
        assert len(stats.stack_depth) >= 1
        with obj.programs["on_switch"].attach():
            before = int(obj.bss["switches"])
            os.getppid()
            time.sleep(0.05)
            assert int(obj.bss["switches"]) > before  # fires on sys_enter now
        assert obj.programs["on_readline"].verifier_stats is not None  # every program got the level


def test_verifier_instruction_log(kernel: None, bundled) -> None:
    with pybpf.open(bundled("counters")) as obj:
        obj.load(log_level=2)  # 1 logs instructions only on the path to an error
        log = obj.programs["on_getppid"].verifier_log
        assert re.search(r"^\d+: \(", log, re.M), log[:300]  # instruction lines
        assert obj.programs["on_getppid"].verifier_stats is not None
    with pybpf.open(bundled("counters")) as obj:
        obj.load()
        assert obj.programs["on_getppid"].verifier_log == "" and obj.programs["on_getppid"].verifier_stats is None


def test_missing_attach_target_says_so(kernel: None, bundled) -> None:
    with pybpf.open(bundled("preload")) as obj:
        with pytest.raises(pybpf.BpfError) as exc:
            obj.programs["on_switch"].set_attach_target(0, "dummy_file_read")
        assert "failed to find kernel BTF type ID of 'dummy_file_read'" in str(exc.value)
        obj.programs["on_missing_target"].autoload = True  # SEC("?fentry/dummy_file_read")
        with pytest.raises(pybpf.BpfError) as exc:
            obj.load()
        message = str(exc.value)
        assert "on_missing_target" in message
        assert "failed to find kernel BTF type ID of 'dummy_file_read'" in message, message


# ---- feature probes ---------------------------------------------------------------

def test_feature_probes(kernel: None) -> None:
    features = pybpf.features
    assert features.probe_prog_type("xdp") and features.probe_prog_type("tracepoint")
    assert features.probe_map_type("ringbuf") and features.probe_map_type("hash")
    assert features.probe_map_type(2)  # BPF_MAP_TYPE_ARRAY by number
    assert features.probe_helper("sched_cls", "redirect")
    assert features.probe_helper("kprobe", "bpf_get_current_task_btf")
    assert features.probe_helper("kprobe", 1)  # map_lookup_elem by number
    assert not features.probe_helper("socket_filter", "redirect")  # refused for this type
    assert not features.probe_helper("xdp", "no_such_helper")
    with pytest.raises(pybpf.NotSupportedError, match="cannot probe helpers for tracing"):
        features.probe_helper("tracing", "map_lookup_elem")
    with pytest.raises(ValueError, match="map type 'nope'"):
        features.probe_map_type("nope")


# ---- __kconfig externs --------------------------------------------------------------

def test_kconfig_in_inspect_and_live(kernel: None, bundled) -> None:
    spec = ObjectSpec.from_file(bundled("preload"))
    doc = describe(spec)
    kconfig = next(m for m in doc["maps"] if m["name"] == ".kconfig")
    assert kconfig["internal"] and kconfig["type"] == "array" and "RDONLY_PROG" in kconfig["flags"]
    externs = {g["name"]: g for g in doc["globals"] if g["section"] == ".kconfig"}
    assert set(externs) == {"LINUX_KERNEL_VERSION", "CONFIG_BPF_SYSCALL", "CONFIG_HZ"}
    assert all(g["linkage"] == "extern" and g["value"] is None for g in externs.values())
    shown = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["inspect", bundled("preload")])
    assert shown.exit_code == 0 and ".kconfig" in shown.stdout and "set by libbpf at load" in shown.stdout
    with pybpf.open(bundled("preload")) as obj:
        # the layout the spec predicts is libbpf's
        assert obj.maps[".kconfig"].value_size == kconfig["value_size"]
        with pytest.raises(pybpf.BpfError, match="__kconfig extern"):
            obj.section(".kconfig")["CONFIG_HZ"] = 100
        obj.load()
        section = obj.section(".kconfig")
        for name, g in externs.items():
            assert section.dtype_of(name).itemsize == g["size"]
        release = os.uname().release.split("-")[0].split(".")
        major, minor = int(release[0]), int(release[1])
        assert int(section["LINUX_KERNEL_VERSION"]) >> 16 == major
        assert (int(section["LINUX_KERNEL_VERSION"]) >> 8) & 0xFF == minor
        hz = _kernel_config("CONFIG_HZ")
        if hz is not None:
            assert int(section["CONFIG_HZ"]) == int(hz)
        assert bool(section["CONFIG_BPF_SYSCALL"]) is True
        with obj.programs["on_switch"].attach():
            time.sleep(0.05)
        assert int(obj.bss["kernel_version"]) == int(section["LINUX_KERNEL_VERSION"])


# ---- internal map names, auto_attachable, bool ------------------------------------------

def test_internal_maps_by_section_name(kernel: None, bundled) -> None:
    with pybpf.open(bundled("syscount"), object_name="opensnoop_like") as obj:
        rodata = next(name for name in obj.maps if name.endswith(".rodata"))
        assert rodata != ".rodata" and rodata.startswith("opensnoo")  # libbpf truncates
        assert obj.maps[".rodata"] is obj.maps[rodata]
        assert ".rodata" in obj.maps and obj.maps.get(".bss") is obj.maps[rodata.replace("rodata", "bss")]
        with pytest.raises(KeyError, match="no map '.nothing'"):
            obj.maps[".nothing"]


def test_uprobe_section_without_binary_is_not_auto_attachable(kernel: None, bundled) -> None:
    with pybpf.open(bundled("preload")) as obj:
        assert obj.programs["on_readline"].auto_attachable is False  # SEC("uretprobe/readline")
        assert obj.programs["on_switch"].auto_attachable is True
        obj.load()
        links = obj.attach()  # skips on_readline instead of failing
        assert [link.description.split(" ")[0] for link in links] == ["on_switch"]
        with pytest.raises(pybpf.BpfError, match="retprobe=True") as exc:
            obj.programs["on_readline"].attach()
        assert exc.value.errno is None


def test_bool_rejects_other_numbers(bundled) -> None:
    with pybpf.open(bundled("preload")) as obj:
        for bad in (2, -1, 256):
            with pytest.raises(OverflowError, match="out of range for bool"):
                obj.rodata["verbose"] = bad
        for good, expected in ((True, True), (1, True), (0, False), (False, False), (np.bool_(True), True)):
            obj.rodata["verbose"] = good
            assert bool(obj.rodata["verbose"]) is expected


# ---- errors carry libbpf's reason ----------------------------------------------------

def test_map_creation_failure_carries_reason(kernel: None, bundled) -> None:
    with pybpf.open(bundled("counters")) as obj:
        obj.maps["pairs"].max_entries = 0
        with pytest.raises(pybpf.BpfError) as exc:
            obj.load()
    message = str(exc.value)
    assert "creating map 'pairs'" in message and "max_entries 0" in message, message
    assert "failed to create" not in message or "Invalid argument(-22)" in message
    assert "Invalid argument(-22)" in message and exc.value.errno == errno.EINVAL


def test_uprobe_attach_failure_carries_reason(kernel: None, bundled) -> None:
    with pybpf.open(bundled("probes")) as obj:
        obj.load()
        with pytest.raises(pybpf.BpfError) as exc:
            obj.programs["on_enter"].attach_uprobe("/bin/true", "no_such_function_here")
        assert "failed to find symbol 'no_such_function_here'" in str(exc.value)
        with pytest.raises(pybpf.BpfError) as exc:  # a pid that does not exist: the kernel says ESRCH
            obj.programs["on_enter"].attach_uprobe("/bin/true", 0x1000, pid=2**22 + 12345)
        assert exc.value.errno == errno.ESRCH
        assert "failed to create uprobe" in str(exc.value) and "perf event" in str(exc.value), str(exc.value)
        with pytest.raises(pybpf.BpfError) as exc:  # not an ELF file
            obj.programs["on_enter"].attach_uprobe("/etc/passwd", "main")
        assert "failed to get ehdr from /etc/passwd" in str(exc.value), str(exc.value)


def test_test_run_explains_types_without_test_run(kernel: None, bundled) -> None:
    with pybpf.open(bundled("counters")) as obj:
        obj.load()
        with pytest.raises(pybpf.NotSupportedError) as exc:
            obj.programs["on_getppid"].test_run()
        message = str(exc.value)
        assert "tracepoint programs have no test run" in message and "[ENOTSUPP" in message, message
        assert "Unknown error 524" not in message
        with pytest.raises(pybpf.NotSupportedError) as exc:
            obj.programs["on_btf_sys_enter"].test_run()
        assert exc.value.errno == errno.EFAULT
        assert "only for fentry/fexit/fmod_ret" in str(exc.value) and "tp_btf" in str(exc.value)


def test_own_checks_claim_no_errno(kernel: None, bundled) -> None:
    with pybpf.open(bundled("counters")) as obj:
        for call in (lambda: obj.programs["on_getppid"].attach(), lambda: obj.maps["pairs"].fd):
            with pytest.raises(pybpf.BpfError) as exc:
                call()
            assert exc.value.errno is None and "[E" not in str(exc.value), str(exc.value)
        obj.load()
        with pytest.raises(pybpf.BpfError) as exc:
            obj.rodata["want_tgid"] = 1
        assert exc.value.errno is None and "read-only after load" in str(exc.value)
    with pytest.raises(pybpf.ClosedError) as closed:
        obj.maps
    assert closed.value.errno is None
