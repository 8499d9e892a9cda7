"""An interactive SVG flame graph, drawn from folded stacks by pybpf itself.

Owns the layout (one box per frame, its width its share of the samples, callers below
callees, siblings sorted by name as flamegraph.pl merges them), the colours (a warm
palette hashed from the name, so a function keeps its colour from one graph to the
next), and the small script that makes it interactive: the full ``name (N samples, P%)``
on hover (``<title>``, also shown in the bottom line), zoom on click, reset on a click of
"Reset Zoom" or Escape. The file stands alone: no external script, font or style.
Every frame name is escaped: names are data from the profiled program.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from html import escape

from pybpf.errors import InvalidArgumentError
from pybpf.flame.folded import Folded

__all__ = ["FlameNode", "layout", "render_svg"]

FONT_SIZE = 12
FONT_WIDTH = 0.59          # average glyph width / font size (Verdana), as flamegraph.pl
FRAME_HEIGHT = 16
XPAD = 10
MIN_WIDTH = 0.1            # px: narrower frames are left out (their samples stay in the parent)


@dataclass
class FlameNode:
    """One box: a frame reached by one path from the root."""

    name: str
    depth: int
    start: int = 0          # samples before it at its depth
    value: int = 0          # samples in it and above it
    children: dict[str, FlameNode] = field(default_factory=dict)


def layout(folded: Folded, root_name: str = "all") -> FlameNode:
    """The tree of boxes: ``start``/``value`` in samples; children sorted by name."""
    root = FlameNode(root_name, 0)
    for frames, count in folded:
        root.value += count
        node = root
        for depth, name in enumerate(frames, 1):
            child = node.children.get(name)
            if child is None:
                child = node.children[name] = FlameNode(name, depth)
            child.value += count
            node = child

    def place(node: FlameNode) -> None:
        at = node.start
        for name in sorted(node.children):
            child = node.children[name]
            child.start = at
            at += child.value
            place(child)
    place(root)
    return root


def _colour(name: str) -> str:
    """A warm colour from the name (stable across graphs); kernel frames ([k]) a darker orange."""
    h = hashlib.blake2b(name.encode("utf-8", "replace"), digest_size=3).digest()
    v1, v2, v3 = h[0] / 255, h[1] / 255, h[2] / 255
    if name.endswith("_[k]"):
        return f"rgb({200 + int(50 * v1)},{90 + int(60 * v2)},{int(40 * v3)})"
    if name.startswith("[") or name == "-" or name == "--":
        return f"rgb({160 + int(40 * v1)},{160 + int(40 * v1)},{160 + int(40 * v1)})"
    return f"rgb({205 + int(50 * v3)},{int(230 * v1)},{int(55 * v2)})"


def _gap(width: float) -> float:
    """A box is drawn 1 px narrower than its share, so that neighbours stay apart."""
    return width - 1 if width >= 2 else width


def _label(name: str, width: float) -> str:
    chars = int(width / (FONT_SIZE * FONT_WIDTH))
    if chars < 3:
        return ""
    return name if len(name) <= chars else name[:chars - 2] + ".."


_SCRIPT = r"""
"use strict";
var W, XPAD, FW, total, frames, details, unzoomBtn, title, zoomed = null;
function init(evt) {
  var svg = document.documentElement;
  W = +svg.getAttribute("width"); XPAD = +svg.getAttribute("data-xpad");
  FW = +svg.getAttribute("data-fontw"); total = +svg.getAttribute("data-total");
  frames = Array.prototype.slice.call(document.querySelectorAll("g.f"));
  details = document.getElementById("details"); unzoomBtn = document.getElementById("unzoom");
  title = document.getElementById("title");
  var holder = document.getElementById("frames");
  holder.addEventListener("mouseover", function (e) { var g = frameOf(e.target); if (g) show(g); });
  holder.addEventListener("mouseout", function (e) { if (frameOf(e.target)) details.textContent = " "; });
  holder.addEventListener("click", function (e) { var g = frameOf(e.target); if (g) zoom(g); });
  unzoomBtn.addEventListener("click", unzoom);
  document.addEventListener("keydown", function (e) { if (e.key === "Escape") unzoom(); });
}
function frameOf(el) {
  while (el && el.getAttribute && !(el.getAttribute("class") || "").match(/\bf\b/)) el = el.parentNode;
  return el && el.getAttribute ? el : null;
}
function num(g, a) { return +g.getAttribute("data-" + a); }
function show(g) { details.textContent = g.querySelector("title").textContent; }
function place(g, x, w) {
  var r = g.querySelector("rect"), t = g.querySelector("text");
  r.setAttribute("x", x.toFixed(2)); r.setAttribute("width", Math.max(w >= 2 ? w - 1 : w, 0).toFixed(2));
  t.setAttribute("x", (x + 3).toFixed(2));
  var name = g.getAttribute("data-n"), chars = Math.floor(w / FW);
  t.textContent = chars < 3 ? "" : (name.length <= chars ? name : name.substring(0, chars - 2) + "..".substring(0, 2));
}
function zoom(g) {
  var s0 = num(g, "s"), v0 = num(g, "v"), d0 = num(g, "d"), scale = (W - 2 * XPAD) / v0;
  zoomed = g;
  frames.forEach(function (f) {
    var s = num(f, "s"), v = num(f, "v"), d = num(f, "d");
    var cls = "f";
    if (d < d0 && s <= s0 && s + v >= s0 + v0) { place(f, XPAD, W - 2 * XPAD); cls = "f parent"; }
    else if (d >= d0 && s >= s0 && s + v <= s0 + v0 && v * scale >= 0.1) { place(f, XPAD + (s - s0) * scale, v * scale); }
    else { cls = "f hide"; }
    f.setAttribute("class", cls);
  });
  unzoomBtn.setAttribute("class", "");
  title.textContent = title.getAttribute("data-title") + ": " + g.getAttribute("data-n");
}
function unzoom() {
  zoomed = null;
  var scale = (W - 2 * XPAD) / total;
  frames.forEach(function (f) { place(f, XPAD + num(f, "s") * scale, num(f, "v") * scale); f.setAttribute("class", "f"); });
  unzoomBtn.setAttribute("class", "hide");
  title.textContent = title.getAttribute("data-title");
}
"""

_STYLE = """
text { font-family: Verdana, "DejaVu Sans", sans-serif; font-size: %dpx; fill: rgb(0,0,0); }
#title { text-anchor: middle; font-size: %dpx; }
#unzoom { cursor: pointer; }
g.f:hover rect { stroke: black; stroke-width: 0.5; cursor: pointer; }
g.f text { pointer-events: none; }
.hide { display: none; }
.parent { opacity: 0.5; }
""" % (FONT_SIZE, FONT_SIZE + 5)


def render_svg(folded: Folded, *, title: str = "Flame Graph", width: int = 1200, unit: str = "samples",
               root_name: str = "all", subtitle: str = "") -> str:
    """The SVG document of a flame graph of ``folded`` (an empty profile draws its title and
    a note)."""
    if isinstance(width, bool) or not isinstance(width, int) or not 200 <= width <= 100_000:
        raise InvalidArgumentError(f"flame graph width must be 200..100000 px, not {width!r}")
    root = layout(folded, root_name)
    total = root.value
    usable = width - 2 * XPAD
    boxes: list[FlameNode] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if total and node.value * usable / total < MIN_WIDTH:
            continue
        boxes.append(node)
        stack.extend(node.children.values())
    depth = max((b.depth for b in boxes), default=0)
    top = FONT_SIZE * 3 + (FONT_SIZE + 4 if subtitle else 0)
    bottom = FONT_SIZE * 2 + 10
    height = top + (depth + 1) * FRAME_HEIGHT + bottom
    out = [
        '<?xml version="1.0" standalone="no"?>\n',
        f'<svg version="1.1" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'onload="init(evt)" xmlns="http://www.w3.org/2000/svg" data-xpad="{XPAD}" '
        f'data-fontw="{FONT_SIZE * FONT_WIDTH:.3f}" data-total="{total}">\n',
        f"<style>{_STYLE}</style>\n<script><![CDATA[{_SCRIPT}]]></script>\n",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="rgb(248,248,238)"/>\n',
        f'<text id="title" x="{width / 2:.1f}" y="{FONT_SIZE * 2}" data-title="{escape(title)}">'
        f"{escape(title)}</text>\n",
    ]
    if subtitle:
        out.append(f'<text id="subtitle" x="{width / 2:.1f}" y="{FONT_SIZE * 3 + 4}" '
                   f'style="text-anchor:middle;fill:rgb(120,120,120)">{escape(subtitle)}</text>\n')
    out.append(f'<text id="unzoom" x="{XPAD}" y="{FONT_SIZE * 2}" class="hide">Reset Zoom</text>\n')
    out.append(f'<text id="details" x="{XPAD}" y="{height - FONT_SIZE / 2 - 4:.1f}"> </text>\n')
    if not total:
        out.append(f'<text x="{width / 2:.1f}" y="{top + FRAME_HEIGHT}" style="text-anchor:middle">'
                   f"no samples</text>\n")
    out.append('<g id="frames">\n')
    for b in sorted(boxes, key=lambda n: (n.depth, n.start)) if total else ():
        x = XPAD + b.start * usable / total
        w = b.value * usable / total
        y = height - bottom - (b.depth + 1) * FRAME_HEIGHT
        pct = 100.0 * b.value / total
        name = escape(b.name)
        out.append(
            f'<g class="f" data-n="{name}" data-s="{b.start}" data-v="{b.value}" data-d="{b.depth}">'
            f"<title>{name} ({b.value:,} {escape(unit)}, {pct:.2f}%)</title>"
            f'<rect x="{x:.2f}" y="{y}" width="{_gap(w):.2f}" height="{FRAME_HEIGHT - 1}" fill="{_colour(b.name)}" '
            f'rx="2" ry="2"/><text x="{x + 3:.2f}" y="{y + FRAME_HEIGHT - 4.5}">{escape(_label(b.name, w))}</text>'
            f"</g>\n")
    out.append("</g>\n</svg>\n")
    return "".join(out)
