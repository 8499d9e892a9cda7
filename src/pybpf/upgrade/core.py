"""Running versions and the upgrade from one to the next.

``deploy(obj)`` attaches a loaded object so that it can be upgraded later
(``attach``: a bpf_link where the kernel can update it, a dispatcher slot
elsewhere) and returns a ``Deployment``. ``Deployment.pin(DIR)`` pins its
maps, programs and attachments on a bpffs together with a manifest
(``manifest``), so that DIR describes the running version;
``Deployment.from_pins(DIR)`` reopens it in another process, after checking
that the pinned maps are the ones the running programs use.

``upgrade(old, new)`` replaces the running version (a Deployment or a DIR):

1. plan every map (``migrate.plan_map``: reuse, migrate or a typed error) and
   check that every attached program has a counterpart in the new object;
2. load the new object (reused maps are taken over with ``bpf_map__reuse_fd``);
   a verifier rejection ends the upgrade here; load the merge program of
   every migrated map (``merge.Merger``);
3. for a pinned deployment, write the intent into the manifest (``pending``)
   and pin the new maps and programs under temporary names;
4. copy the state of migrated maps and globals into the new maps, keeping what
   was copied in a snapshot map;
5. switch every attachment (one BPF_LINK_UPDATE or one slot update each), with
   the old program as the expected one; if one switch fails, the ones already
   made are switched back;
6. wait until no old invocation can still run, and merge what the old version
   wrote since the copy into the new maps (exactly: ``merge``);
7. rename the temporary pins into place and write the new manifest.

Until step 5 nothing the old version uses has changed: on any failure it
keeps running as it was. A kill at any point leaves DIR saying what runs: the
next upgrade (or ``recover``) rolls an interrupted one back (nothing was
switched) or forward (switch the rest, merge again, rename).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pybpf.errors import BpfError, ClosedError, MapMismatchError
from pybpf.logs import logger
from pybpf.kernel.info import open_pinned, prog_info
from pybpf.link.base import Link
from pybpf.maps.map import Map
from pybpf.object import Object, open as open_object
from pybpf.program import Program
from pybpf.upgrade.attach import Attachment, Hook, attach, from_manifest
from pybpf.upgrade.attach.base import kind_for, kind_of
from pybpf.upgrade.manifest import (FORMAT, MANIFEST, LOCK_TIMEOUT, check_directory, locked, pin_path,
                                    read_manifest, write_manifest)
from pybpf.upgrade.merge import Merger, crash_point, wait_for_programs
from pybpf.upgrade.migrate import MapPlan, MigrateOption, convert, converter, copy_entries, copy_section, plan_map

__all__ = ["MANIFEST", "Deployment", "UpgradeReport", "deploy", "pin_name", "plan", "recover", "upgrade"]

_log = logger("pybpf")
_CARRIED_SECTIONS = (".bss", ".data")
LastValue = Mapping[str, "list[str] | tuple[str, ...] | set[str]"]


def pin_name(name: str) -> str:
    """bpffs refuses '.' in names (EPERM): ``counters.bss`` is pinned as ``counters_bss``."""
    return name.replace(".", "_")


def _temp(name: str) -> str:
    return f"{name}__next"


def _snap(name: str) -> str:
    return f"{name}__snap"


@dataclass
class UpgradeReport:
    """What an upgrade did and how long each step took (seconds)."""

    maps: list[dict[str, Any]] = field(default_factory=list)
    switched: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    load_s: float = 0.0                 # open state -> loaded and verified
    migrate_s: float = 0.0              # copying migrated maps and globals
    switch_s: float = 0.0               # every attachment switched
    verified_to_switched_s: float = 0.0
    window_s: float = 0.0               # first copy -> last switch: what the old version writes then is merged
    wait_s: float = 0.0                 # waiting for old invocations to finish
    merge_s: float = 0.0                # the exact merge of every migrated map

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON types."""
        return {"maps": self.maps, "switched": self.switched, "warnings": self.warnings, "load_s": self.load_s,
                "migrate_s": self.migrate_s, "switch_s": self.switch_s,
                "verified_to_switched_s": self.verified_to_switched_s, "window_s": self.window_s,
                "wait_s": self.wait_s, "merge_s": self.merge_s}


def _sections_of(obj: Object) -> dict[str, Map]:
    found: dict[str, Map] = {}
    for spec in obj.spec.maps:
        if spec.internal and spec.section not in found and not spec.section.startswith(".kconfig"):
            internal = obj._internal_map(spec.section)
            if internal is not None:
                found[spec.section] = internal
    return found


