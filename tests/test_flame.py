"""Stacks as data and their outputs: Map.stacks() on a real stack map, stacks from rows,
folded text, named stacks from a real profile, and the SVG flame graph as Chromium draws it."""

from __future__ import annotations

import errno
import re
from html import unescape

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pybpf
from pybpf import perf
from pybpf.flame import Folded, frame_name, layout, render_svg
from pybpf.flame.stacks import MISSED_USER, fold, name_stacks
from pybpf.maps.stacks import StackTable, stack_depths
from pybpf.symbolize import Symbolizer
from tests import chromium
from tests.stackprogs import STACK_STORAGE, finish, hotcold_path, start


# ---- folded -----------------------------------------------------------------------------------

def test_folded_text_round_trip():
    f = Folded([(["main", "hot"], 3), (["main", "cold"], 1), (["main", "hot"], 2)])
    assert f.text() == "main;cold 1\nmain;hot 5\n"
    assert Folded.parse(f.text()) == f and f.total == 6
    assert f.share("main;hot") == pytest.approx(5 / 6)
    assert frame_name("a;b\nc\x1b") == "a:b\\x0ac\\x1b"
    with pytest.raises(pybpf.RecordFormatError, match="line 2"):
        Folded.parse("a;b 1\nno-count\n")
    with pytest.raises(pybpf.InvalidArgumentError, match="integer >= 0"):
        f.add(["x"], -1)


@given(st.lists(st.tuples(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=6),
                          st.integers(1, 10**6)), max_size=30))
@settings(max_examples=80, deadline=None)
def test_folded_parse_of_text_is_identity(rows):
    f = Folded(rows)
    again = Folded.parse(f.text())
    # names with spaces stay one frame; only a name that is all whitespace at the end could blur
    assert again.total == f.total
    if all(not fr[-1].endswith((" ", "\t")) and fr[-1].strip() for fr, _ in rows):
        assert again == f


def test_stack_table_from_rows():
    frames = np.array([[3, 2, 1, 0], [9, 0, 0, 0], [5, 6, 7, 8]], np.uint64)
    table = StackTable.from_frames(frames, ids=[40, 10, 20])
    assert table.ids.tolist() == [10, 20, 40] and stack_depths(frames).tolist() == [3, 1, 4]
    assert table.get(40).tolist() == [3, 2, 1] and 20 in table and -14 not in table
    assert table.rows([20, 5, -14]).tolist() == [1, -1, -1]
    assert table.addresses().tolist() == [1, 2, 3, 5, 6, 7, 8, 9]
    with pytest.raises(pybpf.InvalidArgumentError, match="2-d"):
        stack_depths(np.zeros(3))


# ---- a real profile ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def profiled():
    """hotcold profiled for 2 s at 499 Hz with profile.bpf.o: (keys, values, stacks, symbolizer)."""
    prog = hotcold_path()
    with pybpf.open(pybpf.bundled("profile")) as obj:
        obj.rodata["filter_by_pid"] = True
        # fewer hash collisions between stacks (-EEXIST, below) than the tools' default 1024 buckets
        obj.maps["stackmap"].max_entries = STACK_STORAGE
        obj.load()
        p = start(prog, 2)
        obj.maps["pids"][p.pid] = 1
        sym = Symbolizer()
        sym.remember(p.pid)
        with perf.open_events("cpu-clock", frequency=499) as events:
            events.attach(obj.programs["do_perf_event"])
            finish(p)
        keys, values = obj.maps["counts"].lookup_batch()
        stacks = obj.maps["stackmap"].stacks()
        some = obj.maps["stackmap"].stacks(ids=[int(keys["user_stack_id"][0]), -14, 2**31 - 1])
        with pytest.raises(pybpf.WrongMapTypeError, match="not a stack_trace map"):
            obj.maps["counts"].stacks()
    return keys, values, stacks, sym, p.pid, some


