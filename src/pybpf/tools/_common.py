"""Plumbing shared by the shipped tools: open/load/attach, the event loop, JSON lines.

Owns what is the same in every tool module of :mod:`pybpf.tools` and is not worth
a public API: a stop flag set by SIGINT/SIGTERM (tools end cleanly and print their
summary, as libbpf-tools' do on Ctrl-C), loading a bundled object with rodata
settings, the ``-c CGROUP_PATH`` filter and attaching its programs, the options
every tool has (``-c``, ``--version``, ``--json``), :class:`EventTool` (ring
buffer records to lines or JSON, with lost events reported as libbpf-tools do),
and which libbpf-tools release the output formats follow (:func:`c_release`).

A new event tool is its BPF C (including ``tools_events.h`` and ``tools_filter.h``),
a module with its options and its columns (the C twin's printf formats, applied
with Python's ``%``, which follows printf), and an exporter config.
The helpers a tool *author* needs (C strings, histograms, decoders) are public in
:mod:`pybpf.toolkit`.
"""

from __future__ import annotations

import os
import re
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import numpy as np

import pybpf
from pybpf.btf.plain import Record, RecordLayout
from pybpf.tools._options import Option, ToolApp
from pybpf.events.base import EventSource
from pybpf.text import visible
from pybpf.toolkit import log2_hist_lines

__all__ = ["CGROUP_OPTION", "EventTool", "Stop", "c_release", "emit_json", "fail", "hist_report", "intervals",
           "loaded", "ready_line", "ready_message", "run_events", "tool_app", "version_option"]

NEWEST_C_RELEASE = (0, 31)


