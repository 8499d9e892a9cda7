"""kill -9 of `pybpf upgrade` at each step leaves the deployment running, and the next upgrade completes it.

The upgrade is killed with SIGKILL at named points (``PYBPF_UPGRADE_CRASH_AT``: no sleeps, no
races with a timer) while a process calls getppid() without pause. After each kill the hook runs
either the old version or the new one, DIR's manifest says what runs (with the interrupted
upgrade recorded as ``pending``), and the next upgrade rolls it back or forward. Every map is
migrated on each upgrade (upgrade_exact_v1/v2), so at the end every counter must equal the calls:
nothing lost, nothing merged twice.
"""

from __future__ import annotations

import os
import signal
import subprocess

import numpy as np
import pytest

import pybpf
from pybpf.kernel.info import open_pinned, prog_info
from pybpf.upgrade.manifest import read_manifest
from tests.conftest import ROOT
from tests.test_upgrade_exact import Caller
from tests.procs import env, pybpf_cmd

POINTS = ["verified", "pinned", "copying", "copied", "switched", "merging", "merged", "renaming", "committed"]
LAST = ["--last-value", "stats:last_ns"]


def _upgrade_killed_at(directory: str, new: str, point: str) -> subprocess.CompletedProcess[str]:
    e = dict(env(), PYBPF_UPGRADE_CRASH_AT=point)
    return subprocess.run(pybpf_cmd("upgrade", directory, new, *LAST), capture_output=True, text=True,
                          timeout=120, env=e, cwd=ROOT, check=False)


def _running_maps(directory: str) -> set[int]:
    """The map ids the program in the dispatcher's slot uses (whatever version it is)."""
    with pybpf.Map.from_pin(os.path.join(directory, "count_slot")) as slot:
        prog_id = int(slot.lookup(0))
    from pybpf.kernel.info import open_prog_by_id

    fd = open_prog_by_id(prog_id)
    try:
        return set(prog_info(fd).map_ids)
    finally:
        os.close(fd)


def _map_id(path: str) -> int:
    with pybpf.Map.from_pin(path) as m:
        return m.id


def test_kill_9_at_every_step_loses_and_doubles_nothing(bundled, kernel, bpffs):
    versions = {"v1": bundled("upgrade_exact_v1"), "v2": bundled("upgrade_exact_v2")}
    directory = os.path.join(bpffs, "tool")
    caller = Caller()
    try:
        obj = pybpf.open(versions["v1"])
        obj.rodata["want_tgid"] = caller.pid
        with pybpf.deploy(obj) as deployment:
            os.makedirs(directory, mode=0o700)
            deployment.pin(directory)
        caller.go()
        current, outcomes = "v1", {}
        for point in POINTS:
            target = "v2" if current == "v1" else "v1"
            old_stats = _map_id(os.path.join(directory, "stats"))
            killed = _upgrade_killed_at(directory, versions[target], point)
            assert killed.returncode == -signal.SIGKILL, (point, killed.returncode, killed.stderr)
            # the hook runs one version: its program uses either the old stats map or the new one
            doc = read_manifest(directory)
            assert doc is not None
            pending = doc.get("pending")
            running = _running_maps(directory)
            new_stats = os.path.join(directory, "stats__next")
            candidates = {old_stats} | ({_map_id(new_stats)} if os.path.lexists(new_stats) else set())
            if point == "committed":
                candidates.add(_map_id(os.path.join(directory, "stats")))
            assert running & candidates, (point, running, candidates)
            outcomes[point] = "pending" if pending else "clean"
            # the next upgrade finishes (or undoes) the interrupted one, then runs
            with pybpf.upgrade(directory, versions[target], last_value={"stats": ["last_ns"]}) as done:
                assert done.report is not None and done.report.warnings == []
            doc = read_manifest(directory)
            assert doc is not None and "pending" not in doc
            assert not [n for n in os.listdir(directory) if n.endswith(("__next", "__snap"))], (point, os.listdir(directory))
            current = target
        # and `pybpf upgrade` itself, from the shell, after all that
        last = subprocess.run(pybpf_cmd("upgrade", directory, versions["v1"], *LAST), capture_output=True,
                              text=True, timeout=120, env=env(), cwd=ROOT, check=False)
        assert last.returncode == 0, last.stderr
        calls = caller.stop()
        with pybpf.Deployment.from_pins(directory) as running_now:
            stats = running_now.maps["stats"][caller.pid]
            pcpu = running_now.maps["pcpu"][caller.pid]
            _, hist = running_now.maps["hist"].lookup_batch()
            bss = running_now.sections[".bss"].lookup(bytes(4))
            got = {"stats": int(stats["calls"]), "pcpu": int(pcpu["calls"].sum()),
                   "hist": int(np.asarray(hist, np.uint64).sum()), "bss": int(bss["bss_calls"])}
        assert outcomes["verified"] == "clean" and outcomes["committed"] == "clean"
        assert outcomes["switched"] == "pending" and outcomes["merged"] == "pending"
        assert calls > 1000
        assert got == {"stats": calls, "pcpu": calls, "hist": calls, "bss": calls}, (got, calls)
        print(f"\nkill -9 at {len(POINTS)} points: {calls} calls, every counter exact")
    finally:
        caller.kill()


