"""The offline CO-RE check: an object's relocations resolved against target BTFs, purely.

This module owns the step from an :class:`~pybpf.spec.elf.ObjectSpec` to what
libbpf 1.1 would patch on a given kernel: it places each ``.BTF.ext`` CO-RE
record (the same records ``pybpf inspect`` lists) in its program the way
libbpf does (``relo #K`` is the record's index within its section; ``insn`` is
relative to the function holding it; programs in ``SEC("?...")`` are not
loaded by default and libbpf skips their relocations), and runs the engine of
:mod:`pybpf.btf.relo` in libbpf's order against each target. No kernel, no root.

:func:`check` returns plain data in the schema of ``pybpf check --json``.
"""

from __future__ import annotations

import dataclasses
import glob
import re
import struct
import os
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from pybpf.btf.relo import KIND_SHORT, RelocInput, RelocResult, Relocator
from pybpf.btf.types import KERNEL_BTF_PATH, Btf
from pybpf.errors import CoreRelocationError, ObjectFormatError
from pybpf.spec.elf import ObjectSpec, inspect
from pybpf.spec.reach import reachable

__all__ = ["Target", "check", "libbpf_relocations", "relocation_error", "relocation_inputs", "relocate", "load_target", "kernel_target"]

_STT_FUNC = 2


@dataclass
class Target:
    """A target kernel: its vmlinux BTF and (for the running kernel) module BTFs."""

    name: str
    btf: Btf
    modules: Sequence[Btf] = ()


def load_target(path: str | os.PathLike[str], base: Btf | None = None) -> Target:
    """A target from a raw BTF file, an ELF vmlinux or a BTFHub ``.btf.tar.xz``."""
    p = os.fspath(path)
    if p.endswith((".tar.xz", ".txz", ".tar.gz", ".tgz", ".tar")):
        from pybpf.btf.extract import btf_from_tarball
        return Target(p, Btf.from_bytes(btf_from_tarball(p), name=p, base=base))
    return Target(p, Btf.from_file(p, base=base))


def kernel_target(sysfs: str = os.path.dirname(KERNEL_BTF_PATH)) -> Target:
    """The running kernel: ``/sys/kernel/btf/vmlinux``, with its modules' split BTFs
    (libbpf searches them when vmlinux has no candidate and no btf_custom_path is set)."""
    vmlinux = Btf.from_file(os.path.join(sysfs, "vmlinux"))
    modules = []
    for p in sorted(glob.glob(os.path.join(sysfs, "*"))):
        if os.path.basename(p) != "vmlinux":
            try:
                modules.append(Btf.from_file(p, base=vmlinux))
            except (ObjectFormatError, OSError):
                continue
    return Target(os.path.join(sysfs, "vmlinux"), vmlinux, modules)


def _functions(spec: ObjectSpec) -> dict[tuple[str, str], int]:
    """(section, function name) -> byte offset of the function in its section."""
    out: dict[tuple[str, str], int] = {}
    for name, value, _size, typ, _bind, shndx in spec._syms:
        if typ == _STT_FUNC and 0 <= shndx < len(spec._secs):
            out[(spec._secs[shndx].name, name)] = value
    return out


def relocation_inputs(spec: ObjectSpec, *, include_skipped: bool = False) -> list[RelocInput]:
    """The object's CO-RE records in libbpf's order, placed in their programs.

    Records of ``SEC("?...")`` programs (not autoloaded) and of no function are left
    out, as libbpf leaves them, unless ``include_skipped``."""
    funcs = _functions(spec)
    counters: dict[str, int] = {}
    out: list[RelocInput] = []
    for r in spec.core_relocations:
        index = counters.get(r.section, 0)
        counters[r.section] = index + 1
        if not r.program and not include_skipped:
            continue
        if r.section.startswith("?") and not include_skipped:
            continue
        start = funcs.get((r.section, r.program), 0)
        sec = spec.sections.get(r.section)
        data = sec.data if sec is not None else b""
        out.append(RelocInput(index, r.program, r.section, (r.insn_offset - start) // 8,
                              KIND_SHORT[r.kind], r.type_id, r.access,
                              bytes(data[r.insn_offset:r.insn_offset + 16])))
    return out


def relocate(spec: ObjectSpec, target: Target | Btf) -> list[RelocResult]:
    """Every relocation of ``spec`` resolved against ``target``, in libbpf's order; a poisoned
    instruction no path reaches once the others are patched is marked ``dead_code``."""
    if spec.btf is None:
        return []
    t = target if isinstance(target, Target) else Target(target.name, target)
    engine = Relocator(spec.btf, t.btf, t.modules)
    return _mark_dead_code(spec, engine.resolve_all(relocation_inputs(spec)))


