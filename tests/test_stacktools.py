"""The stack tools as commands: profile, offcputime and wakeuptime, on programs built here
whose time split is known, next to their Debian C twins run at the same time (offcputime,
wakeuptime; profile where libbpf-tools has one: Debian 13), on the tools framework's fast
start path, and served by the real exporter (`pybpf export`) from their shipped configs."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import typer
from prometheus_client.parser import text_string_to_metric_families

from pybpf import tools
from pybpf.cli.toolrun import direct_kwargs
from pybpf.distro import libbpf_tool
from pybpf.flame import Folded
from pybpf.metrics import load_config
from pybpf.tools import config_path
from tests import chromium
from tests.conftest import needs_kernel
from tests.procs import Proc, c_tool, env, pybpf_cmd
from tests.stackprogs import STACK_STORAGE, hotcold_path, start


# The tools' runs on the test programs, ours and C's: STACK_STORAGE stacks of 32 frames (256 B
# a stack, ~9 MiB)
ROOMY = ("--stack-storage-size", str(STACK_STORAGE), "--perf-max-stack-depth", "32")


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
        r = run_tool("profile", *ROOMY, "-p", str(p.pid), "-F", "499", "-f", "--svg", str(svg), "3")
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
        user = Folded.parse(run_tool("profile", *ROOMY, "-p", str(p.pid), "-F", "499", "-f", "-U", "2").stdout)
        kern = Folded.parse(run_tool("profile", *ROOMY, "-p", str(p.pid), "-F", "499", "-f", "-K", "2").stdout)
        verbose = run_tool("profile", *ROOMY, "-p", str(p.pid), "-F", "499", "-d", "-v", "1")
        blocks = verbose.stdout
    finally:
        _stop(p)
    # -v: libbpf's own debug lines on stderr, as the C tools' -v (stdout stays the profile)
    assert "libbpf: " in verbose.stderr and "libbpf" not in blocks, verbose.stderr[-2000:]
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
        folded = Folded.parse(run_tool("profile", *ROOMY, "-p", str(p.pid), "-F", "499", "-f", "-U", "5").stdout)
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
        folded = Folded.parse(run_tool("profile", *ROOMY, "-p", str(p.pid), "-F", "499", "-f", "-U", "2").stdout)
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


def phases(p: subprocess.Popen) -> tuple[int, int]:
    """offcpu's own count of the nanoseconds its main thread spent in nanosleep() and on the pipe."""
    p.send_signal(signal.SIGUSR1)
    line = p.stdout.readline()
    assert line.startswith("phases "), line
    sleep_ns, pipe_ns = map(int, line.split()[1:])
    return sleep_ns, pipe_ns


