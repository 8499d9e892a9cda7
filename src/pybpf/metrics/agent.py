"""``pybpf agent AGENT.toml``: several tools deployed, upgraded and exported by one process.

The agent config names a directory on bpffs and the tools::

    [agent]
    directory = "/sys/fs/bpf/pybpf"   # each tool is deployed in DIRECTORY/NAME (0700)
    addr = "127.0.0.1"
    port = 9436
    poll = 1.0                        # seconds between checks of the object files

    [[tool]]
    name = "getppid"
    object = "tools/getppid.bpf.o"    # relative to this file
    metrics = "getppid.toml"          # an exporter config: its metrics (its [object] is not loaded)
    rodata = { want_tgid = 1234 }
    last_value = ["stats:last_ns"]    # fields that hold a last value, not a count

On start each tool is adopted from its pins if DIRECTORY/NAME holds it (a
restart resets no counter), upgraded if its object file changed meanwhile,
and deployed otherwise. One HTTP server serves every tool's metrics, read from
the pins. While running, a tool whose object file changes (by its SHA-256) is
upgraded (exactly: see ``pybpf.upgrade``). SIGTERM stops the agent and leaves
the deployments running; ``--remove`` removes them.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pybpf
from pybpf.logs import logger
from pybpf.metrics.config import ConfigError, load_config
from pybpf.metrics.exporter import Exporter
from pybpf.upgrade.manifest import make_directory, read_manifest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

__all__ = ["Agent", "AgentConfig", "ToolSpec", "load_agent_config"]

_log = logger("pybpf.agent")


@dataclass
class ToolSpec:
    """One tool of the agent."""

    name: str
    object: str
    metrics: str | None
    rodata: dict[str, Any] = field(default_factory=dict)
    last_value: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class AgentConfig:
    """The agent's config: where deployments go, where metrics are served, the tools."""

    file: str
    directory: str
    addr: str
    port: int
    poll: float
    tools: list[ToolSpec]


def _err(file: str, key: str, message: str) -> ConfigError:
    return ConfigError(file, key, message)


