"""The ``pybpf`` commands that use the kernel: demo, load, test-run, prog/map list/show/dump.

Real objects loaded into this kernel; JSON outputs are checked against the
library's own answers (``pybpf.kernel.info``, ``Map.lookup_batch``, ``Program.test_run``).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

import pybpf
from pybpf.kernel import info
from pybpf.cli import app
from pybpf.kernel.syscalls import SYSCALLS

from .conftest import new_fds, open_fds

runner = CliRunner(env={"COLUMNS": "250", "LINES": "50"})  # tables must not wrap what tests read
NR_GETPPID = next(nr for nr, name in SYSCALLS.items() if name == "getppid")

# A program every kernel verifier rejects: a hash map lookup is never known to be non-NULL.
def invoke(*args: object) -> object:
    return runner.invoke(app, [str(a) for a in args])


def run_json(*args: object) -> object:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_clean_error(result: object, *needles: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in result.output


class Getppid:
    """A thread calling getppid() as fast as it can until stopped; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for _ in range(100):
                os.getppid()
            self.calls += 100

    def __enter__(self) -> Getppid:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# ---- demo --------------------------------------------------------------------------

def _start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(["pybpf", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_ready(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    line = proc.stderr.readline()  # printed once the program is attached
    assert line.startswith("counting system calls"), line + proc.stderr.read()
    return line


def test_demo_subprocess_counts_our_syscalls(kernel: None) -> None:
    proc = _start(["demo", "--duration", "2", "--json"])
    try:
        _wait_ready(proc)
        for _ in range(20_000):
            os.getppid()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    doc = json.loads(out)
    by_name = {row["name"]: row for row in doc["syscalls"]}
    assert by_name["getppid"]["nr"] == NR_GETPPID
    assert by_name["getppid"]["count"] >= 20_000  # ours, plus whatever else ran getppid
    counts = [row["count"] for row in doc["syscalls"]]
    assert counts == sorted(counts, reverse=True) and all(c > 0 for c in counts)
    assert doc["total"] >= 20_000 and doc["read_syscalls"] == 0 and 1.9 <= doc["duration"] < 10


def test_demo_subprocess_table(kernel: None) -> None:
    """Without a TTY (as in CI) the demo prints its table once, at the end, and exits 0."""
    proc = _start(["demo", "--duration", "2", "--top", "40"])
    try:
        _wait_ready(proc)
        for _ in range(50_000):
            os.getppid()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    row = next(line for line in out.splitlines() if " getppid " in line)
    count = int(row.split("│")[4].strip().replace(",", ""))
    assert count >= 50_000
    assert "0 syscalls per refresh" in " ".join(out.split())


def test_demo_in_process_with_self(kernel: None) -> None:
    fds = open_fds()
    with Getppid() as caller:
        doc = run_json("demo", "--duration", "1", "--json", "--include-self")
    by_nr = {row["nr"]: row["count"] for row in doc["syscalls"]}
    assert doc["include_self"] is True
    assert 0 < by_nr[NR_GETPPID]
    assert caller.calls > 0
    assert not new_fds(fds)  # the object, its maps and views are all released


# ---- load --------------------------------------------------------------------------

def test_load_sets_rodata_and_reads_live_values(kernel: None, bundled) -> None:
    with Getppid():
        doc = run_json("load", bundled("syscount"), "--set", "skip_tgid=4242", "--duration", "1", "--json")
    values = {(g["section"], g["name"]): g["value"] for g in doc["globals"]}
    assert values[(".rodata", "skip_tgid")] == 4242
    assert values[(".bss", "total")] > 0
    counts = next(m for m in doc["maps"] if m["name"] == "counts")
    assert counts["read"] == "zero-copy view, 0 syscalls"
    by_key = {e["key"]: e["value"] for e in counts["entries"]}
    assert by_key[NR_GETPPID] > 0
    assert doc["links"] == 1 and [m["name"] for m in doc["maps"]] == ["counts"]  # internal maps are globals


def test_load_hash_map_read_with_batches(kernel: None, bundled) -> None:
    with Getppid():
        doc = run_json("load", bundled("counters"), "--set", f"want_tgid={os.getpid()}", "--duration", "1",
                       "--json")
    pairs = next(m for m in doc["maps"] if m["name"] == "pairs")
    assert pairs["read"] in ("batch lookup", "lookup per key")
    assert any(e["key"] == os.getpid() and e["value"]["count"] > 0 for e in pairs["entries"]), pairs


def test_load_bad_settings(kernel: None, bundled) -> None:
    path = bundled("syscount")
    assert_clean_error(invoke("load", path, "--set", "nosuch=1", "-d", "0"), "nosuch", "skip_tgid")
    assert_clean_error(invoke("load", path, "--set", "skip_tgid=banana", "-d", "0"), "banana")
    assert_clean_error(invoke("load", path, "--set", f"skip_tgid={1 << 40}", "-d", "0"), "skip_tgid")
    usage = invoke("load", path, "--set", "skip_tgid", "-d", "0")
    assert usage.exit_code == 2 and "NAME=VALUE" in usage.output


@pytest.fixture
def rejected(bundled) -> Path:
    """The bundled object the verifier rejects (bpf_src/rejected.bpf.c)."""
    return Path(bundled("rejected"))


def test_load_verifier_rejection(kernel: None, rejected: Path) -> None:
    fds = open_fds()
    result = invoke("load", rejected, "-d", "0")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    marked = [line for line in result.stderr.splitlines() if line.startswith(">> ")]
    assert any("*value += 1" in line for line in marked), result.stderr  # the C line it stopped at
    assert any("invalid mem access" in line for line in marked), result.stderr  # and why
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(rejected) in last and "'unchecked_lookup'" in last
    assert not new_fds(fds)


def test_load_subprocess(kernel: None, bundled, rejected: Path) -> None:
    ok = subprocess.run(["pybpf", "load", bundled("syscount"), "--duration", "1"], capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "counts" in ok.stdout and "total" in ok.stdout and "zero-copy view" in ok.stdout
    bad = subprocess.run(["pybpf", "load", str(rejected)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "invalid mem access" in bad.stderr


def test_load_pins(kernel: None, bpffs: str, bundled) -> None:
    bpffs = os.path.join(bpffs, "syscount")  # the mount's root is 1777: pins get a 0700 directory of their own
    result = invoke("load", bundled("syscount"), "--pin", bpffs, "--duration", "0.5")
    assert result.exit_code == 0, result.output
    pinned = set(os.listdir(bpffs))
    assert {"counts", "count_syscalls", "count_syscalls_link"} <= pinned
    # The pinned link keeps the program counting after the command has exited.
    with pybpf.Map.from_pin(os.path.join(bpffs, "counts")) as counts:
        before = int(counts.view()[NR_GETPPID])
        for _ in range(1000):
            os.getppid()
        assert int(counts.view()[NR_GETPPID]) >= before + 1000


# ---- test-run -----------------------------------------------------------------------

PACKET = bytes(range(64))


def test_test_run_matches_library(kernel: None, bundled, tmp_path: Path) -> None:
    doc = run_json("test-run", bundled("net"), "xdp_mark", "--data", PACKET.hex(), "--repeat", "10", "--json")
    with pybpf.open(bundled("net")) as obj:
        for name, program in obj.programs.items():
            program.autoload = name == "xdp_mark"
        obj.load()
        expected = obj.programs["xdp_mark"].test_run(data_in=PACKET)
    assert doc["retval"] == expected.retval == 3  # XDP_TX
    assert bytes.fromhex(doc["data_out"]) == expected.data_out == b"\xab" + PACKET[1:]
    assert doc["repeat"] == 10 and doc["type"] == "xdp"

    packet_file = tmp_path / "packet.bin"
    packet_file.write_bytes(PACKET)
    from_file = run_json("test-run", bundled("net"), "xdp_mark", "--data", f"@{packet_file}", "--json")
    assert bytes.fromhex(from_file["data_out"]) == expected.data_out


def test_test_run_errors(kernel: None, bundled) -> None:
    assert_clean_error(invoke("test-run", bundled("net"), "no_such_prog"), "no_such_prog", "xdp_mark")
    bad = invoke("test-run", bundled("net"), "xdp_mark", "--data", "zz")
    assert bad.exit_code == 2 and "--data" in bad.output
    assert_clean_error(invoke("test-run", bundled("net"), "xdp_mark", "--data", "@/nonexistent/pkt"),
                       "/nonexistent/pkt")


def test_test_run_subprocess(kernel: None, bundled) -> None:
    packet = "00ff" + "11" * 14  # XDP wants at least an Ethernet header
    proc = subprocess.run(["pybpf", "test-run", bundled("net"), "xdp_mark", "--data", packet],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "abff" + "11" * 14 in proc.stdout and "retval" in proc.stdout
    short = subprocess.run(["pybpf", "test-run", bundled("net"), "xdp_mark", "--data", "00ff"],
                           capture_output=True, text=True, timeout=120)
    assert short.returncode == 1 and "Traceback" not in short.stderr and "xdp_mark" in short.stderr


# ---- prog / map ---------------------------------------------------------------------

@pytest.fixture
def loaded(kernel: None, bundled):
    with pybpf.open(bundled("counters")) as obj:
        obj.load()
        yield obj


def test_prog_list_and_show(loaded: pybpf.Object) -> None:
    program = loaded.programs["on_getppid"]
    expected = program.info()
    listed = {p["id"]: p for p in run_json("prog", "list", "--json")}
    assert listed[expected.id]["tag"] == expected.tag
    assert listed[expected.id]["name"] == expected.name and listed[expected.id]["type"] == "tracepoint"
    shown = run_json("prog", "show", expected.id, "--json")
    for key in ("id", "name", "type", "tag", "uid", "xlated_len", "jited_len", "btf_id", "gpl_compatible"):
        assert shown[key] == getattr(expected, key), key
    assert shown["map_ids"] == list(expected.map_ids)
    table = invoke("prog", "show", expected.id)
    assert table.exit_code == 0 and expected.tag in table.stdout


def test_prog_run_stats(loaded: pybpf.Object) -> None:
    program = loaded.programs["on_getppid"]
    with pybpf.enable_stats(), program.attach():
        for _ in range(100):
            os.getppid()
        shown = run_json("prog", "show", program.id, "--json")
    assert shown["run_cnt"] >= 100 and shown["run_time_ns"] > 0


def test_map_list_show_dump(loaded: pybpf.Object) -> None:
    pairs = loaded.maps["pairs"]
    for key in range(5):
        pairs[key] = {"count": key * 10, "parent_tgid": key + 1, "tgid": key + 2}
    map_id = pairs.info.id
    listed = {m["id"]: m for m in run_json("map", "list", "--json")}
    assert listed[map_id]["name"] == "pairs" and listed[map_id]["type"] == "hash"
    shown = run_json("map", "show", map_id, "--json")
    expected = info.map_info(pairs.fd)
    for key in ("id", "name", "type", "key_size", "value_size", "max_entries", "flags", "btf_id"):
        assert shown[key] == getattr(expected, key), key

    fds = open_fds()
    dumped = run_json("map", "dump", map_id, "--json")
    assert not new_fds(fds)
    keys, values = pairs.lookup_batch()
    assert dumped["count"] == len(keys) == 5
    assert (dumped["key_type"], dumped["value_type"]) == (pairs.key_type_name, pairs.value_type_name) \
        == ("__u32", "struct pair")
    got = {e["key"]: e["value"] for e in dumped["entries"]}
    want = {int(k): {"count": int(v["count"]), "parent_tgid": int(v["parent_tgid"]), "tgid": int(v["tgid"])}
            for k, v in zip(keys, values)}
    assert got == want  # typed from the map's BTF: struct pair's field names


def test_map_dump_table_and_subprocess(loaded: pybpf.Object) -> None:
    slots = loaded.maps["slots"]
    map_id = slots.info.id
    proc = subprocess.run(["pybpf", "map", "dump", str(map_id)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"map {map_id} slots" in proc.stdout
    listed = subprocess.run(["pybpf", "map", "list"], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "slots" in listed.stdout
    progs = subprocess.run(["pybpf", "prog", "list", "--json"], capture_output=True, text=True, timeout=120)
    assert progs.returncode == 0
    assert loaded.programs["on_getppid"].id in {p["id"] for p in json.loads(progs.stdout)}


def test_prog_and_map_unknown_ids(kernel: None) -> None:
    fds = open_fds()
    missing = 2**31 - 7
    assert_clean_error(invoke("prog", "show", missing), str(missing))
    assert_clean_error(invoke("map", "show", missing), str(missing))
    assert_clean_error(invoke("map", "dump", missing), str(missing))
    assert not new_fds(fds)


def test_bench_is_registered() -> None:
    proc = subprocess.run(["pybpf", "bench", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "bench" in proc.stdout
