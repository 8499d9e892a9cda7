"""``pybpf load`` and ``pybpf test-run``: put an object into the kernel from the shell.

``load`` opens an object, sets ``.rodata``/``.data`` variables, loads it
(a verifier rejection prints the verifier log with the failing source line and
instruction highlighted), pins and attaches, then shows the object's maps and
globals live until Ctrl-C or ``--duration``. Globals and mmapable arrays are
read through zero-copy views; other maps with batch lookups.
``test-run`` runs one program with BPF_PROG_TEST_RUN.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer
from rich.console import Group
from rich.live import Live
from rich.text import Text

import pybpf
from pybpf.errors import BpfError, NotSupportedError, VerifierError

from pybpf.cli.kernel import map_entries
from pybpf.text import visible
from pybpf.cli.render import (EXIT_ERROR, JSON_FLAG, console, ctrl_c_stops, err_console, guarded, json_wanted,
                              jsonable, print_json, short, table, usage_error)

__all__ = ["event_dtype", "load_command", "test_run_command", "snapshot", "verifier_report"]

_REFRESH_S = 0.5
_INSN = re.compile(r"^\d+: \(")
# Map types user space cannot read element by element.
_UNREADABLE = {"ringbuf", "user_ringbuf", "perf_event_array", "prog_array", "sockmap", "sockhash",
               "devmap", "devmap_hash", "cpumap", "xskmap", "queue", "stack", "bloom_filter",
               "struct_ops", "array_of_maps", "hash_of_maps", "cgroup_array", "reuseport_sockarray",
               "sk_storage", "inode_storage", "task_storage", "cgrp_storage", "arena"}


# ---- --set NAME=VALUE --------------------------------------------------------------

def _parse_value(text: str, dtype: np.dtype) -> Any:
    """A command-line value for a variable of ``dtype``: a number, JSON, or text for char arrays."""
    for parse in (lambda s: int(s, 0), float, json.loads):
        try:
            return parse(text)
        except ValueError:
            continue
    if dtype.shape and dtype.base.itemsize == 1:  # char name[N]: C-string semantics
        raw = text.encode()
        if len(raw) >= dtype.itemsize:
            raise ValueError(f"{text!r} needs {len(raw) + 1} bytes; the variable holds {dtype.itemsize}")
        return np.frombuffer(raw.ljust(dtype.itemsize, b"\0"), dtype=dtype.base)
    raise ValueError(f"cannot read {text!r} as a value (give a number, JSON, or text for a char array)")


def _assign(ctx: typer.Context, obj: pybpf.Object, assignment: str) -> None:
    """Apply one ``--set [SECTION:]NAME=VALUE`` to the object's initial data."""
    name, sep, text = assignment.partition("=")
    if not sep or not name:
        usage_error(ctx, f"--set wants NAME=VALUE, got {assignment!r}")
    section_hint, _, name = name.rpartition(":")
    sections = [g.section for g in obj.spec.globals
                if g.name == name and (not section_hint or g.section == section_hint)]
    if not sections:
        known = ", ".join(f"{g.section}:{g.name}" for g in obj.spec.globals) or "none"
        raise KeyError(f"{obj.path}: no global variable {name!r} to set (variables: {known})")
    if len(sections) > 1:
        usage_error(ctx, f"{name!r} is in several sections ({', '.join(sections)}): "
                         f"say SECTION:{name}=VALUE")
    section = obj.section(sections[0])
    section[name] = _parse_value(text, section.dtype_of(name))


# ---- verifier rejections -----------------------------------------------------------

def verifier_reason(exc: VerifierError) -> str | None:
    """The verifier's own words for the rejection: the line after the last instruction."""
    lines = exc.log.rstrip().splitlines()
    last_insn = max((i for i, line in enumerate(lines) if _INSN.match(line)), default=-1)
    return lines[last_insn + 1].strip() if 0 <= last_insn < len(lines) - 1 else None


def verifier_report(exc: VerifierError) -> Text:
    """The verifier log with the source line and the instruction it stopped at highlighted."""
    lines = exc.log.rstrip().splitlines()
    last_insn = max((i for i, line in enumerate(lines) if _INSN.match(line)), default=-1)
    last_source = max((i for i, line in enumerate(lines[: last_insn + 1]) if line.startswith("; ")),
                      default=-1)
    out = Text()
    for i, line in enumerate(lines):
        if i == last_source:
            style = "bold yellow"
        elif i == last_insn:
            style = "bold"
        elif i > last_insn >= 0 and i == last_insn + 1:
            style = "bold red"  # the verifier's reason, right after the instruction
        else:
            style = "dim" if i < last_source else ""
        marker = ">> " if style.startswith("bold") else "   "
        out.append(marker + visible(line) + "\n", style=style)  # source lines come from the object
    return out


