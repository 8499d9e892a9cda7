"""Issue 10, the races suite: fork() while other threads are inside calls, for every kind of
pybpf object; SIGINT during every blocking call; public calls racing close().

Each scenario runs in a fresh interpreter (threads and fork() inside pytest's own process
would leak into other tests); a hang is a child killed by its alarm, a crash a signal.
"""

from __future__ import annotations

import textwrap

import pytest

from tests.mutate import run_python

# One spinning thread per kind keeps calling into its object; the parent fork()s while they
# run, and the child makes the same calls (then closes everything) under a 10 s alarm.
_FORK_SCRIPT = r"""
import os, signal, sys, threading, time
import numpy as np, pybpf

B = {bundled!r}
kinds = sys.argv[1].split(",")
obj = pybpf.open(B["counters"])
obj.rodata["want_tgid"] = os.getpid()
loaded = pybpf.open(B["counters"])
loaded.load()
link = loaded.programs["on_getppid"].attach()
owned = pybpf.Map.create("hash", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=64)
owned[1] = 1
events = pybpf.open(B["ringbuf_events"])
events.load()
ring = pybpf.RingBuffer(events.maps["events"], dtype="event")
user = pybpf.open(B["ringbuf_user"])
user.load()
urb = pybpf.UserRingBuffer(user.maps["requests"])

calls = {{
    "map-fast": lambda: owned[1],
    "map-slow": lambda: owned[b"\x01\0\0\0"],
    "map-items": lambda: list(owned.items()),
    "map-batch": lambda: owned.lookup_batch(),
    "map-info": lambda: owned.info,
    "object-open": lambda: (obj.rodata["want_tgid"], obj.maps["pairs"].max_entries),
    "object-loaded": lambda: (int(loaded.bss["hits"]), loaded.maps["pairs"].get(1)),
    "section-view": lambda: loaded.bss.view(),
    "program": lambda: loaded.programs["on_getppid"].info(),
    "link": lambda: (link.fd, link.closed),
    "ringbuf": lambda: ring.poll(0) if ring is not None else None,
    "userringbuf": lambda: urb.submit(bytes(16)),
}}
stop = threading.Event()


def spin(call):
    while not stop.is_set():
        try:
            call()
        except pybpf.BufferFullError:
            pass


threads = [threading.Thread(target=spin, args=(calls[k],), daemon=True) for k in kinds]
for t in threads:
    t.start()
time.sleep(0.2)
bad = []
for round_ in range(15):
    time.sleep(0.01)
    pid = os.fork()
    if pid == 0:
        signal.alarm(10)
        try:
            for _ in range(50):
                for k in kinds:
                    try:
                        calls[k]()
                    except pybpf.BufferFullError:
                        pass
            for thing in (urb, ring, link, owned, obj, loaded, events, user):
                if thing is not None:
                    thing.close()
        except BaseException as e:
            os.write(2, f"child: {{type(e).__name__}}: {{e}}\n".encode())
            os._exit(3)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) or os.WEXITSTATUS(status) != 0:
        bad.append((round_, os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)))
stop.set()
for t in threads:
    t.join()
for thing in (urb, ring, link, owned, obj, loaded, events, user):
    if thing is not None:
        thing.close()
print("bad children", bad)
"""

FORK_KINDS = ["map-fast", "map-slow", "map-items", "map-batch", "map-info", "object-open",
              "object-loaded", "section-view", "program", "link", "ringbuf", "userringbuf"]


@pytest.mark.parametrize("kind", FORK_KINDS + [",".join(FORK_KINDS)])
def test_fork_while_another_thread_is_inside_a_call(kernel, bundled, kind):
    """The child of a fork() taken mid-call must not hang (a lock copied while held)."""
    names = ("counters", "ringbuf_events", "ringbuf_user")
    script = _FORK_SCRIPT.format(bundled={n: bundled(n) for n in names})
    result = run_python(script.replace("sys.argv[1]", repr(kind)), timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "bad children []" in result.stdout, result.stdout + result.stderr[-3000:]


_SIGINT_SCRIPT = r"""
import os, signal, threading, time, pybpf
B = {bundled!r}
what = {what!r}
with pybpf.open(B["ringbuf_events"]) as events, pybpf.open(B["ringbuf_user"]) as user:
    events.load()
    user.load()
    ring = pybpf.RingBuffer(events.maps["events"], dtype="event")
    urb = pybpf.UserRingBuffer(user.maps["requests"])
    try:
        while True:
            urb.submit(bytes(1024))
    except pybpf.BufferFullError:
        pass
    block = {{
        "ringbuf.poll": lambda: ring.poll(60),
        "userringbuf.submit": lambda: urb.submit(bytes(1024), timeout=60),
        "ringbufset.poll": lambda: pybpf.RingBufferSet(ring).poll(60),
    }}[what]
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    started = time.monotonic()
    try:
        block()
        print("returned")
    except KeyboardInterrupt:
        print("interrupted after", round(time.monotonic() - started, 2))
    ring.close()
    urb.close()
"""


@pytest.mark.parametrize("what", ["ringbuf.poll", "userringbuf.submit", "ringbufset.poll"])
def test_sigint_during_a_blocking_call(kernel, bundled, what):
    script = _SIGINT_SCRIPT.format(bundled={n: bundled(n) for n in ("ringbuf_events", "ringbuf_user")},
                                   what=what)
    result = run_python(script, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "interrupted after" in result.stdout, result.stdout + result.stderr[-2000:]
    assert float(result.stdout.split()[-1]) < 30  # far from the 60 s the call would wait
