"""Shared fixtures: kernel gating, network namespaces, cgroups, bpffs, unprivileged runs.

``needs_kernel(reason)`` skips a test when this machine cannot run it, except
under ``PYBPF_REQUIRE_KERNEL=1`` (set by ``.ci/run``), where the skip becomes a
failure: CI's kernel has every feature these tests need.
"""

from __future__ import annotations

import contextlib
import gc
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import pybpf
from pybpf.kernel import features, fs

REQUIRE_KERNEL = os.environ.get("PYBPF_REQUIRE_KERNEL") == "1"
# rich sizes tables from COLUMNS (gdb, CI runners and terminals all differ): tests read wide tables
os.environ["COLUMNS"] = "250"
os.environ["LINES"] = "50"
ROOT = Path(__file__).resolve().parent.parent
# Tests run `pybpf` as a command: the one installed beside this interpreter (.venv/bin), first.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")


def _open_fds() -> dict[int, str]:
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the directory's own fd, gone already
    return fds


_FDS_AT_START: dict[int, str] = {}
_FD_FIRST_SEEN: dict[tuple[int, str], str] = {}  # (fd, target) -> the test after which it was open


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield
    for fd, what in _open_fds().items():
        if _FDS_AT_START.get(fd) != what:
            _FD_FIRST_SEEN.setdefault((fd, what), item.nodeid)


def pytest_sessionstart(session: pytest.Session) -> None:
    _FDS_AT_START.update(_open_fds())


# ---- the kernel-BTF corpus (tools/fetch_kernel_btfs.py) ----------------------------------------

KERNEL_BTF_DIR = Path(os.environ.get("PYBPF_KERNEL_BTF_DIR") or ROOT / ".cache" / "kernel-btf")
_KERNELS_USED: list[str] = []


def _fetch_module():  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location("fetch_kernel_btfs", ROOT / "tools" / "fetch_kernel_btfs.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def kernel_btfs() -> list[dict]:
    """The corpus of real kernel BTFs: what the release's archive offers (every flavour of its own
    kernel series, the generic flavour of newer ones) plus the running kernel's. Each target has
    label, file, package, version, release, compression, module and ``path``. The kernels used
    are listed at the end of the run."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        needs_kernel("needs apt-get and dpkg-deb to fetch Debian's kernel packages")
    import json

    try:
        manifest = _fetch_module().fetch(str(KERNEL_BTF_DIR), quiet=True)
    except (subprocess.CalledProcessError, OSError) as e:
        if REQUIRE_KERNEL:
            raise
        pytest.skip(f"cannot fetch Debian kernel packages: {e}")
    with open(manifest) as f:
        doc = json.load(f)
    targets = doc["targets"]
    foreign = [t for t in targets if t["label"] != "running"]
    # at least three kernels from the archive (flavours or versions), and the running one
    assert len(foreign) >= 3, f"only {[t['label'] for t in foreign]} in {manifest}"
    if os.path.exists("/sys/kernel/btf/vmlinux"):
        assert "running" in {t["label"] for t in targets}, manifest
    for t in targets:
        t["path"] = str(KERNEL_BTF_DIR / t["file"])
    if not _KERNELS_USED:
        _KERNELS_USED.append(f"kernel BTFs used ({doc.get('distribution') or 'this release'}'s archive "
                             f"and the running kernel):")
        _KERNELS_USED.extend(f"  {t['label']}: {t['package'] or '/sys/kernel/btf/vmlinux'} "
                             f"{t['version']} ({t['release']})" for t in targets)
    return targets


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    for line in _KERNELS_USED:
        terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The fd-leak gate (cilium/ebpf's fd tracer in spirit): after the whole suite, this
    process holds exactly the fds it held before it. A leak fails the run and names the fds."""
    import gc

    gc.collect()
    leaked = {fd: what for fd, what in _open_fds().items() if _FDS_AT_START.get(fd) != what}
    if leaked and session.testscollected and not getattr(session.config.option, "collectonly", False):
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            "fd leak gate: fds opened during the suite and never closed: "
            + ", ".join(f"{fd} -> {what} (open since {_FD_FIRST_SEEN.get((fd, what), '?')})"
                        for fd, what in sorted(leaked.items())), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@contextlib.contextmanager
def skip_if_not_supported() -> Iterator[None]:
    """Turn pybpf's own NotSupportedError into a skip (a failure under PYBPF_REQUIRE_KERNEL=1),
    as cilium/ebpf's SkipIfNotSupported: the library says what this kernel lacks."""
    try:
        yield
    except pybpf.NotSupportedError as exc:
        needs_kernel(f"not supported here: {exc}")


def needs_kernel(reason: str) -> None:
    """Skip (or, under PYBPF_REQUIRE_KERNEL=1, fail) for a missing kernel feature."""
    if REQUIRE_KERNEL:
        pytest.fail(f"PYBPF_REQUIRE_KERNEL=1 but: {reason}")
    pytest.skip(reason)


def _privileged() -> bool:
    return features.detect().privileged and os.path.exists("/sys/kernel/btf/vmlinux")


@pytest.fixture
def kernel() -> None:
    """Use in tests that load into the kernel: root with CAP_BPF/CAP_PERFMON and kernel BTF."""
    if not _privileged():
        needs_kernel("needs root with CAP_BPF and CAP_PERFMON and kernel BTF")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "kernel" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kernel)


