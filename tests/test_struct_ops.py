"""struct_ops: a TCP congestion control written in BPF (bpf_src/tcp_cc.h) registered through a
link, used by a TCP connection in a network namespace made here, updated in place to a second
version while that connection runs, then unregistered with nothing left behind.

Each test gives the congestion control a name of its own (patched into the object's
``.struct_ops`` data), so runs on a shared machine never meet. No sysctl is changed: root may
set any registered congestion control on a socket. libbpf 1.1 (Debian 12) goes through
pybpf's own BPF_LINK_CREATE/BPF_LINK_UPDATE; libbpf >= 1.2 through its own API.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

import pybpf
from pybpf.link import struct_ops
from tests.conftest import ROOT, enter_netns, needs_kernel

PLACEHOLDER = b"pybpf_cc_XXXXXX"
AVAILABLE = "/proc/sys/net/ipv4/tcp_available_congestion_control"
TCP_CONGESTION = getattr(socket, "TCP_CONGESTION", 13)


def _available() -> list[str]:
    with open(AVAILABLE) as f:
        return f.read().split()


def _object(path: str, name: bytes) -> pybpf.Object:
    with open(path, "rb") as f:
        data = f.read()
    assert data.count(PLACEHOLDER) == 1
    return pybpf.open(data.replace(PLACEHOLDER, name), object_name=path.rsplit("/", 1)[-1].split(".")[0])


@pytest.fixture
def cc_name() -> bytes:
    name = f"pycc{uuid.uuid4().hex[:11]}".encode()
    assert len(name) == len(PLACEHOLDER)
    return name


def _struct_ops_ids() -> set[int]:
    if shutil.which("bpftool") is None:
        needs_kernel("needs bpftool (make setup installs it)")
    out = subprocess.run(["bpftool", "struct_ops", "list", "-j"], capture_output=True, text=True, check=True)
    return {entry["id"] for entry in json.loads(out.stdout or "[]")}


class Sink:
    """A TCP server in a network namespace that reads and discards what each connection sends."""

    def __init__(self, netns: str) -> None:
        with enter_netns(netns):
            self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._drain, args=(conn,), daemon=True)
            thread.start()
            self.threads.append(thread)

    @staticmethod
    def _drain(conn: socket.socket) -> None:
        with conn:
            while conn.recv(1 << 16):
                pass

    def connect(self, netns: str, cc: bytes) -> socket.socket:
        with enter_netns(netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_CONGESTION, cc)
            sock.connect(("127.0.0.1", self.port))
        except OSError:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        self.acceptor.join(5)
        for thread in self.threads:
            thread.join(5)


@pytest.fixture
def sink(netns: str) -> Iterator[Sink]:
    s = Sink(netns)
    try:
        yield s
    finally:
        s.close()


def _congestion(sock: socket.socket) -> bytes:
    return sock.getsockopt(socket.IPPROTO_TCP, TCP_CONGESTION, 16).rstrip(b"\0")


def _send(sock: socket.socket, megabytes: int = 8) -> None:
    chunk = b"\xa5" * (1 << 20)
    for _ in range(megabytes):
        sock.sendall(chunk)


def _wait_gone(ids: set[int], timeout: float = 20.0) -> set[int]:
    deadline = time.monotonic() + timeout
    left = ids & _struct_ops_ids()
    while left and time.monotonic() < deadline:  # the kernel frees struct_ops maps after an RCU grace period
        time.sleep(0.2)
        left = ids & _struct_ops_ids()
    return left


def test_congestion_control_registered_used_upgraded_and_removed(bundled, kernel, netns, sink, cc_name):
    name = cc_name.decode()
    v1 = _object(bundled("tcp_cc_v1"), cc_name).load()
    v2 = _object(bundled("tcp_cc_v2"), cc_name).load()
    ids = {v1.maps["pybpf_cc"].id, v2.maps["pybpf_cc"].id}
    try:
        assert v1.maps["pybpf_cc"].flag_names == ["LINK"]
        link = v1.maps["pybpf_cc"].attach_struct_ops()
        assert isinstance(link, pybpf.BpfLink) and link.info().type == "struct_ops"
        assert isinstance(link, struct_ops.StructOpsLibbpfLink) == struct_ops.uses_libbpf()
        assert link.map_id() == v1.maps["pybpf_cc"].id
        assert name in _available()

        first = sink.connect(netns, cc_name)
        assert _congestion(first) == cc_name
        _send(first)
        assert int(v1.bss["init_calls"]) == 1
        assert int(v1.bss["cong_avoid_calls"]) > 0, "no cwnd update went through the BPF congestion control"
        assert int(v1.bss["last_cwnd"]) >= 2

        link.update(v2.maps["pybpf_cc"])          # in place, while `first` is connected
        assert link.map_id() == v2.maps["pybpf_cc"].id
        assert _available().count(name) == 1
        before = int(v1.bss["cong_avoid_calls"])
        _send(first, 2)                            # the running connection keeps its ops (v1)
        assert _congestion(first) == cc_name
        assert int(v1.bss["cong_avoid_calls"]) >= before

        second = sink.connect(netns, cc_name)      # a new connection gets the new version
        assert _congestion(second) == cc_name
        _send(second)
        assert int(v2.bss["init_calls"]) == 1 and int(v2.bss["cong_avoid_calls"]) > 0
        assert int(v2.rodata["cc_version"]) == 2

        first.close()
        second.close()
        link.close()
        assert name not in _available()
        with pytest.raises(OSError):  # unregistered: no socket can pick it any more
            sink.connect(netns, cc_name).close()
    finally:
        v1.close()
        v2.close()
    assert not _wait_gone(ids), "struct_ops maps left in `bpftool struct_ops list`"


def test_legacy_struct_ops_section_registers_but_cannot_update(kernel, tmp_path, cc_name):
    source = ROOT / "bpf_src" / "tcp_cc_v1.bpf.c"
    built = pybpf.build(source, tmp_path / "legacy.bpf.o", defines=['PYBPF_CC_SEC=".struct_ops"'])
    obj = _object(str(built), cc_name).load()
    ids = {obj.maps["pybpf_cc"].id}
    try:
        assert "LINK" not in obj.maps["pybpf_cc"].flag_names
        with obj.maps["pybpf_cc"].attach_struct_ops() as registration:
            assert cc_name.decode() in _available()
            with pytest.raises(pybpf.NotSupportedError, match=r'declare the map in SEC\("\.struct_ops\.link"\)'):
                registration.update(obj.maps["pybpf_cc"])
        assert cc_name.decode() not in _available()
    finally:
        obj.close()
    assert not _wait_gone(ids)


def test_wrong_maps_and_states_are_refused(bundled, kernel, cc_name):
    with _object(bundled("tcp_cc_v1"), cc_name) as obj:
        with pytest.raises(pybpf.BpfError, match="only possible after a successful load"):
            obj.maps["pybpf_cc"].attach_struct_ops()
        obj.load()
        with pytest.raises(pybpf.WrongMapTypeError, match="not a struct_ops map"):
            obj.maps[".bss"].attach_struct_ops()
        with obj.maps["pybpf_cc"].attach_struct_ops() as link:
            with pytest.raises(pybpf.BpfError):  # the same name twice: the kernel refuses it
                with _object(bundled("tcp_cc_v2"), cc_name) as other:
                    other.load()
                    other.maps["pybpf_cc"].attach_struct_ops()
            with pytest.raises(pybpf.NotSupportedError, match="is not a link map"):
                link.update(obj.maps[".bss"])
    assert cc_name.decode() not in _available()


def test_inspect_lists_struct_ops_maps_with_type_and_members(bundled):
    out = subprocess.run([sys.executable, "-m", "pybpf.cli", "inspect", "-j", bundled("tcp_cc_v1")],
                         capture_output=True, text=True, check=True).stdout
    (ops,) = json.loads(out)["struct_ops"]
    assert ops["name"] == "pybpf_cc" and ops["ops_type"] == "tcp_congestion_ops" and ops["link"] is True
    assert ops["programs"] == {"init": "cc_init", "cong_avoid": "cc_cong_avoid", "ssthresh": "cc_ssthresh",
                               "undo_cwnd": "cc_undo_cwnd"}
    assert ops["data"] == {"name": PLACEHOLDER.decode()}
    table = subprocess.run([sys.executable, "-m", "pybpf.cli", "inspect", bundled("tcp_cc_v1")],
                           capture_output=True, text=True, check=True).stdout
    assert "struct_ops maps" in table and "program cc_cong_avoid" in table


def test_deploy_and_upgrade_swap_the_registered_map(bundled, kernel, netns, sink, cc_name):
    """pybpf.deploy registers the map once (its four programs are one attachment); pybpf.upgrade
    registers the new version's map through one BPF_LINK_UPDATE while a connection runs."""
    deployment = pybpf.deploy(_object(bundled("tcp_cc_v1"), cc_name))
    ids = {deployment.object.maps["pybpf_cc"].id}
    try:
        (attachment,) = deployment.attachments
        assert attachment.mode == "struct_ops" and attachment.program == "cc_init"
        assert attachment.current_program_id() == deployment.object.programs["cc_init"].id
        first = sink.connect(netns, cc_name)
        _send(first, 2)
        deployment = pybpf.upgrade(deployment, _object(bundled("tcp_cc_v2"), cc_name))
        new_map = deployment.object.maps["pybpf_cc"]
        ids.add(new_map.id)
        (attachment,) = deployment.attachments
        assert attachment.link.map_id() == new_map.id  # type: ignore[attr-defined]
        assert attachment.current_program_id() == deployment.object.programs["cc_init"].id
        before = int(deployment.object.bss["cong_avoid_calls"])
        _send(first, 2)                                   # the running connection goes on
        with sink.connect(netns, cc_name) as second:      # and new ones use the new version
            assert _congestion(second) == cc_name
            _send(second, 4)
        assert int(deployment.object.bss["cong_avoid_calls"]) > before
        first.close()
    finally:
        deployment.close()
    assert cc_name.decode() not in _available()
    assert not _wait_gone(ids)


def test_object_attach_registers_struct_ops_maps(bundled, kernel, cc_name):
    with _object(bundled("tcp_cc_v1"), cc_name) as obj:
        obj.load()
        with pytest.raises(pybpf.BpfError, match=r"obj.maps\['pybpf_cc'\].attach_struct_ops\(\)"):
            obj.programs["cc_init"].attach()
        (link,) = obj.attach()
        assert link.info().type == "struct_ops" and cc_name.decode() in _available()
    assert cc_name.decode() not in _available()  # closing the object closed its link