class Deployment:
    """A version that is running: its maps, its global sections and its attachments.

    In-process deployments own their Object; a deployment reopened from pins
    (``from_pins``) has no Object, only the pinned maps and attachments."""

    def __init__(self, obj: Object | None, attachments: list[Attachment], *, maps: Mapping[str, Map] | None = None,
                 sections: Mapping[str, Map] | None = None, directory: str | None = None,
                 manifest: dict[str, Any] | None = None) -> None:
        self.object = obj
        self.attachments = attachments
        if obj is not None:
            self.sections: dict[str, Map] = _sections_of(obj)
            internal = {id(m) for m in self.sections.values()}
            self.maps: dict[str, Map] = {n: m for n, m in obj.maps.items() if id(m) not in internal}
        else:
            self.maps, self.sections = dict(maps or {}), dict(sections or {})
        self.directory = directory
        self.manifest = manifest or {}
        self.report: UpgradeReport | None = None
        self._closed = False

    def __repr__(self) -> str:
        name = self.object.name if self.object is not None else self.manifest.get("object", "?")
        where = f" pinned in {self.directory}" if self.directory else ""
        state = "closed" if self._closed else f"{len(self.attachments)} attachment(s)"
        return f"<Deployment {name} {state}{where}>"

    @property
    def name(self) -> str:
        """The object's name (the tool)."""
        return self.object.name if self.object is not None else str(self.manifest.get("object", "?"))

    @property
    def closed(self) -> bool:
        """Whether close() ran (or an upgrade replaced this deployment)."""
        return self._closed

    def _check(self) -> None:
        if self._closed:
            raise ClosedError("deployment (closed, or replaced by an upgrade)")

    @property
    def links(self) -> list[Link]:
        """The links on the hooks (a dispatcher's link for a dispatch attachment)."""
        return [a.link for a in self.attachments]

    def all_maps(self) -> dict[str, Map]:
        """Every map by its kernel name, global sections included."""
        return {**{m.name: m for m in self.sections.values()}, **self.maps}

    # ---- pins ---------------------------------------------------------------

    def describe(self, source: str | None = None) -> dict[str, Any]:
        """The manifest of this (in-process) deployment: what DIR holds once it is pinned."""
        if self.object is None:
            return dict(self.manifest)
        used = _used_map_ids(self.attachments)
        maps: list[dict[str, Any]] = []
        for section, m in self.sections.items():
            maps.append({"name": m.name, "section": section, "pin": pin_name(m.name), "id": m.id,
                         "used": m.id in used})
        for name, m in self.maps.items():
            maps.append({"name": name, "section": None, "pin": pin_name(name), "id": m.id, "used": m.id in used})
        attached = {a.program for a in self.attachments}
        programs = [{"name": name, "pin": pin_name(name)} for name, p in self.object.programs.items()
                    if p.autoload and name in attached]
        attachments = [{**a.entry(), **_attachment_pins(a)} for a in self.attachments]
        path = source or self.object.path
        return {"format": FORMAT, "object": self.object.name, "tool": self.manifest.get("tool") or self.object.name,
                "source": path, "sha256": _sha256(path),
                "version": self.manifest.get("version", 0) + 1 if self.manifest else 1,
                "pinned_at": time.time(), "maps": maps, "programs": programs, "attachments": attachments}

    def pin(self, directory: str | os.PathLike[str]) -> list[str]:
        """Pin maps, programs, attachments and the manifest (last) under ``directory`` (a bpffs, ours, 0700).

        For a new deployment only: ``upgrade`` re-pins an upgraded one."""
        self._check()
        if self.object is None:
            raise BpfError("a deployment reopened from pins is pinned already")
        directory = os.path.abspath(os.fspath(directory))
        check_directory(directory)
        with locked(directory):
            if read_manifest(directory) is not None:
                raise BpfError(f"{directory} holds a deployment already: upgrade it (`pybpf upgrade {directory} "
                               f"NEW.o`) or remove it (`pybpf deployment remove {directory}`)")
            pinned: list[str] = []
            doc = self.describe()
            all_maps = self.all_maps()
            for entry in doc["maps"]:
                path = pin_path(directory, entry["pin"])
                all_maps[entry["name"]].pin(path)
                pinned.append(path)
            for entry in doc["programs"]:
                path = pin_path(directory, entry["pin"])
                self.object.programs[entry["name"]].pin(path)
                pinned.append(path)
            for a in self.attachments:
                entry = a.pin(directory, pin_name(a.program))
                pinned += [pin_path(directory, p) for p in type(a).pins(entry)]
            write_manifest(directory, doc)  # last: a DIR with a manifest describes what runs
            pinned.append(os.path.join(directory, MANIFEST))
        self.directory, self.manifest = directory, doc
        return pinned

    @classmethod
    def from_pins(cls, directory: str | os.PathLike[str]) -> Deployment:
        """Reopen the version pinned in ``directory`` (by ``pin`` or ``pybpf load --pin``).

        Every pinned map must be the one the manifest recorded and, when the
        running programs use it, one of their ``map_ids``: a pin replaced by
        another map is refused, not adopted."""
        directory = os.path.abspath(os.fspath(directory))
        check_directory(directory)
        manifest = read_manifest(directory)
        if manifest is None:
            raise BpfError(f"{directory} holds no pybpf deployment (no {MANIFEST} pin): pin one with "
                           f"`pybpf load OBJ --pin {directory}` or Deployment.pin()")
        maps: dict[str, Map] = {}
        sections: dict[str, Map] = {}
        attachments: list[Attachment] = []
        try:
            for entry in manifest["attachments"]:
                attachments.append(from_manifest(directory, entry))
            used = _used_map_ids(attachments)
            used_names = _used_map_names(attachments)
            for entry in manifest["maps"]:
                path = pin_path(directory, entry["pin"])
                handle = Map.from_pin(path)
                if entry["section"]:
                    sections[entry["section"]] = handle
                else:
                    maps[entry["name"]] = handle
                _check_adoptable(directory, entry, handle, used, used_names)
        except BaseException:
            for handle in [*maps.values(), *sections.values()]:
                handle.close()
            for a in attachments:
                a.close()
            raise
        return cls(None, attachments, maps=maps, sections=sections, directory=directory, manifest=manifest)

    # ---- close ----------------------------------------------------------------

    def close(self) -> None:
        """Release this process's handles. Unpinned attachments detach; pinned ones keep running."""
        if self._closed:
            return
        self._closed = True
        for a in self.attachments:
            a.close()
        self.attachments = []
        self._release()

    def _release(self) -> None:
        if self.object is not None:
            self.object.close()
        else:
            for handle in [*self.maps.values(), *self.sections.values()]:
                handle.close()

    def _retire(self) -> None:
        """After an upgrade: the attachments moved to the new version; drop the rest."""
        self._closed = True
        self.attachments = []
        self._release()

    def __enter__(self) -> Deployment:  # noqa: PYI034 (python 3.10 has no typing.Self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sha256(path: str | None) -> str | None:
    """The object file's digest (an agent upgrades when it changes), None if it is not a file."""
    if not path or not os.path.isfile(path):
        return None
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _attachment_pins(a: Attachment) -> dict[str, str]:
    stem = pin_name(a.program)
    pins = {"link": f"{stem}_link"}
    if a.mode == "dispatch":
        pins["slot"] = f"{stem}_slot"
    return pins