def load_agent_config(path: str | os.PathLike[str]) -> AgentConfig:
    """Read and check an agent config (``ConfigError`` names the file and key)."""
    file = os.fspath(path)
    try:
        doc = tomllib.loads(Path(file).read_text())
    except OSError as exc:
        raise _err(file, "", f"cannot read it: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise _err(file, "", f"not valid TOML: {exc}") from None
    base = Path(file).resolve().parent
    agent = doc.get("agent", {})
    if not isinstance(agent, dict):
        raise _err(file, "agent", "must be a table")
    directory = agent.get("directory")
    if not isinstance(directory, str) or not directory:
        raise _err(file, "agent.directory", "a directory on bpffs is needed (e.g. \"/sys/fs/bpf/pybpf\")")
    addr, port, poll = agent.get("addr", "127.0.0.1"), agent.get("port", 9436), agent.get("poll", 1.0)
    if not isinstance(addr, str) or not isinstance(port, int) or not 0 <= port < 65536:
        raise _err(file, "agent", "addr must be a string and port an integer 0..65535")
    if not isinstance(poll, (int, float)) or poll <= 0:
        raise _err(file, "agent.poll", "must be a positive number of seconds")
    tools = []
    names: set[str] = set()
    for i, t in enumerate(doc.get("tool", [])):
        where = f"tool[{i}]"
        if not isinstance(t, dict):
            raise _err(file, where, "must be a table")
        name, obj = t.get("name"), t.get("object")
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum() or name in names:
            raise _err(file, f"{where}.name", "a unique name of letters, digits, '_' and '-' is needed")
        names.add(name)
        if not isinstance(obj, str):
            raise _err(file, f"{where}.object", "the path of the tool's .bpf.o is needed")
        metrics = t.get("metrics")
        if metrics is not None and not isinstance(metrics, str):
            raise _err(file, f"{where}.metrics", "must be the path of an exporter config")
        rodata = t.get("rodata", {})
        if not isinstance(rodata, dict):
            raise _err(file, f"{where}.rodata", "must be a table of .rodata values")
        last: dict[str, list[str]] = {}
        for spec in t.get("last_value", []):
            m, sep, f = str(spec).rpartition(":")
            if not sep or not m or not f:
                raise _err(file, f"{where}.last_value", f"{spec!r}: expected \"MAP:FIELD\"")
            last.setdefault(m, []).append(f)
        tools.append(ToolSpec(name, str(base / obj), str(base / metrics) if metrics else None, rodata, last))
    if not tools:
        raise _err(file, "tool", "no [[tool]] given")
    return AgentConfig(file, directory, addr, port, float(poll), tools)


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Agent:
    """Deploys (or adopts) every tool, serves their metrics, upgrades them when their object changes."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.exporter: Exporter | None = None
        self.events: list[str] = []  # what the agent did, in order (also logged)
        self._stop = threading.Event()

    def _note(self, text: str) -> None:
        self.events.append(text)
        _log.warning("agent: %s", text)
        print(f"agent: {text}", file=sys.stderr, flush=True)

    def directory_of(self, tool: ToolSpec) -> str:
        """Where ``tool`` is pinned."""
        return os.path.join(self.config.directory, tool.name)

    # ---- deploy / adopt / upgrade ----------------------------------------------------------------

    def ensure(self, tool: ToolSpec) -> None:
        """Deploy ``tool``, or adopt its pins (upgrading it if the object file changed)."""
        directory = self.directory_of(tool)
        make_directory(directory)
        manifest = read_manifest(directory)
        digest = _sha256(tool.object)
        if manifest is None:
            obj = pybpf.open(tool.object)
            try:
                for name, value in tool.rodata.items():
                    obj.rodata[name] = value
                deployment = pybpf.deploy(obj)
            except BaseException:
                obj.close()
                raise
            with deployment:
                deployment.manifest = {"tool": tool.name}
                deployment.pin(directory)
            self._note(f"{tool.name}: deployed {tool.object} in {directory}")
        elif manifest.get("sha256") != digest or manifest.get("pending"):
            self.upgrade(tool)
        else:
            self._note(f"{tool.name}: adopted the running deployment in {directory} (version "
                       f"{manifest.get('version')})")

    def upgrade(self, tool: ToolSpec) -> None:
        """Upgrade ``tool`` to its object file now."""
        directory = self.directory_of(tool)
        with pybpf.upgrade(directory, tool.object, last_value=tool.last_value) as done:
            report = done.report
            assert report is not None
            for w in report.warnings:
                self._note(f"{tool.name}: warning: {w}")
            version = done.manifest.get("version") if done.manifest else None
        self._note(f"{tool.name}: upgraded to {tool.object} (version {version})")

    def check(self) -> None:
        """Upgrade every tool whose object file changed since it was deployed."""
        for tool in self.config.tools:
            try:
                digest = _sha256(tool.object)
                manifest = read_manifest(self.directory_of(tool))
                if manifest is not None and (manifest.get("sha256") != digest or manifest.get("pending")):
                    self.upgrade(tool)
            except (OSError, pybpf.BpfError) as exc:  # a half-written file, a verifier rejection: keep running
                self._note(f"{tool.name}: not upgraded: {exc}")

    # ---- run -------------------------------------------------------------------------------------------

    def start(self) -> int:
        """Deploy or adopt every tool and start serving; returns the port."""
        for tool in self.config.tools:
            self.ensure(tool)
        configs, dirs = [], []
        for tool in self.config.tools:
            if tool.metrics is None:
                continue
            cfg = load_config(tool.metrics)
            configs.append(cfg)
            dirs.append(self.directory_of(tool))
        self.exporter = Exporter(configs, deployments=dirs)
        port = self.exporter.serve(self.config.addr, self.config.port)
        self._note(f"serving http://{self.config.addr}:{port}/metrics for {len(configs)} tool(s)")
        return port

    def run(self) -> None:
        """Poll the object files until ``stop()``."""
        while not self._stop.wait(self.config.poll):
            self.check()

    def stop(self) -> None:
        """Make ``run`` return."""
        self._stop.set()

    def close(self) -> None:
        """Stop serving and release this process's handles: the deployments keep running."""
        if self.exporter is not None:
            self.exporter.close()
            self.exporter = None

    def remove(self) -> list[str]:
        """Remove every tool's deployment (detach, unpin); returns the directories removed."""
        from pybpf.upgrade.deployments import remove

        gone = []
        for tool in self.config.tools:
            directory = self.directory_of(tool)
            if os.path.isdir(directory) and read_manifest(directory) is not None:
                remove(directory)
                gone.append(directory)
                self._note(f"{tool.name}: removed {directory}")
        return gone
