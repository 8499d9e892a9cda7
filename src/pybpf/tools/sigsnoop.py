"""sigsnoop: trace signals sent, with sender, target and result (as libbpf-tools' sigsnoop).

    pybpf tool sigsnoop [-x] [-k] [-n] [-p PID] [-s SIGNAL[,SIGNAL...]] [--duration S] [--json] [-V]

Columns are the C tool's printf formats (``TIME PID COMM SIG TPID RESULT``, the wall clock
first); ``-n`` names signals 1..31 as the C tool's table does; ``-k`` traces the kill,
tkill and tgkill syscalls only (else every generated signal, from ``signal_generate``).

BPF side: ``bpf_src/sigsnoop.bpf.c``; ``signals`` by (signal, result) and ``lost_events``
for ``pybpf export sigsnoop``.
"""

from __future__ import annotations

from typing import Optional

from pybpf.text import visible
from pybpf.btf.plain import Record
from pybpf.tools._options import Option
from pybpf.tools._common import (EventTool, Stop, ctext, emit_json, fail, loaded, out, ring_bytes, tool_app,
                                 version_option, wall_hms)

__all__ = ["SIG_NAMES", "app"]

C_PAGES = 16
SIG_NAMES = ["N/A", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
             "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT",
             "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU",
             "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS"]
KILL_PROGS = ["kill_entry", "kill_exit", "tkill_entry", "tkill_exit", "tgkill_entry", "tgkill_exit"]

app = tool_app()


def _signals(text: str | None) -> int:
    mask = 0
    for token in (text or "").split(","):
        if not token:
            continue
        if not token.isdigit() or not 1 <= int(token) <= 31:
            fail(f"Invalid SIGNAL: {token}")
        mask |= 1 << (int(token) - 1)
    return mask


@app.command()
def sigsnoop(
    failed: bool = Option(False, "-x", "--failed", help="trace failed signals only."),
    kill: bool = Option(False, "-k", "--kill", help="trace signals issued by kill syscall only."),
    pid: Optional[int] = Option(None, "-p", "--pid", help="process ID to trace"),
    signals: Optional[str] = Option(None, "-s", "--signal", help="signals to trace (1,9,15)."),
    name: bool = Option(False, "-n", "--name", help="output signal name instead of signal number."),
    duration: Optional[float] = Option(None, "--duration", help="stop after this many seconds"),
    as_json: bool = Option(False, "--json", help="one JSON object per signal"),
    version: bool = version_option("sigsnoop"),
) -> None:
    """Trace standard and real-time signals."""
    rodata: dict[str, object] = {"failed_only": failed, "target_signals": _signals(signals)}
    if pid is not None:
        rodata["filtered_pid"] = pid
    disable = ["sig_trace"] if kill else KILL_PROGS

    def show(batch: list[Record]) -> None:
        for e in batch:
            comm, sig = ctext(e["comm"]), int(e["sig"])
            if as_json:
                emit_json({"pid": int(e["pid"]), "comm": comm, "sig": sig,
                           "signal": SIG_NAMES[sig] if 0 <= sig < len(SIG_NAMES) else None,
                           "tpid": int(e["tpid"]), "ret": int(e["ret"])})
                continue
            head = (wall_hms(), int(e["pid"]), visible(comm))
            tail = (int(e["tpid"]), int(e["ret"]))
            if name and 0 <= sig < len(SIG_NAMES):
                out("%-8s %-7d %-16s %-9s %-7d %-6d\n" % (*head, SIG_NAMES[sig], *tail))
            else:
                out("%-8s %-7d %-16s %-9d %-7d %-6d\n" % (*head, sig, *tail))

    with Stop(duration) as stop, loaded("sigsnoop", rodata, disable=disable,
                                        max_entries={"events": ring_bytes(C_PAGES, 48)}) as obj:
        tool = EventTool(obj, "sig_event", as_json=as_json)
        if not as_json:
            out("%-8s %-7s %-16s %-9s %-7s %-6s\n" % ("TIME", "PID", "COMM", "SIG", "TPID", "RESULT"))
        tool.run(show, stop, "Tracing signals... Ctrl-C to end.")
