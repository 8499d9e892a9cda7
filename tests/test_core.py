"""The offline CO-RE check against real kernel BTFs (issue 13).

Targets: the release's kernel packages (Debian 12: 6.1 generic, rt and cloud, 6.12; Debian 13:
6.12 generic, rt and cloud), fetched with apt-get and extracted with ``pybpf btf extract`` by
tools/fetch_kernel_btfs.py into .cache/kernel-btf (once per machine; the ``kernel_btfs`` fixture
of conftest.py, which lists the kernels used at the end of the run), plus the running kernel's BTF. Corpus: every bundled object and the
test objects of bpf_src/core/ (every relocation kind).

The agreement test loads each (object, target) pair through libbpf with
``btf_custom_path=target`` and compares what libbpf's debug log says it patched with
the engine's prediction: it must be equal for every relocation.
"""

from __future__ import annotations

import json
import lzma
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path
from typing import Any

import pytest

import pybpf
from pybpf.btf import Btf
from pybpf.btf import hub
from pybpf.btf.extract import decompress_kernel, extract_btf
from pybpf.spec.minimize import minimize
from pybpf.btf.relo import KIND_SHORT, RelocInput, Relocator
from pybpf.btf.types import BtfType
from pybpf.btf.write import write_btf
from pybpf.distro import os_release
from pybpf.errors import BpfError, CoreRelocationError, NotSupportedError, ObjectFormatError
from pybpf.spec.core import Target, libbpf_relocations, load_target, relocate
from pybpf.spec.elf import inspect
from pybpf.toolchain import build

from .conftest import KERNEL_BTF_DIR, ROOT, needs_kernel

CACHE = KERNEL_BTF_DIR
CORE_SRC = ROOT / "bpf_src" / "core"
NEW_CLANGS = ("clang-19", "clang-18", "clang-17", "clang-16", "clang-15")


@pytest.fixture(scope="session")
def core_objects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """bpf_src/core/*.bpf.c built with pybpf.build (clang >= 15 for bpf_core_type_matches)."""
    clang = next((c for c in NEW_CLANGS if shutil.which(c)), None)
    if clang is None:
        needs_kernel("needs clang >= 15 (apt-get install clang-19) for bpf_core_type_matches()")
    out = tmp_path_factory.mktemp("core-objects")
    return {src.name.removesuffix(".bpf.c"): str(build(src, out / src.name.replace(".c", ".o"), clang=clang))
            for src in sorted(CORE_SRC.glob("*.bpf.c"))}


@pytest.fixture(scope="session")
def corpus(core_objects: dict[str, str]) -> dict[str, str]:
    objs = {name: pybpf.bundled(name) for name in pybpf.bundled_names()}
    objs.update(core_objects)
    return objs


def _libbpf_log(obj: str, btf: str) -> str:
    """libbpf's debug log of loading ``obj`` against target ``btf`` (the load may fail after
    relocation: a foreign kernel's offsets need not verify here)."""
    o = pybpf.open(obj, btf_custom_path=btf)
    try:
        o.load()
    except BpfError:
        pass
    finally:
        log = o.load_log
        o.close()
    return log


def _expected(r: Any) -> tuple[str, int, int | None]:
    if r.fatal:
        return ("failed", -1, None)
    if r.poisoned:
        return ("poisoned", r.insn, None)
    return ("patched", r.insn, r.value)


def _compare(obj: str, btf_path: str, target: Target, id_map: dict[int, int] | None = None
             ) -> tuple[int, list[tuple[Any, ...]], set[str]]:
    """(relocations checked, disagreements, kinds seen) for one (object, target) pair."""
    spec = inspect(obj)
    predicted = relocate(spec, target)
    got = libbpf_relocations(_libbpf_log(obj, btf_path))
    stopped = any(v[0] == "failed" for v in got.values())
    checked, bad, kinds = 0, [], set()
    for r in predicted:
        g = got.get((r.program, r.index))
        if g is None and stopped:
            continue  # libbpf stops at the first failing relocation
        want = _expected(r)
        if id_map is not None and g is not None and r.kind == "target_type_id" and g[2]:
            g = (g[0], g[1], id_map[g[2]])
        checked += 1
        kinds.add(r.kind)
        if g != want:
            bad.append((os.path.basename(obj), r.program, r.index, r.kind, r.path, want, g))
    extra = set(got) - {(r.program, r.index) for r in predicted}
    for key in extra:
        bad.append((os.path.basename(obj), key[0], key[1], "?", "not predicted", None, got[key]))
    return checked, bad, kinds


