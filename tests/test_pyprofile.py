"""pyprofile and pybpf.pyframes on Debian's own CPython (3.11 on Debian 12, 3.13 on 13), unmodified scripts.

Each test starts ``usdt_python()`` on a script written here (no change to the interpreter, no
``sys.setprofile``), samples it from outside with ``pybpf tool pyprofile`` (a perf-event BPF
program reading the frames), and checks what comes back: the 3:1 hot/cold split with
``file:line``, two threads each with its own stack, a depth-500 recursion cut and marked, and
the refusal of a process whose layout does not match the offsets.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from pybpf.distro import usdt_python
from pybpf.flame import Folded
from pybpf.pyframes import PyOffsets, PythonProcess, UnreadablePythonError
from pybpf.errors import ObjectFormatError
from tests import chromium
from tests.conftest import needs_kernel
from tests.procs import env, pybpf_cmd

HOTCOLD = '''\
import sys
import time


def hot():
    total = 0
    for i in range(3000):
        total += i * i
    return total


def cold():
    total = 0
    for i in range(3000):
        total += i * i
    return total


def main():
    end = time.monotonic() + float(sys.argv[1])
    print("ready", flush=True)
    while time.monotonic() < end:
        hot()
        hot()
        hot()
        cold()


if __name__ == "__main__":
    main()
'''

THREADS = '''\
import sys
import threading
import time


def spin_a(end):
    n = 0
    while time.monotonic() < end:
        n += 1


def spin_b(end):
    n = 0
    while time.monotonic() < end:
        n += 1


def worker_a(end):
    spin_a(end)


def worker_b(end):
    spin_b(end)


def main():
    end = time.monotonic() + float(sys.argv[1])
    a = threading.Thread(target=worker_a, args=(end,))
    b = threading.Thread(target=worker_b, args=(end,))
    a.start()
    b.start()
    print("ready", a.native_id, b.native_id, flush=True)
    a.join()
    b.join()


main()
'''

DEEP = '''\
import sys
import time


def bottom(end):
    n = 0
    while time.monotonic() < end:
        n += 1


def recurse(depth, end):
    if depth == 0:
        print("ready", flush=True)
        bottom(end)
    else:
        recurse(depth - 1, end)


sys.setrecursionlimit(5000)
recurse(int(sys.argv[2]), time.monotonic() + float(sys.argv[1]))
'''


@pytest.fixture
def python() -> str:
    try:
        return usdt_python()
    except FileNotFoundError as exc:
        needs_kernel(f"needs Debian's CPython: {exc}")
        raise


class Target:
    """A script run by Debian's CPython, killed at the end; ``ready`` is its first stdout line."""

    def __init__(self, python: str, script: Path, *args: str) -> None:
        self.p = subprocess.Popen([python, str(script), *args], stdout=subprocess.PIPE, text=True)
        assert self.p.stdout is not None
        self.ready = self.p.stdout.readline().split()
        assert self.ready and self.ready[0] == "ready", f"{script} did not start"

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.p.kill()
        self.p.wait()
        assert self.p.stdout is not None
        self.p.stdout.close()


