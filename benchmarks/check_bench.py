#!/usr/bin/env python3
"""The pre-check and `btf min` on a corpus of real objects, next to libbpf and bpftool, in one run.

    python benchmarks/check_bench.py CORPUS_DIR [--btf TARGET] [--rounds 3] [--agree]

CORPUS_DIR holds ``*.bpf.o`` files (e.g. libbpf-bootstrap's examples and bcc's libbpf-tools,
built with clang). TARGET is a kernel BTF (default: the running kernel's). Each round times,
back to back on the same machine:

* ``libbpf``: benchmarks/c/core_relocate.c (built here with gcc -lbpf): libbpf's own open +
  CO-RE relocation of every object against TARGET (needs root: libbpf creates the maps);
* ``pybpf check``: the CLI on the whole corpus against TARGET, one process (start-up, target
  parse and validation included), and the same through the API in this process (the target
  parsed and validated in each round). The CLI
  runs twice: ``check_cli`` as a user runs it (the target's validation verdict kept from an
  earlier run, :mod:`pybpf.btf.validcache`), ``check_cli_cold`` with ``PYBPF_NO_CACHE=1`` (the
  target validated in the run, as on a first run);
* ``bpftool`` (``gen min_core_btf``) and ``pybpf btf min``: time and size of the minimal BTF,
  and ``pybpf btf min --checks`` (also what the pre-check reads).

Medians and ratios are printed, of wall time and of CPU time (user + system: the machine is
shared, and only ratios within a run mean much).
``--agree`` also loads every object through libbpf against the full and the minimal BTF and
compares what libbpf's debug log says it patched (needs root).
"""

from __future__ import annotations

import argparse
import glob
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))


_CPU: list[float] = []  # CPU time (user + system) of the last _wall's command


def _wall(cmd: list[str], **kw: object) -> tuple[float, subprocess.CompletedProcess[str]]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    _CPU[:] = [after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime]
    return wall, proc


