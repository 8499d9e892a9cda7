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


@pytest.mark.parametrize("kind", ["map-slow", ",".join(FORK_KINDS)], ids=["map-slow", "every-kind"])
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
        "perfbuffer.poll": lambda: pybpf.PerfBuffer(events.maps["perf_events"], dtype="event").poll(60),
    }}[what]
    # Python's own Ctrl-C handler, even when started as a background job (SIGINT ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
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


@pytest.mark.parametrize("what", ["ringbuf.poll", "userringbuf.submit", "ringbufset.poll", "perfbuffer.poll"])
def test_sigint_during_a_blocking_call(kernel, bundled, what):
    script = _SIGINT_SCRIPT.format(bundled={n: bundled(n) for n in ("ringbuf_events", "ringbuf_user")},
                                   what=what)
    result = run_python(script, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "interrupted after" in result.stdout, result.stdout + result.stderr[-2000:]
    assert float(result.stdout.split()[-1]) < 30  # far from the 60 s the call would wait


# Every public call of a kind, in a thread, while the main thread closes the object: the call
# either works or raises ClosedError, never another error (EBADF, "mmap closed", NoneType...),
# and never acts on an fd number given back to the kernel (and maybe to another map).
_CLOSE_SCRIPT = r"""
import collections, random, threading, time, traceback
import numpy as np, pybpf
B = {bundled!r}
kind = {kind!r}
odd = collections.Counter()
sample = {{}}

def race(make, calls, rounds=40):
    for r in range(rounds):
        target, closer, rest = make()
        running = threading.Event()
        def go():
            running.set()
            for _ in range(5000):
                for name, call in calls.items():
                    try:
                        call(target)
                    except pybpf.ClosedError:
                        return
                    except (pybpf.KeyNotFoundError, pybpf.BufferFullError):
                        pass
                    except Exception as e:
                        key = (name, type(e).__name__, str(e)[:100])
                        odd[key] += 1
                        sample[key] = traceback.format_exc()[-800:]
                        return
        # other maps keep taking the lowest free fd numbers: a call that uses a number after
        # its owner gave it back finds one of them there
        churn_stop = threading.Event()
        def churn():
            while not churn_stop.is_set():
                pybpf.Map.create("array", key_size=4, value_size=8, max_entries=1).close()
        t = threading.Thread(target=go)
        c = threading.Thread(target=churn)
        t.start()
        c.start()
        running.wait()
        time.sleep(random.random() * 0.004)
        closer.close()
        t.join()
        churn_stop.set()
        c.join()
        for x in rest:
            x.close()

def same_map(m, info):
    if info.id != m._expected_id:
        raise AssertionError(f"info of another map: id {{info.id}}, not {{m._expected_id}}")

def owned_hash():
    m = pybpf.Map.create("hash", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=64)
    m[1] = 1
    m._expected_id = m.id
    return m, m, []

def owned_array():
    m = pybpf.Map.create("array", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=64,
                         flags=["mmapable"])
    m._expected_id = m.id
    return m, m, []

MAP_CALLS = {{
    "getitem": lambda m: m[1], "getitem-bytes": lambda m: m[b"\x01\0\0\0"],
    "setitem": lambda m: m.__setitem__(1, 2), "update": lambda m: m.update(1, 2),
    "contains": lambda m: 1 in m, "get": lambda m: m.get(1), "len": lambda m: len(m),
    "keys": lambda m: list(m.keys()), "items": lambda m: list(m.items()),
    "lookup_batch": lambda m: m.lookup_batch(),
    "update_batch": lambda m: m.update_batch(np.array([1], np.uint32), np.array([3], np.uint64)),
    "info": lambda m: same_map(m, m.info), "fd": lambda m: m.fd,
    "type": lambda m: m.type, "max_entries": lambda m: m.max_entries,
}}

def loaded(name):
    def make():
        obj = pybpf.open(B[name])
        obj.load()
        return obj, obj, []
    return make

def object_map():
    obj = pybpf.open(B["counters"])
    obj.load()
    m = obj.maps["slots"]
    m._expected_id = m.id
    return m, obj, []

OBJECT_CALLS = {{
    "bss[]": lambda o: int(o.bss["hits"]), "bss.view": lambda o: o.bss.view(),
    "bss[]=": lambda o: o.bss.__setitem__("hits", 3), "data.bytes": lambda o: o.data.bytes(),
    "maps[].get": lambda o: o.maps["pairs"].get(1), "maps[].info": lambda o: o.maps["pairs"].info,
    "maps[].view": lambda o: o.maps["slots"].view(),
    "programs[].info": lambda o: o.programs["on_getppid"].info(),
    "programs[].fd": lambda o: o.programs["on_getppid"].fd,
    "attach": lambda o: o.programs["on_getppid"].attach().close(),
}}
NET_CALLS = {{
    "test_run": lambda o: o.programs["xdp_count"].test_run(data_in=bytes(64), repeat=5),
    "info": lambda o: o.programs["xdp_count"].info(),
}}

def opened(name):
    def make():
        obj = pybpf.open(B[name])
        return obj, obj, []
    return make

OPEN_CALLS = {{  # an object never loaded: what can race close() before load
    "rodata[]=": lambda o: o.rodata.__setitem__("want_tgid", 7), "bss[]=": lambda o: o.bss.__setitem__("hits", 3),
    "data[]=": lambda o: o.data.__setitem__("increment", 2), "rodata[]": lambda o: o.rodata["want_tgid"],
    "bss.bytes": lambda o: o.bss.bytes(), "maps[].max_entries": lambda o: o.maps["pairs"].max_entries,
}}

def ring():
    obj = pybpf.open(B["ringbuf_events"])
    obj.load()
    rb = pybpf.RingBuffer(obj.maps["events"], dtype="event")
    return rb, rb, [obj]

RING_CALLS = {{"poll": lambda r: r.poll(0), "drain": lambda r: r.drain(), "drain_bytes": lambda r: r.drain_bytes(),
              "fileno": lambda r: r.fileno(), "available_bytes": lambda r: r.available_bytes,
              "pinned_bytes": lambda r: r.pinned_bytes}}

def user_ring():
    obj = pybpf.open(B["ringbuf_user"])
    obj.load()
    urb = pybpf.UserRingBuffer(obj.maps["requests"])
    return urb, urb, [obj]

USER_CALLS = {{"submit": lambda u: u.submit(bytes(16)), "submit-wait": lambda u: u.submit(bytes(16), timeout=0.01)}}

{{
    "owned-hash": lambda: race(owned_hash, MAP_CALLS),
    "owned-array": lambda: race(owned_array, dict(MAP_CALLS, view=lambda m: m.view(), viewsum=lambda m: m.view().sum())),
    "object": lambda: race(loaded("counters"), OBJECT_CALLS),
    "object-open": lambda: race(opened("counters"), OPEN_CALLS, rounds=300),
    "object-map": lambda: race(object_map, MAP_CALLS),
    "program": lambda: race(loaded("net"), NET_CALLS),
    "ringbuf": lambda: race(ring, RING_CALLS),
    "userringbuf": lambda: race(user_ring, USER_CALLS),
}}[kind]()
for key, n in odd.most_common():
    print(n, key)
    print(sample[key])
print("odd errors", sum(odd.values()))
"""

CLOSE_KINDS = ["owned-hash", "owned-array", "object", "object-open", "object-map", "program", "ringbuf", "userringbuf"]


@pytest.mark.parametrize("kind", CLOSE_KINDS)
def test_calls_racing_close_raise_closed_error(kernel, bundled, kind):
    names = ("counters", "net", "ringbuf_events", "ringbuf_user")
    script = _CLOSE_SCRIPT.format(bundled={n: bundled(n) for n in names}, kind=kind)
    result = run_python(script, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "odd errors 0" in result.stdout, result.stdout[-4000:]
