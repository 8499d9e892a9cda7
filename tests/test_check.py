"""The pre-check (issue 22): attach targets, helpers, map types, kfuncs, a fleet matrix.

Targets are real kernels: Debian's kernel packages of the release's archive (6.1 and 6.12 on
Debian 12, 6.12 on Debian 13), extracted by tools/fetch_kernel_btfs.py, and the running kernel.
The test objects (bpf_src/check/) use facts that differ between those kernels; which facts
each older kernel lacks is read from its BTF here, independently of the check (a typedef, an
enum value, a FUNC), so the tests hold whichever kernels the archive offers:

* on the running kernel, the check's verdict is what loading and attaching really does;
* on an older kernel that lacks a piece, the check says ``fails`` and names the piece, the
  program, the instruction and the source line; where it has the piece, ``ok``.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pybpf
from pybpf.btf import Btf
from pybpf.btf.fastvalid import proves_valid
from pybpf.btf.validate import validate_btf
from pybpf.errors import BpfError, ObjectFormatError
from pybpf.spec.check import check_object, matrix
from pybpf.spec.core import kernel_target, load_target
from pybpf.spec.elf import inspect
from pybpf.toolchain import build

from .conftest import ROOT, needs_kernel
from .test_core import NEW_CLANGS

CHECK_SRC = ROOT / "bpf_src" / "check"
_CLI = [sys.executable, "-m", "pybpf.cli"]


def _tracepoints(btf: Btf) -> set[str]:
    return {n.removeprefix("btf_trace_") for n, ids in btf._name_index().items()
            if n.startswith("btf_trace_") and any(btf.kind_of(i) == "typedef" for i in ids)}


def _enum_names(btf: Btf, enum: str) -> set[str]:
    return {n for n, _v in btf[btf.find(enum, "enum")].values}


def _has_func(btf: Btf, name: str) -> bool:
    return any(btf.kind_of(i) == "func" for i in btf._name_index().get(name, ()))


@pytest.fixture(scope="session")
def kernels(kernel_btfs: list[dict[str, Any]]) -> dict[str, Any]:
    """The running kernel's target and the older ones, parsed once."""
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        needs_kernel("needs the running kernel's BTF")
    older = {t["label"]: load_target(t["path"]) for t in kernel_btfs if t["label"] != "running"}
    assert older, "no older kernel BTF in the archive"
    return {"running": kernel_target(), "older": older}


@pytest.fixture(scope="session")
def new_tracepoint(kernels: dict[str, Any]) -> str:
    """A tracepoint the running kernel has and the oldest kernel at hand lacks."""
    running = _tracepoints(kernels["running"].btf)
    old = set.intersection(*(_tracepoints(t.btf) for t in kernels["older"].values()))
    newer = sorted(running - old)
    assert newer, "every tracepoint of the running kernel is in the older kernels"
    return "sched_prepare_exec" if "sched_prepare_exec" in newer else newer[0]


@pytest.fixture(scope="session")
def check_objects(tmp_path_factory: pytest.TempPathFactory, new_tracepoint: str) -> dict[str, str]:
    clang = next((c for c in NEW_CLANGS if shutil.which(c)), None)
    if clang is None:
        needs_kernel("needs clang >= 15 (apt-get install clang-19)")
    out = tmp_path_factory.mktemp("check-objects")
    objs = {}
    for name, src, defines in (("newer", "check_newer", [f"CHECK_TP_NEW={new_tracepoint}"]),
                               ("kfunc", "check_kfunc", []), ("kfunc_weak", "check_kfunc", ["CHECK_KFUNC_WEAK"]),
                               ("guarded", "check_guarded", []), ("unknown", "check_unknown", [])):
        objs[name] = str(build(CHECK_SRC / f"{src}.bpf.c", out / f"{name}.bpf.o", clang=clang, defines=defines))
    return objs


def _prog(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in doc["programs"] if p["name"] == name)


def _finding(doc: dict[str, Any], check: str, prog: str | None = None) -> dict[str, Any] | None:
    pool = doc["findings"] + [f for p in doc["programs"] for f in p["findings"]]
    return next((f for f in pool if f["check"] == check and (prog is None or f["program"] == prog)), None)


def _insn(obj: str, prog: str, insn: int) -> tuple[int, int, int]:
    """(opcode, src_reg, imm) of a program's instruction, read from the ELF."""
    p = inspect(obj).program(prog)
    code, regs, _off, imm = struct.unpack_from("<BBhi", p.insns, 8 * insn)
    return code, regs >> 4, imm