# ---- the agreement test -----------------------------------------------------------------------

def test_prediction_equals_what_libbpf_patches(kernel, kernel_btfs, corpus) -> None:
    pairs = checked = 0
    disagreements: list[tuple[Any, ...]] = []
    kinds: set[str] = set()
    outcomes: set[str] = set()
    rows = []
    for t in kernel_btfs:
        target = load_target(t["path"])
        n_t = 0
        for name, obj in corpus.items():
            n, bad, k = _compare(obj, t["path"], target)
            if n:
                pairs += 1
            n_t += n
            checked += n
            disagreements += bad
            kinds |= k
            outcomes |= {_expected(r)[0] for r in relocate(inspect(obj), target)}
        rows.append((t["label"], t["release"], n_t))
    print(f"\nCO-RE agreement: {pairs} (object, target) pairs, {checked} relocations, "
          f"{len(disagreements)} disagreements")
    for row in rows:
        print("  %-13s %-28s %4d relocations" % row)
    assert not disagreements, "\n".join(map(str, disagreements))
    assert kinds == set(KIND_SHORT.values()), f"kinds never exercised: {set(KIND_SHORT.values()) - kinds}"
    assert {"patched", "poisoned"} <= outcomes
    assert checked > 300


def test_min_btf_gives_the_same_relocations_as_full(kernel, kernel_btfs, corpus) -> None:
    sizes = []
    for t in kernel_btfs:
        full = Btf.from_file(t["path"])
        small = minimize(list(corpus.values()), full)
        path = CACHE / f"min-{t['file']}"
        path.write_bytes(small.data)
        sizes.append((t["label"], os.path.getsize(t["path"]), len(small.data), small.types, len(full) - 1))
        mtarget = Target(str(path), Btf.from_bytes(small.data))
        for obj in corpus.values():
            # libbpf on MIN == libbpf on FULL (type ids renumbered: mapped back)
            full_got = libbpf_relocations(_libbpf_log(obj, t["path"]))
            min_got = libbpf_relocations(_libbpf_log(obj, str(path)))
            kinds = {(r.program, r.index): r.kind for r in relocate(inspect(obj), mtarget)}
            mapped = {k: (v[0], v[1], small.old_id[v[2]] if kinds.get(k) == "target_type_id" and v[2] else v[2])
                      for k, v in min_got.items()}
            assert mapped == full_got, (obj, t["label"])
            # and the engine on MIN predicts what libbpf does on MIN
            n, bad, _ = _compare(obj, str(path), mtarget)
            assert not bad, bad
    print("\nmin BTF sizes (bytes, types): " + "; ".join(
        f"{lb}: {f} -> {m} ({mt} of {ft} types)" for lb, f, m, mt, ft in sizes))
    assert all(m * 50 < f for _lb, f, m, _mt, _ft in sizes)


# ---- extraction -------------------------------------------------------------------------------