def _types(path: str) -> int:
    from pybpf.btf.types import Btf
    from pybpf.spec.minimize import type_count
    return type_count(Btf.from_file(path))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus")
    ap.add_argument("--btf", default="/sys/kernel/btf/vmlinux")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--agree", action="store_true")
    args = ap.parse_args()
    objs = sorted(glob.glob(os.path.join(args.corpus, "*.bpf.o")))
    if not objs:
        sys.exit(f"no *.bpf.o in {args.corpus}")
    tmp = Path(tempfile.mkdtemp(prefix="pybpf-check-bench-"))
    exe = tmp / "core_relocate"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(HERE / "c" / "core_relocate.c"), "-lbpf"], check=True)
    py = [sys.executable, "-m", "pybpf.cli"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cpu: dict[str, list[float]] = {}
    rows: dict[str, list[float]] = {k: [] for k in ("libbpf", "check_cli", "check_cli_cold", "check_api", "bpftool_min", "pybpf_min",
                                                    "pybpf_min_checks")}
    sizes: dict[str, tuple[int, int]] = {}
    have_bpftool = shutil.which("bpftool") is not None
    for _ in range(args.rounds):
        wall, proc = _wall([str(exe), args.btf, *objs])
        if proc.returncode == 0:
            rows["libbpf"].append(wall)
            cpu.setdefault("libbpf", []).append(_CPU[0])
        wall, proc = _wall(py + ["check", *objs, "--btf", args.btf, "--json"], env=env)
        if proc.returncode not in (0, 1):
            sys.exit(proc.stderr)
        rows["check_cli"].append(wall)
        cpu.setdefault("check_cli", []).append(_CPU[0])
        wall, proc = _wall(py + ["check", *objs, "--btf", args.btf, "--json"], env={**env, "PYBPF_NO_CACHE": "1"})
        if proc.returncode not in (0, 1):
            sys.exit(proc.stderr)
        rows["check_cli_cold"].append(wall)
        cpu.setdefault("check_cli_cold", []).append(_CPU[0])
        from pybpf.spec import core
        from pybpf.spec.check import matrix
        core._VALID.clear()  # each round validates the target again (no verdict from a round before)
        os.environ["PYBPF_NO_CACHE"] = "1"
        t, c = time.perf_counter(), time.process_time()
        matrix(objs, [core.load_target(args.btf)])
        rows["check_api"].append(time.perf_counter() - t)
        cpu.setdefault("check_api", []).append(time.process_time() - c)
        del os.environ["PYBPF_NO_CACHE"]
        if have_bpftool:
            out = tmp / "bpftool.btf"
            wall, proc = _wall(["bpftool", "gen", "min_core_btf", args.btf, str(out), *objs])
            if proc.returncode == 0:
                rows["bpftool_min"].append(wall)
                cpu.setdefault("bpftool_min", []).append(_CPU[0])
                sizes["bpftool"] = (out.stat().st_size, _types(str(out)))
        for key, extra in (("pybpf_min", []), ("pybpf_min_checks", ["--checks"])):
            out = tmp / f"{key}.btf"
            wall, proc = _wall(py + ["btf", "min", *objs, "--btf", args.btf, "-o", str(out), *extra], env=env)
            if proc.returncode != 0:
                sys.exit(proc.stderr)
            rows[key].append(wall)
            cpu.setdefault(key, []).append(_CPU[0])
            sizes[key] = (out.stat().st_size, _types(str(out)))
    med = {k: statistics.median(v) for k, v in rows.items() if v}
    print(f"corpus: {len(objs)} objects in {args.corpus}; target {args.btf} ({_types(args.btf)} types); "
          f"{args.rounds} rounds, medians")
    for k, v in med.items():
        print(f"  {k:18s} {v:7.2f} s   ({', '.join(f'{x:.2f}' for x in rows[k])})")
    cmed = {k: statistics.median(v) for k, v in cpu.items() if v}
    print("  CPU time (user + system; steadier than wall time on a shared machine), medians:")
    for k, v in cmed.items():
        print(f"  {k:18s} {v:7.2f} s   ({', '.join(f'{x:.2f}' for x in cpu[k])})")
    if "libbpf" in cmed and "bpftool_min" in cmed:
        print(f"  CPU: check (CLI) / libbpf: {cmed['check_cli'] / cmed['libbpf']:.2f}x;"
              f"  cold: {cmed['check_cli_cold'] / cmed['libbpf']:.2f}x;  API: {cmed['check_api'] / cmed['libbpf']:.2f}x;"
              f"  btf min / bpftool: {cmed['pybpf_min'] / cmed['bpftool_min']:.2f}x")
    if "libbpf" in med:
        print(f"  check (CLI) / libbpf open+relocate: {med['check_cli'] / med['libbpf']:.2f}x;"
              f"  cold (no kept verdict): {med['check_cli_cold'] / med['libbpf']:.2f}x;"
              f"  check (API) / libbpf: {med['check_api'] / med['libbpf']:.2f}x")
    if "bpftool_min" in med:
        print(f"  btf min / bpftool gen min_core_btf: {med['pybpf_min'] / med['bpftool_min']:.2f}x time")
    for k, (size, types) in sizes.items():
        ref = sizes.get("bpftool")
        rel = f" ({size / ref[0] - 1:+.1%} vs bpftool)" if ref else ""
        print(f"  {k:18s} {size:7d} bytes {types:5d} types{rel}")
    if args.agree:
        _agree(objs, args.btf, str(tmp / "pybpf_min.btf"))
    shutil.rmtree(tmp, ignore_errors=True)


def _agree(objs: list[str], full: str, small: str) -> None:
    """libbpf on the minimal BTF patches what it patches on the full one, object by object."""
    import pybpf
    from pybpf.errors import BpfError
    from pybpf.spec.core import libbpf_relocations, load_target, relocate
    from pybpf.spec.elf import inspect

    def log(obj: str, btf: str) -> str:
        o = pybpf.open(obj, btf_custom_path=btf)
        try:
            o.load()
        except BpfError:
            pass
        finally:
            text = o.load_log
            o.close()
        return text

    from pybpf.btf.types import Btf
    from pybpf.spec.minimize import minimize
    old_id = minimize(objs, Btf.from_file(full)).old_id
    same = relocs = predicted = 0
    for obj in objs:
        want = libbpf_relocations(log(obj, full))
        got = libbpf_relocations(log(obj, small))
        kinds = {(r.program, r.index): r.kind for r in relocate(inspect(obj), load_target(small))}
        got = {k: (v[0], v[1], old_id.get(v[2], v[2]) if kinds.get(k) == "target_type_id" and v[2] else v[2])
               for k, v in got.items()}
        relocs += len(want)
        same += sum(got.get(k) == v for k, v in want.items())
        engine = {(r.program, r.index): r for r in relocate(inspect(obj), load_target(full))}
        predicted += sum(1 for k, v in want.items() if k in engine and
                         (("failed", -1, None) if engine[k].fatal else ("poisoned", engine[k].insn, None)
                          if engine[k].poisoned else ("patched", engine[k].insn, engine[k].value)) == v)
    print(f"  libbpf on min == libbpf on full: {same} of {relocs} relocations; "
          f"pybpf's engine == libbpf on full: {predicted} of {relocs}")


if __name__ == "__main__":
    main()