def test_a_replaced_pin_is_not_adopted(bundled, kernel, bpffs):
    """The upgrade used to count into whatever map was pinned under a map's name."""
    directory = os.path.join(bpffs, "tool")
    obj = pybpf.open(bundled("upgrade_count_a"))
    obj.rodata["want_tgid"] = os.getpid()
    with pybpf.deploy(obj) as deployment:
        os.makedirs(directory, mode=0o700)
        deployment.pin(directory)
    with pybpf.Map.from_pin(os.path.join(directory, "counts")) as live:
        counts_id = live.id
    impostor = pybpf.Map.create("array", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=4,
                                flags="mmapable", name="counts")
    with impostor:
        os.unlink(os.path.join(directory, "counts"))
        impostor.pin(os.path.join(directory, "counts"))
        with pytest.raises(pybpf.BpfError, match="refusing to adopt"):
            pybpf.upgrade(directory, bundled("upgrade_count_b"))
        with pytest.raises(pybpf.BpfError, match="refusing to adopt"):
            pybpf.Deployment.from_pins(directory)
        # the running version is untouched: version A still counts into the map it was loaded with
        with pybpf.Map.from_id(counts_id) as live:
            before = int(live[0])
            for _ in range(5):
                os.getppid()
            assert int(live[0]) == before + 5
        assert int(impostor[0]) == 0
    fd = open_pinned(os.path.join(directory, "count_getppid"), "program")
    try:
        assert prog_info(fd).map_ids and counts_id in prog_info(fd).map_ids
    finally:
        os.close(fd)


def _attachment_programs(directory: str, entries: list[dict]) -> dict[str, int]:  # type: ignore[type-arg]
    """The id of the program each hook of a manifest runs now."""
    from pybpf.upgrade.attach import from_manifest

    out = {}
    for entry in entries:
        a = from_manifest(directory, entry)
        try:
            out[a.program] = a.current_program_id()
        finally:
            a.close()
    return out


def _pinned_program_id(path: str) -> int:
    fd = open_pinned(path, "program")
    try:
        return prog_info(fd).id
    finally:
        os.close(fd)


def _mixed(directory: str) -> dict[str, int]:
    """After a kill between two switches: one hook runs the new version, the other the old one.
    Returns the ids of the new version's programs (pinned under their temporary names)."""
    doc = read_manifest(directory)
    assert doc is not None and doc.get("pending") is not None
    pending = doc["pending"]
    new_ids = {p["name"]: _pinned_program_id(os.path.join(directory, pending["temp"][p["pin"]]))
               for p in pending["next"]["programs"]}
    old_ids = {p["name"]: _pinned_program_id(os.path.join(directory, p["pin"])) for p in doc["programs"]}
    running = _attachment_programs(directory, doc["attachments"])
    switched = sorted(name for name, pid in running.items() if pid == new_ids[name])
    kept = sorted(name for name, pid in running.items() if pid == old_ids[name])
    assert len(switched) == 1 and len(kept) == 1, (running, new_ids, old_ids)
    return new_ids


def _killed_switching(directory: str, new: str, *args: str) -> None:
    killed = subprocess.run(pybpf_cmd("upgrade", directory, new, *args), capture_output=True, text=True,
                            timeout=120, env=dict(env(), PYBPF_UPGRADE_CRASH_AT="switching"), cwd=ROOT, check=False)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)


ROLLED_FORWARD = "rolled forward (switched the rest, merged, renamed the new pins into place)"


