"""The stack tools as commands: profile, offcputime and wakeuptime, on programs built here
whose time split is known, and next to their Debian C twins (offcputime, wakeuptime;
Debian has no C profile)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from pybpf.flame import Folded
from tests import chromium
from tests.conftest import needs_kernel
from tests.procs import c_tool, env, pybpf_cmd
from tests.stackprogs import hotcold_path, start


def run_tool(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(pybpf_cmd("tool", *args), capture_output=True, text=True, timeout=timeout, env=env())
    assert r.returncode == 0, f"pybpf tool {' '.join(args)}: rc={r.returncode}\n{r.stderr[-2000:]}"
    return r


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.kill()
    p.wait()
    if p.stdout:
        p.stdout.close()


def split(folded: Folded, a: str, b: str) -> tuple[float, int]:
    """a's share of (a + b), and a + b."""
    na = sum(c for frames, c in folded if a in ";".join(frames))
    nb = sum(c for frames, c in folded if b in ";".join(frames))
    return (na / (na + nb) if na + nb else 0.0), na + nb


# ---- profile ---------------------------------------------------------------------------------

def test_profile_hot_cold(kernel, tmp_path):
    p = start(hotcold_path(), 60)
    try:
        svg = tmp_path / "cpu.svg"
        r = run_tool("profile", "-p", str(p.pid), "-F", "499", "-f", "--svg", str(svg), "3")
    finally:
        _stop(p)
    folded = Folded.parse(r.stdout)
    assert {frames[0] for frames, _ in folded} == {"hotcold"}
    share, n = split(folded, "main;hot", "main;cold")
    assert n >= 100, r.stdout
    assert 0.65 <= share <= 0.85, f"hot share {share:.2f} of {n} samples\n{r.stdout}"
    text = svg.read_text()
    assert "<title>hot (" in text and "<title>cold (" in text and "flame graph" in r.stderr


def test_profile_user_only_and_kernel_only(kernel):
    p = start(hotcold_path(), 60)
    try:
        user = Folded.parse(run_tool("profile", "-p", str(p.pid), "-F", "499", "-f", "-U", "2").stdout)
        kern = Folded.parse(run_tool("profile", "-p", str(p.pid), "-F", "499", "-f", "-K", "2").stdout)
        blocks = run_tool("profile", "-p", str(p.pid), "-F", "499", "-d", "1").stdout
    finally:
        _stop(p)
    assert user.total > 0 and kern.total > 0
    assert not any("entry_SYSCALL_64" in ";".join(f) for f, _ in user)
    assert not any("main" in f for f, _ in kern)
    # libbpf-tools' block form: frames, then "-  comm (pid)" and the count
    assert re.search(rf"^    -\s+hotcold \({p.pid}\)\n        \d+$", blocks, re.M), blocks
    assert blocks.startswith("Sampling at 499 Hertz of PID [")


def test_profile_shared_library(kernel):
    p = start(hotcold_path(), 60, "lib")
    try:
        # 5 s: under a load of 16 on 2 CPUs, 3 s gave hotcold only 49 samples once
        folded = Folded.parse(run_tool("profile", "-p", str(p.pid), "-F", "499", "-f", "-U", "5").stdout)
    finally:
        _stop(p)
    share, n = split(folded, "lib_hot", "lib_cold")
    assert n >= 50 and 0.6 <= share <= 0.9, folded.text()


def test_profile_in_a_mount_namespace(kernel):
    if shutil.which("unshare") is None:
        needs_kernel("needs unshare (util-linux)")
    hidden = Path(tempfile.mkdtemp(prefix="pybpf-ns-"))
    inner = hidden / "srv" / "hotcold"
    script = f"mount -t tmpfs pybpf-test {hidden} && mkdir -p {inner.parent} && cp {hotcold_path()} {inner} " \
             f"&& exec {inner} 60"
    p = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().startswith("ready") and not inner.exists()
        folded = Folded.parse(run_tool("profile", "-p", str(p.pid), "-F", "499", "-f", "-U", "2").stdout)
    finally:
        _stop(p)
        hidden.rmdir()
    share, n = split(folded, "main;hot", "main;cold")
    assert n >= 30 and share > 0.5, folded.text()


def test_profile_refusals():
    r = subprocess.run(pybpf_cmd("tool", "profile", "-U", "-K", "1"), capture_output=True, text=True, env=env())
    assert r.returncode != 0 and "cannot be used together" in r.stderr
    r = subprocess.run(pybpf_cmd("tool", "profile", "-p", "x1", "1"), capture_output=True, text=True, env=env())
    assert r.returncode != 0 and "invalid pid list" in r.stderr


# ---- offcputime, wakeuptime, and their C twins ----------------------------------------------

