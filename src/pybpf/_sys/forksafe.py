"""Locks and in-flight state that survive ``fork()``.

``fork()`` copies a lock as it is: held, if another thread was inside a Map call at that
moment. That thread does not exist in the child, so the child's next call on the same map
waited forever. Every pybpf object that owns locks (or counts calls in flight) registers a
reset here; in the child, right after ``fork()``, each live registrant gets fresh locks and
forgets the calls of threads that the child does not have. The parent is untouched.

Registration is by weak reference: it keeps nothing alive.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["fresh_locks", "on_fork_child"]

_resets: dict[int, tuple[weakref.ref[Any], list[Callable[[Any], None]]]] = {}
_registry_lock = threading.Lock()


def on_fork_child(owner: Any, reset: Callable[[Any], None]) -> None:
    """Call ``reset(owner)`` in the child after every ``fork()``, as long as ``owner`` lives
    (an owner may register several: a base class's and a subclass's)."""
    key = id(owner)

    def forget(ref: weakref.ref[Any], key: int = key) -> None:
        entry = _resets.get(key)
        if entry is not None and entry[0] is ref:
            _resets.pop(key, None)

    with _registry_lock:
        entry = _resets.get(key)
        if entry is None or entry[0]() is not owner:
            entry = (weakref.ref(owner, forget), [])
            _resets[key] = entry
        entry[1].append(reset)


def fresh_locks(owner: Any, **factories: Callable[[], Any]) -> None:
    """Set ``owner.<name> = factory()`` now and again in the child after every fork()."""
    for name, factory in factories.items():
        setattr(owner, name, factory())

    def reset(obj: Any) -> None:
        for name, factory in factories.items():
            setattr(obj, name, factory())

    on_fork_child(owner, reset)


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()  # it may have been held by a thread the child lacks
    for ref, resets in list(_resets.values()):
        owner = ref()
        for reset in resets if owner is not None else ():
            try:
                reset(owner)
            except Exception:  # noqa: BLE001 - a fork must not fail for one object's reset
                pass


os.register_at_fork(after_in_child=_after_fork_in_child)
