"""``pybpf prog``/``map`` ``list``/``show``: what the kernel holds, as plain text or JSON.

Owns the listing (every id read with ``BPF_OBJ_GET_INFO_BY_FD`` through
:mod:`pybpf.kernel.info`), the selection the way bpftool takes it (``id ID``, ``name
NAME``, ``tag TAG``, ``pinned PATH``, a bare id), its JSON documents and its text: a title
line, then aligned columns (a list) or ``field value`` lines (one program or map by id or
pin). No typer, rich or numpy: the ``pybpf`` entry point answers these command lines here
(:func:`run`) when they are plain, so a listing costs the interpreter and the binding, as
bpftool costs its own start. Help, ``--debug``, a reference it cannot read and any other
option go to the typer commands of :mod:`pybpf.cli.kernel`, which print through the same
functions.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pybpf.cli.jsonout import print_json, short
from pybpf.errors import BpfError
from pybpf.text import visible

if TYPE_CHECKING:  # the binding loads when the kernel is asked, not when a command line is read
    from pybpf.kernel import info

__all__ = ["BadReference", "PROG_KINDS", "MAP_KINDS", "map_json", "maps", "prog_json", "programs", "reference",
           "run", "select_maps", "select_programs", "show", "text_table"]

T = TypeVar("T")

PROG_KINDS = ("id", "name", "tag", "pinned")
MAP_KINDS = ("id", "name", "pinned")
_JSON_FLAGS = ("-j", "--json")


class BadReference(ValueError):
    """Words that name no program or map the way bpftool takes them (a usage error)."""


def _by_id(open_fd: Callable[[int], int], read: Callable[[int], T], item_id: int) -> T:
    fd = open_fd(item_id)
    try:
        return read(fd)
    finally:
        os.close(fd)


def _all(ids: Iterator[int], open_fd: Callable[[int], int], read: Callable[[int], T]) -> list[T]:
    found = []
    for item_id in ids:
        try:
            found.append(_by_id(open_fd, read, item_id))
        except BpfError as exc:
            if exc.errno != errno.ENOENT:  # ENOENT: unloaded between listing and opening
                raise
    return found


def programs() -> list[info.ProgramInfo]:
    """Every program the kernel holds, by id."""
    from pybpf.kernel import info

    return _all(info.program_ids(), info.open_prog_by_id, info.prog_info)


def maps() -> list[info.MapInfo]:
    """Every map the kernel holds, by id."""
    from pybpf.kernel import info

    return _all(info.map_ids(), info.open_map_by_id, info.map_info)


# ---- selecting programs and maps the way bpftool does -------------------------------------

def reference(words: Sequence[str], kinds: tuple[str, ...], what: str) -> tuple[str, str] | None:
    """``[]`` (all), ``[ID]``, or ``[KIND, VALUE]`` as bpftool takes them (``id 5``, ``name hist``);
    :class:`BadReference` saying what is expected otherwise."""
    if not words:
        return None
    if len(words) == 1 and words[0].isdigit():
        return "id", words[0]
    if len(words) == 2 and words[0] in kinds:
        kind, value = words
        if kind == "id" and not (value.isdigit() and int(value) > 0):
            raise BadReference(f"{what} id must be a positive number, got {value!r}")
        return kind, value
    raise BadReference(f"give a {what} as {' | '.join(f'{k} {k.upper()}' for k in kinds)}, or a bare id; "
                       f"got {' '.join(words)!r}")


def _name_matches(kernel_name: str, wanted: str) -> bool:
    # the kernel keeps 15 characters of a name (BPF_OBJ_NAME_LEN)
    return kernel_name == wanted or (len(kernel_name) == 15 and wanted.startswith(kernel_name))


def select_programs(ref: tuple[str, str] | None) -> list[info.ProgramInfo]:
    """The programs ``ref`` (from :func:`reference`) names; all of them for None."""
    from pybpf.kernel import info

    if ref is None:
        return programs()
    kind, value = ref
    if kind == "id":
        return [_by_id(info.open_prog_by_id, info.prog_info, int(value))]
    if kind == "pinned":
        return [_by_id(lambda _p: info.open_pinned(value, "program"), info.prog_info, 0)]
    found = [p for p in programs() if (_name_matches(p.name, value) if kind == "name" else p.tag == value.lower())]
    if not found:
        raise KeyError(f"no program with {kind} {value!r} is loaded")
    return found


def select_maps(ref: tuple[str, str] | None) -> list[info.MapInfo]:
    """The maps ``ref`` (from :func:`reference`) names; all of them for None."""
    from pybpf.kernel import info

    if ref is None:
        return maps()
    kind, value = ref
    if kind == "id":
        return [_by_id(info.open_map_by_id, info.map_info, int(value))]
    if kind == "pinned":
        return [_by_id(lambda _p: info.open_pinned(value, "map"), info.map_info, 0)]
    found = [m for m in maps() if _name_matches(m.name, value)]
    if not found:
        raise KeyError(f"no map named {value!r} in the kernel")
    return found


# ---- JSON and text ----------------------------------------------------------------------

def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))  # local time, as bpftool


def prog_json(p: info.ProgramInfo) -> dict[str, Any]:
    """A program as ``prog show -j`` prints it."""
    return {**dataclasses.asdict(p), "map_ids": list(p.map_ids), "loaded_at_iso": _when(p.loaded_at)}


def map_json(m: info.MapInfo) -> dict[str, Any]:
    """A map as ``map show -j`` prints it."""
    return {**dataclasses.asdict(m), "flag_names": m.flag_names}


def _stats(p: info.ProgramInfo) -> str | None:
    if not p.run_cnt:
        return None  # stats off (BPF_ENABLE_STATS) or never run
    return f"{p.run_cnt:,} runs, {p.run_time_ns / p.run_cnt:,.0f} ns/run"


_PROG_COLUMNS = ("id", "type", "name", "tag", "loaded at", "uid", "xlated B", "jited B", "memlock B", "maps",
                 "run stats")
_MAP_COLUMNS = ("id", "type", "name", "key B", "value B", "max_entries", "flags", "memlock B", "btf id")


def _prog_row(p: info.ProgramInfo) -> tuple[Any, ...]:
    return (p.id, p.type, p.name, p.tag, _when(p.loaded_at), p.uid, p.xlated_len, p.jited_len, p.memlock,
            list(p.map_ids), _stats(p))


def _map_row(m: info.MapInfo) -> tuple[Any, ...]:
    return (m.id, m.type, m.name, m.key_size, m.value_size, m.max_entries, m.flag_names, m.memlock,
            m.btf_id or None)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return visible(",".join(str(v) for v in value)) or "-"
    return visible(str(value))


def text_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """``title``, then a header and one line per row in columns two spaces apart (no box,
    no colour: greppable, and the same in a pipe as on a terminal)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(name)] + [len(row[i]) for row in cells]) for i, name in enumerate(columns)]
    lines = [visible(title)]
    for row in [list(columns), *cells]:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    return "\n".join(lines) + "\n"