def test_map_stacks(kernel, profiled):
    keys, values, stacks, _, pid, some = profiled
    assert stacks.frames.shape == (len(stacks), 127) and stacks.frames.dtype == np.uint64
    assert len(stacks) >= 2 and np.all(stacks.depths > 0) and np.all(np.diff(stacks.ids.astype(int)) > 0)
    used = set(keys["user_stack_id"].tolist()) | set(keys["kern_stack_id"].tolist())
    assert {k for k in used if k >= 0} <= set(stacks.ids.tolist())
    assert len(some) == 1 and some.ids[0] == keys["user_stack_id"][0]
    assert some.get(int(some.ids[0])).tolist() == stacks.get(int(some.ids[0])).tolist()


def test_named_stacks_and_fold(kernel, profiled):
    keys, values, stacks, sym, pid, _ = profiled
    named = name_stacks(keys, values, stacks, sym)
    assert {n.pid for n in named} == {pid} and {n.comm for n in named} == {"hotcold"}
    folded = fold(named)
    assert folded.total == int(values.sum()) >= 100
    # a user stack is missed only where the kernel stored none: the key says -EEXIST. The stack map's
    # bucket is a hash of the addresses (ASLR moves them each run): a stack whose bucket another stack
    # took first is never stored, in pybpf as in the C tools, and hot's stack can be the one
    missed = sum(c for frames, c in folded if frames[1:2] == (MISSED_USER,))
    assert missed == int(values[keys["user_stack_id"] == -errno.EEXIST].sum()), folded.text()
    assert missed <= folded.total // 2, folded.text()
    hot = sum(c for frames, c in folded if "main;hot" in ";".join(frames))
    assert 0.65 <= hot / (folded.total - missed) <= 0.85, folded.text()
    assert all(frames[0] == "hotcold" for frames, _ in folded)
    delimited = fold(named, delimiter="-")
    with_kernel = [frames for frames, _ in delimited if "-" in frames]
    for frames in with_kernel:
        # user frames, then "-", then the kernel's; a sample of the exit path after main() returned
        # (exit_group tearing the process down) or one whose user stack the kernel could not take
        # has no main(), and then no hot() or cold() either
        if "main" in frames:
            assert frames.index("-") > frames.index("main"), frames
        else:
            assert not {"hot", "cold"} & set(frames), frames
    # a key whose user stack the kernel could not store: libbpf-tools' marker
    bad = keys[:1].copy()
    bad["user_stack_id"] = -17   # -EEXIST: a hash collision in the stack map
    assert name_stacks(bad, values[:1], stacks, sym)[0].user == (MISSED_USER,)


# ---- the SVG --------------------------------------------------------------------------------------

HOSTILE = '<script>alert("x")</script>&amp;'


def sample() -> Folded:
    return Folded([(["hotcold", "main", "hot"], 600), (["hotcold", "main", "hot", "leaf_of_hot"], 150),
                   (["hotcold", "main", "cold"], 250), (["hotcold", "main", HOSTILE], 5),
                   (["hotcold", "main", "tiny"], 1)])


_frames_of_dom = chromium.flame_frames_of_dom


def test_svg_in_chromium(tmp_path):
    folded = sample()
    svg = render_svg(folded, title="CPU profile of hotcold")
    assert "<script>alert" not in svg.split("]]>")[1]     # the hostile name is escaped
    page = tmp_path / "flame.svg"
    page.write_text(svg)
    # 1. the DOM after the page's script ran: one box per frame path, with the folded counts
    dom = chromium.dump_dom(page)
    want = set()
    stack = [layout(folded)]
    while stack:
        node = stack.pop()
        want.add((node.name, node.depth, node.start, node.value))
        stack.extend(node.children.values())
    assert _frames_of_dom(dom) == want
    for frames, count in folded:   # every folded line is a leaf or an inner box's share
        assert any(name == frames[-1] and d == len(frames) and v >= count for name, d, s, v in want)
    labels = re.findall(r'<text x="[\d.]+" y="[\d.]+">([^<]*)</text></g>', dom)
    assert "hot" in labels and "cold" in labels and "leaf_of_hot" in labels
    # 2. the picture: at hot's row the widest box is hot's, about 3x cold's
    height = int(re.search(r'height="(\d+)"', svg).group(1))
    png = chromium.screenshot(page, tmp_path / "flame.png", 1200, height)
    from PIL import Image
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    rects = {unescape(m.group(1)): (float(m.group(2)), int(m.group(3)), float(m.group(4)))
             for m in re.finditer(r'data-n="([^"]*)"[^>]*><title>[^<]*</title><rect x="([\d.]+)" y="(\d+)" '
                                  r'width="([\d.]+)"', svg)}
    x, y, w = rects["hot"]
    row = img[y + 2]                                  # a pixel row inside the boxes, above their text
    background = np.array([248, 248, 238])
    filled = np.any(np.abs(row - background) > 30, axis=1) & (row.sum(axis=1) < 700)
    runs, start_ = [], None
    for i, on in enumerate(filled.tolist() + [False]):
        if on and start_ is None:
            start_ = i
        elif not on and start_ is not None:
            runs.append((start_, i))
            start_ = None
    widest = max(runs, key=lambda r: r[1] - r[0])
    # (a 1-sample box right of hot is narrower than the 1 px gap, so it may touch hot's run)
    assert abs(widest[0] - x) <= 2 and abs(widest[1] - (x + w)) <= 3, (widest, (x, w), runs)
    assert len(runs) >= 3                             # cold, hot and the small ones, apart
    cold = rects["cold"]
    cold_run = max((r for r in runs if abs(r[0] - cold[0]) <= 2), key=lambda r: r[1] - r[0])
    assert (widest[1] - widest[0]) / (cold_run[1] - cold_run[0]) == pytest.approx(750 / 250, rel=0.05)


