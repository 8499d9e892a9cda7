"""The offline CO-RE check: an object's relocations resolved against target BTFs, purely.

This module owns the step from an :class:`~pybpf.spec.elf.ObjectSpec` to what
libbpf 1.1 would patch on a given kernel: it places each ``.BTF.ext`` CO-RE
record (the same records ``pybpf inspect`` lists) in its program the way
libbpf does (``relo #K`` is the record's index within its section; ``insn`` is
relative to the function holding it; programs in ``SEC("?...")`` are not
loaded by default and libbpf skips their relocations), and runs the engine of
:mod:`pybpf.btf.relo` in libbpf's order against each target. No kernel, no root.
It also owns targets (:class:`Target`: a kernel's BTF, loaded from any file ``btf extract``
reads, validated once) and the patched instructions reachability is judged on. The
pre-check built on it is :mod:`pybpf.spec.check`.
"""

from __future__ import annotations

import dataclasses
import glob
import re
import struct
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

try:  # built into CPython; hashlib would also load OpenSSL's libcrypto
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a CPython built without it
    from hashlib import blake2b

from pybpf.btf.relo import KIND_SHORT, RelocInput, RelocResult, Relocator
from pybpf.btf.types import KERNEL_BTF_PATH, Btf
from pybpf.errors import CoreRelocationError, ObjectFormatError
from pybpf.spec.elf import ObjectSpec, inspect
from pybpf.spec.reach import reachable

__all__ = ["Target", "libbpf_relocations", "relocation_error", "relocation_inputs", "relocate", "load_target",
           "kernel_target", "patch_relocations"]

_STT_FUNC = 2


@dataclass
class Target:
    """A target kernel: its vmlinux BTF and (for the running kernel) module BTFs.

    ``trusted``: the running kernel's own BTF, which the kernel validated when it made it;
    every other target passes :meth:`validate` (what ``btf_custom_path`` gets) before a verdict.
    ``cache`` holds what the checks look up in it, so a fleet run parses each target once."""

    name: str
    btf: Btf
    modules: Sequence[Btf] = ()
    trusted: bool = False
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def label(self) -> str:
        """A short name for tables: the file name without ``.btf``/``.tar.xz``, or
        ``running`` for the running kernel."""
        if self.trusted:
            return "running"
        base = os.path.basename(self.name) or self.name
        for suffix in (".tar.xz", ".txz", ".tar.gz", ".tgz", ".tar", ".btf"):
            base = base.removesuffix(suffix)
        return base

    def validate(self, *, cached: bool = True) -> None:
        """ObjectFormatError unless the BTF keeps the kernel's rules (once per content).

        ``cached``: a verdict this user's cache kept for the same bytes and the same validator
        counts (:mod:`pybpf.btf.validcache`); a new "valid" verdict is kept there."""
        if self.trusted or self.cache.get("valid"):
            return
        digest = blake2b(self.btf._data, digest_size=16).digest()
        if digest not in _VALID:
            from pybpf.btf import validcache
            if not (cached and validcache.known_valid(self.btf)):
                try:
                    self.btf.validate()
                except ObjectFormatError as e:
                    raise ObjectFormatError(f"target {self.name}: {e}", e.errno, path=self.name) from None
                if cached:
                    validcache.remember_valid(self.btf)
            _VALID.add(digest)
        self.cache["valid"] = True


_VALID: set[bytes] = set()  # digests of target BTFs that passed validation in this process


def load_target(path: str | os.PathLike[str], base: Btf | None = None) -> Target:
    """A target from a raw BTF file, an ELF vmlinux, a kernel image (``btf extract``'s inputs)
    or a BTFHub ``.btf.tar.xz``."""
    p = os.fspath(path)
    if p.endswith((".tar.xz", ".txz", ".tar.gz", ".tgz", ".tar")):
        from pybpf.btf.extract import btf_from_tarball
        return Target(p, Btf.from_bytes(btf_from_tarball(p), name=p, base=base))
    try:
        return Target(p, Btf.from_file(p, base=base))
    except ObjectFormatError as e:
        with open(p, "rb") as f:
            head = f.read(4)
        if base is not None or head[:2] == b"\x9f\xeb" or (head == b"\x7fELF" and "no .BTF" not in str(e)):
            raise  # BTF, or an ELF with a bad .BTF: its own error says what is wrong
        from pybpf.btf.extract import extract_btf
        try:
            raw = extract_btf(p)
        except ObjectFormatError:
            raise ObjectFormatError(f"{p}: neither BTF, an ELF with .BTF, a kernel image nor a BTF tarball",
                                    path=p) from None
        return Target(p, Btf.from_bytes(raw, name=p))


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
    return Target(os.path.join(sysfs, "vmlinux"), vmlinux, modules, trusted=True)


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


