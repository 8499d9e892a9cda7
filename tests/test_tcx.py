"""tcx links (kernel 6.6): UDP packets counted on a veth between two network namespaces made
here, across 100 in-place program swaps with none lost; ordering with before=/after=;
pinning. With libbpf < 1.3 (Debian 12's 1.1) the link is pybpf's own BPF_LINK_CREATE.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

import pybpf
from pybpf.link import tcx
from pybpf.link.base import FdLink, LibbpfLink
from tests.conftest import enter_netns

PORT = 4790
ADDR_A, ADDR_B = "10.251.0.1", "10.251.0.2"


@pytest.fixture
def veth(kernel: None) -> Iterator[tuple[str, str]]:
    """Two network namespaces joined by a veth pair: ``va`` (ADDR_A) in the first, ``vb`` (ADDR_B)
    in the second."""
    names = [f"pybpf-tcx-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", names[0], "link", "add", "va", "type", "veth", "peer", "name", "vb",
                        "netns", names[1]], check=True)
        for name, dev, addr in ((names[0], "va", ADDR_A), (names[1], "vb", ADDR_B)):
            subprocess.run(["ip", "-n", name, "addr", "add", f"{addr}/24", "dev", dev], check=True)
            subprocess.run(["ip", "-n", name, "link", "set", dev, "up"], check=True)
        yield names[0], names[1]
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "delete", name], check=False)


def _sockets(ns_a: str, ns_b: str) -> tuple[socket.socket, socket.socket]:
    with enter_netns(ns_b):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        rx.bind((ADDR_B, PORT))
    with enter_netns(ns_a):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.settimeout(5)
    tx.sendto(b"warm-up", (ADDR_B, PORT))  # ARP resolved before anything is counted
    assert rx.recv(64) == b"warm-up"
    return tx, rx


def _open(bundled) -> pybpf.Object:
    obj = pybpf.open(bundled("tcx_count"))
    obj.rodata["port"] = PORT
    return obj.load()


def test_every_packet_counted_once_across_100_updates(bundled, veth):
    ns_a, ns_b = veth
    tx, rx = _sockets(ns_a, ns_b)
    with tx, rx, _open(bundled) as obj:
        a, b = obj.programs["count_a"], obj.programs["count_b"]
        with enter_netns(ns_b):
            link = a.attach_tcx("vb", "ingress")
        assert isinstance(link, pybpf.BpfLink) and link.info().type == "tcx"
        assert isinstance(link, LibbpfLink) == tcx.uses_libbpf()
        sent, received, stop = [0], [0], threading.Event()

        def send() -> None:
            while not stop.is_set():
                tx.sendto(b"x" * 32, (ADDR_B, PORT))
                sent[0] += 1
                if sent[0] % 16 == 0:
                    time.sleep(0.0005)

        def receive() -> None:
            try:
                while True:
                    rx.recv(64)
                    received[0] += 1
            except TimeoutError:
                pass

        receiver = threading.Thread(target=receive)
        sender = threading.Thread(target=send)
        rx.settimeout(2)
        receiver.start()
        sender.start()
        try:
            for i in range(100):
                new, old = (b, a) if i % 2 == 0 else (a, b)
                link.update(new, replace=old)
                assert link.info().prog_id == new.id
                time.sleep(0.005)
        finally:
            stop.set()
            sender.join()
            receiver.join()
        counts = obj.bss["counts"].copy()
        link.close()
        assert sent[0] > 100
        assert received[0] == sent[0], "the kernel dropped packets: the count below cannot be checked"
        assert int(counts.sum()) == sent[0], f"{counts} for {sent[0]} packets: some counted twice or not at all"
        assert counts[0] > 0 and counts[1] > 0


def test_before_and_after_order_the_hook(bundled, veth):
    ns_a, ns_b = veth
    tx, rx = _sockets(ns_a, ns_b)
    with tx, rx, _open(bundled) as obj:
        a, b = obj.programs["count_a"], obj.programs["count_b"]
        first = obj.bss["first"]

        def burst(n: int = 10) -> list[int]:
            before = first.copy()
            for _ in range(n):
                tx.sendto(b"y", (ADDR_B, PORT))
                rx.recv(64)
            return list(first - before)

        with enter_netns(ns_b):
            link_a = a.attach_tcx("vb", "ingress")
            link_b = b.attach_tcx("vb", "ingress", before=link_a)
        assert burst() == [0, 10]              # b runs before a
        link_b.close()
        with enter_netns(ns_b):
            link_b = b.attach_tcx("vb", "ingress", after=a)
        assert burst() == [10, 0]              # b after a (placed by program)
        link_b.close()
        with enter_netns(ns_b):
            link_b = b.attach_tcx("vb", "ingress", before=True)
        assert burst() == [0, 10]              # b at the head
        with enter_netns(ns_b), pytest.raises(ValueError, match="not both"):
            b.attach_tcx("vb", "ingress", before=link_a, after=link_a)
        with enter_netns(ns_b), pytest.raises(ValueError, match="'ingress' or 'egress'"):
            b.attach_tcx("vb", "sideways")
        with pytest.raises(pybpf.BpfError, match="no network interface named 'vb'"):
            b.attach_tcx("vb", "ingress")      # not in this namespace
        link_a.close()
        link_b.close()
        assert burst() == [0, 0]               # detached by close


def test_pinned_link_outlives_its_handle(bundled, veth, bpffs):
    ns_a, ns_b = veth
    tx, rx = _sockets(ns_a, ns_b)
    pin = os.path.join(bpffs, "tcx_link")
    with tx, rx, _open(bundled) as obj:
        with enter_netns(ns_b):
            link = obj.programs["count_egress"].attach_tcx("vb", "egress")
        link.pin(pin)
        assert link.pin_path == pin
        link.close()
        reopened = pybpf.BpfLink.from_pin(pin)
        try:
            assert reopened.info().type == "tcx"
            assert reopened.info().prog_id == obj.programs["count_egress"].id
        finally:
            reopened.unpin()
            reopened.close()
        assert not os.path.exists(pin)


def test_a_plain_tc_program_and_the_other_direction(bundled, veth):
    """SEC("tc") names no direction, and count_egress is attached to ingress here: libbpf's
    attach_tcx cannot, so pybpf's own BPF_LINK_CREATE does on every release."""
    ns_a, ns_b = veth
    tx, rx = _sockets(ns_a, ns_b)
    with tx, rx, _open(bundled) as obj:
        with enter_netns(ns_b):
            links = [obj.programs["count_tc"].attach_tcx("vb", "ingress"),
                     obj.programs["count_egress"].attach_tcx("vb", "ingress")]
        assert all(isinstance(link, FdLink) for link in links)
        for _ in range(5):
            tx.sendto(b"z", (ADDR_B, PORT))
            rx.recv(64)
        assert list(obj.bss["counts"]) == [5, 5]
        for link in links:
            link.close()