def _used_map_ids(attachments: list[Attachment]) -> set[int]:
    used: set[int] = set()
    for a in attachments:
        fd, _ = a.current_program()
        try:
            used.update(prog_info(fd).map_ids)
        finally:
            os.close(fd)
    return used


def _used_map_names(attachments: list[Attachment]) -> dict[str, int]:
    """Name -> id of every map the running programs use."""
    from pybpf.kernel.info import map_info, open_map_by_id

    names: dict[str, int] = {}
    for map_id in _used_map_ids(attachments):
        try:
            fd = open_map_by_id(map_id)
        except BpfError:
            continue
        try:
            names[map_info(fd).name] = map_id
        finally:
            os.close(fd)
    return names


def _check_adoptable(directory: str, entry: dict[str, Any], handle: Map, used: set[int],
                     used_names: dict[str, int]) -> None:
    path = os.path.join(directory, entry["pin"])
    recorded = entry.get("id")
    if recorded is not None and handle.id != recorded:
        raise BpfError(f"{path} is not the map the deployment pinned (map id {handle.id}, the manifest says "
                       f"{recorded}): refusing to adopt a pin that was replaced")
    if entry.get("used") and handle.id not in used:
        raise BpfError(f"{path} (map id {handle.id}) is not a map the running programs use "
                       f"(their map_ids: {sorted(used)}): refusing to adopt it")
    kernel_name = entry["name"][:15]
    if kernel_name in used_names and used_names[kernel_name] != handle.id:
        raise BpfError(f"{path} (map id {handle.id}) is not the {entry['name']!r} the running programs use "
                       f"(map id {used_names[kernel_name]}): refusing to adopt it")


