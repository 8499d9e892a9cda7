"""Profiles as folded stacks and flame graphs.

    from pybpf.flame import Folded, render_svg
    folded = Folded()
    folded.add(["main", "hot"], 750)
    folded.text()                      # "main;hot 750\\n" (flamegraph.pl, speedscope, inferno read it)
    open("profile.svg", "w").write(render_svg(folded, title="CPU"))

:mod:`pybpf.flame.folded` holds the counts per stack and the text format,
:mod:`pybpf.flame.svg` the interactive SVG, and :mod:`pybpf.flame.stacks` turns a
BPF profile (a counts map keyed by stack ids, a stack map) into folded stacks with names.
"""

from __future__ import annotations

from pybpf.flame.folded import Folded, frame_name
from pybpf.flame.svg import FlameNode, layout, render_svg

__all__ = ["FlameNode", "Folded", "frame_name", "layout", "render_svg"]
