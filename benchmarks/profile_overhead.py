"""profile's overhead on the program it profiles, at 99 Hz and 999 Hz, as ratios in one run.

    .venv/bin/python benchmarks/profile_overhead.py [--rounds 3] [--work 4000000000]

The profiled program (built here with gcc -O1 -fno-omit-frame-pointer) does a fixed amount
of work in a call chain main -> outer -> inner and prints the CPU time it took (getrusage:
user + system, which includes the sampling interrupts and the BPF program run in its
context). Each round runs it alone, under `pybpf tool profile -p PID -F 99` and under
`-F 999`, in rotating order; the ratio is (CPU time profiled) / (CPU time alone), the
median over rounds. CPU time, not wall time: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORK_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>
volatile unsigned long sink;
__attribute__((noinline)) void inner(unsigned long n) { unsigned long i; for (i = 0; i < n; i++) sink += i * i; }
__attribute__((noinline)) void outer(unsigned long n) { unsigned long k; for (k = 0; k < n / 1000; k++) inner(1000); }
int main(int argc, char **argv) {
	struct rusage ru; char go;
	printf("ready %d\n", getpid()); fflush(stdout);
	if (read(0, &go, 1) != 1) return 1;          /* start when told: the profiler is attached */
	outer(strtoul(argv[1], NULL, 10));
	getrusage(RUSAGE_SELF, &ru);
	printf("%.6f\n", ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	return 0;
}
"""


def run_once(prog: Path, work: int, freq: int | None) -> float:
    p = subprocess.Popen([str(prog), str(work)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout and p.stdin
    assert p.stdout.readline().startswith("ready")
    tool = None
    if freq:
        tool = subprocess.Popen([sys.executable, "-m", "pybpf.cli", "tool", "profile", "-p", str(p.pid), "-F",
                                 str(freq), "-f"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(4.0)   # start-up: perf events open and attached before the work starts
    p.stdin.write("g")
    p.stdin.close()
    cpu = float(p.stdout.readline())
    p.wait()
    p.stdout.close()
    if tool:
        tool.send_signal(2)
        out, err = tool.communicate(timeout=120)
        assert tool.returncode == 0, err
        assert "outer" in out or "inner" in out, out[-500:]
    return cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=int, default=4_000_000_000)
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="pybpf-overhead-"))
    try:
        (d / "work.c").write_text(WORK_C)
        subprocess.run(["gcc", "-O1", "-fno-omit-frame-pointer", "-o", str(d / "work"), str(d / "work.c")], check=True)
        times: dict[int | None, list[float]] = {None: [], 99: [], 999: []}
        order: list[int | None] = [None, 99, 999]
        for r in range(args.rounds):
            for freq in order[r % 3:] + order[:r % 3]:
                times[freq].append(run_once(d / "work", args.work, freq))
        base = statistics.median(times[None])
        print(f"profiled program alone: {base:.3f} s CPU (median of {args.rounds}: "
              f"{', '.join(f'{t:.3f}' for t in times[None])})")
        for freq in (99, 999):
            med = statistics.median(times[freq])
            print(f"under profile -F {freq:<4}: {med:.3f} s CPU, ratio {med / base:.3f} "
                  f"({', '.join(f'{t:.3f}' for t in times[freq])})")
        print(f"(machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
