"""Upgrading a running tool under load: nothing lost, nothing counted twice, state carried.

The five tests of the upgrade issue, on the real kernel:
1. exactly-once on a tracepoint through the dispatcher across 100 upgrades;
2. XDP in a network namespace upgraded 100 times through BPF_LINK_UPDATE;
3. a changed value struct migrated field by field;
4. a version that fails verification leaves the old one attached and counting;
5. `pybpf load --pin` in one process, `pybpf upgrade` from another.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import pybpf
from pybpf.upgrade.core import Deployment
from tests.conftest import ROOT, enter_netns

UPGRADES = 100
FRAME = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + b"pybpf-upgrade".ljust(46, b"\0")


def _versions(bundled) -> list[str]:
    return [bundled("upgrade_count_a"), bundled("upgrade_count_b")]


def _deployed(path: str, **hooks) -> Deployment:
    obj = pybpf.open(path)
    obj.rodata["want_tgid"] = os.getpid()
    return pybpf.deploy(obj, hooks=hooks)


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_exactly_once_on_a_tracepoint_across_100_upgrades(bundled, kernel):
    versions = _versions(bundled)
    deployment = _deployed(versions[0])
    try:
        assert [a.mode for a in deployment.attachments] == ["dispatch"]
        counter = deployment.object.maps["counts"].view()  # reused by every version: one kernel map
        stop = threading.Event()
        progress = [0]
        result: dict[str, int] = {}

        def caller() -> None:
            # getppid() without pause; after each call the counter must have moved by exactly one
            getppid, calls, lost, doubled = os.getppid, 0, 0, 0
            before = int(counter[0])
            while not stop.is_set():
                getppid()
                calls += 1
                now = int(counter[0])
                if now == before:
                    lost += 1
                elif now > before + 1:
                    doubled += now - before - 1
                before = now
                progress[0] = calls
            result.update(calls=calls, lost=lost, doubled=doubled)

        thread = threading.Thread(target=caller)
        thread.start()
        times = []
        try:
            assert _wait_for(lambda: progress[0] > 0)
            for i in range(UPGRADES):
                seen = progress[0]
                deployment = pybpf.upgrade(deployment, versions[(i + 1) % 2])
                times.append(deployment.report.verified_to_switched_s)
                # events keep arriving between every two switches (the caller never waits for us)
                assert _wait_for(lambda seen=seen: progress[0] > seen)
        finally:
            stop.set()
            thread.join()
        assert result["calls"] > UPGRADES
        assert result["lost"] == 0 and result["doubled"] == 0
        assert int(counter[0]) == result["calls"]
        assert deployment.object.name == "upgrade_count_a"  # 100 upgrades: back at version A
        assert all(m["action"] == "reuse" for m in deployment.report.maps if m["name"] == "counts")
        print(f"\nexactly-once: {result['calls']} getppid() calls, {UPGRADES} upgrades, lost 0, doubled 0; "
              f"verified->switched median {np.median(times) * 1e6:.0f} us, max {max(times) * 1e6:.0f} us")
    finally:
        deployment.close()


def _veth(netns: str) -> None:
    # no IPv6: a fresh link would send router solicitations and MLD reports of its own
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1"], check=True)
    subprocess.run(["ip", "-n", netns, "link", "add", "va", "type", "veth", "peer", "name", "vb"], check=True)
    for dev in ("va", "vb"):
        subprocess.run(["ip", "-n", netns, "link", "set", dev, "up"], check=True)


def test_xdp_in_a_netns_upgraded_100_times_counts_every_frame(bundled, kernel, netns):
    _veth(netns)
    versions = _versions(bundled)
    with enter_netns(netns):
        deployment = _deployed(versions[0], count_xdp=lambda p: p.attach_xdp("vb"))
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        raw.bind(("va", 0))
        try:
            modes = {a.program: a.mode for a in deployment.attachments}
            assert modes == {"count_getppid": "dispatch", "count_xdp": "link"}
            xdp_link = next(a.link for a in deployment.attachments if a.program == "count_xdp")
            link_id = xdp_link.info().id
            counter = deployment.object.maps["counts"].view()
            stop = threading.Event()
            sent = [0]

            def sender() -> None:  # frames leave va and arrive on vb, where XDP counts them
                while not stop.is_set():
                    raw.send(FRAME)
                    sent[0] += 1

            thread = threading.Thread(target=sender)
            thread.start()
            try:
                assert _wait_for(lambda: sent[0] > 0)
                for i in range(UPGRADES):
                    seen = sent[0]
                    deployment = pybpf.upgrade(deployment, versions[(i + 1) % 2])
                    assert _wait_for(lambda seen=seen: sent[0] > seen)
            finally:
                stop.set()
                thread.join()
            total = sent[0]  # the traffic is over: this many frames went out
            assert total > UPGRADES
            assert _wait_for(lambda: int(counter[1]) >= total, timeout=5)
            time.sleep(0.05)
            assert int(counter[1]) == total
            # the same bpf_link all along, updated in place, now running version A's program
            xdp = next(a for a in deployment.attachments if a.program == "count_xdp")
            assert xdp.link.info().id == link_id
            assert xdp.current_program_id() == deployment.object.programs["count_xdp"].id
            print(f"\nXDP: {total} frames sent, {int(counter[1])} counted across {UPGRADES} link updates")
        finally:
            raw.close()
            deployment.close()


def _flows(n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    # n keys that are not this process's pid (the programs count under the tgid's key)
    start = os.getpid() + 1 if os.getpid() <= n else 1
    keys = np.arange(start, start + n, dtype=np.uint32)
    k = keys.astype(np.uint64)
    return keys, {"packets": k * 3, "legacy": (k + 7).astype(np.uint32),
                  "flags": (k ^ np.uint64(0xA5A5A5A5)).astype(np.uint32), "bytes": k * 1_000_003 + (1 << 40)}


def test_changed_value_struct_migrates_every_entry_field_by_field(bundled, kernel):
    deployment = _deployed(bundled("upgrade_struct_v1"))
    try:
        v1 = deployment.object
        flows = v1.maps["flows"]
        assert set(flows.value_dtype.names) == {"packets", "legacy", "flags", "bytes"}
        keys, fields = _flows(2000)
        values = np.zeros(len(keys), flows.value_dtype)
        for name, column in fields.items():
            values[name] = column
        flows.update_batch(keys, values)
        flows[os.getpid()] = {"packets": 0, "legacy": 1, "flags": 2, "bytes": 3}
        v1.bss["total"] = 12345
        v1.bss["v1_only"] = 9
        v1.data["knob"] = 11
        os.getppid()  # v1 runs: total += knob, flows[pid].packets += 1
        assert int(v1.bss["total"]) == 12345 + 11

        deployment = pybpf.upgrade(deployment, bundled("upgrade_struct_v2"))
        v2 = deployment.object
        actions = {m["name"]: (m["action"], m["entries"]) for m in deployment.report.maps}
        assert actions["flows"] == ("migrate", 2001)
        new = v2.maps["flows"]
        assert list(new.value_dtype.names) == ["bytes", "packets", "flags", "added", "pad"]
        assert new.value_dtype["flags"] == np.uint64
        got_keys, got = new.lookup_batch()
        order = np.argsort(got_keys)
        got_keys, got = got_keys[order], got[order]
        mine = got_keys == os.getpid()
        assert int(got[mine]["packets"][0]) == 1 and int(got[mine]["bytes"][0]) == 3
        assert int(got[mine]["flags"][0]) == 2
        got_keys, got = got_keys[~mine], got[~mine]
        np.testing.assert_array_equal(got_keys, keys)
        np.testing.assert_array_equal(got["packets"], fields["packets"])
        np.testing.assert_array_equal(got["bytes"], fields["bytes"])
        np.testing.assert_array_equal(got["flags"], fields["flags"].astype(np.uint64))
        assert not got["added"].any() and not got["pad"].any()  # new fields are zero; legacy is gone
        # globals by variable name: carried, new ones zero, removed ones dropped
        assert int(v2.bss["total"]) == 12345 + 11 and int(v2.bss["v2_only"]) == 0
        assert "v1_only" not in v2.bss and int(v2.data["knob"]) == 11
        os.getppid()  # v2 runs on the migrated state
        assert int(v2.bss["total"]) == 12345 + 22
        assert int(new[os.getpid()]["packets"]) == 2
    finally:
        deployment.close()


def test_incompatible_map_is_refused_before_anything_changes(bundled, kernel):
    deployment = _deployed(bundled("upgrade_struct_v1"))
    try:
        v1 = deployment.object
        v1.maps["flows"][os.getpid()] = {"packets": 5, "legacy": 0, "flags": 0, "bytes": 0}
        with pytest.raises(pybpf.MapMismatchError) as caught:
            pybpf.upgrade(deployment, bundled("upgrade_struct_v3"))
        assert caught.value.map_name == "flows"
        assert "hash to array" in caught.value.difference
        assert not deployment.closed
        os.getppid()
        assert int(v1.maps["flows"][os.getpid()]["packets"]) == 6  # v1 still attached and counting
        with pytest.raises(pybpf.MapMismatchError, match="migrate=False"):
            pybpf.upgrade(deployment, bundled("upgrade_struct_v2"), migrate=False)
        os.getppid()
        assert int(v1.maps["flows"][os.getpid()]["packets"]) == 7
    finally:
        deployment.close()


def test_a_version_failing_verification_leaves_the_old_one_running(bundled, kernel):
    deployment = _deployed(bundled("upgrade_count_a"))
    try:
        v1 = deployment.object
        view = v1.maps["counts"].view()  # outlives v1's Map handle: the map is reused by every version
        for _ in range(5):
            os.getppid()
        before_counts = view.copy()
        before_bss = bytes(v1.bss.view().tobytes())
        slot_program = deployment.attachments[0].current_program_id()
        with pytest.raises(pybpf.VerifierError) as caught:
            pybpf.upgrade(deployment, bundled("upgrade_count_bad"))
        assert caught.value.program == "count_getppid"
        assert "invalid mem access" in caught.value.log
        # nothing of v1 changed: same map contents, same globals, same program in the slot
        np.testing.assert_array_equal(view, before_counts)
        assert bytes(v1.bss.view().tobytes()) == before_bss
        assert deployment.attachments[0].current_program_id() == slot_program == \
            v1.programs["count_getppid"].id
        assert not deployment.closed
        for _ in range(5):
            os.getppid()
        assert int(view[0]) == int(before_counts[0]) + 5  # still attached and counting
        # and it can still be upgraded afterwards
        deployment = pybpf.upgrade(deployment, bundled("upgrade_count_b"))
        os.getppid()
        assert int(view[0]) == int(before_counts[0]) + 6
    finally:
        deployment.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.run([sys.executable, "-m", "pybpf.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env, check=False)


def test_load_pin_in_one_process_upgrade_from_another(bundled, kernel, bpffs):
    a, b = _versions(bundled)
    bpffs = os.path.join(bpffs, "tool")  # the mount's root is 1777: a deployment gets a 0700 directory of its own
    loaded = _cli("load", a, "--set", f"want_tgid={os.getpid()}", "--pin", bpffs, "--duration", "0")
    assert loaded.returncode == 0, loaded.stderr
    assert {"counts", "count_getppid_link", "count_getppid_slot", "pybpf_manifest"} <= set(os.listdir(bpffs))
    with pybpf.Map.from_pin(os.path.join(bpffs, "counts")) as counts:
        view = counts.view()
        for _ in range(100):
            os.getppid()  # the loading process is gone: the pinned version counts
        assert int(view[0]) == 100
        planned = _cli("upgrade", bpffs, b, "--dry-run", "--json")
        assert planned.returncode == 0, planned.stderr
        plan = json.loads(planned.stdout)
        assert {m["name"]: m["action"] for m in plan["maps"]}["counts"] == "reuse"
        assert (plan["from_version"], plan["from_source"], plan["to_source"]) == (1, a, b)
        shown = _cli("upgrade", bpffs, b, "--dry-run")
        assert shown.returncode == 0, shown.stderr
        assert f"plan: upgrade_count_a version 1 ({a}) -> upgrade_count_b ({b}) in {bpffs}" in \
            " ".join(shown.stdout.split()), shown.stdout
        assert plan["attachments"] == [{"program": "count_getppid", "hook": "tracepoint syscalls:sys_enter_getppid",
                                        "mode": "dispatch", "switch": "one update of the dispatcher's slot (PROG_ARRAY)",
                                        "new_program": "count_getppid"}]
        with Deployment.from_pins(bpffs) as unchanged:  # the dry run changed nothing
            assert unchanged.manifest["object"] == "upgrade_count_a" and "pending" not in unchanged.manifest
        upgraded = _cli("upgrade", bpffs, b, "--json")
        assert upgraded.returncode == 0, upgraded.stderr
        doc = json.loads(upgraded.stdout)
        assert doc["object"] == "upgrade_count_b"
        assert {m["name"]: m["action"] for m in doc["maps"]}["counts"] == "reuse"
        assert {m["name"]: m["entries"] for m in doc["maps"]}["counts"] == 1  # a reused map's true count
        assert doc["switched"] == ["count_getppid at tracepoint syscalls:sys_enter_getppid (dispatch)"]
        for _ in range(100):
            os.getppid()
        assert int(view[0]) == 200  # same map, counter intact, want_tgid carried from .rodata
        with Deployment.from_pins(bpffs) as running:
            assert running.manifest["object"] == "upgrade_count_b"
            assert int(running.sections[".bss"].lookup(bytes(4))["last_version"]) == 2
            assert int(running.sections[".bss"].lookup(bytes(4))["seen_by_this_version"]) == 200
        # a bad version from yet another process: refused, version B keeps counting
        bad = _cli("upgrade", bpffs, bundled("upgrade_count_bad"))
        assert bad.returncode == 1 and "untouched" in bad.stderr and "Traceback" not in bad.stderr
        os.getppid()
        assert int(view[0]) == 201
        # and the library takes a directory too: back to A from this process
        with pybpf.upgrade(bpffs, a) as back:
            assert back.directory == bpffs and back.report is not None
        os.getppid()
        assert int(view[0]) == 202
        with Deployment.from_pins(bpffs) as running:
            assert running.manifest["object"] == "upgrade_count_a"
            assert int(running.sections[".bss"].lookup(bytes(4))["seen_by_this_version"]) == 202


def test_pybpfs_own_refusals_carry_no_errno_and_no_wrong_advice(bundled, kernel, tmp_path, bpffs):
    plain = tmp_path / "not-bpffs"
    plain.mkdir(mode=0o700)
    result = _cli("upgrade", str(plain), bundled("upgrade_count_b"))
    assert result.returncode == 1
    assert "is not on a bpffs" in result.stderr and "--pin" not in result.stderr, result.stderr
    empty = os.path.join(bpffs, "empty")
    os.mkdir(empty, 0o700)
    result = _cli("upgrade", empty, bundled("upgrade_count_b"))
    assert "holds no pybpf deployment" in result.stderr
    assert "[E" not in result.stderr, result.stderr  # pybpf's own refusal: no errno claimed