def side_by_side(ours: list[str], theirs: list[str], timeout: float = 180) -> tuple[str, str]:
    """Our tool and the C tool run at the same time, on the same workload: their stdouts."""
    a = subprocess.Popen(pybpf_cmd("tool", *ours), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env())
    b = subprocess.Popen(theirs, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mine, c = a.communicate(timeout=timeout), b.communicate(timeout=timeout)
    assert a.returncode == 0, f"pybpf tool {' '.join(ours)}: {mine[1][-2000:]}"
    assert b.returncode == 0, f"{' '.join(theirs)}: {c[1][-2000:]}"
    return mine[0], c[0]


def test_offcputime_against_c(kernel, offcpu):
    """offcputime and Debian's C offcputime at the same time on offcpu: the same nanosleep/pipe
    split as the program measures itself (a loaded machine delays the pipe's two wake-ups, so the
    split drifts from the 3:1 it asks for), through the same kernel path."""
    before = phases(offcpu)
    ours, theirs = side_by_side(["offcputime", *ROOMY, "-p", str(offcpu.pid), "4"],
                                [*c_tool("offcputime"), *ROOMY, "-p", str(offcpu.pid), "4"])
    after = phases(offcpu)
    own = (after[0] - before[0]) / (after[0] - before[0] + after[1] - before[1])
    mine, c = c_blocks(ours), c_blocks(theirs)
    share, total = offcpu_split(mine)
    c_share, c_total = offcpu_split(c)
    assert total > 4_000_000 * 0.5 and c_total > 4_000_000 * 0.5   # us off CPU in 4 s, main thread
    assert 0.5 <= own <= 0.9, own                                  # it asks for 3:1
    assert abs(share - own) <= 0.1 and abs(c_share - own) <= 0.1, (share, c_share, own)
    assert abs(share - c_share) <= 0.1, (share, c_share)
    # the same kernel path to the scheduler, named alike (the C tool's top frame is its BPF program)
    def kernel_path(blocks):
        return [f for f, c, v in sorted(blocks, key=lambda b: -b[2]) if c == "offmain" and "do_nanosleep" in f][0]
    mine_path, c_path = kernel_path(mine), kernel_path(c)
    for name in ("schedule", "do_nanosleep", "hrtimer_nanosleep", "entry_SYSCALL_64_after_hwframe"):
        assert name in mine_path and name in c_path
    assert any(x.startswith("bpf_prog_") and x.endswith("_sched_switch") for x in mine_path)
    # user frames: our main thread's stacks pass through main() and sleeper()
    folded = Folded.parse(run_tool("offcputime", *ROOMY, "-p", str(offcpu.pid), "-f", "2").stdout)
    assert split(folded, "main;sleeper", "main;read")[1] > 0
    assert any(frames[0] == "offmain" and "sleeper" in frames for frames, _ in folded)


VERBOSE_FRAME = re.compile(r"^    #(\d+)\s+0x([0-9a-f]+) (\S+)\+0x([0-9a-f]+)(?: \((\S+)\+0x([0-9a-f]+)\))?$")


def verbose_frames(text: str, comm: str) -> dict[int, tuple[str, int, str | None, int | None]]:
    """address -> (name, offset, file, address in file) of the frames of ``comm``'s blocks in
    offcputime -v output (libbpf-tools' ``#N 0xADDR NAME+0xOFF (FILE+0xVADDR)``)."""
    found: dict[int, tuple[str, int, str | None, int | None]] = {}
    block: list[tuple[str, ...]] = []
    for line in text.splitlines():
        if line.startswith("    #"):
            m = VERBOSE_FRAME.match(line)
            if m:
                block.append(m.groups())
            continue
        if re.match(rf"^    -\s+{comm} \(\d+\)$", line):
            for _, addr, name, off, file, vaddr in block:
                found[int(addr, 16)] = (name, int(off, 16), file, None if vaddr is None else int(vaddr, 16))
        block = []
    return found


def test_offcputime_verbose_frames_as_c(kernel, offcpu):
    """-v: every frame numbered with its address and offset, user frames with their file and the
    address in it, as Debian's C offcputime -v prints them for the same process at the same time."""
    ours, theirs = side_by_side(["offcputime", *ROOMY, "-v", "-p", str(offcpu.pid), "2"],
                                [*c_tool("offcputime"), *ROOMY, "-v", "-p", str(offcpu.pid), "2"])
    mine, c = verbose_frames(ours, "offmain"), verbose_frames(theirs, "offmain")
    prog = str(hotcold_path().parent / "offcpu")
    both = mine.keys() & c.keys()   # a frame only one saw (a rare preemption point) is not compared
    # the test program's own frames (both tools read its .symtab) and the kernel's, but the tools'
    # own BPF programs (each has its own): the same name, offset, file and address in the file
    compared = [a for a in both if c[a][2] == prog or (c[a][2] is None and not c[a][0].startswith("bpf_prog_"))]
    assert {mine[a][0] for a in compared} >= {"main", "sleeper", "schedule", "do_nanosleep"}, (ours, theirs)
    assert {a: mine[a] for a in compared} == {a: c[a] for a in compared}
    # the address in the file is where nm puts the function, plus the offset
    symbols = {parts[2]: int(parts[0], 16) for parts in (line.split() for line in subprocess.run(
        ["nm", prog], capture_output=True, text=True, check=True).stdout.splitlines()) if len(parts) == 3}
    for name, off, file, vaddr in mine.values():
        if file == prog:
            assert vaddr == symbols[name] + off, (name, off, vaddr)


def test_wakeuptime_against_c(kernel, offcpu):
    """wakeuptime and Debian's C wakeuptime at the same time: offwriter wakes offmain through
    pipe_write in both, for about the time offmain spends on the pipe."""
    before = phases(offcpu)
    ours, theirs = side_by_side(["wakeuptime", *ROOMY, "-p", str(offcpu.pid), "4"],
                                [*c_tool("wakeuptime"), *ROOMY, "-p", str(offcpu.pid), "4"])
    after = phases(offcpu)
    pipe_us = (after[1] - before[1]) / 1000
    woken = {}
    for who, text in (("ours", ours), ("c", theirs)):
        assert text.startswith("Tracing blocked time (us) by kernel stack\n"), text[:200]
        blocks = text.split("\ttarget:")
        writer = [b for b in blocks if b.strip().startswith("offmain") and "waker:" in b
                  and b.split("waker:")[1].split()[0] == "offwriter"]
        assert writer, text[-3000:]
        assert any("pipe_write" in b for b in writer)
        woken[who] = sum(int(b.rstrip().splitlines()[-1]) for b in writer)
    # blocked until woken (the wait for a CPU after the wake-up is not in it): at most the pipe's time
    for who, us in woken.items():
        assert 0.4 * pipe_us <= us <= 1.05 * pipe_us, (who, us, pipe_us)
    assert abs(woken["ours"] - woken["c"]) <= 0.25 * pipe_us, (woken, pipe_us)
    folded = Folded.parse(run_tool("wakeuptime", *ROOMY, "-p", str(offcpu.pid), "-f", "2").stdout)
    assert sum(c for frames, c in folded if frames[0] == "offmain" and frames[-1] == "offwriter") > 0, folded.text()


def test_profile_against_c(kernel):
    """profile and Debian's C profile (Debian 13's libbpf-tools 0.31 has one; 0.26 has none) at the
    same time on hotcold: both see main;hot and main;cold 3:1."""
    if libbpf_tool("profile") is None:
        pytest.skip("this libbpf-tools has no profile (Debian 12's 0.26): nothing to compare with")
    p = start(hotcold_path(), 60)
    try:
        ours, theirs = side_by_side(["profile", *ROOMY, "-p", str(p.pid), "-F", "499", "-f", "3"],
                                    [*c_tool("profile"), *ROOMY, "-p", str(p.pid), "-F", "499", "-f", "3"])
    finally:
        _stop(p)
    mine, c = Folded.parse(ours), Folded.parse(theirs)
    share, n = split(mine, "main;hot", "main;cold")
    c_share, c_n = split(c, "main;hot", "main;cold")
    assert n >= 100 and c_n >= 100, (n, c_n)
    assert 0.65 <= share <= 0.85 and 0.65 <= c_share <= 0.85, (share, c_share)
    assert abs(share - c_share) <= 0.1
    assert {frames[0] for frames, _ in mine} == {frames[0] for frames, _ in c} == {"hotcold"}


def test_profile_names_a_process_that_exited_before_the_end(kernel):
    """A system-wide profile, and hotcold living 1.5 s of its 5: its frames still have names at the
    end (its mappings were taken while it ran: bpftrace#1006). A large stack map: with the default
    1024 the machine's other stacks fill it before hotcold starts, and its stacks are missed."""
    proc = Proc(pybpf_cmd("tool", "profile", "-F", "499", "--stack-storage-size", "262144", "5", "--json"))
    try:
        proc.wait_for(lambda: any(line.startswith("Sampling at") for line in proc.err), timeout=120,
                      what="profile to start sampling")
        p = start(hotcold_path(), 1.5)
        p.wait(timeout=60)
        p.stdout.close()
        assert proc.p.wait(timeout=180) == 0, proc.err[-20:]
    finally:
        proc.kill()
    docs = [json.loads(line) for line in proc.out]
    # the samples whose user stack the stack map took (a hash collision with another process's
    # stack drops one: that is the stack map, not the names)
    mine = [d for d in docs if d["pid"] == p.pid and d["user_stack"] != ["[Missed User Stack]"]]
    total = sum(d["samples"] for d in mine)
    named = sum(d["samples"] for d in mine if "main" in d["user_stack"])
    assert total >= 50, mine                        # 1.5 s at 499 Hz, on a loaded machine
    assert named >= 0.9 * total, mine
    hot = sum(d["samples"] for d in mine if d["user_stack"][:2] == ["hot", "main"])
    cold = sum(d["samples"] for d in mine if d["user_stack"][:2] == ["cold", "main"])
    assert 0.6 <= hot / (hot + cold) <= 0.9, (hot, cold)


# ---- the tools framework: fast start, -V, --json, refusals --------------------------------------

STACK_TOOL_ARGS = [
    ("profile", ["-p", "12,34", "-F", "99", "-f", "-U", "-v", "--svg", "x.svg", "3"]),
    ("profile", ["-KdI", "-C", "1", "--stack-storage-size", "2048", "--perf-max-stack-depth=20", "--json"]),
    ("offcputime", ["-p", "1", "-t", "2", "-u", "-m", "1000", "-M", "2000000", "--state", "2", "5"]),
    ("offcputime", ["-kfd", "--json", "--title", "t", "1"]),
    ("offcputime", ["-v", "-p", "7", "1"]),
    ("wakeuptime", ["-p", "1", "-u", "-v", "-m", "10", "-f", "2"]),
    ("wakeuptime", ["--json", "--perf-max-stack-depth", "30", "1"]),
]


@pytest.mark.parametrize(("name", "argv"), STACK_TOOL_ARGS, ids=[" ".join([n, *a]) for n, a in STACK_TOOL_ARGS])
def test_stack_tools_take_the_fast_start_path(name, argv):
    """``pybpf tool NAME`` reads their options itself (cli/toolrun.py), as typer would."""
    app = tools.load_tool(name)
    callback = app.registered_commands[0].callback
    mine = direct_kwargs(callback, argv)
    assert mine is not None
    assert mine == typer.main.get_command(app).make_context(name, list(argv)).params


def test_stack_tools_start_without_pydantic_or_rich(kernel, offcpu):
    code = ("import atexit, json, sys\n"
            "atexit.register(lambda: sys.stderr.write('MODULES ' + json.dumps(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('pydantic', 'rich', 'elftools'))) + '\\n'))\n"
            f"sys.argv = ['pybpf', 'tool', 'wakeuptime', '-p', '{offcpu.pid}', '1', '--json']\n"
            "from pybpf.cli import main\nmain()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env())
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[-1] == "MODULES []", r.stderr
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert any(d["target"] == "offmain" and d["waker"] == "offwriter" and d["us"] > 0 for d in docs), docs
    assert "Tracing blocked time" in r.stderr   # the ready line goes to stderr under --json


def test_stack_tools_version_and_json(kernel):
    import pybpf
    for name in ("profile", "offcputime", "wakeuptime"):
        r = subprocess.run(pybpf_cmd("tool", name, "-V"), capture_output=True, text=True, timeout=120, env=env())
        assert r.returncode == 0 and r.stdout == f"{name} {pybpf.__version__} (pybpf)\n", (name, r.stderr)
    p = start(hotcold_path(), 60)
    try:
        r = run_tool("profile", *ROOMY, "-p", str(p.pid), "-F", "499", "2", "--json")
    finally:
        _stop(p)
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert docs and all(d["pid"] == p.pid and d["comm"] == "hotcold" for d in docs)
    assert [d["samples"] for d in docs] == sorted((d["samples"] for d in docs), reverse=True)
    hot = sum(d["samples"] for d in docs if d["user_stack"][:2] == ["hot", "main"])
    cold = sum(d["samples"] for d in docs if d["user_stack"][:2] == ["cold", "main"])
    assert hot > cold > 0, docs


# ---- the exporter: the shipped configs, served by `pybpf export` and scraped over HTTP -----------

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # loopback only, never a proxy
STACK_CONFIGS = ("profile", "offcputime", "wakeuptime")


def _all_series(config: str, tmp_path: Path) -> Path:
    """The shipped config with its series bound lifted: on a busy machine the test's workload
    might otherwise start after max_series other stacks and land in the "other" series."""
    text = config_path(config).read_text()
    assert re.search(r"^max_series = \d+", text, re.M), f"{config}: the shipped config must bound its stacks"
    path = tmp_path / f"{config}.toml"
    path.write_text(re.sub(r"^max_series = \d+", "max_series = 1000000", text, flags=re.M))
    return path


def _scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """family -> {labels: value} of one scrape of /metrics (parsed by prometheus_client)."""
    body = _HTTP.open(f"http://127.0.0.1:{port}/metrics", timeout=60).read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(body):
        for sample in fam.samples:
            if not sample.name.endswith("_created"):
                out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def _moved(a: dict, b: dict, family: str, pick) -> float:  # type: ignore[no-untyped-def]
    """How much the series of ``family`` that ``pick(labels)`` chooses rose from scrape a to b (series
    a has: one first seen later reads 0 then, and all it counted since it appeared the next time)."""
    rows, before = b.get(family, {}), a.get(family, {})
    return sum(v - before[labels] for labels, v in rows.items() if labels in before and pick(dict(labels)))


def _frames(text: str) -> list[str]:
    return text.split("\n") if text else []


def _calls(frames: list[str], callee: str, caller: str) -> bool:
    """``caller`` called ``callee`` in these frames (innermost first)."""
    return callee in frames and caller in frames[frames.index(callee):]


def test_shipped_stack_configs_bound_their_series():
    for name in STACK_CONFIGS:
        cfg = load_config(config_path(name))
        stacked = [m for m in cfg.metrics if any(lab.decoder in ("kstack", "ustack") for lab in m.labels)]
        assert stacked and all(m.max_series is not None and m.max_series <= 1000 for m in stacked), name
        assert any(m.glob == "dropped" for m in cfg.metrics), name   # what a full map lost is counted


def test_exporter_serves_the_stack_tools(kernel, offcpu, tmp_path):
    """`pybpf export profile offcputime wakeuptime` (their shipped configs, series unbounded) on a
    real HTTP port: the counters move by what hotcold and offcpu did between two scrapes, with
    their stacks named in the kstack/ustack labels."""
    hot = start(hotcold_path(), 60)
    proc = Proc(pybpf_cmd("export", *(str(_all_series(n, tmp_path)) for n in STACK_CONFIGS),
                          "--addr", "127.0.0.1", "--port", "0"))
    try:
        proc.wait_for(lambda: any("serving http://" in line for line in proc.err), timeout=120,
                      what="the exporter to listen")
        port = int(re.search(r"127\.0\.0\.1:(\d+)/metrics", "\n".join(proc.err)).group(1))  # type: ignore[union-attr]
        # the first collection, once the workloads' stacks are in the maps: a series first seen later
        # reads 0 that time (so that increase() counts its first burst), and then all it counted
        time.sleep(1.5)
        w = _scrape(port)
        time.sleep(1)
        # offcpu's own counts just before and just after each scrape: the maps are read in between
        a0, a, a1 = phases(offcpu), _scrape(port), phases(offcpu)
        time.sleep(4)
        b0, b, b1 = phases(offcpu), _scrape(port), phases(offcpu)
    finally:
        rc = proc.stop(signal.SIGTERM)
        _stop(hot)
    assert rc == 0, proc.err[-20:]

    # profile: hotcold's samples, main;hot : main;cold = 3:1 (its CPU time, by construction)
    family = "pybpf_profile_samples_total"
    hot_n = _moved(a, b, family, lambda lab: lab["comm"] == "hotcold" and _calls(_frames(lab["ustack"]), "hot", "main"))
    cold_n = _moved(a, b, family, lambda lab: lab["comm"] == "hotcold" and _calls(_frames(lab["ustack"]), "cold", "main"))
    assert hot_n + cold_n >= 40, (hot_n, cold_n)          # 49 Hz for 4 s, on a loaded machine
    assert 0.6 <= hot_n / (hot_n + cold_n) <= 0.9, (hot_n, cold_n)
    assert _moved(a, b, "pybpf_profile_all_samples_total", lambda lab: True) >= hot_n + cold_n

    # offcputime: offmain's seconds in nanosleep and on the pipe, as the program counts them itself
    family = "pybpf_offcpu_seconds_total"
    slept = _moved(a, b, family, lambda lab: lab["comm"] == "offmain" and "do_nanosleep" in _frames(lab["kstack"])
                   and _calls(_frames(lab["ustack"]), "sleeper", "main"))
    # offmain's only pipe wait is pipe_waiter's read(): its user stack reaches main. No "read" frame
    # is required: Debian 13's glibc 2.41 makes the syscall in its unexported __syscall_cancel (named
    # after the nearest exported symbol), and frame-pointer unwinding skips read() itself.
    piped = _moved(a, b, family, lambda lab: lab["comm"] == "offmain"
                   and any("pipe_read" in f for f in _frames(lab["kstack"])) and "main" in _frames(lab["ustack"]))
    least = [(b0[i] - a1[i]) / 1e9 for i in (0, 1)]   # what offmain did between the two map reads,
    most = [(b1[i] - a0[i]) / 1e9 for i in (0, 1)]    # at least and at most, in nanosleep and on the pipe
    mine = {k: (w.get(family, {}).get(k), a.get(family, {}).get(k), v) for k, v in b.get(family, {}).items()
            if dict(k)["comm"] == "offmain"}
    assert 0.9 * sum(least) <= slept + piped <= 1.1 * sum(most), (slept, piped, least, most, mine)
    own = (least[0] + most[0]) / (sum(least) + sum(most))
    assert abs(slept / (slept + piped) - own) <= 0.1, (slept, piped, least, most)

    # wakeuptime: offmain blocked on the pipe until offwriter's write woke it
    woken = _moved(a, b, "pybpf_wakeup_blocked_seconds_total",
                   lambda lab: lab["target"] == "offmain" and lab["waker"] == "offwriter"
                   and any("pipe_write" in f for f in _frames(lab["kstack"])))   # anon_pipe_write on 6.16+
    # blocked until woken (the wait for a CPU after the wake-up is not in it): at most the pipe's time
    assert 0.3 * least[1] <= woken <= 1.05 * most[1], (woken, least, most)
    for family in ("pybpf_profile_dropped_samples_total", "pybpf_offcputime_dropped_total",
                   "pybpf_wakeuptime_dropped_total"):
        assert family in b


def test_flame_graph_picture(kernel, tmp_path):
    """profile's SVG of hotcold, as Chromium shows it: hot is the widest box above main."""
    p = start(hotcold_path(), 60)
    try:
        svg = tmp_path / "hotcold.svg"
        run_tool("profile", *ROOMY, "-p", str(p.pid), "-F", "499", "-U", "--svg", str(svg), "3")
    finally:
        _stop(p)
    text = svg.read_text()
    # a function can have several boxes (a sample whose walk lost main puts hot at the root):
    # its share is the sum of its boxes' widths
    rects: dict[str, float] = {}
    for m in re.finditer(r'data-n="([^"]*)"[^>]*><title>[^<]*</title><rect x="[\d.]+" y="\d+" width="([\d.]+)"',
                         text):
        rects[m.group(1)] = rects.get(m.group(1), 0.0) + float(m.group(2))
    assert rects["hot"] > 2 * rects["cold"], rects
    dom = chromium.dump_dom(svg)
    assert "<title>hot (" in dom and "<title>main (" in dom
