"""Running versions and the upgrade from one to the next.

``deploy(obj)`` attaches a loaded object so that it can be upgraded later
(``attachments.attach``: a bpf_link where the kernel can update it, a
dispatcher slot elsewhere) and returns a ``Deployment``. ``Deployment.pin(DIR)``
pins its maps, programs and attachments on a bpffs together with a manifest
(itself a pinned map, ``pybpf_manifest``: bpffs holds no regular files), so
that DIR describes the running version; ``Deployment.from_pins(DIR)`` reopens
it in another process.

``upgrade(old, new)`` replaces the running version (a Deployment or a DIR):

1. plan every map (``migrate.plan_map``: reuse, migrate or a typed error) and
   check that every attached program has a counterpart in the new object;
2. load the new object (reused maps are taken over with ``bpf_map__reuse_fd``);
   a verifier rejection ends the upgrade here;
3. copy the state of migrated maps and globals into the new maps;
4. switch every attachment (one BPF_LINK_UPDATE or one slot update each), with
   the old program as the expected one; if one switch fails, the ones already
   made are switched back.

Until step 4 nothing the old version uses has changed: on any failure it
keeps running as it was. The old object is closed afterwards, which releases
its programs (the kernel frees each when its last reference goes, after any
run in progress).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pybpf.errors import BpfError, ClosedError, MapMismatchError
from pybpf.link.base import Link
from pybpf.maps.map import Map
from pybpf.object import Object, open as open_object
from pybpf.program import Program
from pybpf.upgrade.attachments import Attachment, Hook, attach
from pybpf.upgrade.migrate import MapPlan, MigrateOption, convert, copy_entries, copy_section, plan_map

__all__ = ["MANIFEST", "Deployment", "UpgradeReport", "deploy", "pin_name", "upgrade"]

_log = logging.getLogger("pybpf")
MANIFEST = "pybpf_manifest"
_MANIFEST_SIZE = 32768
_FORMAT = "pybpf-deployment/1"
_CARRIED_SECTIONS = (".bss", ".data")


def pin_name(name: str) -> str:
    """bpffs refuses '.' in names (EPERM): ``counters.bss`` is pinned as ``counters_bss``."""
    return name.replace(".", "_")


@dataclass
class UpgradeReport:
    """What an upgrade did and how long each step took (seconds)."""

    maps: list[dict[str, Any]] = field(default_factory=list)
    switched: list[str] = field(default_factory=list)
    load_s: float = 0.0                 # open state -> loaded and verified
    migrate_s: float = 0.0              # copying migrated maps and globals
    switch_s: float = 0.0               # every attachment switched
    verified_to_switched_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON types."""
        return {"maps": self.maps, "switched": self.switched, "load_s": self.load_s,
                "migrate_s": self.migrate_s, "switch_s": self.switch_s,
                "verified_to_switched_s": self.verified_to_switched_s}


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

    # ---- pins ---------------------------------------------------------------

    def pin(self, directory: str | os.PathLike[str]) -> list[str]:
        """Pin maps, programs, attachments and the manifest under ``directory`` (a bpffs).

        Pins already there for the same object are kept; others are replaced
        atomically (pin under a temporary name, rename over) and pins the
        previous manifest listed but this version does not have are removed."""
        self._check()
        if self.object is None:
            raise BpfError("a deployment reopened from pins is pinned already", errno.EINVAL)
        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            raise FileNotFoundError(errno.ENOENT, "no such directory (make it on a bpffs mount)", directory)
        previous = _read_manifest(directory)
        pinned: list[str] = []
        maps: list[dict[str, Any]] = []
        for section, m in self.sections.items():
            maps.append({"name": m.name, "section": section, "pin": pin_name(m.name)})
        for name, m in self.maps.items():
            maps.append({"name": name, "section": None, "pin": pin_name(name)})
        all_maps = {**{m.name: m for m in self.sections.values()}, **self.maps}
        for entry in maps:
            pinned.append(_pin_replacing(all_maps[entry["name"]], directory, entry["pin"]))
        programs = []
        attached = {a.program for a in self.attachments}
        for name, program in self.object.programs.items():
            if program.autoload and name in attached:
                pinned.append(_pin_replacing(program, directory, pin_name(name)))
                programs.append({"name": name, "pin": pin_name(name)})
        attachments = []
        for a in self.attachments:
            entry = a.pin(directory, pin_name(a.program))
            attachments.append(entry)
            pinned += [os.path.join(directory, entry[k]) for k in ("link", "slot") if entry.get(k)]
        manifest = {"format": _FORMAT, "object": self.object.name, "source": self.object.path,
                    "pinned_at": time.time(), "maps": maps, "programs": programs, "attachments": attachments}
        _write_manifest(directory, manifest)
        pinned.append(os.path.join(directory, MANIFEST))
        keep = {os.path.basename(p) for p in pinned}
        for stale in sorted(_pin_names(previous) - keep):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, stale))
        self.directory, self.manifest = directory, manifest
        return pinned

    @classmethod
    def from_pins(cls, directory: str | os.PathLike[str]) -> Deployment:
        """Reopen the version pinned in ``directory`` (by ``pin`` or ``pybpf load --pin``)."""
        directory = os.fspath(directory)
        manifest = _read_manifest(directory)
        if manifest is None:
            raise BpfError(f"{directory} holds no pybpf deployment (no {MANIFEST} pin): pin one with "
                           f"`pybpf load OBJ --pin {directory}` or Deployment.pin()", errno.ENOENT)
        maps: dict[str, Map] = {}
        sections: dict[str, Map] = {}
        attachments: list[Attachment] = []
        try:
            for entry in manifest["maps"]:
                handle = Map.from_pin(os.path.join(directory, entry["pin"]))
                if entry["section"]:
                    sections[entry["section"]] = handle
                else:
                    maps[entry["name"]] = handle
            for entry in manifest["attachments"]:
                attachments.append(Attachment.from_manifest(directory, entry))
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