# ---- deploy --------------------------------------------------------------------------

def deploy(obj: Object, *, hooks: Mapping[str, Hook] | None = None) -> Deployment:
    """Attach every program of ``obj`` (loading it first if needed) so that it can be upgraded.

    Programs whose SEC() names their hook attach by themselves; ``hooks`` maps
    other program names to a function that attaches the Program it is given
    (e.g. ``{"count_xdp": lambda p: p.attach_xdp("eth0")}``). Programs with
    neither are left unattached, as ``Object.attach`` does."""
    if obj.state == "open":
        obj.load()
    hooks = dict(hooks or {})
    unknown = set(hooks) - set(obj.programs)
    if unknown:
        raise KeyError(f"hooks name no program of {obj.name}: {', '.join(sorted(unknown))}")
    attachments: list[Attachment] = []
    groups: set[str] = set()  # one attachment per group (the programs of a struct_ops map)
    try:
        for name, program in obj.programs.items():
            if not program.autoload or not (name in hooks or program.auto_attachable):
                continue
            kind = kind_for(program)
            group = kind.group(program) if kind is not None else None
            if group is not None:
                if group in groups:
                    continue
                groups.add(group)
            attachments.append(attach(program, hooks.get(name)))
    except BaseException:
        for a in attachments:
            a.close()
        raise
    return Deployment(obj, attachments)


# ---- upgrade -------------------------------------------------------------------------

def upgrade(old: Deployment | str | os.PathLike[str], new: Object | str | os.PathLike[str] | bytes, *,
            migrate: MigrateOption = True, rodata: Mapping[str, Any] | None = None,
            last_value: LastValue | None = None, lock_timeout: float = LOCK_TIMEOUT) -> Deployment:
    """Replace the running version ``old`` (a Deployment, or a directory it is pinned in) by ``new``.

    ``new`` is a path, the bytes of an object, or an Object not loaded yet.
    ``migrate``: True migrates changed maps automatically, False allows reuse
    only, a mapping gives per-map functions ``(old_keys, old_values) -> (keys,
    values)`` (applied to the copy and, after the switch, to the old map's
    final state). ``last_value`` names, per map (``".bss"`` for globals), the
    fields that hold a last value rather than a count. ``.rodata`` values
    carry over by name unless ``rodata`` sets them. Returns the new Deployment
    (pinned where the old one was), with ``report`` saying what happened;
    ``old`` is closed. On any failure before the switch the old version keeps
    running untouched and the error propagates."""
    if isinstance(old, Deployment):
        if old.directory is None:
            return _upgrade(old, new, migrate, rodata, last_value or {}, opened=False)
        with locked(old.directory, lock_timeout):
            _recover(old.directory)
            return _upgrade(old, new, migrate, rodata, last_value or {}, opened=False)
    directory = os.path.abspath(os.fspath(old))
    check_directory(directory)
    with locked(directory, lock_timeout):
        _recover(directory)
        current = Deployment.from_pins(directory)
        return _upgrade(current, new, migrate, rodata, last_value or {}, opened=True)


def _open_new(new: Object | str | os.PathLike[str] | bytes) -> Object:
    obj = new if isinstance(new, Object) else open_object(new)
    if obj.state != "open":
        if not isinstance(new, Object):
            obj.close()
        raise BpfError(f"the new version {obj.name} must not be loaded yet (upgrade loads it, after "
                       f"deciding which maps it reuses)")
    return obj


@dataclass
class _Txn:
    """The pins of one upgrade of a pinned deployment, and what the manifest says of it."""

    directory: str
    current: dict[str, Any]
    next: dict[str, Any]
    temp: dict[str, str]
    merges: list[dict[str, Any]]

    def manifest(self, phase: str) -> dict[str, Any]:
        return {**self.current, "pending": {"phase": phase, "next": self.next, "temp": self.temp,
                                            "merges": self.merges}}


