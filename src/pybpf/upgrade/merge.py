"""The exact merge: what the old version wrote between the copy and the switch, carried over.

A migrated map is copied into the new map before the switch; the old version
keeps writing until the switch, and its invocations in flight then finish
after it. Once none can still run (``wait_for_programs``), the old map holds
its final state F. Per entry and field, the difference to what was copied (S,
kept in a *snapshot* map in the new layout) goes into the new map, which the
new version is already writing:

* integer fields are counters: ``F - S`` is added with an atomic add, so the
  sum is exact whatever the new version adds concurrently (8/16-bit fields
  through a compare-and-swap loop on their aligned word);
* last-value fields (named in ``last_value=``, floats, byte arrays) take F with
  a compare-and-swap from S: where the new version has written the field since
  the switch, its value is kept;
* an entry only in F is inserted (zero) and then merged as above; an entry
  the old version deleted after the copy merges as F = 0.

User space cannot add atomically into a map value, so the adds run in BPF: the
bundled ``merge.bpf.o`` is a ``BPF_PROG_TYPE_SYSCALL`` program run through
``BPF_PROG_TEST_RUN``, with the new map and the snapshot given to it by
``bpf_map__reuse_fd``. Each entry's adds run in one program run together with
the update of its snapshot entry to F, so a merge interrupted by a crash can
be run again: what was merged already has no difference left.

Owns: ``wait_for_programs``, the field rules (``leaves``), ``Merger`` (one per
migrated map or section).
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pybpf.logs import logger
from pybpf.errors import BpfError
from pybpf.maps.map import Map
from pybpf.object import Object, open as open_object

__all__ = ["Leaf", "Merger", "MergeResult", "crash_point", "leaves", "wait_for_programs"]

_log = logger("pybpf")

OP_RECORD, OP_ADD64, OP_ADD32, OP_ADD16, OP_ADD8, OP_CAS64, OP_CAS32, OP_SET8 = range(1, 9)
REC_INSERT = 1
_ADD = {8: OP_ADD64, 4: OP_ADD32, 2: OP_ADD16, 1: OP_ADD8}
_OPS_PER_RUN = 8192          # ops array of the merge program (more when one entry needs more)
_RECORDS_PER_RUN = 2048      # records array of the merge program
_OP_DTYPE = np.dtype([("rec", "<u4"), ("kind", "<u2"), ("cpu", "<u2"), ("off", "<u4"), ("flags", "<u4"),
                      ("a", "<u8"), ("b", "<u8")])
_OP_FIELDS = ("rec", "kind", "cpu", "off", "flags", "a", "b")
_HASH_LIKE = {"hash", "lru_hash", "percpu_hash", "lru_percpu_hash", "lpm_trie"}


def _round8(n: int) -> int:
    return (n + 7) & ~7


def wait_for_programs() -> None:
    """Return once every (non-sleepable) BPF program that was running has finished.

    The kernel waits for an RCU grace period on every update of a map-in-map
    made from user space (``maybe_wait_bpf_programs``: "so that userspace, when
    we return to it, knows that all programs that could be running use the new
    map value"), and every non-sleepable BPF program runs inside an RCU
    read-side section: one update of a throwaway ARRAY_OF_MAPS is the wait."""
    inner = Map.create("array", key_dtype=np.uint32, value_dtype=np.uint32, max_entries=1, name="pybpf_sync_in")
    try:
        outer = Map.create("array_of_maps", key_dtype=np.uint32, value_dtype=np.uint32, max_entries=1,
                           inner_map=inner, name="pybpf_sync")
        try:
            outer.set_inner(0, inner)
        finally:
            outer.close()
    finally:
        inner.close()


@dataclass(frozen=True)
class Leaf:
    """One scalar field of a value (arrays unfolded): where it is and how it merges."""

    path: str        # "stats.calls", "slots[3]"
    offset: int
    width: int
    mode: str        # "add" (integer counter), "last" (compare-and-swap), "bytes" (byte by byte)
    exact: bool = True
    why: str = ""    # for a field whose merge is not exact


def leaves(dtype: np.dtype, last_value: Iterable[str] = (), *, value_size: int | None = None,
           prefix: str = "", base: int = 0) -> list[Leaf]:
    """The merge rule of every scalar field of ``dtype`` (``last_value``: paths that are not counters)."""
    last = set(last_value)
    out: list[Leaf] = []
    _walk(dtype, prefix, base, last, out)
    return out


def _walk(dtype: np.dtype, path: str, offset: int, last: set[str], out: list[Leaf]) -> None:
    if dtype.names:
        fields = dtype.fields
        assert fields is not None
        for name in dtype.names:
            sub, off = fields[name][0], fields[name][1]
            _walk(sub, f"{path}.{name}" if path else name, offset + off, last, out)
        return
    if dtype.subdtype is not None:
        base, shape = dtype.subdtype
        count = int(np.prod(shape))
        for i in range(count):
            _walk(base, f"{path}[{i}]", offset + i * base.itemsize, last, out)
        return
    width = dtype.itemsize
    named_last = path in last or path.split("[", 1)[0] in last
    if dtype.kind in "iub" and width in (1, 2, 4, 8):
        if named_last:
            if width in (4, 8) and offset % width == 0:
                out.append(Leaf(path, offset, width, "last"))
            else:
                out.append(Leaf(path, offset, width, "bytes"))
            return
        # merge.bpf.c adds 64/32-bit counters at their own (aligned) address and 16/8-bit ones by a
        # compare-and-swap of the aligned 32-bit word holding them: a field must fit that address
        aligned = offset % width == 0 if width >= 4 else offset // 4 == (offset + width - 1) // 4
        if aligned:
            out.append(Leaf(path, offset, width, "add"))
        else:  # byte by byte (the CAS ops round the offset down to their width: they would miss the field)
            out.append(Leaf(path, offset, width, "bytes", exact=False,
                            why=f"a {width * 8}-bit counter at misaligned offset {offset} cannot be added "
                                f"atomically: it takes the old version's final value"))
        return
    if dtype.kind == "f":
        # compare-and-swap where aligned, byte by byte where not: either way the old final value, so a
        # float counter (not named a last value) loses what the new version added meanwhile
        exact = named_last
        mode = "last" if width in (4, 8) and offset % width == 0 else "bytes"
        out.append(Leaf(path, offset, width, mode, exact=exact,
                        why="" if exact else "a float has no atomic add: it takes the old version's final "
                                             "value, and what the new version added meanwhile is lost"))
        return
    out.append(Leaf(path, offset, width, "bytes"))


@dataclass
class MergeResult:
    """What one merge did (the counters of ``merge.bpf.c``'s .bss, and the entries looked at)."""

    entries: int = 0      # entries with a difference since the copy
    applied: int = 0      # field operations done
    inserted: int = 0     # entries only the old version had, inserted
    kept: int = 0         # last-value fields the new version had written: kept
    missing: int = 0      # entries the new version deleted meanwhile
    failed: int = 0
    runs: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return dict(self.__dict__)


Convert = Callable[[np.ndarray, np.ndarray], "tuple[np.ndarray, np.ndarray]"]


class Merger:
    """The snapshot and the merge program of one migrated map (or global section).

    ``prepare`` (before the copy) makes the snapshot map and loads the program;
    ``record(keys, values)`` stores what the copy wrote into the new map;
    ``merge(convert)`` (after the switch and ``wait_for_programs``) reads the
    old map's final state, converts it with ``convert`` (old keys, values ->
    new keys, values) and merges the difference."""

    def __init__(self, name: str, old: Map, new: Map, snapshot: Map, program: Object, *, section: bool,
                 last_value: Iterable[str] = ()) -> None:
        self.name, self.old, self.new, self.snapshot, self.program = name, old, new, snapshot, program
        self.section = section
        self.percpu = new.type.startswith("percpu") or new.type == "lru_percpu_hash"
        self.ncpus = new.n_cpus if self.percpu else 1
        self.key_size, self.value_size = new.key_size, new.value_size
        self.slot = _round8(self.value_size) if self.percpu else self.value_size
        self.key_pad = _round8(self.key_size)
        self.leaves = leaves(_value_dtype(new), last_value)
        self.inexact = [leaf for leaf in self.leaves if not leaf.exact]
        self._records = program.maps["records"].view().view(np.uint8).reshape(
            program.maps["records"].max_entries, -1)
        self._ops = program.maps["ops"].view()
        self.result = MergeResult()

    # ---- set-up ----------------------------------------------------------------

    @staticmethod
    def snapshot_for(new: Map, name: str) -> Map:
        """An empty snapshot map for ``new``: its keys, one padded value per CPU, room for old and new keys."""
        percpu = new.type.startswith("percpu") or new.type == "lru_percpu_hash"
        ncpus = new.n_cpus if percpu else 1
        slot = _round8(new.value_size) if percpu else new.value_size
        return Map.create("hash", key_size=new.key_size, value_size=slot * ncpus,
                          max_entries=max(2 * new.max_entries, 2), flags="no_prealloc", name="pybpf_snap")

    @classmethod
    def prepare(cls, name: str, old: Map, new: Map, *, section: bool, snapshot: Map | None = None,
                last_value: Iterable[str] = ()) -> Merger:
        """Load the merge program for ``new`` (with ``snapshot``, made if not given)."""
        own_snapshot = snapshot is None
        snap = cls.snapshot_for(new, name) if snapshot is None else snapshot
        try:
            program = _load_program(new, snap)
        except BaseException:
            if own_snapshot:
                snap.close()
            raise
        return cls(name, old, new, snap, program, section=section, last_value=last_value)

    def close(self) -> None:
        """Release the program and this handle on the snapshot (a pinned snapshot stays)."""
        self._records = self._ops = None  # type: ignore[assignment]
        self.program.close()
        self.snapshot.close()

    # ---- bytes ---------------------------------------------------------------------

    def _value_bytes(self, values: np.ndarray, n: int) -> np.ndarray:
        """(n, ncpus, value_size) bytes of values as lookup_batch returns them."""
        raw = np.ascontiguousarray(values).view(np.uint8)
        return raw.reshape(n, self.ncpus, self.value_size)

    def _key_bytes(self, keys: np.ndarray, n: int) -> np.ndarray:
        return np.ascontiguousarray(keys).view(np.uint8).reshape(n, self.key_size)

    def _snap_values(self, values: np.ndarray) -> np.ndarray:
        """(n, ncpus, value_size) -> the snapshot's (n, ncpus * slot) layout."""
        n = values.shape[0]
        out = np.zeros((n, self.ncpus, self.slot), np.uint8)
        out[:, :, :self.value_size] = values
        return out.reshape(n, self.ncpus * self.slot)

    def record(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Store S: what the copy wrote into the new map (keys and values in the new map's dtypes)."""
        n = len(keys)
        if not n:
            return
        kb = self._key_bytes(keys, n)
        vb = self._snap_values(self._value_bytes(values, n))
        self.snapshot.update_batch(kb.view(f"V{self.key_size}").reshape(n),
                                   np.ascontiguousarray(vb).view(f"V{vb.shape[1]}").reshape(n))

    def _read_snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        keys, values = self.snapshot.lookup_batch()
        n = len(keys)
        kb = np.ascontiguousarray(keys).view(np.uint8).reshape(n, self.key_size)
        vb = np.ascontiguousarray(values).view(np.uint8).reshape(n, self.ncpus, self.slot)[:, :, :self.value_size]
        return kb, vb

    def _read_final(self, convert: Convert) -> tuple[np.ndarray, np.ndarray]:
        if self.section:
            keys = np.zeros(1, np.uint32)
            before = np.asarray(self.old.lookup(bytes(self.old.key_size))).reshape(1)
            _, values = convert(keys, before)
        else:
            keys, values = self.old.lookup_batch()
            keys, values = convert(keys, values)
        n = len(keys)
        return self._key_bytes(keys, n), self._value_bytes(values, n)

    # ---- the merge ---------------------------------------------------------------------

    def plan_ops(self, convert: Convert) -> tuple[np.ndarray, np.ndarray]:
        """(records, ops) that carry F - S into the new map; records are padded key + F."""
        kS, vS = self._read_snapshot()
        kF, vF = self._read_final(convert)
        nS, nF = len(kS), len(kF)
        allk = np.concatenate([kS, kF]).view(f"V{self.key_size}").reshape(nS + nF)
        uniq, inverse = np.unique(allk, return_inverse=True)
        inverse = inverse.reshape(-1)
        nu = len(uniq)
        S = np.zeros((nu, self.ncpus, self.value_size), np.uint8)
        F = np.zeros_like(S)
        in_s = np.zeros(nu, bool)
        S[inverse[:nS]] = vS
        in_s[inverse[:nS]] = True
        F[inverse[nS:]] = vF
        changed = (~in_s) | (S != F).reshape(nu, -1).any(axis=1) if nu else np.zeros(0, bool)
        rows = np.nonzero(changed)[0]
        S, F, in_s = S[rows], F[rows], in_s[rows]
        keys = uniq[rows].view(np.uint8).reshape(len(rows), self.key_size)
        n = len(rows)
        records = np.zeros((n, self._records.shape[1]), np.uint8)
        records[:, :self.key_size] = keys
        records[:, self.key_pad:self.key_pad + self.ncpus * self.slot] = self._snap_values(F)
        if not n:
            return records, np.zeros(0, _OP_DTYPE)
        insert = ~in_s if self.new.type in _HASH_LIKE else np.zeros(n, bool)
        if self.new.type == "lpm_trie":
            insert[:] = True  # a lookup finds the longest prefix: make sure the exact key is there
        parts = [_ops(np.arange(n), OP_RECORD, 0, 0, np.where(insert, REC_INSERT, 0), 0, 0, order=0)]
        for leaf in self.leaves:
            parts += self._leaf_ops(leaf, S, F)
        ops = np.concatenate(parts)
        ops = ops[np.lexsort((ops["order"], ops["rec"]))]
        out = np.zeros(len(ops), _OP_DTYPE)
        for name in _OP_FIELDS:
            out[name] = ops[name]
        return records, out

    def _leaf_ops(self, leaf: Leaf, S: np.ndarray, F: np.ndarray) -> list[np.ndarray]:
        n = S.shape[0]
        lo, w = leaf.offset, leaf.width
        if leaf.mode == "add":
            utype = np.dtype(f"<u{w}")
            fv = np.ascontiguousarray(F[:, :, lo:lo + w]).view(utype)[..., 0].astype(np.uint64)
            sv = np.ascontiguousarray(S[:, :, lo:lo + w]).view(utype)[..., 0].astype(np.uint64)
            delta = (fv - sv).sum(axis=1, dtype=np.uint64)  # modulo 2**64: adds wrap like the field
            if w < 8:
                delta &= np.uint64((1 << (8 * w)) - 1)
            rows = np.nonzero(delta)[0]
            return [_ops(rows, _ADD[w], 0, lo, 0, delta[rows], 0, order=1)]
        out = []
        if leaf.mode == "last":
            utype = np.dtype(f"<u{w}")
            fv = np.ascontiguousarray(F[:, :, lo:lo + w]).view(utype)[..., 0]
            sv = np.ascontiguousarray(S[:, :, lo:lo + w]).view(utype)[..., 0]
            rows, cpus = np.nonzero(fv != sv)
            kind = OP_CAS64 if w == 8 else OP_CAS32
            out.append(_ops(rows, kind, cpus, lo, 0, sv[rows, cpus].astype(np.uint64),
                            fv[rows, cpus].astype(np.uint64), order=2))
            return out
        for b in range(lo, lo + w):
            fv, sv = F[:, :, b], S[:, :, b]
            rows, cpus = np.nonzero(fv != sv)
            if len(rows):
                out.append(_ops(rows, OP_SET8, cpus, b, 0, sv[rows, cpus].astype(np.uint64),
                                fv[rows, cpus].astype(np.uint64), order=2))
        del n
        return out

    def merge(self, convert: Convert) -> MergeResult:
        """Carry what the old map gained since the copy into the new map (after the switch and the wait)."""
        import time

        start = time.perf_counter()
        records, ops = self.plan_ops(convert)
        result = self.result
        result.entries = len(records)
        if len(ops):
            self._run(records, ops)
        bss = self.program.bss
        for name in ("applied", "inserted", "kept", "missing", "failed"):
            setattr(result, name, int(bss[name]))
        result.seconds = time.perf_counter() - start
        if result.failed:
            raise BpfError(f"merging map {self.name!r}: {result.failed} operation(s) failed in the merge program",
                           errno.EIO)
        return result

    def _run(self, records: np.ndarray, ops: np.ndarray) -> None:
        rec_cap, op_cap = self._records.shape[0], self._ops.shape[0]
        program = self.program.programs["merge"]
        # runs end at a record boundary: a record's ops and its snapshot update go in one run
        starts = np.nonzero(ops["kind"] == OP_RECORD)[0]
        bounds = list(starts) + [len(ops)]
        i = 0
        nrec = len(starts)
        while i < nrec:
            j = i + 1
            while j < nrec and j - i < rec_cap and bounds[j + 1] - bounds[i] <= op_cap:
                j += 1
            first, last = bounds[i], bounds[j]
            chunk = ops[first:last].copy()
            base = int(chunk["rec"][0])
            chunk["rec"] -= base
            self._records[:j - i] = records[base:base + (j - i)]
            self._ops[:last - first] = chunk
            program.test_run(ctx_in=struct.pack("<II", 0, last - first))
            self.result.runs += 1
            i = j


def _ops(rows: np.ndarray, kind: int, cpu: Any, off: int, flags: Any, a: Any, b: Any, *, order: int) -> np.ndarray:
    dtype = np.dtype(_OP_DTYPE.descr + [("order", "<u1")])
    out = np.zeros(len(rows), dtype)
    out["rec"], out["kind"], out["cpu"], out["off"] = rows, kind, cpu, off
    out["flags"], out["a"], out["b"], out["order"] = flags, a, b, order
    return out


def _value_dtype(m: Map) -> np.dtype:
    dtype = m.value_dtype
    if dtype.itemsize != m.value_size:  # no BTF: raw bytes
        return np.dtype(f"V{m.value_size}")
    return dtype


def _load_program(new: Map, snapshot: Map) -> Object:
    from pybpf.upgrade.attach.base import bundled_object

    obj = open_object(bundled_object("merge"))
    try:
        percpu = new.type.startswith("percpu") or new.type == "lru_percpu_hash"
        ncpus = new.n_cpus if percpu else 1
        slot = _round8(new.value_size) if percpu else new.value_size
        key_pad = _round8(new.key_size)
        obj.maps["target"].reuse(new)
        obj.maps["snapshot"].reuse(snapshot)
        obj.maps["records"].value_size = _round8(key_pad + ncpus * slot)  # mmapped arrays: 8-byte strides
        obj.maps["records"].max_entries = _RECORDS_PER_RUN
        per_record = 1 + len(leaves(_value_dtype(new))) * ncpus + new.value_size * ncpus
        obj.maps["ops"].max_entries = max(_OPS_PER_RUN, per_record)
        obj.maps["zeros"].value_size = new.value_size
        obj.rodata["value_size"] = new.value_size
        obj.rodata["snap_off"] = key_pad
        obj.rodata["percpu"] = int(percpu)
        obj.load()
    except BaseException:
        obj.close()
        raise
    return obj


def crash_point(name: str) -> None:
    """Testing crash safety: ``PYBPF_UPGRADE_CRASH_AT=NAME`` kills this process with SIGKILL here."""
    if os.environ.get("PYBPF_UPGRADE_CRASH_AT") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
