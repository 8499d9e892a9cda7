"""Minimal BTFs: only the target types that relocations and the pre-check need (``pybpf btf min``).

This module owns what ``bpftool gen min_core_btf`` does, over the pure engine of
:mod:`pybpf.btf.relo`, plus what :mod:`pybpf.spec.check` reads, so that an object gets the
same relocations *and the same verdicts* from the minimal BTF as from the full one.

Relocations are resolved against the full BTF in libbpf's order; for each, the target spec
libbpf uses (the first candidate that matched) is kept as bpftool keeps it:

* a field relocation keeps its root type, and along the access path each struct/union with
  only the members on the path and each member's type; pointers found there point to
  ``void`` (their pointee is never compared);
* two savings bpftool does not make, which change nothing libbpf computes: a member's type is
  kept without its typedefs and qualifiers (every CO-RE comparison of a member skips them),
  and every pointer to ``void`` is one type;
* an existence/size/id relocation keeps the type, following pointers (composites without
  members: only their name, kind and size are compared);
* a ``type_matches`` relocation keeps the type with every member, composites behind
  pointers without members; an enum value relocation keeps the enum whole.

For the pre-check: attach-point types (``btf_trace_<tp>`` typedefs, ``trace_event_raw_<tp>``
structs, FUNCs of fentry/kprobe/LSM/iterator targets) are kept for their names; a typedef
points to ``void`` and such a FUNC to one shared ``void (void)`` prototype, since neither the
check nor CO-RE reads more. kfuncs keep their prototypes (libbpf compares them), typed ksyms
their types, struct_ops types every member. Of ``enum bpf_func_id``, ``bpf_map_type``,
``bpf_prog_type`` and ``bpf_attach_type`` only the ``__MAX`` sentinel is kept (the uapi enums
are dense: a number below it exists), or, without one, the values the objects use and the
largest. ``enum bpf_func_id`` and at least one FUNC are always kept: the check takes a BTF
without them as partial (a CO-RE-only minimal BTF) and says "unknown" for what it lacks.

Types keep their original order and are renumbered; :func:`minimize` returns the map from
new ids to the full BTF's ids (a ``target_type_id`` relocation yields a new id by
construction). Pure: no kernel, no libbpf.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterable

from pybpf.btf.relo import ENUMVAL_KINDS, FIELD_KINDS, Spec, essential_name, seed_index, unseed_index
from pybpf.btf.types import Btf, BtfType
from pybpf.btf.write import write_btf
from pybpf.spec.core import Target, _as_spec, relocate
from pybpf.spec.elf import ObjectSpec

__all__ = ["minimize", "MinimalBtf", "type_count"]

_CHAIN = frozenset({"typedef", "volatile", "const", "restrict", "type_tag"})


def type_count(btf: Btf) -> int:
    """How many types a blob defines (void, id 0, is none; for split BTF, its own), as
    bpftool counts them: the one count ``btf extract``, ``btf min`` and ``check`` print."""
    return len(btf) - btf.start_id


@dataclasses.dataclass
class MinimalBtf:
    """The minimal BTF's bytes, ``old_id[new_id]`` into the full BTF, and what it holds."""

    data: bytes
    old_id: dict[int, int]
    relocations: int
    types: int  # as type_count() counts them


