"""Time and peak memory of ``btf extract`` on kernel images (or bombs), one fresh process each.

    python benchmarks/extract_cost.py IMAGE... [--src DIR]

Runs ``pybpf.btf.extract.extract_btf(IMAGE)`` in a child interpreter per file and prints its wall
time, its peak RSS (VmHWM: the child's own, not inherited) and the outcome. ``--src`` points the
child at another pybpf source tree (an older checkout, for a before/after comparison in one run).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from pybpf.btf.extract import extract_btf
from pybpf.errors import BpfError
started = time.perf_counter()
try:
    outcome = f"{len(extract_btf(sys.argv[2]))} bytes of BTF"
except BpfError as exc:
    outcome = "refused: " + str(exc)[-90:]
except BaseException as exc:
    outcome = "foreign error: " + type(exc).__name__
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) // 1024
print(f"{time.perf_counter() - started:7.2f} s  {peak:6d} MiB  {outcome}")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+")
    ap.add_argument("--src", default=str(Path(__file__).resolve().parent.parent / "src"))
    args = ap.parse_args()
    for image in args.images:
        result = subprocess.run([sys.executable, "-c", CHILD, args.src, image], capture_output=True, text=True)
        print(f"{image}: {result.stdout.strip() or result.stderr.strip()[-200:]}")


if __name__ == "__main__":
    main()
