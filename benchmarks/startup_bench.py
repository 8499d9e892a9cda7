"""``pybpf btf dump`` next to bpftool, and pybpf's start-up, timed in one run.

    python benchmarks/startup_bench.py [--runs 5] [--json out.json]

Every command runs as its own process, interleaved with the others, ``--runs`` times; the
table gives the median and the minimum of wall time and of CPU time (user + system, from
``wait4``: on a shared, loaded machine the CPU time is the steadier figure) and the peak RSS.
The C dump's own work is its time minus ``pybpf --help`` (the CLI's start); its ratio to
bpftool is the figure issue 9 asks to keep within 2x. The interpreter's own start
(``python -c pass``) is there as the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

KERNEL_BTF = "/sys/kernel/btf/vmlinux"


def commands() -> dict[str, list[str]]:
    py = sys.executable
    cli = [py, "-m", "pybpf.cli"]
    out = {
        "python -c pass": [py, "-c", "pass"],
        "import pybpf": [py, "-c", "import pybpf"],
        "pybpf --help": [*cli, "--help"],
        "pybpf btf dump --kernel": [*cli, "btf", "dump", "--kernel"],
        "pybpf btf dump --kernel --format json": [*cli, "btf", "dump", "--kernel", "--format", "json"],
    }
    bpftool = shutil.which("bpftool")
    if bpftool:
        out["bpftool btf dump file vmlinux format c"] = [bpftool, "btf", "dump", "file", KERNEL_BTF,
                                                        "format", "c"]
    return out


def run_once(argv: list[str]) -> tuple[float, float, int]:
    """(wall s, cpu s, peak RSS KiB) of one run, output discarded."""
    with open(os.devnull, "wb") as null:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=null, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        err = proc.stderr.read() if proc.stderr else b""
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {err.decode(errors='replace')}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    cmds = commands()
    samples: dict[str, list[tuple[float, float, int]]] = {name: [] for name in cmds}
    for _ in range(args.runs):
        for name, argv in cmds.items():
            samples[name].append(run_once(argv))
    rows = {}
    for name, runs in samples.items():
        walls, cpus, rss = zip(*runs)
        rows[name] = {"wall_median": statistics.median(walls), "wall_min": min(walls),
                      "cpu_median": statistics.median(cpus), "cpu_min": min(cpus), "max_rss_mib": max(rss) / 1024}
    print(f"{'command':<42} {'wall med':>9} {'wall min':>9} {'cpu med':>8} {'cpu min':>8} {'RSS MiB':>8}")
    for name, r in rows.items():
        print(f"{name:<42} {r['wall_median']:9.3f} {r['wall_min']:9.3f} {r['cpu_median']:8.3f} "
              f"{r['cpu_min']:8.3f} {r['max_rss_mib']:8.1f}")
    ratios = {}
    bpftool = rows.get("bpftool btf dump file vmlinux format c")
    if bpftool:
        dump, start = rows["pybpf btf dump --kernel"], rows["pybpf --help"]
        for kind in ("wall_min", "cpu_min", "cpu_median"):
            own = dump[kind] - start[kind]
            ratios[f"c_dump_own_work_over_bpftool_{kind}"] = own / bpftool[kind]
    print()
    for name, value in ratios.items():
        print(f"{name:<48} {value:6.2f}  (target <= 2)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": args.runs, "rows": rows, "ratios": ratios}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
