"""The pre-check: will an object load and attach on a target kernel? Read from the target's BTF.

This module owns what ``pybpf check`` and :func:`pybpf.check` say about an object on a
target kernel, beyond the CO-RE relocations of :mod:`pybpf.spec.core`:

* **attach targets**: ``tp_btf``/``raw_tp`` need the ``btf_trace_<name>`` typedef;
  fentry/fexit/fmod_ret need the ``FUNC``, LSM programs ``bpf_lsm_<hook>``, iterators
  ``bpf_iter_<target>``; a tracepoint needs ``trace_event_raw_<name>`` (or its
  ``btf_trace_`` typedef), else it is *not verifiable from BTF*; a kprobe needs the
  ``FUNC`` (its absence is only a hint: kallsyms has symbols BTF lacks); struct_ops
  maps need ``struct <ops>`` and ``struct bpf_struct_ops_<ops>`` with every member;
* **helpers**: every helper call of every program (and of the subprograms it calls),
  against the target's ``enum bpf_func_id``;
* **map, program and attach types** against ``enum bpf_map_type``, ``bpf_prog_type`` and
  ``bpf_attach_type``;
* **kfuncs and typed ksyms**: the ``FUNC``/``VAR`` in the target, prototypes compared
  as libbpf compares them;
* **relocations**, from :func:`pybpf.spec.core.relocate`.

A missing helper, kfunc or poisoned relocation is harmless in code no path reaches once
libbpf has patched the object (a guard such as ``bpf_core_enum_value_exists`` or
``bpf_ksym_exists``): :mod:`pybpf.spec.reach` decides. Each finding names the program,
the function and instruction, the source line (``.BTF.ext`` line info), what the target
lacks and what would fix it. Verdicts are ``ok``, ``fails`` or ``unknown`` (what BTF
cannot tell). Every target BTF is validated (:func:`pybpf.btf.validate.validate_btf`, the
check ``btf_custom_path`` gets) before any verdict. Pure: no kernel, no root, no libbpf.
"""

from __future__ import annotations

import bisect
import dataclasses
import fnmatch
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from pybpf.btf.relo import RelocResult, _types_are_compat, essential_name
from pybpf.btf.types import Btf
from pybpf.kinds import AttachType
from pybpf.spec.core import (
    Target, _as_spec, _function_ranges, kernel_target, load_target, patch_relocations, relocate,
)
from pybpf.errors import BpfError, ObjectFormatError
from pybpf.spec.elf import ObjectSpec
from pybpf.spec.helpers import helper_name
from pybpf.spec.reach import reachable

__all__ = ["Finding", "check", "check_object", "matrix", "target_facts", "VERDICTS"]

VERDICTS = ("ok", "unknown", "fails")  # in increasing severity
_STT_SECTION = 3
_STB_WEAK = 2
_CALL = 0x85
_LD_IMM64 = 0x18
_PSEUDO_CALL = 1
_SYSCALL_PREFIXES = {"x86_64": ("__x64_sys_",), "aarch64": ("__arm64_sys_",), "s390x": ("__s390x_sys_",),
                     "riscv64": ("__riscv_sys_",), "ppc64le": ("sys_",), "loongarch64": ("sys_",)}


@dataclass
class Finding:
    """One thing the check looked at on one target, and what it concluded."""

    check: str  # attach, helper, kfunc, ksym, map_type, prog_type, attach_type, struct_ops, relocation
    verdict: str  # ok, fails, unknown
    what: str  # what the object needs ("helper bpf_cgrp_storage_get (#210)")
    missing: str = ""  # what the target lacks, or why BTF cannot tell
    fix: str = ""  # what would make it run
    program: str = ""  # "" for what concerns the whole object
    function: str = ""  # the function holding the instruction (a program or a subprogram)
    insn: int | None = None  # instruction index within ``function``
    line: str | None = None  # "file.c:42: source text"

    def as_dict(self) -> dict[str, Any]:
        """Plain data (``pybpf check --json``)."""
        return {"check": self.check, "verdict": self.verdict, "what": self.what, "missing": self.missing,
                "fix": self.fix, "program": self.program, "function": self.function, "insn": self.insn,
                "line": self.line}

    def message(self) -> str:
        """One line: where, what, why, and the fix."""
        where = ""
        if self.insn is not None:
            fn = f" of `{self.function}`" if self.function and self.function != self.program else ""
            where = f" at instruction {self.insn}{fn}"
            if self.line:
                where += f" ({self.line})"
        text = f"{self.what}{where}: {self.missing}" if self.missing else f"{self.what}{where}"
        return f"{text}; {self.fix}" if self.fix else text