def pyprofile(pid: int, *args: str, seconds: float = 4, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(pybpf_cmd("tool", "pyprofile", "-p", str(pid), *args, str(seconds)), capture_output=True,
                          text=True, env=env(), timeout=timeout)


def folded(text: str) -> Folded:
    return Folded.parse(text)


def _shares(fold: Folded, a: str, b: str) -> tuple[int, int]:
    na = sum(c for frames, c in fold if any(f.startswith(a + " (") for f in frames))
    nb = sum(c for frames, c in fold if any(f.startswith(b + " (") for f in frames))
    return na, nb


def test_hot_cold_three_to_one_with_file_and_line(kernel, python, tmp_path):
    script = tmp_path / "hotcold.py"
    script.write_text(HOTCOLD)
    with Target(python, script, "120") as t:
        run = pyprofile(t.p.pid, "-f", "-F", "199", seconds=6)
    assert run.returncode == 0, run.stderr
    fold = folded(run.stdout)
    hot = f"hot ({script}:5)"
    cold = f"cold ({script}:12)"
    main = f"main ({script}:19)"
    n_hot = sum(c for frames, c in fold if frames[-2:] == (main, hot))
    n_cold = sum(c for frames, c in fold if frames[-2:] == (main, cold))
    assert n_hot + n_cold >= 60, run.stdout
    share = n_hot / (n_hot + n_cold)
    assert 0.65 <= share <= 0.85, (share, run.stdout)
    # the whole chain, outermost first, as the script's own lines name it
    assert any(frames == (f"<module> ({script}:1)", main, hot) for frames, _ in fold), run.stdout


def test_two_threads_each_with_its_own_stack(kernel, python, tmp_path):
    script = tmp_path / "threads.py"
    script.write_text(THREADS)
    with Target(python, script, "120") as t:
        tid_a, tid_b = int(t.ready[1]), int(t.ready[2])
        run = pyprofile(t.p.pid, "-f", "--threads", "-F", "199", seconds=5)
    assert run.returncode == 0, run.stderr
    per_tid: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    for frames, count in folded(run.stdout):
        per_tid[frames[0]].update(f.split(" (")[0] for f in frames[1:])
        counts[frames[0]] += count
    a, b = f"tid {tid_a}", f"tid {tid_b}"
    assert counts[a] >= 10 and counts[b] >= 10, run.stdout
    assert {"worker_a", "spin_a"} <= per_tid[a] and not {"worker_b", "spin_b"} & per_tid[a], run.stdout
    assert {"worker_b", "spin_b"} <= per_tid[b] and not {"worker_a", "spin_a"} & per_tid[b], run.stdout
    # each thread's stack starts where threading starts it
    assert "Thread.run" in per_tid[a] and "Thread.run" in per_tid[b]


def test_depth_500_is_cut_at_the_limit_and_marked(kernel, python, tmp_path):
    script = tmp_path / "deep.py"
    script.write_text(DEEP)
    with Target(python, script, "120", "500") as t:
        run = pyprofile(t.p.pid, "-f", "--max-depth", "100", "-F", "199", seconds=4)
    assert run.returncode == 0, run.stderr
    fold = folded(run.stdout)
    deep = [(frames, c) for frames, c in fold if any(f.startswith("bottom (") for f in frames)]
    assert sum(c for _, c in deep) >= 10, run.stdout
    for frames, _ in deep:
        # the innermost 100 frames, exact, under a [truncated] root: never a made-up outer part
        assert frames[0] == "[truncated]" and len(frames) == 101, frames[:3]
        assert frames[-1] == f"bottom ({script}:5)"
        assert set(frames[1:-1]) == {f"recurse ({script}:11)"}
    assert "stacks deeper than --max-depth 100 were cut" in run.stderr


def test_offsets_verified_and_a_mismatch_refused(kernel, python, tmp_path):
    script = tmp_path / "hotcold.py"
    script.write_text(HOTCOLD)
    with Target(python, script, "120") as t:
        dump = subprocess.run(pybpf_cmd("tool", "pyprofile", "-p", str(t.p.pid), "--dump-offsets"),
                              capture_output=True, text=True, env=env(), timeout=240)
        assert dump.returncode == 0, dump.stderr
        doc = json.loads(dump.stdout)
        good = PyOffsets.from_dict(doc)
        with PythonProcess(t.p.pid) as proc:
            assert proc.offsets == good
            assert proc.verified_threads >= 1 and proc.verified_frames >= 2
            major, minor = proc.version[:2]
            assert f"{major}.{minor}" == doc["version"]
            names = [str(proc.code_info(c)) for th in proc.threads() for c in th.frames]
            assert f"main ({script}:19)" in names
        # a deliberately mismatched offsets file: the thread id one word off
        bad = dict(doc, tstate_native_thread_id=doc["tstate_native_thread_id"] + 8)
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        run = pyprofile(t.p.pid, "--offsets", str(tmp_path / "bad.json"), seconds=1)
        assert run.returncode == 1 and "the offsets do not match this process" in run.stderr, run.stderr
        assert "names OS thread" in run.stderr
        # the frame chain one word off: caught on the frames
        bad = dict(doc, frame_code=doc["frame_code"] + 8)
        (tmp_path / "bad2.json").write_text(json.dumps(bad))
        run = pyprofile(t.p.pid, "--offsets", str(tmp_path / "bad2.json"), seconds=1)
        assert run.returncode == 1 and "the offsets do not match this process" in run.stderr, run.stderr
        # offsets of another version
        other = dict(doc, version="3.9")
        (tmp_path / "other.json").write_text(json.dumps(other))
        with pytest.raises(UnreadablePythonError, match=r"offsets given are for CPython 3\.9"):
            PythonProcess(t.p.pid, offsets=PyOffsets.from_dict(other))
    with pytest.raises(ObjectFormatError, match="no 'frame_code'"):
        PyOffsets.from_dict({k: v for k, v in doc.items() if k != "frame_code"})
    with pytest.raises(ObjectFormatError, match="is not an offset"):
        PyOffsets.from_dict(dict(doc, frame_code="8"))


def test_not_a_cpython_is_refused(kernel):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        run = pyprofile(sleeper.pid, seconds=1)
        assert run.returncode == 1, run.stderr
        assert f"pid {sleeper.pid} (sleep," in run.stderr and "is not a CPython pybpf can read" in run.stderr
        with pytest.raises(UnreadablePythonError, match="no _PyRuntime symbol"):
            PythonProcess(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()
    with pytest.raises(UnreadablePythonError, match="no process with pid"):
        PythonProcess(2 ** 22 + 1)


FIVE = r'''\
import os
import sys
import time


def work(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


def f1():
    work(300)


def f2():
    work(600)


def f3():
    work(900)


def f4():
    work(1200)


def f5():
    work(1500)


def wait_for_go(path):
    with open(path) as go:
        go.read(1)


def main():
    with open(sys.argv[3], "w") as out:
        out.write(f"{os.getpid()}\n")
    wait_for_go(sys.argv[2])
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        f1()
        f2()
        f3()
        f4()
        f5()


main()
'''


def _own_shares(fold: Folded) -> dict[str, float]:
    own: dict[str, int] = defaultdict(int)
    for frames, count in fold:
        if frames and frames[-1].startswith("["):
            continue
        if any(f.startswith("wait_for_go (") for f in frames):
            continue   # before the start: py-spy counts a thread blocked in open() of a FIFO, on 3.13
        # the function that runs: work() is called by f1..f5, so the share of fN is work's under it
        names = [f.split(" (")[0] for f in frames]
        key = names[-2] if names[-1] == "work" and len(names) > 1 else names[-1]
        own[key] += count
    total = sum(own.values())
    return {k: v / total for k, v in own.items()} if total else {}


def test_agrees_with_py_spy_on_the_same_seconds(kernel, python, tmp_path):
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        needs_kernel("needs py-spy in the test venv (pip install -e '.[test]')")
    import os
    script, fifo, result, raw = tmp_path / "five.py", tmp_path / "go", tmp_path / "pid", tmp_path / "spy.txt"
    script.write_text(FIVE)
    os.mkfifo(fifo)
    # py-spy starts the program (by pid it cannot read Debian 12's python3.11: "Failed to find python
    # version from target process"); pyprofile attaches to that same process; both sample until it exits
    spy_run = subprocess.Popen([str(spy), "record", "-r", "200", "-f", "raw", "-o", str(raw), "--", python,
                                str(script), "15", str(fifo), str(result)], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (result.exists() and result.read_text().endswith("\n")):
            assert time.monotonic() < deadline and spy_run.poll() is None, "the program did not start"
            time.sleep(0.05)
        pid = int(result.read_text())
        mine = subprocess.Popen(pybpf_cmd("tool", "pyprofile", "-p", str(pid), "-f", "-F", "200"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
        assert mine.stderr is not None
        line = mine.stderr.readline()
        assert "Sampling the Python stacks" in line, line + mine.stderr.read()
        with open(fifo, "w") as go:
            go.write("g")
        out, err = mine.communicate(timeout=240)
        assert mine.returncode == 0, err
        _, spy_err = spy_run.communicate(timeout=120)
    finally:
        for p in (spy_run,):
            if p.poll() is None:
                p.kill()
                p.wait()
    # py-spy writes a line with no frames (" 6") for samples of a thread with no Python frame
    spy_lines = "\n".join(line for line in raw.read_text().splitlines() if line.rpartition(" ")[0].strip())
    ours, theirs = _own_shares(folded(out)), _own_shares(folded(spy_lines))
    n_ours = sum(c for frames, c in folded(out) if not any(f.startswith("wait_for_go (") for f in frames))
    assert n_ours >= 200, out   # enough samples for 5 points to be more than noise
    top5 = sorted(ours, key=lambda k: -ours[k])[:5]
    print("own shares, pyprofile vs py-spy:", {k: (round(ours[k], 3), round(theirs.get(k, 0), 3)) for k in top5})
    assert set(top5) == {"f1", "f2", "f3", "f4", "f5"}, (ours, theirs)
    for name in top5:
        assert abs(ours[name] - theirs.get(name, 0.0)) <= 0.05, (name, ours, theirs)
    # and both see the 5:4:3:2:1 work split
    assert ours["f5"] > ours["f3"] > ours["f1"]


def test_pycalls_samples_without_setprofile(kernel, python, tmp_path):
    script = tmp_path / "hotcold.py"
    script.write_text(HOTCOLD)
    with Target(python, script, "120") as t:
        run = subprocess.run(pybpf_cmd("tool", "pycalls", "-p", str(t.p.pid), "-F", "199", "-d", "5", "--json"),
                             capture_output=True, text=True, env=env(), timeout=240)
    assert run.returncode == 0, run.stderr
    reports = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(reports) == 1 and reports[0]["mode"] == "sampled" and reports[0]["frequency"] == 199
    funcs = {f["function"]: f for f in reports[0]["functions"]}
    hot, cold, main = funcs[f"hot ({script}:5)"], funcs[f"cold ({script}:12)"], funcs[f"main ({script}:19)"]
    assert hot["own"] + cold["own"] >= 60
    assert 0.65 <= hot["own"] / (hot["own"] + cold["own"]) <= 0.85, funcs
    assert main["total"] >= hot["own"] + cold["own"] and main["total_pct"] >= 90
    assert abs(hot["own_seconds"] - hot["own"] / 199) < 1e-9   # time = samples / frequency
    # --binary is --exact's; the sampling mode reads one process
    bad = subprocess.run(pybpf_cmd("tool", "pycalls", "--binary", python), capture_output=True, text=True,
                         env=env(), timeout=120)
    assert bad.returncode == 2 and "give -p PID" in bad.stderr


FOUR = r'''\
import sys
import time


def a():
    total = 0
    for i in range(4000):
        total += i * i


def b():
    total = 0
    for i in range(3000):
        total += i * i


def c():
    total = 0
    for i in range(2000):
        total += i * i


def d():
    total = 0
    for i in range(1000):
        total += i * i


with open("/proc/self/comm", "w") as f:   # a name the exporter's comm filter picks out
    f.write(sys.argv[2])
end = time.monotonic() + float(sys.argv[1])
print("ready", flush=True)
while time.monotonic() < end:
    a()
    b()
    c()
    d()
'''


def test_exporter_top_functions_per_process_bounded(kernel, python, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    from pybpf.metrics.config import load_config, parse_config
    from pybpf.metrics.exporter import Exporter

    shipped = load_config("pyprofile")
    assert shipped.python is not None and shipped.python.top == 10 and not shipped.metrics
    comm = f"pyx27{os.getpid() % 100000}"
    script = tmp_path / "four.py"
    script.write_text(FOUR)
    cfg = parse_config(f'[python]\nfrequency = 199\ntop = 2\ncomm = "^{comm}$"\nrescan = 1\n', "test.toml")
    with Target(python, script, "120", comm) as t, Target(python, script, "120", comm) as t2:
        with Exporter([cfg]) as ex:
            source = ex.deployments[0]
            assert set(source.describe()["sampled"]) == {t.p.pid, t2.p.pid}, source.describe()
            ex.exposition()
            time.sleep(3)
            ex.exposition()   # every series seen by now: the next scrape reports them in full
            time.sleep(1)
            text = ex.exposition().decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    funcs = [s for s in fams["pybpf_python_function_samples"].samples if s.name.endswith("_total")]
    for pid in (t.p.pid, t2.p.pid):
        mine = {s.labels["function"]: s.value for s in funcs if s.labels["pid"] == str(pid)}
        # 2 functions of their own, the rest in "other": 3 series per process, never more
        assert len(mine) == 3 and "other" in mine, mine
        assert all(s.labels["comm"] == comm for s in funcs if s.labels["pid"] == str(pid))
        total = next(s.value for s in fams["pybpf_python_samples"].samples if s.labels["pid"] == str(pid))
        assert sum(mine.values()) == total and total >= 20, (mine, total)
        named = [f for f in mine if f != "other"]
        assert all(re.fullmatch(r"(<module>|[abcd]) \(.*four\.py:\d+\)", f) for f in named), named
    assert next(iter(fams["pybpf_python_processes"].samples)).value == 2
    with pytest.raises(Exception, match=r"python\.top: must be a whole number 1\.\.1000"):
        parse_config("[python]\ntop = 0\n", "bad.toml")
    with pytest.raises(Exception, match=r"python\.comm: not a regular expression"):
        parse_config('[python]\ncomm = "("\n', "bad.toml")


def test_offsets_documents_are_data(tmp_path):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from pybpf.pyframes.offsets import debug_offsets_size, offsets_from_debug

    scalars = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.text(max_size=8),
                        st.floats(allow_nan=True))
    keys = st.sampled_from(["version", "source", "frame_code", "tstate_next", "free_threaded", "junk"])

    @settings(max_examples=200, deadline=None)
    @given(st.dictionaries(keys, scalars) | st.lists(scalars) | scalars)
    def offsets_json(doc):
        try:
            PyOffsets.from_dict(doc)
        except ObjectFormatError:
            pass

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=debug_offsets_size() + 16))
    def debug_block(raw):
        try:
            offsets_from_debug(b"xdebugpy" + raw if raw[:1] == b"x" else raw)
        except (ObjectFormatError, UnreadablePythonError):
            pass

    offsets_json()
    debug_block()
    with pytest.raises(ObjectFormatError, match="cookie"):
        offsets_from_debug(b"\0" * debug_offsets_size())


def test_hostile_names_stay_one_line(kernel, python, tmp_path):
    script = tmp_path / "evil.py"
    script.write_text('import sys\nprint("ready", flush=True)\n'
                      'exec(compile("def evil():\\n    while True:\\n        pass\\n", "x;y\\nz\\x1b[2J", "exec"))\n'
                      'evil()\n')
    with Target(python, script) as t:
        run = pyprofile(t.p.pid, "-f", "-F", "199", seconds=3)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stdout.splitlines() if "evil" in line]
    assert lines and all(line.startswith(f"<module> ({script}:1);evil (x:y\\x0az\\x1b[2J:1) ") for line in lines), \
        run.stdout
    assert "\x1b" not in run.stdout


def test_native_frames_above_the_python_ones(kernel, python, tmp_path):
    script = tmp_path / "z.py"
    script.write_text('import os\nimport zlib\n\ndata = os.urandom(1 << 16) * 4\n\n\ndef crunch():\n'
                      '    return zlib.compress(data, 9)\n\n\nprint("ready", flush=True)\nwhile True:\n    crunch()\n')
    with Target(python, script) as t:
        run = pyprofile(t.p.pid, "-f", "--native", "-F", "199", seconds=4)
    assert run.returncode == 0, run.stderr
    crunch = f"crunch ({script}:7)"
    rows = [(frames, c) for frames, c in folded(run.stdout) if crunch in frames]
    total = sum(c for _, c in rows)
    # the C frames sit on top of the Python frame that called them; the sampled instruction is exact,
    # so most of compress()'s time is in zlib (named, or by its library where zlib exports no symbol)
    in_zlib = sum(c for frames, c in rows if frames.index(crunch) < len(frames) - 1 and "[libz.so" in frames[-1])
    assert total >= 30 and in_zlib / total >= 0.5, run.stdout
    assert all(frames[frames.index(crunch) - 1] == f"<module> ({script}:1)" for frames, _ in rows)


# ---- flame graphs of real programs, as Chromium draws them ------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs"

NAMES_OF_JSON = '''\
import json
import json.encoder
import json.tool


def name(code):
    return f"{code.co_qualname} ({code.co_filename}:{code.co_firstlineno})"


inner = {c.co_name: name(c) for c in json.encoder._make_iterencode.__code__.co_consts if hasattr(c, "co_qualname")}
print(json.dumps({"main": name(json.tool.main.__code__), "dump": name(json.dump.__code__),
                  "load": name(json.load.__code__), **inner}))
'''


def _boxes_of(fold: Folded, width: int) -> set[tuple[str, int, int, int]]:
    """The boxes pybpf.flame draws for ``fold``: (name, depth, start, value), a box narrower than
    MIN_WIDTH px left out with what is above it."""
    from pybpf.flame import layout
    from pybpf.flame.svg import MIN_WIDTH, XPAD
    want = set()
    stack = [layout(fold)]
    while stack:
        node = stack.pop()
        if node.value * (width - 2 * XPAD) / fold.total >= MIN_WIDTH:
            want.add((node.name, node.depth, node.start, node.value))
            stack.extend(node.children.values())
    return want


def _size(svg: str) -> tuple[int, int]:
    m = re.search(r'<svg [^>]*width="(\d+)" height="(\d+)"', svg)
    assert m, svg[:300]
    return int(m.group(1)), int(m.group(2))


def test_flame_graph_of_json_tool_in_chromium(kernel, python, tmp_path):
    """A real program, unmodified: Debian's ``python3 -m json.tool`` pretty-printing 25 MB of JSON
    read from a pipe, sampled by ``pyprofile -f --svg`` from its start to its exit. The folded
    stacks name the standard library's own functions as the interpreter names them
    (``co_qualname (co_filename:co_firstlineno)``); the SVG, opened in headless Chromium, has one box
    per frame path with the folded counts; a real click on ``json.dump``'s box zooms it to the full
    width in the DOM and on the screen, its callees keep their shares and ``json.load``'s part is
    hidden."""
    names = json.loads(subprocess.run([python, "-c", NAMES_OF_JSON], capture_output=True, text=True, check=True,
                                      timeout=120).stdout)
    data = json.dumps([{"id": i, "name": f"item {i}", "tags": [f"t{j}" for j in range(5)],
                        "pos": {"x": i * 0.5, "y": -i, "ok": i % 3 == 0}} for i in range(200_000)]).encode()
    svg_path = tmp_path / "json_tool.svg"
    # the program starts blocked on its stdin; pyprofile samples it from then until it exits
    prog = subprocess.Popen([python, "-m", "json.tool"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    mine = None
    try:
        mine = subprocess.Popen(pybpf_cmd("tool", "pyprofile", "-p", str(prog.pid), "-f", "-F", "199",
                                          "--svg", str(svg_path), "--title", "python3 -m json.tool"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
        assert mine.stderr is not None and prog.stdin is not None
        line = mine.stderr.readline()
        assert "Sampling the Python stacks" in line, line + mine.stderr.read()
        prog.stdin.write(data)
        prog.stdin.close()
        assert prog.wait(timeout=600) == 0
        out, err = mine.communicate(timeout=240)
        assert mine.returncode == 0, err
    finally:
        for p in (prog, mine):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    fold = folded(out)
    assert fold.total >= 100, out
    # the chain of the encoder's generators, each named as the interpreter names its code object
    chain = (names["main"], names["dump"], names["_iterencode"], names["_iterencode_list"], names["_iterencode_dict"])
    assert names["_iterencode"].startswith("_make_iterencode.<locals>._iterencode (/") and ":" in names["dump"]

    def has(frames: tuple[str, ...], part: tuple[str, ...]) -> bool:
        return any(frames[i:i + len(part)] == part for i in range(len(frames) - len(part) + 1))
    encoding = sum(c for frames, c in fold if has(frames, chain))
    loading = sum(c for frames, c in fold if has(frames, (names["main"], names["load"])))
    assert encoding >= 0.1 * fold.total and loading >= 1, out
    rooted = sum(c for frames, c in fold if frames[0].startswith("_run_module_as_main ("))
    print(f"json.tool: {fold.total} samples, {encoding} in the encoder's generators, {loading} in json.load")
    assert rooted >= 0.9 * fold.total, out      # runpy's frames at the root: `-m json.tool` as run

    svg = svg_path.read_text()
    width, height = _size(svg)
    # 1. the DOM after the page's script ran: one box per frame path, with the folded counts
    assert chromium.flame_frames_of_dom(chromium.dump_dom(svg_path)) == _boxes_of(fold, width)
    # 2. a click on json.dump's box, as a user's mouse does it
    full = width - 2 * 10 - 1
    with chromium.Page(svg_path, width, height) as page:
        page.wait_for("typeof zoom === 'function' && frames.length > 0")
        before = chromium.flame_boxes(page)
        dump = next(b for b in before if b["n"] == names["dump"])
        assert dump["w"] < full - 1 or loading == 0
        page.click(dump["cx"], dump["cy"])
        after = {(b["n"], b["d"], b["s"]): b for b in chromium.flame_boxes(page)}
        zoomed = after[(names["dump"], dump["d"], dump["s"])]
        assert zoomed["x"] == 10 and zoomed["w"] == pytest.approx(full, abs=0.02) and zoomed["cls"] == "f"
        assert page.evaluate("document.getElementById('title').textContent") == \
            f"python3 -m json.tool: {names['dump']}"
        want = {box[:3]: box[3] for box in _boxes_of(fold, width)}
        v0 = want[(names["dump"], dump["d"], dump["s"])]
        for (name, d, s), b in after.items():
            if d < dump["d"] and s <= dump["s"] and dump["s"] + v0 <= s + want[(name, d, s)]:   # its callers
                assert b["cls"] == "f parent" and b["w"] == pytest.approx(full, abs=0.02), name
            elif dump["s"] <= s and s + want[(name, d, s)] <= dump["s"] + v0:   # callees keep their share
                w = want[(name, d, s)] / v0 * (width - 20)
                assert b["cls"] == ("f" if w >= 0.1 else "f hide"), name
                if w >= 0.1:
                    assert b["w"] == pytest.approx(w - 1 if w >= 2 else w, abs=0.02), name
            else:                    # json.load and everything else beside json.dump
                assert b["cls"] == "f hide", name
        assert any(b["n"] == names["load"] and b["cls"] == "f hide" for b in after.values()) or loading == 0
        # the picture: dump's colour spans the row
        first, last = chromium.colour_run(chromium.picture(page), int(zoomed["top"]) + 2, zoomed["fill"])
        assert first <= 11 and last - first >= full - 2, (first, last)


def test_checked_in_flame_graph_is_what_chromium_draws():
    """docs/pyprofile-testsuite.{folded,svg,png}, pyprofile's flame graph of pybpf's own test suite
    (README): the SVG's boxes, read from Chromium's DOM, are the folded stacks' layout, every frame is
    a ``qualname (file:line)``, and the PNG is Chromium's picture of that SVG's base (each box's
    colour where the SVG puts the box)."""
    from PIL import Image
    fold = Folded.parse((DOCS / "pyprofile-testsuite.folded").read_text())
    svg_path = DOCS / "pyprofile-testsuite.svg"
    svg = svg_path.read_text()
    width, height = _size(svg)
    assert f'data-total="{fold.total}"' in svg and fold.total >= 1000
    readme = (DOCS.parent / "README.md").read_text()     # shown there, with its sample count
    assert "(docs/pyprofile-testsuite.png)](docs/pyprofile-testsuite.svg)" in readme
    assert f"({fold.total} samples;" in readme
    assert chromium.flame_frames_of_dom(chromium.dump_dom(svg_path)) == _boxes_of(fold, width)
    for frames, _ in fold:
        for frame in frames:
            assert re.fullmatch(r".+ \(.+:\d+\)", frame) or re.fullmatch(r"\[[a-z ]+\]", frame), frame
    img = np.asarray(Image.open(DOCS / "pyprofile-testsuite.png").convert("RGB")).astype(int)
    assert img.shape[1] == width and img.shape[0] <= height
    offset = height - img.shape[0]   # the picture is the graph's base: its bottom rows
    checked = 0
    for m in re.finditer(r'<rect x="([\d.]+)" y="(\d+)" width="([\d.]+)" height="\d+" fill="(rgb\([\d,]+\))"', svg):
        x, y, w, fill = float(m.group(1)), int(m.group(2)) - offset, float(m.group(3)), m.group(4)
        if w < 4 or not 0 <= y < img.shape[0] - 1:
            continue
        colour = np.array([int(c) for c in re.findall(r"\d+", fill)])
        pixel = img[y + 1, int(x) + 2]
        assert np.all(np.abs(pixel - colour) <= 4), (m.group(0), pixel.tolist())
        checked += 1
    assert checked >= 40