# ---- on the running kernel: the verdict is what loading does ----------------------------------

def _loads_and_attaches(obj: str) -> tuple[bool, str]:
    try:
        with pybpf.open(obj) as o:
            o.load()
            links = []
            try:
                for p in o.programs.values():
                    links.append(p.attach())
            finally:
                for link in links:
                    link.close()
        return True, ""
    except BpfError as e:
        return False, str(e)


def test_verdict_on_the_running_kernel_is_what_loading_does(kernel, kernels, check_objects) -> None:
    said = {}
    for name, obj in check_objects.items():
        doc = check_object(obj, kernels["running"])
        said[name] = doc["verdict"]
        if doc["verdict"] == "unknown":  # BTF cannot tell: nothing to compare
            continue
        loaded, why = _loads_and_attaches(obj)
        assert loaded == (doc["verdict"] == "ok"), (name, doc["verdict"], why, doc)
    assert said["unknown"] == "unknown"
    assert said["newer"] == "ok"  # the tracepoint was picked from this kernel; cgroup storage is 6.2


# ---- on older kernels: fails, naming the missing piece ----------------------------------------

def test_older_kernels_fail_naming_the_missing_tracepoint_helper_and_map_type(kernels, check_objects,
                                                                              new_tracepoint: str) -> None:
    obj = check_objects["newer"]
    spec = inspect(obj)
    lacked = set()
    for label, target in kernels["older"].items():
        doc = check_object(spec, target)
        btf = target.btf
        has_tp = new_tracepoint in _tracepoints(btf)
        has_helper = "BPF_FUNC_cgrp_storage_get" in _enum_names(btf, "bpf_func_id")
        has_map = "BPF_MAP_TYPE_CGRP_STORAGE" in _enum_names(btf, "bpf_map_type")
        tp = _finding(doc, "attach", "on_new_tracepoint")
        assert tp is not None and tp["verdict"] == ("ok" if has_tp else "fails"), (label, tp)
        if not has_tp:
            lacked.add("tracepoint")
            assert f"btf_trace_{new_tracepoint}" in tp["missing"] and new_tracepoint in tp["what"]
            assert _prog(doc, "on_new_tracepoint")["verdict"] == "fails"
        helper = _finding(doc, "helper", "count_per_cgroup")
        if has_helper:
            assert helper is None, helper  # only helpers the target lacks are findings
        else:
            lacked.add("helper")
            assert helper is not None and helper["verdict"] == "fails"
            assert helper["what"] == "helper bpf_cgrp_storage_get (#210)"
            assert "bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_cgrp_storage_get)" in helper["fix"]
            # the instruction named is that call, and the line is its source
            assert _insn(obj, "count_per_cgroup", helper["insn"]) == (0x85, 0, 210)
            assert helper["line"].startswith("check_newer.bpf.c:") and "bpf_cgrp_storage_get(" in helper["line"]
        mp = next((f for f in doc["findings"] if f["check"] == "map_type"), None)
        if has_map:
            assert mp is None
        else:
            lacked.add("map type")
            assert mp is not None and mp["verdict"] == "fails" and "BPF_MAP_TYPE_CGRP_STORAGE" in mp["what"]
            # a map that cannot be created fails the whole object: every program
            assert all(p["verdict"] == "fails" for p in doc["programs"])
            assert "cgrp_seen" in _prog(doc, "plain")["reason"]
        if has_tp and has_helper and has_map:
            assert doc["verdict"] == "ok"
    assert "tracepoint" in lacked  # picked so that the oldest kernel lacks it


def test_kfuncs_strong_weak_and_guarded(kernels, check_objects) -> None:
    lacked = 0
    for label, target in [*kernels["older"].items(), ("running", kernels["running"])]:
        has_strlen = _has_func(target.btf, "bpf_strlen")
        has_strchr = _has_func(target.btf, "bpf_strchr")
        strong = check_object(check_objects["kfunc"], target)
        f = _finding(strong, "kfunc")
        assert f is not None and f["verdict"] == ("ok" if has_strlen else "fails"), (label, f)
        if not has_strlen:
            lacked += 1
            # a strong extern the kernel lacks stops the whole load
            assert f in strong["findings"] and "bpf_strlen" in f["what"] and "__weak" in f["fix"]
            assert strong["verdict"] == "fails"
        weak = check_object(check_objects["kfunc_weak"], target)
        guarded = _finding(weak, "kfunc", "measure")
        unguarded = _finding(weak, "kfunc", "unguarded")
        if not has_strlen:
            assert guarded is not None and guarded["verdict"] == "ok" and "guarded" in guarded["missing"]
            assert _prog(weak, "measure")["verdict"] == "ok"
        if not has_strchr:
            assert unguarded is not None and unguarded["verdict"] == "fails"
            assert "bpf_ksym_exists(bpf_strchr)" in unguarded["fix"]
            code, src, _imm = _insn(check_objects["kfunc_weak"], "unguarded", unguarded["insn"])
            assert code == 0x85 and src == 1  # the call (libbpf makes it a kfunc call)
            assert "bpf_strchr(" in unguarded["line"]
            assert _prog(weak, "unguarded")["verdict"] == "fails"
        if has_strlen and has_strchr:
            assert weak["verdict"] == strong["verdict"] == "ok"
    assert lacked  # Debian's kernels are older than the string kfuncs