def test_btf_extract_read_the_downloaded_images(kernel_btfs) -> None:
    """fetch_kernel_btfs ran `pybpf btf extract` on each package's vmlinuz (xz, lz4, zstd on Debian 12)."""
    formats = set()
    for t in kernel_btfs:
        btf = Btf.from_file(t["path"])
        assert len(btf) > 50_000 and btf.find("task_struct", "struct"), t["label"]
        formats.add(t["compression"])
        if shutil.which("bpftool") and t["compression"] == "lz4":  # bpftool reads what we extracted
            out = subprocess.run(["bpftool", "btf", "dump", "file", t["path"]], capture_output=True, text=True)
            assert out.returncode == 0 and out.stdout.count("\n[") + 1 == len(btf) - 1
    # every image of the release's archive read, each in the compression its config names;
    # Debian 12's kernels use xz (6.1 generic, rt), lz4 (6.1 cloud) and zstd (6.12); Debian 13's are
    # all 6.12, zstd (xz and lz4 payloads are covered there by test_btf_extract_every_payload_compression)
    assert all(t["compression"] for t in kernel_btfs if t["label"] != "running"), kernel_btfs
    release = os_release().get("VERSION_ID", "")
    assert {"12": {"xz", "lz4", "zstd"}, "13": {"zstd"}}.get(release, set()) <= formats, (release, formats)


def test_btf_extract_module_needs_its_base(kernel_btfs, tmp_path: Path) -> None:
    # Debian 12 ships nls_utf8.ko (6.1) and .ko.xz (6.12); Debian 13 only .ko.xz
    with_module = sorted((t for t in kernel_btfs if t.get("module")), key=lambda t: not t["module"].endswith(".ko"))
    assert with_module, "no kernel of the corpus came with its nls_utf8 module"
    t = with_module[0]
    ko = str(CACHE / t["module"])
    proc = subprocess.run([sys.executable, "-m", "pybpf.cli", "btf", "extract", ko, "-o", str(tmp_path / "m.btf")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "--base" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "pybpf.cli", "btf", "extract", ko, "--base", t["path"],
                           "-o", str(tmp_path / "m.btf")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    base = Btf.from_file(t["path"])
    split = Btf.from_file(tmp_path / "m.btf", base=base)
    assert split.start_id == len(base) and len(split) > len(base)
    assert split.find("init_nls_utf8", "func") >= len(base)
    xz = next((t for t in kernel_btfs if t.get("module", "").endswith(".ko.xz")), None)
    if xz is not None:  # 6.12 ships xz-compressed modules
        raw = extract_btf(str(CACHE / xz["module"]), base=xz["path"])
        assert Btf.from_bytes(raw, base=Btf.from_file(xz["path"])).find("init_nls_utf8", "func")


from tests.mutate import bzimage as _bzimage, elf_with_btf as _elf_with_btf, lz4_legacy as _lz4_legacy  # noqa: E402


@pytest.mark.parametrize("fmt", ["gzip", "xz", "lzma", "bzip2", "lz4", "zstd"])
def test_btf_extract_every_payload_compression(fmt: str, bundled) -> None:
    import bz2
    import zstandard
    raw = Btf.from_file(bundled("counters"))._data
    elf = _elf_with_btf(raw)
    comp = {
        "gzip": lambda d: (lambda c: c.compress(d) + c.flush())(zlib.compressobj(9, zlib.DEFLATED, 31)),
        "xz": lambda d: lzma.compress(d, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32),
        "lzma": lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE),
        "bzip2": bz2.compress,
        "lz4": _lz4_legacy,
        "zstd": lambda d: zstandard.ZstdCompressor().compress(d),
    }[fmt]
    image = _bzimage(comp(elf))
    assert decompress_kernel(image, fmt) == elf
    assert extract_btf(image) == raw
    assert extract_btf(elf) == raw


def test_btf_extract_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ObjectFormatError, match="not a kernel image"):
        extract_btf(b"\x00" * 4096, where="junk")
    with pytest.raises(ObjectFormatError, match="no .BTF section"):
        extract_btf(_elf_without_btf())
    lzo = _bzimage(b"\x89LZO\x00" + bytes(64))
    with pytest.raises(NotSupportedError, match="LZO"):
        extract_btf(lzo)


def _elf_without_btf() -> bytes:
    data = bytearray(_elf_with_btf(b"\x00" * 8))
    return bytes(data.replace(b"\0.BTF\0", b"\0.XYZ\0"))


# ---- check: CLI and API -----------------------------------------------------------------------