# ---- the live table ----------------------------------------------------------------

def _internal(obj: pybpf.Object, map_name: str) -> bool:
    sections = {m.section for m in obj.spec.maps if m.internal}
    return any(map_name == s or map_name.endswith(s) for s in sections)


def _map_state(handle: pybpf.Map) -> dict[str, Any]:
    """Entries of one map and how they were read."""
    state: dict[str, Any] = {"name": handle.name, "type": handle.type, "max_entries": handle.max_entries}
    if handle.type in _UNREADABLE:
        return {**state, "read": None, "entries": None, "summary": "not readable as key/value"}
    try:
        if handle.type == "array" and "MMAPABLE" in handle.flag_names:
            view = handle.view()
            nonzero = view.reshape(len(view), -1).view(np.uint8).any(axis=1) if view.dtype.names \
                else view != 0
            used = np.flatnonzero(nonzero)
            entries = [{"key": int(k), "value": jsonable(view[k])} for k in used]
            read = "zero-copy view, 0 syscalls"
        else:
            method, keys, values = map_entries(handle)
            entries = [{"key": jsonable(k), "value": jsonable(v)} for k, v in zip(keys, values)]
            read = "batch lookup" if method == "batch" else "lookup per key"
    except (BpfError, TypeError, ValueError) as exc:
        return {**state, "read": None, "entries": None, "summary": f"unreadable: {exc}"}
    if entries and isinstance(entries[0]["key"], dict):   # struct keys: a table of their own
        return {**state, "read": read, "entries": entries,
                "summary": f"{len(entries)} present: struct keys, table below"}
    first = ", ".join(f"{short(e['key'], 20)}: {short(e['value'], 30)}" for e in entries[:4])
    more = f" (+{len(entries) - 4} more)" if len(entries) > 4 else ""
    return {**state, "read": read, "entries": entries,
            "summary": f"{len(entries)} nonzero/present: {first}{more}" if entries else "empty"}


_STRUCT_ROWS = 20


def _struct_key_table(m: dict[str, Any]) -> Any:
    """A map with struct keys as a table: one column per key field, then the value (or its
    fields); the largest values first when they are numbers; at most 20 rows."""
    entries = m["entries"]
    key_cols = list(entries[0]["key"])
    value = entries[0]["value"]
    value_cols = list(value) if isinstance(value, dict) else ["value"]

    def cells(e: dict[str, Any]) -> list[str]:
        vals = [e["value"][c] for c in value_cols] if isinstance(e["value"], dict) else [e["value"]]
        return [short(e["key"].get(c), 40) for c in key_cols] + [short(v, 40) for v in vals]
    if not isinstance(value, dict) and all(isinstance(e["value"], (int, float)) for e in entries):
        entries = sorted(entries, key=lambda e: -e["value"])
    more = len(entries) - _STRUCT_ROWS
    return table(f"map {m['name']}", key_cols + value_cols, (cells(e) for e in entries[:_STRUCT_ROWS]),
                 caption=f"(+{more} more)" if more > 0 else None)


def snapshot(obj: pybpf.Object) -> dict[str, Any]:
    """Globals (through section views) and maps of a loaded object, JSON-able."""
    globals_: list[dict[str, Any]] = []
    for section_name in dict.fromkeys(g.section for g in obj.spec.globals):
        section = obj.section(section_name)
        for name in section.keys():
            try:
                value: Any = jsonable(section[name])
            except (BpfError, TypeError, ValueError) as exc:  # e.g. no mmap: say so, keep going
                value = f"unreadable: {exc}"
            globals_.append({"section": section_name, "name": name, "value": value})
    maps = [_map_state(m) for name, m in obj.maps.items() if not _internal(obj, name)]
    return {"object": obj.name, "globals": globals_, "maps": maps}


def _render(snap: dict[str, Any], elapsed: float, links: int) -> Group:
    globs = table("globals (zero-copy views: 0 syscalls)", ["section", "name", "value"],
                  [(g["section"], g["name"], short(g["value"], 80)) for g in snap["globals"]])
    maps = table("maps", ["name", "type", "max_entries", "read with", "contents"],
                 [(m["name"], m["type"], m["max_entries"], m["read"], m["summary"]) for m in snap["maps"]])
    keyed = [_struct_key_table(m) for m in snap["maps"] if m["entries"] and isinstance(m["entries"][0]["key"], dict)]
    return Group(f"[bold]{snap['object']}[/] loaded, {links} link(s) attached, {elapsed:.1f} s", globs, maps,
                 *keyed)


