"""Deployments as objects an operator can find, look at and remove (``pybpf deployment``).

A deployment is a directory on a bpffs holding a manifest (``pybpf_manifest``):
``find`` walks every bpffs the machine has mounted for them; ``show`` decodes
one (maps with their entry counts, programs with their run counts when BPF
stats are on, counted by the dispatcher for a program it runs by a tail call,
attachments, an interrupted upgrade); ``remove`` detaches it
(unpins the links first, so events stop before the maps go), unpins the
rest and removes the directory, under the directory's lock.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from pybpf.errors import BpfError, ManifestError
from pybpf.kernel.info import open_pinned, open_prog_by_id, prog_info
from pybpf.maps.map import Map
from pybpf.upgrade.attach import from_manifest
from pybpf.upgrade.attach.base import kind_of
from pybpf.upgrade.manifest import LOCK_TIMEOUT, MANIFEST, check_directory, locked, pin_path, read_manifest

__all__ = ["bpffs_mounts", "find", "remove", "show"]


def bpffs_mounts() -> list[str]:
    """Every mount point of a bpffs, from /proc/self/mountinfo."""
    found: list[str] = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "bpf":
                    found.append(left.split(" ")[4].replace("\\040", " "))
    except OSError:
        pass
    return found


def _walk(root: str, depth: int = 8) -> Iterator[str]:
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    if any(e.name == MANIFEST for e in entries):
        yield root
    if depth:
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                yield from _walk(e.path, depth - 1)


def summary(directory: str) -> dict[str, Any]:
    """One line's worth of a deployment: object, version, when it was pinned, hooks, state."""
    try:
        doc = read_manifest(directory)
    except (ManifestError, BpfError, OSError) as exc:
        return {"directory": directory, "object": None, "version": None, "pinned_at": None, "hooks": [],
                "state": f"unreadable: {exc}"}
    assert doc is not None
    return {"directory": directory, "object": doc["object"], "tool": doc.get("tool", doc["object"]),
            "version": doc.get("version", 1), "pinned_at": doc.get("pinned_at"), "source": doc.get("source"),
            "hooks": [f"{a['hook']} ({a['mode']})" for a in doc["attachments"]],
            "state": "upgrade interrupted (the next upgrade finishes it)" if doc.get("pending") else "running"}


def find(roots: list[str] | None = None) -> list[dict[str, Any]]:
    """Every deployment under ``roots`` (default: every bpffs mounted), found by its manifest."""
    seen: set[str] = set()
    out = []
    for root in roots if roots is not None else bpffs_mounts():
        for directory in _walk(root):
            real = os.path.realpath(directory)
            if real not in seen:
                seen.add(real)
                out.append(summary(directory))
    return sorted(out, key=lambda d: d["directory"])


def show(directory: str) -> dict[str, Any]:
    """The manifest decoded, with live facts: entries per map, run counts per program."""
    directory = os.path.abspath(directory)
    check_directory(directory)
    doc = read_manifest(directory)
    if doc is None:
        raise BpfError(f"{directory} holds no pybpf deployment (no {MANIFEST} pin)")
    from pybpf.upgrade.core import _count

    maps = []
    for entry in doc["maps"]:
        item: dict[str, Any] = {"name": entry["name"], "section": entry.get("section"), "pin": entry["pin"]}
        try:
            with Map.from_pin(pin_path(directory, entry["pin"])) as m:
                item.update(id=m.id, type=m.type, max_entries=m.max_entries, key_size=m.key_size,
                            value_size=m.value_size, entries=_count(m))
        except BpfError as exc:
            item["error"] = str(exc)
        maps.append(item)
    programs = []
    for entry in doc["programs"]:
        item = {"name": entry["name"], "pin": entry["pin"]}
        try:
            fd = open_pinned(pin_path(directory, entry["pin"]), "program")
            try:
                info = prog_info(fd)
            finally:
                os.close(fd)
            item.update(id=info.id, type=info.type, tag=info.tag, run_cnt=info.run_cnt,
                        run_time_ns=info.run_time_ns, loaded_at=info.loaded_at)
        except BpfError as exc:
            item["error"] = str(exc)
        programs.append(item)
    attachments = []
    for entry in doc["attachments"]:
        item = {k: entry[k] for k in ("program", "type", "mode", "hook")}
        try:
            a = from_manifest(directory, entry)
            try:
                item["program_id"] = a.current_program_id()
                link = a.current_link_info()
                item["link_id"] = link.id
                fd = open_prog_by_id(link.prog_id)
                try:
                    on_hook = prog_info(fd)
                finally:
                    os.close(fd)
                item["hook_program"] = {"id": on_hook.id, "name": on_hook.name, "run_cnt": on_hook.run_cnt,
                                        "run_time_ns": on_hook.run_time_ns}
            finally:
                a.close()
        except BpfError as exc:
            item["error"] = str(exc)
        attachments.append(item)
    # The kernel's stats count a program run from its hook, not one reached by a tail call: a program
    # behind a dispatcher always shows 0. Its runs are the dispatcher's (each one tail-calls it), and
    # the dispatcher's run time includes the program's.
    for shown in attachments:
        hook = shown.get("hook_program")
        if shown["mode"] != "dispatch" or hook is None:
            continue
        for item in programs:
            if item["name"] == shown["program"] and item.get("id") == shown.get("program_id"):
                item.update(run_cnt=hook["run_cnt"], run_time_ns=hook["run_time_ns"],
                            counted_by=f"dispatcher {hook['name']} (id {hook['id']}): tail calls are not counted")
    return {**summary(directory), "maps": maps, "programs": programs, "attachments": attachments,
            "pending": doc.get("pending") is not None}


def remove(directory: str, *, lock_timeout: float = LOCK_TIMEOUT) -> list[str]:
    """Detach and unpin a deployment, then remove its directory; returns the pins removed.

    The links go first (the hooks stop running the tool), then programs, maps,
    anything an interrupted upgrade left, and the manifest last: a removal
    killed half way is finished by running it again."""
    directory = os.path.abspath(directory)
    check_directory(directory)
    removed: list[str] = []
    with locked(directory, lock_timeout):
        doc = read_manifest(directory)
        if doc is None:
            raise BpfError(f"{directory} holds no pybpf deployment (no {MANIFEST} pin): nothing to remove")
        docs = [doc] + ([doc["pending"]["next"]] if doc.get("pending") else [])
        links, rest = [], []
        for d in docs:
            for a in d["attachments"]:
                kind = kind_of(a)
                names = kind.pins(a) if kind is not None else [a[k] for k in ("link", "slot") if a.get(k)]
                links += [n for n in names if n == a.get("link")]
                rest += [n for n in names if n != a.get("link")]
            rest += [p["pin"] for p in d["programs"]] + [m["pin"] for m in d["maps"]]
        pending = doc.get("pending") or {}
        rest += list(pending.get("temp", {}).values()) + [m["snapshot"] for m in pending.get("merges", [])]
        for name in [*dict.fromkeys(links), *dict.fromkeys(rest)]:
            path = pin_path(directory, name)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed.append(path)
        os.unlink(os.path.join(directory, MANIFEST))
        removed.append(os.path.join(directory, MANIFEST))
    try:
        os.rmdir(directory)
    except OSError as exc:
        left = ", ".join(sorted(os.listdir(directory)))
        raise BpfError(f"removed the deployment's pins, but {directory} still holds {left}: not removed") from exc
    return removed