def test_a_guarded_helper_is_dead_code_where_it_is_missing(kernels, check_objects) -> None:
    """Where the helper is missing (6.1), the guarded call is dead code: ok. Where it exists, the
    guard's relocation says so (1) and there is nothing to report."""
    from pybpf.spec.core import relocate
    spec = inspect(check_objects["guarded"])
    for target in [*kernels["older"].values(), kernels["running"]]:
        doc = check_object(spec, target)
        guard = next(r for r in relocate(spec, target) if r.kind == "enumval_exists")
        helper = _finding(doc, "helper", "maybe_per_cgroup")
        if "BPF_FUNC_cgrp_storage_get" in _enum_names(target.btf, "bpf_func_id"):
            assert guard.value == 1 and helper is None
        else:
            assert guard.value == 0
            assert helper is not None and helper["verdict"] == "ok" and "guarded" in helper["missing"]
            assert "bpf_cgrp_storage_get(" in helper["line"]
    assert check_object(spec, kernels["running"])["verdict"] == "ok"


def test_strict_counts_unknown_as_failing(kernels, check_objects) -> None:
    obj = check_objects["unknown"]
    proc = subprocess.run(_CLI + ["check", obj, "--kernel", "--json"], capture_output=True, text=True)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stderr
    assert doc["targets"][0]["verdict"] == "unknown" and doc["targets"][0]["ok"] is True
    tp = _finding(doc["targets"][0], "attach", "no_such_syscall")
    assert tp["verdict"] == "unknown" and "not verifiable from BTF" in tp["missing"]
    kp = _finding(doc["targets"][0], "attach", "no_such_function")
    assert kp["verdict"] == "unknown" and "kallsyms" in kp["missing"]
    strict = subprocess.run(_CLI + ["check", obj, "--kernel", "--strict", "--json"], capture_output=True, text=True)
    assert strict.returncode == 1 and json.loads(strict.stdout)["targets"][0]["ok"] is False


# ---- the fleet matrix -------------------------------------------------------------------------

def test_fleet_matrix_in_one_run(kernel_btfs, kernels, check_objects, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    for t in kernel_btfs:
        if t["label"] != "running":
            shutil.copyfile(t["path"], fleet / f"{t['release']}.btf")
    objs = [check_objects["newer"], check_objects["guarded"], pybpf.bundled("counters")]
    proc = subprocess.run(_CLI + ["check", *objs, "--btf-dir", str(fleet), "--kernel", "--json"],
                          capture_output=True, text=True)
    doc = json.loads(proc.stdout)
    labels = [t["label"] for t in doc["targets"]]
    assert labels[-1] == "running" and sorted(labels[:-1]) == sorted(
        t["release"] for t in kernel_btfs if t["label"] != "running")
    assert [d["object"] for d in doc["objects"]] == objs
    # each cell is the single-object, single-target check (plus, on a failure, the kernels of
    # the run that have what is missing)
    named: set[str] = set()
    for d, obj in zip(doc["objects"], objs):
        for cell in d["targets"]:
            target = kernels["running"] if cell["label"] == "running" else load_target(fleet / f"{cell['label']}.btf")
            want = check_object(obj, target)
            assert (cell["verdict"], _no_run(cell["findings"])) == (want["verdict"], want["findings"])
            for f in cell["findings"] + [f for p in cell["programs"] for f in p["findings"]]:
                if f["verdict"] == "fails" and "in this run: " in f["fix"]:
                    # the kernels named have the piece: their cell has no such failure
                    for label in f["fix"].split("in this run: ")[1].rstrip(")").split(", "):
                        other = next(c for c in d["targets"] if c["label"] == label)
                        pool = other["findings"] + [g for p in other["programs"] for g in p["findings"]]
                        assert not any(g["verdict"] == "fails" and g["what"] == f["what"] for g in pool)
                        named.add(label)
    assert "running" in named  # the newer object fails on an older kernel; the running one has it all
    fails = any(c["verdict"] == "fails" for d in doc["objects"] for c in d["targets"])
    assert proc.returncode == (1 if fails else 0) and doc["ok"] is (not fails)
    # the table: one row per object, one column per kernel
    text = subprocess.run(_CLI + ["check", *objs, "--btf-dir", str(fleet), "--kernel"], capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "250"})
    assert text.returncode == proc.returncode
    header = next(line for line in text.stdout.splitlines() if "object" in line)
    for label in labels:
        assert label in header
    row = next(line for line in text.stdout.splitlines() if "counters.bpf.o" in line)
    assert row.count("ok") == len(labels)