class _Keep:
    """The marks of bpftool's btfgen: types, and the members kept of each composite."""

    def __init__(self, btf: Btf) -> None:
        self.btf = btf
        self.types: set[int] = set()
        self.members: dict[int, set[int]] = {}
        self.enum_values: dict[int, set[str] | None] = {}  # None: every value
        self.stub_funcs: set[int] = set()  # FUNCs kept for their name: prototype void (void)
        self._seen: set[tuple[int, bool]] = set()
        self._seen_match: set[tuple[int, bool, str]] = set()

    def mark(self, tid: int, follow: bool) -> None:
        """btfgen_mark_type: the type and what it needs; pointees only when ``follow``."""
        btf = self.btf
        todo = [tid]
        while todo:
            tid = todo.pop()
            if tid == 0 or (tid, follow) in self._seen:
                continue
            self._seen.add((tid, follow))
            self.types.add(tid)
            k = btf.kind_of(tid)
            t = btf[tid]
            if k in ("enum", "enum64"):
                self.enum_values[tid] = None
            elif k == "ptr":
                if follow:
                    todo.append(t.type or 0)
            elif k == "array":
                todo += [t.type or 0, t.index_type]
            elif k == "func_proto":
                todo.append(t.type or 0)
                todo += [p for _n, p in t.params]
            elif k in _CHAIN or k in ("func", "var"):
                todo.append(t.type or 0)

    def bare(self, tid: int) -> int:
        """The type under ``tid``'s typedefs and qualifiers: all CO-RE compares of a member's
        type (field compatibility, sizes, signedness, type matches) skip them."""
        for _ in range(64):
            if tid == 0 or self.btf.kind_of(tid) not in _CHAIN:
                return tid
            tid = self.btf[tid].type or 0
        return tid

    def member(self, tid: int, idx: int) -> None:
        self.types.add(tid)
        self.members.setdefault(tid, set()).add(idx)

    def field(self, spec: Spec) -> None:
        """btfgen_record_field_relo: the root, and the access path through members and arrays."""
        btf = self.btf
        tid = spec.root_type_id
        self.mark(tid, False)
        for idx in spec.raw[1:]:
            while btf.kind_of(tid) in _CHAIN:
                tid = btf[tid].type or 0
            t = btf[tid]
            if t.kind in ("struct", "union"):
                self.member(tid, idx)
                tid = t.members[idx][1]
                self.mark(self.bare(tid), False)
            elif t.kind == "array":
                tid = t.type or 0

    def match(self, tid: int, behind_ptr: bool = False, depth: int = 0) -> None:
        """btfgen_mark_type_match: composites with every member, but not behind a pointer."""
        btf = self.btf
        while tid and depth < 64:
            depth += 1
            if (tid, behind_ptr, "match") in self._seen_match:
                return
            self._seen_match.add((tid, behind_ptr, "match"))
            self.types.add(tid)
            k = btf.kind_of(tid)
            t = btf[tid]
            if k in ("struct", "union"):
                if not behind_ptr:
                    for i, (_n, mt, _o, _b) in enumerate(t.members):
                        self.member(tid, i)
                        self.match(self.bare(mt), False, depth)
                return
            if k in ("enum", "enum64"):
                self.enum_values[tid] = None
                return
            if k in ("const", "volatile", "restrict", "typedef", "type_tag", "fwd"):
                tid = t.type or 0
                continue
            if k == "ptr":
                tid, behind_ptr = t.type or 0, True
                continue
            if k == "array":
                self.match(t.index_type, False, depth)
                tid, behind_ptr = t.type or 0, False
                continue
            if k == "func_proto":
                self.match(t.type or 0, False, depth)
                for _n, p in t.params:
                    self.match(p, False, depth)
            return

    def enum_subset(self, tid: int, names: set[str]) -> None:
        self.types.add(tid)
        kept = self.enum_values.get(tid, set())
        if kept is not None:
            self.enum_values[tid] = kept | names


def _record(keep: _Keep, kind: str, spec: Spec | None) -> None:
    if spec is None or kind == "local_type_id":
        return
    if kind in FIELD_KINDS:
        keep.field(spec)
    elif kind == "type_matches":
        keep.match(spec.root_type_id)
    elif kind in ENUMVAL_KINDS:
        keep.mark(spec.root_type_id, False)
    else:
        keep.mark(spec.root_type_id, True)


def _record_checks(keep: _Keep, target: Target, kfuncs: set[str]) -> None:
    """What the pre-check found in the target, kept so that it finds it in the minimal BTF."""
    from pybpf.spec.check import target_facts
    facts = target_facts(target)
    full = keep.btf
    for (name, kind), (btf, tid) in facts.found.items():
        if btf is not full:
            continue
        if kind == "func" and name not in kfuncs:
            keep.types.add(tid)
            keep.stub_funcs.add(tid)
        elif kind == "func":
            keep.mark(tid, True)  # the prototype libbpf compares, pointees without members
        elif kind in ("struct", "union"):
            keep.types.add(tid)
            if tid in facts.whole:
                for i, (_n, mt, _o, _b) in enumerate(full[tid].members):
                    keep.member(tid, i)
                    keep.mark(keep.bare(mt), False)
        elif kind == "enum":
            values = full[tid].values
            sentinel = {n for n, _v in values if n.startswith("__")}
            if sentinel:
                keep.enum_subset(tid, sentinel)
            else:
                asked = facts.asked.get(name, set())
                top = max(values, key=lambda nv: nv[1])[0] if values else ""
                keep.enum_subset(tid, {n for n, v in values if v in asked} | ({top} if top else set()))
        elif kind == "typedef":
            keep.types.add(tid)  # its type stays unmarked: void
        else:
            keep.mark(tid, False)


