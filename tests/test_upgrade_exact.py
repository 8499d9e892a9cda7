"""The exact merge of migrated maps: nothing the old version counts between the copy and the switch is lost.

upgrade_exact_v1/v2 differ in every value layout (hash struct, per-CPU hash struct, array slot
width, .bss), so each upgrade migrates every map; a process calls getppid() without pause and a
CPU hog runs beside it (long windows). After 100 alternating upgrades each counter equals the
calls made. The merge's rules (counters added, last values compare-and-swapped) are checked on
maps built by hand, where the "old" and "new" writes are chosen.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np

import pybpf
from pybpf.upgrade.merge import Merger, leaves, wait_for_programs
from tests.conftest import new_fds, open_fds

UPGRADES = 100

_CALLER = """
import os, signal, sys
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
sys.stdin.readline()
n = 0
while not stop:
    os.getppid()
    n += 1
print(n, flush=True)
"""


class Caller:
    """A process calling getppid() without pause once told to; it reports how many calls it made."""

    def __init__(self) -> None:
        self.p = subprocess.Popen([sys.executable, "-c", _CALLER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        assert self.p.stdout is not None and self.p.stdout.readline().strip() == "ready"
        self.pid = self.p.pid

    def go(self) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write("go\n")
        self.p.stdin.flush()

    def stop(self) -> int:
        self.p.send_signal(signal.SIGTERM)
        assert self.p.stdout is not None
        calls = int(self.p.stdout.readline())
        self.p.wait(30)
        return calls

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        for stream in (self.p.stdin, self.p.stdout):
            if stream is not None:
                stream.close()


def _hog() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _counts(obj: pybpf.Object, pid: int) -> dict[str, int]:
    _, hist = obj.maps["hist"].lookup_batch()
    return {"stats": int(obj.maps["stats"][pid]["calls"]), "pcpu": int(obj.maps["pcpu"][pid]["calls"].sum()),
            "hist": int(np.asarray(hist, np.uint64).sum()), "bss": int(obj.bss["bss_calls"])}


def test_100_migrating_upgrades_under_load_lose_no_count(bundled, kernel):
    versions = [bundled("upgrade_exact_v1"), bundled("upgrade_exact_v2")]
    caller, hog = Caller(), _hog()
    deployment = None
    try:
        obj = pybpf.open(versions[0])
        obj.rodata["want_tgid"] = caller.pid
        deployment = pybpf.deploy(obj)
        caller.go()
        windows, merges, merged_entries = [], [], 0
        for i in range(UPGRADES):
            deployment = pybpf.upgrade(deployment, versions[(i + 1) % 2], last_value={"stats": ["last_ns"]})
            report = deployment.report
            assert report is not None and report.warnings == []
            assert {m["name"]: m["action"] for m in report.maps} == \
                {"stats": "migrate", "pcpu": "migrate", "hist": "migrate", ".bss": "migrate"}
            assert all(m["exact"] for m in report.maps)
            windows.append(report.window_s)
            merges.append(report.wait_s + report.merge_s)
            merged_entries += sum(m["merged"]["entries"] for m in report.maps)
        calls = caller.stop()
        got = _counts(deployment.object, caller.pid)
        assert deployment.object.path.endswith("upgrade_exact_v1.bpf.o")  # 100 upgrades: back at v1
        assert calls > 10 * UPGRADES
        assert merged_entries > 0  # the old version did count in the windows: the merge carried it
        assert got == {"stats": calls, "pcpu": calls, "hist": calls, "bss": calls}
        print(f"\nexact merge: {calls} calls over {UPGRADES} migrating upgrades, lost 0 in every map; "
              f"copy->switch window median {np.median(windows) * 1e3:.1f} ms, max {max(windows) * 1e3:.1f} ms; "
              f"wait+merge median {np.median(merges) * 1e3:.1f} ms, max {max(merges) * 1e3:.1f} ms")
    finally:
        hog.kill()
        hog.wait()
        caller.kill()
        if deployment is not None:
            deployment.close()


def test_a_migrate_function_is_applied_to_the_final_state_too(bundled, kernel):
    """migrate= keeps working, and exactly: the function also converts what the old map holds at the end."""
    v1, v2 = bundled("upgrade_exact_v1"), bundled("upgrade_exact_v2")
    seen: list[int] = []

    def stats(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seen.append(len(keys))
        out = np.zeros(len(values), new_dtype[0])
        out["calls"], out["last_ns"], out["flags"] = values["calls"], values["last_ns"], 7
        return keys, out

    caller = Caller()
    deployment = None
    try:
        obj = pybpf.open(v1)
        obj.rodata["want_tgid"] = caller.pid
        deployment = pybpf.deploy(obj)
        with pybpf.open(v2) as probe:
            new_dtype = [probe.maps["stats"].value_dtype]
        caller.go()
        for i in range(6):
            target = (v2, v1)[i % 2]
            mig = {"stats": stats} if target == v2 else True
            deployment = pybpf.upgrade(deployment, target, migrate=mig, last_value={"stats": ["last_ns"]})
        calls = caller.stop()
        assert len(seen) == 6  # 3 upgrades to v2, each: the copy and the final state
        assert _counts(deployment.object, caller.pid)["stats"] == calls
    finally:
        caller.kill()
        if deployment is not None:
            deployment.close()


_VALUE = np.dtype([("calls", "<u8"), ("last", "<u8"), ("small", "<u2"), ("tiny", "u1"), ("pad", "u1"),
                   ("hits", "<u4"), ("name", "S8")])


def _merge_maps(percpu: bool = False):  # type: ignore[no-untyped-def]
    kind = "percpu_hash" if percpu else "hash"
    old = pybpf.Map.create(kind, key_dtype=np.uint32, value_dtype=_VALUE, max_entries=16)
    new = pybpf.Map.create(kind, key_dtype=np.uint32, value_dtype=_VALUE, max_entries=16)
    return old, new


def _value(**fields: object) -> np.ndarray:
    v = np.zeros(1, _VALUE)
    for k, x in fields.items():
        v[k] = x
    return v


def test_merge_rules_counters_add_last_values_keep_the_new_write(kernel):
    old, new = _merge_maps()
    merger = Merger.prepare("t", old, new, section=False, last_value=["last", "name"])
    try:
        keys = np.array([1, 2, 3], np.uint32)
        start = np.concatenate([_value(calls=10, last=100, small=65530, tiny=250, hits=5, name=b"a"),
                                _value(calls=20, last=200, name=b"b"), _value(calls=30, last=300)])
        old.update_batch(keys, start)            # the copy: S in the old and the new map
        new.update_batch(keys, start)
        merger.record(keys, start)
        # the old version, between the copy and the switch:
        old[1] = _value(calls=15, last=101, small=65535, tiny=255, hits=6, name=b"old")[0]
        old[2] = _value(calls=21, last=201, name=b"b")[0]
        old.delete(3)                              # deleted: merges as zero
        old[4] = _value(calls=4, last=400, name=b"new")[0]   # only in the old map
        # the new version, after the switch:
        new[1] = _value(calls=12, last=100, small=2, tiny=1, hits=7, name=b"a")[0]  # last/name not written
        new[2] = _value(calls=22, last=999, name=b"mine")[0]                        # wrote last and name
        result = merger.merge(lambda k, v: (k, v))
        got = {int(k): v for k, v in zip(*new.lookup_batch())}
        # counters: the new value plus F - S (16-bit and 8-bit fields wrap like the field)
        assert int(got[1]["calls"]) == 12 + 5 and int(got[1]["hits"]) == 7 + 1
        assert int(got[1]["small"]) == (2 + 5) & 0xFFFF and int(got[1]["tiny"]) == (1 + 5) & 0xFF
        assert int(got[2]["calls"]) == 22 + 1
        assert int(got[3]["calls"]) == 0          # 30 copied, then deleted by the old version
        assert int(got[4]["calls"]) == 4 and int(got[4]["last"]) == 400 and got[4]["name"] == b"new"
        # last values: the old final value where the new version had not written, else the new write
        assert int(got[1]["last"]) == 101 and got[1]["name"] == b"old"
        assert int(got[2]["last"]) == 999 and got[2]["name"] == b"mine"
        assert result.inserted == 1 and result.kept == 1 and result.failed == 0  # key 2: the new "last" kept
        # merging again adds nothing: every snapshot entry is F now (what makes recovery after a kill safe)
        before = {int(k): v.copy() for k, v in zip(*new.lookup_batch())}
        again = merger.merge(lambda k, v: (k, v))
        assert again.entries == 0
        after = {int(k): v for k, v in zip(*new.lookup_batch())}
        assert all(before[k].tobytes() == after[k].tobytes() for k in before)
    finally:
        merger.close()
        old.close()
        new.close()


def test_merge_of_a_percpu_map_keeps_the_sum_exact(kernel):
    old, new = _merge_maps(percpu=True)
    merger = Merger.prepare("p", old, new, section=False)
    try:
        ncpus = new.n_cpus
        s = np.zeros(ncpus, _VALUE)
        s["calls"] = np.arange(ncpus) + 1
        old[9] = s
        new[9] = s
        merger.record(np.array([9], np.uint32), s.reshape(1, ncpus))
        f = s.copy()
        f["calls"] += 100                          # the old version: +100 on every CPU
        old[9] = f
        n = s.copy()
        n["calls"] += 3                            # the new version: +3 on every CPU
        new[9] = n
        merger.merge(lambda k, v: (k, v))
        assert int(new[9]["calls"].sum()) == int(s["calls"].sum()) + 103 * ncpus
    finally:
        merger.close()
        old.close()
        new.close()


def test_fields_that_cannot_merge_exactly_are_named():
    dtype = np.dtype({"names": ["calls", "ratio", "odd", "last_seen"],
                      "formats": ["<u8", "<f8", "<u8", "<u8"], "offsets": [0, 8, 20, 32], "itemsize": 40})
    rules = {leaf.path: leaf for leaf in leaves(dtype, ["last_seen"])}
    assert rules["calls"].mode == "add" and rules["calls"].exact
    assert rules["last_seen"].mode == "last" and rules["last_seen"].exact
    assert not rules["ratio"].exact and "float" in rules["ratio"].why
    assert not rules["odd"].exact and "misaligned" in rules["odd"].why
    slots = {leaf.path: leaf.mode for leaf in leaves(np.dtype(("<u4", (3,))))}
    assert slots == {"[0]": "add", "[1]": "add", "[2]": "add"}  # a histogram's slots are counters


def test_wait_for_programs_returns_and_leaves_nothing_open(kernel):
    before = open_fds()
    for _ in range(3):
        wait_for_programs()  # one synchronize_rcu through a map-in-map update
    assert not new_fds(before)


_PACKED = np.dtype({"names": ["calls", "v1_only", "odd", "pad", "cross"],
                    "formats": ["<u8", "<u4", "<u8", "u1", "<u2"], "offsets": [0, 8, 12, 20, 23], "itemsize": 28})


def test_misaligned_counters_take_the_old_final_value_in_their_own_bytes(kernel):
    """A packed struct: a u64 at offset 12 and a u16 across two 32-bit words cannot be added atomically.
    They take the old version's final value, written in their own bytes (a CAS rounded down to an
    aligned address used to compare and write the neighbouring field's bytes instead)."""
    old = pybpf.Map.create("hash", key_dtype=np.uint32, value_dtype=_PACKED, max_entries=4)
    new = pybpf.Map.create("hash", key_dtype=np.uint32, value_dtype=_PACKED, max_entries=4)
    merger = Merger.prepare("packed", old, new, section=False)
    try:
        start = np.zeros(1, _PACKED)
        start["calls"], start["v1_only"], start["odd"], start["cross"] = 10, 1, 0x1111111111111111, 0x0102
        keys = np.array([5], np.uint32)
        old.update_batch(keys, start)
        new.update_batch(keys, start)
        merger.record(keys, start)
        final = start.copy()                       # the old version, between the copy and the switch
        final["calls"], final["odd"], final["cross"] = 15, 0x2222222222222222, 0x0304
        old[5] = final[0]
        mine = start.copy()                        # the new version after the switch: counted once
        mine["calls"] = 11
        new[5] = mine[0]
        merger.merge(lambda k, v: (k, v))
        got = new[5]
        assert int(got["calls"]) == 11 + 5 and int(got["v1_only"]) == 1 and int(got["pad"]) == 0
        assert int(got["odd"]) == 0x2222222222222222 and int(got["cross"]) == 0x0304
        assert {leaf.path: (leaf.mode, leaf.exact) for leaf in merger.leaves} == {
            "calls": ("add", True), "v1_only": ("add", True), "odd": ("bytes", False), "pad": ("add", True),
            "cross": ("bytes", False)}
    finally:
        merger.close()
        old.close()
        new.close()