def _upgrade(current: Deployment, new: Object | str | os.PathLike[str] | bytes, migrate: MigrateOption,
             rodata: Mapping[str, Any] | None, last_value: LastValue, opened: bool) -> Deployment:
    current._check()
    new_obj = _open_new(new)
    report = UpgradeReport()
    olds: list[tuple[int, int]] = []
    mergers: dict[str, Merger] = {}
    txn: _Txn | None = None
    switched = False
    try:
        programs = _match_programs(current, new_obj)
        _carry_rodata(current, new_obj, rodata or {})
        plans = _plan(current, new_obj, migrate)
        olds = [a.current_program() for a in current.attachments]  # before load: no lookups after "verified"
        for p in plans:  # first use of a Map handle sets up its buffers: do it for the old ones now
            if p.action == "migrate" and p.old is not None and p.name.startswith("."):
                p.old.lookup(bytes(p.old.key_size))
        for p in plans:
            if p.action == "reuse":
                assert p.new is not None and p.old is not None
                p.new.reuse(p.old)
        start = time.perf_counter()
        new_obj.load()  # a VerifierError leaves everything of the old version as it was
        verified = time.perf_counter()
        crash_point("verified")
        mergers = _prepare_mergers(plans, last_value, report)
        if current.directory is not None:
            txn = _begin(current, new_obj, plans, mergers, programs)
        crash_point("pinned")
        window = time.perf_counter()
        for i, p in enumerate(plans):
            if p.action == "migrate":
                keys, values = copy_section(p) if p.name.startswith(".") else copy_entries(p)
                if p.name in mergers:
                    mergers[p.name].record(keys, values)
                if i == 0:
                    crash_point("copying")
        migrated = time.perf_counter()
        crash_point("copied")
        _switch(current.attachments, programs, olds)
        switched = True
        done = time.perf_counter()
    except BaseException:
        if not switched:
            for m in mergers.values():
                m.close()
            if txn is not None:
                _roll_back(txn)
            for fd, _ in olds:
                os.close(fd)
            if not isinstance(new, Object):
                new_obj.close()
            if opened:
                current.close()  # handles only: pinned attachments keep running the old version
        raise
    for fd, _ in olds:
        os.close(fd)
    crash_point("switched")
    report.load_s, report.migrate_s = verified - start, migrated - window
    report.switch_s, report.verified_to_switched_s = done - migrated, done - verified
    report.window_s = done - window
    try:
        _finish(mergers, plans, report)
        if txn is not None:
            _commit(txn)
    except Exception as exc:  # switched already: the new version runs; the journal lets recover() finish
        _log.error("upgrade: switched to %s, but finishing failed: %s", new_obj.name, exc)
        report.warnings.append(f"switched, but finishing failed: {exc}"
                               + (f"; `pybpf upgrade {current.directory} ...` or recover() completes it"
                                  if current.directory else ""))
    finally:
        for m in mergers.values():
            m.close()
    report.maps = [_map_report(p, mergers.get(p.name)) for p in plans]
    report.switched = [f"{a.program} at {a.hook} ({a.mode})" for a in current.attachments]
    result = Deployment(new_obj, current.attachments, directory=current.directory,
                        manifest=txn.next if txn is not None else None)
    result.report = report
    current._retire()
    return result


def _map_report(p: MapPlan, merger: Merger | None) -> dict[str, Any]:
    entries = p.entries
    if p.action == "reuse" and p.new is not None:
        entries = _count(p.new)
    # a migrated map is exact only if merged and every field of it merges exactly (not a float,
    # not a misaligned counter): the same verdict as the plan's and the warnings'
    exact = p.action != "migrate" or (merger is not None and not merger.inexact)
    out = {"name": p.name, "action": p.action, "why": p.why, "entries": entries, "exact": exact}
    if p.merged is not None:
        out["merged"] = p.merged
    return out


def _count(m: Map) -> int:
    """Entries of a reused map: non-zero elements of an array, keys of the others."""
    try:
        if m.type in ("array", "percpu_array"):
            _, values = m.lookup_batch()
            raw = np.ascontiguousarray(values).view(np.uint8).reshape(len(values), -1)
            return int(raw.any(axis=1).sum())
        if m.type in ("prog_array", "perf_event_array", "ringbuf", "user_ringbuf", "array_of_maps",
                      "cgroup_array", "stack_trace"):
            return 0
        return len(m)
    except BpfError:
        return 0


def _prepare_mergers(plans: list[MapPlan], last_value: LastValue, report: UpgradeReport) -> dict[str, Merger]:
    mergers: dict[str, Merger] = {}
    try:
        for p in plans:
            if p.action != "migrate":
                continue
            assert p.old is not None and p.new is not None
            try:
                m = Merger.prepare(p.name, p.old, p.new, section=p.name.startswith("."),
                                   last_value=last_value.get(p.name, ()))
            except BpfError as exc:
                report.warnings.append(f"map {p.name!r}: not exact: the merge program could not be loaded ({exc}); "
                                       f"what the old version writes between the copy and the switch is lost")
                continue
            mergers[p.name] = m
            for leaf in m.inexact:
                report.warnings.append(f"map {p.name!r} field {leaf.path!r}: not exact: {leaf.why}")
    except BaseException:
        for m in mergers.values():
            m.close()
        raise
    for w in report.warnings:
        _log.warning("upgrade: %s", w)
    return mergers