def _no_run(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**f, "fix": f["fix"].split(" (in this run: ")[0]} for f in findings]


def test_matrix_api_parses_each_target_once(kernels, check_objects) -> None:
    target = next(iter(kernels["older"].values()))
    doc = matrix(list(check_objects.values()), [target])
    assert [d["object"] for d in doc["objects"]] == list(check_objects.values())
    assert target.cache.get("valid") is True and "check" in target.cache


# ---- target validation: the same as btf_custom_path -------------------------------------------

def _mutants(data: bytes, count: int, seed: int) -> list[bytes]:
    import random
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        d = bytearray(data)
        for _k in range(rng.randint(1, 3)):
            pos = rng.randrange(24, len(d))
            d[pos] = rng.choice([0, 0xFF, rng.randrange(256), d[pos] ^ (1 << rng.randrange(8))])
        out.append(bytes(d))
    return out


def test_targets_get_the_validation_btf_custom_path_gets(kernel_btfs, check_objects, tmp_path: Path) -> None:
    """No verdict on a BTF btf_custom_path refuses: 300 mutants of a real (minimal) kernel BTF."""
    from pybpf.object import _check_custom_btf
    from pybpf.spec.minimize import minimize
    full = Btf.from_file(next(t["path"] for t in kernel_btfs if t["label"] != "running"))
    small = minimize([check_objects["newer"], pybpf.bundled("counters")], full).data
    verdicts = refused = 0
    for i, blob in enumerate(_mutants(small, 300, 22)):
        path = tmp_path / f"m{i}.btf"
        path.write_bytes(blob)
        try:
            _check_custom_btf(str(path))
            custom_ok = True
        except (ObjectFormatError, OSError):
            custom_ok = False
        try:
            doc = pybpf.check(check_objects["newer"], [str(path)])
            assert doc["targets"][0]["verdict"] in ("ok", "fails", "unknown")
            verdicts += 1
            assert custom_ok, f"mutant {i}: a verdict on a BTF btf_custom_path refuses"
        except ObjectFormatError as e:
            refused += 1
            assert not custom_ok, f"mutant {i}: refused by check, taken by btf_custom_path: {e}"
            assert str(path) in str(e)
    assert verdicts and refused


def test_vectorised_proof_accepts_only_what_the_validator_accepts(kernel_btfs) -> None:
    """fastvalid answers 'valid' only for blobs the per-type validator takes (mutants of a
    minimal BTF made from a real kernel's), and proves a real kernel BTF valid."""
    t = next(t for t in kernel_btfs if t["label"] != "running")
    full = Btf.from_file(t["path"])
    assert proves_valid(full)
    from pybpf.spec.minimize import minimize  # a small real blob, mutated
    small = minimize([pybpf.bundled(n) for n in pybpf.bundled_names()], full).data
    agree = proved = 0
    for blob in _mutants(small, 1500, 7):
        try:
            b = Btf.from_bytes(blob)
        except ObjectFormatError:
            continue
        fast = proves_valid(b)
        try:
            b2 = Btf.from_bytes(blob)
            import pybpf.btf.fastvalid as fv
            old, fv.MIN_TYPES = fv.MIN_TYPES, 1 << 30  # the per-type path alone
            try:
                validate_btf(b2)
            finally:
                fv.MIN_TYPES = old
            slow = True
        except ObjectFormatError:
            slow = False
        assert not fast or slow, "fastvalid proved a blob the validator refuses"
        agree += fast == slow
        proved += fast
    assert proved > 50 and agree > 0


