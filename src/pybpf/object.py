"""``Object``: one BPF ELF object through its life: open -> (edit) -> load -> close.

The Object owns the libbpf ``bpf_object`` and, through it, every map and
program fd; it also owns the links made from its programs and the mmaps of
its data sections, and releases them in order on ``close()`` (links first,
then mappings, then the libbpf object). Views made from it outlive it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import errno
import os
import re
import stat
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pybpf import logs
from pybpf.text import LazyPattern
from pybpf._sys.resource import Resource
import pybpf.events  # noqa: F401 (registers the stream readers of maps)
from pybpf._sys import libbpf as _libbpf
from pybpf._sys.forksafe import fresh_locks
from pybpf._sys.libbpf import ffi, lib
from pybpf.btf.types import KERNEL_BTF_PATH, Btf, read_file
from pybpf.kinds import MapFlag, MapType, ObjectState, ProgType
from pybpf.errors import (
    BpfError,
    BpfPermissionError,
    ClosedError,
    NotSupportedError,
    ObjectFormatError,
    VerifierError,
)
from pybpf.kernel.token import ENV as TOKEN_ENV, LIBBPF_TOKEN_RELEASE, requested_path, token_error
from pybpf.link.base import Link
from pybpf.maps.map import Map
from pybpf.maps.memory import check_map_memory
from pybpf.program import LOG_LEVEL_STATS, Program
from pybpf.section import Section
from pybpf.spec import parsed
from pybpf.spec.compat import STRUCT_OPS_LINK_SEC, STRUCT_OPS_SEC, struct_ops_link_as_legacy
from pybpf.spec.elfheader import check_elf_header

if TYPE_CHECKING:
    from pybpf.spec.elf import MapSpec, ObjectSpec

__all__ = ["Object", "open"]

T = TypeVar("T")

_TOKEN_FAILED = LazyPattern(r"failed \(-?\d+\) to create BPF token from '([^']*)'(?!, skipping)")
_PROG_FAILED = LazyPattern(r"prog '([^']+)': (?:BPF program load failed|failed to load)")
_VERIFIER_LOG = LazyPattern(r"-- BEGIN PROG LOAD LOG --\n(.*?)-- END PROG LOAD LOG --", re.S)
_MAP_FAILED = LazyPattern(r"map '([^']+)': failed to create")
_PIN_MISMATCH = LazyPattern(r"couldn't reuse pinned map at '([^']+)': ([^\n]+)")
_MAP_FAILED_REASON = LazyPattern(r"map '([^']+)': failed to create: (.*)")
_PROG_LOG = LazyPattern(r"prog '([^']+)': -- BEGIN PROG LOAD LOG --\n(.*?)-- END PROG LOAD LOG --", re.S)
# libbpf lines that only say that something failed, not why
_GENERIC = ("failed to load object", "failed to load:", "failed to prepare load attributes", "BPF program load failed",
            "failed to load program", "Retrying without BTF", "-- BEGIN PROG LOAD LOG", "-- END PROG LOAD LOG")
# libbpf debug lines that read like failures and are not: CO-RE poisoned a relocation it could not
# resolve (guarded code); the verifier refuses that instruction only if it is reachable, and says so
_NOT_FAILURES = ("w/ invalid insn",)
_REFUSED_TYPES = {"tracing": "fentry/fexit/fmod_ret", "lsm": "lsm", "ext": "freplace"}
_TOKEN_HINT = ", or in a user namespace load through a BPF token: token_path= a bpffs mounted with delegate_* options"


class _Maps(Mapping[str, Map]):
    """An object's maps by libbpf's name; internal maps also by their section (``.rodata``)."""

    def __init__(self, obj: Object) -> None:
        self._obj = obj
        self._items = obj._maps

    def __getitem__(self, name: str) -> Map:
        found = self._items.get(name)
        if found is None and name.startswith("."):
            # libbpf names internal maps "<object name prefix><section>" ("opensnoo.rodata"), truncated
            # to 15 characters; bpf_object__find_map_by_name also knows their section ("real") name
            ptr = lib.bpf_object__find_map_by_name(self._obj._ptr, name.encode())
            found = next((m for m in self._items.values() if ptr != ffi.NULL and m._ptr == ptr), None)
        if found is None:
            raise KeyError(f"object {self._obj.name} has no map {name!r} "
                           f"(it has: {', '.join(self._items) or 'none'})")
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"<maps of object {self._obj.name}: {list(self._items)}>"


class _Named(Mapping[str, T]):
    """A read-only, ordered name -> item mapping with a helpful KeyError."""

    def __init__(self, items: dict[str, T], what: str, owner: str) -> None:
        self._items, self._what, self._owner = items, what, owner

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"{self._owner} has no {self._what} {name!r} "
                           f"(it has: {', '.join(self._items) or 'none'})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"<{self._what}s of {self._owner}: {list(self._items)}>"


def _struct_ops() -> Any:
    """pybpf.link.struct_ops, imported by the objects that have struct_ops maps."""
    from pybpf.link import struct_ops

    return struct_ops


def open(source: str | os.PathLike[str] | bytes, *, btf_custom_path: str | None = None,
         object_name: str | None = None, pin_root_path: str | None = None,
         kconfig: str | None = None, btf_path: str | os.PathLike[str] | None = None,
         token_path: str | os.PathLike[str] | None = None) -> Object:
    """Open a BPF object (a path or the bytes of a ``.bpf.o``); nothing is in the kernel yet.

    Without ``/sys/kernel/btf/vmlinux``, a BTF for the running kernel is looked up under
    ``btf_path`` (or ``$PYBPF_BTF_PATH``) in BTFHub's layout (:func:`pybpf.btf.hub.find_btf`).

    ``token_path`` (or ``$LIBBPF_BPF_TOKEN_PATH``): a bpffs mounted with ``delegate_*`` options
    for this process's user namespace; libbpf >= 1.4 loads through a BPF token made from it
    (:mod:`pybpf.kernel.token`). ``""`` asks for no token."""
    return Object(source, btf_custom_path=btf_custom_path, object_name=object_name,
                  pin_root_path=pin_root_path, kconfig=kconfig, btf_path=btf_path, token_path=token_path)


class Object(Resource):
    """A BPF object. States: ``open`` -> ``loaded`` -> ``closed`` (or ``failed`` after a failed load)."""

    def __init__(self, source: str | os.PathLike[str] | bytes, *, btf_custom_path: str | None = None,
                 object_name: str | None = None, pin_root_path: str | None = None,
                 kconfig: str | None = None, btf_path: str | os.PathLike[str] | None = None,
                 token_path: str | os.PathLike[str] | None = None) -> None:
        self._ptr: Any = ffi.NULL
        self._state = ObjectState.CLOSED
        # Held by load(), close() and every use of libbpf's object or its maps/programs before
        # load: libbpf frees them in bpf_object__close, which must not run under another call.
        self._lock: threading.RLock
        fresh_locks(self, _lock=threading.RLock)  # new ones in a fork()ed child (pybpf._sys.forksafe)
        self._links: list[Link] = []
        self._keep: list[Any] = []
        self.load_log = ""
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            self.path: str | None = None
            where = object_name or "<bytes>"
        else:
            self.path = os.fsdecode(os.fspath(source))
            where = self.path
            if not os.path.exists(self.path):
                raise FileNotFoundError(errno.ENOENT, "no such BPF object", self.path)
            # regular files only, the ELF header checked before the rest is read
            data = read_file(self.path, check=lambda head: check_elf_header(head, where), what="BPF object")
        if object_name is not None:
            _check_object_name(object_name)
        # Parse purely first: precise errors, and libbpf never sees a malformed ELF. Bytes this
        # very parser passed before (a tool's bundled object at every start: pybpf.spec.parsed)
        # are parsed when file_spec is first asked for.
        self._file_spec: ObjectSpec | None = None
        self._spec_source = (data, object_name or "", where)
        if not parsed.known_parsed(data, object_name or ""):
            self._parse_spec()
            parsed.remember_parsed(data, object_name or "")
        if btf_custom_path is not None:
            btf_custom_path = _check_custom_btf(btf_custom_path)
        else:
            from pybpf.btf import hub  # BTFhub's layout: used when the kernel has no BTF of its own

            if not os.path.exists(hub.SYSFS_BTF) and self.file_spec.core_relocations:
                found = hub.find_btf(btf_path)
                btf_custom_path = _check_custom_btf(found) if found is not None else None
        self._btf_custom_path = btf_custom_path
        # libbpf 1.1 does not know SEC(".struct_ops.link"): it gets the image with that section
        # renamed .struct_ops, and pybpf makes those maps BPF_F_LINK maps (pybpf.link.struct_ops)
        self._struct_ops_link = False
        if (self._file_spec is not None or STRUCT_OPS_LINK_SEC.encode() + b"\0" in data) \
                and STRUCT_OPS_LINK_SEC in self.file_spec.sections and not _struct_ops().uses_libbpf():
            if STRUCT_OPS_SEC in self.file_spec.sections:
                raise NotSupportedError(f"{where}: SEC(\".struct_ops\") and SEC(\".struct_ops.link\") maps in one "
                                        f"object need libbpf >= 1.2 (this is {_libbpf.VERSION_STRING})",
                                        feature="struct_ops_link")
            data = struct_ops_link_as_legacy(data, where)
            self._struct_ops_link = True
            if object_name is None and self.path is not None:  # the name libbpf gives a file
                object_name = os.path.basename(self.path).split(".", 1)[0][:_OBJ_NAME_BYTES] or None

        self._keep = [c_name := _libbpf.c_str(object_name), c_pin := _libbpf.c_str(pin_root_path),
                      c_kconfig := _libbpf.c_str(kconfig), c_btf := _libbpf.c_str(btf_custom_path)]
        token = requested_path(token_path)
        if _libbpf.VERSION < LIBBPF_TOKEN_RELEASE:
            if token:  # libbpf 1.1 would load without it: say so instead
                asked = "token_path=" if token_path is not None else f"${TOKEN_ENV}"
                raise NotSupportedError(f"{where}: loading through a BPF token ({asked}{token!r}) needs libbpf >= "
                                        f"1.4 (this is {_libbpf.VERSION_STRING}): libbpf 1.1 makes its bpf() "
                                        f"calls without a token", feature="bpf_token")
            opts = _libbpf.new_opts("struct bpf_object_open_opts", object_name=c_name, pin_root_path=c_pin,
                                    kconfig=c_kconfig, btf_custom_path=c_btf)
        else:
            # NULL: libbpf reads the environment
            self._keep.append(c_token := _libbpf.c_str(None if token_path is None else os.fspath(token_path)))
            owner = _libbpf.new_opts("struct bpf_object_open_opts_1_4", object_name=c_name, pin_root_path=c_pin,
                                     kconfig=c_kconfig, btf_custom_path=c_btf, bpf_token_path=c_token)
            self._keep.append(owner)  # the cast below does not own the memory
            opts = ffi.cast("struct bpf_object_open_opts *", owner)
        with _libbpf.capture(logs.DEBUG) as log:  # libbpf says why an open failed at DEBUG
            if self.path is not None and object_name is None:
                ptr = lib.bpf_object__open_file(os.fsencode(self.path), opts)
            else:
                buf = ffi.from_buffer(data)
                self._keep.append((data, buf))  # libbpf may refer to the image until close
                ptr = lib.bpf_object__open_mem(buf, len(data), opts)
        if ptr == ffi.NULL:
            err = ffi.errno or errno.EINVAL
            raise ObjectFormatError(f"{where}: libbpf cannot open this object: {_last_line(log.text, err)}",
                                    err, path=where, log=log.text)
        self._ptr = ptr
        self._state = ObjectState.OPEN
        try:
            # libbpf cuts the object name at 15 bytes, maybe inside a character of a file's name
            self.name: str = ffi.string(lib.bpf_object__name(ptr)).decode("utf-8", "replace")
            self._btf: Btf | None = None
            self._programs = self._collect_programs()
            self._maps = self._collect_maps()
            if self._struct_ops_link:
                for map_ptr in (m._ptr for m in self._maps.values()):
                    if lib.bpf_map__type(map_ptr) == MapType.STRUCT_OPS:
                        _libbpf.check(lib.bpf_map__set_map_flags(map_ptr, lib.bpf_map__map_flags(map_ptr)
                                                                 | MapFlag.LINK), "struct_ops map flags")
        except BaseException as exc:
            self._ptr, self._state = ffi.NULL, ObjectState.CLOSED
            lib.bpf_object__close(ptr)
            self._keep.clear()
            if isinstance(exc, UnicodeDecodeError):
                raise ObjectFormatError(f"{where}: a program, section or map name is not UTF-8 "
                                        f"({exc.object!r})", errno.EINVAL, path=where) from None
            raise
        self._sections: dict[str, Section] = {}

    def __repr__(self) -> str:
        return f"<Object {self.name} {self._state}>"

    # ---- state ---------------------------------------------------------

    @property
    def state(self) -> ObjectState:
        """Where the object is in its life (open, loaded, failed, closed)."""
        return self._state

    @property
    def closed(self) -> bool:
        """True once ``close()`` has run."""
        return self._state is ObjectState.CLOSED

    def check_open(self) -> None:
        """Raise ClosedError once the object is closed."""
        if self._state is ObjectState.CLOSED:
            raise ClosedError(f"object {getattr(self, 'name', '?')}")

    @contextlib.contextmanager
    def _guard(self, wanted: ObjectState | None = None, doing: str = "") -> Iterator[Any]:
        """Hold the object (no close() can free libbpf's memory meanwhile); yields libbpf's
        object pointer. ``wanted``: the state the call needs, else any but closed."""
        with self._lock:
            if wanted is None:
                self.check_open()
            else:
                self.require_state(wanted, doing)
            yield self._ptr

    def require_state(self, wanted: ObjectState, doing: str) -> None:
        """Raise (ClosedError, or BpfError saying when ``doing`` is possible) unless in ``wanted``."""
        self.check_open()
        if self._state != wanted:
            hint = {ObjectState.OPEN: "before load()", ObjectState.LOADED: "after a successful load()"}[wanted]
            raise BpfError(f"{doing} is only possible {hint}; object {self.name} is {self._state}")

    # ---- contents ---------------------------------------------------------

    def _collect_programs(self) -> dict[str, Program]:
        programs: dict[str, Program] = {}
        ptr = lib.bpf_object__next_program(self._ptr, ffi.NULL)
        while ptr != ffi.NULL:
            program = Program(self, ptr)
            programs[program.name] = program
            ptr = lib.bpf_object__next_program(self._ptr, ptr)
        return programs

    def _collect_maps(self) -> dict[str, Map]:
        maps: dict[str, Map] = {}
        ptr = lib.bpf_object__next_map(self._ptr, ffi.NULL)
        while ptr != ffi.NULL:
            raw = ffi.string(lib.bpf_map__name(ptr))
            # internal maps are "<object name prefix>.bss": libbpf's cut may split a character
            name = raw.decode("utf-8", "replace") if lib.bpf_map__is_internal(ptr) else raw.decode()
            maps[name] = Map(name=name, obj=self, ptr=ptr, btf=self.btf,
                             key_type_id=int(lib.bpf_map__btf_key_type_id(ptr)),
                             value_type_id=int(lib.bpf_map__btf_value_type_id(ptr)))
            ptr = lib.bpf_object__next_map(self._ptr, ptr)
        return maps

    @property
    def btf(self) -> Btf | None:
        """The object's BTF as libbpf fixed it up at open (DATASEC sizes and offsets)."""
        self.check_open()
        if self._btf is None:
            ptr = lib.bpf_object__btf(self._ptr)
            if ptr == ffi.NULL:
                return None
            size = ffi.new("__u32 *")
            raw = lib.btf__raw_data(ptr, size)
            if raw == ffi.NULL:
                return None
            self._btf = Btf.from_bytes(bytes(ffi.buffer(raw, size[0])), name=self.name)
        return self._btf

    @property
    def programs(self) -> Mapping[str, Program]:
        """The object's programs by name."""
        self.check_open()
        return _Named(self._programs, "program", f"object {self.name}")

    def _parse_spec(self) -> ObjectSpec:
        from pybpf.spec.elf import ObjectSpec

        data, name, where = self._spec_source
        self._file_spec = ObjectSpec(data, name=name, path=where)
        self._spec_source = (b"", name, where)  # the bytes are needed no more
        return self._file_spec

    @property
    def file_spec(self) -> ObjectSpec:
        """What the file declares, as read at open (:class:`pybpf.spec.ObjectSpec`); see ``spec``."""
        return self._file_spec if self._file_spec is not None else self._parse_spec()

    @property
    def spec(self) -> ObjectSpec:
        """What the object declares now: the file as read (``file_spec``) with the edits made
        since open (each map's ``max_entries``, key/value sizes and flags, as libbpf holds them)."""
        self.check_open()
        edited = copy.copy(self.file_spec)
        edited.maps = [self._edited_map_spec(m) for m in self.file_spec.maps]
        return edited

    def _edited_map_spec(self, spec: MapSpec) -> MapSpec:
        # libbpf names internal maps "<object name, cut to fit 15 bytes>.<section>"
        libbpf_name = f"{self.name[:max(15 - len(spec.name), 0)]}{spec.name}" if spec.internal else spec.name
        live = self._maps.get(spec.name) or self._maps.get(libbpf_name)
        if live is None:
            return spec
        return dataclasses.replace(spec, max_entries=live.max_entries, key_size=live.key_size,
                                   value_size=live.value_size, flags=live.flags)

    @property
    def maps(self) -> Mapping[str, Map]:
        """Every map by libbpf's name, internal ones (``<obj>.bss``...) included; an internal map is
        also found by its section name (``obj.maps[".rodata"]``), however libbpf truncated its name."""
        self.check_open()
        return _Maps(self)

    def section(self, name: str) -> Section:
        """Global variables of a data section: ``.bss``, ``.data``, ``.rodata``, ``.data.foo``..."""
        self.check_open()
        found = self._sections.get(name)
        if found is None:
            found = Section(self, name, self._internal_map(name))
            self._sections[name] = found
        return found

    def _internal_map(self, section: str) -> Map | None:
        for map_ in self._maps.values():
            if lib.bpf_map__is_internal(map_._ptr) and _internal_section(map_.name, section):
                return map_
        return None

    @property
    def bss(self) -> Section:
        """The ``.bss`` globals (zero-copy views after load)."""
        return self.section(".bss")

    @property
    def data(self) -> Section:
        """The ``.data`` globals."""
        return self.section(".data")

    @property
    def rodata(self) -> Section:
        """The ``.rodata`` globals (settable before load, read-only after)."""
        return self.section(".rodata")

    # ---- load ------------------------------------------------------------

    def load(self, *, allow_large_maps: bool | None = None, log_level: int | None = None,
             verifier_stats: bool = False) -> Object:
        """CO-RE relocate, create the maps, and load every autoload program.

        Before the kernel is asked, the memory the object's maps would take is estimated
        (key/value sizes x max_entries, x possible CPUs for per-CPU maps); a load that would
        need more than the machine's MemAvailable is refused with ``MapMemoryError``, unless
        ``allow_large_maps=True`` (or the environment has ``PYBPF_ALLOW_LARGE_MAPS=1``).
        A ``close()`` from another thread waits until the load is done.

        ``log_level`` (1 or 2: the verifier's instruction log, 4: its statistics) is set on every
        program first; ``verifier_stats=True`` adds 4. Then ``Program.verifier_log`` and
        ``Program.verifier_stats`` tell what the verifier said about each program."""
        with self._lock:
            self.require_state(ObjectState.OPEN, "load()")
            if allow_large_maps is None:
                allow_large_maps = os.environ.get("PYBPF_ALLOW_LARGE_MAPS", "") not in ("", "0")
            if not allow_large_maps:
                check_map_memory(self.name, [m._memory_spec() for m in self._maps.values()])
            for map_ in self._maps.values():
                map_._prepare_arena()  # arena maps are pybpf's, mapped before the programs run
            if log_level is not None or verifier_stats:
                level = (log_level or 0) | (LOG_LEVEL_STATS if verifier_stats else 0)
                for program in self._programs.values():
                    program.log_level = level
            self._verifier_log_cache: dict[str, str] | None = None
            with _libbpf.capture(logs.DEBUG) as log:
                ret = lib.bpf_object__load(self._ptr)
            self.load_log = log.text
            if ret < 0:
                self._state = ObjectState.FAILED
                raise self._load_error(-ret, log.text)
            self._state = ObjectState.LOADED
            return self

    def _verifier_logs(self) -> dict[str, str]:
        """Verifier logs by program name, from libbpf's debug log of the load."""
        cached: dict[str, str] | None = getattr(self, "_verifier_log_cache", None)
        if cached is None:
            cached = {name: text for name, text in _PROG_LOG.findall(self.load_log)}
            self._verifier_log_cache = cached
        return cached

    def _load_error(self, err: int, log: str) -> BpfError:
        token = _TOKEN_FAILED.search(log)
        if token:  # libbpf >= 1.4 was asked for a token and could not make one
            return token_error(err, token[1])
        from pybpf.spec.core import relocation_error  # the CO-RE engine: only to explain a failure

        core = relocation_error(self.file_spec, log, target=self._btf_custom_path, errno=err)
        if core is not None:
            return core
        failed = _PROG_FAILED.findall(log)
        verifier = _VERIFIER_LOG.findall(log)
        verifier_log = verifier[-1] if verifier else ""
        if failed:
            name = failed[-1]
            program = self._programs.get(name)
            prog_type = program.type if program is not None else "?"
            from pybpf.kernel.features import capabilities  # only to explain a failed load

            caps = capabilities()
            if (prog_type in _REFUSED_TYPES and err == errno.EPERM and not verifier_log.strip()
                    and {"CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN"} <= caps):
                kind = _section_kind(program.section) if program is not None else _REFUSED_TYPES[prog_type]
                return NotSupportedError(
                    f"the kernel refused to load {kind} program {name!r} with EPERM before verification, "
                    f"although this process has CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN: this kernel does "
                    f"not allow fentry/fexit/fmod_ret/lsm programs (kernel lockdown)",
                    err, feature=kind, log=log)
            if err in (errno.EPERM, errno.EACCES) and not verifier_log.strip():
                needed = "CAP_NET_ADMIN" if prog_type in ("xdp", "sched_cls", "cgroup_skb", "socket_filter") \
                    else "CAP_PERFMON"
                return BpfPermissionError(
                    f"loading {prog_type} program {name!r} was refused: it needs CAP_BPF and {needed} "
                    f"(run as root or grant them{_TOKEN_HINT})", err, capability=f"CAP_BPF+{needed}", log=log)
            if verifier_log.strip():
                source = _failing_source_line(verifier_log)
                where = f" at `{source}`" if source else ""
                return VerifierError(
                    f"the verifier rejected program {name!r}{where}: {_verifier_reason(verifier_log)}",
                    err, program=name,
                    log=verifier_log, source_line=source)
            return _libbpf.make_error(err, f"loading program {name!r}: {_reason_for(log, f'prog {name!r}', err)}",
                                      log=log)
        pinned = _PIN_MISMATCH.search(log)
        if pinned:
            map_name = _MAP_FAILED.findall(log)
            which = f"map {map_name[-1]!r}: " if map_name else ""
            return _libbpf.make_error(
                err, f"loading object {self.name}: {which}couldn't reuse the map pinned at {pinned[1]}: "
                     f"{pinned[2]} (libbpf: the pinned map's type, key size, value size, max_entries or "
                     f"flags differ from this object's definition; unpin it or match the definition)",
                log=log)
        map_failed = _MAP_FAILED.findall(log)
        if map_failed and err in (errno.EPERM, errno.EACCES):
            return BpfPermissionError(f"creating map {map_failed[-1]!r} was refused: it needs CAP_BPF "
                                      f"(run as root or grant it{_TOKEN_HINT})", err, capability="CAP_BPF", log=log)
        reasons = _MAP_FAILED_REASON.findall(log)
        if reasons:
            name, reason = reasons[-1]
            return _libbpf.make_error(err, f"loading object {self.name}: creating map {name!r} "
                                           f"({self._map_summary(name)}) failed: {reason}", log=log)
        if err in (errno.EPERM, errno.EACCES):  # refused before any map or program: BTF, or a probe
            return BpfPermissionError(f"loading object {self.name} was refused ({_last_line(log, err)}): it needs "
                                      f"CAP_BPF (run as root or grant it{_TOKEN_HINT})", err, capability="CAP_BPF",
                                      log=log)
        return _libbpf.make_error(err, f"loading object {self.name}: {_last_line(log, err)}", log=log)

    def _map_summary(self, name: str) -> str:
        m = self._maps.get(name)
        if m is None:
            return "?"
        return (f"{m.type}, key {m.key_size} B, value {m.value_size} B, max_entries {m.max_entries}"
                + (f", flags {' | '.join(m.flag_names)}" if m.flags else ""))

    # ---- links -------------------------------------------------------------

    def register_link(self, link: Link) -> None:
        """Own ``link`` too: close it at ``close()`` if its caller has not."""
        self._links.append(link)
        link._on_close.append(self._forget_link)

    def _forget_link(self, link: Link) -> None:
        try:
            self._links.remove(link)
        except ValueError:
            pass

    def _attach_map(self, map_: Map) -> Link:
        """Register struct_ops map ``map_`` (``Map.attach_struct_ops``); the object owns the link too."""
        with self._guard(ObjectState.LOADED, f"registering struct_ops map {map_.name}"):
            link = _struct_ops().attach(map_)
            self.register_link(link)
            return link

    def attach(self) -> list[Link]:
        """Auto-attach every loaded program whose SEC() names its target (the others are skipped:
        attach them with the explicit verbs), and register every struct_ops map."""
        self.require_state(ObjectState.LOADED, "attach()")
        links = []
        for map_ in self._maps.values():  # struct_ops maps register their programs (as libbpf's skeletons do)
            if map_.map_type is MapType.STRUCT_OPS:
                try:
                    links.append(map_.attach_struct_ops())
                except BpfError:
                    for link in links:
                        link.close()
                    raise
        for program in self._programs.values():
            if program.prog_type is ProgType.STRUCT_OPS:
                continue
            if program.autoload and lib.bpf_program__autoattach(program._ptr) and program.auto_attachable:
                try:
                    links.append(program.attach())
                except BpfError:
                    for link in links:
                        link.close()
                    raise
        return links

    @property
    def links(self) -> list[Link]:
        """The links of this object still attached."""
        return list(self._links)

    # ---- close -----------------------------------------------------------------

    def close(self) -> None:
        """Detach links, drop mappings, release every fd. Idempotent. Waits for a ``load()``
        running in another thread."""
        with self._lock:
            if self._state is ObjectState.CLOSED:
                return
            errors = []
            for link in list(self._links):
                try:
                    link.close()
                except BpfError as exc:
                    errors.append(exc)
            self._links.clear()
            for program in self._programs.values():
                program.release()
            for section in self._sections.values():
                section._release()
            for map_ in self._maps.values():
                map_.close()
            ptr, self._ptr = self._ptr, ffi.NULL
            self._state = ObjectState.CLOSED
            lib.bpf_object__close(ptr)
            self._keep.clear()
        if errors:
            raise errors[0]



_OBJ_NAME_BYTES = 15  # libbpf keeps BPF_OBJ_NAME_LEN - 1 bytes of an object's name


def _check_object_name(name: str) -> None:
    """libbpf keeps only 15 bytes of ``object_name``: refuse a name that cut would split."""
    raw = name.encode("utf-8", "surrogateescape")
    try:
        raw[:_OBJ_NAME_BYTES].decode()
    except UnicodeDecodeError:
        raise ObjectFormatError(f"object_name {name!r}: libbpf keeps only its first {_OBJ_NAME_BYTES} "
                                f"bytes, which cuts a character in two; give a shorter name",
                                errno.EINVAL) from None


def _check_custom_btf(path: str | os.PathLike[str]) -> str:
    """A btf_custom_path must be a regular file of valid BTF (libbpf trusts it for CO-RE)."""
    p = os.fsdecode(os.fspath(path))
    if not os.path.exists(p):
        raise FileNotFoundError(errno.ENOENT, "no such BTF file", p)
    try:
        mode = os.stat(p).st_mode
    except OSError as e:
        raise ObjectFormatError(f"btf_custom_path {p}: {e.strerror}", e.errno, path=p) from None
    if not stat.S_ISREG(mode):
        raise ObjectFormatError(f"btf_custom_path {p}: is {_file_kind(mode)}, not a BTF file",
                                errno.EINVAL, path=p)
    st = os.stat(p)
    key = (os.path.realpath(p), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if os.path.realpath(p) != KERNEL_BTF_PATH and key not in _VALID_BTFS:  # the kernel's own is trusted
        try:
            Btf.from_file(p).validate()
        except ObjectFormatError as e:  # its message, not str(e): the errno is named once, below
            raise ObjectFormatError(f"btf_custom_path {e.message}", e.errno, path=p) from None
        _VALID_BTFS.add(key)  # a whole vmlinux BTF takes seconds to validate: once per file version
    return p


_VALID_BTFS: set[tuple[str, int, int, int, int]] = set()


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def _internal_section(map_name: str, section: str) -> bool:
    # libbpf names internal maps "<obj prefix><section>", e.g. "counters.bss" or "count.rodata".
    return map_name == section or map_name.endswith(section)


def _section_kind(section: str) -> str:
    return section.split("/", 1)[0].split(".", 1)[0]


_REASON_WORDS = ("fail", "invalid", "error", "unsupported", "not supported", "can't", "cannot", "unknown",
                 "missing", "unrecognized", "corrupt")


def _last_line(log: str, err: int) -> str:
    """libbpf's own explanation: the last line that reads like a reason, else the last line."""
    lines = [line.removeprefix("libbpf: ") for line in log.strip().splitlines()
             if line.startswith("libbpf: ") and "BEGIN PROG LOAD LOG" not in line]
    reasons = [line for line in lines if any(word in line.lower() for word in _REASON_WORDS)]
    if reasons:
        return reasons[-1]
    return lines[-1] if lines else os.strerror(err) if err < 4000 else _libbpf.strerror(err)


_FAILURE_WORDS = LazyPattern(r"\b(failed|failure|error|invalid|can't|cannot|couldn't|not found|unknown|"
                             r"unsupported|not supported|missing|unrecognized|no such|mismatch|refused|"
                             r"too (big|large|many)|bad)\b|: -\d+$|: -E[A-Z]+$", re.IGNORECASE)


def _reason_for(log: str, prefix: str, err: int) -> str:
    """libbpf's error line for ``prefix`` (``prog 'x'``), else :func:`_last_line`.

    The load log is captured with libbpf's debug lines (``relo #0: <byte_off> ...``
    of relocations that succeeded), which carry the same prefix: the reason is the
    first line for ``prefix`` that reads as a failure and is not one of libbpf's
    generic closing words (``failed to load: -3``).
    """
    mine = []
    for line in log.strip().splitlines():
        text = line.removeprefix("libbpf: ").strip()
        if text.startswith(prefix + ": ") and not any(g in text for g in _GENERIC + _NOT_FAILURES):
            mine.append(text.removeprefix(prefix + ": "))
    for text in mine:
        if _FAILURE_WORDS.search(text):
            return text
    return _last_line(log, err)


def _verifier_reason(verifier_log: str) -> str:
    """The verifier's own reason: the last line before its "processed N insns" summary."""
    lines = [line for line in verifier_log.strip().splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.startswith("processed ") and " insns" in line:
            return lines[index - 1] if index else line
    return lines[-1] if lines else "no verifier log"


def _failing_source_line(verifier_log: str) -> str | None:
    """The last BTF line-info comment (``; code @ file:line``) before the error."""
    source = None
    for line in verifier_log.splitlines():
        if line.startswith("; "):
            source = line[2:].strip()
    return source
