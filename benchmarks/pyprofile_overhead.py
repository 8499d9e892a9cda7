"""The slowdown pyprofile and py-spy cause to the Python program they sample, at 100 and 1000 Hz, in one run.

    .venv/bin/python benchmarks/pyprofile_overhead.py [--rounds 5] [--work 3000000] [--json]

The sampled program is an unmodified script run by Debian's CPython (``usdt_python()``):
after "go" on stdin it does a fixed amount of work (a call chain main -> outer -> inner)
and prints its CPU time (user + system: the sampling interrupts and the BPF program run in
its context are in it) and its wall time (a ptrace stop by py-spy is in that one). Each
round runs it alone, under ``pybpf tool pyprofile -F 100`` and ``-F 1000``, and under
``py-spy record -r 100`` and ``-r 1000`` (py-spy's default: it stops the process for each
sample; ``--nonblocking`` rows too), in rotating order. Reported: per tool, the median over
rounds of (time sampled) / (time alone), for CPU and wall time. The machine is shared: only
ratios measured in the same run mean anything, and wall time is the noisier of the two.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORK_PY = r"""\
import os
import sys
import time


def inner(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


def outer(n):
    for _ in range(n // 1000):
        inner(1000)


def main():
    # talks through files, not stdio: py-spy's launch mode takes over the child's stdout
    with open(sys.argv[3], "w") as out:
        out.write(f"{os.getpid()}\n")
    with open(sys.argv[2]) as go:   # a FIFO: blocks until the sampler is running
        go.read(1)
    t0, c0 = time.perf_counter(), time.process_time()
    outer(int(sys.argv[1]))
    with open(sys.argv[3], "a") as out:
        out.write(f"{time.process_time() - c0} {time.perf_counter() - t0}\n")


main()
"""

SRC = Path(__file__).resolve().parent.parent / "src"


sys.path.insert(0, str(SRC))


def _python() -> str:
    from pybpf.distro import usdt_python
    return usdt_python()


def _pyspy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def _wait_line(stream, marker: str, timeout: float = 240) -> None:  # type: ignore[no-untyped-def]
    import select
    end = time.monotonic() + timeout
    buf = ""
    while time.monotonic() < end:
        ready, _, _ = select.select([stream], [], [], 0.5)
        if ready:
            line = stream.readline()
            if not line:
                raise RuntimeError(f"the sampler ended before {marker!r}: {buf[-500:]}")
            buf += line
            if marker in line:
                return
    raise RuntimeError(f"timed out waiting for {marker!r}")


def run_once(python: str, script: Path, work: int, mode: str) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of the work under ``mode``.

    py-spy starts the program itself (``py-spy record -- python ...``): by pid it cannot
    read Debian 12's python3.11 ("Failed to find python version from target process")."""
    tmp = Path(tempfile.mkdtemp(prefix="pyprofile-run-"))
    fifo, result = tmp / "go", tmp / "result"
    os.mkfifo(fifo)
    cmd = [python, str(script), str(work), str(fifo), str(result)]
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    tool_name, _, hz = mode.partition("@")
    procs: list[subprocess.Popen[str]] = []
    try:
        if tool_name.startswith("py-spy"):
            spy = _pyspy()
            assert spy is not None
            argv = [spy, "record", "-r", hz, "-f", "raw", "-o", os.devnull]
            if "nonblocking" in tool_name:
                argv.append("--nonblocking")
            procs.append(subprocess.Popen(argv + ["--"] + cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, text=True))
        else:
            procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, text=True))
        deadline = time.monotonic() + 120
        while not (result.exists() and result.read_text().endswith("\n")):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{mode}: the program did not start")
            time.sleep(0.05)
        pid = int(result.read_text().split()[0])
        if tool_name == "pyprofile":
            tool = subprocess.Popen([sys.executable, "-m", "pybpf.cli", "tool", "pyprofile", "-p", str(pid), "-F", hz,
                                     "-f"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
            procs.append(tool)
            _wait_line(tool.stderr, "Sampling the Python stacks")
        elif tool_name.startswith("py-spy"):
            time.sleep(1.0)   # py-spy samples from its start; give it the time to find the interpreter
        with open(fifo, "w") as go:
            go.write("g")
        procs[0].wait(600)
        cpu, wall = map(float, result.read_text().split()[1:3])
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(2)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return cpu, wall


def bpf_cost(python: str, script: Path, work: int, hz: int) -> dict[str, float]:
    """The BPF program's own cost per sample, from the kernel's run-time statistics
    (BPF_ENABLE_STATS: run_cnt, run_time_ns), while it samples the work at ``hz``."""
    from pybpf.kernel.info import enable_stats
    from pybpf.tools._pystacks import PySampler
    tmp = Path(tempfile.mkdtemp(prefix="pyprofile-cost-"))
    fifo, result = tmp / "go", tmp / "result"
    os.mkfifo(fifo)
    p = subprocess.Popen([python, str(script), str(work), str(fifo), str(result)], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (result.exists() and result.read_text().endswith("\n")):
            if time.monotonic() > deadline or p.poll() is not None:
                raise RuntimeError("the program did not start")
            time.sleep(0.05)
        pid = int(result.read_text().split()[0])
        with enable_stats(), PySampler([pid], frequency=hz) as sampler:
            with open(fifo, "w") as go:
                go.write("g")
            p.wait(600)
            assert sampler.obj is not None
            info = sampler.obj.programs["on_sample"].info()
            samples = sampler.counters()["samples"]
            depth = max((len(s.codes) for s in sampler.stacks()), default=0)
        cpu = float(result.read_text().split()[1])
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    per = info.run_time_ns / max(info.run_cnt, 1)
    return {"hz": hz, "runs": info.run_cnt, "samples_of_target": samples, "ns_per_run": round(per, 1),
            "stack_depth": depth, "share_of_target_cpu": round(per * samples / 1e9 / cpu, 6)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--work", type=int, default=3_000_000, help="inner-loop iterations (3e6: ~0.5 s alone)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    python = _python()
    modes = ["alone", "pyprofile@100", "pyprofile@1000"]
    if _pyspy():
        modes += ["py-spy@100", "py-spy@1000", "py-spy-nonblocking@100", "py-spy-nonblocking@1000"]
    times: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="pyprofile-bench-") as tmp:
        script = Path(tmp) / "work.py"
        script.write_text(WORK_PY)
        for r in range(args.rounds):
            order = modes[r % len(modes):] + modes[:r % len(modes)]
            for mode in order:
                times[mode].append(run_once(python, script, args.work, mode))
        costs = [bpf_cost(python, script, args.work, hz) for hz in (100, 1000)]
    rows = []
    for mode in modes[1:]:
        cpu = statistics.median(t[0] / a[0] for t, a in zip(times[mode], times["alone"]))
        wall = statistics.median(t[1] / a[1] for t, a in zip(times[mode], times["alone"]))
        tool, _, hz = mode.partition("@")
        rows.append({"tool": tool, "hz": int(hz), "cpu_ratio": round(cpu, 4), "wall_ratio": round(wall, 4)})
    alone = {"cpu_s": statistics.median(t[0] for t in times["alone"]),
             "wall_s": statistics.median(t[1] for t in times["alone"])}
    if args.json:
        print(json.dumps({"python": python, "rounds": args.rounds, "work": args.work, "alone": alone, "rows": rows,
                          "bpf_cost": costs}))
    else:
        print(f"{python}, {args.rounds} rounds, work {args.work}: alone {alone['cpu_s']:.3f} s CPU, "
              f"{alone['wall_s']:.3f} s wall (medians)")
        print(f"{'TOOL':<22} {'HZ':>5} {'CPU x':>7} {'WALL x':>7}")
        for row in rows:
            print(f"{row['tool']:<22} {row['hz']:>5} {row['cpu_ratio']:>7.3f} {row['wall_ratio']:>7.3f}")
        for c in costs:
            print(f"pyprofile's BPF program at {c['hz']} Hz: {c['ns_per_run']:.0f} ns per run (kernel run-time "
                  f"stats, {c['runs']} runs, stacks {c['stack_depth']} deep) = {100 * c['share_of_target_cpu']:.3f}% "
                  "of the sampled program's CPU time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
