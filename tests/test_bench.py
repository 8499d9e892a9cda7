"""The benchmark harness: every path, tiny sizes, checked by results (never by timings).

Each case reads or writes real kernel maps; every row's checksum must equal the
one the fill pattern predicts, and the Python and C rows of a case must agree.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import pybpf.bench
from pybpf.bench import Config, cbuild, run
from pybpf.bench.cases import ALL
from pybpf.bench.report import BARS, BARS_MIN

TINY = Config(entries=(64, 300), value_sizes=(8, 64), repeats=1, fast_repeats=2, memory_repeats=3, warmup=1,
              copy_bytes=64 << 10, scalar_reads=500, gather_elems=1000, reference=(300, 8),
              load_objects=("maps_test", "ringbuf_events"), ring_bytes=1 << 20, startup_runs=1)

REQUIRED_RATIOS = {"lookup_python_over_c", "batch_python_over_c", "mmap_copy_over_memcpy",
                   "mmap_scalar_over_numpy_scalar", "syscall_over_mmap_scalar",
                   "whole_map_lookup_over_mmap_copy", "lookup_python_over_c_hash", "update_python_over_c",
                   "load_python_over_c", "lookup_keys_python_over_c", "lookup_keys_python_over_c_hash",
                   "cells_over_numpy_scalar"}


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if not (os.geteuid() == 0 and os.path.exists("/sys/kernel/btf/vmlinux")):
        pytest.skip("needs root with CAP_BPF")
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("needs a C compiler for the baselines")
    os.environ["PYBPF_BENCH_CACHE"] = str(tmp_path_factory.mktemp("bench-cache"))
    return run(TINY)


def test_every_path_returns_the_maps_contents(kernel: None, smoke_report: dict) -> None:
    bad = [(c["case"], c["impl"], c["map_type"], c["entries"], c["value_size"], c["chunk"])
           for c in smoke_report["cases"] if not c["ok"]]
    assert bad == []
    assert smoke_report["all_ok"] is True


def test_python_and_c_agree_case_by_case(kernel: None, smoke_report: dict) -> None:
    groups: dict[tuple, set[int]] = {}
    for c in smoke_report["cases"]:
        key = (c["case"], c["map_type"], c["entries"], c["value_size"], c["chunk"])
        groups.setdefault(key, set()).add(c["checksum"])
    assert all(len(sums) == 1 for sums in groups.values()), groups
    # The paths compared against each other saw the same data.
    for n in TINY.entries:
        for vs in TINY.value_sizes:
            rows = {(c["case"], c["impl"], c["map_type"], c["chunk"]): c["checksum"]
                    for c in smoke_report["cases"] if (c["entries"], c["value_size"]) == (n, vs)}
            whole = rows[("lookup", "c", "array", None)]
            assert rows[("batch", "python", "array", "all")] == whole
            assert rows[("mmap_copy", "python", "array", None)] == whole
            assert rows[("memcpy", "c", "array", None)] == whole
            assert rows[("update", "python", "hash", None)] == whole
            assert rows[("mmap_scalar", "python", "array", None)] == rows[("numpy_scalar", "python", "array", None)]
            assert rows[("lookup_keys", "python", "hash", None)] == rows[("lookup", "c", "hash", None)]
            if vs == 8:
                assert rows[("cells", "python", "array", None)] == rows[("numpy_scalar", "python", "array", None)]


def test_every_case_is_measured(kernel: None, smoke_report: dict) -> None:
    seen = {(c["case"], c["impl"], c["map_type"], c["chunk"], c["entries"], c["value_size"])
            for c in smoke_report["cases"]}
    for n in TINY.entries:
        for vs in TINY.value_sizes:
            for t in ("array", "hash"):
                for case in ("lookup", "update"):
                    assert {(case, "python", t, None, n, vs), (case, "c", t, None, n, vs)} <= seen
                assert {("update_batch", "python", t, "all", n, vs), ("update_batch", "c", t, "all", n, vs)} <= seen
                for chunk in TINY.chunks:
                    label = "all" if chunk == ALL else chunk
                    if t == "hash" and chunk == 1:
                        continue
                    assert {("batch", "python", t, label, n, vs), ("batch", "c", t, label, n, vs)} <= seen
            for case, impl in [("mmap_scalar", "python"), ("numpy_scalar", "python"), ("mmap_copy", "python"),
                               ("memcpy", "python"), ("mmap_copy", "c"), ("memcpy", "c"),
                               ("gather", "mmap_view"), ("gather", "numpy_array")]:
                assert (case, impl, "array", None, n, vs) in seen


def test_load_and_ring_cases(kernel: None, smoke_report: dict) -> None:
    rows = {(c["case"], c["impl"], c["map_type"], c["value_size"]): c for c in smoke_report["cases"]}
    for name in TINY.load_objects:
        for impl in ("python", "c", "parse"):
            assert rows[("load", impl, name, 0)]["ok"]  # checksum: every program of the object got an fd
        assert rows[("load", "python", name, 0)]["checksum"] > 0
    for size in (32, 64):
        for impl in ("python", "python_into", "python_borrow", "c_count", "c_copy"):
            row = rows[("ring_drain", impl, "ringbuf", size)]
            assert row["ok"] and row["elems_per_pass"] == (1 << 20) // (8 + size) - 1
    r = smoke_report["ratios"]
    assert {"load_python_over_c", "load_parse_share", "ring_drain_speed_over_c_count_32",
            "ring_drain_speed_over_c_copy_64", "ring_into_speed_over_c_copy_32",
            "ring_into_speed_over_c_copy_64"} <= set(r)
    assert 0 < r["load_parse_share"] < 1


def test_startup_rows(kernel: None, smoke_report: dict) -> None:
    """pybpf's tools to their first event and `prog show`, next to Debian's C tools and bpftool."""
    from pybpf.distro import libbpf_tool

    rows = {(c["case"], c["impl"], c["map_type"]): c for c in smoke_report["cases"]}
    r = smoke_report["ratios"]
    for tool in ("execsnoop", "opensnoop"):
        impls = ("python", "c") if libbpf_tool(tool) is not None else ("python",)
        for impl in impls:
            first, peak = rows[("startup", impl, tool)], rows[("peak_rss", impl, tool)]
            assert first["ok"] and peak["ok"] and first["repeats"] == TINY.startup_runs
            assert 0 < first["ns_per_elem"]["median"] < 60e9
            assert 1024 < peak["ns_per_elem"]["median"] < 1 << 20  # KiB: a real process's peak
        assert 1 < r[f"startup_peak_rss_mib_{tool}"] < 1024
        if "c" in impls:
            assert r[f"startup_first_event_over_c_{tool}"] > 0
    assert rows[("startup", "python", "prog_show")]["ok"] and 0 < r["startup_prog_show_s"] < 60
    if shutil.which("bpftool"):
        assert r["startup_prog_show_over_bpftool"] > 0


def test_report_schema(kernel: None, smoke_report: dict) -> None:
    report = json.loads(json.dumps(smoke_report))  # plain JSON all the way down
    assert {"machine", "cases", "ratios"} <= set(report)
    for key in ("kernel", "libbpf", "cpu", "python", "hostname"):
        assert report["machine"][key]
    assert report["machine"]["kernel"] == os.uname().release
    for c in report["cases"]:
        assert {"case", "impl", "map_type", "entries", "value_size", "ns_per_elem"} <= set(c)
        t = c["ns_per_elem"]
        assert 0 < t["min"] <= t["median"] <= t["max"]
        assert c["repeats"] in (TINY.repeats, TINY.fast_repeats, TINY.memory_repeats)
    assert REQUIRED_RATIOS <= set(report["ratios"])
    assert all(v > 0 for v in report["ratios"].values())
    assert set(BARS) | set(BARS_MIN) <= REQUIRED_RATIOS | set(report["ratios"]) | {
        f"ring_{how}_speed_over_{c}_{size}" for how, c in (("drain", "c_count"), ("into", "c_copy"))
        for size in (32, 64)}
    assert {"update_python_over_c_hash", "startup_prog_show_s", "startup_peak_rss_mib_execsnoop"} <= set(BARS)
    assert report["config"]["reference"] == {"entries": 300, "value_size": 8}


def test_ratios_are_ratios_of_medians(kernel: None, smoke_report: dict) -> None:
    med = {(c["case"], c["impl"], c["map_type"], c["chunk"]): c["ns_per_elem"]["median"]
           for c in smoke_report["cases"] if (c["entries"], c["value_size"]) == (300, 8)}
    r = smoke_report["ratios"]
    assert r["lookup_python_over_c"] == pytest.approx(med[("lookup", "python", "array", None)]
                                                      / med[("lookup", "c", "array", None)])
    assert r["mmap_copy_over_memcpy"] == pytest.approx(med[("mmap_copy", "python", "array", None)]
                                                       / med[("memcpy", "python", "array", None)])


def test_c_baseline_is_cached_and_rebuilt_when_a_source_changes(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("needs a C compiler")
    src = tmp_path / "c"
    shutil.copytree(cbuild.SOURCE_DIR, src)
    monkeypatch.setattr(cbuild, "SOURCE_DIR", src)
    monkeypatch.setenv("PYBPF_BENCH_CACHE", str(tmp_path / "cache"))
    first = cbuild.build()
    stamp = first.stat().st_mtime_ns
    assert cbuild.build() == first and first.stat().st_mtime_ns == stamp  # cached, not rebuilt
    with open(src / "map_keys.c", "a") as f:
        f.write("\n/* edited */\n")
    second = cbuild.build()
    assert second != first and second.exists() and os.access(second, os.X_OK)


def test_build_error_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "c"
    src.mkdir()
    (src / "map_broken.c").write_text("#include <no/such/header.h>\nint main(void) { return 0; }\n")
    monkeypatch.setattr(cbuild, "SOURCE_DIR", src)
    monkeypatch.setenv("PYBPF_BENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(cbuild.BuildError, match="libbpf-dev"):
        cbuild.build()


def test_c_baseline_reports_a_failing_syscall(kernel: None, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYBPF_BENCH_CACHE", str(tmp_path))
    r, w = os.pipe()  # an fd that is not a map: the kernel answers EINVAL
    try:
        proc = cbuild.CBaseline(cbuild.build(), "lookup", r, 4, 8)
        with pytest.raises(RuntimeError, match="errno"):
            proc.run()
        proc.close()
    finally:
        os.close(r)
        os.close(w)


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(pybpf.bench.bench_command)
    return app


def test_command_writes_json(kernel: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pybpf.bench, "QUICK", Config(entries=(128,), value_sizes=(8,), repeats=1,
                                                     fast_repeats=1, memory_repeats=1, copy_bytes=4096, scalar_reads=100,
                                                     gather_elems=128, reference=(128, 8)))
    monkeypatch.setenv("PYBPF_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out.json"
    result = CliRunner().invoke(_app(), ["--quick", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "lookup_python_over_c" in result.output and "mmap_copy" in result.output
    report = json.loads(out.read_text())
    sized = [c for c in report["cases"] if c["case"] not in ("load", "ring_drain", "startup", "peak_rss")]  # own sizes
    assert report["all_ok"] and {c["entries"] for c in sized} == {128}


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    result = CliRunner().invoke(_app(), ["--quick", "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 2
    assert "pip install 'pybpf[bench]'" in result.output
    assert not (tmp_path / "p.png").exists()