def _boxes(page: chromium.Page) -> dict[str, dict]:
    return {box["n"]: box for box in chromium.flame_boxes(page)}


_run_of = chromium.colour_run
_picture = chromium.picture


def test_svg_click_zooms_in_chromium(tmp_path):
    """A real click on a frame, in headless Chromium (DevTools input events: Chromium's hit testing,
    the SVG's own handler): the frame then spans the full width, in the DOM and on screen, its
    callees keep their share of it, its callers are drawn full width, the rest is hidden; Escape
    and "Reset Zoom" bring the whole graph back."""
    folded = sample()
    svg = render_svg(folded, title="CPU profile of hotcold")
    page_path = tmp_path / "flame.svg"
    page_path.write_text(svg)
    width = 1200
    height = int(re.search(r'height="(\d+)"', svg).group(1))
    full = width - 2 * 10 - 1            # XPAD each side, 1 px gap
    with chromium.Page(page_path, width, height) as page:
        page.wait_for("typeof zoom === 'function' && frames.length > 0")   # the SVG's onload ran
        before = _boxes(page)
        hot = before["hot"]
        assert hot["w"] == pytest.approx(750 / 1006 * (width - 20) - 1, abs=0.02)
        first, last = _run_of(_picture(page), int(hot["top"]) + 2, hot["fill"])
        assert last - first == pytest.approx(hot["w"], abs=2) and first > 200   # 3/4 of the row, on the right

        page.click(hot["cx"], hot["cy"])
        after = _boxes(page)
        # the DOM: hot spans the width; its callee keeps its share of hot (150 of 750)
        assert after["hot"]["x"] == 10 and after["hot"]["w"] == pytest.approx(full, abs=0.02)
        assert after["hot"]["cls"] == "f"
        assert after["leaf_of_hot"]["x"] == 10
        assert after["leaf_of_hot"]["w"] == pytest.approx(150 / 750 * (width - 20) - 1, abs=0.02)
        for caller in ("all", "hotcold", "main"):
            assert after[caller]["cls"] == "f parent" and after[caller]["w"] == pytest.approx(full, abs=0.02)
        hostile = next(frames[-1] for frames, _ in folded if frames[-1].startswith("<script>"))   # ; made :
        for other in ("cold", "tiny", hostile):
            assert after[other]["cls"] == "f hide", other
        assert page.evaluate("document.getElementById('title').textContent") == "CPU profile of hotcold: hot"
        assert page.evaluate("document.getElementById('unzoom').getAttribute('class')") == ""
        # the picture: hot's colour runs across the whole row (it was 3/4 of it), cold's is gone
        img = _picture(page)
        first, last = _run_of(img, int(after["hot"]["top"]) + 2, hot["fill"])
        assert first <= 11 and last - first >= full - 2, (first, last)
        leaf = _run_of(img, int(after["leaf_of_hot"]["top"]) + 2, after["leaf_of_hot"]["fill"])
        assert leaf[1] - leaf[0] == pytest.approx(150 / 750 * full, abs=3)
        assert _run_of(img, int(before["cold"]["top"]) + 2, before["cold"]["fill"]) == (0, 0)

        page.press("Escape", 27)   # back to the whole graph
        assert {n: (b["x"], b["w"], b["cls"]) for n, b in _boxes(page).items()} == \
            {n: (b["x"], b["w"], b["cls"]) for n, b in before.items()}
        assert page.evaluate("document.getElementById('title').textContent") == "CPU profile of hotcold"

        page.click(before["cold"]["cx"], before["cold"]["cy"])   # zoom into cold, then the button
        assert _boxes(page)["cold"]["w"] == pytest.approx(full, abs=0.02)
        button = page.evaluate("(function (b) { return [b.x + b.width / 2, b.y + b.height / 2]; })"
                               "(document.getElementById('unzoom').getBoundingClientRect())")
        page.click(*button)  # type: ignore[misc]
        assert {n: (b["x"], b["w"]) for n, b in _boxes(page).items()} == \
            {n: (b["x"], b["w"]) for n, b in before.items()}
        assert page.evaluate("document.getElementById('unzoom').getAttribute('class')") == "hide"


