"""biolatency: block device I/O latency as log2 histograms (as libbpf-tools' biolatency).

    pybpf tool biolatency [-T] [-m] [-Q] [-D] [-F] [-d DISK] [-c CGROUP_PATH] [--json] [-V]
                          [interval] [count]

Output is the C tool's: per interval an empty line, the time with ``-T``, then for each
histogram ``disk = NAME<TAB>`` with ``-D``, ``flags = Sync-Write`` with ``-F`` (the C tool's
flag and operation tables), an empty line, and the histogram. Disk names come from
``/proc/partitions``, as there.

BPF side: ``bpf_src/biolatency.bpf.c`` on ``tp_btf/block_rq_{insert,issue,complete}``.
"""

from __future__ import annotations

import sys
import time
from typing import Optional

import numpy as np

from pybpf.toolkit import log2_buckets
from pybpf.tools._common import (CGROUP_OPTION, Stop, emit_json, fail, hist_report, intervals, loaded, out,
                                 ready_line, tool_app, version_option)
from pybpf.tools._options import Argument, Option

__all__ = ["app", "cmd_flags_text", "partitions"]

MINORBITS = 20
# libbpf-tools' blk_types.h: the bit of each flag it names, and the operations by number
_FLAGS = [(21, "NoWait-"), (20, "Background-"), (19, "ReadAhead-"), (18, "PreFlush-"), (17, "FUA-"),
          (16, "Integrity-"), (15, "Idle-"), (14, "NoMerge-"), (13, "Priority-"), (12, "Metadata-"), (11, "Sync-")]
_OPS = {0: "Read", 1: "Write", 2: "Flush", 3: "Discard", 5: "SecureErase", 6: "ZoneReset", 7: "WriteSame",
        8: "ZoneResetAll", 9: "WriteZeroes", 10: "ZoneOpen", 11: "ZoneClose", 12: "ZoneFinish", 32: "SCSIIn",
        33: "SCSIOut", 34: "DrvIn", 35: "DrvOut"}
_N_OPS = 36

app = tool_app()


def cmd_flags_text(cmd_flags: int) -> str:
    """The C tool's ``print_cmd_flags``: ``flags = `` then named flags and the operation."""
    text = "flags = " + "".join(name for bit, name in _FLAGS if cmd_flags & (1 << bit))
    op = cmd_flags & 0xFF
    return text + (_OPS.get(op, "(null)") if op < _N_OPS else "Unknown")


def partitions() -> dict[int, str]:
    """``/proc/partitions`` as {MKDEV(major, minor): name} (MINORBITS 20, as the BPF side)."""
    names: dict[int, str] = {}
    try:
        with open("/proc/partitions") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 4 and parts[0].isdigit() and parts[1].isdigit():
                    names[(int(parts[0]) << MINORBITS) | int(parts[1])] = parts[3]
    except OSError:
        pass
    return names


@app.command()
def biolatency(
    interval: Optional[float] = Argument(None, help="output interval, in seconds (none: at Ctrl-C)"),
    count: Optional[int] = Argument(None, help="number of outputs"),
    timestamp: bool = Option(False, "-T", "--timestamp", help="include timestamp on output"),
    milliseconds: bool = Option(False, "-m", "--milliseconds", help="millisecond histogram"),
    queued: bool = Option(False, "-Q", "--queued", help="include OS queued time in I/O time"),
    per_disk: bool = Option(False, "-D", "--disk", help="print a histogram per disk device"),
    per_flag: bool = Option(False, "-F", "--flag", help="print a histogram per set of I/O flags"),
    disk: Optional[str] = Option(None, "-d", "--disk-name", metavar="DISK", help="trace this disk only"),
    cgroup: Optional[str] = CGROUP_OPTION,
    as_json: bool = Option(False, "--json", help="one JSON object per histogram"),
    version: bool = version_option("biolatency"),
) -> None:
    """Summarize block device I/O latency as a histogram."""
    parts = partitions()
    rodata: dict[str, object] = {"targ_per_disk": per_disk, "targ_per_flag": per_flag, "targ_ms": milliseconds,
                                 "targ_queued": queued}
    if disk is not None:
        dev = next((d for d, name in parts.items() if name == disk), None)
        if dev is None:
            fail("invaild partition name: not exist")
        rodata.update(filter_dev=True, targ_dev=dev)
    unit = "msecs" if milliseconds else "usecs"
    disable = [] if queued else ["on_insert"]
    with Stop() as stop, loaded("biolatency", rodata, cgroup=cgroup, disable=disable) as obj:
        hists = obj.maps["hists"]
        ready_line("Tracing block device I/O... Hit Ctrl-C to end.", as_json)
        for _ in intervals(stop, interval, count):
            keys, values = hists.lookup_and_delete_batch()
            if as_json:
                for k, v in zip(keys, values):
                    slots = np.asarray(v["slots"], np.uint64)
                    doc: dict[str, object] = {"time": time.time(), "unit": unit, "total": int(slots.sum())}
                    if per_disk:
                        doc["disk"] = parts.get(int(k["dev"]), "Unknown")
                    if per_flag:
                        doc["flags"] = cmd_flags_text(int(k["cmd_flags"])).removeprefix("flags = ")
                    doc["buckets"] = log2_buckets(slots)
                    emit_json(doc)
            else:
                def head(k: np.void) -> str:   # the C tool: "\ndisk = NAME\t" and/or the flags, then a newline
                    return (("\ndisk = %s\t" % parts.get(int(k["dev"]), "Unknown") if per_disk else "")
                            + (cmd_flags_text(int(k["cmd_flags"])) if per_flag else "") + "\n")
                out(hist_report([(head(k), np.asarray(v["slots"])) for k, v in zip(keys, values)], unit, timestamp))
                sys.stdout.flush()
