"""``pybpf agent AGENT.toml [--remove]``: deploy several tools, serve their metrics, upgrade them in place.

Format of AGENT.toml and what the agent does: :mod:`pybpf.metrics.agent` and the
README. SIGTERM or SIGINT stop it and leave every deployment running (the next
start adopts them: no counter resets); ``--remove`` removes them and exits.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import typer

from pybpf.cli.render import err_console, fail, guarded

__all__ = ["agent_command"]


@guarded
def agent_command(
    config: Path = typer.Argument(..., metavar="AGENT.toml", help="the agent's config"),
    remove: bool = typer.Option(False, "--remove", help="remove every tool's deployment and exit"),
) -> None:
    """Deploy several tools, serve all their metrics, upgrade a tool when its object file changes."""
    from pybpf.metrics import ConfigError
    from pybpf.metrics.agent import Agent, load_agent_config

    try:
        agent = Agent(load_agent_config(config))
    except ConfigError as exc:
        fail(str(exc))
    if remove:
        gone = agent.remove()
        err_console().print(f"removed {len(gone)} deployment(s)", markup=False, highlight=False)
        return

    def on_signal(signum: int, frame: Any) -> None:
        agent.stop()

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            agent.start()
            agent.run()
        finally:
            agent.close()
        err_console().print("stopped (the deployments keep running)", markup=False, highlight=False)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