def _pin_replacing(item: Map | Program, directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    if isinstance(item, Map) and os.path.exists(path):
        try:
            with Map.from_pin(path) as there:
                if there.id == item.id:
                    return path  # the same kernel map (reused by this version): nothing to do
        except BpfError:
            pass
    if not os.path.exists(path):
        item.pin(path)
        return path
    temporary = os.path.join(directory, f"{name}__new")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    item.pin(temporary)
    os.rename(temporary, path)  # atomic: readers see the old pin or the new one
    return path


def _pin_names(manifest: dict[str, Any] | None) -> set[str]:
    if not manifest:
        return set()
    names = {m["pin"] for m in manifest.get("maps", [])} | {p["pin"] for p in manifest.get("programs", [])}
    for a in manifest.get("attachments", []):
        names |= {a[k] for k in ("link", "slot") if a.get(k)}
    return names


def _read_manifest(directory: str) -> dict[str, Any] | None:
    path = os.path.join(directory, MANIFEST)
    if not os.path.exists(path):
        return None
    with Map.from_pin(path, key_dtype=np.uint32, value_dtype=f"S{_MANIFEST_SIZE}") as store:
        raw = bytes(store.lookup(0))
    manifest: dict[str, Any] = json.loads(raw.rstrip(b"\0"))
    if manifest.get("format") != _FORMAT:
        raise BpfError(f"{path}: unknown manifest format {manifest.get('format')!r}", errno.EINVAL)
    return manifest


def _write_manifest(directory: str, manifest: dict[str, Any]) -> None:
    data = json.dumps(manifest, sort_keys=True).encode()
    if len(data) >= _MANIFEST_SIZE:
        raise BpfError(f"the manifest of {directory} needs {len(data)} bytes (at most {_MANIFEST_SIZE - 1})",
                       errno.E2BIG)
    path = os.path.join(directory, MANIFEST)
    if os.path.exists(path):
        store = Map.from_pin(path, key_dtype=np.uint32, value_dtype=f"S{_MANIFEST_SIZE}")
    else:
        # a hash map: an update replaces the element as a whole (RCU), readers never see a torn JSON
        store = Map.create("hash", key_dtype=np.uint32, value_dtype=f"S{_MANIFEST_SIZE}", max_entries=1,
                           flags="no_prealloc", name=MANIFEST[:15])
        store.pin(path)
    with store:
        store.update(0, data)


@contextlib.contextmanager
def _locked(directory: str) -> Iterator[None]:
    """One upgrade of a pinned directory at a time (flock on the directory)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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
    try:
        for name, program in obj.programs.items():
            if not program.autoload or not (name in hooks or program.auto_attachable):
                continue
            attachments.append(attach(program, hooks.get(name)))
    except BaseException:
        for a in attachments:
            a.close()
        raise
    return Deployment(obj, attachments)


# ---- upgrade -------------------------------------------------------------------------

def upgrade(old: Deployment | str | os.PathLike[str], new: Object | str | os.PathLike[str] | bytes, *,
            migrate: MigrateOption = True, rodata: Mapping[str, Any] | None = None) -> Deployment:
    """Replace the running version ``old`` (a Deployment, or a directory it is pinned in) by ``new``.

    ``new`` is a path, the bytes of an object, or an Object not loaded yet.
    ``migrate``: True migrates changed maps automatically, False allows reuse
    only, a mapping gives per-map functions ``(old_keys, old_values) -> (keys,
    values)``. ``.rodata`` values carry over by name unless ``rodata`` sets
    them. Returns the new Deployment (pinned where the old one was), with
    ``report`` saying what happened; ``old`` is closed. On any failure the old
    version keeps running untouched and the error propagates."""
    if isinstance(old, Deployment):
        if old.directory is None:
            return _upgrade(old, new, migrate, rodata, opened=False)
        with _locked(old.directory):
            return _upgrade(old, new, migrate, rodata, opened=False)
    directory = os.fspath(old)
    with _locked(directory):
        current = Deployment.from_pins(directory)
        return _upgrade(current, new, migrate, rodata, opened=True)


def _upgrade(current: Deployment, new: Object | str | os.PathLike[str] | bytes, migrate: MigrateOption,
             rodata: Mapping[str, Any] | None, opened: bool) -> Deployment:
    current._check()
    new_obj = new if isinstance(new, Object) else open_object(new)
    report = UpgradeReport()
    olds: list[tuple[int, int]] = []
    try:
        if new_obj.state != "open":
            raise BpfError(f"the new version {new_obj.name} must not be loaded yet (upgrade loads it, after "
                           f"deciding which maps it reuses)", errno.EINVAL)
        programs = _match_programs(current, new_obj)
        _carry_rodata(current, new_obj, rodata or {})
        plans = _plan(current, new_obj, migrate)
        olds = [a.current_program() for a in current.attachments]  # before load: no lookups after "verified"
        for plan in plans:  # first use of a Map handle sets up its buffers: do it for the old ones now
            if plan.action == "migrate" and plan.old is not None and plan.name.startswith("."):
                plan.old.lookup(bytes(plan.old.key_size))
        for plan in plans:
            if plan.action == "reuse":
                assert plan.new is not None and plan.old is not None
                plan.new.reuse(plan.old)
        start = time.perf_counter()
        new_obj.load()  # a VerifierError leaves everything of the old version as it was
        verified = time.perf_counter()
        for plan in plans:
            if plan.action == "migrate":
                if plan.name.startswith("."):
                    copy_section(plan)
                else:
                    copy_entries(plan)
        migrated = time.perf_counter()
        _switch(current.attachments, programs, olds)
        switched = time.perf_counter()
    except BaseException:
        for fd, _ in olds:
            os.close(fd)
        olds = []
        if not isinstance(new, Object):
            new_obj.close()
        if opened:
            current.close()  # handles only: pinned attachments keep running the old version
        raise
    for fd, _ in olds:
        os.close(fd)
    report.load_s, report.migrate_s = verified - start, migrated - verified
    report.switch_s, report.verified_to_switched_s = switched - migrated, switched - verified
    report.maps = [{"name": p.name, "action": p.action, "why": p.why, "entries": p.entries} for p in plans]
    report.switched = [f"{a.program} at {a.hook} ({a.mode})" for a in current.attachments]
    result = Deployment(new_obj, current.attachments)
    result.report = report
    current._retire()
    if current.directory is not None:
        try:
            result.pin(current.directory)
        except BaseException:
            _log.exception("upgrade switched, but re-pinning %s failed", current.directory)
            raise
    return result


def _match_programs(current: Deployment, new_obj: Object) -> dict[str, Program]:
    programs: dict[str, Program] = {}
    for a in current.attachments:
        try:
            program = new_obj.programs[a.program]
        except KeyError:
            raise BpfError(f"the new version {new_obj.name} has no program {a.program!r}, which runs at {a.hook}",
                           errno.ENOENT) from None
        if program.type != a.prog_type:
            raise BpfError(f"program {a.program!r} is {program.type} in the new version but {a.prog_type} in the "
                           f"running one: it cannot take over {a.hook}", errno.EINVAL)
        if not program.autoload:
            raise BpfError(f"program {a.program!r} of the new version has autoload off", errno.EINVAL)
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


def _switch(attachments: list[Attachment], programs: Mapping[str, Program],
            olds: list[tuple[int, int]]) -> None:
    """Switch every attachment; if one fails, switch the ones done back to their old programs."""
    done: list[tuple[Attachment, int]] = []
    try:
        for a, old in zip(attachments, olds):
            a.switch(programs[a.program], expected=old)
            done.append((a, old[0]))
    except BaseException:
        for a, old_fd in reversed(done):
            try:
                a.switch(old_fd)
            except BpfError:
                _log.exception("rolling back %s failed", a)
        raise
