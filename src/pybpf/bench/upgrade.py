"""``pybpf bench --upgrade``: what the upgrade machinery costs, measured in one run.

* Per-event overhead of the dispatcher: the same counting program on the
  getppid tracepoint attached directly and through the dispatcher (one tail
  call through a one-slot PROG_ARRAY), rounds alternating. With
  BPF_ENABLE_STATS the kernel times every run: the dispatcher's run_time_ns
  covers the tail-called program too (a tail call is a jump, not a new run).
  Wall-clock ns per getppid() next to it, with no program attached as the floor.
* The switch itself: one BPF_LINK_UPDATE (a cgroup_skb link on a cgroup made
  for the run) and one slot update, alternating between two programs.
* Whole upgrades (tracepoint tool, dispatcher slot): time from the new version
  verified to switched, split into migration (.bss) and switch.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from statistics import median
from typing import Any

import pybpf
from pybpf.kernel import fs
from pybpf.kernel.info import enable_stats, open_prog_by_id, prog_info
from pybpf.upgrade.attach import Attachment
from pybpf.upgrade.core import deploy, upgrade

__all__ = ["render_rows", "run"]


def _stats(prog_id: int) -> tuple[int, int]:
    fd = open_prog_by_id(prog_id)
    try:
        info = prog_info(fd)
    finally:
        os.close(fd)
    return info.run_cnt, info.run_time_ns


def _loop(calls: int) -> float:
    getppid = os.getppid
    start = time.perf_counter_ns()
    for _ in range(calls):
        getppid()
    return (time.perf_counter_ns() - start) / calls


def _counting(path: str) -> pybpf.Object:
    obj = pybpf.open(path)
    obj.rodata["want_tgid"] = os.getpid()
    return obj.load()


def dispatcher_overhead(calls: int, rounds: int) -> dict[str, Any]:
    """Per-event cost, direct attach vs the dispatcher, rounds interleaved."""
    path = pybpf.bundled("upgrade_count_a")
    samples: dict[str, list[float]] = {"none_wall": [], "direct_wall": [], "dispatch_wall": [],
                                       "direct_bpf": [], "dispatch_bpf": []}
    with enable_stats(), _counting(path) as direct, _counting(path) as dispatched:
        program = direct.programs["count_getppid"]

        def run_direct() -> None:
            with program.attach():
                before = _stats(program.id)
                samples["direct_wall"].append(_loop(calls))
                after = _stats(program.id)
            samples["direct_bpf"].append((after[1] - before[1]) / max(after[0] - before[0], 1))

        def run_dispatch() -> None:
            running = deploy(dispatched)
            try:
                outer = running.attachments[0].current_link_info().prog_id  # the dispatcher's own id
                before = _stats(outer)
                samples["dispatch_wall"].append(_loop(calls))
                after = _stats(outer)
            finally:
                for attachment in running.attachments:  # detach; the object stays for the next round
                    attachment.close()
            samples["dispatch_bpf"].append((after[1] - before[1]) / max(after[0] - before[0], 1))

        def run_none() -> None:
            samples["none_wall"].append(_loop(calls))

        order: list[Callable[[], None]] = [run_none, run_direct, run_dispatch]
        for r in range(rounds + 1):
            for step in order if r % 2 else reversed(order):
                step()
        counted = int(direct.maps["counts"].view()[0]) + int(dispatched.maps["counts"].view()[0])
    for values in samples.values():
        del values[0]  # the first round warms up
    med = {k: median(v) for k, v in samples.items()}
    paired = sorted(d - b for d, b in zip(samples["dispatch_bpf"], samples["direct_bpf"]))
    return {"paired_dispatch_minus_direct_bpf_ns": {"median": median(paired), "min": paired[0],
                                                    "max": paired[-1]},
            "calls_per_round": calls, "rounds": rounds, "events_counted": counted,
            "median_ns": med, "samples_ns": samples,
            "dispatch_over_direct_bpf": med["dispatch_bpf"] / med["direct_bpf"],
            "dispatch_minus_direct_bpf_ns": med["dispatch_bpf"] - med["direct_bpf"],
            "dispatch_minus_direct_wall_ns": med["dispatch_wall"] - med["direct_wall"]}


def _time_switches(attachment: Attachment, programs: list[pybpf.Program], switches: int) -> list[float]:
    out = []
    for i in range(switches):
        target = programs[i % 2]
        start = time.perf_counter_ns()
        attachment.switch(target)
        out.append((time.perf_counter_ns() - start) / 1e3)
    return out


def switch_cost(switches: int) -> dict[str, Any]:
    """One BPF_LINK_UPDATE and one dispatcher slot update, in microseconds."""
    from pybpf.upgrade.attach import attach
    result: dict[str, Any] = {}
    with pybpf.open(pybpf.bundled("upgrade_kinds")) as kinds:
        kinds.load()
        cgroup = os.path.join(fs.cgroup2_root(), f"pybpf-bench-{uuid.uuid4().hex[:8]}")
        os.mkdir(cgroup)
        try:
            a, b = kinds.programs["kind_cgroup_a"], kinds.programs["kind_cgroup_b"]
            link = attach(a, lambda p: p.attach_cgroup(cgroup))
            try:
                result["link_update_us"] = median(_time_switches(link, [b, a], switches))
            finally:
                link.close()
        finally:
            os.rmdir(cgroup)
        a, b = kinds.programs["kind_tracepoint_a"], kinds.programs["kind_tracepoint_b"]
        slot = attach(a)
        try:
            result["slot_update_us"] = median(_time_switches(slot, [b, a], switches))
        finally:
            slot.close()
    result["switches"] = switches
    return result


def upgrade_times(upgrades: int) -> dict[str, Any]:
    """Whole upgrades back and forth between two versions of a tracepoint tool."""
    versions = [pybpf.bundled("upgrade_count_a"), pybpf.bundled("upgrade_count_b")]
    first = pybpf.open(versions[0])
    first.rodata["want_tgid"] = os.getpid()
    running = deploy(first)
    reports = []
    try:
        for i in range(upgrades):
            running = upgrade(running, versions[(i + 1) % 2])
            assert running.report is not None
            reports.append(running.report)
    finally:
        running.close()
    later = reports[1:] or reports

    def us(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {"median": median(ordered) * 1e6, "p90": ordered[int(0.9 * (len(ordered) - 1))] * 1e6,
                "max": ordered[-1] * 1e6}

    return {"upgrades": upgrades, "first_verified_to_switched_us": reports[0].verified_to_switched_s * 1e6,
            "verified_to_switched_us": us([r.verified_to_switched_s for r in later]),
            "migrate_us": us([r.migrate_s for r in later]), "switch_us": us([r.switch_s for r in later]),
            "load_ms": median(r.load_s for r in later) * 1e3}


def run(*, calls: int = 200_000, rounds: int = 7, switches: int = 2000, upgrades: int = 30) -> dict[str, Any]:
    """Every upgrade case; the dict ``pybpf bench --upgrade --json`` writes."""
    return {"dispatcher": dispatcher_overhead(calls, rounds), "switch": switch_cost(switches),
            "upgrade": upgrade_times(upgrades)}


def render_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(case, cost) rows for the table ``pybpf bench --upgrade`` prints."""
    d, s, u = result["dispatcher"], result["switch"], result["upgrade"]
    m, paired, v2s = d["median_ns"], d["paired_dispatch_minus_direct_bpf_ns"], u["verified_to_switched_us"]
    dispatch = (f"{m['dispatch_bpf']:.0f} ns (x{d['dispatch_over_direct_bpf']:.2f}; per round dispatch - direct: "
                f"median {paired['median']:+.1f} ns, range {paired['min']:+.1f}..{paired['max']:+.1f})")
    upgrade_time = (f"{v2s['median']:.0f} / {v2s['p90']:.0f} / {v2s['max']:.0f} µs "
                    f"(first in process: {u['first_verified_to_switched_us']:.0f} µs)")
    return [
        ("BPF run time per event, direct attach", f"{m['direct_bpf']:.0f} ns"),
        ("BPF run time per event, through the dispatcher", dispatch),
        ("getppid() wall time: no program / direct / dispatcher",
         f"{m['none_wall']:.0f} / {m['direct_wall']:.0f} / {m['dispatch_wall']:.0f} ns"),
        ("one BPF_LINK_UPDATE (cgroup link)", f"{s['link_update_us']:.1f} µs"),
        ("one dispatcher slot update", f"{s['slot_update_us']:.1f} µs"),
        ("upgrade, verified -> switched (median / p90 / max)", upgrade_time),
        ("  of which .bss migration / switch (median)",
         f"{u['migrate_us']['median']:.0f} / {u['switch_us']['median']:.0f} µs"),
        ("new version open+load+verify (median)", f"{u['load_ms']:.1f} ms"),
    ]


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))