def test_a_non_tc_program_is_refused_with_the_reason(bundled, veth):
    _, ns_b = veth
    with pybpf.open(bundled("counters")) as obj:
        obj.load()
        prog = next(iter(obj.programs.values()))
        with enter_netns(ns_b), pytest.raises(pybpf.BpfError, match="attaching .* to tcx ingress on vb"):
            prog.attach_tcx("vb", "ingress")
        assert not obj.links


def test_tcx_sections_load_with_any_libbpf(tmp_path, kernel):
    source = tmp_path / "t.bpf.c"
    source.write_text('#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n'
                      'SEC("tcx/ingress") int in(struct __sk_buff *s) { return -1; }\n'
                      'SEC("tcx/egress") int out(struct __sk_buff *s) { return -1; }\n'
                      'char LICENSE[] SEC("license") = "GPL";\n')
    with pybpf.open(pybpf.build(source, output=tmp_path / "t.bpf.o")) as obj:
        assert {p.expected_attach_type for p in obj.programs.values()} == {"tcx_ingress", "tcx_egress"}
        obj.load()
        prog = obj.programs["in"]
        assert prog.type == "sched_cls" and not prog.auto_attachable
        with pytest.raises(pybpf.BpfError, match=r"attach_tcx\(interface"):
            prog.attach()


def test_deploy_and_100_upgrades_count_every_packet_once(bundled, veth):
    """pybpf.deploy attaches the tc program through tcx; each pybpf.upgrade swaps it with one
    BPF_LINK_UPDATE and carries the counts over exactly: the last version's count is every packet
    sent during the 100 upgrades, none lost and none twice."""
    ns_a, ns_b = veth
    tx, rx = _sockets(ns_a, ns_b)
    with tx, rx:
        with enter_netns(ns_b):
            deployment = pybpf.deploy(_open(bundled), hooks={"count_a": lambda p: p.attach_tcx("vb", "ingress")})
        try:
            (attachment,) = deployment.attachments
            assert attachment.mode == "tcx" and attachment.link.info().type == "tcx"
            sent, received, stop = [0], [0], threading.Event()

            def send() -> None:
                while not stop.is_set():
                    tx.sendto(b"u" * 32, (ADDR_B, PORT))
                    sent[0] += 1
                    if sent[0] % 8 == 0:
                        time.sleep(0.001)

            def receive() -> None:
                try:
                    while True:
                        rx.recv(64)
                        received[0] += 1
                except TimeoutError:
                    pass

            rx.settimeout(3)
            threads = [threading.Thread(target=receive), threading.Thread(target=send)]
            for t in threads:
                t.start()
            try:
                for _ in range(100):
                    deployment = pybpf.upgrade(deployment, bundled("tcx_count"))
                    (attachment,) = deployment.attachments
                    assert attachment.current_program_id() == deployment.object.programs["count_a"].id
            finally:
                stop.set()
                for t in threads:
                    t.join()
            counts = deployment.object.bss["counts"].copy()
        finally:
            deployment.close()
        assert received[0] == sent[0] > 100, "the kernel dropped packets: the count below cannot be checked"
        assert int(counts[0]) == sent[0], f"{int(counts[0])} counted for {sent[0]} packets"


def test_deploy_refuses_tc_without_a_tcx_link(bundled, veth):
    _, ns_b = veth
    with _open(bundled) as obj:
        with enter_netns(ns_b), pytest.raises(pybpf.NotSupportedError, match="not a tcx link"):
            pybpf.deploy(obj, hooks={"count_tc": lambda p: p.attach_tc("vb", "ingress")})
        assert not obj.links