def test_an_upgrade_names_the_fields_it_cannot_merge_exactly(bundled, kernel):
    """v3's `stats` has a float and a misaligned counter: the plan, the warnings and the report all say
    the map is not exact and name the two fields; the integer counter stays exact."""
    v1, v3 = bundled("upgrade_exact_v1"), bundled("upgrade_exact_v3")
    caller = Caller()
    deployment = None
    try:
        obj = pybpf.open(v1)
        obj.rodata["want_tgid"] = caller.pid
        deployment = pybpf.deploy(obj)
        caller.go()
        planned = pybpf.upgrade.plan(deployment, v3, last_value={"stats": ["last_ns"]})
        inexact = {"map 'stats' field 'ratio'", "map 'stats' field 'odd'"}
        assert {w.split(": not exact")[0] for w in planned["warnings"]} == inexact
        assert {m["name"]: m.get("exact") for m in planned["maps"]}["stats"] is False
        deployment = pybpf.upgrade(deployment, v3, last_value={"stats": ["last_ns"]})
        report = deployment.report
        assert report is not None
        assert {w.split(": not exact")[0] for w in report.warnings} == inexact
        assert any("float" in w for w in report.warnings) and any("misaligned offset 28" in w for w in report.warnings)
        by_name = {m["name"]: m for m in report.maps}
        assert by_name["stats"]["action"] == "migrate" and by_name["stats"]["exact"] is False
        assert all(m["exact"] for m in report.maps if m["name"] != "stats")
        calls = caller.stop()
        assert int(deployment.object.maps["stats"][caller.pid]["calls"]) == calls  # the counter itself: exact
    finally:
        caller.kill()
        if deployment is not None:
            deployment.close()