def _function_ranges(spec: ObjectSpec) -> dict[tuple[str, str], tuple[int, int]]:
    """(section, function) -> (first byte, byte length), as libbpf splits sections into functions."""
    starts: dict[str, list[tuple[int, int, str]]] = {}
    for name, value, size, typ, _bind, shndx in spec._syms:
        if typ == _STT_FUNC and 0 <= shndx < len(spec._secs):
            starts.setdefault(spec._secs[shndx].name, []).append((value, size, name))
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for sec, funcs in starts.items():
        funcs.sort()
        end = len(spec.sections[sec].data) if sec in spec.sections else 0
        for i, (value, size, name) in enumerate(funcs):
            if not size:
                size = (funcs[i + 1][0] if i + 1 < len(funcs) else end) - value
            out[(sec, name)] = (value, max(size, 0))
    return out


def _mark_dead_code(spec: ObjectSpec, results: list[RelocResult]) -> list[RelocResult]:
    poisoned = {(r.section, r.program) for r in results if r.poisoned}
    if not poisoned:
        return results
    ranges = _function_ranges(spec)
    dead: set[tuple[str, str, int]] = set()
    for sec, prog in poisoned:
        rng = ranges.get((sec, prog))
        section = spec.sections.get(sec)
        if rng is None or section is None:
            continue
        start, size = rng
        raw = bytearray(section.data[start:start + size])
        for r in results:  # patch what libbpf patches: the constants the guards test
            if r.section != sec or r.program != prog or r.value is None or not 0 <= 8 * r.insn < len(raw):
                continue
            at = 8 * r.insn
            if r.patch == "imm":
                struct.pack_into("<I", raw, at + 4, r.value & 0xFFFFFFFF)
            elif r.patch == "off" and r.value <= 0x7FFF:
                struct.pack_into("<h", raw, at + 2, r.value)
            elif r.patch == "imm64" and at + 16 <= len(raw):
                struct.pack_into("<II", raw, at + 4, r.value & 0xFFFFFFFF, 0)
                struct.pack_into("<I", raw, at + 12, (r.value >> 32) & 0xFFFFFFFF)
        targets = {r.insn for r in results if r.poisoned and r.section == sec and r.program == prog}
        hit = reachable(bytes(raw), targets)
        dead |= {(sec, prog, i) for i in targets - hit}
    return [dataclasses.replace(r, dead_code=True) if r.poisoned and (r.section, r.program, r.insn) in dead
            else r for r in results]


def _as_spec(obj: Any) -> ObjectSpec:
    if isinstance(obj, ObjectSpec):
        return obj
    spec = getattr(obj, "spec", None)
    if isinstance(spec, ObjectSpec):  # a pybpf.Object
        return spec
    return inspect(obj)


def _as_target(t: Any) -> Target:
    if isinstance(t, Target):
        return t
    if isinstance(t, Btf):
        return Target(t.name or "<btf>", t)
    return load_target(t)


def program_report(spec: ObjectSpec, results: list[RelocResult]) -> list[dict[str, Any]]:
    """Per-program verdicts and relocations (the ``programs`` list of the JSON schema)."""
    names = [p.name for p in spec.programs]
    for r in results:
        if r.program not in names:
            names.append(r.program)
    out = []
    for name in names:
        mine = [r for r in results if r.program == name]
        fatal = [r for r in mine if r.fatal]
        poisoned = [r for r in mine if r.poisoned and not r.dead_code]
        guarded = [r for r in mine if r.poisoned and r.dead_code]
        if fatal:
            verdict = "fails"
            why = (f"relocation #{fatal[0].index} at instruction {fatal[0].insn} fails: {fatal[0].reason}; "
                   f"the whole object fails to load")
        elif poisoned:
            verdict = "fails"
            why = "; ".join(f"{r.reason}: program `{name}` will fail at instruction {r.insn}" for r in poisoned)
        else:
            verdict = "ok"
            why = "; ".join(f"{r.reason} (instruction {r.insn} is dead code: guarded)" for r in guarded)
        out.append({"name": name, "ok": verdict == "ok", "verdict": verdict, "reason": why,
                    "relocations": [r.as_dict() for r in mine]})
    return out


