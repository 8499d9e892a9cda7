"""Minimal BTFs: only the target types an object's CO-RE relocations need (``pybpf btf min``).

This module owns what ``bpftool gen min_core_btf`` does, over the pure engine of
:mod:`pybpf.btf.relo`: every relocation of every object is resolved against the
full target BTF in libbpf's order, and for each candidate that matched, the
minimal BTF keeps

* for a field relocation: the root type (and its typedef/qualifier chain), every
  struct/union on the access path with only the members on that path (offsets,
  sizes, bitfield positions unchanged), arrays on the path, and the accessed
  field's type as a *shell* (a struct/union keeps its name, kind and size but no
  members; pointers keep a pointee shell);
* for a type relocation (exists, size, id, matches): the matched type whole,
  with composites behind pointers as shells (what ``bpf_core_types_match``
  compares there is only name and kind);
* for an enum value relocation: the matched enum whole.

Types are renumbered in their original order; :func:`minimize` returns the map
from new ids to the full BTF's ids (a ``target_type_id`` relocation yields a new
id by construction: the only value that differs). Pure: no kernel, no libbpf.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

from pybpf.btf.relo import ENUMVAL_KINDS, FIELD_KINDS, Relocator, Spec
from pybpf.btf.types import Btf, BtfType
from pybpf.btf.write import write_btf
from pybpf.spec.core import _as_spec, relocation_inputs

__all__ = ["minimize", "MinimalBtf"]

_CHAIN = frozenset({"typedef", "volatile", "const", "restrict", "type_tag"})


@dataclasses.dataclass
class MinimalBtf:
    """The minimal BTF's bytes, and ``old_id[new_id]`` into the full BTF."""

    data: bytes
    old_id: dict[int, int]
    relocations: int
    types: int


class _Keep:
    def __init__(self, btf: Btf) -> None:
        self.btf = btf
        self.members: dict[int, set[int] | None] = {}  # composite id -> kept member indices (None: all)
        self.other: set[int] = set()
        self._deep: set[int] = set()

    def _chain(self, tid: int) -> int:
        """Keep the typedef/qualifier chain from ``tid``; return the type at its end."""
        for _ in range(256):
            if tid == 0 or self.btf.kind_of(tid) not in _CHAIN:
                return tid
            self.other.add(tid)
            tid = self.btf[tid].type or 0
        return tid

    def shell(self, tid: int) -> None:
        """Keep a type for what field compatibility and sizes look at."""
        self.mark(tid, shell=True)

    def mark(self, tid: int, shell: bool = False) -> None:
        btf = self.btf
        todo = [(tid, shell)]
        while todo:
            tid, shell = todo.pop()
            if tid == 0 or (tid, shell) in self._deep or (tid, False) in self._deep:
                continue
            self._deep.add((tid, shell))  # type: ignore[arg-type]
            k = btf.kind_of(tid)
            t = btf[tid]
            if k in ("struct", "union"):
                if shell:
                    self.members.setdefault(tid, set())
                else:
                    self.members[tid] = None
                    todo.extend((m[1], False) for m in t.members)
            elif k == "ptr":
                self.other.add(tid)
                todo.append((t.type or 0, True))
            elif k == "array":
                self.other.add(tid)
                todo.append((t.type or 0, shell))
                todo.append((t.index_type, True))
            elif k == "func_proto":
                self.other.add(tid)
                todo.append((t.type or 0, shell))
                todo.extend((p[1], shell) for p in t.params if p[1])
            else:  # int, enum, enum64, float, fwd, typedef and qualifiers, func, var
                self.other.add(tid)
                if t.type:
                    todo.append((t.type, shell))

    def member(self, tid: int, idx: int) -> None:
        kept = self.members.setdefault(tid, set())
        if kept is not None:
            kept.add(idx)

    def field_path(self, spec: Spec) -> None:
        """Keep what a matched field spec walks through (as libbpf walks it: raw indices)."""
        btf = self.btf
        tid = self._chain(spec.root_type_id)
        if not spec.raw:
            return
        for i in spec.raw[1:]:
            tid = self._chain(tid)
            t = btf[tid]
            if t.kind in ("struct", "union"):
                self.member(tid, i)
                tid = t.members[i][1]
            elif t.kind == "array":
                self.other.add(tid)
                self.shell(t.index_type)
                tid = t.type or 0
        end = self._chain(tid)
        if end and btf.kind_of(end) in ("struct", "union"):
            self.members.setdefault(end, set())
        else:
            self.shell(end)
        root = self._chain(spec.root_type_id)
        if root and btf.kind_of(root) in ("struct", "union"):
            self.members.setdefault(root, set())

    def ids(self) -> list[int]:
        return sorted(self.other | set(self.members))


def _objects_relocations(objs: Iterable[object]) -> list[tuple[Btf, list]]:  # type: ignore[type-arg]
    out = []
    for obj in objs:
        spec = _as_spec(obj)
        if spec.btf is not None:
            out.append((spec.btf, relocation_inputs(spec)))
    return out


def minimize(objs: Iterable[object], full: Btf) -> MinimalBtf:
    """The minimal BTF of ``full`` for the CO-RE relocations of ``objs`` (paths, bytes or specs)."""
    keep = _Keep(full)
    count = 0
    for local, inputs in _objects_relocations(objs):
        engine = Relocator(local, full)
        for r in inputs:
            engine.resolve(r)
            count += 1
            for spec in engine.last_matches:
                if r.kind in FIELD_KINDS:
                    keep.field_path(spec)
                elif r.kind in ENUMVAL_KINDS:
                    keep.mark(spec.root_type_id)
                else:
                    keep.mark(spec.root_type_id)
    ids = keep.ids()
    new_id = {old: i + 1 for i, old in enumerate(ids)}

    def ref(tid: int | None) -> int:
        return new_id.get(tid or 0, 0)

    types: list[BtfType] = []
    for old in ids:
        t = full[old]
        c = dataclasses.replace(t, members=list(t.members), values=list(t.values), params=list(t.params),
                                vars=list(t.vars))
        c.id = new_id[old]
        if t.kind in ("struct", "union"):
            kept = keep.members.get(old)
            members = t.members if kept is None else [m for i, m in enumerate(t.members) if i in kept]
            c.members = [(n, ref(mt), off, bits) for n, mt, off, bits in members]
        elif t.kind == "array":
            c.type, c.index_type = ref(t.type), ref(t.index_type)
        elif t.kind == "func_proto":
            c.type = ref(t.type)
            c.params = [(n, ref(p)) for n, p in t.params]
        elif t.type is not None:
            c.type = ref(t.type)
        types.append(c)
    return MinimalBtf(write_btf(types), {v: k for k, v in new_id.items()}, count, len(types))
