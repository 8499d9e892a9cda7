"""The package's layering: import rules, no import cycles, and pure layers without libbpf."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"


def test_import_contracts_hold() -> None:
    """import-linter's contracts in pyproject.toml: layers one way, only _sys binds C."""
    lint = Path(sys.executable).parent / "lint-imports"
    cmd = [str(lint)] if lint.exists() else [sys.executable, "-m", "importlinter.cli"]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    r = subprocess.run([*cmd, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


def test_no_import_cycles() -> None:
    """No two modules of pybpf import each other, directly or through others (type-only
    imports included): every dependency points down."""
    import grimp

    graph = grimp.build_graph("pybpf")
    modules = sorted(m for m in graph.modules if m.startswith("pybpf"))
    cycles = []
    for module in modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if imported.startswith("pybpf") and imported != module and not imported.startswith(module + ".") \
                    and graph.chain_exists(importer=imported, imported=module):
                cycles.append((module, imported))
    # a package's __init__ re-exporting its own submodules is not a cycle
    real = [(a, b) for a, b in cycles if not (b.startswith(a + ".") or a.startswith(b + "."))]
    assert real == []


def _hide_libbpf_script(code: str) -> list[str]:
    """A command that runs ``python -c code`` in a mount namespace where every libbpf.so.1
    on the system is an empty file (dlopen then fails as on a machine without libbpf)."""
    libs = sorted({os.path.realpath(p) for d in ("/usr/lib", "/lib", "/usr/local/lib")
                   for p in Path(d).rglob("libbpf.so*") if p.is_file()})
    assert libs, "libbpf.so.1 not found: the set-up installs libbpf1"
    mounts = " && ".join(f"mount --bind /dev/null {lib}" for lib in libs)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'{mounts} && exec "$0" -c "$1" "$2"', sys.executable, code]


@pytest.fixture()
def no_libbpf() -> None:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        from tests.conftest import needs_kernel
        needs_kernel("hiding libbpf needs root and unshare(1) for a private mount namespace")


def test_pure_layers_import_without_libbpf(no_libbpf: None, bundled) -> None:
    obj = bundled("counters")
    code = """
import sys
import pybpf.btf, pybpf.spec, pybpf.kinds
spec = pybpf.spec.inspect(sys.argv[1])
assert "pybpf._sys.libbpf" not in sys.modules and "cffi" not in sys.modules, sorted(sys.modules)
print(len(spec.programs), len(spec.maps))
try:
    import pybpf._sys.libbpf
except Exception as exc:
    print("binding:", type(exc).__name__, exc)
"""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    cmd = _hide_libbpf_script(code)
    cmd.append(obj)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    first, binding = r.stdout.strip().splitlines()
    assert int(first.split()[0]) >= 1
    # the binding itself fails, and says what to install
    assert "libbpf" in binding and "Error" in binding, binding


def test_inspect_command_runs_without_libbpf(no_libbpf: None, bundled) -> None:
    code = "import sys; from pybpf.cli import main; sys.argv = ['pybpf', 'inspect', '--json', sys.argv[1]]; main()"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    cmd = _hide_libbpf_script(code)
    cmd.append(bundled("counters"))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert '"on_getppid"' in r.stdout


def test_check_and_btf_min_run_without_libbpf(no_libbpf: None, bundled, tmp_path: Path) -> None:
    """The pre-check and the minimal BTF are pure: both run where libbpf.so.1 cannot load."""
    out = tmp_path / "min.btf"
    code = "import json, sys; from pybpf.cli import main; sys.argv = ['pybpf'] + json.loads(sys.argv[1]); main()"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    for argv, want in ((["check", bundled("counters"), "--kernel", "--json"], '"verdict"'),
                       (["btf", "min", "--checks", bundled("counters"), "--btf", "/sys/kernel/btf/vmlinux",
                         "-o", str(out)], "")):
        cmd = _hide_libbpf_script(code)
        cmd.append(json.dumps([str(a) for a in argv]))
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode in (0, 1) and "libbpf" not in r.stderr, r.stderr
        assert want in r.stdout
    assert out.stat().st_size > 0
