"""perf events as data: the event kinds and ``struct perf_event_attr`` (pure, no syscalls).

Owns the table of events pybpf can open by name (perf's own names: ``cpu-clock``,
``cycles``...), the sampling settings (a frequency in Hz or a period in events), and
their encoding into the kernel's ``struct perf_event_attr`` (``linux/perf_event.h``,
``PERF_ATTR_SIZE_VER5``: every field pybpf sets is in the first 112 bytes, which every
kernel since 4.1 accepts).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from pybpf.errors import InvalidArgumentError

__all__ = ["ATTR_SIZE", "EventAttr", "Hardware", "PerfType", "Software", "event_by_name"]

ATTR_SIZE = 112  # PERF_ATTR_SIZE_VER5


class PerfType(enum.IntEnum):
    """``perf_event_attr.type``: the PMU an event belongs to."""

    HARDWARE = 0
    SOFTWARE = 1
    TRACEPOINT = 2
    HW_CACHE = 3
    RAW = 4
    BREAKPOINT = 5


class Hardware(enum.IntEnum):
    """``PERF_COUNT_HW_*``: counters of the CPU's PMU (absent in a VM without a virtual PMU)."""

    CPU_CYCLES = 0
    INSTRUCTIONS = 1
    CACHE_REFERENCES = 2
    CACHE_MISSES = 3
    BRANCH_INSTRUCTIONS = 4
    BRANCH_MISSES = 5
    BUS_CYCLES = 6
    STALLED_CYCLES_FRONTEND = 7
    STALLED_CYCLES_BACKEND = 8
    REF_CPU_CYCLES = 9

    @property
    def type(self) -> PerfType:
        """The PMU: hardware."""
        return PerfType.HARDWARE

    @property
    def perf_name(self) -> str:
        """The name ``perf list`` gives it."""
        return _HW_NAMES[self]


class Software(enum.IntEnum):
    """``PERF_COUNT_SW_*``: events the kernel counts itself (always there)."""

    CPU_CLOCK = 0
    TASK_CLOCK = 1
    PAGE_FAULTS = 2
    CONTEXT_SWITCHES = 3
    CPU_MIGRATIONS = 4
    PAGE_FAULTS_MIN = 5
    PAGE_FAULTS_MAJ = 6
    ALIGNMENT_FAULTS = 7
    EMULATION_FAULTS = 8
    DUMMY = 9
    BPF_OUTPUT = 10
    CGROUP_SWITCHES = 11

    @property
    def type(self) -> PerfType:
        """The PMU: software."""
        return PerfType.SOFTWARE

    @property
    def perf_name(self) -> str:
        """The name ``perf list`` gives it."""
        return _SW_NAMES[self]


_HW_NAMES = {
    Hardware.CPU_CYCLES: "cycles", Hardware.INSTRUCTIONS: "instructions",
    Hardware.CACHE_REFERENCES: "cache-references", Hardware.CACHE_MISSES: "cache-misses",
    Hardware.BRANCH_INSTRUCTIONS: "branch-instructions", Hardware.BRANCH_MISSES: "branch-misses",
    Hardware.BUS_CYCLES: "bus-cycles", Hardware.STALLED_CYCLES_FRONTEND: "stalled-cycles-frontend",
    Hardware.STALLED_CYCLES_BACKEND: "stalled-cycles-backend", Hardware.REF_CPU_CYCLES: "ref-cycles",
}
_SW_NAMES = {
    Software.CPU_CLOCK: "cpu-clock", Software.TASK_CLOCK: "task-clock",
    Software.PAGE_FAULTS: "page-faults", Software.CONTEXT_SWITCHES: "context-switches",
    Software.CPU_MIGRATIONS: "cpu-migrations", Software.PAGE_FAULTS_MIN: "minor-faults",
    Software.PAGE_FAULTS_MAJ: "major-faults", Software.ALIGNMENT_FAULTS: "alignment-faults",
    Software.EMULATION_FAULTS: "emulation-faults", Software.DUMMY: "dummy",
    Software.BPF_OUTPUT: "bpf-output", Software.CGROUP_SWITCHES: "cgroup-switches",
}
# perf's aliases
_ALIASES: dict[str, Hardware | Software] = {"cpu-cycles": Hardware.CPU_CYCLES, "branches": Hardware.BRANCH_INSTRUCTIONS,
            "faults": Software.PAGE_FAULTS, "cs": Software.CONTEXT_SWITCHES,
            "migrations": Software.CPU_MIGRATIONS}