# ---- the object, once per object ------------------------------------------------------------

@dataclass
class _Func:
    section: str
    name: str
    start: int  # byte offset in the section
    size: int
    helpers: list[tuple[int, int]] = field(default_factory=list)  # (insn, helper id)
    kfuncs: list[tuple[int, str]] = field(default_factory=list)  # (insn, extern name)
    callees: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class _Extern:
    name: str
    kind: str  # func or var
    type_id: int  # local FUNC_PROTO (func) or the variable's type (var; 0: typeless)
    weak: bool


class _ObjectFacts:
    """What the object needs from a kernel, independent of any target."""

    def __init__(self, spec: ObjectSpec) -> None:
        self.spec = spec
        self.funcs: dict[tuple[str, str], _Func] = {}
        ranges = _function_ranges(spec)
        self._by_section: dict[str, list[tuple[int, int, str]]] = {}
        for (sec, name), (start, size) in ranges.items():
            self.funcs[(sec, name)] = _Func(sec, name, start, size)
            self._by_section.setdefault(sec, []).append((start, size, name))
        for v in self._by_section.values():
            v.sort()
        self.externs = self._externs()
        self._scan()
        self._lines: dict[str, tuple[list[int], list[Any]]] = {}
        for li in sorted(spec.line_info, key=lambda x: (x.section, x.insn_offset)):
            offs, recs = self._lines.setdefault(li.section, ([], []))
            offs.append(li.insn_offset)
            recs.append(li)

    def _externs(self) -> dict[str, _Extern]:
        spec, btf = self.spec, self.spec.btf
        out: dict[str, _Extern] = {}
        if btf is None or ".ksyms" not in btf.datasecs():
            return out
        weak = {name for name, _v, _s, _t, bind, shndx in spec._syms if bind == _STB_WEAK and shndx == -1}
        for tid, _off, _size in btf[btf._datasec_id(".ksyms")].vars:
            t = btf[tid]
            if t.kind == "func":
                out[t.name] = _Extern(t.name, "func", t.type or 0, t.name in weak)
            elif t.kind == "var":
                target = btf.resolve(t.type or 0)
                out[t.name] = _Extern(t.name, "var", 0 if btf.kind_of(target) == "void" else t.type or 0,
                                      t.name in weak)
        return out

    def _func_at(self, section: str, offset: int) -> str | None:
        funcs = self._by_section.get(section, [])
        i = bisect.bisect_right(funcs, (offset, 1 << 62, "")) - 1
        if i >= 0 and funcs[i][0] <= offset < funcs[i][0] + max(funcs[i][1], 8):
            return funcs[i][2]
        return None

    def _relocs(self, section: str) -> dict[int, tuple[str, int, int, int]]:
        """ELF relocations of ``section``: byte offset -> (symbol, value, type, section index)."""
        sec = self.spec.sections.get(".rel" + section)
        out: dict[int, tuple[str, int, int, int]] = {}
        if sec is None or sec.type != "SHT_REL":
            return out
        syms = self.spec._syms
        for r_offset, r_info in struct.iter_unpack("<QQ", sec.data[:len(sec.data) // 16 * 16]):
            idx = r_info >> 32
            if 0 <= idx < len(syms):
                name, value, _size, typ, _bind, shndx = syms[idx]
                out[r_offset] = (name, value, typ, shndx)
        return out

    def _scan(self) -> None:
        spec = self.spec
        secs = spec._secs
        for sec_name in {f.section for f in self.funcs.values()}:
            data = spec.sections[sec_name].data
            relocs = self._relocs(sec_name)
            for f in (f for f in self.funcs.values() if f.section == sec_name):
                end = min(f.start + f.size, len(data))
                pc = f.start
                while pc + 8 <= end:
                    code, regs, _off, imm = struct.unpack_from("<BBhi", data, pc)
                    src = regs >> 4
                    k = (pc - f.start) // 8
                    rel = relocs.get(pc)
                    if code == _CALL:
                        if rel is not None and rel[3] == -1 and rel[0] in self.externs:
                            f.kfuncs.append((k, rel[0]))
                        elif src == 0 and rel is None:
                            f.helpers.append((k, imm))
                        elif src == _PSEUDO_CALL:
                            if rel is not None and 0 <= rel[3] < len(secs):
                                tsec, toff = secs[rel[3]].name, rel[1] + (imm + 1) * 8
                            else:
                                tsec, toff = sec_name, pc + (imm + 1) * 8
                            callee = self._func_at(tsec, toff)
                            if callee is not None and callee != f.name:
                                f.callees.add((tsec, callee))
                    elif code == _LD_IMM64 and rel is not None:
                        # a callback (bpf_loop, for_each_map_elem): its function is part of the program
                        if 0 <= rel[3] < len(secs) and secs[rel[3]].flags & 0x4:
                            off = rel[1] + (imm if rel[2] == _STT_SECTION else 0)
                            callee = self._func_at(secs[rel[3]].name, off)
                            if callee is not None:
                                f.callees.add((secs[rel[3]].name, callee))
                    pc += 16 if code == _LD_IMM64 else 8

    def closure(self, section: str, name: str) -> list[_Func]:
        """A program's function and every subprogram it calls, transitively (what libbpf appends)."""
        seen = {(section, name)}
        todo = [(section, name)]
        out = []
        while todo:
            key = todo.pop()
            f = self.funcs.get(key)
            if f is None:
                continue
            out.append(f)
            for c in sorted(f.callees):
                if c not in seen:
                    seen.add(c)
                    todo.append(c)
        return out

    def line(self, section: str, byte_offset: int) -> str | None:
        """``file:line: text`` of the line info covering an instruction."""
        idx = self._lines.get(section)
        if idx is None:
            return None
        i = bisect.bisect_right(idx[0], byte_offset) - 1
        if i < 0:
            return None
        li = idx[1][i]
        text = " ".join(li.line.split())
        return f"{os.path.basename(li.file_name)}:{li.line_num}: {text}" if text else \
            f"{os.path.basename(li.file_name)}:{li.line_num}"


def _object_facts(spec: ObjectSpec) -> _ObjectFacts:
    facts = getattr(spec, "_check_facts", None)
    if facts is None:
        facts = _ObjectFacts(spec)
        spec._check_facts = facts  # type: ignore[attr-defined]
    return facts


# ---- the target, once per target ------------------------------------------------------------

class _TargetFacts:
    """Lookups in a target's BTF (vmlinux, then module BTFs for the running kernel)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.btfs: list[Btf] = [target.btf, *target.modules]
        self._enums: dict[str, tuple[set[int], int] | None] = {}
        # what the checks found and asked, for the minimal BTF that must give the same verdicts
        self.found: dict[tuple[str, str], tuple[Btf, int]] = {}
        self.asked: dict[str, set[int]] = {}
        self.whole: set[int] = set()  # structs whose every member a check reads (struct_ops)
        # every kernel's BTF has enum bpf_func_id and FUNCs; one without is partial (a minimal
        # BTF made for CO-RE, by bpftool or `btf min`): what it lacks, the kernel may have
        self.partial = self.find("bpf_func_id", "enum") is None or not any(
            b.kind_counts().get("func") for b in self.btfs)

    def find(self, name: str, kind: str) -> tuple[Btf, int] | None:
        hit = self.found.get((name, kind))
        if hit is not None:
            return hit
        for btf in self.btfs:
            for tid in btf.ids_named(name):
                if btf.kind_of(tid) == kind:
                    self.found[(name, kind)] = (btf, tid)
                    return btf, tid
        return None

    def names(self, kind: str, pattern: str) -> bool:
        """Whether some type of ``kind`` has a name matching the glob ``pattern``."""
        for btf in self.btfs:
            for name, ids in btf._name_index().items():
                if fnmatch.fnmatchcase(name, pattern) and any(btf.kind_of(t) == kind for t in ids):
                    self.find(name, kind)
                    return True
        return False

    def enum(self, name: str) -> tuple[set[int], int] | None:
        """(values, limit) of a uapi enum: a number is known when it is a value, or below the
        ``__MAX`` sentinel (the uapi enums are dense); None when the BTF has no such enum."""
        if name not in self._enums:
            found = self.find(name, "enum")
            if found is None:
                self._enums[name] = None
            else:
                btf, tid = found
                values = btf[tid].values
                sentinel = [v for n, v in values if n.startswith("__")]
                real = {v for n, v in values if not n.startswith("__")}
                self._enums[name] = (real, max(sentinel) if sentinel else max(real, default=-1) + 1)
        return self._enums[name]


def target_facts(target: Target) -> _TargetFacts:
    """What the checks looked up in ``target`` so far (``found``, ``asked``, ``whole``)."""
    return _target_facts(target)


def _target_facts(target: Target) -> _TargetFacts:
    facts = target.cache.get("check")
    if facts is None:
        facts = _TargetFacts(target)
        target.cache["check"] = facts
    return facts  # type: ignore[no-any-return]


def _known(t: _TargetFacts, enum: str, number: int) -> bool | None:
    t.asked.setdefault(enum, set()).add(number)
    e = t.enum(enum)
    if e is None:
        return None
    values, limit = e
    return number in values or 0 <= number < limit


def _enum_end(t: _TargetFacts, enum: str) -> str:
    e = t.enum(enum)
    if e is None:
        return ""
    values, limit = e
    last = max(max(values, default=0), limit - 1)
    return f"this target's enum {enum} ends at {last}"


# ---- the checks -----------------------------------------------------------------------------

def _attach_finding(spec: ObjectSpec, prog: Any, t: _TargetFacts) -> Finding | None:
    """What the program's attach point needs from the target (None: nothing to check)."""
    sec, target = prog.section.lstrip("?"), prog.attach_target
    ptype, atype = prog.prog_type, prog.expected_attach_type
    name = prog.name
    if not target:
        return None
    what = f"attach target {target!r} ({sec.split('/')[0]})"
    if atype == "trace_raw_tp" or ptype in ("raw_tracepoint", "raw_tracepoint_writable"):
        tp = target
        if t.find(f"btf_trace_{tp}", "typedef"):
            return Finding("attach", "ok", what, program=name)
        return Finding("attach", "fails", what, f"no tracepoint {tp}: the target's BTF has no typedef btf_trace_{tp}",
                       "attach to a tracepoint this kernel has, or require a kernel that has this one", program=name)
    if atype in ("trace_fentry", "trace_fexit", "modify_return"):
        fn = target.split(":", 1)[-1]
        if t.find(fn, "func"):
            return Finding("attach", "ok", what, program=name)
        return Finding("attach", "fails", what, f"no function {fn} in the target's BTF (inlined, renamed or newer)",
                       "attach to a function this kernel has (a kprobe on a caller, a tracepoint), or require a "
                       "kernel that has it", program=name)
    if atype in ("lsm_mac", "lsm_cgroup"):
        if t.find(f"bpf_lsm_{target}", "func"):
            return Finding("attach", "ok", what, program=name)
        return Finding("attach", "fails", what, f"no LSM hook {target}: the target's BTF has no FUNC bpf_lsm_{target}",
                       "use a hook this kernel has, or require a kernel that has this one", program=name)
    if atype == "trace_iter":
        if t.find(f"bpf_iter_{target}", "func"):
            return Finding("attach", "ok", what, program=name)
        return Finding("attach", "fails", what, f"no iterator {target}: the target's BTF has no FUNC bpf_iter_{target}",
                       "require a kernel with this iterator", program=name)
    if ptype == "tracepoint":
        tp = target.rsplit("/", 1)[-1]
        if t.find(f"trace_event_raw_{tp}", "struct") or t.find(f"btf_trace_{tp}", "typedef"):
            return Finding("attach", "ok", what, program=name)
        why = "not verifiable from BTF: syscall tracepoints have no BTF type" if target.startswith("syscalls/") \
            else f"not verifiable from BTF: no trace_event_raw_{tp} or btf_trace_{tp} (a module's, or missing)"
        if target.startswith("syscalls/"):
            call = tp.removeprefix("sys_enter_").removeprefix("sys_exit_")
            if _syscall_exists(t, call):
                return Finding("attach", "ok", what, program=name)
            why = f"not verifiable from BTF: no function for syscall {call} either"
        return Finding("attach", "unknown", what, why, "check /sys/kernel/tracing/events on such a kernel",
                       program=name)
    if ptype == "kprobe" and sec.split("/")[0] in ("kprobe", "kretprobe", "kprobe.multi", "kretprobe.multi",
                                                   "ksyscall", "kretsyscall"):
        kind = sec.split("/")[0]
        if kind in ("ksyscall", "kretsyscall"):
            if _syscall_exists(t, target):
                return Finding("attach", "ok", what, program=name)
            return Finding("attach", "unknown", what, f"no syscall function for {target} in BTF (a hint only: "
                           "kallsyms decides)", "check /proc/kallsyms on such a kernel", program=name)
        fn = target.split("+", 1)[0]
        if kind.endswith(".multi"):
            if t.names("func", fn.split(":", 1)[-1]):
                return Finding("attach", "ok", what, program=name)
        elif t.find(fn, "func"):
            return Finding("attach", "ok", what, program=name)
        return Finding("attach", "unknown", what, f"no FUNC {fn} in the target's BTF: a hint only (static and "
                       "inlined functions, and some symbols, are in kallsyms but not in BTF)",
                       "check /proc/kallsyms on such a kernel", program=name)
    return None


def _syscall_exists(t: _TargetFacts, call: str) -> bool:
    prefixes = _SYSCALL_PREFIXES.get(os.uname().machine, ()) + ("__se_sys_", "__do_sys_", "sys_")
    return any(t.find(p + call, "func") for p in prefixes)


def _type_findings(spec: ObjectSpec, t: _TargetFacts) -> tuple[list[Finding], dict[str, list[Finding]]]:
    """Map types (object-wide), program and attach types (per program)."""
    objwide: list[Finding] = []
    per_prog: dict[str, list[Finding]] = {}
    maps = []
    for m in spec.maps:
        maps.append(m)
        if m.inner is not None:
            maps.append(m.inner)
    for m in maps:
        if m.internal:
            continue
        known = _known(t, "bpf_map_type", m.type_id)
        what = f"map {m.name}: BPF_MAP_TYPE_{m.type.upper()} ({m.type_id})"
        if known is None:
            objwide.append(Finding("map_type", "unknown", what, "the target's BTF has no enum bpf_map_type"))
        elif not known:
            objwide.append(Finding("map_type", "fails", what, f"no such map type: {_enum_end(t, 'bpf_map_type')}",
                                   "use a map type this kernel has, or require a kernel that has this one "
                                   "(libbpf stops the whole load at map creation)"))
    for p in spec.programs:
        out = per_prog.setdefault(p.name, [])
        if p.prog_type:
            known = _known(t, "bpf_prog_type", p.prog_type_id)
            what = f"program type BPF_PROG_TYPE_{p.prog_type.upper()} ({p.prog_type_id})"
            if known is False:
                out.append(Finding("prog_type", "fails", what,
                                   f"no such program type: {_enum_end(t, 'bpf_prog_type')}",
                                   "require a kernel that has it", program=p.name))
            elif known is None:
                out.append(Finding("prog_type", "unknown", what, "the target's BTF has no enum bpf_prog_type",
                                   program=p.name))
        if p.expected_attach_type:
            try:
                number = int(AttachType.parse(p.expected_attach_type))
            except ValueError:
                continue
            known = _known(t, "bpf_attach_type", number)
            what = f"attach type BPF_{p.expected_attach_type.upper()} ({number})"
            if known is False:
                out.append(Finding("attach_type", "fails", what,
                                   f"no such attach type: {_enum_end(t, 'bpf_attach_type')}",
                                   "require a kernel that has it", program=p.name))
    return objwide, per_prog


def _struct_ops_findings(spec: ObjectSpec, t: _TargetFacts) -> list[Finding]:
    """Each struct_ops map needs its ops struct and ``bpf_struct_ops_<ops>`` in the kernel, and
    every member the object sets (a program or non-zero data)."""
    out: list[Finding] = []
    for ops in getattr(spec, "struct_ops", []):
        what = f"struct_ops map {ops.name}: struct {ops.ops_type}"
        kern = t.find(ops.ops_type, "struct")
        if kern is None or t.find(f"bpf_struct_ops_{ops.ops_type}", "struct") is None:
            missing = f"no struct {ops.ops_type}" if kern is None else f"no struct bpf_struct_ops_{ops.ops_type}"
            out.append(Finding("struct_ops", "fails", what, f"{missing} in the target's BTF: the kernel cannot "
                               "register these ops", "require a kernel with these struct_ops"))
            continue
        kb, kid = kern
        t.whole.add(kid)
        have = {m[0] for m in kb[kid].members}
        local = spec.btf[spec.btf.find(ops.ops_type, "struct")].members if spec.btf is not None else []
        used = set(ops.programs) | set(ops.data)
        set_missing = sorted(m for m in used if m not in have)
        unset_missing = sorted(m[0] for m in local if m[0] and m[0] not in have and m[0] not in used)
        if set_missing:
            out.append(Finding("struct_ops", "fails", what, f"the target's struct {ops.ops_type} has no "
                               f"{', '.join(set_missing)}, which the object sets",
                               "leave them unset where the kernel lacks them, or require a kernel that has them"))
        elif unset_missing:
            out.append(Finding("struct_ops", "unknown", what, f"the target's struct {ops.ops_type} lacks "
                               f"{', '.join(unset_missing)} (unset here): libbpf up to 1.2 refuses the map, "
                               "later versions skip such members", "use libbpf >= 1.3 on such kernels"))
        else:
            out.append(Finding("struct_ops", "ok", what))
    return out


@dataclass
class _ExternState:
    found: bool
    finding: Finding | None  # object-wide


def _extern_states(spec: ObjectSpec, facts: _ObjectFacts, t: _TargetFacts) -> dict[str, _ExternState]:
    out: dict[str, _ExternState] = {}
    btf = spec.btf
    for name, ext in facts.externs.items():
        kind = "func" if ext.kind == "func" else "var"
        label = "kfunc" if kind == "func" else "ksym"
        what = f"{label} {name}"
        found = t.find(name, kind) or (t.find(essential_name(name), kind) if essential_name(name) != name else None)
        if kind == "var" and not ext.type_id:  # typeless: libbpf reads /proc/kallsyms
            verdict = "ok" if ext.weak else "unknown"
            out[name] = _ExternState(True, Finding("ksym", verdict, what, "" if ext.weak else
                                     "typeless ksym: resolved from /proc/kallsyms at load, not from BTF"))
            continue
        if found is None:
            if ext.weak:
                out[name] = _ExternState(False, None)  # judged at each use: guarded or not
            else:
                out[name] = _ExternState(False, Finding(
                    label, "fails", what, f"not in the target's BTF: libbpf stops the load (extern ({kind} ksym) "
                    f"'{name}': not found in kernel BTF)",
                    f"declare it __weak and guard its use with bpf_ksym_exists({name}), or require a kernel "
                    "that has it"))
            continue
        kb, kid = found
        assert btf is not None
        ktype = kb[kid].type or 0
        local = ext.type_id
        ok = _types_are_compat(btf, local, kb, ktype) > 0 if local else True
        if not ok:
            out[name] = _ExternState(True, Finding(
                label, "fails", what, f"its prototype differs from the target's ({kb.c_name(ktype)})",
                "declare it as this kernel does (libbpf refuses an incompatible extern)"))
        else:
            out[name] = _ExternState(True, Finding(label, "ok", what))
    return out


def _patched(spec: ObjectSpec, f: _Func, results: list[RelocResult], externs: dict[str, _ExternState]) -> bytes:
    """The function as the verifier gets it, for reachability (weak ksyms the target lacks are 0)."""
    zero = frozenset(name for name, st in externs.items() if not st.found)
    return patch_relocations(spec, f.section, f.name, results, zero)


def check_object(obj: Any, target: Target, *, strict: bool = False,
                 results: list[RelocResult] | None = None) -> dict[str, Any]:
    """Every check of one object on one (validated) target: the ``targets[]`` entry of
    :func:`check`'s document. ``results``: the object's relocations on this target, when
    the caller has them already."""
    spec = _as_spec(obj)
    facts = _object_facts(spec)
    t = _target_facts(target)
    if results is None:
        results = relocate(spec, target)
    externs = _extern_states(spec, facts, t)
    objwide, per_prog = _type_findings(spec, t)
    objwide += _struct_ops_findings(spec, t)
    objwide += [s.finding for s in externs.values() if s.finding is not None]
    objwide += [Finding("relocation", "fails", f"CO-RE relocation #{r.index} ({r.kind} {r.path})",
                        f"{r.reason}; libbpf stops the whole load", "guard the access with "
                        "bpf_core_field_exists()/bpf_core_type_exists(), or fix the type",
                        program=r.program, function=r.program, insn=r.insn,
                        line=facts.line(r.section, _fstart(facts, r) + 8 * r.insn))
                for r in results if r.fatal]
    # per function: what libbpf would hand the verifier, and which bad instructions it reaches
    bad_reached: dict[tuple[str, str], set[int]] = {}
    for f in facts.funcs.values():
        targets = {k for k, h in f.helpers if _known(t, "bpf_func_id", h) is False}
        targets |= {k for k, name in f.kfuncs if not externs.get(name, _ExternState(True, None)).found}
        targets |= {r.insn for r in results if r.poisoned and r.section == f.section and r.program == f.name}
        if targets:
            bad_reached[(f.section, f.name)] = reachable(_patched(spec, f, results, externs), targets)
    if t.partial:
        objwide = [_partial(x) for x in objwide]
        per_prog = {k: [_partial(x) for x in v] for k, v in per_prog.items()}
    fatal = any(x.verdict == "fails" for x in objwide)
    programs = []
    names = [p.name for p in spec.programs]
    sections = {p.name: p.section for p in spec.programs}
    for r in results:  # relocations in functions that are no program's (kept as before)
        if r.program not in names:
            names.append(r.program)
    for name in names:
        prog = next((p for p in spec.programs if p.name == name), None)
        findings: list[Finding] = list(per_prog.get(name, []))
        if prog is not None:
            a = _attach_finding(spec, prog, t)
            if a is not None:
                findings.append(a)
            funcs = facts.closure(prog.section, prog.name)
        else:
            funcs = [f for f in facts.funcs.values() if f.name == name]
        for f in funcs:
            findings += _code_findings(f, name, facts, t, externs, results, bad_reached.get((f.section, f.name),
                                                                                           set()))
        if t.partial:
            findings = [_partial(x) for x in findings]
        mine = [r for r in results if r.program == name]
        programs.append(_program_entry(name, sections.get(name, ""), findings, mine, fatal, objwide, strict))
    worst = _worst([p["verdict"] for p in programs if p["autoload"]] + [x.verdict for x in objwide])
    return {"btf": target.name, "label": target.label, "verdict": worst, "ok": _ok(worst, strict),
            "findings": [x.as_dict() for x in objwide], "programs": programs}


def _partial(f: Finding) -> Finding:
    """On a partial BTF a missing attach point, kfunc or ksym says nothing about the kernel."""
    if f.verdict != "fails" or f.check not in ("attach", "kfunc", "ksym", "struct_ops"):
        return f
    return dataclasses.replace(f, verdict="unknown", missing=f"{f.missing} (this BTF is partial: it has no "
                               "FUNC or no enum bpf_func_id, as a minimal BTF made for CO-RE; the kernel "
                               "may have it)")


def _fstart(facts: _ObjectFacts, r: RelocResult) -> int:
    f = facts.funcs.get((r.section, r.program))
    return f.start if f is not None else 0


def _code_findings(f: _Func, prog: str, facts: _ObjectFacts, t: _TargetFacts, externs: dict[str, _ExternState],
                   results: list[RelocResult], reached: set[int]) -> list[Finding]:
    out = []
    for k, h in f.helpers:
        known = _known(t, "bpf_func_id", h)
        if known is not False:
            continue
        name = helper_name(h)
        what = f"helper {name} (#{h})"
        line = facts.line(f.section, f.start + 8 * k)
        if k in reached:
            out.append(Finding("helper", "fails", what, f"not in this kernel: {_enum_end(t, 'bpf_func_id')}",
                               f"guard the call with bpf_core_enum_value_exists(enum bpf_func_id, "
                               f"BPF_FUNC_{name.removeprefix('bpf_')}), use another helper, or require a kernel "
                               f"that has it", program=prog, function=f.name, insn=k, line=line))
        else:
            out.append(Finding("helper", "ok", what, "missing on this target, but no path reaches the call "
                               "(guarded)", program=prog, function=f.name, insn=k, line=line))
    for k, name in f.kfuncs:
        st = externs.get(name)
        if st is None or st.found or st.finding is not None:  # found, or strong: the whole load fails
            continue
        line = facts.line(f.section, f.start + 8 * k)
        if k in reached:
            out.append(Finding("kfunc", "fails", f"kfunc {name}", "not in the target's BTF (declared __weak, but "
                               "the call is reachable)", f"guard the call with bpf_ksym_exists({name}), or require "
                               "a kernel that has it", program=prog, function=f.name, insn=k, line=line))
        else:
            out.append(Finding("kfunc", "ok", f"kfunc {name}", "missing on this target, but no path reaches the "
                               "call (guarded)", program=prog, function=f.name, insn=k, line=line))
    for r in results:
        if not r.poisoned or r.section != f.section or r.program != f.name:
            continue
        line = facts.line(f.section, f.start + 8 * r.insn)
        what = f"CO-RE relocation #{r.index} ({r.kind} {r.path})"
        if r.insn in reached:
            out.append(Finding("relocation", "fails", what, f"{r.reason}: program `{prog}` will fail at "
                               f"instruction {r.insn}", "guard the access with bpf_core_field_exists() (or "
                               "bpf_core_type_exists()), or read a field this kernel has",
                               program=prog, function=f.name, insn=r.insn, line=line))
        else:
            out.append(Finding("relocation", "ok", what, f"{r.reason} (instruction {r.insn} is dead code: guarded)",
                               program=prog, function=f.name, insn=r.insn, line=line))
    return out


def _worst(verdicts: Iterable[str]) -> str:
    return max(verdicts, key=VERDICTS.index, default="ok")


def _ok(verdict: str, strict: bool) -> bool:
    return verdict == "ok" or (verdict == "unknown" and not strict)


def _program_entry(name: str, section: str, findings: list[Finding], relocs: list[RelocResult], fatal: bool,
                   objwide: list[Finding], strict: bool) -> dict[str, Any]:
    verdict = _worst([x.verdict for x in findings])
    bad = [x for x in findings if x.verdict == verdict and verdict != "ok"]
    reasons = [x.message() for x in bad]
    if fatal:
        verdict = "fails"
        first = next(x for x in objwide if x.verdict == "fails")
        reasons.insert(0, f"the whole object fails to load: {first.message()}")
    elif verdict == "ok":
        reasons = [x.message() for x in findings if x.missing]  # guarded: worth saying
    return {"name": name, "section": section, "autoload": not section.startswith("?"), "ok": _ok(verdict, strict),
            "verdict": verdict, "reason": "; ".join(reasons), "findings": [x.as_dict() for x in findings],
            "relocations": [r.as_dict() for r in relocs]}


# ---- the public entry points ----------------------------------------------------------------

def _targets(btfs: Iterable[Any] | Any, kernel: bool) -> list[Target]:
    if btfs is None:
        items: list[Any] = []
    elif isinstance(btfs, (str, os.PathLike, Btf, Target)):
        items = [btfs]
    else:
        items = list(btfs)
    out = [t if isinstance(t, Target) else load_target(t) if not isinstance(t, Btf) else
           Target(t.name or "<btf>", t) for t in items]
    if kernel:
        out.append(kernel_target())
    for t in out:
        t.validate()
    return out


def _spec(obj: Any) -> ObjectSpec:
    """The object's spec, its BTF unvalidated: the check reads it with pybpf's own code only
    (never handing it to libbpf, whose trust is what validation protects), and any fault it
    meets becomes ObjectFormatError naming the object (:func:`_checked`)."""
    if isinstance(obj, (str, os.PathLike)):
        return _checked(str(obj), lambda: ObjectSpec.from_file(obj, validate=False))
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return _checked("<bytes>", lambda: ObjectSpec(bytes(obj), validate=False))
    return _as_spec(obj)


def _checked(where: str, fn: Any) -> Any:
    try:
        return fn()
    except BpfError:
        raise
    except (IndexError, KeyError, ValueError, TypeError, struct.error, RecursionError) as e:
        raise ObjectFormatError(f"{where}: corrupted object ({type(e).__name__}: {e})", path=where) from None


def check(obj: Any, btfs: Iterable[Any] | Any = None, *, kernel: bool = False, strict: bool = False
          ) -> dict[str, Any]:
    """Check an object (path, bytes, ObjectSpec or Object) against target kernels.

    ``btfs``: paths (raw BTF, ELF vmlinux, kernel image, ``.btf.tar.xz``), :class:`Btf` or
    :class:`Target`; ``kernel=True`` adds the running kernel (``/sys/kernel/btf``). Every
    target is validated first (:class:`~pybpf.errors.ObjectFormatError` for a bad one).
    Returns ``{"object": str, "targets": [{"btf", "label", "verdict", "ok", "findings",
    "programs": [{"name", "section", "autoload", "verdict", "ok", "reason", "findings",
    "relocations"}]}]}``. ``verdict`` is ``ok``, ``unknown`` (BTF cannot tell) or ``fails``;
    ``ok`` is False for ``fails``, and for ``unknown`` too when ``strict``.
    """
    spec = _spec(obj)
    targets = _targets(btfs, kernel)
    where = spec.path or spec.name
    return {"object": where, "targets": [_checked(where, lambda t=t: check_object(spec, t, strict=strict))
                                         for t in targets]}


def matrix(objs: Sequence[Any], btfs: Iterable[Any] | Any = None, *, kernel: bool = False,
           strict: bool = False) -> dict[str, Any]:
    """Many objects against many targets, each target parsed and validated once:
    ``{"targets": [{"btf", "label"}], "objects": [check()'s document per object], "ok": bool}``."""
    targets = _targets(btfs, kernel)
    docs = []
    for obj in objs:
        spec = _spec(obj)
        where = spec.path or spec.name
        docs.append({"object": where, "targets": [_checked(where, lambda t=t: check_object(spec, t, strict=strict))
                                                  for t in targets]})
    if len(targets) > 1:
        for d in docs:
            _name_kernels_that_have_it(d)
    return {"targets": [{"btf": t.name, "label": t.label} for t in targets], "objects": docs,
            "ok": all(c["ok"] for d in docs for c in d["targets"])}


def _name_kernels_that_have_it(doc: dict[str, Any]) -> None:
    """In a fleet run, a failing finding's fix names the kernels of the run that have the piece
    (where the same check of the same program does not fail): the minimum kernel, by example."""
    def failing(cell: dict[str, Any]) -> set[tuple[str, str, str]]:
        pool = cell["findings"] + [f for p in cell["programs"] for f in p["findings"]]
        return {(f["check"], f["what"], f["program"]) for f in pool if f["verdict"] == "fails"}

    fails = {cell["label"]: failing(cell) for cell in doc["targets"]}
    for cell in doc["targets"]:
        for f in cell["findings"] + [f for p in cell["programs"] for f in p["findings"]]:
            if f["verdict"] != "fails" or f["check"] == "relocation":
                continue
            key = (f["check"], f["what"], f["program"])
            have = [label for label, bad in fails.items() if key not in bad]
            if have:
                f["fix"] += f" (in this run: {', '.join(have)})"