class Stop:
    """Set by SIGINT or SIGTERM (or a duration running out); restores the handlers on exit."""

    def __init__(self, duration: float | None = None) -> None:
        self.event = threading.Event()
        self.deadline = None if not duration else time.monotonic() + duration
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Stop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handler(self, signum: int, frame: Any) -> None:
        self.event.set()

    @property
    def stopped(self) -> bool:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.event.set()
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` (less if the deadline comes first); True when stopping."""
        if self.deadline is not None:
            seconds = min(seconds, max(self.deadline - time.monotonic(), 0.0))
        self.event.wait(seconds)
        return self.stopped


def fail(message: str) -> None:
    """One line on stderr and exit 1 (as the pybpf CLI does)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(1)


@lru_cache(maxsize=1)
def c_release() -> tuple[int, int]:
    """The libbpf-tools release whose output formats the tools follow: the C tools beside us.

    A few columns changed between releases (tcpstates ``-w`` addresses 26 -> 39
    wide, tcpconnect's COMM 12 -> 16): the tools print what the installed C twin
    prints. Found from ``PYBPF_LIBBPF_TOOLS`` (``0.26``), else the installed
    ``libbpf-tools`` package's changelog, else the Debian release (12: 0.26,
    13: 0.31), else the newest format known here.
    """
    wanted = os.environ.get("PYBPF_LIBBPF_TOOLS", "")
    m = re.match(r"(\d+)\.(\d+)", wanted)
    if m:
        return int(m.group(1)), int(m.group(2))
    try:
        import gzip  # only to read the C tools' release

        with gzip.open("/usr/share/doc/libbpf-tools/changelog.Debian.gz", "rt") as f:
            m = re.match(r"\S+ \((?:\d+:)?(\d+)\.(\d+)", f.readline())
        if m:
            return int(m.group(1)), int(m.group(2))
    except (OSError, EOFError, ValueError):
        pass
    try:
        with open("/etc/debian_version") as f:
            major = f.read().split(".")[0]
        if major.isdigit():
            return (0, 26) if int(major) <= 12 else NEWEST_C_RELEASE
    except OSError:
        pass
    return NEWEST_C_RELEASE


def tool_app() -> ToolApp:
    """The app of one tool, a typer app when built (``-h`` as libbpf-tools, no completion, plain
    errors); declared without typer (:mod:`pybpf.tools._options`)."""
    return ToolApp(add_completion=False, pretty_exceptions_enable=False,
                   context_settings={"help_option_names": ["-h", "--help"]})


def version_option(name: str) -> Any:
    """``-V``/``--version``, as the C tools' argp prints it: ``NAME VERSION``."""
    def show(value: bool) -> None:
        if value:
            import typer  # typer runs this callback: the flag given

            print(f"{name} {pybpf.__version__} (pybpf)")
            raise typer.Exit()
    return Option(False, "-V", "--version", callback=show, is_eager=True, help="print program version")


CGROUP_OPTION: Any = Option(None, "-c", "--cgroup", metavar="/sys/fs/cgroup/unified",
                            help="trace process in cgroup path")


def _set_cgroup(obj: pybpf.Object, path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        fail(f"Failed opening Cgroup path: {path} ({exc.strerror})")
    try:
        obj.maps["cgroup_map"][0] = fd
    finally:
        os.close(fd)   # the map holds the cgroup now


def _possible_cpus() -> int:
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            return max(int(part.split("-")[-1]) for part in f.read().strip().split(",")) + 1
    except (OSError, ValueError):
        return os.cpu_count() or 1


def ring_bytes(c_pages: int, record_bytes: int, c_record_bytes: int | None = None) -> int:
    """A ring at least as roomy as the C twin's perf buffers: ``c_pages`` pages per CPU of
    ``c_record_bytes`` records, held here as ``record_bytes`` records (a power of two, >= 1 MiB)."""
    cpus = _possible_cpus()
    need = cpus * c_pages * 4096 * max(1.0, record_bytes / max(c_record_bytes or record_bytes, 1))
    size = 1 << 20
    while size < need:
        size <<= 1
    return size


@contextmanager
def loaded(name: str, rodata: Mapping[str, Any] | None = None, programs: list[str] | None = None,
           before_attach: Callable[[pybpf.Object], None] | None = None, *, cgroup: str | None = None,
           max_entries: Mapping[str, int] | None = None, disable: Iterable[str] = (),
           value_sizes: Mapping[str, int] | None = None) -> Iterator[pybpf.Object]:
    """Open the bundled object ``name``, set rodata, load, attach (all or ``programs``).

    ``before_attach(obj)`` runs between load and attach (fill filter maps there);
    ``cgroup`` is ``-c``'s path (the object includes ``tools_filter.h``);
    ``max_entries`` sizes maps before load (the ``events`` ring), ``value_sizes`` sets
    value sizes (a stack map's depth); programs in ``disable``
    are not loaded (``bpf_program__set_autoload(false)``, as the C tools choose hooks).
    """
    obj = pybpf.open(pybpf.bundled(name))
    try:
        for key, value in (rodata or {}).items():
            obj.rodata[key] = value
        if cgroup is not None:
            obj.rodata["filter_cg"] = True
        for key, count in (max_entries or {}).items():
            obj.maps[key].max_entries = count
        for key, size in (value_sizes or {}).items():
            obj.maps[key].value_size = size
        off = set(disable)
        for prog_name in off:
            obj.programs[prog_name].autoload = False
        obj.load()
        if cgroup is not None:
            _set_cgroup(obj, cgroup)
        if before_attach is not None:
            before_attach(obj)
        if programs is None and off:
            for prog_name in obj.programs:
                if prog_name not in off:
                    obj.programs[prog_name].attach()
        elif programs is None:
            obj.attach()
        else:
            for prog in programs:
                obj.programs[prog].attach()
        yield obj
    finally:
        obj.close()


def run_events(rb: EventSource, handle: Callable[[np.ndarray], None], stop: Stop,
               ready: Callable[[], None] | None = None) -> None:
    """Feed ring buffer batches to ``handle`` until ``stop``; what is left is drained last."""
    if ready is not None:
        ready()
    while not stop.stopped:
        batch = rb.read(0.1)
        if len(batch):
            handle(batch)
    batch = rb.read(0)
    if len(batch):
        handle(batch)


class EventTool:
    """A snoop tool's event loop: ring buffer records to ``show(batch)``, lost events reported.

    Records are read from the object's ``events`` ring (``tools_events.h``) and decoded by
    the layout of BTF struct ``record`` into :class:`pybpf.btf.plain.Record` dicts (integers
    as ``int``, arrays and nested structs as their bytes; variable-size records, as execsnoop
    sends, are zero-padded to the struct): ``show`` gets a list of them. No numpy: a tool's
    first event costs the interpreter, libbpf and the BPF load, and a text-mode tool never
    imports numpy. Records the ring had no room for are counted per CPU by the BPF side; after
    each batch the tool prints ``Lost N events on CPU #C!`` on stderr, as libbpf-tools' perf
    buffer callback does, and with ``--json`` also a ``{"lost_events": N, "cpu": C}`` line on
    stdout, so a truncated stream says so.
    """

    def __init__(self, obj: pybpf.Object, record: str, *, as_json: bool = False) -> None:
        self.obj = obj
        self.as_json = as_json
        btf = obj.maps["events"].btf
        assert btf is not None  # a bundled tool object has BTF
        self.layout = RecordLayout(btf, btf.find(record, "struct"))
        self._lost_map = obj.maps["lost_events"]
        self._lost_seen: list[int] = []
        self.lost_total = 0

    def _records(self, raw: list[bytes]) -> list[Record]:
        return [self.layout.decode(r) for r in raw]

    def report_lost(self) -> None:
        """Print what was lost since the last look, per CPU (C: ``handle_lost_events``)."""
        raw = self._lost_map.lookup_raw(bytes(4))  # key 0: one u64 per possible CPU
        now = list(struct.unpack(f"<{len(raw) // 8}Q", raw))
        if len(self._lost_seen) != len(now):
            self._lost_seen = [0] * len(now)
        if now == self._lost_seen:
            return
        for cpu, (count, seen) in enumerate(zip(now, self._lost_seen)):
            if count == seen:
                continue
            count = (count - seen) % (1 << 64)
            self.lost_total += count
            if self.as_json:
                emit_json({"lost_events": count, "cpu": cpu})
            print(f"Lost {count} events on CPU #{cpu}!", file=sys.stderr, flush=True)
        self._lost_seen = now

    def run(self, show: Callable[[list[Record]], None], stop: Stop, ready: str | None = None) -> None:
        """Feed batches to ``show`` until ``stop``; the rest is read last, then losses reported."""
        with pybpf.RingBuffer(self.obj.maps["events"]) as rb:
            if ready is not None:
                ready_message(ready)
            while True:
                stopping = stop.stopped
                raw = rb.read(0 if stopping else 0.1)
                if raw:
                    show(self._records(raw))
                    sys.stdout.flush()
                self.report_lost()
                if stopping and not raw:
                    break


def intervals(stop: Stop, interval: float | None, count: int | None) -> Iterator[None]:
    """The reports of a histogram tool, as the C tools' main loop makes them: one every
    ``interval`` seconds (none or 0: the C tools' 99999999 s, i.e. one, at the stop), at most
    ``count``; a stop (Ctrl-C, SIGTERM) makes the report then due the last."""
    printed = 0
    while True:
        stopping = stop.wait(interval if interval else 99999999.0)
        yield
        printed += 1
        if stopping or (count is not None and printed >= count):
            return


def hist_report(hists: Iterable[tuple[str, Any]], unit: str, timestamp: bool) -> str:
    """One interval's text of a histogram tool: an empty line, ``HH:MM:SS`` with ``-T``, then
    each histogram (``print_log2_hist``) after its head (``"\\npid = N COMM\\n"``, or "")."""
    text = "\n" + ("%-8s\n" % wall_hms() if timestamp else "")
    for head, slots in hists:
        text += head + "".join(line + "\n" for line in log2_hist_lines(slots, unit))
    return text


def ready_line(text: str, as_json: bool) -> None:
    """The C tool's "Tracing ..." line: on stdout as there, on stderr under ``--json``
    (stdout is then JSON lines only)."""
    if as_json:
        ready_message(text)
    else:
        out(text + "\n")
        sys.stdout.flush()


def out(text: str) -> None:
    """Write ``text`` to stdout as the C tools' printf does: bytes from the kernel as they were
    (C strings are decoded with ``surrogateescape`` by :func:`ctext`), flushed per batch."""
    # a safety net: no ESC/CR/bidi control from a field reaches the terminal, even where a tool did
    # not pass the field through visible() (a newline inside a field still needs that)
    sys.stdout.buffer.write(visible(text, newlines=True).encode("utf-8", "surrogateescape"))


def ctext(value: Any) -> str:
    """A ``char[N]`` field up to its NUL, byte-exact (undecodable bytes kept as surrogates)."""
    raw = bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else value.tobytes()
    end = raw.find(b"\0")
    return (raw if end < 0 else raw[:end]).decode("utf-8", "surrogateescape")


def wall_hms(ns: int | None = None) -> str:
    """``HH:MM:SS`` local time (C: ``strftime("%H:%M:%S", localtime(time()))``), of a
    ``bpf_ktime_get_ns()`` stamp when given."""
    now = time.time() if ns is None else time.time() - (time.clock_gettime_ns(time.CLOCK_MONOTONIC) - int(ns)) / 1e9
    return time.strftime("%H:%M:%S", time.localtime(now))


def emit_json(doc: Any) -> None:
    """One JSON object on one line of stdout, flushed (for pipes and ``jq``)."""
    sys.stdout.flush()
    import json  # a tool's --json lines only (imported once: later imports are a dict lookup)

    print(json.dumps(doc, default=_plain), flush=True)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):  # surrogate-escaped bytes of a C string
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    np = sys.modules.get("numpy")  # a numpy value exists only once numpy is imported
    if np is not None and isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def ready_message(text: str) -> None:
    """The 'Tracing ... Ctrl-C to end' line, on stderr so stdout stays data."""
    print(text, file=sys.stderr, flush=True)