def _finish(mergers: Mapping[str, Merger], plans: list[MapPlan], report: UpgradeReport) -> None:
    """After the switch: wait for old invocations, then merge each migrated map."""
    if not mergers:
        return
    t0 = time.perf_counter()
    wait_for_programs()
    t1 = time.perf_counter()
    first = True
    for p in plans:
        m = mergers.get(p.name)
        if m is not None:
            p.merged = m.merge(converter(p)).as_dict()
            if first:
                crash_point("merging")  # one map merged: a recovery merges it again, adding nothing twice
                first = False
    report.wait_s, report.merge_s = t1 - t0, time.perf_counter() - t1


# ---- the journal of a pinned upgrade ---------------------------------------------------------

def _begin(current: Deployment, new_obj: Object, plans: list[MapPlan], mergers: Mapping[str, Merger],
           programs: Mapping[str, Program]) -> _Txn:
    """Write the intent into the manifest, then pin the new maps, programs and snapshots under temporary names."""
    directory = current.directory
    assert directory is not None
    running = current.manifest
    staged = Deployment(new_obj, current.attachments)
    doc = staged.describe()
    doc["version"] = int(running.get("version", 0)) + 1
    doc["attachments"] = running["attachments"]
    doc["tool"] = running.get("tool", running.get("object"))
    used: set[int] = set()
    for program in programs.values():  # not attached yet: what the programs that will run use
        used.update(program.info().map_ids)
    for entry in doc["maps"]:
        entry["used"] = entry["id"] in used
    reused = {p.new.name for p in plans if p.action == "reuse" and p.new is not None}
    temp: dict[str, str] = {}
    for entry in doc["maps"]:
        if entry["name"] not in reused:
            temp[entry["pin"]] = _temp(entry["pin"])
    for entry in doc["programs"]:
        temp[entry["pin"]] = _temp(entry["pin"])
    old_pins = {m["name"]: m["pin"] for m in running["maps"]}
    old_sections = {m["section"]: m["pin"] for m in running["maps"] if m.get("section")}
    merges = []
    for name, m in mergers.items():
        new_pin = pin_name(m.new.name)
        old_pin = old_sections.get(name) if m.section else old_pins.get(name)
        if old_pin is None:
            continue
        merges.append({"name": name, "section": m.section, "old": old_pin, "new": temp[new_pin],
                       "snapshot": _snap(new_pin), "last_value": sorted(_last_of(m)),
                       "custom": any(p.migrator is not None for p in plans if p.name == name)})
    txn = _Txn(directory, running, doc, temp, merges)
    write_manifest(directory, txn.manifest("prepared"))  # first: a crash from here on is rolled back or forward
    all_maps = staged.all_maps()
    for entry in doc["maps"]:
        if entry["pin"] in temp:
            _pin_fresh(all_maps[entry["name"]], pin_path(directory, temp[entry["pin"]]))
    for entry in doc["programs"]:
        _pin_fresh(programs.get(entry["name"]) or new_obj.programs[entry["name"]],
                   pin_path(directory, temp[entry["pin"]]))
    for merge in merges:
        _pin_fresh(mergers[merge["name"]].snapshot, pin_path(directory, merge["snapshot"]))
    return txn


def _last_of(m: Merger) -> set[str]:
    return {leaf.path for leaf in m.leaves if leaf.mode == "last" and leaf.exact}


def _pin_fresh(item: Map | Program, path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # left by an interrupted upgrade that was rolled back
    item.pin(path)


def _roll_back(txn: _Txn) -> None:
    """Nothing was switched: drop the temporary pins and the intent."""
    for name in [*txn.temp.values(), *(m["snapshot"] for m in txn.merges)]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pin_path(txn.directory, name))
    write_manifest(txn.directory, txn.current)


def _commit(txn: _Txn, mergers: Mapping[str, Merger] | None = None) -> None:
    """Everything switched and merged: rename the temporary pins into place, then the new manifest."""
    directory = txn.directory
    write_manifest(directory, txn.manifest("merged"))
    crash_point("merged")
    for i, (final, temp) in enumerate(sorted(txn.temp.items())):
        source = pin_path(directory, temp)
        if os.path.lexists(source):
            os.rename(source, pin_path(directory, final))  # atomic: readers see the old pin or the new one
        if i == 0:
            crash_point("renaming")
    keep = _pin_names(txn.next) | {MANIFEST}
    stale = (_pin_names(txn.current) | {m["snapshot"] for m in txn.merges}) - keep
    for name in sorted(stale):  # before the new manifest: until then the journal still names them
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pin_path(directory, name))
    write_manifest(directory, txn.next)
    crash_point("committed")


