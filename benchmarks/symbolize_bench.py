"""Addresses resolved per second: pybpf.symbolize next to binutils' addr2line, in one run.

    .venv/bin/python benchmarks/symbolize_bench.py [--n 200000] [--lib PATH]

User space: N random addresses inside the function symbols of a large shared library (the
LLVM library the `llvm` package installs: ~100 MB, tens of thousands of symbols), resolved
by ElfSymbols (cold: file opened and parsed, then the lookup; warm: lookup only) and by
`addr2line -f -e LIB` (addresses on stdin, function names out; it reads the same symbol
tables, no DWARF in the file). Kernel: N addresses from /proc/kallsyms, resolved by
KernelSymbols (kallsyms read + parse, then lookup). Prints addresses/s and the ratios.
"""

from __future__ import annotations

import argparse
import glob
import subprocess
import time

import numpy as np

from pybpf.symbolize import ElfSymbols, KernelSymbols


def _lib() -> str:
    found = sorted(glob.glob("/usr/lib/x86_64-linux-gnu/libLLVM*.so.*") + glob.glob("/usr/lib/llvm-*/lib/libLLVM*.so*"))
    if not found:
        raise SystemExit("no libLLVM found (apt-get install llvm)")
    return max(found, key=lambda p: len(p))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--addr2line-n", type=int, default=20_000)
    ap.add_argument("--lib", default=None)
    args = ap.parse_args()
    lib = args.lib or _lib()
    rng = np.random.default_rng(1)

    t0 = time.perf_counter()
    elf = ElfSymbols(lib)
    t_load = time.perf_counter() - t0
    sized = np.flatnonzero(elf.sizes > 0)
    pick = rng.choice(sized, args.n)
    addrs = elf.values[pick] + (rng.random(args.n) * elf.sizes[pick]).astype(np.uint64)
    t0 = time.perf_counter()
    idx = elf.index(addrs)
    names = [elf.symbol_name(i) for i in np.unique(idx).tolist()]
    t_warm = time.perf_counter() - t0
    assert np.all(idx >= 0) and names
    cold_rate = args.n / (t_load + t_warm)
    warm_rate = args.n / t_warm

    sub = addrs[:args.addr2line_n]
    text = "".join(f"0x{a:x}\n" for a in sub.tolist())
    t0 = time.perf_counter()
    out = subprocess.run(["addr2line", "-f", "-e", lib], input=text, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    t_a2l = time.perf_counter() - t0
    a2l_rate = len(sub) / t_a2l
    ours = [elf.symbol_name(i) for i in elf.index(sub).tolist()]
    agree = np.mean([a == b for a, b in zip(out[0::2], ours)])

    t0 = time.perf_counter()
    ks = KernelSymbols()
    t_kload = time.perf_counter() - t0
    kaddrs = rng.choice(ks.addresses, args.n) + rng.integers(0, 16, args.n).astype(np.uint64)
    t0 = time.perf_counter()
    kidx = ks.index(kaddrs)
    knames = [ks.name(i) for i in np.unique(kidx).tolist()]
    t_kwarm = time.perf_counter() - t0
    assert knames

    print(f"library: {lib} ({len(elf.values):,} function symbols; load+parse {t_load * 1e3:.1f} ms)")
    print(f"user, pybpf warm:   {warm_rate:>14,.0f} addresses/s  ({args.n:,} addresses, {len(names):,} distinct symbols)")
    print(f"user, pybpf cold:   {cold_rate:>14,.0f} addresses/s  (file opened and parsed in the timing)")
    print(f"user, addr2line -f: {a2l_rate:>14,.0f} addresses/s  ({len(sub):,} addresses; names agree {agree:.1%})")
    print(f"  ratio pybpf warm / addr2line: {warm_rate / a2l_rate:,.0f}x; cold / addr2line: {cold_rate / a2l_rate:,.0f}x")
    print(f"kernel: kallsyms read+parse {t_kload * 1e3:.0f} ms ({len(ks):,} symbols); "
          f"lookup {args.n / t_kwarm:,.0f} addresses/s warm, {args.n / (t_kload + t_kwarm):,.0f} cold")


if __name__ == "__main__":
    main()