def test_check_json_schema_and_values(kernel_btfs, core_objects) -> None:
    paths = [t["path"] for t in kernel_btfs if t["label"] in ("6.1-generic", "running", "6.12-generic")][:2]
    args = [sys.executable, "-m", "pybpf.cli", "check", core_objects["core_kinds"], "--json"]
    for p in paths:
        args += ["--btf", p]
    proc = subprocess.run(args, capture_output=True, text=True)
    doc = json.loads(proc.stdout)
    assert proc.returncode == (0 if all(t["ok"] for t in doc["targets"]) else 1)
    assert [t["btf"] for t in doc["targets"]] == paths
    spec = inspect(core_objects["core_kinds"])
    for t, path in zip(doc["targets"], paths):
        assert isinstance(t["btf"], str) and isinstance(t["programs"], list)
        flat = []
        for p in t["programs"]:
            assert isinstance(p["name"], str) and isinstance(p["ok"], bool)
            for r in p["relocations"]:
                assert isinstance(r["insn"], int) and r["kind"] in KIND_SHORT.values()
                assert isinstance(r["access"], str) and isinstance(r["ok"], bool)
                assert r["value"] is None or isinstance(r["value"], int)
                flat.append((p["name"], r["insn"], r["kind"], r["access"], r["value"], r["ok"]))
        want = [(r.program, r.insn, r.kind, r.access, r.value, r.ok) for r in relocate(spec, load_target(path))]
        assert flat == want
    # the same document from the Python API
    assert pybpf.check(core_objects["core_kinds"], paths) == {**doc, "object": doc["object"]}


def test_check_names_the_missing_field_and_instruction(kernel_btfs, core_objects) -> None:
    t = kernel_btfs[0]
    proc = subprocess.run([sys.executable, "-m", "pybpf.cli", "check", core_objects["core_missing"],
                           "--btf", t["path"]], capture_output=True, text=True)
    assert proc.returncode == 1
    relo = next(r for r in relocate(inspect(core_objects["core_missing"]), load_target(t["path"])))
    assert "field `pybpf_no_such_field` of `struct task_struct___pybpf` does not exist" in proc.stdout
    assert f"program `read_missing` will fail at instruction {relo.insn}" in proc.stdout


def test_check_btf_dir_and_kernel(kernel_btfs, core_objects, tmp_path: Path) -> None:
    d = tmp_path / "fleet" / "debian" / "12" / "x86_64"
    d.mkdir(parents=True)
    src = kernel_btfs[0]
    shutil.copyfile(src["path"], d / f"{src['release']}.btf")
    with tarfile.open(d / "other.btf.tar.xz", "w:xz", preset=0) as tar:
        tar.add(kernel_btfs[-1]["path"], arcname="other.btf")
    doc = pybpf.check(core_objects["core_kinds"], [str(d / f"{src['release']}.btf"), str(d / "other.btf.tar.xz")])
    proc = subprocess.run([sys.executable, "-m", "pybpf.cli", "check", core_objects["core_kinds"], "--json",
                           "--btf-dir", str(tmp_path / "fleet")], capture_output=True, text=True)
    got = json.loads(proc.stdout)
    assert sorted(t["btf"] for t in got["targets"]) == sorted(t["btf"] for t in doc["targets"])
    by = {t["btf"]: t for t in got["targets"]}
    for t in doc["targets"]:
        assert by[t["btf"]]["programs"] == t["programs"]
    if os.path.exists(hub.SYSFS_BTF):
        k = pybpf.check(core_objects["core_kinds"], kernel=True)
        assert k["targets"][0]["btf"] == hub.SYSFS_BTF and k["targets"][0]["programs"]


def test_check_runs_without_root(kernel_btfs, core_objects, tmp_path: Path) -> None:
    from .conftest import run_unprivileged
    obj = tmp_path / "k.bpf.o"
    btf = tmp_path / "t.btf"
    shutil.copyfile(core_objects["core_kinds"], obj)
    shutil.copyfile(kernel_btfs[0]["path"], btf)
    os.chmod(tmp_path, 0o755)
    code = (f"import pybpf, json; d = pybpf.check({str(obj)!r}, [{str(btf)!r}]); "
            f"print(json.dumps([p['name'] for p in d['targets'][0]['programs']]))")
    proc = run_unprivileged(code)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [p.name for p in inspect(str(obj)).programs]


