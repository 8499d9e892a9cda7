"""Ring buffer draining: pybpf's numpy drain vs its callback mode vs libbpf's C consumer.

One run, one ring, one fill procedure: `fill` (a SEC("syscall") program run
with BPF_PROG_TEST_RUN) writes N fixed-size records with bpf_loop, then one
consumer drains them and only the draining is timed. The C consumer
(benchmarks/c/ringbuf_consumer.c, built here with gcc -O2 -lbpf) calls
ring_buffer__consume() with a callback that counts, timing itself with
CLOCK_MONOTONIC; it gets the map fd by inheritance.

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

    def consume(self) -> tuple[int, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("consume\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the C consumer died")
        count, ns = map(int, line.split())
        return count, ns

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
        print(f"{'record':>7} {'records':>9} {'numpy drain':>16} {'callback mode':>16} {'C consumer':>16} "
              f"{'numpy / C':>10}")
        try:
            for size in args.sizes:
                stride = 8 + size
                count = ring_bytes // stride - 1
                dtype = "rec32" if size == 32 else "rec64"

                def fill() -> None:
                    before = int(obj.bss["written"])
                    fill_prog.test_run(ctx_in=struct.pack("II", count, size), ctx_out_size=0)
                    written = int(obj.bss["written"]) - before
                    if written != count:
                        raise RuntimeError(f"filled {written} of {count} records (ring full: {int(obj.bss['full'])})")

                rates: dict[str, list[float]] = {"numpy": [], "callback": [], "c": []}
                with pybpf.RingBuffer(obj.maps["bench"], dtype=dtype) as rb:
                    for trial in range(args.trials):
                        fill()
                        start = time.perf_counter_ns()
                        batch = rb.drain()
                        elapsed = time.perf_counter_ns() - start
                        assert len(batch) == count and int(batch["seq"][-1]) - int(batch["seq"][0]) == count - 1
                        del batch
                        rates["numpy"].append(count / elapsed * 1e9)

                        fill()
                        got, ns = c_consumer.consume()
                        assert got == count, (got, count)
                        rates["c"].append(count / ns * 1e9)

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
                print(f"{size:>5} B {count:>9} {med['numpy'] / 1e6:>11.1f} M/s {med['callback'] / 1e6:>11.2f} M/s "
                      f"{med['c'] / 1e6:>11.1f} M/s {med['numpy'] / med['c']:>9.2f}x")
        finally:
            c_consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
