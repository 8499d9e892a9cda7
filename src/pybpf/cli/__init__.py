"""The ``pybpf`` command: inspect objects, dump BTF, load and run programs, list the kernel's.

A thin typer app over the public API (``pybpf``, ``pybpf.spec.elf``, ``pybpf.btf.types``,
``pybpf.kernel.info``, ``pybpf.cheader``): whatever a command shows, a program can
get from the library too. Each command lives in its own module; this one lists them and
holds the entry point, which imports no typer: a tool (:mod:`pybpf.cli.toolrun`),
``prog``/``map`` ``show``/``list`` (:mod:`pybpf.cli.kernelview`), ``check`` and ``btf min``
(:mod:`pybpf.cli.offline`) are answered without it when their command lines are plain;
everything else goes to the typer app (:mod:`pybpf.cli.group`, also ``pybpf.cli.app``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pybpf.cli.group import app, load_command

__all__ = ["COMMANDS", "SUMMARIES", "app", "load_command", "main"]

# Command name -> (module, attribute[, context settings attribute]): a typer app (a command
# group) or a command function.
# A command's module is imported only when that command runs (or help lists it), so a
# command pays only for what it needs: `pybpf inspect` never loads libbpf.
COMMANDS: dict[str, tuple[str, ...]] = {
    "inspect": ("pybpf.cli.inspect", "inspect_command"),
    "check": ("pybpf.cli.check", "check_command"),
    "load": ("pybpf.cli.run", "load_command"),
    "test-run": ("pybpf.cli.run", "test_run_command"),
    "demo": ("pybpf.cli.demo", "demo_command"),
    "build": ("pybpf.cli.build", "build_command"),
    "gen": ("pybpf.cli.gen", "gen_command"),
    "btf": ("pybpf.cli.btf", "btf_app"),
    "prog": ("pybpf.cli.kernel", "prog_app"),
    "map": ("pybpf.cli.kernel", "map_app"),
    "usdt": ("pybpf.cli.usdt", "usdt_app"),
    "tool": ("pybpf.cli.tool", "tool_command", "TOOL_CONTEXT"),
    "export": ("pybpf.cli.export", "export_command"),
    "bench": ("pybpf.cli.benchcmd", "bench_command"),
    "upgrade": ("pybpf.cli.upgrade", "upgrade_command"),
    "deployment": ("pybpf.cli.deployment", "deployment_app"),
    "agent": ("pybpf.cli.agent", "agent_command"),
    "features": ("pybpf.cli.features", "features_command"),
}


# What `pybpf --help` shows for each command, so that listing them imports none of them
# (tests/test_startup.py checks each is its command's own first help line: keep them in step).
SUMMARIES: dict[str, str] = {
    "inspect": "What a BPF object contains: programs, maps, globals, CO-RE relocations, BTF (no root needed).",
    "check": "Check that objects will load and attach on target kernels, from their BTF (no kernel, no root).",
    "load": "Load (and attach) a BPF object, then watch its maps and globals live (or stream a ring buffer).",
    "test-run": "Run one program with BPF_PROG_TEST_RUN and show its return value and output.",
    "demo": "Count every system call live with a bundled BPF program; the table reads it without syscalls.",
    "build": "Compile BPF C into a stripped CO-RE .bpf.o (clang -target bpf -mcpu=v3, pybpf's headers).",
    "gen": "Generate a typed module: dtypes, record classes, one attribute per map, global and program.",
    "btf": "BPF Type Format: dump the kernel's or an object's types.",
    "prog": "BPF programs loaded in the kernel.",
    "map": "BPF maps in the kernel.",
    "usdt": "USDT (SystemTap SDT) probes of binaries and processes.",
    "tool": "Run a tool shipped with pybpf (execsnoop, opensnoop, syscount, runqlat, tcpstates, ...).",
    "export": "Serve BPF map contents as Prometheus metrics on http://ADDR:PORT/metrics.",
    "upgrade": "Upgrade the version pinned in DIR to NEW; migrated counters are merged exactly.",
    "deployment": "Deployments pinned on bpffs: list, show, remove.",
    "agent": "Deploy several tools, serve all their metrics, upgrade a tool when its object file changes.",
    "features": "What pybpf runs on here: libbpf (version, optional APIs), kernel, capabilities, binding.",
    "bench": "Benchmark map access: syscall lookups vs batch lookups vs mmap views, Python next to C.",
}


def __getattr__(name: str) -> Any:
    """``app`` and ``load_command`` (typer) load on first use (PEP 562)."""
    if name in ("app", "load_command"):
        from pybpf.cli import group

        return getattr(group, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Entry point of the ``pybpf`` console script."""
    import sys

    from pybpf.cli.argv import normalize_argv

    argv = normalize_argv(sys.argv[1:])
    if len(argv) >= 2 and argv[0] == "tool":
        # a tool's start-up: straight to its function when its command line is plain (toolrun.py)
        from pybpf.cli import toolrun

        if toolrun.run(argv[1], argv[2:]):
            return
    elif argv[:1] == ["check"] or argv[:2] == ["btf", "min"]:
        # offline commands a fleet runs often: no typer, pydantic or rich for a plain command line
        from pybpf.cli import offline

        if offline.run(argv):
            return
    else:
        from pybpf.cli import kernelview

        if kernelview.run(argv):  # prog/map show/list: no typer, rich or numpy
            return
    from pybpf.cli.group import app

    app(args=argv, prog_name="pybpf")