def _pin_name(name: str) -> str:
    return name.replace(".", "_")  # bpffs refuses names with a dot (EPERM): "syscount.bss" -> "syscount_bss"


def _pin(obj: pybpf.Object, links: list[pybpf.Link], directory: Path) -> list[str]:
    from pybpf.upgrade.manifest import make_directory

    directory = Path(make_directory(str(directory)))  # made as needed, like bpftool, but 0700
    targets: list[tuple[Any, str]] = [(handle, name) for name, handle in obj.maps.items()]
    targets += [(program, name) for name, program in obj.programs.items() if program.autoload]
    # Link descriptions start with the program's name ("count_syscalls -> ...").
    targets += [(link, f"{link.description.split(' ', 1)[0]}_link") for link in links]
    pinned = []
    for item, name in targets:
        path = str(directory / _pin_name(name))
        item.pin(path)
        pinned.append(path)
    return pinned


def _deploy(obj: pybpf.Object) -> pybpf.Deployment | None:
    try:
        return pybpf.deploy(obj)
    except NotSupportedError as exc:  # e.g. a tp_btf program: pinned as before, but not upgradable
        print(f"warning: {exc}; pinning without a manifest (`pybpf upgrade` cannot replace this version)",
              file=sys.stderr)
        return None


def _map_setting(ctx: typer.Context, obj: pybpf.Object, option: str, attr: str, setting: str) -> None:
    """``--max-entries``/``--value-size`` ``MAP=N``: set the map attribute before load."""
    name, sep, text = setting.partition("=")
    try:
        count = int(text, 0)
    except ValueError:
        count = -1
    if not sep or not name or count < 0:
        usage_error(ctx, f"{option} wants MAP=N (N a number), got {setting!r}")
    if name not in obj.maps:
        user = [n for n in obj.maps if "." not in n]
        usage_error(ctx, f"{option}: no map {name!r} in {obj.name}; maps: {', '.join(user) or 'none'}")
    setattr(obj.maps[name], attr, count)


