"""Object lifecycle against the real kernel: open, edit, load, globals, close."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from pathlib import Path

import pybpf
from pybpf import BpfError, ClosedError


def test_open_lists_programs_and_maps_without_the_kernel(bundled):
    with pybpf.open(bundled("counters")) as obj:
        assert obj.state == "open"
        assert list(obj.programs) == ["on_getppid", "on_raw_sys_enter", "on_btf_sys_enter"]
        assert {"slots", "pairs"} <= set(obj.maps)
        program = obj.programs["on_getppid"]
        assert program.section == "tracepoint/syscalls/sys_enter_getppid"
        assert program.type == "tracepoint"
        assert program.insn_count > 10
        assert obj.programs["on_btf_sys_enter"].type == "tracing"
        slots = obj.maps["slots"]
        assert (slots.type, slots.max_entries, slots.flag_names) == ("array", 8, ["MMAPABLE"])
        assert slots.value_dtype == np.dtype("<u8")
        assert obj.maps["pairs"].value_dtype.names == ("count", "parent_tgid", "tgid")
        assert (obj.maps["pairs"].key_type_name, obj.maps["pairs"].value_type_name) == ("__u32", "struct pair")


def test_initial_values_before_load(bundled):
    with pybpf.open(bundled("counters")) as obj:
        assert int(obj.rodata["want_tgid"]) == 0
        assert int(obj.rodata["small_knob"]) == -3
        assert obj.data["greeting"] == b"hello, pybpf"
        assert int(obj.data["increment"]) == 1
        assert int(obj.bss["hits"]) == 0
        assert obj.bss["per_slot_seen"].shape == (8,)
        obj.rodata["small_knob"] = -32768
        assert int(obj.rodata["small_knob"]) == -32768


@pytest.mark.parametrize("value, error", [
    (32768, OverflowError), (-32769, OverflowError), (1.5, TypeError), ("x", TypeError), (b"\x00", ValueError),
])
def test_rodata_range_and_type_checks(bundled, value, error):
    with pybpf.open(bundled("counters")) as obj:
        with pytest.raises(error, match="small_knob"):
            obj.rodata["small_knob"] = value
        assert int(obj.rodata["small_knob"]) == -3  # nothing was lost


def test_unknown_variable_names_the_known_ones(bundled):
    with pybpf.open(bundled("counters")) as obj:
        with pytest.raises(KeyError, match="want_tgid"):
            obj.rodata["want_pid"] = 1


def test_core_example_counts_and_relocates(bundled, kernel):
    """The README example: rodata filter, load, auto-attach, live .bss value, CO-RE read."""
    with pybpf.open(bundled("counters")) as obj:
        obj.rodata["want_tgid"] = os.getpid()
        obj.load()
        assert obj.state == "loaded"
        hits = obj.bss["hits"]                       # a live 0-d view
        with obj.programs["on_getppid"].attach():
            for _ in range(7):
                os.getppid()
        assert int(hits) == 7
        # CO-RE: task->real_parent->tgid read in the kernel equals our parent's pid
        assert int(obj.bss["last_parent_tgid"]) == os.getppid()
        assert obj.maps["slots"].view()[0] == 7
        pair = obj.maps["pairs"][os.getpid()]
        assert (int(pair["count"]), int(pair["parent_tgid"]), int(pair["tgid"])) == (7, os.getppid(), os.getpid())
        # after detaching nothing counts any more
        os.getppid()
        assert int(hits) == 7


def test_filter_excludes_other_processes(bundled, kernel):
    with pybpf.open(bundled("counters")) as obj:
        obj.rodata["want_tgid"] = os.getpid()
        obj.load()
        with obj.programs["on_getppid"].attach():
            subprocess.run(["python3", "-c", "import os; [os.getppid() for _ in range(50)]"], check=True)
            os.getppid()
        assert int(obj.bss["hits"]) == 1


def test_data_writes_are_seen_by_the_program(bundled, kernel):
    with pybpf.open(bundled("counters")) as obj:
        obj.rodata["want_tgid"] = os.getpid()
        obj.load()
        obj.data["increment"] = 100
        with obj.programs["on_getppid"].attach():
            os.getppid()
            os.getppid()
        assert int(obj.bss["hits"]) == 200


def test_rodata_is_read_only_after_load(bundled, kernel):
    with pybpf.open(bundled("counters")) as obj:
        obj.rodata["want_tgid"] = 4242
        obj.load()
        view = obj.rodata["want_tgid"]
        assert int(view) == 4242
        assert not view.flags.writeable
        with pytest.raises(BpfError, match="read-only after load"):
            obj.rodata["want_tgid"] = 1
        with pytest.raises(ValueError):
            view[()] = 1


def test_whole_section_view_is_one_record(bundled, kernel):
    with pybpf.open(bundled("counters")) as obj:
        obj.load()
        record = obj.bss.view()
        assert record.dtype.names == ("hits", "last_parent_tgid", "per_slot_seen")
        obj.bss["hits"] = 12345
        assert int(record["hits"]) == 12345


def test_views_outlive_close(bundled, kernel):
    obj = pybpf.open(bundled("counters"))
    obj.load()
    hits = obj.bss["hits"]
    slots = obj.maps["slots"].view()
    obj.bss["hits"] = 99
    obj.close()
    assert int(hits) == 99          # the mapping keeps the kernel map alive
    slots[3] = 5
    assert slots[3] == 5


def test_closed_object_raises_closed_error(bundled, kernel):
    obj = pybpf.open(bundled("counters"))
    obj.load()
    program = obj.programs["on_getppid"]
    slots = obj.maps["slots"]
    obj.close()
    obj.close()  # idempotent
    for call in (lambda: obj.programs, lambda: program.attach(), lambda: slots[0], lambda: obj.bss["hits"],
                 lambda: program.fd, lambda: obj.load(), lambda: slots.view()):
        with pytest.raises(ClosedError):
            call()


def test_load_twice_is_refused(bundled, kernel):
    with pybpf.open(bundled("counters")) as obj:
        obj.load()
        with pytest.raises(BpfError, match="only possible before load"):
            obj.load()


def test_settings_only_before_load(bundled, kernel):
    with pybpf.open(bundled("counters")) as obj:
        obj.maps["pairs"].max_entries = 4096
        obj.programs["on_btf_sys_enter"].autoload = False
        obj.load()
        assert obj.maps["pairs"].info.max_entries == 4096
        assert obj.maps["pairs"].info.memlock >= 4096 * 16  # charged from fdinfo
        assert obj.programs["on_getppid"].info().memlock > 0
        with pytest.raises(BpfError, match="not loaded"):
            obj.programs["on_btf_sys_enter"].fd
        with pytest.raises(BpfError, match="before load"):
            obj.maps["pairs"].max_entries = 1


def test_open_from_bytes_with_object_name(bundled, kernel):
    with open(bundled("counters"), "rb") as f:
        data = f.read()
    with pybpf.open(data, object_name="fromcount") as obj:
        assert obj.name == "fromcount"
        obj.rodata["want_tgid"] = os.getpid()
        obj.load()
        with obj.programs["on_getppid"].attach():
            os.getppid()
        assert int(obj.bss["hits"]) == 1


def test_btf_custom_path_relocates_against_given_btf(bundled, kernel, tmp_path):
    """Load against a BTF file we produce (a copy of the kernel's raw BTF); the test
    below shows the file is really the one used, with a BTF that lacks task_struct."""
    custom = tmp_path / "vmlinux.btf"
    custom.write_bytes(Path("/sys/kernel/btf/vmlinux").read_bytes())
    with pybpf.open(bundled("counters"), btf_custom_path=str(custom)) as obj:
        obj.rodata["want_tgid"] = os.getpid()
        obj.load()
        with obj.programs["on_getppid"].attach():
            os.getppid()
        assert int(obj.bss["last_parent_tgid"]) == os.getppid()


def test_btf_custom_path_without_the_needed_types_fails_clearly(bundled, kernel, tmp_path):
    """A BTF without task_struct: CO-RE relocation cannot succeed, and says so."""
    custom = tmp_path / "tiny.btf"
    custom.write_bytes(_raw_btf_section(bundled("net")))  # knows xdp_md, not task_struct
    with pybpf.open(bundled("counters"), btf_custom_path=str(custom)) as obj:
        with pytest.raises(BpfError) as info:
            obj.load()
        assert "task_struct" in info.value.log
        assert "on_getppid" in str(info.value)


def _raw_btf_section(path: str) -> bytes:
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        return ELFFile(f).get_section_by_name(".BTF").data()


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        pybpf.open(tmp_path / "nope.bpf.o")


def test_spec_reflects_edits_and_file_spec_is_the_file(bundled, kernel) -> None:
    """obj.spec shows the edits made before load; obj.file_spec stays the file as read."""
    with pybpf.open(bundled("counters")) as obj:
        before = {m.name: m.max_entries for m in obj.spec.maps}
        obj.maps["pairs"].max_entries = before["pairs"] * 2
        assert {m.name: m.max_entries for m in obj.spec.maps}["pairs"] == before["pairs"] * 2
        assert {m.name: m.max_entries for m in obj.file_spec.maps} == before
        internal = {m.name: m.value_size for m in obj.spec.maps if m.internal}
        assert internal[".bss"] == obj.maps[[n for n in obj.maps if n.endswith(".bss")][0]].value_size
    with pytest.raises(pybpf.ClosedError):
        obj.spec