def minimize(objs: Iterable[object], full: Btf, *, checks: bool = False) -> MinimalBtf:
    """The minimal BTF of ``full`` for the CO-RE relocations of ``objs`` (paths, bytes or specs)
    and, with ``checks``, for what the pre-check reads."""
    if checks:  # the pre-check's lookups: only for --checks
        from pybpf.spec.check import check_object, target_facts
    keep = _Keep(full)
    target = Target(full.name or "<btf>", full)
    count = 0
    kfuncs: set[str] = set()
    # the objects' BTF is read here by pybpf's own engine only, never by libbpf: unvalidated
    # (what minimize() writes is validated by its caller, `btf min`)
    specs = [obj if isinstance(obj, ObjectSpec) else ObjectSpec.from_file(
        obj, validate=checks, core_only=not checks) if isinstance(obj, (str, os.PathLike)) else _as_spec(obj)
        for obj in objs]
    seeded = not checks and seed_index(  # the relocations' candidates: all it looks up in the full BTF
        full, {essential_name(s.btf._name_of(r.type_id)) for s in specs if s.btf is not None
               for r in s.core_relocations if 0 < r.type_id < len(s.btf)})
    try:
        for spec in specs:
            chosen: list[tuple[str, Any]] = []
            results = relocate(spec, target, chosen, dead_code=checks)  # which code is dead: the check's
            count += len(chosen)
            for kind, tspec in chosen:
                _record(keep, kind, tspec)
            if checks:
                check_object(spec, target, results=results)
                btf = spec.btf
                if btf is not None and ".ksyms" in btf.datasecs():
                    kfuncs |= {btf[v].name for v, _o, _s in btf[btf._datasec_id(".ksyms")].vars
                               if btf.kind_of(v) == "func"}
    finally:
        if seeded:
            unseed_index(full)
    if checks:
        # a complete-enough BTF for the check has enum bpf_func_id and some FUNC (a partial one,
        # as a CO-RE-only minimal BTF, gets "unknown" where it lacks something): keep both
        t = target_facts(target)
        t.find("bpf_func_id", "enum")
        if not any(kind == "func" for (_n, kind) in t.found):
            first = next((i for i in range(1, len(full)) if full.kind_of(i) == "func"), 0)
            if first:
                t.find(full[first].name, "func")
        _record_checks(keep, target, kfuncs)
    return _emit(keep, count)


def _emit(keep: _Keep, count: int) -> MinimalBtf:
    full = keep.btf
    # pointers whose pointee is not kept all become `void *`: one such pointer serves them all
    void_ptrs = sorted(t for t in keep.types if full.kind_of(t) == "ptr" and (full[t].type or 0) not in keep.types)
    shared_ptr = void_ptrs[0] if void_ptrs else 0
    ids = sorted(keep.types - set(void_ptrs[1:]))
    new_id = {old: i + 1 for i, old in enumerate(ids)}
    for p in void_ptrs[1:]:
        new_id[p] = new_id[shared_ptr]
    stub = len(ids) + 1 if keep.stub_funcs else 0

    def ref(tid: int | None) -> int:
        return new_id.get(tid or 0, 0)

    def member_ref(tid: int) -> int:
        bare = keep.bare(tid)
        return ref(bare) if bare in new_id else ref(tid)

    types: list[BtfType] = []
    for old in ids:
        t = full[old]
        c = dataclasses.replace(t, members=list(t.members), values=list(t.values), params=list(t.params),
                                vars=list(t.vars))
        c.id = new_id[old]
        if t.kind in ("struct", "union"):
            kept = keep.members.get(old, set())
            c.members = [(n, member_ref(mt), off, bits) for i, (n, mt, off, bits) in enumerate(t.members)
                         if i in kept]
            c.vlen = len(c.members)
        elif t.kind in ("enum", "enum64"):
            names = keep.enum_values.get(old)
            if names is not None:
                c.values = [(n, v) for n, v in t.values if n in names]
                c.vlen = len(c.values)
        elif t.kind == "array":
            c.type, c.index_type = ref(t.type), ref(t.index_type)
        elif t.kind == "func_proto":
            c.type = ref(t.type)
            c.params = [(n, ref(p)) for n, p in t.params]
        elif t.kind == "func" and old in keep.stub_funcs:
            c.type = stub
        elif t.kind == "ptr" and old == shared_ptr:
            c.type = 0
        elif t.type is not None:
            c.type = ref(t.type)
        types.append(c)
    if stub:
        types.append(BtfType(stub, "func_proto", ""))
    old_id = {new: old for old, new in new_id.items() if old not in void_ptrs[1:]}
    return MinimalBtf(write_btf(types), old_id, count, len(types))
