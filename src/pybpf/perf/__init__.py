"""perf events: open software and hardware events per CPU or per process, run BPF on them.

    from pybpf import perf
    with perf.open_events("cpu-clock", frequency=99) as events:   # one fd per online CPU
        events.attach(obj.programs["do_sample"])
        ...

:mod:`pybpf.perf.attr` holds the event kinds and ``struct perf_event_attr`` (pure);
:mod:`pybpf.perf.events` the fds and their attachments (one owner closes both).
"""

from __future__ import annotations

from pybpf.perf.attr import EventAttr, Hardware, PerfType, Software, event_by_name
from pybpf.perf.events import PerfEvents, PerfLink, online_cpus, open_events

__all__ = ["EventAttr", "Hardware", "PerfEvents", "PerfLink", "PerfType", "Software", "event_by_name",
           "online_cpus", "open_events"]
