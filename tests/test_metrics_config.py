"""Exporter configs without a kernel: errors name file, key and line; bucket bounds; decoders."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pybpf.metrics import ConfigError, bucket_bounds, load_config, parse_config
from pybpf.metrics.config import Buckets
from pybpf.metrics.decoders import DECODERS
from pybpf.tools import config_names, config_path

GOOD = """\
[object]
path = "execsnoop"

[object.rodata]
ignore_failed = false

[[counter]]
name = "x_execs_total"
map = "exec_counts"
labels = [
  { name = "comm", field = "comm", decoder = "cstring" },
  { name = "errno", field = "errno_", decoder = "errno" },
]

[[histogram]]
name = "x_latency_seconds"
map = "hist"
buckets = { type = "log2", scale = 1e-6 }
"""


def _error(text: str, tmp_path: Path) -> ConfigError:
    path = tmp_path / "tool.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(str(path))
    return info.value


def test_a_good_config_parses() -> None:
    cfg = parse_config(GOOD, "good.toml")
    assert cfg.object == "execsnoop" and cfg.rodata == {"ignore_failed": False}
    counter, hist = cfg.metrics
    assert [(lab.name, lab.field, lab.decoder) for lab in counter.labels] == \
        [("comm", "comm", "cstring"), ("errno", "errno_", "errno")]
    assert hist.buckets == Buckets("log2", 1e-6)


@pytest.mark.parametrize("old, new, line, key, phrase", [
    ('name = "x_execs_total"', 'name = "x_execs"', 8, "counter[0].name", "end in _total"),
    ('name = "x_latency_seconds"', 'name = "x_latency_total"', 16, "histogram[0].name", "only counters"),
    ('name = "x_execs_total"', 'name = "x-execs_total"', 8, "counter[0].name", "not a Prometheus metric name"),
    ('decoder = "errno" }', 'decoder = "errnos" }', 12, "counter[0].labels[1].decoder", "unknown decoder"),
    ('{ name = "comm", field', '{ name = "le", field', 11, "", ""),  # le is fine outside histograms
    ('type = "log2"', 'type = "log3"', 18, "histogram[0].buckets.type", "'log2' or 'linear'"),
    ('map = "hist"', 'mapp = "hist"', 17, "histogram[0].mapp", "unknown key"),
    ('ignore_failed = false', 'ignore_failed = false\nbogus', 6, "", "not valid TOML"),
    ('path = "execsnoop"', 'path = 7', 2, "object.path", "must be a string"),
])
def test_errors_name_file_key_and_line(tmp_path: Path, old: str, new: str, line: int, key: str,
                                       phrase: str) -> None:
    text = GOOD.replace(old, new)
    assert text != GOOD
    if not phrase:
        parse_config(text)
        return
    err = _error(text, tmp_path)
    assert err.line == line, str(err)
    assert err.key == key
    assert phrase in str(err)
    assert f"tool.toml:{line}: " in str(err)


def test_missing_pieces(tmp_path: Path) -> None:
    assert "object: missing" in str(_error('[[counter]]\nname = "a_total"\nmap = "m"\n', tmp_path))
    err = _error('[object]\npath = "x"\n', tmp_path)
    assert "no metrics" in str(err)
    err = _error('[object]\npath = "x"\n[[gauge]]\nname = "g"\n', tmp_path)
    assert err.line == 3 and "exactly one of map" in str(err)
    err = _error('[object]\npath = "x"\n[[gauge]]\nname = "g"\nmap = "m"\n[[gauge]]\nname = "g"\nmap = "n"\n',
                 tmp_path)
    assert err.key == "gauge[1].name" and err.line == 7 and "defined twice" in str(err)


def test_errors_in_arrays_point_at_the_element_not_a_later_brace(tmp_path: Path) -> None:
    """An element of an array of strings is found on its own line, not by counting ``{`` of
    the labels further down (which put an ``object.programs`` error on line 15)."""
    text = ('[object]\npath = "x"\n# the programs\nprograms = [\n  "a",\n  7,\n]\n'
            '[[counter]]\nname = "a_total"\nmap = "m"\nlabels = [\n  { name = "comm", field = "comm" },\n'
            '  { name = "e", field = "e", decoder = "bogus" },\n]\n')
    err = _error(text, tmp_path)
    assert err.key == "object.programs[1]" and err.line == 6, str(err)
    err = _error(text.replace("  7,", '  "b",'), tmp_path)
    assert err.key == "counter[0].labels[1].decoder" and err.line == 13, str(err)
    err = _error('[object]\npath = "x"\nprograms = ["a", 2]\n[[counter]]\nname = "a_total"\nglobal = "g"\n',
                 tmp_path)
    assert err.line == 3


def test_shipped_configs_parse_and_follow_naming_rules() -> None:
    assert set(config_names()) >= {"execsnoop", "opensnoop", "syscount", "runqlat", "tcpstates"}
    for name in config_names():
        cfg = load_config(config_path(name))
        assert load_config(name).file == cfg.file           # by tool name too
        for spec in cfg.metrics:
            assert spec.name.startswith("pybpf_")
            assert spec.name.endswith("_total") == (spec.kind == "counter")
            if spec.scale != 1.0 or spec.buckets is not None and spec.buckets.scale != 1.0:
                assert "_seconds" in spec.name                  # scaled to base units: seconds
            # a label any local user can vary (a command name, a stack, an address) is bounded by max_series
            free = [lab.name for lab in spec.labels if lab.decoder in {"cstring", "kstack", "ustack", "inet", "ipv4",
                                                                      "ipv6", "hex", "cgroup"}]
            assert not free or spec.max_series is not None, (name, spec.name, free)


def test_log2_bounds_follow_libbpf_tools_slots() -> None:
    b = bucket_bounds(Buckets("log2", 1.0), 6)
    # slot 0: {0, 1}, slot 1: [2, 3], slot 2: [4, 7] ... the last slot takes the overflow
    assert b == [1.0, 3.0, 7.0, 15.0, 31.0, math.inf]
    us = bucket_bounds(Buckets("log2", 1e-6), 4)
    assert us[:3] == [1e-06, 3e-06, 7e-06]
    lin = bucket_bounds(Buckets("linear", 1.0, step=10, start=0), 4)
    assert lin == [9.0, 19.0, 29.0, math.inf]


def test_decoders() -> None:
    assert DECODERS["syscall"](39) == "getpid"
    assert DECODERS["errno"](2) == DECODERS["errno"](-2) == "ENOENT"
    assert DECODERS["errno"](0) == "OK"
    assert DECODERS["cstring"](b"bash\0garbage") == "bash"
    assert DECODERS["ipv4"](bytes([127, 0, 0, 1])) == "127.0.0.1"
    assert DECODERS["inet"](bytes([10, 1, 2, 3]) + bytes(12)) == "10.1.2.3"
    assert DECODERS["ipv6"](bytes(15) + b"\x01") == "::1"
    assert DECODERS["tcp_state"](10) == "LISTEN"
    assert DECODERS["hex"](255) == "0xff"
