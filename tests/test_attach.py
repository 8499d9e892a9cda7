"""Every attach kind this kernel supports, observed through its effect."""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import subprocess
import sys
import time

import pytest
from pathlib import Path

import pybpf
from pybpf import BpfError
from pybpf._sys.libbpf import perf_event_open
from tests.conftest import _setns, enter_netns


def _counters(bundled, program: str):
    obj = pybpf.open(bundled("counters"))
    obj.rodata["want_tgid"] = os.getpid()
    for name, prog in obj.programs.items():
        prog.autoload = name == program
    obj.load()
    return obj


@pytest.mark.parametrize("program, slot", [("on_getppid", 0), ("on_raw_sys_enter", 1), ("on_btf_sys_enter", 2)])
def test_auto_attach_tracing_kinds(bundled, kernel, program, slot):
    with _counters(bundled, program) as obj:
        slots = obj.maps["slots"].view()
        with obj.programs[program].attach() as link:
            assert not link.closed
            for _ in range(5):
                os.getppid()
        assert link.closed
        assert slots[slot] == 5
        os.getppid()
        assert slots[slot] == 5  # detached


def test_explicit_tracepoint_and_raw_tracepoint(bundled, kernel):
    with _counters(bundled, "on_getppid") as obj:
        with obj.programs["on_getppid"].attach_tracepoint("syscalls", "sys_enter_getppid"):
            os.getppid()
        assert obj.maps["slots"].view()[0] == 1
    with _counters(bundled, "on_raw_sys_enter") as obj:
        with obj.programs["on_raw_sys_enter"].attach_raw_tracepoint("sys_enter"):
            os.getppid()
            os.getppid()
        assert obj.maps["slots"].view()[1] == 2


def test_attach_unknown_tracepoint_says_so(bundled, kernel):
    with _counters(bundled, "on_getppid") as obj:
        with pytest.raises(BpfError, match="no_such_tracepoint"):
            obj.programs["on_getppid"].attach_tracepoint("syscalls", "no_such_tracepoint")


def _libc():
    return ctypes.CDLL("libc.so.6")


def test_uprobe_and_uretprobe_on_libc(bundled, kernel):
    libc = _libc()
    libc.strverscmp.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    with pybpf.open(bundled("probes")) as obj:
        obj.rodata["want_tgid"] = os.getpid()
        obj.load()
        enter = obj.programs["on_enter"].attach_uprobe("libc.so.6", "strverscmp", pid=os.getpid())
        leave = obj.programs["on_return"].attach_uprobe("libc.so.6", "strverscmp", retprobe=True)
        with enter, leave:
            results = [libc.strverscmp(b"a10", b"a9") for _ in range(4)]
        assert int(obj.bss["uprobe_hits"]) == 4
        assert int(obj.bss["uretprobe_hits"]) == 4
        assert int(obj.bss["last_retval"]) == results[-1]
        libc.strverscmp(b"a", b"b")
        assert int(obj.bss["uprobe_hits"]) == 4


def test_uprobe_on_missing_binary_and_function(bundled, kernel):
    with pybpf.open(bundled("probes")) as obj:
        obj.load()
        with pytest.raises(BpfError, match="cannot find the binary"):
            obj.programs["on_enter"].attach_uprobe("libnope.so.9", "f")
        with pytest.raises(BpfError, match="no_such_function_xyz"):
            obj.programs["on_enter"].attach_uprobe("libc.so.6", "no_such_function_xyz")


def test_iterator_output(bundled, kernel):
    with pybpf.open(bundled("probes")) as obj:
        obj.rodata["want_tgid"] = os.getpid()
        obj.load()
        with obj.programs["dump_tasks"].attach() as link:
            lines = link.read_text().splitlines()
            again = link.read_text().splitlines()  # each read runs the iterator anew
    assert lines and again
    assert {line.split()[1] for line in lines} == {line.split()[1] for line in again}
    tids = {int(line.split()[1]) for line in lines}
    assert all(int(line.split()[0]) == os.getpid() for line in lines)
    assert os.getpid() in tids and set(map(int, os.listdir("/proc/self/task"))) <= tids
    comm = Path("/proc/self/comm").read_text().strip()
    assert any(line.split(maxsplit=2)[2] == comm for line in lines)


def test_perf_event_software_clock(bundled, kernel):
    # struct perf_event_attr: type=PERF_TYPE_SOFTWARE(1), size, config=PERF_COUNT_SW_CPU_CLOCK(0),
    # sample_period=100000 ns; flags: disabled=0
    attr = struct.pack("<IIQQQQ", 1, 128, 0, 100_000, 0, 0).ljust(128, b"\0")
    fd = perf_event_open(attr, pid=0, cpu=-1)
    try:
        with pybpf.open(bundled("probes")) as obj:
            obj.load()
            with obj.programs["on_perf_event"].attach_perf_event(fd):
                end = sum(i for i in range(3_000_000))  # ~100 ms of CPU
            assert end > 0
            assert int(obj.bss["perf_hits"]) > 0
        os.fstat(fd)  # the caller's fd is still ours
    finally:
        os.close(fd)


