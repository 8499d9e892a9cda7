"""The kinds tables (pybpf.kinds) against libbpf's own names and the uapi numbers."""

from __future__ import annotations

import pytest

from pybpf._sys.libbpf import ffi, lib
from pybpf.kinds import AttachType, LinkType, MapFlag, MapType, ProgType, UpdateFlag

_LIBBPF_NAMES = [
    (MapType, lib.libbpf_bpf_map_type_str),
    (ProgType, lib.libbpf_bpf_prog_type_str),
    (AttachType, lib.libbpf_bpf_attach_type_str),
    (LinkType, lib.libbpf_bpf_link_type_str),
]


@pytest.mark.parametrize("kind,libbpf_name", _LIBBPF_NAMES, ids=lambda x: getattr(x, "__name__", ""))
def test_every_member_libbpf_knows_has_libbpf_name(kind, libbpf_name) -> None:
    """Each number libbpf 1.1 names is in the table under the same name; members newer than
    the installed libbpf are the only ones it does not name."""
    known = 0
    for member in kind:
        c = libbpf_name(int(member))
        if c == ffi.NULL:
            continue
        known += 1
        assert ffi.string(c).decode() == member.c_name, member
    assert known >= len(kind) - 6  # libbpf 1.1 knows all but the newest few
    # and libbpf names nothing this table lacks
    last = max(int(m) for m in kind)
    for number in range(last + 1, last + 8):
        assert libbpf_name(number) == ffi.NULL or kind.name_of(number).startswith("unknown(")


def test_parse_accepts_names_constants_and_numbers() -> None:
    assert MapType.parse("percpu_hash") is MapType.PERCPU_HASH
    assert MapType.parse("BPF_MAP_TYPE_PERCPU_HASH") is MapType.PERCPU_HASH
    assert MapType.parse(27) is MapType.RINGBUF
    assert ProgType.parse("BPF_PROG_TYPE_XDP") is ProgType.XDP
    assert UpdateFlag.parse("noexist") == 1
    with pytest.raises(ValueError, match="unknown map type 'hashh'; known: unspec, hash"):
        MapType.parse("hashh")
    with pytest.raises(ValueError, match="unknown program type number 999"):
        ProgType.parse(999)
    assert MapType.name_of(999) == "unknown(999)"
    # a kernel number newer than the table: no traits instead of a ValueError
    assert MapType.of(999, MapType.UNSPEC) is MapType.UNSPEC and MapType.of(2, MapType.UNSPEC) is MapType.ARRAY
    assert not MapType.of(999, MapType.UNSPEC).per_cpu


def test_traits_partition_as_the_kernel_behaves() -> None:
    assert MapType.PERCPU_ARRAY.per_cpu and MapType.PERCPU_ARRAY.array_like
    assert MapType.HASH.hash_like and not MapType.HASH.array_like
    assert MapType.QUEUE.keyless and MapType.BLOOM_FILTER.keyless and not MapType.ARRAY.keyless
    assert MapType.HASH_OF_MAPS.map_in_map and MapType.HASH_OF_MAPS.hash_like
    assert MapType.RINGBUF.stream and MapType.RINGBUF.sized_in_bytes and not MapType.PERF_EVENT_ARRAY.sized_in_bytes
    assert ProgType.XDP.networking and not ProgType.TRACEPOINT.networking
    assert ProgType.RAW_TRACEPOINT.test_run_without_repeat and not ProgType.XDP.test_run_without_repeat
    assert ProgType.CGROUP_SKB.cgroup and ProgType.CGROUP_SKB.networking


def test_map_flags_names_and_parse() -> None:
    assert MapFlag.parse(["mmapable", "BPF_F_RDONLY_PROG"]) == (1 << 10) | (1 << 7)
    assert MapFlag.parse("no_prealloc") == 1
    assert MapFlag.names((1 << 10) | (1 << 30)) == ["MMAPABLE", hex(1 << 30)]
    with pytest.raises(ValueError, match="unknown map flag 'mmapabel'"):
        MapFlag.parse("mmapabel")