@guarded
def load_command(
    ctx: typer.Context,
    obj_path: Path = typer.Argument(..., metavar="OBJ", help="a BPF object (.bpf.o)"),
    assignments: list[str] = typer.Option([], "--set", metavar="[SECTION:]NAME=VALUE",
                                          help="set a global variable before load (repeatable)"),
    pin: Optional[Path] = typer.Option(None, "--pin", metavar="DIR",
                                       help="pin maps, programs, links and a manifest under DIR (a bpffs), "
                                            "upgradable with `pybpf upgrade DIR NEW.o`"),
    no_attach: bool = typer.Option(False, "--no-attach", help="load only; do not auto-attach"),
    disable: list[str] = typer.Option([], "--disable", metavar="PROG",
                                      help="do not load this program (repeatable)"),
    max_entries: list[str] = typer.Option([], "--max-entries", metavar="MAP=N",
                                          help="set a map's max_entries before load (repeatable)"),
    value_size: list[str] = typer.Option([], "--value-size", metavar="MAP=N",
                                         help="set a map's value size in bytes before load, as tools do "
                                              "for a stack trace map (depth * 8; repeatable)"),
    events: Optional[str] = typer.Option(None, "--events", metavar="MAP[:STRUCT]",
                                         help="stream the records of this ring buffer, typed from BTF "
                                              "(STRUCT: the record's struct; default: found in BTF)"),
    duration: Optional[float] = typer.Option(None, "--duration", "-d", min=0.0,
                                             help="seconds to watch (default: until Ctrl-C)"),
    as_json: bool = JSON_FLAG(help="print the final snapshot as JSON (with --events: one JSON line per event)"),
) -> None:
    """Load (and attach) a BPF object, then watch its maps and globals live (or stream a ring buffer)."""
    as_json = json_wanted(as_json)
    out = console()
    with pybpf.open(obj_path) as obj:
        for assignment in assignments:
            _assign(ctx, obj, assignment)
        for option, attr, settings in (("--max-entries", "max_entries", max_entries),
                                       ("--value-size", "value_size", value_size)):
            for setting in settings:
                _map_setting(ctx, obj, option, attr, setting)
        for name in disable:
            obj.programs[name].autoload = False
        stream = _event_source(ctx, obj, events) if events is not None else None
        try:
            obj.load()
        except VerifierError as exc:
            err = err_console()
            err.print(verifier_report(exc))
            reason = verifier_reason(exc)
            err.print(Text("error: ", style="bold red") + Text(
                f"{obj_path}: the verifier rejected program {exc.program!r}"
                + (f" at `{exc.source_line}`" if exc.source_line else "") + (f": {reason}" if reason else "")),
                soft_wrap=True)
            raise typer.Exit(EXIT_ERROR) from None
        # --pin: attach upgradably (pybpf.deploy) so that `pybpf upgrade DIR NEW.o` can take over later
        deployment = _deploy(obj) if pin is not None and not no_attach else None
        links = deployment.links if deployment is not None else [] if no_attach else obj.attach()
        if deployment is not None and pin is not None:
            try:
                from pybpf.upgrade.manifest import make_directory

                # made as needed, like bpftool, but 0700 whatever the umask; refused if another user's
                pinned = deployment.pin(make_directory(str(pin)))
            except BaseException:
                deployment.close()
                raise
        else:
            pinned = _pin(obj, links, pin) if pin is not None else []
        for path in pinned:
            print(f"pinned {path}", file=sys.stderr)
        print(f"loaded {obj.name}: {len(links)} link(s); " +
              (f"watching for {duration:g} s" if duration is not None else "Ctrl-C stops"),
              file=sys.stderr, flush=True)
        ctrl_c_stops()
        start = time.monotonic()
        if stream is not None:
            _stream_events(obj, *stream, duration, as_json)
            return
        try:
            if out.is_terminal and not as_json:
                with Live(console=out, auto_refresh=False) as live:
                    while duration is None or time.monotonic() - start < duration:
                        live.update(_render(snapshot(obj), time.monotonic() - start, len(links)),
                                    refresh=True)
                        time.sleep(_REFRESH_S)
            else:
                while duration is None or time.monotonic() - start < duration:
                    time.sleep(_REFRESH_S if duration is None
                               else min(_REFRESH_S, max(duration - (time.monotonic() - start), 0.0)))
        except KeyboardInterrupt:
            pass
        snap = snapshot(obj)
        if deployment is not None:
            deployment.close()  # this process's handles; the pinned version keeps running
        if as_json:
            print_json({**snap, "links": len(links), "pinned": pinned})
        elif not out.is_terminal:
            out.print(_render(snap, time.monotonic() - start, len(links)))


# ---- --events: a ring buffer's records ------------------------------------------------

def event_dtype(obj: pybpf.Object, map_name: str, struct: str | None = None) -> np.dtype | None:
    """The record type of ring buffer ``map_name`` from the object's BTF, or None (raw bytes).

    A ring buffer map has no value type, so the record struct is ``struct`` when given, else the
    struct a global pointer names (``struct event *unused;``, which keeps a type used only inside a
    program in BTF): the only one, or the one named like the map or ``event``.
    """
    btf = obj.btf
    if btf is None:
        return None
    if struct is not None:
        try:
            return btf.dtype(btf.find(struct.removeprefix("struct "), "struct"))
        except KeyError:
            raise KeyError(f"{obj.name} has no struct {struct!r} in its BTF") from None
    candidates: dict[str, int] = {}
    for section in btf.datasecs():
        for var in btf.datasec(section):
            target = btf[btf.resolve(var.type_id)]
            if target.kind != "ptr" or not target.type:
                continue
            pointee = btf[btf.resolve(target.type)]
            if pointee.kind == "struct" and pointee.name:
                candidates[pointee.name] = pointee.id
    if not candidates:
        return None
    if len(candidates) == 1:
        return btf.dtype(next(iter(candidates.values())))
    stem = map_name.rstrip("s")
    for name, tid in candidates.items():
        if name in (stem, f"{stem}_event", "event") or name.startswith(stem):
            return btf.dtype(tid)
    return None


def _event_source(ctx: typer.Context, obj: pybpf.Object, spec: str) -> tuple[str, np.dtype | None]:
    name, _, struct = spec.partition(":")
    handle = obj.maps[name]
    if handle.type != "ringbuf":
        usage_error(ctx, f"--events wants a ring buffer map; {name!r} is a {handle.type} map")
    return name, event_dtype(obj, name, struct or None)


def _record_text(record: Any) -> dict[str, Any]:
    if isinstance(record, (bytes, bytearray)):
        return {"size": len(record), "data": bytes(record).hex()}
    return jsonable(record)  # char fields end at their first NUL (ring records are not zeroed)


