"""The C programs the stack tests profile (tests/data/stacks/), built here with gcc.

``hotcold`` spends 3/4 of its CPU time in ``hot()`` and 1/4 in ``cold()``, both called from
``main()``; with argument ``lib`` the same split is in ``libhotcold.so`` (dlopen()ed).
Built with frame pointers: BPF walks user stacks by frame pointer.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import ROOT, needs_kernel

DATA = ROOT / "tests" / "data" / "stacks"
CFLAGS = ["-O1", "-g", "-fno-omit-frame-pointer", "-fno-inline"]

# Stack-map buckets for profiling these programs. A stack map stores a stack in the bucket its hash
# picks and answers -EEXIST when another stack holds it. At the tools' default 1024 buckets, 4 of 60
# one-second profiles of hotcold (a fresh ASLR layout each) lost a stack that way; once it was hot's
# main stack, and the flame graph test saw 54% "[Missed User Stack]". 32768 make it 32 times rarer.
STACK_STORAGE = 32768


def build(dest: Path) -> Path:
    """Build hotcold, libhotcold.so and offcpu into ``dest``; returns hotcold's path."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        needs_kernel("needs gcc (make setup installs it)")
    prog = dest / "hotcold"
    subprocess.run([cc, *CFLAGS, "-o", str(prog), str(DATA / "hotcold.c")], check=True)
    subprocess.run([cc, *CFLAGS, "-shared", "-fPIC", "-o", str(dest / "libhotcold.so"),
                    str(DATA / "libhotcold.c")], check=True)
    subprocess.run([cc, *CFLAGS, "-pthread", "-o", str(dest / "offcpu"), str(DATA / "offcpu.c")], check=True)
    return prog


_BUILT: list[Path] = []


def hotcold_path() -> Path:
    """hotcold (and libhotcold.so beside it), built once per test run, removed at exit."""
    if not _BUILT:
        d = Path(tempfile.mkdtemp(prefix="pybpf-hotcold-"))
        atexit.register(shutil.rmtree, d, True)
        _BUILT.append(build(d))
    return _BUILT[0]


def start(prog: Path, seconds: float, *extra: str) -> subprocess.Popen[str]:
    """Start ``prog SECONDS ...`` and wait for its ``ready PID`` line."""
    p = subprocess.Popen([str(prog), str(seconds), *extra], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline() if p.stdout else ""
    assert line.startswith("ready"), f"{prog} did not start: {line!r}"
    return p


def finish(p: subprocess.Popen[str]) -> str:
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0, f"{p.args} exited {p.returncode}"
    return out