def check(obj: Any, btfs: Iterable[Any] | Any = None, *, kernel: bool = False) -> dict[str, Any]:
    """Check an object (path, bytes, ObjectSpec or Object) against target BTFs.

    ``btfs``: paths (raw BTF, ELF vmlinux, ``.btf.tar.xz``), :class:`Btf` or :class:`Target`;
    ``kernel=True`` adds the running kernel (``/sys/kernel/btf``). Returns
    ``{"object": str, "targets": [{"btf": str, "ok": bool, "programs": [{"name", "ok",
    "verdict", "reason", "relocations": [{"insn", "kind", "access", "path", "value", "ok",
    ...}]}]}]}``: ``value`` is what libbpf patches (None when it poisons or fails).
    """
    spec = _as_spec(obj)
    if btfs is None:
        targets: list[Any] = []
    elif isinstance(btfs, (str, os.PathLike, Btf, Target)):
        targets = [btfs]
    else:
        targets = list(btfs)
    resolved = [_as_target(t) for t in targets]
    if kernel:
        resolved.append(kernel_target())
    out = []
    for t in resolved:
        progs = program_report(spec, relocate(spec, t))
        out.append({"btf": t.name, "ok": all(p["ok"] for p in progs), "programs": progs})
    return {"object": spec.path or spec.name, "targets": out}


_PATCHED = re.compile(r"prog '([^']+)': relo #(\d+): patched insn #(\d+) \(([A-Z0-9/]+)\) (imm64|imm|off) "
                      r"(\d+) -> (\d+)")
_POISONED = re.compile(r"prog '([^']+)': relo #(\d+): substituting insn #(\d+) w/ invalid insn")
_FAILED = re.compile(r"prog '([^']+)': relo #(\d+): (failed to relocate|failed to patch insn)")


def libbpf_relocations(log: str) -> dict[tuple[str, int], tuple[str, int, int | None]]:
    """What libbpf's debug log says it did: (program, relo #) -> (outcome, insn, value).

    ``outcome`` is ``patched`` (value = the new value), ``poisoned`` or ``failed``;
    the ground truth the engine is tested against."""
    out: dict[tuple[str, int], tuple[str, int, int | None]] = {}
    for line in log.splitlines():
        m = _PATCHED.search(line)
        if m:
            key = (m.group(1), int(m.group(2)))
            if key not in out:  # a mem_sz line may follow; the first says the value
                out[key] = ("patched", int(m.group(3)), int(m.group(7)))
            continue
        m = _POISONED.search(line)
        if m:
            key = (m.group(1), int(m.group(2)))
            insn = int(m.group(3))
            prev = out.get(key)
            out[key] = ("poisoned", min(insn, prev[1]) if prev else insn, None)
            continue
        m = _FAILED.search(line)
        if m:
            out[(m.group(1), int(m.group(2)))] = ("failed", -1, None)
    return out


# the verifier meets a poisoned instruction; libbpf >= 1.0 rewrites its log line
_POISON_CALL = re.compile(r"^(\d+): (?:\(85\) call unknown#195896080|<invalid CO-RE relocation>)", re.M)
_LOAD_FAILED = re.compile(r"prog '([^']+)': (?:BPF program load failed|failed to load)")


def relocation_error(spec: ObjectSpec, log: str, *, target: str | None = None,
                     errno: int | None = None) -> CoreRelocationError | None:
    """The typed error for a load that failed on a CO-RE relocation, else None.

    Recognises libbpf's failure ("failed to relocate") and the verifier meeting a
    poisoned instruction (``invalid func unknown#195896080``), and names the
    relocation through the engine run against the same target (``target`` is the
    btf_custom_path, None for the running kernel)."""
    fatal = _FAILED.search(log)
    poison = "unknown#195896080" in log or "<invalid CO-RE relocation>" in log
    if not fatal and not poison:
        return None
    try:
        tgt = load_target(target) if target else kernel_target()
        results = relocate(spec, tgt)
    except (ObjectFormatError, OSError):
        return None
    tname = target or "the running kernel"
    chosen: RelocResult | None = None
    if fatal:
        prog = fatal.group(1)
        chosen = next((r for r in results if r.fatal and r.program == prog), None) or \
            next((r for r in results if r.fatal), None)
    else:
        progs = _LOAD_FAILED.findall(log)
        prog = progs[-1] if progs else ""
        m = _POISON_CALL.findall(log)
        at = int(m[-1]) if m else -1
        mine = sorted((r for r in results if r.poisoned and r.program == prog), key=lambda r: r.dead_code)
        chosen = next((r for r in mine if r.insn == at), None) or (mine[0] if mine else None) or \
            next((r for r in results if r.poisoned), None)
    if chosen is None:
        return None
    what = "fails" if chosen.fatal else "was poisoned by libbpf"
    return CoreRelocationError(
        f"CO-RE relocation #{chosen.index} of program {chosen.program!r} (instruction {chosen.insn}, "
        f"{chosen.kind} {chosen.path}, access {chosen.access}) {what} on {tname}: {chosen.reason}",
        errno, program=chosen.program, insn=chosen.insn, access=chosen.access, path=chosen.path,
        kind=chosen.kind, missing=chosen.reason, target=tname, log=log)