def _widths(dtype: np.dtype | None) -> dict[str, int]:
    """Column widths for ``--events`` lines, from the record type (fixed, so lines align)."""
    if dtype is None or not dtype.names:
        return {"size": 6, "data": 0}
    widths = {}
    for name in dtype.names:
        field = dtype.fields[name][0]  # type: ignore[index]
        if field.kind in "iu" and not field.shape:
            need = len(str(np.iinfo(field).max if field.kind == "u" else np.iinfo(field).min))
        elif field.kind == "S" or (field.shape and field.base.kind in "iu" and field.base.itemsize == 1):
            need = min(field.itemsize, 32)
        else:
            need = 16
        widths[name] = max(len(name), min(need, 20))
    widths[dtype.names[-1]] = 0   # the last column is not padded
    return widths


def _event_line(values: list[str], widths: list[int]) -> str:
    return " ".join(v.ljust(w) if w else v for v, w in zip(values, widths)).rstrip()


def _stream_events(obj: pybpf.Object, map_name: str, dtype: np.dtype | None, duration: float | None,
                   as_json: bool) -> None:
    """Records as JSON lines, or as one text line per event under one header (a table that
    grows; no box per batch), columns as wide as their type needs."""
    count = 0
    start = time.monotonic()
    cols = _widths(dtype)
    names, widths = list(cols), list(cols.values())
    with pybpf.RingBuffer(obj.maps[map_name], dtype=dtype) as rb:
        try:
            if not as_json:
                sys.stdout.write(visible(_event_line(names, widths)) + "\n")
                sys.stdout.flush()
            while duration is None or (left := duration - (time.monotonic() - start)) > 0:
                batch = rb.read(_REFRESH_S if duration is None else min(_REFRESH_S, left))
                if not len(batch):
                    continue
                records = [_record_text(r) for r in batch]
                count += len(records)
                if as_json:
                    sys.stdout.write("".join(json.dumps(r) + "\n" for r in records))
                else:
                    sys.stdout.write("".join(visible(_event_line([short(r.get(c), 60) for c in names], widths))
                                             + "\n" for r in records))
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass
        except BrokenPipeError:  # `pybpf load ... --events MAP | head`: the reader has gone
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stdout for the rest of the process
    print(f"{count} event(s) from ring buffer {map_name}", file=sys.stderr)


# ---- test-run ----------------------------------------------------------------------

def _input(ctx: typer.Context, data: str | None) -> bytes:
    if data is None:
        return b""
    if data.startswith("@"):
        with open(data[1:], "rb") as f:
            return f.read()
    cleaned = "".join(data.split()).removeprefix("0x")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        usage_error(ctx, f"--data wants hex bytes or @FILE, got {data!r}")


@guarded
def test_run_command(
    ctx: typer.Context,
    obj_path: Path = typer.Argument(..., metavar="OBJ", help="a BPF object (.bpf.o)"),
    program: str = typer.Argument(..., metavar="PROG", help="program name"),
    data: Optional[str] = typer.Option(None, "--data", metavar="HEX|@FILE", help="packet/input bytes"),
    repeat: int = typer.Option(1, "--repeat", "-r", min=1, help="runs (duration is the mean)"),
    as_json: bool = JSON_FLAG(help="print JSON"),
) -> None:
    """Run one program with BPF_PROG_TEST_RUN and show its return value and output."""
    data_in = _input(ctx, data)
    as_json = json_wanted(as_json)
    with pybpf.open(obj_path) as obj:
        target = obj.programs[program]
        for other in obj.programs.values():
            if other is not target:
                other.autoload = False  # only the program under test has to load
        try:
            obj.load()
        except VerifierError as exc:
            err_console().print(verifier_report(exc))
            raise
        prog_type = target.type
        result = target.test_run(data_in=data_in, repeat=repeat)
    doc = {"program": program, "type": prog_type, "repeat": repeat,
           "retval": result.retval, "duration_ns": result.duration_ns, "data_in": data_in,
           "data_out": result.data_out}
    if as_json:
        print_json(doc)
        return
    rows = [("retval", result.retval), ("duration", f"{result.duration_ns} ns (mean of {repeat})"),
            ("data in", f"{len(data_in)} B {data_in[:64].hex()}"),
            ("data out", f"{len(result.data_out)} B {result.data_out[:64].hex()}")]
    console().print(table(f"test run of {program}", ["", ""], rows))