def test_bad_target_is_a_one_line_error(kernel_btfs, check_objects, tmp_path: Path) -> None:
    """The issue's case: a type whose name lies past the string section. The file parses (types
    decode lazily), so only validation stops it: no verdict, one line naming file and fault."""
    from pybpf.spec.minimize import minimize
    full = Btf.from_file(next(t["path"] for t in kernel_btfs if t["label"] != "running"))
    blob = bytearray(minimize([check_objects["newer"]], full, checks=True).data)
    struct.pack_into("<I", blob, 24 + 12, 268435779)  # the second type's name_off
    bad = tmp_path / "bad.btf"
    bad.write_bytes(bytes(blob))
    Btf.from_file(bad)  # parses
    proc = subprocess.run(_CLI + ["check", check_objects["newer"], "--btf", str(bad)], capture_output=True,
                          text=True)
    assert proc.returncode == 1 and proc.stdout == "" and str(bad) in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "string offset 268435779 out of range" in proc.stderr
    with pytest.raises(ObjectFormatError, match="out of range"):
        pybpf.check(check_objects["newer"], [str(bad)])
    # btf min reads the full BTF unvalidated: its partial index stops at the same fault, typed
    proc = subprocess.run(_CLI + ["btf", "min", check_objects["newer"], "--btf", str(bad), "-o",
                                  str(tmp_path / "min.btf")], capture_output=True, text=True)
    assert proc.returncode == 1 and "string offset 268435779 out of range" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


def test_check_and_btf_min_run_without_root(kernel_btfs, check_objects) -> None:
    import tempfile
    from .conftest import run_unprivileged
    with tempfile.TemporaryDirectory(prefix="pybpf-check-nobody-", dir="/tmp") as d:
        os.chmod(d, 0o777)
        obj, btf, out = Path(d) / "o.bpf.o", Path(d) / "t.btf", Path(d) / "min.btf"
        shutil.copyfile(check_objects["newer"], obj)
        shutil.copyfile(next(t["path"] for t in kernel_btfs if t["label"] != "running"), btf)
        for p in (obj, btf):
            os.chmod(p, 0o644)
        code = ("import sys; from pybpf.cli import main; "
                f"sys.argv = ['pybpf', 'check', {str(obj)!r}, '--btf', {str(btf)!r}, '--json']; main()")
        proc = run_unprivileged(code, timeout=180)
        assert proc.returncode in (0, 1), proc.stderr
        assert json.loads(proc.stdout)["targets"][0]["verdict"] in ("ok", "fails")
        code = ("import sys; from pybpf.cli import main; sys.argv = ['pybpf', 'btf', 'min', '--checks', "
                f"{str(obj)!r}, '--btf', {str(btf)!r}, '-o', {str(out)!r}]; main()")
        proc = run_unprivileged(code, timeout=180)
        assert proc.returncode == 0, proc.stderr
        assert Btf.from_file(out).find("btf_trace_sys_enter", "typedef")


# ---- btf min: what the check reads, and counting types -----------------------------------------

def _verdicts(doc: dict[str, Any]) -> list[Any]:
    return [doc["verdict"], doc["findings"], [(p["name"], p["verdict"], p["findings"]) for p in doc["programs"]]]