# ---- load-time errors and the fallback --------------------------------------------------------

def test_failed_relocation_is_a_typed_error(kernel, core_objects) -> None:
    obj = core_objects["core_missing"]
    with pybpf.open(obj) as o:
        with pytest.raises(CoreRelocationError) as info:
            o.load()
        log = o.load_log
    e = info.value
    libbpf = libbpf_relocations(log)
    assert libbpf[("read_missing", 0)][0] == "poisoned"
    assert (e.program, e.insn) == ("read_missing", libbpf[("read_missing", 0)][1])
    assert e.path == "task_struct___pybpf.pybpf_no_such_field" and e.kind == "byte_off"
    assert e.access == "0:0" and "pybpf_no_such_field" in e.missing
    assert "read_missing" in str(e) and f"instruction {e.insn}" in str(e)


def _hub(tmp_path: Path, btf: str, *, archive: bool) -> Path:
    os_id, version_id = hub.os_release_ids()
    import platform
    arch = {"aarch64": "arm64"}.get(platform.machine(), platform.machine())
    d = tmp_path / "hub" / (os_id or "unknown") / (version_id or "unknown") / arch
    d.mkdir(parents=True)
    release = platform.release()
    if archive:
        with tarfile.open(d / f"{release}.btf.tar.xz", "w:xz", preset=0) as tar:
            tar.add(btf, arcname=f"{release}.btf")
    else:
        shutil.copyfile(btf, d / f"{release}.btf")
    return tmp_path / "hub"


@pytest.mark.parametrize("archive", [False, True])
def test_fallback_finds_a_btfhub_btf_when_the_kernel_has_none(kernel, bundled, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              archive: bool) -> None:
    real = hub.SYSFS_BTF
    directory = _hub(tmp_path, real, archive=archive)
    monkeypatch.setattr(hub, "SYSFS_BTF", str(tmp_path / "no-sysfs-btf"))  # a kernel without BTF
    found = hub.find_btf(str(directory))
    assert found is not None and Path(found).read_bytes() == Path(real).read_bytes()
    with pybpf.open(bundled("counters"), btf_path=str(directory)) as o:
        assert o._btf_custom_path == found
        o.load()
        got = libbpf_relocations(o.load_log)
    want = {(r.program, r.index): _expected(r) for r in relocate(inspect(bundled("counters")), load_target(found))}
    assert got == want and got
    monkeypatch.setenv("PYBPF_BTF_PATH", f"{tmp_path / 'elsewhere'}:{directory}")
    assert hub.find_btf() == found


def test_fallback_error_says_where_it_looked(bundled, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub, "SYSFS_BTF", str(tmp_path / "no-sysfs-btf"))
    monkeypatch.delenv("PYBPF_BTF_PATH", raising=False)
    with pytest.raises(NotSupportedError) as info:
        pybpf.open(bundled("counters"), btf_path=str(tmp_path / "hub"))
    msg = str(info.value)
    import platform
    assert platform.release() in msg and str(tmp_path / "hub") in msg and ".btf.tar.xz" in msg
    assert "no-sysfs-btf" in msg
    with pytest.raises(NotSupportedError, match="PYBPF_BTF_PATH"):
        hub.find_btf()
    # objects without CO-RE relocations don't need a kernel BTF
    pybpf.open(bundled("maps_test")).close()
    # and with a kernel BTF the lookup is not consulted
    monkeypatch.setattr(hub, "SYSFS_BTF", str(tmp_path))
    assert hub.find_btf(str(tmp_path / "nowhere")) is None


# ---- the engine on crafted BTFs: rules libbpf's own selftests cover ---------------------------