def test_svg_hover_names_the_frame_in_chromium(tmp_path):
    """The mouse over a frame (DevTools input events, Chromium's hit testing) writes that frame's
    title, its count and share of the whole, in the bottom line; off the frames it is blank again."""
    folded = sample()
    page_path = tmp_path / "flame.svg"
    page_path.write_text(render_svg(folded, title="CPU profile of hotcold"))
    height = int(re.search(r'height="(\d+)"', page_path.read_text()).group(1))
    details = "document.getElementById('details').textContent"
    with chromium.Page(page_path, 1200, height) as page:
        page.wait_for("typeof zoom === 'function' && frames.length > 0")
        boxes = _boxes(page)
        for name, count in (("hot", 750), ("cold", 250), ("leaf_of_hot", 150)):
            page.move(boxes[name]["cx"], boxes[name]["cy"])
            assert page.evaluate(details) == f"{name} ({count:,} samples, {100 * count / folded.total:.2f}%)"
        page.move(boxes["hot"]["cx"], 5)          # above the graph, on the title: no frame
        assert page.evaluate(details) == " "


def test_svg_refusals_and_empty():
    with pytest.raises(pybpf.InvalidArgumentError, match="width"):
        render_svg(sample(), width=10)
    assert "no samples" in render_svg(Folded())


def test_stacks_in_ring_buffer_records(kernel):
    """bpf_get_stack() into a record's u64 ips[32]: StackTable.from_frames decodes the rows the
    way a stack map is read, and they name hotcold's functions in the same 3:1 split."""
    p = start(hotcold_path(), 60)
    try:
        with pybpf.open(pybpf.bundled("stacks_ring")) as obj:
            obj.rodata["targ_tgid"] = p.pid
            obj.load()
            sym = Symbolizer()
            sym.remember(p.pid)
            with obj.maps["samples"].ring_buffer("stack_sample") as rb, \
                    perf.open_events("cpu-clock", frequency=499) as events:
                events.attach(obj.programs["on_sample"])
                import time
                deadline = time.monotonic() + 3
                batches = []
                while time.monotonic() < deadline:
                    time.sleep(0.2)
                    batches.append(rb.drain())
                events.disable()
                batches.append(rb.drain())
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
    batch = np.concatenate([b for b in batches if len(b)])
    ok = batch[batch["ulen"] > 0]
    assert len(ok) >= 50 and set(ok["pid"].tolist()) == {p.pid}
    table = StackTable.from_frames(ok["ips"])
    assert table.depths.tolist() == (ok["ulen"] // 8).tolist()   # ids are the row numbers, in order
    names = dict(zip(table.addresses().tolist(), sym.user(p.pid, table.addresses()).names.tolist()))
    folded = Folded()
    for row in range(len(table)):
        folded.add([names[a] for a in reversed(table.frames[row, :table.depths[row]].tolist())])
    share = folded.share("main;hot") / (folded.share("main;hot") + folded.share("main;cold"))
    assert 0.6 <= share <= 0.9, folded.text()