def _pin_names(manifest: dict[str, Any] | None) -> set[str]:
    if not manifest:
        return set()
    names = {m["pin"] for m in manifest.get("maps", [])} | {p["pin"] for p in manifest.get("programs", [])}
    for a in manifest.get("attachments", []):
        kind = kind_of(a)
        names |= set(kind.pins(a)) if kind is not None else {a[k] for k in ("link", "slot") if a.get(k)}
    return names


def recover(directory: str | os.PathLike[str], *, lock_timeout: float = LOCK_TIMEOUT) -> str | None:
    """Finish or undo an upgrade of DIR that was interrupted (a kill, a crash); None if there was none.

    Nothing switched yet: the temporary pins go and the old version stays.
    Something switched: the rest is switched, the old map's writes since the
    copy are merged (again: merging twice adds nothing), and the new pins are
    renamed into place."""
    directory = os.path.abspath(os.fspath(directory))
    check_directory(directory)
    with locked(directory, lock_timeout):
        return _recover(directory)


def _recover(directory: str) -> str | None:
    doc = read_manifest(directory)
    if doc is None or doc.get("pending") is None:
        return None
    pending = doc["pending"]
    current = {k: v for k, v in doc.items() if k != "pending"}
    txn = _Txn(directory, current, pending["next"], dict(pending["temp"]), list(pending["merges"]))
    if pending["phase"] == "merged":
        _commit(txn)
        return "rolled forward (renamed the new pins into place)"
    attachments = [from_manifest(directory, entry) for entry in current["attachments"]]
    try:
        next_programs: dict[str, int] = {}
        for entry in txn.next["programs"]:
            temp = txn.temp.get(entry["pin"])
            path = pin_path(directory, temp) if temp else None
            if path is not None and os.path.lexists(path):
                next_programs[entry["name"]] = open_pinned(path, "program")
        try:
            new_ids = {name: prog_info(fd).id for name, fd in next_programs.items()}
            running = {a.program: a.current_program_id() for a in attachments}
            if not any(running.get(name) == pid for name, pid in new_ids.items()):
                _roll_back(txn)
                return "rolled back (nothing was switched; the old version runs as before)"
            for a in attachments:
                if running[a.program] != new_ids.get(a.program):
                    a.switch(next_programs[a.program])
        finally:
            for fd in next_programs.values():
                os.close(fd)
    finally:
        for a in attachments:
            a.close()
    _merge_from_pins(txn)
    _commit(txn)
    return "rolled forward (switched the rest, merged, renamed the new pins into place)"