def test_generic_attach_explains_targetless_sections(bundled, kernel):
    with pybpf.open(bundled("net")) as obj:
        obj.load()
        with pytest.raises(BpfError, match=r"attach_xdp\(interface\)"):
            obj.programs["xdp_count"].attach()
        with pytest.raises(BpfError, match=r"attach_cgroup"):
            obj.programs["cgroup_count"].attach()


def _ping_self(count: int = 3) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("127.0.0.1", 0))
        for _ in range(count):
            tx.sendto(b"ping", rx.getsockname())
            assert rx.recv(16) == b"ping"


@pytest.mark.parametrize("mode", [None, "skb"])
def test_xdp_on_lo_in_netns(bundled, kernel, netns, mode):
    with pybpf.open(bundled("net")) as obj:
        obj.load()
        with enter_netns(netns):
            with obj.programs["xdp_count"].attach_xdp("lo", mode=mode):
                _ping_self(3)
            _ping_self(2)
        assert int(obj.bss["xdp_packets"]) == 3


def test_xdp_driver_mode_on_veth(bundled, kernel, netns):
    # no IPv6 in the namespace: a fresh link would send its own router solicitations and MLD reports
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1"], check=True)
    subprocess.run(["ip", "-n", netns, "link", "add", "va", "type", "veth", "peer", "name", "vb"], check=True)
    for dev in ("va", "vb"):
        subprocess.run(["ip", "-n", netns, "link", "set", dev, "up"], check=True)
    frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + b"pybpf".ljust(46, b"\0")
    with pybpf.open(bundled("net")) as obj:
        obj.load()
        with enter_netns(netns):
            with obj.programs["xdp_count"].attach_xdp("vb", mode="drv") as link:
                assert "drv" in link.description
                with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as raw:
                    raw.bind(("va", 0))
                    for _ in range(4):
                        raw.send(frame)  # leaves va, arrives on vb: native XDP runs
                deadline = time.monotonic() + 5
                while int(obj.bss["xdp_packets"]) < 4 and time.monotonic() < deadline:
                    time.sleep(0.01)
        assert int(obj.bss["xdp_packets"]) == 4


def test_tc_ingress_and_egress_on_lo_in_netns(bundled, kernel, netns):
    with pybpf.open(bundled("net")) as obj:
        obj.load()
        with enter_netns(netns):
            with obj.programs["tc_count"].attach_tc("lo", "egress"):
                _ping_self(3)
            after_egress = int(obj.bss["tc_packets"])
            with obj.programs["tc_count"].attach_tc("lo", "ingress"):
                _ping_self(2)
            _ping_self(2)
        assert after_egress == 3
        assert int(obj.bss["tc_packets"]) == 5
        with pytest.raises(ValueError, match="ingress"):
            obj.programs["tc_count"].attach_tc("lo", "sideways")
        with pytest.raises(BpfError, match="no network interface"):
            obj.programs["tc_count"].attach_tc("nonexistent0")