_BY_NAME: dict[str, Hardware | Software] = {
    **{v: k for k, v in _HW_NAMES.items()}, **{v: k for k, v in _SW_NAMES.items()}, **_ALIASES}


def event_by_name(name: str) -> Hardware | Software:
    """``"cpu-clock"`` -> ``Software.CPU_CLOCK`` (perf's names and aliases, or the enum member's)."""
    key = name.strip().lower()
    if key in _BY_NAME:
        return _BY_NAME[key]
    upper = key.upper().replace("-", "_")
    for kind in (Software, Hardware):
        if upper in kind.__members__:
            return kind[upper]
    raise InvalidArgumentError(f"no perf event named {name!r}; known: {', '.join(sorted(_BY_NAME))}")


# perf_event_attr flag bits (the bitfield after read_format)
_FLAG_DISABLED = 1 << 0
_FLAG_INHERIT = 1 << 1
_FLAG_EXCLUDE_USER = 1 << 4
_FLAG_EXCLUDE_KERNEL = 1 << 5
_FLAG_EXCLUDE_HV = 1 << 6
_FLAG_EXCLUDE_IDLE = 1 << 7
_FLAG_FREQ = 1 << 10
_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class EventAttr:
    """One event's settings: what to count and how often to sample (frequency XOR period).

    A frequency asks the kernel to adjust the period so that about ``frequency`` samples a
    second arrive (perf's ``-F``); a period samples every ``period`` events (nanoseconds for
    the clock events). With neither, the event counts without sampling.
    """

    event: Hardware | Software
    frequency: int | None = None
    period: int | None = None
    inherit: bool = False
    disabled: bool = False
    exclude_user: bool = False
    exclude_kernel: bool = False
    exclude_hv: bool = False
    exclude_idle: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.event, (Hardware, Software)):
            raise InvalidArgumentError(f"perf event must be a pybpf.perf.Hardware or Software member, "
                                       f"not {self.event!r}")
        if self.frequency is not None and self.period is not None:
            raise InvalidArgumentError("give a sampling frequency or a period, not both")
        for what, value in (("frequency", self.frequency), ("period", self.period)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 < value <= _U64):
                raise InvalidArgumentError(f"perf event {what} must be a positive integer, not {value!r}")
        if self.exclude_user and self.exclude_kernel:
            raise InvalidArgumentError("excluding both user and kernel leaves nothing to sample")

    @property
    def sampling(self) -> bool:
        """True when the event samples (and so runs an attached BPF program)."""
        return self.frequency is not None or self.period is not None

    def pack(self) -> bytes:
        """The ``struct perf_event_attr`` bytes for ``perf_event_open(2)``."""
        flags = 0
        for on, bit in ((self.disabled, _FLAG_DISABLED), (self.inherit, _FLAG_INHERIT),
                        (self.exclude_user, _FLAG_EXCLUDE_USER), (self.exclude_kernel, _FLAG_EXCLUDE_KERNEL),
                        (self.exclude_hv, _FLAG_EXCLUDE_HV), (self.exclude_idle, _FLAG_EXCLUDE_IDLE)):
            if on:
                flags |= bit
        sample = 0
        if self.frequency is not None:
            flags |= _FLAG_FREQ
            sample = self.frequency
        elif self.period is not None:
            sample = self.period
        # type, size, config, sample_period|freq, sample_type, read_format, flags
        head = struct.pack("<IIQQQQQ", int(self.event.type), ATTR_SIZE, int(self.event), sample, 0, 0, flags)
        return head.ljust(ATTR_SIZE, b"\0")

    def describe(self) -> str:
        """``cpu-clock @ 99 Hz`` / ``cycles every 100000`` / ``page-faults``."""
        if self.frequency is not None:
            return f"{self.event.perf_name} @ {self.frequency} Hz"
        if self.period is not None:
            return f"{self.event.perf_name} every {self.period}"
        return self.event.perf_name
