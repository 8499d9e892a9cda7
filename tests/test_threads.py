"""Maps shared between threads: first use, and close while another thread is mid-call."""

from __future__ import annotations

import collections
import sys
import threading
import time

import pybpf


def test_first_use_from_many_threads_at_once(kernel):
    errors: collections.Counter[str] = collections.Counter()
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(100):
            with pybpf.Map.create("hash", key_dtype="u4", value_dtype=[("a", "u4"), ("b", "u4")],
                                  max_entries=64) as m:
                barrier = threading.Barrier(4)

                def writer(base: int, m: pybpf.Map = m, barrier: threading.Barrier = barrier) -> None:
                    barrier.wait()
                    for i in range(base, base + 8):
                        try:
                            m[i] = (i, i)
                        except Exception as exc:  # noqa: BLE001 - counted and asserted below
                            errors[f"{type(exc).__name__}: {exc}"] += 1

                threads = [threading.Thread(target=writer, args=(8 * n,)) for n in range(4)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                assert not errors, errors
                assert len(m) == 32
    finally:
        sys.setswitchinterval(old)


def test_close_while_another_thread_writes_never_touches_other_maps(kernel, bundled):
    """A closed Map's fd number is reused by the next map made; calls in flight in another
    thread must neither reach that map nor fail with anything but ClosedError."""
    unexpected: list[str] = []
    written = 0
    for _ in range(40):
        obj = pybpf.open(bundled("maps_test"))
        obj.load()
        lru = obj.maps["lru"]
        lru[1] = 5  # the fast path exists from here on
        stop = threading.Event()

        def writer(lru: pybpf.Map = lru, stop: threading.Event = stop) -> None:
            while not stop.is_set():
                try:
                    lru[1] = 0xDEAD
                except pybpf.ClosedError:
                    pass
                except Exception as exc:  # noqa: BLE001 - reported below
                    unexpected.append(f"{type(exc).__name__}: {exc}")

        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(0.002)
        obj.close()
        fresh = [pybpf.Map.create("hash", key_dtype="u4", value_dtype="u8", max_entries=8) for _ in range(20)]
        time.sleep(0.002)
        stop.set()
        thread.join()
        for m in fresh:
            written += m.get(1) is not None
            m.close()
    assert written == 0
    assert not unexpected, collections.Counter(unexpected).most_common(3)
