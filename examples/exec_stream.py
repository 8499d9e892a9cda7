"""Stream every exec(2) on this machine, printed with rich as it happens.

The bundled program events_exec.bpf.o writes one record per exec into a BPF
ring buffer; this tool drains it in batches into numpy (one crossing into
Python per batch, not per event) and prints each batch as table rows.

    sudo python examples/exec_stream.py [--duration 10] [--max-events 0]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.console import Console
from rich.table import Table

import pybpf


COLUMNS = (("time", "dim"), ("pid", "cyan"), ("ppid", "cyan"), ("uid", ""), ("comm", "green"), ("file", "bold"))


def rows(batch: Any, boot_offset: float) -> list[tuple[str, ...]]:
    """Table rows of a batch of exec_event records.

    The ring buffer does not zero what bpf_ringbuf_reserve hands out, so after
    the ring wraps a char field holds the string, a NUL, then bytes of an older
    record: pybpf.cstrings() cuts every char field at its first NUL, for the
    whole batch at once.
    """
    clean = pybpf.cstrings(batch)
    return [(time.strftime("%H:%M:%S", time.localtime(boot_offset + e["ts_ns"] / 1e9)), str(e["pid"]),
             str(e["ppid"]), str(e["uid"]), e["comm"].decode(errors="replace"),
             e["filename"].decode(errors="replace")) for e in clean]


def stream(duration: float, max_events: int, console: Console) -> int:
    seen = 0
    with pybpf.open(pybpf.bundled("events_exec")) as obj:
        obj.load()
        obj.programs["on_exec"].attach()
        with pybpf.RingBuffer(obj.maps["execs"], dtype="exec_event") as rb:
            deadline = time.monotonic() + duration
            boot_offset = time.time() - time.clock_gettime(time.CLOCK_MONOTONIC)
            while (left := deadline - time.monotonic()) > 0 and (not max_events or seen < max_events):
                batch = rb.read(min(left, 0.5))
                if not len(batch):
                    continue
                table = Table(show_header=seen == 0, box=None, pad_edge=False)
                for column, style in COLUMNS:
                    table.add_column(column, style=style, no_wrap=True)
                for row in rows(batch, boot_offset):
                    table.add_row(*row)
                console.print(table)
                seen += len(batch)
            dropped = int(obj.bss["dropped"])
    console.print(f"[dim]{seen} execs shown, {dropped} dropped by the kernel (ring full)[/dim]")
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to stream")
    parser.add_argument("--max-events", type=int, default=0, help="stop after this many (0: no limit)")
    args = parser.parse_args()
    stream(args.duration, args.max_events, Console())


if __name__ == "__main__":
    main()
