"""pyaudit's overhead on the traced program: the same script timed untraced and traced, same run.

    sudo python benchmarks/pyaudit_overhead.py [--rounds 5]

Runs Debian's /usr/bin/python3 under its real name (python3.11 on 12, python3.13 on 13) on three workloads (100k ``sys.audit`` calls;
20k ``open``/``close`` of /dev/null, one audit event each; a pure-Python loop that
raises none), each untraced, traced by ``pybpf tool pyaudit --pid PID --counts``
(counting in the kernel) and by ``pybpf tool pyaudit --pid PID --json`` (every event
through the ring buffer to user space, output to /dev/null). Modes rotate within each
round; the table gives the median of the script's own timing of the workload and the
ratio to untraced.
"""

from __future__ import annotations

import argparse
import os
import select
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
from pybpf.distro import usdt_python  # noqa: E402

PYTHON = usdt_python()

WORKLOADS = {
    "sys.audit x100k": "for i in range(100000):\n    sys.audit('app.event', i)",
    "open/close x20k": "for i in range(20000):\n    open('/dev/null').close()",
    "pure loop (no events)": "t = 0\nfor i in range(3000000):\n    t += i * i",
}

SCRIPT = """
import sys, time
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
start = time.perf_counter()
{body}
sys.stdout.write(f"{{time.perf_counter() - start:.6f}}\\n"); sys.stdout.flush()
"""


def _line(stream, timeout: float = 60.0) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise TimeoutError("no answer")
    return stream.readline()


def run_once(body: str, mode: str) -> float:
    target = subprocess.Popen([PYTHON, "-c", SCRIPT.format(body=body)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    tool = None
    try:
        assert _line(target.stdout) == "ready\n"
        if mode != "untraced":
            env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
            args = ["--counts"] if mode == "counts" else ["--json"]
            tool = subprocess.Popen([sys.executable, "-m", "pybpf.cli", "tool", "pyaudit", "--pid", str(target.pid),
                                     *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
            assert _line(tool.stderr).startswith("Tracing")
        target.stdin.write("go\n")
        target.stdin.flush()
        seconds = float(_line(target.stdout, 600))
        target.stdin.close()
        target.wait()
        if tool is not None:
            tool.wait(60)
        return seconds
    finally:
        for proc in (target, tool):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    modes = ["untraced", "counts", "events"]
    print(f"{'workload':<24} {'mode':<10} {'median s':>10} {'ratio':>7}")
    for name, body in WORKLOADS.items():
        times: dict[str, list[float]] = {m: [] for m in modes}
        for r in range(args.rounds):
            for mode in modes[r % 3:] + modes[:r % 3]:  # rotate the order each round
                times[mode].append(run_once(body, mode))
        base = statistics.median(times["untraced"])
        for mode in modes:
            med = statistics.median(times[mode])
            print(f"{name:<24} {mode:<10} {med:>10.4f} {med / base:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