def c_blocks(text: str) -> list[tuple[list[str], str, int]]:
    """libbpf-tools' block output -> (frames innermost first, comm, value)."""
    out, frames = [], []
    for line in text.splitlines():
        m = re.match(r"^    -\s+(\S.*) \((\d+)\)$", line)
        if m:
            frames_, comm = frames, m.group(1)
            frames = []
            out.append((frames_, comm, None))
        elif re.match(r"^        \d+$", line) and out and out[-1][2] is None:
            out[-1] = (out[-1][0], out[-1][1], int(line))
        elif line.startswith("    ") and line.strip():
            frames.append(line.strip().split()[-1] if line.strip().startswith("#") else line.strip())
    return [b for b in out if b[2] is not None]


def offcpu_split(blocks: list[tuple[list[str], str, int]]) -> tuple[float, int]:
    sleep = sum(v for f, c, v in blocks if c == "offmain" and "do_nanosleep" in f)
    pipe = sum(v for f, c, v in blocks if c == "offmain" and any("pipe_read" in x for x in f))
    return (sleep / (sleep + pipe) if sleep + pipe else 0.0), sleep + pipe


@pytest.fixture
def offcpu():
    prog = hotcold_path().parent / "offcpu"
    p = subprocess.Popen([str(prog), "60"], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().startswith("ready")
    yield p
    _stop(p)


def test_offcputime_against_c(kernel, offcpu):
    ours = run_tool("offcputime", "-p", str(offcpu.pid), "3").stdout
    folded = Folded.parse(run_tool("offcputime", "-p", str(offcpu.pid), "-f", "3").stdout)
    c = subprocess.run([*c_tool("offcputime"), "-p", str(offcpu.pid), "3"], capture_output=True, text=True,
                       timeout=120)
    assert c.returncode == 0, c.stderr
    mine, theirs = c_blocks(ours), c_blocks(c.stdout)
    share, total = offcpu_split(mine)
    c_share, c_total = offcpu_split(theirs)
    assert total > 2_000_000 * 0.5 and c_total > 2_000_000 * 0.5   # us off CPU in 3 s, main thread
    assert 0.65 <= share <= 0.85 and 0.65 <= c_share <= 0.85, (share, c_share)
    assert abs(share - c_share) <= 0.1
    # the same kernel path to the scheduler, named alike (the C tool's top frame is its BPF program)
    def kernel_path(blocks):
        return [f for f, c, v in sorted(blocks, key=lambda b: -b[2]) if c == "offmain" and "do_nanosleep" in f][0]
    mine_path, c_path = kernel_path(mine), kernel_path(theirs)
    for name in ("schedule", "do_nanosleep", "hrtimer_nanosleep", "entry_SYSCALL_64_after_hwframe"):
        assert name in mine_path and name in c_path
    assert any(x.startswith("bpf_prog_") and x.endswith("_sched_switch") for x in mine_path)
    # user frames: our main thread's stacks pass through main() and sleeper()
    assert split(folded, "main;sleeper", "main;read")[1] > 0
    assert any(frames[0] == "offmain" and "sleeper" in frames for frames, _ in folded)


def test_wakeuptime_against_c(kernel, offcpu):
    ours = run_tool("wakeuptime", "-p", str(offcpu.pid), "3").stdout
    folded = Folded.parse(run_tool("wakeuptime", "-p", str(offcpu.pid), "-f", "3").stdout)
    c = subprocess.run([*c_tool("wakeuptime"), "-p", str(offcpu.pid), "3"], capture_output=True, text=True,
                       timeout=120)
    assert c.returncode == 0, c.stderr
    # offmain is woken by offwriter writing the pipe, ~10 ms each time
    for text in (ours, c.stdout):
        blocks = text.split("\ttarget:")
        writer = [b for b in blocks if b.strip().startswith("offmain") and "waker:" in b
                  and b.split("waker:")[1].split()[0] == "offwriter"]
        assert writer, text[-3000:]
        assert any("pipe_write" in b for b in writer)
    pipe_us = sum(c for frames, c in folded if frames[0] == "offmain" and frames[-1] == "offwriter")
    assert 300_000 <= pipe_us <= 1_500_000, folded.text()   # ~1/4 of 3 s, on a busy machine


def test_flame_graph_picture(kernel, tmp_path):
    """profile's SVG of hotcold, as Chromium shows it: hot is the widest box above main."""
    p = start(hotcold_path(), 60)
    try:
        svg = tmp_path / "hotcold.svg"
        run_tool("profile", "-p", str(p.pid), "-F", "499", "-U", "--svg", str(svg), "3")
    finally:
        _stop(p)
    text = svg.read_text()
    rects = {m.group(1): float(m.group(2)) for m in re.finditer(
        r'data-n="([^"]*)"[^>]*><title>[^<]*</title><rect x="[\d.]+" y="\d+" width="([\d.]+)"', text)}
    assert rects["hot"] > 2 * rects["cold"]
    dom = chromium.dump_dom(svg)
    assert "<title>hot (" in dom and "<title>main (" in dom