def test_cgroup_skb_in_child_cgroup(bundled, kernel, cgroup, netns):
    code = ("import socket,sys\n"
            "r=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); r.bind(('127.0.0.1',0))\n"
            "t=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            "[t.sendto(b'x', r.getsockname()) for _ in range(4)]\n")
    with pybpf.open(bundled("net")) as obj:
        obj.load()
        def join_cgroup_and_netns() -> None:  # runs in the child before exec
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as procs:
                procs.write(str(os.getpid()))
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            _setns(fd)
            os.close(fd)

        with obj.programs["cgroup_count"].attach_cgroup(cgroup):
            # only the child placed in the cgroup counts, not this process
            subprocess.run([sys.executable, "-c", code], preexec_fn=join_cgroup_and_netns, check=True)
            _ping_self(2)
        assert int(obj.bss["cgroup_packets"]) == 4


def test_socket_filter(bundled, kernel):
    with pybpf.open(bundled("net")) as obj:
        obj.load()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            rx.bind(("127.0.0.1", 0))
            with obj.programs["socket_count"].attach_socket(rx):
                for _ in range(3):
                    tx.sendto(b"data", rx.getsockname())
                    assert rx.recv(16) == b"data"
            tx.sendto(b"more", rx.getsockname())
            assert rx.recv(16) == b"more"
        assert int(obj.bss["socket_packets"]) == 3


def test_test_run_xdp_rewrites_packet(bundled, kernel):
    packet = bytes(range(64))
    with pybpf.open(bundled("net")) as obj:
        obj.load()
        result = obj.programs["xdp_mark"].test_run(data_in=packet, repeat=100)
        assert result.retval == 3  # XDP_TX
        assert result.data_out == b"\xab" + packet[1:]
        assert result.duration_ns >= 0
        counted = obj.programs["xdp_count"].test_run(data_in=packet, repeat=10)
        assert counted.retval == 2  # XDP_PASS
        assert int(obj.bss["xdp_packets"]) == 10


def test_test_run_raw_tracepoint_needs_no_repeat(bundled, kernel):
    with _counters(bundled, "on_raw_sys_enter") as obj:
        # args[1] == 110 (getppid), our own tgid: the program counts once
        ctx = struct.pack("<6Q", 0, 110, 0, 0, 0, 0)
        result = obj.programs["on_raw_sys_enter"].test_run(ctx_in=ctx, repeat=50)
        assert result.retval == 0
        assert obj.maps["slots"].view()[1] == 1


def test_run_stats_while_enabled(bundled, kernel):
    with pybpf.enable_stats() as stats, _counters(bundled, "on_getppid") as obj:
        assert not stats.closed
        program = obj.programs["on_getppid"]
        with program.attach():
            for _ in range(3):
                os.getppid()
        info = program.info()
        assert info.run_cnt == 3 and program.run_cnt == 3
        assert info.run_time_ns > 0
        assert info.name == "on_getppid"[:15] and len(info.tag) == 16
    assert stats.closed


def test_link_pin_keeps_attachment(bundled, kernel, bpffs):
    with _counters(bundled, "on_raw_sys_enter") as obj:
        slots = obj.maps["slots"].view()
        link = obj.programs["on_raw_sys_enter"].attach()
        link.pin(f"{bpffs}/raw_link")
        link.close()
        os.getppid()
        assert slots[1] == 1  # still attached through the pin
        os.unlink(f"{bpffs}/raw_link")
    # the kernel drops an unlinked pin's reference after an RCU grace period
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        before = int(slots[1])
        os.getppid()
        if int(slots[1]) == before:
            break
        time.sleep(0.05)
    before = int(slots[1])
    os.getppid()
    assert int(slots[1]) == before  # unpinned and closed: detached


def test_object_close_detaches_its_links(bundled, kernel):
    obj = _counters(bundled, "on_getppid")
    hits = obj.bss["hits"]
    link = obj.programs["on_getppid"].attach()
    obj.close()
    assert link.closed
    os.getppid()
    assert int(hits) == 0


def test_closing_one_tc_link_keeps_its_siblings(bundled, kernel, netns):
    with pybpf.open(bundled("net")) as obj:
        obj.load()
        program = obj.programs["tc_count"]
        with enter_netns(netns):
            first = program.attach_tc("lo", "ingress")
            egress = program.attach_tc("lo", "egress")
            second = program.attach_tc("lo", "ingress", priority=5)
            first.close()  # must remove only its own filter
            _ping_self(2)  # each packet: egress once, ingress once (second)
            assert int(obj.bss["tc_packets"]) == 4
            egress.close()
            second.close()
            _ping_self(1)
        assert int(obj.bss["tc_packets"]) == 4


def test_targetless_sections_are_explained_and_skipped_by_object_attach(bundled, kernel):
    with pybpf.open(bundled("probes")) as obj:
        obj.load()
        assert not obj.programs["on_enter"].auto_attachable
        with pytest.raises(BpfError, match=r"has no target in its section; use attach_uprobe\(binary"):
            obj.programs["on_enter"].attach()
        links = obj.attach()  # the iterator attaches; the bare uprobes and perf_event are skipped
        assert [link.description for link in links] == ["dump_tasks -> iterator SEC(iter/task)"]


def test_sk_lookup_on_netns_counts_each_connection(bundled, kernel, netns):
    """attach_netns (the kind added after the layers move: link/netns.py, one registry line,
    one verb line): sk_lookup runs once per new connection into that namespace."""
    with pybpf.open(bundled("net")) as obj:
        obj.load()
        assert not obj.programs["lookup_count"].auto_attachable
        with pytest.raises(pybpf.BpfError, match=r"attach_netns\(netns_path_or_fd\)"):
            obj.programs["lookup_count"].attach()
        with enter_netns(netns):
            server = socket.socket()
            server.bind(("127.0.0.1", 0))
            server.listen(8)
            port = server.getsockname()[1]
            with obj.programs["lookup_count"].attach_netns(f"/run/netns/{netns}") as link:
                assert "netns" in link.description
                for _ in range(3):
                    with socket.create_connection(("127.0.0.1", port), timeout=5):
                        server.accept()[0].close()
            with socket.create_connection(("127.0.0.1", port), timeout=5):  # detached: not counted
                server.accept()[0].close()
            server.close()
        assert int(obj.bss["sk_lookups"]) == 3