def relocate(spec: ObjectSpec, target: Target | Btf, chosen: list[tuple[str, Any]] | None = None, *,
             dead_code: bool = True) -> list[RelocResult]:
    """Every relocation of ``spec`` resolved against ``target``, in libbpf's order; a poisoned
    instruction no path reaches once the others are patched is marked ``dead_code`` (unless
    ``dead_code`` is False: ``btf min`` needs only the specs). ``chosen`` gets, per relocation,
    its kind and the target spec libbpf uses (the first candidate that matched; None when none
    did): what a minimal BTF must keep."""
    if spec.btf is None:
        return []
    t = target if isinstance(target, Target) else Target(target.name, target)
    engine = Relocator(spec.btf, t.btf, t.modules)
    results = []
    for r in relocation_inputs(spec):
        results.append(engine.resolve(r))
        if chosen is not None:
            chosen.append((r.kind, engine.last_matches[0] if engine.last_matches else None))
    return _mark_dead_code(spec, results) if dead_code else results


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


def _ld_imm64_symbols(spec: ObjectSpec, section: str) -> dict[int, str]:
    """Byte offset -> symbol of each ELF relocation of ``section`` (maps, globals, ksyms)."""
    rel = spec.sections.get(".rel" + section)
    out: dict[int, str] = {}
    if rel is None or rel.type != "SHT_REL":
        return out
    for r_offset, r_info in struct.iter_unpack("<QQ", rel.data[:len(rel.data) // 16 * 16]):
        idx = r_info >> 32
        if 0 <= idx < len(spec._syms):
            out[r_offset] = spec._syms[idx][0]
    return out


def patch_relocations(spec: ObjectSpec, section: str, function: str, results: list[RelocResult],
                      zero: frozenset[str] = frozenset()) -> bytes:
    """A function's instructions as libbpf hands them to the verifier, as far as reachability
    goes: the values ``results`` patch (the constants guards test) in place, and every ld_imm64
    the loader fills (a map, a global, a ksym) made a value only the loader knows, except
    those of the symbols in ``zero`` (weak ksyms the target lacks: libbpf writes 0).
    Poisoned instructions are left as they are."""
    rng = _function_ranges(spec).get((section, function))
    sec = spec.sections.get(section)
    if rng is None or sec is None:
        return b""
    start, size = rng
    raw = bytearray(sec.data[start:start + size])
    for off, sym in _ld_imm64_symbols(spec, section).items():
        at = off - start
        if 0 <= at < len(raw) - 8 and raw[at] == 0x18 and sym not in zero:
            raw[at + 1] = (raw[at + 1] & 0x0F) | 0x20  # src_reg 2 (BPF_PSEUDO_MAP_VALUE): not a constant
    for r in results:
        if r.section != section or r.program != function or r.value is None or not 0 <= 8 * r.insn < len(raw):
            continue
        at = 8 * r.insn
        if r.patch == "imm":
            struct.pack_into("<I", raw, at + 4, r.value & 0xFFFFFFFF)
        elif r.patch == "off" and r.value <= 0x7FFF:
            struct.pack_into("<h", raw, at + 2, r.value)
        elif r.patch == "imm64" and at + 16 <= len(raw):
            struct.pack_into("<II", raw, at + 4, r.value & 0xFFFFFFFF, 0)
            struct.pack_into("<I", raw, at + 12, (r.value >> 32) & 0xFFFFFFFF)
    return bytes(raw)


def _mark_dead_code(spec: ObjectSpec, results: list[RelocResult]) -> list[RelocResult]:
    poisoned = {(r.section, r.program) for r in results if r.poisoned}
    if not poisoned:
        return results
    dead: set[tuple[str, str, int]] = set()
    for sec, prog in poisoned:
        raw = patch_relocations(spec, sec, prog, results)
        if not raw:
            continue
        targets = {r.insn for r in results if r.poisoned and r.section == sec and r.program == prog}
        hit = reachable(raw, targets)
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