def _merge_from_pins(txn: _Txn) -> None:
    directory = txn.directory
    if not txn.merges:
        return
    wait_for_programs()
    for merge in txn.merges:
        if merge.get("custom"):
            _log.warning("recovering %s: map %r was migrated with a migrate= function this process does not "
                         "have: what the old version wrote between the copy and the switch is not merged",
                         directory, merge["name"])
            continue
        old = Map.from_pin(pin_path(directory, merge["old"]))
        try:
            new = Map.from_pin(pin_path(directory, merge["new"]))
            try:
                snapshot = Map.from_pin(pin_path(directory, merge["snapshot"]))
                m = Merger.prepare(merge["name"], old, new, section=bool(merge["section"]), snapshot=snapshot,
                                   last_value=merge.get("last_value", ()))
                try:
                    if merge["section"]:
                        def convert_section(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                            return keys, convert(values, new.value_dtype, merge["name"])
                        m.merge(convert_section)
                    else:
                        m.merge(lambda k, v: (convert(k, new.key_dtype, "key"), convert(v, new.value_dtype, "value")))
                finally:
                    m.close()
            finally:
                new.close()
        finally:
            old.close()


# ---- planning ----------------------------------------------------------------------------------

def _match_programs(current: Deployment, new_obj: Object) -> dict[str, Program]:
    programs: dict[str, Program] = {}
    for a in current.attachments:
        try:
            program = new_obj.programs[a.program]
        except KeyError:
            raise BpfError(f"the new version {new_obj.name} has no program {a.program!r}, which runs at "
                           f"{a.hook}") from None
        if program.type != a.prog_type:
            raise BpfError(f"program {a.program!r} is {program.type} in the new version but {a.prog_type} in the "
                           f"running one: it cannot take over {a.hook}")
        if not program.autoload:
            raise BpfError(f"program {a.program!r} of the new version has autoload off")
        programs[a.program] = program
    return programs


def _carry_rodata(current: Deployment, new_obj: Object, overrides: Mapping[str, Any]) -> None:
    old = current.sections.get(".rodata")
    new_section = new_obj.rodata
    if old is not None and ".rodata" in _sections_of(new_obj):
        record = old.lookup(bytes(old.key_size))  # internal maps: one element, key 0, no BTF key
        names = set(new_section.keys())
        for name in getattr(record.dtype, "names", None) or ():
            if name in names and name not in overrides:
                new_section[name] = record[name]
    for name, value in overrides.items():
        new_section[name] = value


def _plan(current: Deployment, new_obj: Object, migrate: MigrateOption) -> list[MapPlan]:
    plans: list[MapPlan] = []
    new_sections = _sections_of(new_obj)
    internal = {id(m) for m in new_sections.values()}
    for name, m in new_obj.maps.items():
        if id(m) not in internal:
            plans.append(plan_map(name, current.maps.get(name), m, migrate))
    for section, m in new_sections.items():
        old = current.sections.get(section)
        if section not in _CARRIED_SECTIONS and not section.startswith(".data."):
            continue  # .rodata is carried before load; .kconfig is the kernel's
        if old is None:
            plans.append(MapPlan(section, "fresh", None, m, "not in the old version"))
            continue
        try:
            convert(np.zeros(1, old.value_dtype), m.value_dtype, section)
        except MapMismatchError as exc:
            raise MapMismatchError(section, exc.difference) from None
        plans.append(MapPlan(section, "migrate", old, m, "globals carried by variable name"))
    return plans


def plan(old: Deployment | str | os.PathLike[str], new: Object | str | os.PathLike[str] | bytes, *,
         migrate: MigrateOption = True, last_value: LastValue | None = None) -> dict[str, Any]:
    """What ``upgrade(old, new)`` would do, with nothing changed: each map reused, migrated or
    created (and why), each attachment and how it switches, the fields whose merge is not exact."""
    opened = not isinstance(old, Deployment)
    current = Deployment.from_pins(old) if opened else old  # type: ignore[arg-type]
    assert isinstance(current, Deployment)
    new_obj = _open_new(new)
    try:
        programs = _match_programs(current, new_obj)
        plans = _plan(current, new_obj, migrate)
        from pybpf.upgrade.merge import leaves

        maps, warnings = [], []
        for p in plans:
            entry: dict[str, Any] = {"name": p.name, "action": p.action, "why": p.why or "same definition and layout"}
            if p.action == "migrate" and p.new is not None:
                lv = (last_value or {}).get(p.name, ())
                rules = leaves(p.new.value_dtype, lv)
                entry["fields"] = {leaf.path: leaf.mode for leaf in rules}
                entry["exact"] = all(leaf.exact for leaf in rules)
                warnings += [f"map {p.name!r} field {leaf.path!r}: not exact: {leaf.why}"
                             for leaf in rules if not leaf.exact]
            elif p.action == "reuse":
                entry["exact"] = True
            maps.append(entry)
        attachments = [{"program": a.program, "hook": a.hook, "mode": a.mode, "switch": type(a).switch_how,
                        "new_program": programs[a.program].name} for a in current.attachments]
        # libbpf's object names keep 15 bytes (v1 and v2 of a long name read the same): the files tell them apart
        return {"directory": current.directory, "from": current.name, "to": new_obj.name,
                "from_version": current.manifest.get("version"), "from_source": current.manifest.get("source"),
                "to_source": new_obj.path, "maps": maps, "attachments": attachments, "warnings": warnings}
    finally:
        if not isinstance(new, Object):
            new_obj.close()
        if opened:
            current.close()


def _switch(attachments: list[Attachment], programs: Mapping[str, Program],
            olds: list[tuple[int, int]]) -> None:
    """Switch every attachment; if one fails, switch the ones done back to their old programs."""
    done: list[tuple[Attachment, int]] = []
    try:
        for i, (a, old) in enumerate(zip(attachments, olds)):
            a.switch(programs[a.program], expected=old)
            done.append((a, old[0]))
            if i == 0 and len(attachments) > 1:
                crash_point("switching")
    except BaseException:
        for a, old_fd in reversed(done):
            try:
                a.switch(old_fd)
            except BpfError:
                _log.exception("rolling back %s failed", a)
        raise
