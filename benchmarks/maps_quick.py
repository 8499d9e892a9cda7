"""Quick figures for map reads: ns per element, per-key vs batch vs view copy.

One 1M-entry BPF_F_MMAPABLE array map of u64 values (and a 1M-entry hash
map for comparison), read three ways in one run; best of ``--repeat`` runs.
Needs root (CAP_BPF). Run:  python benchmarks/maps_quick.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pybpf import Map
from pybpf._sys.libbpf import ffi, lib  # only for the raw-syscall floor


def best_ns(fn, repeat: int) -> int:
    best = None
    for _ in range(repeat):
        start = time.perf_counter_ns()
        fn()
        elapsed = time.perf_counter_ns() - start
        best = elapsed if best is None else min(best, elapsed)
    assert best is not None
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1 << 20)
    parser.add_argument("--per-key", type=int, default=50_000, help="lookups timed on the per-key path")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n = args.entries
    keys = np.arange(n, dtype=np.uint32)
    rows = []
    with Map.create("array", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=n,
                    flags="mmapable", name="bench_array") as array:
        array.update_batch(keys, keys.astype(np.uint64) * 3)
        view = array.view()
        sample = range(args.per_key)

        def per_key() -> None:
            for i in sample:
                array[i]

        fd, key_buf, value_buf = array.fd, ffi.new("uint32_t *"), ffi.new("uint64_t *")

        def raw_syscall() -> None:  # the floor: the same syscall with no pybpf code around it
            for i in sample:
                key_buf[0] = i
                lib.bpf_map_lookup_elem(fd, key_buf, value_buf)

        rows.append(("raw cffi bpf_map_lookup_elem (floor)", best_ns(raw_syscall, args.repeat) / args.per_key))
        rows.append(("array per-key lookup (m[i])", best_ns(per_key, args.repeat) / args.per_key))
        rows.append(("array lookup_batch (whole map)", best_ns(array.lookup_batch, args.repeat) / n))
        rows.append(("array view().copy() (whole map)", best_ns(view.copy, args.repeat) / n))
        _k, values = array.lookup_batch()
        assert np.array_equal(values, view) and int(values[n - 1]) == (n - 1) * 3
        del view
    with Map.create("hash", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=n,
                    name="bench_hash") as table:
        table.update_batch(keys, keys.astype(np.uint64))

        def hash_per_key() -> None:
            for i in sample:
                table[i]

        rows.append(("hash per-key lookup (m[k])", best_ns(hash_per_key, args.repeat) / args.per_key))
        rows.append(("hash lookup_batch (whole map)", best_ns(table.lookup_batch, args.repeat) / n))
    print(f"{n} entries, u32 keys, u64 values; best of {args.repeat}")
    for label, ns in rows:
        print(f"  {label:36s} {ns:10.1f} ns/element")


if __name__ == "__main__":
    main()
