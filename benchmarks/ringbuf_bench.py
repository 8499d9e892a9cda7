"""Ring buffer reading: pybpf's zero-copy borrow, numpy drain and callback mode vs libbpf's C consumer.

One run, one ring, one fill procedure: `fill` (a SEC("syscall") program run
with BPF_PROG_TEST_RUN) writes N fixed-size records with bpf_loop, then one
consumer reads them and only the reading is timed. The C consumer
(benchmarks/c/ringbuf_consumer.c, built here with gcc -O2 -lbpf) calls
ring_buffer__consume() with a callback that counts (or counts and adds up
each record's `seq`), timing itself with CLOCK_MONOTONIC; it gets the map fd
by inheritance. The Python side does the same work: `borrow` takes len() of
the zero-copy batch, `borrow+sum` also adds up batch["seq"]; `drain` copies.
Each trial rotates through the consumers, so they all see the same noise.

    python benchmarks/ringbuf_bench.py [--ring-mb 16] [--trials 9] [--sizes 32 64]
"""

from __future__ import annotations

import argparse
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pybpf

HERE = Path(__file__).resolve().parent


def build_consumer(out_dir: Path) -> Path:
    exe = out_dir / "ringbuf_consumer"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(HERE / "c" / "ringbuf_consumer.c"), "-lbpf"], check=True)
    return exe


class CConsumer:
    """The C baseline, driven over a pipe: one `consume` per trial."""

    def __init__(self, exe: Path, map_fd: int) -> None:
        self.proc = subprocess.Popen([str(exe), str(map_fd)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, pass_fds=[map_fd])

    def consume(self, total: bool = False) -> tuple[int, int, int]:
        """(records, nanoseconds, sum of seq or 0)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("consume sum\n" if total else "consume\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the C consumer died")
        count, ns, seq_sum = map(int, line.split())
        return count, ns, seq_sum

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ring-mb", type=int, default=16, help="ring size in MiB (power of two)")
    parser.add_argument("--trials", type=int, default=9)
    parser.add_argument("--callback-trials", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64], choices=[32, 64])
    args = parser.parse_args()

    ring_bytes = args.ring_mb << 20
    with tempfile.TemporaryDirectory() as tmp, pybpf.open(pybpf.bundled("ringbuf_bench")) as obj:
        exe = build_consumer(Path(tmp))
        obj.maps["bench"].max_entries = ring_bytes
        obj.load()
        fill_prog = obj.programs["fill"]
        c_consumer = CConsumer(exe, obj.maps["bench"].fd)
        print(f"pybpf {pybpf.__version__}, libbpf {pybpf.LIBBPF_VERSION}, ring {args.ring_mb} MiB, "
              f"median of {args.trials} trials (callback mode: {args.callback_trials})")
        columns = ("borrow", "borrow+sum", "drain", "callback", "C count", "C sum")
        print(f"{'record':>7} {'records':>9} " + " ".join(f"{c:>12}" for c in columns)
              + f" {'borrow/C':>9} {'b+sum/Csum':>11} {'drain/C':>8}")
        try:
            for size in args.sizes:
                stride = 8 + size
                count = ring_bytes // stride - 1
                dtype = "rec32" if size == 32 else "rec64"

                def fill() -> int:
                    """Fill the ring; returns the sum of the new records' seq."""
                    before = int(obj.bss["written"])
                    first = int(obj.bss["next_seq"])
                    fill_prog.test_run(ctx_in=struct.pack("II", count, size), ctx_out_size=0)
                    written = int(obj.bss["written"]) - before
                    if written != count:
                        raise RuntimeError(f"filled {written} of {count} records (ring full: {int(obj.bss['full'])})")
                    return count * first + count * (count - 1) // 2

                rates: dict[str, list[float]] = {c: [] for c in columns}
                with pybpf.RingBuffer(obj.maps["bench"], dtype=dtype) as rb:

                    def borrow(with_sum: bool) -> None:
                        expected = fill()
                        start = time.perf_counter_ns()
                        with rb.borrow() as batch:
                            got = len(batch)
                            seq_sum = int(batch["seq"].sum()) if with_sum else expected
                            del batch  # no view left: the block gives the space back at once
                        elapsed = time.perf_counter_ns() - start
                        assert got == count and seq_sum == expected and rb.pinned_bytes == 0
                        rates["borrow+sum" if with_sum else "borrow"].append(count / elapsed * 1e9)

                    def drain() -> None:
                        fill()
                        start = time.perf_counter_ns()
                        batch = rb.drain()
                        elapsed = time.perf_counter_ns() - start
                        assert len(batch) == count and int(batch["seq"][-1]) - int(batch["seq"][0]) == count - 1
                        rates["drain"].append(count / elapsed * 1e9)

                    def c_side(with_sum: bool) -> None:
                        expected = fill()
                        got, ns, seq_sum = c_consumer.consume(with_sum)
                        assert got == count and (seq_sum == expected or not with_sum), (got, count)
                        rates["C sum" if with_sum else "C count"].append(count / ns * 1e9)

                    runs = [lambda: borrow(False), lambda: borrow(True), drain,
                            lambda: c_side(False), lambda: c_side(True)]
                    for trial in range(args.trials):
                        for run in runs[trial % len(runs):] + runs[:trial % len(runs)]:
                            run()

                    seen = 0

                    def on_record(record: object) -> None:
                        nonlocal seen
                        seen += 1

                    rb.on_event(on_record)
                    for trial in range(args.callback_trials):
                        fill()
                        seen = 0
                        start = time.perf_counter_ns()
                        got = rb.consume()
                        elapsed = time.perf_counter_ns() - start
                        assert got == seen == count
                        rates["callback"].append(count / elapsed * 1e9)
                med = {k: statistics.median(v) for k, v in rates.items()}
                print(f"{size:>5} B {count:>9} " + " ".join(f"{med[c] / 1e6:>8.1f} M/s" for c in columns)
                      + f" {med['borrow'] / med['C count']:>8.2f}x {med['borrow+sum'] / med['C sum']:>10.2f}x"
                      f" {med['drain'] / med['C count']:>7.2f}x")
        finally:
            c_consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