def _int(tid: int, size: int = 4, signed: bool = True) -> BtfType:
    return BtfType(tid, "int", "int" if signed else "unsigned int", size=size, bits=size * 8,
                   encoding="signed" if signed else "", signed=signed)


def _struct(tid: int, name: str, size: int, members: list[tuple[str, int, int, int]]) -> BtfType:
    return BtfType(tid, "struct", name, vlen=len(members), kflag=any(m[3] for m in members), size=size,
                   members=members)


def _mov_imm(imm: int) -> bytes:
    return struct.pack("<BBhi", 0xB7, 1, 0, imm) + bytes(8)


def _resolve(local: list[BtfType], target: list[BtfType], kind: str, type_id: int, access: str,
             insn: bytes) -> Any:
    lb, tb = Btf.from_bytes(write_btf(local)), Btf.from_bytes(write_btf(target))
    return Relocator(lb, tb).resolve(RelocInput(0, "p", "s", 0, kind, type_id, access, insn))


def test_flavors_that_disagree_are_an_ambiguity_error() -> None:
    local = [_int(1), _struct(2, "foo", 8, [("a", 1, 0, 0), ("b", 1, 32, 0)])]
    same = [_int(1), _struct(2, "foo___x", 8, [("b", 1, 32, 0)]), _struct(3, "foo___y", 16, [("b", 1, 32, 0)])]
    r = _resolve(local, same, "byte_off", 2, "0:1", _mov_imm(4))
    assert r.ok and r.value == 4 and r.candidates == 2
    differ = [_int(1), _struct(2, "foo___x", 8, [("b", 1, 32, 0)]), _struct(3, "foo", 16, [("b", 1, 64, 0)])]
    r = _resolve(local, differ, "byte_off", 2, "0:1", _mov_imm(4))
    assert r.fatal and "ambiguity" in r.reason


def test_bitfield_shifts_and_anonymous_members() -> None:
    # struct s { int pad; union { struct { unsigned x:3, y:5; }; }; } on the target
    local = [_int(1, signed=False), _struct(2, "s", 8, [("y", 1, 3, 5)])]
    anon_inner = _struct(3, "", 4, [("x", 1, 0, 3), ("y", 1, 3, 5)])
    union = BtfType(4, "union", "", vlen=1, size=4, members=[("", 3, 0, 0)])
    target = [_int(1, signed=False), _struct(2, "s", 8, [("pad", 1, 0, 0), ("", 4, 32, 0)]), anon_inner, union]
    got = {k: _resolve(local, target, k, 2, "0:0", _mov_imm(v)).value
           for k, v in (("byte_off", 0), ("byte_sz", 4), ("lshift_u64", 56), ("rshift_u64", 59), ("signed", 0))}
    # bit offset 35: 4-byte load at 4, shifted as libbpf computes it
    assert got == {"byte_off": 4, "byte_sz": 4, "lshift_u64": 64 - (35 + 5 - 32), "rshift_u64": 59, "signed": 0}


def test_verdicts_match_what_loading_here_does(kernel, corpus) -> None:
    """A poisoned instruction fails a load only if reachable: the check's per-program verdicts
    (constant propagation over the patched program) against real loads on this kernel."""
    from pybpf.spec.check import check_object
    from pybpf.spec.core import kernel_target
    target = kernel_target()
    guarded = 0
    for name, obj in corpus.items():
        if name in ("refused", "rejected", "upgrade_count_bad", "stackmap_settings"):  # refused for other reasons (lockdown, verifier, map settings)
            continue
        spec = inspect(obj)
        results = relocate(spec, target)
        guarded += sum(r.dead_code for r in results)
        predicted = all(p["ok"] for p in check_object(spec, target)["programs"])
        try:
            with pybpf.open(obj) as o:
                o.load()
            loaded = True
        except CoreRelocationError:
            loaded = False
        except NotSupportedError:  # the kernel refuses something else (an arena map here): not BTF's to tell
            continue
        assert loaded == predicted, name
    assert guarded > 0  # core_kinds guards task_struct___old.state with bpf_core_field_exists()
