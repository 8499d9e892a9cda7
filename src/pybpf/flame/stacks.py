"""A BPF profile -> stacks with names: counts keyed by stack ids, resolved in bulk.

Owns the step every stack tool shares (profile, offcputime, wakeuptime, and users' own):
a counts map whose key holds a pid, a comm and kernel/user stack ids (libbpf-tools'
layout), plus the stack map, become one list of :class:`NamedStack` (frames with names,
outermost first) and from there :class:`~pybpf.flame.folded.Folded` stacks. Every
distinct kernel address is resolved once for the whole profile, every distinct user
address once per process; stack ids the kernel could not store are shown as libbpf-tools
shows them (``[Missed User Stack]``), and ``-EFAULT`` (no user stack: a kernel thread)
leaves the user part out.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pybpf.errors import InvalidArgumentError
from pybpf.flame.folded import Folded
from pybpf.maps.stacks import StackTable
from pybpf.symbolize import Symbolizer

__all__ = ["MISSED_KERNEL", "MISSED_USER", "NamedStack", "fold", "name_stacks"]

MISSED_USER = "[Missed User Stack]"
MISSED_KERNEL = "[Missed Kernel Stack]"


@dataclass(frozen=True)
class NamedStack:
    """One row of a profile: who, its frames (outermost first) and its count."""

    pid: int
    comm: str
    user: tuple[str, ...]      # outermost first; () when the row has no user stack
    kernel: tuple[str, ...]    # outermost first; () when the row has no kernel stack
    value: int

    def frames(self, delimiter: str | None = None, *, comm: bool = True) -> tuple[str, ...]:
        """``comm;user...;kernel...`` as a tuple (libbpf-tools' folded order), with
        ``delimiter`` between user and kernel frames when both are there."""
        mid = (delimiter,) if delimiter and self.user and self.kernel else ()
        return ((self.comm,) if comm else ()) + self.user + mid + self.kernel


def _field(keys: np.ndarray, name: str | None) -> np.ndarray | None:
    if name is None:
        return None
    if keys.dtype.names is None or name not in keys.dtype.names:
        raise InvalidArgumentError(f"the counts key has no field {name!r} (fields: {keys.dtype.names})")
    return keys[name]


def _texts(raw: np.ndarray | None) -> list[str]:
    """C strings of a ``char[N]`` key field (S<N> or an int8/uint8 array per row)."""
    if raw is None:
        return []
    rows = raw.tolist() if raw.dtype.kind == "S" else [bytes(np.asarray(r, np.uint8)) for r in raw]
    return [bytes(r).split(b"\0", 1)[0].decode("utf-8", "replace") for r in rows]


def _resolve(ids: np.ndarray, names_of: dict[int, tuple[str, ...]], missed: str,
             wanted: np.ndarray) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for stack_id, want in zip(ids.tolist(), wanted.tolist()):
        if not want or stack_id == -errno.EFAULT:
            out.append(())
        elif stack_id < 0 or stack_id not in names_of:
            out.append((missed,))
        else:
            out.append(names_of[stack_id])
    return out


def name_stacks(keys: np.ndarray, values: np.ndarray, stacks: StackTable, symbolizer: Symbolizer, *,
                pid: str | None = "pid", comm: str | None = "name", kernel_id: str | None = "kern_stack_id",
                user_id: str | None = "user_stack_id", user_pid: str | None = None,
                kernel_suffix: str = "") -> list[NamedStack]:
    """Name the stacks of a profile. ``keys`` is the counts map's structured key array and
    ``values`` its counts (``lookup_batch()``); the field names default to libbpf-tools'
    ``struct key_t``. ``user_pid`` names the key field whose process owns the user stack
    (default: ``pid``). ``kernel_suffix`` is appended to kernel frame names (``"_[k]"``)."""
    vals = np.asarray(values)
    if vals.dtype.names:   # a struct value (offcputime's val_t): its first numeric field
        vals = vals[vals.dtype.names[0]]
    vals = vals.astype(np.int64).reshape(-1)
    n = len(keys)
    if len(vals) != n:
        raise InvalidArgumentError(f"{n} keys but {len(vals)} values")
    pids = _field(keys, pid)
    owners = _field(keys, user_pid) if user_pid else pids
    comms = _texts(_field(keys, comm)) if comm else [""] * n
    kids = _field(keys, kernel_id)
    uids = _field(keys, user_id)
    kids = np.full(n, -errno.EFAULT, np.int64) if kids is None else kids.astype(np.int64)
    uids = np.full(n, -errno.EFAULT, np.int64) if uids is None else uids.astype(np.int64)

    # kernel: every distinct address of every kernel stack used, in one lookup
    knames: dict[int, tuple[str, ...]] = {}
    kused = np.unique(kids[kids >= 0])
    rows = stacks.rows(kused)
    if np.any(rows >= 0):
        sub = StackTable(stacks.ids[rows[rows >= 0]], stacks.frames[rows[rows >= 0]],
                         stacks.depths[rows[rows >= 0]])
        addrs = sub.addresses()
        frames = symbolizer.kernel(addrs)
        lut = dict(zip(addrs.tolist(), (f + kernel_suffix for f in frames.names.tolist())))
        for sid, row, depth in zip(sub.ids.tolist(), range(len(sub)), sub.depths.tolist()):
            knames[sid] = tuple(lut[a] for a in reversed(sub.frames[row, :depth].tolist()))

    # user: per process, every distinct address of its stacks in one lookup
    unames: dict[tuple[int, int], tuple[str, ...]] = {}
    owner_list = owners.astype(np.int64) if owners is not None else np.zeros(n, np.int64)
    for proc in np.unique(owner_list[uids >= 0]).tolist():
        sel = np.unique(uids[(owner_list == proc) & (uids >= 0)])
        rows = stacks.rows(sel)
        ok = rows >= 0
        if not np.any(ok):
            continue
        sub = StackTable(stacks.ids[rows[ok]], stacks.frames[rows[ok]], stacks.depths[rows[ok]])
        addrs = sub.addresses()
        lut = dict(zip(addrs.tolist(), symbolizer.user(int(proc), addrs).names.tolist()))
        for sid, row, depth in zip(sub.ids.tolist(), range(len(sub)), sub.depths.tolist()):
            unames[(proc, sid)] = tuple(lut[a] for a in reversed(sub.frames[row, :depth].tolist()))

    out = []
    kern = _resolve(kids, knames, MISSED_KERNEL, np.ones(n, bool))
    for i in range(n):
        uid = int(uids[i])
        proc = int(owner_list[i])
        if uid == -errno.EFAULT:
            user: tuple[str, ...] = ()
        elif uid < 0 or (proc, uid) not in unames:
            user = (MISSED_USER,)
        else:
            user = unames[(proc, uid)]
        out.append(NamedStack(int(pids[i]) if pids is not None else 0, comms[i], user, kern[i], int(vals[i])))
    return out


def fold(named: Sequence[NamedStack], *, delimiter: str | None = None, comm: bool = True) -> Folded:
    """Folded stacks of named rows (``comm;user...;kernel... COUNT``, libbpf-tools' order)."""
    out = Folded()
    for row in named:
        frames = row.frames(delimiter, comm=comm)
        if frames and row.value > 0:
            out.add(frames, row.value)
    return out