def test_min_btf_with_checks_gives_the_same_verdicts(kernels, check_objects, tmp_path: Path) -> None:
    """`btf min --checks` keeps what the check reads: every finding is the same on the minimal
    BTF as on the full one; the plain minimal BTF (CO-RE only) turns what it lacks into unknown."""
    from pybpf.spec.minimize import minimize
    objs = list(check_objects.values()) + [pybpf.bundled(n) for n in pybpf.bundled_names()]
    for target in [*kernels["older"].values(), kernels["running"]]:
        small = minimize(objs, target.btf, checks=True)
        core_only = minimize(objs, target.btf)
        assert len(core_only.data) < len(small.data) < len(target.btf._data) // 50
        path = tmp_path / f"{target.label}.min.btf"
        path.write_bytes(small.data)
        mtarget = load_target(path)
        ctarget = load_target(_write(tmp_path / f"{target.label}.core.btf", core_only.data))
        for obj in objs:
            want = check_object(obj, target)
            assert _verdicts(check_object(obj, mtarget)) == _verdicts(want), (obj, target.label)
            partial = check_object(obj, ctarget)
            # relocations are what the core-only BTF is for: same; elsewhere never a false "fails"
            for p, q in zip(partial["programs"], want["programs"]):
                assert [r["value"] is None for r in p["relocations"]] == [r["value"] is None for r in q["relocations"]]
                if q["verdict"] != "fails":
                    assert p["verdict"] in ("ok", "unknown"), (obj, p)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_types_are_counted_the_same_everywhere(kernel_btfs, check_objects, tmp_path: Path) -> None:
    """`btf extract`, `btf min` and bpftool count a BTF's types alike (void is no type)."""
    t = next(t for t in kernel_btfs if t["label"] != "running")
    out = tmp_path / "x.btf"
    proc = subprocess.run(_CLI + ["btf", "extract", t["path"], "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    extracted = int(proc.stderr.split(" bytes of BTF, ")[1].split()[0])
    proc = subprocess.run(_CLI + ["btf", "min", check_objects["newer"], "--btf", t["path"], "-o",
                                  str(tmp_path / "m.btf")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    full = int(proc.stderr.split("(full: ")[1].split(" bytes, ")[1].split()[0])
    small = int(proc.stderr.split(" bytes, ")[1].split()[0])
    assert extracted == full == len(Btf.from_file(t["path"])) - 1
    assert small == len(Btf.from_file(tmp_path / "m.btf")) - 1
    if shutil.which("bpftool"):
        for path, n in ((t["path"], full), (tmp_path / "m.btf", small)):
            dump = subprocess.run(["bpftool", "btf", "dump", "file", str(path)], capture_output=True, text=True)
            assert dump.returncode == 0 and sum(line.startswith("[") for line in dump.stdout.splitlines()) == n


# ---- the fast paths: the same answers -----------------------------------------------------------

_TYPER = ("import sys; from pybpf.cli.argv import normalize_argv; from pybpf.cli.group import app; "
          "app(args=normalize_argv(sys.argv[1:]), prog_name='pybpf')")


def _both(argv: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], ...]:
    """``pybpf ARGV`` through the entry point (the direct path when the line is plain) and
    through the typer app alone."""
    direct = subprocess.run(_CLI + argv, capture_output=True, text=True, env=env)
    typer_ = subprocess.run([sys.executable, "-c", _TYPER, *argv], capture_output=True, text=True, env=env)
    return direct, typer_


def test_check_and_btf_min_without_typer_answer_as_typer_does(kernel_btfs, check_objects, tmp_path: Path) -> None:
    """Plain `check`/`btf min` command lines skip typer (cli/offline.py): same stdout, stderr,
    exit status and written BTF as the typer commands; anything else is left to typer."""
    from pybpf.cli import offline
    from pybpf.cli.argv import normalize_argv
    from pybpf.spec.minimize import minimize
    full_path = next(t["path"] for t in kernel_btfs if t["label"] != "running")
    small = tmp_path / "small.btf"
    small.write_bytes(minimize([check_objects["newer"], check_objects["guarded"], pybpf.bundled("counters")],
                               Btf.from_file(full_path), checks=True).data)
    env = {**os.environ, "COLUMNS": "200", "PYBPF_NO_CACHE": "1"}
    newer, guarded = check_objects["newer"], check_objects["guarded"]
    plain = [
        [newer, "--btf", full_path, "--json"],
        ["--strict", newer, f"--btf={small}", "--json"],
        [newer, guarded, "--btf", str(small), "-a"],
        [newer, "--btf", str(small), "--kernel", "--all", "--json=true"],
        [newer, "--btf-dir", str(tmp_path), "--btf", str(small)],
        [str(tmp_path / "missing.bpf.o"), "--btf", str(small)],
        [newer, "--btf", str(tmp_path / "missing.btf")],
        ["--btf", str(small), "--", newer],
    ]
    for words in plain:
        assert offline.check_kwargs(normalize_argv(words)) is not None, words  # really the direct path
        direct, typer_ = _both(["check", *words], env)
        assert (direct.returncode, direct.stdout, direct.stderr) == (typer_.returncode, typer_.stdout,
                                                                     typer_.stderr), words
        assert direct.returncode in (0, 1, 2) and (direct.stdout or direct.stderr)
    # typer answers what the direct path does not read: help, unknown options, a flag with a
    # value, no target, no object
    for words in (["--help"], [newer, "-h"], [newer, "--btf", str(small), "--bogus"], [newer, "--kernel=1"],
                  [newer], ["--btf", str(small)], [newer, "--btf"]):
        assert offline.check_kwargs(words) is None, words
    direct, typer_ = _both(["check", newer], env)
    assert direct.returncode == typer_.returncode == 2 and direct.stderr == typer_.stderr
    # btf min: the same file and the same report (which names the output path)
    objs = [newer, pybpf.bundled("counters")]
    for extra in ([], ["--checks"]):
        a, b = tmp_path / "a.btf", tmp_path / "b.btf"
        assert offline.min_kwargs([*objs, "--btf", full_path, "-o", str(a), *extra]) is not None
        direct = subprocess.run(_CLI + ["btf", "min", *objs, "--btf", full_path, f"-o{a}", *extra],
                                capture_output=True, text=True, env=env)
        typer_ = subprocess.run([sys.executable, "-c", _TYPER, "btf", "min", *objs, "--btf", full_path,
                                 "--output", str(b), *extra], capture_output=True, text=True, env=env)
        assert direct.returncode == typer_.returncode == 0, (direct.stderr, typer_.stderr)
        assert a.read_bytes() == b.read_bytes()
        assert direct.stderr.replace(str(a), "OUT") == typer_.stderr.replace(str(b), "OUT")
    assert offline.min_kwargs([newer, "--btf", full_path]) is None  # no --output: typer's usage error


def test_click_rules_of_the_direct_parser() -> None:
    from pybpf.cli.offline import _CHECK, _MIN, parse
    assert parse(["a", "--btf", "x", "b", "--btf=y", "-a", "--", "--json"], _CHECK) == (
        {"btf": ["x", "y"], "verbose": True}, ["a", "b", "--json"])
    assert parse(["--btf-dir", "d1", "--btf-dir=d2", "o"], _CHECK) == ({"btf_dir": "d2"}, ["o"])
    assert parse(["o", "-oOUT", "--btf", "f"], _MIN) == ({"output": "OUT", "full": "f"}, ["o"])
    assert parse(["o", "-o", "OUT", "--checks"], _MIN) == ({"output": "OUT", "checks": True}, ["o"])
    assert parse(["-", "o"], _CHECK) == ({}, ["-", "o"])
    for bad in (["--json=1"], ["-x"], ["--btf"], ["-ax"], ["--help"]):
        assert parse(bad, _CHECK) is None, bad


def test_validation_verdicts_kept_per_user(kernel_btfs, check_objects, tmp_path: Path, monkeypatch) -> None:
    """A target validated once is not validated again for the same bytes and validator; only
    this user's own regular files count; a BTF that fails validation is never kept."""
    from pybpf.btf import validcache
    from pybpf.spec import core
    from pybpf.spec.minimize import minimize
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(validcache.ENV, raising=False)
    full = Btf.from_file(next(t["path"] for t in kernel_btfs if t["label"] != "running"))
    blob = minimize([check_objects["newer"]], full, checks=True).data
    good = Btf.from_bytes(blob, name="good")
    assert not validcache.known_valid(good)
    core._VALID.discard(_blake(blob))
    core.Target("good", good).validate()
    where = tmp_path / "xdg" / "pybpf" / "valid"
    key = validcache.verdict_key(good)
    assert key is not None and (where / key).is_file()
    assert os.stat(where).st_mode & 0o777 == 0o700 and os.stat(where / key).st_mode & 0o077 == 0
    assert validcache.known_valid(Btf.from_bytes(blob, name="again"))
    # the key depends on the validator's code: another validator reads none of these verdicts
    monkeypatch.setattr(validcache, "_validator", b"another validator")
    assert validcache.verdict_key(good) != key and not validcache.known_valid(good)
    monkeypatch.setattr(validcache, "_validator", None)
    # a mutant the validator refuses: refused again, never kept
    bad = next(m for m in _mutants(blob, 200, 7) if _refused(m))
    for _ in range(2):
        core._VALID.discard(_blake(bad))
        with pytest.raises(ObjectFormatError):
            core.Target("bad", Btf.from_bytes(bad, name="bad")).validate()
    bad_key = validcache.verdict_key(Btf.from_bytes(bad, name="bad"))
    assert bad_key is not None and not (where / bad_key).exists()
    # planted entries: a symlink, or a file of another user, say nothing
    os.symlink(where / key, where / bad_key)
    assert not validcache.known_valid(Btf.from_bytes(bad, name="bad"))
    os.unlink(where / bad_key)
    (where / bad_key).write_bytes(b"")
    os.chown(where / bad_key, 65534, 65534)
    assert not validcache.known_valid(Btf.from_bytes(bad, name="bad"))
    # PYBPF_NO_CACHE=1: nothing read, nothing kept
    monkeypatch.setenv(validcache.ENV, "1")
    assert validcache.cache_dir() is None and not validcache.known_valid(good)
    # split BTF is not kept (its verdict depends on its base too)
    assert validcache.verdict_key(Btf.from_bytes(_split_of(full), base=full, name="split")) is None


def _blake(data: bytes) -> bytes:
    from hashlib import blake2b
    return blake2b(data, digest_size=16).digest()


def _refused(blob: bytes) -> bool:
    """Parsed, but refused by the validator."""
    try:
        btf = Btf.from_bytes(blob, name="m")
    except (ObjectFormatError, BpfError):
        return False
    try:
        validate_btf(btf, fast=False)
    except (ObjectFormatError, BpfError):
        return True
    return False


def _split_of(base: Btf) -> bytes:
    """A one-type split BTF over ``base``: ``typedef int x`` (the first INT of base)."""
    strs = b"x\0"
    int_id = next(i for i in range(1, len(base)) if base.kind_of(i) == "int")
    types = struct.pack("<III", len(base._strs), 8 << 24, int_id)
    return struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strs)) + types + strs


def test_scan_fast_and_checked_agree(kernel_btfs, check_objects) -> None:
    """Btf._scan's word walk finds what the record-by-record scan finds, or hands over."""
    from pybpf.spec.minimize import minimize
    full = Btf.from_file(next(t["path"] for t in kernel_btfs if t["label"] != "running"))
    small = minimize([check_objects["newer"], pybpf.bundled("counters")], full, checks=True).data
    blobs = [full._data, small] + _mutants(small, 300, 23)
    if os.path.exists("/sys/kernel/btf/vmlinux"):
        blobs.append(Btf.kernel()._data)
    fast_used = 0
    for blob in blobs:
        try:
            b = Btf.from_bytes(blob, name="m")
        except (ObjectFormatError, BpfError):
            continue
        hdr_len, type_off, type_len = struct.unpack_from("<I", blob, 4)[0], *struct.unpack_from("<II", blob, 8)
        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        fast = b._scan_words(pos, end)
        fast_names = b._name_offs
        checked = b._scan_checked(pos, end)
        if fast is not None:
            fast_used += 1
            assert fast == checked and list(fast_names) == list(b._name_offs)
    assert fast_used >= 2


def test_alignof_is_libbpfs(kernel_btfs) -> None:
    """Btf.alignof = libbpf's btf__align_of on every int, enum, pointer, array, struct and union
    of a kernel BTF (asked of libbpf itself through the binding's btf__parse)."""
    import ctypes
    lib = ctypes.CDLL("libbpf.so.1")
    lib.btf__new.restype = ctypes.c_void_p
    lib.btf__new.argtypes = [ctypes.c_char_p, ctypes.c_uint32]
    lib.btf__align_of.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.btf__free.argtypes = [ctypes.c_void_p]
    full = Btf.from_file(next(t["path"] for t in kernel_btfs if t["label"] != "running"))
    handle = lib.btf__new(full._data, len(full._data))
    assert handle
    try:
        kinds = ("int", "enum", "enum64", "ptr", "array", "struct", "union", "typedef", "const", "volatile")
        asked = 0
        for tid in range(1, len(full), 7):
            if full.kind_of(tid) not in kinds:
                continue
            want = lib.btf__align_of(handle, tid)
            if want <= 0:
                continue
            assert full.alignof(tid) == want, (tid, full[tid].kind, full[tid].name)
            asked += 1
        assert asked > 2000
    finally:
        lib.btf__free(handle)


def test_partial_index_finds_what_the_full_index_finds(kernel_btfs) -> None:
    """seed_index's one regular expression over the strings finds, for each name asked, the
    ids the full essential-name index has (flavored names included), and nothing else."""
    from pybpf.btf.relo import _wanted_offsets, essential_index, essential_name, seed_index, unseed_index
    full = Btf.from_file(next(t["path"] for t in kernel_btfs if t["label"] != "running"))
    exact = essential_index(full)
    names = sorted(full._name_index())
    flavored = sorted({essential_name(n) for n in names if essential_name(n) != n})
    wanted = names[::300] + flavored + ["task_struct", "no_such_type_anywhere", "a"]
    assert flavored
    fresh = Btf.from_bytes(full._data, name="fresh")
    assert seed_index(fresh, wanted)
    try:
        partial = essential_index(fresh)
        for n in wanted:
            assert partial.get(n) == exact.get(n), n
    finally:
        unseed_index(fresh)
    # the trie and the split of the string section agree, copies of a string included
    strs = b"\0ab\0abc\0b\0ab\0x___y\0abcd\0"
    for words in ({b"ab", b"abc", b"b"}, {b"abcd"}, {b"zz"}, set()):
        got = _wanted_offsets(strs, words)
        parts = strs.split(b"\0")
        starts = [sum(len(p) + 1 for p in parts[:k]) for k in range(len(parts))]
        assert got == {s: p for s, p in zip(starts, parts) if p in words}
