"""Start-up costs only what it must: ``import pybpf`` loads neither libbpf (cffi) nor numpy,
``pybpf --help`` imports no command module, and a command imports what it needs when it runs.
The public names (``pybpf.X``, ``__all__``, ``from pybpf import *``) all still work."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import pybpf
from pybpf.cli import COMMANDS, SUMMARIES, load_command

HEAVY = ("cffi", "numpy", "pybpf._sys", "pybpf.object", "pybpf.maps", "pybpf.cheader", "pybpf.cli.")


def _modules_after(code: str) -> list[str]:
    probe = code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))\n"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


LIGHT = ("pybpf.cli.group", "pybpf.cli.argv", "pybpf.cli.kernelview", "pybpf.cli.jsonout")  # the app, no command


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if (m.startswith(HEAVY) or m == "cffi") and m not in LIGHT]


def test_import_pybpf_loads_no_libbpf_nor_numpy() -> None:
    assert _heavy(_modules_after("import pybpf")) == []


def test_cli_help_imports_no_command() -> None:
    code = ("import contextlib, io\nfrom pybpf.cli import app\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        app(['--help'])\n    except SystemExit:\n        pass")
    assert _heavy(_modules_after(code)) == []


def test_a_command_imports_what_it_needs() -> None:
    code = ("import contextlib, io\nfrom pybpf.cli import app\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        app(['build', '--help'])\n    except SystemExit:\n        pass")
    modules = _modules_after(code)
    assert "pybpf.cli.build" in modules
    assert "pybpf._sys.libbpf" not in modules and "pybpf.cli.run" not in modules


def test_every_public_name_resolves() -> None:
    for name in pybpf.__all__:
        assert getattr(pybpf, name) is not None, name
    assert set(pybpf.__all__) <= set(dir(pybpf))
    namespace: dict[str, object] = {}
    exec("from pybpf import *", namespace)
    assert set(pybpf.__all__) <= set(namespace)
    assert pybpf.Map is pybpf.maps.map.Map and pybpf.open is pybpf.object.open
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        pybpf.no_such_name  # noqa: B018


def test_all_is_complete() -> None:
    """Every public class or function the package namespace offers is in __all__."""
    public = {n for n, v in vars(pybpf).items() if not n.startswith("_") and n not in pybpf.__all__
              and not isinstance(v, type(pybpf)) and n not in ("annotations", "importlib", "logging", "Path",
                                                                "TYPE_CHECKING", "Any")}
    assert public == set()
    assert len(set(pybpf.__all__)) == len(pybpf.__all__)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_summaries_are_the_commands_own(name: str) -> None:
    """`pybpf --help` shows SUMMARIES without importing the commands: each must be its command's
    own first help line (edit SUMMARIES in pybpf/cli/__init__.py when a docstring changes)."""
    command = load_command(name)
    assert command.name == name
    assert (command.help or "").strip().splitlines()[0] == SUMMARIES[name]