@pytest.fixture
def bundled():
    """``bundled("counters")`` -> path of a bundled object (fails if not built)."""
    def find(name: str) -> str:
        try:
            return pybpf.bundled(name)
        except FileNotFoundError as exc:
            pytest.fail(f"{exc} -- run `make bpf`")
    return find


@pytest.fixture
def netns(kernel: None) -> Iterator[str]:
    """A fresh network namespace with `lo` up; yields its name. Runs nothing in it:
    use ``enter_netns(name)`` to switch this thread into it."""
    if shutil.which("ip") is None:
        needs_kernel("needs iproute2 (`ip`)")
    name = f"pybpf-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:  # os.setns is Python 3.12+
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def enter_netns(name: str) -> Iterator[None]:
    """Move this thread into network namespace ``name`` for the block (setns)."""
    original = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        yield
    finally:
        _setns(original)
        os.close(target)
        os.close(original)


@pytest.fixture
def cgroup(kernel: None) -> Iterator[str]:
    """A child cgroup v2 directory, removed afterwards (processes moved back out)."""
    try:
        root = fs.cgroup2_root()
    except pybpf.BpfError:
        needs_kernel("no cgroup v2 hierarchy mounted")
    path = os.path.join(root, f"pybpf-test-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            with open(os.path.join(path, "cgroup.procs")) as procs:
                pids = procs.read().split()
            for pid in pids:
                with open(os.path.join(root, "cgroup.procs"), "w") as parent:
                    parent.write(pid)
        os.rmdir(path)


@pytest.fixture
def bpffs(kernel: None) -> Iterator[str]:
    """A private bpffs mount, unmounted (with everything pinned in it) afterwards."""
    path = tempfile.mkdtemp(prefix="pybpf-bpffs-")
    fs.mount("bpf", path, "bpf")
    try:
        yield path
    finally:
        fs.umount(path)
        os.rmdir(path)


def run_unprivileged(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` as user nobody with no BPF capabilities (via setpriv).

    CAP_DAC_READ_SEARCH is kept (and nothing else) so that nobody can read a
    Python installed under /root; it grants nothing BPF-related."""
    if shutil.which("setpriv") is None:
        needs_kernel("needs setpriv (util-linux)")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), HOME="/tmp")
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
           "--inh-caps=-all,+dac_read_search", "--ambient-caps=+dac_read_search",
           "--bounding-set=-all,+dac_read_search", sys.executable, "-c", code]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd="/tmp")


def _fd_identity(fd: int, target: str) -> str:
    """What an fd is: its link target, with the BPF object id from fdinfo (map_id, prog_id,
    link_id...) so that a reused fd number of another map is not taken for the same one."""
    try:
        with open(f"/proc/self/fdinfo/{fd}") as info:
            ids = [line.strip() for line in info if line.split(":", 1)[0].endswith("_id")]
    except OSError:
        ids = []
    return " ".join([target, *ids])


def open_fds() -> dict[int, str]:
    """This process's open fds -> what each is, taken after a garbage-collection pass.

    The pass matters: an earlier test's garbage in a reference cycle (an exception's traceback
    holding a ring buffer's record view, which keeps an mmap and its fd) is otherwise freed
    whenever the collector next runs, possibly in the middle of the next test, whose fd count
    then drops by one ("14 open fds, expected 15"). Compare with :func:`new_fds`."""
    gc.collect()
    return {fd: _fd_identity(fd, target) for fd, target in _open_fds().items()}


def new_fds(before: dict[int, str]) -> dict[int, str]:
    """The fds open now that were not open at ``before`` (a leak when not empty). An fd that
    closed meanwhile (another thread's, a finalizer's) is not this code's leak and not counted."""
    return {fd: what for fd, what in open_fds().items() if before.get(fd) != what}