def _fields(title: str, doc: dict[str, Any]) -> str:
    width = max(len(k) for k in doc)
    return visible(title) + "\n" + "".join(f"{k:<{width}}  {_cell(short(v, 100))}\n" for k, v in doc.items())


def show(noun: str, words: Sequence[str] | None, as_json: bool) -> None:
    """``pybpf prog|map show WORDS`` (``words`` None: ``list``) on stdout, as JSON or text.

    JSON: one object for ``id``/``pinned``/a bare id, a list otherwise. :class:`BadReference`
    for words that name nothing, before anything is read."""
    is_prog = noun == "prog"
    ref = reference(words or [], PROG_KINDS if is_prog else MAP_KINDS, "program" if is_prog else "map")
    found: list[Any] = select_programs(ref) if is_prog else select_maps(ref)
    to_json = prog_json if is_prog else map_json
    single = ref is not None and ref[0] in ("id", "pinned")
    if as_json:
        print_json(to_json(found[0]) if single else [to_json(x) for x in found])
    elif single:
        sys.stdout.write(_fields(f"{'program' if is_prog else 'map'} {found[0].id} {found[0].name}",
                                 to_json(found[0])))
    else:
        what = "programs" if is_prog else "maps"
        sys.stdout.write(text_table(f"{len(found)} {what}", _PROG_COLUMNS if is_prog else _MAP_COLUMNS,
                                    [(_prog_row if is_prog else _map_row)(x) for x in found]))
    sys.stdout.flush()


def run(argv: Sequence[str]) -> bool:
    """Answer ``[-j] prog|map list|show [REF...] [-j]`` here; False leaves ``argv`` to typer
    (help, ``--debug``, any other option or word, a reference that names nothing)."""
    i, as_json = 0, False
    while i < len(argv) and argv[i] in _JSON_FLAGS:
        as_json, i = True, i + 1
    if len(argv) < i + 2 or argv[i] not in ("prog", "map") or argv[i + 1] not in ("list", "show"):
        return False
    noun, verb = argv[i], argv[i + 1]
    words: list[str] = []
    for word in argv[i + 2:]:
        if word in _JSON_FLAGS:
            as_json = True
        elif word.startswith("-"):
            return False
        else:
            words.append(word)
    if verb == "list" and words:
        return False
    try:
        reference(words, PROG_KINDS if noun == "prog" else MAP_KINDS, noun)
    except BadReference:
        return False  # typer prints the usage line and the reason
    try:
        show(noun, words if verb == "show" else None, as_json)
    except BaseException as exc:  # noqa: BLE001 - reported as any pybpf command reports it
        if isinstance(exc, SystemExit):
            raise
        from pybpf.cli.direct import report

        report(exc)
    return True
