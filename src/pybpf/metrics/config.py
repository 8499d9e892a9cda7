"""Exporter config files (TOML): parsing, validation, and errors that name file, key and line.

Owns the config format of ``pybpf export`` (documented with a full example in the
README): one file per tool naming the BPF object, its ``.rodata`` settings, the
programs to attach and the metrics (counters, gauges, histograms) read from its
maps and globals. Checks that need the object (does the map exist, has the key
that field) are made by :mod:`pybpf.metrics.collector` and reported through the
same :class:`ConfigError`.

TOML because the standard library reads it (``tomllib``, Python 3.11; ``tomli``,
the same parser, on 3.10) and it has no implicit typing surprises.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

from pybpf.metrics.decoders import decoder_names

__all__ = ["Buckets", "Config", "ConfigError", "Label", "MetricSpec", "PerfEventSpec", "PythonSpec",
           "load_config", "parse_config"]

METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
KINDS = ("counter", "gauge", "histogram")


class ConfigError(ValueError):
    """A config mistake: ``FILE:LINE: KEY: what is wrong`` (line when it can be found)."""

    def __init__(self, file: str, key: str, message: str, line: int | None = None) -> None:
        self.file, self.key, self.line, self.reason = file, key, line, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


@dataclass(frozen=True)
class Label:
    """One label of a metric: its name, the key field it comes from, the decoder."""

    name: str
    field: str | None      # None: the whole key (a scalar key, or an array's index)
    decoder: str
    path: tuple[Any, ...]  # where it is in the config, for errors


@dataclass(frozen=True)
class Buckets:
    """How a bucket index turns into an ``le`` bound."""

    type: str              # "log2" or "linear"
    scale: float = 1.0     # multiply bounds (e.g. 1e-6: microseconds -> seconds)
    step: float = 1.0      # linear only
    start: float = 0.0     # linear only


@dataclass(frozen=True)
class MetricSpec:
    """One metric of a config."""

    kind: str
    name: str
    help: str
    map: str | None
    glob: str | None
    labels: tuple[Label, ...]
    value_field: str | None
    scale: float
    skip_zero: bool
    buckets: Buckets | None
    bucket_field: str | None
    sum_global: str | None
    sum_field: str | None
    sum_scale: float
    path: tuple[Any, ...]
    max_series: int | None = None   # label sets beyond it fold into one "other" series


@dataclass(frozen=True)
class PythonSpec:
    """A ``[python]`` config: Python stacks sampled from BPF (``pybpf.tools.pyprofile``), the top
    functions of each CPython process as counters (``pybpf.metrics.python``)."""

    frequency: int = 49          # samples per second per CPU
    top: int = 10                # functions per process; the others add up in function="other"
    max_processes: int = 20      # processes sampled at once
    comm: str = ""               # a regex the process's comm must match ("": any CPython pybpf can read)
    rescan: float = 10.0         # seconds between looks for new Python processes


@dataclass(frozen=True)
class PerfEventSpec:
    """``[[object.perf_event]]``: a perf event opened on every online CPU, running ``program``
    (a ``SEC("perf_event")`` program, which has no target of its own) at each sample."""

    program: str
    event: str             # perf's name: "cpu-clock", "cycles", ... (pybpf.perf)
    frequency: int | None  # samples per second on each CPU, or
    period: int | None     # one sample every N events
    path: tuple[Any, ...]


@dataclass
class Config:
    """A parsed config: the object, rodata, programs and metrics, plus where it came from."""

    file: str
    text: str
    object: str
    rodata: dict[str, Any]
    programs: list[str] | None
    metrics: list[MetricSpec] = field(default_factory=list)
    python: PythonSpec | None = None
    perf_events: list[PerfEventSpec] = field(default_factory=list)

    def error(self, path: tuple[Any, ...], message: str) -> ConfigError:
        """A ConfigError for the config key at ``path`` (line found in the text)."""
        return ConfigError(self.file, key_text(path), message, locate(self.text, path))

    def object_path(self) -> str:
        """The object to open: a bundled name (``execsnoop``) or a path relative to the file."""
        if "/" not in self.object and not self.object.endswith(".o"):
            import pybpf
            try:
                return pybpf.bundled(self.object)
            except FileNotFoundError as exc:
                raise self.error(("object", "path"), str(exc)) from None
        path = Path(self.object)
        if not path.is_absolute():
            path = Path(self.file).parent / path
        if not path.exists():
            raise self.error(("object", "path"), f"no such file: {path}")
        return str(path)


def key_text(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def locate(text: str, path: tuple[Any, ...]) -> int | None:
    """The line (1-based) of the config key at ``path``, or of its nearest enclosing table."""
    tables: dict[tuple[Any, ...], int] = {(): 1}
    keys: dict[tuple[Any, ...], int] = {}
    counts: dict[tuple[str, ...], int] = {}
    current: tuple[Any, ...] = ()
    lines = text.splitlines()
    for no, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith('"') else raw.strip()
        if line.startswith("[["):
            parts = tuple(p.strip().strip('"') for p in line[2:line.find("]]")].split("."))
            idx = counts.get(parts, 0)
            counts[parts] = idx + 1
            current = parts + (idx,)
            tables[current] = no
        elif line.startswith("["):
            current = tuple(p.strip().strip('"') for p in line[1:line.find("]")].split("."))
            tables[current] = no
        elif "=" in line:
            key = tuple(p.strip().strip('"') for p in line.split("=", 1)[0].split("."))
            keys.setdefault(current + key, no)
    for n in range(len(path), 0, -1):
        prefix = tuple(path[:n])
        if prefix in keys:
            start = keys[prefix]
            rest = path[n:]
            if rest and isinstance(rest[0], int):   # an element of the array value of that key
                spans = _array_elements(lines, start)
                if rest[0] < len(spans):
                    first, last = spans[rest[0]]
                    if len(rest) > 1:
                        for m in range(first, last + 1):
                            if re.search(rf"\b{re.escape(str(rest[1]))}\s*=", lines[m - 1]):
                                return m
                    return first
            return start
        if prefix in tables:
            return tables[prefix]
    return None


def _array_elements(lines: list[str], start: int) -> list[tuple[int, int]]:
    """(first line, last line) of each element of the array that is the value of the key on
    line ``start`` (1-based), read by brackets, braces, strings and comments."""
    spans: list[tuple[int, int]] = []
    depth = 0
    begun = False
    quote = ""
    for no in range(start, len(lines) + 1):
        line = lines[no - 1]
        i = line.index("=") + 1 if no == start and "=" in line else 0
        while i < len(line):
            ch = line[i]
            if quote:
                if ch == "\\" and quote == '"':
                    i += 1
                elif ch == quote:
                    quote = ""
            elif ch == "#":
                break
            elif ch in "\"'":
                quote = ch
                if depth == 1:
                    spans.append((no, no))
            elif ch in "[{":
                if depth == 1 and begun:
                    spans.append((no, no))
                depth += 1
                begun = True
            elif ch in "]}":
                depth -= 1
                if depth == 0:
                    return spans
                if depth == 1 and spans:
                    spans[-1] = (spans[-1][0], no)
            elif depth == 1 and not ch.isspace() and ch != ",":
                if not spans or spans[-1][1] != no or line[i - 1] in " ,[":
                    spans.append((no, no))
            i += 1
        if depth == 1 and spans and quote:
            spans[-1] = (spans[-1][0], no)
    return spans


def load_config(path: str | Path) -> Config:
    """Read and check one config file (or a shipped tool's, by name: ``"execsnoop"``)."""
    p = Path(path)
    if not p.exists() and "/" not in str(path) and not str(path).endswith(".toml"):
        from pybpf.tools import config_path
        try:
            p = config_path(str(path))
        except FileNotFoundError as exc:
            raise ConfigError(str(path), "", str(exc)) from None
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(str(p), "", f"cannot read: {exc.strerror or exc}") from None
    return parse_config(text, str(p))


def parse_config(text: str, file: str = "<config>") -> Config:
    """Parse and check config text (``file`` only names it in errors)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        raise ConfigError(file, "", f"not valid TOML: {exc}", int(m.group(1)) if m else None) from None
    cfg = Config(file=file, text=text, object="", rodata={}, programs=None)
    if "python" in doc:
        _known(cfg, doc, (), {"python"})
        cfg.python = _python(cfg, doc)
        return cfg
    _known(cfg, doc, (), {"object", "python", *KINDS})
    obj = _get(cfg, doc, ("object",), dict, required=True)
    _known(cfg, obj, ("object",), {"path", "rodata", "programs", "perf_event"})
    cfg.object = _get(cfg, obj, ("object", "path"), str, required=True)
    cfg.rodata = _get(cfg, obj, ("object", "rodata"), dict) or {}
    progs = _get(cfg, obj, ("object", "programs"), list)
    if progs is not None:
        for i, p in enumerate(progs):
            if not isinstance(p, str):
                raise cfg.error(("object", "programs", i), "must be a program name (a string)")
        cfg.programs = list(progs)
    for i, entry in enumerate(_get(cfg, obj, ("object", "perf_event"), list) or []):
        cfg.perf_events.append(_perf_event(cfg, entry, ("object", "perf_event", i)))
    names: set[str] = set()
    for kind in KINDS:
        entries = _get(cfg, doc, (kind,), list) or []
        for i, entry in enumerate(entries):
            path = (kind, i)
            if not isinstance(entry, dict):
                raise cfg.error(path, f"each [[{kind}]] must be a table")
            spec = _metric(cfg, kind, entry, path)
            if spec.name in names:
                raise cfg.error(path + ("name",), f"metric {spec.name!r} is defined twice")
            names.add(spec.name)
            cfg.metrics.append(spec)
    if not cfg.metrics:
        raise ConfigError(file, "", "no metrics: add at least one [[counter]], [[gauge]] or [[histogram]]", None)
    return cfg


def _python(cfg: Config, doc: dict[str, Any]) -> PythonSpec:
    table = _get(cfg, doc, ("python",), dict, required=True)
    path = ("python",)
    _known(cfg, table, path, {"frequency", "top", "max_processes", "comm", "rescan"})
    values: dict[str, Any] = {}
    for key, low, high in (("frequency", 1, 10_000), ("top", 1, 1000), ("max_processes", 1, 1000)):
        if key in table:
            v = table[key]
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
                raise cfg.error(path + (key,), f"must be a whole number {low}..{high}, not {v!r}")
            values[key] = v
    if "rescan" in table:
        values["rescan"] = _num(cfg, table, path + ("rescan",), 10.0)
        if values["rescan"] <= 0:
            raise cfg.error(path + ("rescan",), "must be > 0 seconds")
    comm = _get(cfg, table, path + ("comm",), str)
    if comm is not None:
        try:
            re.compile(comm)
        except re.error as exc:
            raise cfg.error(path + ("comm",), f"not a regular expression: {exc}") from None
        values["comm"] = comm
    return PythonSpec(**values)


def _perf_event(cfg: Config, entry: Any, path: tuple[Any, ...]) -> PerfEventSpec:
    if not isinstance(entry, dict):
        raise cfg.error(path, "each [[object.perf_event]] must be a table")
    _known(cfg, entry, path, {"program", "event", "frequency", "period"})
    program = _get(cfg, entry, path + ("program",), str, required=True)
    event = _get(cfg, entry, path + ("event",), str) or "cpu-clock"
    rates = {}
    for key in ("frequency", "period"):
        value = entry.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise cfg.error(path + (key,), f"must be a whole number >= 1, not {value!r}")
        rates[key] = value
    if (rates["frequency"] is None) == (rates["period"] is None):
        raise cfg.error(path, "give exactly one of frequency = HZ or period = EVENTS")
    return PerfEventSpec(program, event, rates["frequency"], rates["period"], path)


_METRIC_KEYS = {"name", "help", "map", "global", "labels", "value_field", "scale", "skip_zero", "max_series"}
_HIST_KEYS = {"buckets", "bucket_field", "sum"}


def _metric(cfg: Config, kind: str, entry: dict[str, Any], path: tuple[Any, ...]) -> MetricSpec:
    _known(cfg, entry, path, _METRIC_KEYS | (_HIST_KEYS if kind == "histogram" else set()))
    name = _get(cfg, entry, path + ("name",), str, required=True)
    if not METRIC_NAME.match(name):
        raise cfg.error(path + ("name",), f"{name!r} is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)")
    if kind == "counter" and not name.endswith("_total"):
        raise cfg.error(path + ("name",), f"counter names end in _total (Prometheus naming): {name}_total?")
    if kind != "counter" and name.endswith("_total"):
        raise cfg.error(path + ("name",), f"only counters end in _total; {kind} {name!r}")
    if kind == "histogram" and name.endswith(("_bucket", "_count", "_sum")):
        raise cfg.error(path + ("name",), "a histogram name may not end in _bucket, _count or _sum")
    help_text = _get(cfg, entry, path + ("help",), str) or name
    map_name = _get(cfg, entry, path + ("map",), str)
    glob = _get(cfg, entry, path + ("global",), str)
    if (map_name is None) == (glob is None):
        raise cfg.error(path, "give exactly one of map = \"MAP\" or global = \"VARIABLE\"")
    labels: list[Label] = []
    seen: set[str] = set()
    for j, lab in enumerate(_get(cfg, entry, path + ("labels",), list) or []):
        lpath = path + ("labels", j)
        if not isinstance(lab, dict):
            raise cfg.error(lpath, 'a label is an inline table: { name = "comm", field = "comm" }')
        _known(cfg, lab, lpath, {"name", "field", "decoder"})
        lname = _get(cfg, lab, lpath + ("name",), str, required=True)
        if not LABEL_NAME.match(lname) or lname.startswith("__") or (kind == "histogram" and lname == "le"):
            raise cfg.error(lpath + ("name",), f"{lname!r} is not a usable label name")
        if lname in seen:
            raise cfg.error(lpath + ("name",), f"label {lname!r} given twice")
        seen.add(lname)
        decoder = _get(cfg, lab, lpath + ("decoder",), str) or "none"
        if decoder not in decoder_names():
            raise cfg.error(lpath + ("decoder",), f"unknown decoder {decoder!r}; decoders: {', '.join(decoder_names())}")
        labels.append(Label(lname, _get(cfg, lab, lpath + ("field",), str), decoder, lpath))
    if glob is not None and labels:
        raise cfg.error(path + ("labels",), "a global has no key to take labels from")
    max_series = entry.get("max_series")
    if max_series is not None:
        if isinstance(max_series, bool) or not isinstance(max_series, int) or max_series < 1:
            raise cfg.error(path + ("max_series",), f"must be a whole number >= 1, not {max_series!r}")
        if not labels:
            raise cfg.error(path + ("max_series",), "limits label sets: this metric has no labels")
    buckets = None
    sum_global = sum_field = None
    sum_scale = 1.0
    if kind == "histogram":
        b = _get(cfg, entry, path + ("buckets",), dict, required=True)
        bpath = path + ("buckets",)
        _known(cfg, b, bpath, {"type", "scale", "step", "start"})
        btype = _get(cfg, b, bpath + ("type",), str, required=True)
        if btype not in ("log2", "linear"):
            raise cfg.error(bpath + ("type",), f"bucket type is 'log2' or 'linear', not {btype!r}")
        buckets = Buckets(btype, _num(cfg, b, bpath + ("scale",), 1.0), _num(cfg, b, bpath + ("step",), 1.0),
                          _num(cfg, b, bpath + ("start",), 0.0))
        if btype == "linear" and buckets.step <= 0:
            raise cfg.error(bpath + ("step",), "must be > 0")
        s = _get(cfg, entry, path + ("sum",), dict)
        if s is not None:
            _known(cfg, s, path + ("sum",), {"global", "field", "scale"})
            sum_global = _get(cfg, s, path + ("sum", "global"), str)
            sum_field = _get(cfg, s, path + ("sum", "field"), str)
            if (sum_global is None) == (sum_field is None):
                raise cfg.error(path + ("sum",), 'give one of global = "VARIABLE" or field = "VALUE_FIELD"')
            sum_scale = _num(cfg, s, path + ("sum", "scale"), 1.0)
    return MetricSpec(kind=kind, name=name, help=help_text, map=map_name, glob=glob, labels=tuple(labels),
                      value_field=_get(cfg, entry, path + ("value_field",), str),
                      scale=_num(cfg, entry, path + ("scale",), 1.0),
                      skip_zero=bool(_get(cfg, entry, path + ("skip_zero",), bool)),
                      buckets=buckets, bucket_field=_get(cfg, entry, path + ("bucket_field",), str),
                      sum_global=sum_global, sum_field=sum_field, sum_scale=sum_scale, path=path,
                      max_series=max_series)


def _known(cfg: Config, table: dict[str, Any], path: tuple[Any, ...], allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            raise cfg.error(path + (key,), f"unknown key; expected one of {', '.join(sorted(allowed))}")


_TYPE_NAMES = {str: "a string", dict: "a table", list: "an array", bool: "true or false"}


def _get(cfg: Config, table: dict[str, Any], path: tuple[Any, ...], typ: type, required: bool = False) -> Any:
    key = path[-1]
    if key not in table:
        if required:
            raise cfg.error(path, "missing (required)")
        return None
    value = table[key]
    if not isinstance(value, typ) or (typ is not bool and isinstance(value, bool)):
        raise cfg.error(path, f"must be {_TYPE_NAMES.get(typ, typ.__name__)}, not {type(value).__name__}")
    return value


def _num(cfg: Config, table: dict[str, Any], path: tuple[Any, ...], default: float) -> float:
    value = table.get(path[-1], default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise cfg.error(path, f"must be a number, not {type(value).__name__}")
    return float(value)
