"""Which link kinds this kernel updates in place (BPF_LINK_UPDATE), found by trying each.

The README's list of updatable link kinds comes from this file: each kind is
attached with an ``_a`` program of ``upgrade_kinds.bpf.c`` and updated to the
``_b`` one. Updatable kinds must then run ``_b`` (the kernel's link info says
so; for XDP the traffic does too); the others must raise ``NotSupportedError``
naming the link kind and keep running ``_a``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time

import pytest

import pybpf
from pybpf._sys.libbpf import perf_event_open
from pybpf.link.base import LibbpfLink
from pybpf.upgrade.attach import attach
from tests.conftest import enter_netns

UPDATABLE = ["xdp", "cgroup", "netns", "iter"]
NOT_UPDATABLE = {"tracepoint": "perf_event", "raw_tp": "raw_tracepoint", "tp_btf": "raw_tracepoint",
                 "uprobe": "perf_event", "perf_event": "perf_event"}


@pytest.fixture
def kinds(bundled, kernel):
    with pybpf.open(bundled("upgrade_kinds")) as obj:
        obj.load()
        yield obj


def _ping(count: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(count):
            sock.sendto(b"x", ("127.0.0.1", 9))


def test_xdp_link_update_switches_traffic_to_the_new_program(kinds, netns):
    a, b = kinds.programs["kind_xdp_a"], kinds.programs["kind_xdp_b"]
    with enter_netns(netns), a.attach_xdp("lo") as link:
        assert link.info().type == "xdp"
        _ping(3)
        hits_a = int(kinds.bss["hits_a"])
        assert hits_a >= 3
        link.update(b, replace=a)
        assert link.info().prog_id == b.id
        _ping(3)
        assert int(kinds.bss["hits_a"]) == hits_a and int(kinds.bss["hits_b"]) >= 3
        with pytest.raises(pybpf.BpfError, match="no longer runs"):
            link.update(a, replace=a)  # BPF_F_REPLACE: the link runs b now
        assert link.info().prog_id == b.id


def _netns_link(program, netns: str) -> pybpf.Link:
    return program.attach_netns(f"/run/netns/{netns}")


@pytest.mark.parametrize("kind", UPDATABLE)
def test_updatable_link_kinds(kinds, kind, cgroup, netns):
    a, b = kinds.programs[f"kind_{kind}_a"], kinds.programs[f"kind_{kind}_b"]
    if kind == "xdp":
        with enter_netns(netns):
            link = a.attach_xdp("lo")
    elif kind == "cgroup":
        link = a.attach_cgroup(cgroup)
    elif kind == "netns":
        link = _netns_link(a, netns)
    else:
        link = a.attach_iter()
    with link:
        assert link.info().type == kind and link.info().prog_id == a.id
        link.update(b)
        assert link.info().prog_id == b.id


@pytest.mark.parametrize("kind", sorted(NOT_UPDATABLE))
def test_link_kinds_that_cannot_be_updated_say_so(kinds, kind):
    a, b = kinds.programs[f"kind_{kind}_a"], kinds.programs[f"kind_{kind}_b"]
    perf_fd = -1
    if kind == "uprobe":
        link = a.attach_uprobe("libc.so.6", "getpid")
    elif kind == "perf_event":
        attr = struct.pack("<IIQQQQ", 1, 128, 0, 100_000, 0, 0).ljust(128, b"\0")  # software cpu-clock
        perf_fd = perf_event_open(attr, pid=0, cpu=-1)
        link = a.attach_perf_event(perf_fd)
    else:
        link = a.attach()
    try:
        link_type = NOT_UPDATABLE[kind]
        with pytest.raises(pybpf.NotSupportedError) as caught:
            link.update(b)
        assert caught.value.feature == f"link_update:{link_type}"
        assert f"cannot update {link_type} links" in str(caught.value)
        assert link.info().prog_id == a.id  # untouched
        if kind in ("tracepoint", "raw_tp", "tp_btf"):
            before = int(kinds.bss["hits_a"])
            os.getppid()
            assert int(kinds.bss["hits_a"]) > before  # still attached, still the old program
    finally:
        link.close()
        if perf_fd >= 0:
            os.close(perf_fd)


def test_other_attachments_are_not_bpf_links(kinds, netns):
    with enter_netns(netns), kinds.programs["kind_xdp_a"].attach_xdp("lo", mode="skb") as link:
        with pytest.raises(pybpf.NotSupportedError, match="XDP attachment .netlink, explicit mode."):
            link.update(kinds.programs["kind_xdp_b"])


def test_update_to_a_program_of_another_type_is_explained(kinds):
    with kinds.programs["kind_iter_a"].attach_iter() as link, \
            pytest.raises(pybpf.BpfError, match="a xdp program cannot replace the tracing program"):
        link.update(kinds.programs["kind_xdp_b"])


def test_pinned_link_reopened_and_updated(kinds, bpffs, netns):
    a, b = kinds.programs["kind_netns_a"], kinds.programs["kind_netns_b"]
    with _netns_link(a, netns) as link:
        link.pin(f"{bpffs}/netns_link")
    with LibbpfLink.from_pin(f"{bpffs}/netns_link") as reopened:
        assert reopened.info().prog_id == a.id
        reopened.update(b)
    with LibbpfLink.from_pin(f"{bpffs}/netns_link") as again:
        assert again.info().prog_id == b.id
    os.unlink(f"{bpffs}/netns_link")
    with pytest.raises(pybpf.BpfError, match="no such pin"):
        LibbpfLink.from_pin(f"{bpffs}/netns_link")


def test_upgrade_bench_runs_and_counts_every_event(kernel, cgroup):
    from pybpf.bench import upgrade as upgrade_bench
    result = upgrade_bench.run(calls=2000, rounds=2, switches=10, upgrades=3)
    dispatcher = result["dispatcher"]
    # both ways of attaching counted every call of every round (warm-up round included)
    assert dispatcher["events_counted"] == 2 * (2 + 1) * 2000
    assert len(dispatcher["samples_ns"]["dispatch_bpf"]) == 2
    assert result["switch"]["switches"] == 10 and result["upgrade"]["upgrades"] == 3
    assert all(row[1] for row in upgrade_bench.render_rows(result))


def _cpu_clock_fd() -> int:
    attr = struct.pack("<IIQQQQ", 1, 128, 0, 100_000, 0, 0).ljust(128, b"\0")  # software cpu-clock, 100 us
    return perf_event_open(attr, pid=0, cpu=-1)


def _burn() -> None:
    end = time.monotonic() + 0.05
    while time.monotonic() < end:
        pass


@pytest.mark.parametrize("kind", ["tracepoint", "raw_tp", "uprobe", "perf_event"])
def test_dispatcher_switches_hooks_whose_links_cannot_be_updated(kinds, kind):
    a, b = kinds.programs[f"kind_{kind}_a"], kinds.programs[f"kind_{kind}_b"]
    perf_fd = _cpu_clock_fd() if kind == "perf_event" else -1
    hook = {"uprobe": lambda p: p.attach_uprobe("libc.so.6", "getpid"),
            "perf_event": lambda p: p.attach_perf_event(perf_fd)}.get(kind)
    trigger = {"uprobe": os.getpid, "perf_event": _burn}.get(kind, os.getppid)
    try:
        attachment = attach(a, hook)
        with contextlib.closing(attachment):
            assert attachment.mode == "dispatch" and attachment.current_program_id() == a.id
            dispatcher_id = attachment.current_link_info().prog_id
            assert dispatcher_id not in (a.id, b.id)  # the dispatcher is on the hook, a sits in its slot
            trigger()
            assert int(kinds.bss["hits_a"]) > 0
            attachment.switch(b)
            assert attachment.current_program_id() == b.id
            assert attachment.current_link_info().prog_id == dispatcher_id  # same dispatcher, same link
            time.sleep(0.01)  # runs of a that were already in flight (other CPUs) are over
            hits_a = int(kinds.bss["hits_a"])
            trigger()
            assert int(kinds.bss["hits_b"]) > 0
            assert int(kinds.bss["hits_a"]) == hits_a  # every event since the switch ran b, none a
        time.sleep(0.01)
        hits_b = int(kinds.bss["hits_b"])
        trigger()
        assert int(kinds.bss["hits_b"]) == hits_b  # closed: the dispatcher is detached
    finally:
        if perf_fd >= 0:
            os.close(perf_fd)


def test_program_types_without_a_switch_are_refused_at_deploy(kinds):
    with pytest.raises(pybpf.NotSupportedError) as caught:
        attach(kinds.programs["kind_tp_btf_a"])
    assert caught.value.feature == "upgrade:tracing"
