"""Tests for pybpf.spec.elf: a real multi-program object checked field by field and
against bpftool/llvm-readelf, plus malformed and fuzzed objects."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.btf.types import Btf
from pybpf.errors import BpfError, ObjectFormatError
from pybpf.spec.elf import ObjectSpec, inspect, section_program_type

DATA = Path(__file__).parent / "data" / "spec"
VMLINUX = "/sys/kernel/btf/vmlinux"
pytestmark = pytest.mark.skipif(
    not (shutil.which("clang") and shutil.which("bpftool") and os.path.exists(VMLINUX)),
    reason="needs clang, bpftool and kernel BTF")


def _clang(src: Path, out: Path, *, debug: bool = True, includes: tuple[Path, ...] = ()) -> Path:
    cmd = ["clang", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86", *(["-g"] if debug else []),
           *[f"-I{i}" for i in includes], "-c", str(src), "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    subprocess.run(["llvm-strip", "-g", str(out)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("spec")
    with open(d / "vmlinux.h", "wb") as f:
        subprocess.run(["bpftool", "btf", "dump", "file", VMLINUX, "format", "c"], stdout=f, check=True)
    return d


@pytest.fixture(scope="module")
def multi_obj(build: Path) -> Path:
    return _clang(DATA / "multi.bpf.c", build / "multi.bpf.o", includes=(build,))


@pytest.fixture(scope="module")
def spec(multi_obj: Path) -> ObjectSpec:
    return ObjectSpec.from_file(multi_obj)


@pytest.fixture(scope="module")
def nobtf_obj(build: Path) -> Path:
    src = build / "nobtf.bpf.c"
    src.write_text('#define SEC(n) __attribute__((section(n), used))\n'
                   'char LICENSE[] SEC("license") = "GPL";\n'
                   'int counter = 3;\n'
                   'struct xdp_md;\n'
                   'SEC("xdp") int pass(struct xdp_md *ctx) { return counter ? 2 : 0; }\n')
    return _clang(src, build / "nobtf.bpf.o", debug=False)


# ---- programs ---------------------------------------------------------------------------
EXPECTED_PROGRAMS = {
    # name: (section, prog_type, expected_attach_type, attach_target)
    "on_getppid": ("tracepoint/syscalls/sys_enter_getppid", "tracepoint", None, "syscalls/sys_enter_getppid"),
    "on_raw": ("raw_tp/sys_enter", "raw_tracepoint", None, "sys_enter"),
    "xdp_pass": ("xdp", "xdp", "xdp", None),
    "xdp_drop": ("xdp", "xdp", "xdp", None),
    "sock_filter": ("socket", "socket_filter", None, None),
    "dump_task": ("iter/task", "tracing", "trace_iter", "task"),
    "tc_prog": ("tc", "sched_cls", None, None),
    "cg_ingress": ("cgroup_skb/ingress", "cgroup_skb", "cgroup_inet_ingress", None),
    "on_nanosleep": ("fentry/do_nanosleep", "tracing", "trace_fentry", "do_nanosleep"),
    "on_uprobe": ("uprobe", "kprobe", None, None),
    "on_perf": ("perf_event", "perf_event", None, None),
}


def _skeleton_names(obj: Path) -> tuple[list[str], list[str]]:
    out = subprocess.run(["bpftool", "gen", "skeleton", str(obj), "name", "t"],
                         capture_output=True, text=True, check=True).stdout
    maps = re.findall(r"^\t\tstruct bpf_map \*(\w+);", out, re.M)
    progs = re.findall(r"^\t\tstruct bpf_program \*(\w+);", out, re.M)
    return maps, progs


def test_programs(spec: ObjectSpec, multi_obj: Path) -> None:
    assert spec.name == "multi"
    assert spec.license == "Dual BSD/GPL"
    assert {p.name for p in spec.programs} == set(EXPECTED_PROGRAMS)
    for p in spec.programs:
        assert (p.section, p.prog_type, p.expected_attach_type, p.attach_target) == \
            EXPECTED_PROGRAMS[p.name], p.name
        assert p.license == "Dual BSD/GPL"
        assert p.insn_count * 8 == len(p.insns) and p.insn_count > 0
    # Two programs in one section: located by symbol value/size.
    xp, xd = spec.program("xdp_pass"), spec.program("xdp_drop")
    assert xp.insn_offset == 0 and xd.insn_offset == xp.insn_count * 8
    assert "helper_sub" not in {p.name for p in spec.programs}  # a subprogram
    _maps, progs = _skeleton_names(multi_obj)
    assert [p.name for p in spec.programs] == progs
    # Symbol sizes agree with llvm-readelf.
    out = subprocess.run(["llvm-readelf", "-s", "--wide", str(multi_obj)], capture_output=True,
                         text=True, check=True).stdout
    sizes = {m.group(2): int(m.group(1)) for m in
             re.finditer(r"^\s*\d+: [0-9a-f]+\s+(\d+) FUNC\s+GLOBAL\s+\S+\s+\d+ (\w+)$", out, re.M)}
    for p in spec.programs:
        assert sizes[p.name] == p.insn_count * 8
    assert spec.program("on_getppid").prog_type_id == 5  # BPF_PROG_TYPE_TRACEPOINT


@pytest.mark.parametrize("section,want", [
    ("tp/sched/sched_switch", ("tracepoint", None, "sched/sched_switch")),
    ("raw_tracepoint/sys_exit", ("raw_tracepoint", None, "sys_exit")),
    ("tp_btf/sched_switch", ("tracing", "trace_raw_tp", "sched_switch")),
    ("fexit/do_exit", ("tracing", "trace_fexit", "do_exit")),
    ("fmod_ret/x", ("tracing", "modify_return", "x")),
    ("lsm/file_open", ("lsm", "lsm_mac", "file_open")),
    ("kprobe/do_sys_open", ("kprobe", None, "do_sys_open")),
    ("kretprobe/do_sys_open", ("kprobe", None, "do_sys_open")),
    ("uretprobe//bin/bash:readline", ("kprobe", None, "/bin/bash:readline")),
    ("usdt/libc.so.6:libc:setjmp", ("kprobe", None, "libc.so.6:libc:setjmp")),
    ("classifier", ("sched_cls", None, None)),
    ("action", ("sched_act", None, None)),
    ("cgroup_skb/egress", ("cgroup_skb", "cgroup_inet_egress", None)),
    ("cgroup/skb", ("cgroup_skb", None, None)),
    ("sk_skb/stream_parser", ("sk_skb", "sk_skb_stream_parser", None)),
    ("sk_msg", ("sk_msg", "sk_msg_verdict", None)),
    ("struct_ops/foo", ("struct_ops", None, "foo")),
    ("syscall", ("syscall", None, None)),
    ("xdp.frags", ("xdp", "xdp", None)),
    ("xdp/devmap", ("xdp", "xdp_devmap", None)),
    ("cgroup/connect4", ("cgroup_sock_addr", "cgroup_inet4_connect", None)),
    ("tracepointx", (None, None, None)),  # "x+" needs an exact match or "x/"
    ("xdp_foo", (None, None, None)),  # exact-match prefixes don't match longer names
])
def test_section_table(section: str, want: tuple) -> None:
    assert section_program_type(section)[:3] == want


# ---- maps -------------------------------------------------------------------------------
def test_maps(spec: ObjectSpec, multi_obj: Path) -> None:
    btf = spec.btf
    assert btf is not None
    m = {x.name: x for x in spec.maps}
    pairs = m["pairs"]
    assert (pairs.type, pairs.type_id, pairs.max_entries, pairs.flags) == ("hash", 1, 1024, 0)
    assert btf.c_name(pairs.key_type_id) == "struct pair_key" and pairs.key_size == 8
    assert btf.c_name(pairs.value_type_id) == "struct pair_val" and pairs.value_size == 24
    assert btf.dtype(pairs.value_type_id).names == ("count", "comm")
    slots = m["slots"]
    assert (slots.type, slots.max_entries, slots.key_size, slots.value_size) == ("array", 256, 4, 8)
    assert slots.flag_names == ["MMAPABLE"] and slots.flags == 1024
    assert btf.c_name(slots.value_type_id) == "__u64"
    percpu = m["percpu"]
    assert (percpu.type, percpu.key_type_id, percpu.value_type_id) == ("percpu_array", 0, 0)
    assert (percpu.key_size, percpu.value_size, percpu.max_entries) == (4, 8, 4)
    ev = m["events"]
    assert (ev.type, ev.type_id, ev.max_entries, ev.key_size, ev.value_size) == ("ringbuf", 27, 65536, 0, 0)
    outer = m["outer"]
    assert outer.type == "array_of_maps" and outer.max_entries == 2 and outer.inner is not None
    assert (outer.inner.type, outer.inner.max_entries, outer.inner.value_size) == ("array", 8, 4)
    pinned = m["pinned"]
    assert (pinned.type, pinned.pinning, pinned.flag_names) == ("lru_hash", "by_name", ["NO_COMMON_LRU"])
    assert all(x.pinning == "none" for x in spec.maps if x.name != "pinned")
    # Internal maps.
    for name, size, flags in ((".rodata", 12, ["RDONLY_PROG", "MMAPABLE"]), (".bss", 24, ["MMAPABLE"]),
                              (".data", 32, ["MMAPABLE"]), (".data.custom", 8, ["MMAPABLE"])):
        im = m[name]
        assert im.internal and im.type == "array" and im.max_entries == 1
        assert im.value_size == size and im.flag_names == flags
        assert btf[im.value_type_id].kind == "datasec" and btf.dtype(im.value_type_id).itemsize == size
    assert not any(x.internal for x in spec.maps if not x.name.startswith("."))
    # Same maps, same order as bpftool's skeleton (internal maps named without the dot).
    skel_maps, _ = _skeleton_names(multi_obj)
    assert [x.name.lstrip(".").replace(".", "_") for x in spec.maps] == skel_maps


# ---- globals ----------------------------------------------------------------------------
def test_globals(spec: ObjectSpec) -> None:
    btf = spec.btf
    assert btf is not None
    g = {x.name: x for x in spec.globals}
    assert set(g) == {"want_tgid", "banner", "hits", "seen", "counter", "last_val", "custom_var"}
    assert (g["want_tgid"].section, g["want_tgid"].type_name, g["want_tgid"].offset) == \
        (".rodata", "const volatile __u32", 0)
    assert g["banner"].type_name == "const volatile char[8]" and g["banner"].initial == b"hello\0\0\0"
    assert np.frombuffer(g["banner"].initial, btf.dtype(g["banner"].type_id))[0] == b"hello"
    assert (g["hits"].section, g["hits"].size, g["hits"].initial) == (".bss", 8, bytes(8))
    assert (g["seen"].offset, g["seen"].type_name, g["seen"].size) == (8, "__u32[4]", 16)
    assert int.from_bytes(g["counter"].initial, "little") == 42 and g["counter"].type_name == "int"
    rec = np.frombuffer(g["last_val"].initial, btf.dtype(g["last_val"].type_id))[0]
    assert rec["count"] == 7 and rec["comm"] == b"init"
    assert g["custom_var"].section == ".data.custom"
    assert int.from_bytes(g["custom_var"].initial, "little") == 0x1122334455667788
    assert all(x.linkage == "global" for x in spec.globals)
    # The DATASEC dtype overlays the section image: reading .data as one record.
    data_sec = spec.sections[".data"].data
    drec = np.frombuffer(data_sec, btf.dtype(spec.map(".data").value_type_id))[0]
    assert drec["counter"] == 42 and drec["last_val"]["count"] == 7
    vs = btf.datasec(".rodata")
    assert [(v.name, v.offset, v.size, v.section) for v in vs] == \
        [("want_tgid", 0, 4, ".rodata"), ("banner", 4, 8, ".rodata")]
    assert set(btf.datasecs()) >= {".bss", ".data", ".rodata", ".data.custom", ".maps"}


# ---- .BTF.ext ---------------------------------------------------------------------------
def test_core_relocations(spec: ObjectSpec) -> None:
    relos = [r for r in spec.core_relocations if r.program == "on_getppid"]
    paths = [(r.kind, r.path) for r in relos]
    assert ("field_byte_offset", "task_struct.real_parent") in paths
    assert ("field_byte_offset", "task_struct.tgid") in paths
    assert ("field_exists", "task_struct.pid") in paths
    assert ("enumval_exists", "enum bpf_map_type::BPF_MAP_TYPE_RINGBUF") in paths
    assert ("enumval_value", "enum bpf_map_type::BPF_MAP_TYPE_RINGBUF") in paths
    kernel = Btf.kernel()
    ts = kernel[kernel.find("task_struct", "struct")]
    for r in relos:
        assert r.section == "tracepoint/syscalls/sys_enter_getppid"
        assert r.insn_index * 8 == r.insn_offset < spec.program("on_getppid").insn_count * 8
        if r.kind == "field_byte_offset" and r.path == "task_struct.real_parent":
            # The access string indexes the local struct; the member it names exists in the kernel.
            idx = int(r.access.split(":")[1])
            assert spec.btf is not None
            assert spec.btf[r.type_id].members[idx][0] == "real_parent"
            assert "real_parent" in [m[0] for m in ts.members]
            assert r.access.startswith("0:")
    sock = [r for r in spec.core_relocations if r.program == "sock_filter"]
    assert [(r.kind, r.path) for r in sock] == [("field_byte_offset", "__sk_buff.len")]


def test_func_and_line_info(spec: ObjectSpec) -> None:
    fi = {(f.section, f.name) for f in spec.func_info}
    assert ("tracepoint/syscalls/sys_enter_getppid", "on_getppid") in fi
    assert (".text", "helper_sub") in fi
    assert len(spec.func_info) == len(EXPECTED_PROGRAMS) + 1
    sec = "tracepoint/syscalls/sys_enter_getppid"
    lines = [li for li in spec.line_info if li.section == sec]
    assert lines and all(li.file_name.endswith("multi.bpf.c") for li in lines)
    assert any("BPF_CORE_READ(task, real_parent, tgid)" in li.line for li in lines)
    # The read of ->tgid is scheduled after the line entry for BPF_CORE_READ (clang 14).
    relo = next(r for r in spec.core_relocations if r.path == "task_struct.tgid")
    assert "BPF_CORE_READ" in (spec.source_line(sec, relo.insn_offset) or "")
    last = {li.insn_offset: li.line for li in lines}
    for off, text in last.items():
        assert spec.source_line(sec, off) == text
        assert spec.source_line(sec, off + 1) == text  # inside the same instruction
    assert spec.source_line("no_such_section", 0) is None
    src = (DATA / "multi.bpf.c").read_text().splitlines()
    for li in lines:
        if li.line_num:
            assert src[li.line_num - 1] == li.line


def test_btf_summary_and_aliases(spec: ObjectSpec, multi_obj: Path) -> None:
    summary = spec.btf_summary()
    assert spec.btf is not None
    assert summary == spec.btf.kind_counts() and summary["datasec"] == 6
    assert sum(summary.values()) == len(spec.btf) - 1
    again = inspect(multi_obj.read_bytes(), name="mem")
    assert again.name == "mem" and [p.name for p in again.programs] == [p.name for p in spec.programs]
    assert len(Btf.from_file(multi_obj)) == len(spec.btf)


def test_object_without_btf(nobtf_obj: Path) -> None:
    s = ObjectSpec.from_file(nobtf_obj)
    assert s.btf is None and s.btf_summary() == {} and s.globals == [] and s.core_relocations == []
    assert [(p.name, p.prog_type) for p in s.programs] == [("pass", "xdp")]
    data = next(m for m in s.maps if m.name == ".data")
    assert data.internal and data.value_size == 4 and data.value_type_id == 0
    with pytest.raises(ObjectFormatError, match="no .BTF"):
        Btf.from_file(nobtf_obj)


def test_pure_and_unprivileged(multi_obj: Path, request: pytest.FixtureRequest) -> None:
    """The spec layer alone (errors, btf, btf_ext, spec; no _libbpf, no cffi) parses an
    object as user nobody."""
    # pytest's tmp dirs are 0700 under root: use a world-readable one.
    iso = Path(tempfile.mkdtemp(prefix="pybpf-iso-"))
    request.addfinalizer(lambda: shutil.rmtree(iso, ignore_errors=True))
    pkg = iso / "pybpf"
    pkg.mkdir()
    obj = iso / "multi.bpf.o"
    shutil.copy(multi_obj, obj)
    (pkg / "__init__.py").write_text("")
    src = Path(__file__).parent.parent / "src" / "pybpf"
    for name in ("errors.py", "kinds.py"):
        shutil.copy(src / name, pkg / name)
    for sub in ("btf", "spec"):
        shutil.copytree(src / sub, pkg / sub)
    for d in [iso, *(p for p in iso.rglob("*") if p.is_dir())]:
        os.chmod(d, 0o755)
    code = ("import sys; from pybpf.spec.elf import inspect; s = inspect(sys.argv[1]); "
            "assert 'pybpf._sys.libbpf' not in sys.modules and 'cffi' not in sys.modules; "
            "print(len(s.programs), len(s.core_relocations))")
    env = {**os.environ, "PYTHONPATH": str(iso)}
    r = subprocess.run([sys.executable, "-c", code, str(obj)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    n_progs, _ = map(int, r.stdout.split())
    assert n_progs == len(EXPECTED_PROGRAMS)
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return  # already unprivileged, or can't switch user
    # nobody, with CAP_DAC_READ_SEARCH only (so it can read a Python installed under /root)
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "--inh-caps=-all,+dac_read_search", "--ambient-caps=+dac_read_search",
                        "--bounding-set=-all,+dac_read_search", sys.executable,
                        "-c", code, str(obj)], capture_output=True, text=True, env=env, cwd="/tmp")
    assert r.returncode == 0, r.stderr
    n_progs, n_relos = map(int, r.stdout.split())
    assert n_progs == len(EXPECTED_PROGRAMS) and n_relos >= 5


# ---- malformed input --------------------------------------------------------------------
def test_bad_objects(tmp_path: Path, multi_obj: Path) -> None:
    cases = {"empty": b"", "random": random.Random(5).randbytes(4096), "text": b"hello world\n"}
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(ObjectFormatError, match=re.escape(str(p))):
            ObjectSpec.from_file(p)
    with pytest.raises(ObjectFormatError, match="ELF for x86-64, not BPF"):
        ObjectSpec.from_file("/bin/true")
    with pytest.raises(ObjectFormatError):
        ObjectSpec.from_file(tmp_path / "missing.o")
    good = multi_obj.read_bytes()
    elf32 = bytearray(good)
    elf32[4] = 1
    with pytest.raises(ObjectFormatError, match="32-bit"):
        ObjectSpec.from_bytes(bytes(elf32))
    be = bytearray(good)
    be[5] = 2
    with pytest.raises(ObjectFormatError, match="big-endian"):
        ObjectSpec.from_bytes(bytes(be))


def test_truncated_objects(multi_obj: Path) -> None:
    good = multi_obj.read_bytes()
    lengths = sorted(set(list(range(0, 200, 7)) + list(range(0, len(good), max(1, len(good) // 150)))))
    for n in lengths:
        if n >= len(good):
            continue
        try:
            ObjectSpec.from_bytes(good[:n], name="trunc")
        except ObjectFormatError as e:
            assert "trunc" in str(e)
        # Some prefixes hold every section (the section headers sit in the middle):
        # succeeding is fine, as long as nothing else escapes.


def _btf_offsets(data: bytes) -> tuple[int, int]:
    """(file offset of .BTF, its size) via pyelftools, for targeted corruption."""
    from elftools.elf.elffile import ELFFile
    import io
    sec = ELFFile(io.BytesIO(data)).get_section_by_name(".BTF")
    return sec["sh_offset"], sec["sh_size"]


def test_corrupted_btf_in_object(multi_obj: Path) -> None:
    good = multi_obj.read_bytes()
    off, size = _btf_offsets(good)
    bad_magic = bytearray(good)
    bad_magic[off:off + 2] = b"\0\0"
    with pytest.raises(ObjectFormatError, match="bad magic"):
        ObjectSpec.from_bytes(bytes(bad_magic), name="m")
    big_strlen = bytearray(good)
    big_strlen[off + 20:off + 24] = (1 << 30).to_bytes(4, "little")
    with pytest.raises(ObjectFormatError, match="exceed"):
        ObjectSpec.from_bytes(bytes(big_strlen), name="m")
    # Point the first type's name past the string section.
    hdr_len = int.from_bytes(good[off + 4:off + 8], "little")
    type_off = int.from_bytes(good[off + 8:off + 12], "little")
    name_at = off + hdr_len + type_off
    bad_name = bytearray(good)
    bad_name[name_at:name_at + 4] = (0x7FFFFFF0).to_bytes(4, "little")
    with pytest.raises(ObjectFormatError, match="string offset"):
        s = ObjectSpec.from_bytes(bytes(bad_name), name="m")
        assert s.btf is not None
        for tid in range(len(s.btf)):
            s.btf[tid]


def _exercise(spec: ObjectSpec) -> None:
    if spec.btf is not None:
        for tid in range(len(spec.btf)):
            try:
                spec.btf.dtype(tid)
                spec.btf.c_name(tid)
            except BpfError:
                pass
    for r in spec.core_relocations:
        spec.source_line(r.section, r.insn_offset)


@settings(max_examples=150, deadline=5000,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_objects_only_raise_pybpf_errors(multi_obj: Path, data: st.DataObject) -> None:
    blob = bytearray(multi_obj.read_bytes())
    btf_off, btf_size = _btf_offsets(bytes(blob))
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "set", "word", "truncate", "btf"]))
        if len(blob) < 2:
            break
        i = data.draw(st.integers(0, len(blob) - 1))
        if op == "flip":
            blob[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set":
            blob[i] = data.draw(st.integers(0, 255))
        elif op == "word":
            blob[i:i + 4] = data.draw(st.integers(0, 2**32 - 1)).to_bytes(4, "little")
        elif op == "btf" and btf_off + btf_size <= len(blob):  # aim inside .BTF
            j = btf_off + data.draw(st.integers(0, btf_size - 1))
            blob[j] = data.draw(st.integers(0, 255))
        elif op == "truncate":
            del blob[i:]
    try:
        spec = ObjectSpec.from_bytes(bytes(blob), name="fuzz")
    except BpfError as e:
        assert isinstance(e, ObjectFormatError) and "fuzz" in str(e)
        return
    _exercise(spec)