def test_kill_9_between_two_switches_is_rolled_forward(bundled, kernel, netns, bpffs):
    """Two attachments (a tracepoint through its dispatcher, XDP on a veth link): killed after the
    first switch, one hook runs the new version and the other the old; recover() switches the rest,
    and every getppid() and frame is counted once across it all."""
    import socket

    from tests.conftest import enter_netns
    from tests.test_upgrade import FRAME, _veth, _wait_for

    _veth(netns)
    directory = os.path.join(bpffs, "two")
    with enter_netns(netns):
        obj = pybpf.open(bundled("upgrade_count_a"))
        obj.rodata["want_tgid"] = os.getpid()
        with pybpf.deploy(obj, hooks={"count_xdp": lambda p: p.attach_xdp("vb")}) as deployment:
            assert {a.mode for a in deployment.attachments} == {"dispatch", "link"}
            os.makedirs(directory, mode=0o700)
            deployment.pin(directory)
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        raw.bind(("va", 0))
    counts = pybpf.Map.from_pin(os.path.join(directory, "counts"))  # reused by every version
    sent = [0]

    def traffic(n: int) -> None:
        for _ in range(n):
            os.getppid()
            raw.send(FRAME)
        sent[0] += n

    try:
        view = counts.view()
        traffic(200)
        _killed_switching(directory, bundled("upgrade_count_b"))
        new_ids = _mixed(directory)
        traffic(200)  # both versions count, each at its own hook, into the same maps
        assert pybpf.upgrade.recover(directory) == ROLLED_FORWARD
        doc = read_manifest(directory)
        assert doc is not None and "pending" not in doc and doc["object"] == "upgrade_count_b"
        assert _attachment_programs(directory, doc["attachments"]) == \
            {p["name"]: _pinned_program_id(os.path.join(directory, p["pin"])) for p in doc["programs"]} == new_ids
        assert not [n for n in os.listdir(directory) if n.endswith(("__next", "__snap"))], os.listdir(directory)
        traffic(200)
        assert _wait_for(lambda: int(view[1]) >= sent[0], timeout=10)  # XDP on veth counts in NAPI, not inline
        assert int(view[0]) == sent[0] and int(view[1]) == sent[0], (int(view[0]), int(view[1]), sent[0])
        del view
    finally:
        raw.close()
        counts.close()


def test_kill_9_between_two_switches_with_migrated_maps_loses_nothing(bundled, kernel, bpffs):
    """Two hooks (getppid, getpgid) counting into the same maps, every map migrated (upgrade_exact2_v1 ->
    v2): killed after the first switch, one hook counts into the new maps and the other into the old
    ones; recover() switches the rest and merges what the old ones gained: every call counted once."""
    v1, v2 = bundled("upgrade_exact2_v1"), bundled("upgrade_exact2_v2")
    directory = os.path.join(bpffs, "two")
    obj = pybpf.open(v1)
    obj.rodata["want_tgid"] = os.getpid()
    with pybpf.deploy(obj) as deployment:
        assert [a.mode for a in deployment.attachments] == ["dispatch", "dispatch"]
        os.makedirs(directory, mode=0o700)
        deployment.pin(directory)
    calls = [0]

    def work(n: int) -> None:
        for _ in range(n):
            os.getppid()
            os.getpgid(0)
        calls[0] += 2 * n

    work(500)
    _killed_switching(directory, v2, *LAST)
    new_ids = _mixed(directory)
    work(500)  # each hook counts into its own version's maps
    assert pybpf.upgrade.recover(directory) == ROLLED_FORWARD
    doc = read_manifest(directory)
    assert doc is not None and "pending" not in doc
    assert _attachment_programs(directory, doc["attachments"]) == new_ids
    work(500)
    with pybpf.Deployment.from_pins(directory) as running_now:
        pid = os.getpid()
        _, hist = running_now.maps["hist"].lookup_batch()
        got = {"stats": int(running_now.maps["stats"][pid]["calls"]),
               "pcpu": int(running_now.maps["pcpu"][pid]["calls"].sum()),
               "hist": int(np.asarray(hist, np.uint64).sum()),
               "bss": int(running_now.sections[".bss"].lookup(bytes(4))["bss_calls"])}
    assert got == dict.fromkeys(got, calls[0]), (got, calls[0])
