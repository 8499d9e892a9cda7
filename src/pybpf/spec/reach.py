"""Which poisoned instructions a program can reach, after CO-RE patching (constant propagation).

This module owns the question the verifier answers for a poisoned instruction: is it
dead code? libbpf poisons an instruction whose relocation failed; the verifier only
rejects it if some path reaches it. Guards such as ``if (bpf_core_field_exists(...))``
compile to a patched constant (``r1 = 0``) and a conditional jump on it, and the verifier,
which tracks constant scalars exactly, never walks the branch a constant rules out.
:func:`reachable` walks the patched instructions the same way: registers hold a known
constant or nothing, jumps on known constants take one branch, everything else takes
both. It can only err on the side of "reachable" (it knows less than the verifier).
Pure: instruction bytes in, instruction indices out.
"""

from __future__ import annotations

import struct
from typing import Iterable

__all__ = ["reachable"]

_U64 = (1 << 64) - 1
_MAX_STATES = 20000
_State = tuple  # 11 registers: int (a known constant, as u64) or None


def _s64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def _alu(op: int, a: int, b: int, is64: bool) -> int | None:
    mask = _U64 if is64 else 0xFFFFFFFF
    a &= mask
    b &= mask
    bits = 64 if is64 else 32
    if op == 0x00:
        r = a + b
    elif op == 0x10:
        r = a - b
    elif op == 0x20:
        r = a * b
    elif op == 0x30:
        r = a // b if b else 0
    elif op == 0x40:
        r = a | b
    elif op == 0x50:
        r = a & b
    elif op == 0x60:
        r = a << (b & (bits - 1))
    elif op == 0x70:
        r = a >> (b & (bits - 1))
    elif op == 0x80:
        r = -a
    elif op == 0x90:
        r = a % b if b else a
    elif op == 0xA0:
        r = a ^ b
    elif op == 0xB0:
        r = b
    elif op == 0xC0:
        sa = a - (1 << bits) if a >> (bits - 1) else a
        r = sa >> (b & (bits - 1))
    else:
        return None
    return r & mask


def _cond(op: int, a: int, b: int, is64: bool) -> bool | None:
    mask, bits = (_U64, 64) if is64 else (0xFFFFFFFF, 32)
    a &= mask
    b &= mask
    sa = a - (1 << bits) if a >> (bits - 1) else a
    sb = b - (1 << bits) if b >> (bits - 1) else b
    return {0x10: a == b, 0x20: a > b, 0x30: a >= b, 0x40: bool(a & b), 0x50: a != b,
            0x60: sa > sb, 0x70: sa >= sb, 0xA0: a < b, 0xB0: a <= b, 0xC0: sa < sb,
            0xD0: sa <= sb}.get(op)


def reachable(insns: bytes, targets: Iterable[int]) -> set[int]:
    """The members of ``targets`` (instruction indices) some path from instruction 0 reaches.

    ``insns`` are the function's (already patched) instructions. When the walk would
    exceed its state budget, every target is reported reachable."""
    want = set(targets)
    n = len(insns) // 8
    if not want:
        return set()
    fields = [struct.unpack_from("<BBhi", insns, 8 * i) for i in range(n)]
    found: set[int] = set()
    start: _State = (None,) * 11
    todo = [(0, start)]
    seen: set[tuple[int, _State]] = set()
    while todo:
        pc, regs = todo.pop()
        while True:
            if not 0 <= pc < n:
                break
            key = (pc, regs)
            if key in seen:
                break
            seen.add(key)
            if len(seen) > _MAX_STATES:
                return want
            if pc in want:
                found.add(pc)
                if found == want:
                    return found
                break  # the verifier stops at a poisoned instruction
            code, r, off, imm = fields[pc]
            dst, src = r & 0xF, r >> 4
            cls = code & 7
            if dst > 10 or src > 10:
                return want
            if cls in (4, 7):  # ALU, ALU64
                op = code & 0xF0
                is64 = cls == 7
                if op == 0xD0:  # byte swap
                    regs = regs[:dst] + (None,) + regs[dst + 1:]
                else:
                    b = regs[src] if code & 0x08 else imm & _U64
                    a = regs[dst] if op != 0xB0 else 0
                    v = None if a is None or b is None or off else _alu(op, a, b, is64)
                    regs = regs[:dst] + (v,) + regs[dst + 1:]
                pc += 1
            elif cls == 0:  # LD: ld_imm64 (two slots)
                if code == 0x18 and pc + 1 < n:
                    v = ((imm & 0xFFFFFFFF) | ((fields[pc + 1][3] & 0xFFFFFFFF) << 32)) if src == 0 else None
                    regs = regs[:dst] + (v,) + regs[dst + 1:]
                    pc += 2
                else:
                    regs = regs[:0] + (None,) + regs[1:]  # legacy packet loads set r0
                    pc += 1
            elif cls == 1:  # LDX
                regs = regs[:dst] + (None,) + regs[dst + 1:]
                pc += 1
            elif cls in (2, 3):  # ST, STX (atomics with fetch write a register)
                if cls == 3 and code & 0xE0 == 0xC0:
                    regs = tuple(None if i in (0, src) else v for i, v in enumerate(regs))
                pc += 1
            else:  # JMP, JMP32
                op = code & 0xF0
                is64 = cls == 5
                if op == 0x00:  # ja
                    pc += 1 + (off if cls == 5 else imm)
                elif op == 0x80:  # call: r0-r5 clobbered
                    regs = (None,) * 6 + regs[6:]
                    pc += 1
                elif op == 0x90:  # exit
                    break
                else:
                    a = regs[dst]
                    b = regs[src] if code & 0x08 else imm & _U64
                    taken = None if a is None or b is None else _cond(op, a, b, is64)
                    if taken is None:
                        todo.append((pc + 1 + off, regs))
                        pc += 1
                    elif taken:
                        pc += 1 + off
                    else:
                        pc += 1
    return found
