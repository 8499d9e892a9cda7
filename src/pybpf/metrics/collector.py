"""A prometheus_client collector over loaded BPF objects: maps and globals read at scrape time.

Owns turning map contents into metric families, by the fastest read pybpf has:
a ``BPF_F_MMAPABLE`` array is a live numpy view (a scrape is one memcpy, no
syscall); hash and other maps are read with one batch lookup per scrape
(``BPF_MAP_LOOKUP_BATCH``); per-CPU values are summed over CPUs; globals are read
through the section's mmapped view. Each map is read once per scrape, however
many metrics use it. Labels come from key fields named through BTF, decoded by
:mod:`pybpf.metrics.decoders`. Bucket arrays become histograms whose ``le`` bounds
follow the bucket convention of libbpf-tools (see :func:`bucket_bounds`).

Two rules keep PromQL right over maps whose keys come and go:

- a counter or histogram series that appears after the first collection (a new
  ``comm``) is reported at 0 the first time it is seen, and with its value from
  the next collection on, so ``increase()`` counts its first burst (Prometheus
  cannot count the increase of a series whose first sample already holds it);
- ``max_series = N`` keeps the first N label sets seen and folds the others into
  one series whose labels all read ``other``; ``pybpf_export_folded_series``
  says per metric how many label sets were folded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import threading

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

import pybpf
from pybpf.metrics.config import Buckets, Config, MetricSpec
from pybpf.metrics.decoders import CachedDecoder

__all__ = ["BpfCollector", "ObjectMetrics", "bucket_bounds"]

_INF = float("inf")
OTHER = "other"


def bucket_bounds(buckets: Buckets, n: int) -> list[float]:
    """The ``le`` bound of each of ``n`` slots; the last slot is the overflow bucket (+Inf).

    log2: slot ``i`` holds integers ``v`` with ``floor(log2(v)) == i``, so ``le = 2**(i+1) - 1``
    (slot 0 holds 0 and 1); linear: slot ``i`` holds ``[start + i*step, start + (i+1)*step)``,
    so for integer values ``le = start + (i+1)*step - 1``. Bounds are multiplied by ``scale``.
    BPF programs clamp values past the last slot into it, so it becomes the +Inf bucket.
    """
    if buckets.type == "log2":
        raw = [float((1 << (i + 1)) - 1) for i in range(n)]
    else:
        raw = [buckets.start + (i + 1) * buckets.step - 1 for i in range(n)]
    out = [float(f"{b * buckets.scale:.12g}") for b in raw]  # 15e-06, not 1.4999999999999999e-05
    if out:
        out[-1] = _INF
    return out


class _MapReader:
    """Reads one map per scrape: a live view for mmapable arrays, a batch lookup otherwise."""

    def __init__(self, m: pybpf.Map) -> None:
        self.map = m
        self.percpu = m.type.startswith("percpu")
        self._view: np.ndarray | None = None
        self._index: np.ndarray | None = None
        if m.type == "array" and "MMAPABLE" in m.flag_names:
            self._view = m.view()
            self._index = np.arange(m.max_entries, dtype=m.key_dtype)
            self.how = "mmap view"
        else:
            self.how = "batch lookup" if m.batch_supported else "per-key lookups"

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        if self._view is not None:
            assert self._index is not None
            return self._index, self._view.copy()
        return self.map.lookup_batch()


class _Metric:
    """One configured metric bound to its object: where to read, how to label, how to scale."""

    def __init__(self, cfg: Config, spec: MetricSpec, obj: pybpf.Object) -> None:
        self.spec = spec
        self.reader: _MapReader | None = None
        self.glob: tuple[pybpf.Section, str] | None = None
        self.decoders = [CachedDecoder(lab.decoder) for lab in spec.labels]
        self._lock = threading.Lock()          # scrapes may run concurrently
        self._collections = 0
        self._seen: set[tuple[str, ...]] = set()
        self._kept: set[tuple[str, ...]] = set()
        self._folded: set[tuple[str, ...]] = set()
        if spec.map is not None:
            if spec.map not in obj.maps:
                user = [n for n in obj.maps if "." not in n]
                raise cfg.error(spec.path + ("map",), f"no map {spec.map!r} in {cfg.object}; maps: {', '.join(user)}")
            m = obj.maps[spec.map]
            if m.type in ("ringbuf", "perf_event_array", "user_ringbuf", "queue", "stack", "bloom_filter"):
                raise cfg.error(spec.path + ("map",), f"map {spec.map!r} is a {m.type}: it has no keys to read")
            self.reader = _MapReader(m)
            self._check_fields(cfg, m)
        else:
            assert spec.glob is not None
            self.glob = _find_global(cfg, spec, obj)
            if spec.value_field is not None:
                dtype = self.glob[0].dtype_of(spec.glob)
                _need_field(cfg, spec.path + ("value_field",), dtype, spec.value_field, "the global")
        if spec.sum_global is not None:
            self.sum_glob: tuple[pybpf.Section, str] | None = _find_global(
                cfg, spec, obj, name=spec.sum_global, key=("sum", "global"))
        else:
            self.sum_glob = None

    def _check_fields(self, cfg: Config, m: pybpf.Map) -> None:
        spec = self.spec
        kdt, vdt = m.key_dtype, m.value_dtype
        for lab in spec.labels:
            if lab.field is None:
                if kdt.names:
                    raise cfg.error(lab.path, f"the key of {spec.map!r} is a struct: name a field "
                                              f"(field = one of {', '.join(kdt.names)})")
            else:
                _need_field(cfg, lab.path + ("field",), kdt, lab.field, f"the key of {spec.map!r}")
        if spec.value_field is not None:
            _need_field(cfg, spec.path + ("value_field",), vdt, spec.value_field, f"the value of {spec.map!r}")
        elif vdt.names:
            raise cfg.error(spec.path, f"the value of {spec.map!r} is a struct: say which field "
                                       f"(value_field = one of {', '.join(vdt.names)})")
        if spec.bucket_field is not None:
            _need_field(cfg, spec.path + ("bucket_field",), kdt, spec.bucket_field, f"the key of {spec.map!r}")
        elif spec.kind == "histogram" and kdt.names:
            raise cfg.error(spec.path, f"the key of {spec.map!r} is a struct: say which field is the bucket "
                                       f"(bucket_field = one of {', '.join(kdt.names)})")
        if spec.sum_field is not None:
            _need_field(cfg, spec.path + ("sum", "field"), vdt, spec.sum_field, f"the value of {spec.map!r}")

    # ---- reading -------------------------------------------------------------------------

    def _values(self, values: np.ndarray, field: str | None) -> np.ndarray:
        col = values if field is None else values[field]
        if self.reader is not None and self.reader.percpu:
            col = col.sum(axis=1)
        return col

    def _labels(self, keys: np.ndarray) -> list[tuple[str, ...]]:
        columns = []
        for lab, dec in zip(self.spec.labels, self.decoders):
            col = keys if lab.field is None else keys[lab.field]
            columns.append(dec.many(_plain_column(col)))
        return list(zip(*columns)) if columns else [()] * len(keys)

    def collect(self, cache: dict[str, tuple[np.ndarray, np.ndarray]]) -> Metric:
        spec = self.spec
        label_names = [lab.name for lab in spec.labels]
        if self.glob is not None:
            section, name = self.glob
            value = section[name]
            if spec.value_field is not None:
                value = value[spec.value_field]
            family = _family(spec, label_names)
            family.add_metric([], float(value) * spec.scale)
            return family
        assert self.reader is not None and spec.map is not None
        if spec.map not in cache:
            cache[spec.map] = self.reader.read()
        keys, values = cache[spec.map]
        if spec.kind == "histogram":
            return self._histogram(keys, values, label_names)
        vals = self._values(values, spec.value_field)
        if spec.skip_zero and len(vals):
            nz = np.nonzero(vals)[0]
            keys, vals = keys[nz], vals[nz]
        family = _family(spec, label_names)
        scaled = (vals * spec.scale).tolist() if spec.scale != 1.0 else vals.tolist()
        rows = self._fold(list(zip(self._labels(keys), scaled)))
        with self._lock:
            first, self._collections = self._collections == 0, self._collections + 1
            for labels, v in rows:
                if spec.kind == "counter" and labels not in self._seen:
                    self._seen.add(labels)
                    if not first:
                        v = 0.0   # first sight: the next scrape's value is then an increase
                family.add_metric(labels, v)
        return family

    def _fold(self, rows: list[tuple[tuple[str, ...], float]]) -> list[tuple[tuple[str, ...], float]]:
        """Keep the first ``max_series`` label sets, sum the rest into ``(other, ...)``."""
        limit = self.spec.max_series
        if limit is None or not self.spec.labels:
            return rows
        other = tuple(OTHER for _ in self.spec.labels)
        out: dict[tuple[str, ...], float] = {}
        with self._lock:
            # new label sets: the biggest first, so a limit hit at once keeps the heavy ones
            for labels, v in sorted(rows, key=lambda r: -r[1]):
                if labels not in self._kept and labels not in self._folded:
                    if len(self._kept) < limit and labels != other:
                        self._kept.add(labels)
                    else:
                        self._folded.add(labels)
                key = labels if labels in self._kept else other
                out[key] = out.get(key, 0.0) + v
        return list(out.items())

    @property
    def folded(self) -> int:
        """How many label sets were folded into ``other`` so far."""
        return len(self._folded)

    def _histogram(self, keys: np.ndarray, values: np.ndarray, label_names: list[str]) -> Metric:
        spec = self.spec
        assert spec.buckets is not None
        counts = self._values(values, spec.value_field).astype(np.float64)
        # annotated: numpy 2.5's stubs (Python >= 3.12) have no argument-less max() for the inferred type
        slots: np.ndarray = (keys if spec.bucket_field is None else keys[spec.bucket_field]).astype(np.int64)
        sums = self._values(values, spec.sum_field).astype(np.float64) if spec.sum_field else None
        n = int(slots.max()) + 1 if len(slots) else 1
        if self.reader is not None:
            n = max(n, self.reader.map.max_entries if self.reader._view is not None else n)
        bounds = bucket_bounds(spec.buckets, n)
        les = [floatToGoString(b) for b in bounds]
        groups: dict[tuple[str, ...], list[int]] = {}
        all_labels = self._labels(keys)
        if spec.max_series is not None:
            self._fold([(lab, float(counts[i])) for i, lab in enumerate(all_labels)])   # decides who is kept
            other = tuple(OTHER for _ in spec.labels)
            all_labels = [lab if lab in self._kept else other for lab in all_labels]
        for i, labels in enumerate(all_labels):
            groups.setdefault(labels, []).append(i)
        if not groups and not label_names:
            groups[()] = []
        family = HistogramMetricFamily(spec.name, spec.help, labels=label_names)
        with self._lock:
            first, self._collections = self._collections == 0, self._collections + 1
            new = {labels for labels in groups if labels not in self._seen}
            self._seen.update(new)
        for labels, rows in groups.items():
            if labels in new and not first:   # first sight: all buckets at 0 this time
                family.add_metric(list(labels), [(le, 0.0) for le in les], 0.0)
                continue
            per_slot = np.zeros(n, dtype=np.float64)
            if rows:
                np.add.at(per_slot, np.clip(slots[rows], 0, n - 1), counts[rows])
            cumulative = np.cumsum(per_slot).tolist()
            if self.sum_glob is not None:
                section, name = self.sum_glob
                total: float | None = float(section[name]) * spec.sum_scale
            elif sums is not None:
                total = float(sums[rows].sum()) * spec.sum_scale
            else:
                total = None
            family.add_metric(list(labels), list(zip(les, cumulative)), total)
        return family


def _plain_column(col: np.ndarray) -> list[Any]:
    """A key column as hashable Python values: ints, bytes for char[]/u8[N]/u64[N] fields and for
    struct fields (the ``ustack`` decoder's ``{ pid; addrs[N]; }``: their C layout, padding and all)."""
    if col.dtype.kind == "S":
        return col.tolist()
    if (col.ndim > 1 or col.dtype.names) and not len(col):
        return []
    if col.ndim > 1 or col.dtype.names:  # a sub-array field (u8 addr[16]) or a struct: its raw bytes per row
        flat = np.ascontiguousarray(col).reshape(len(col), -1)
        return [bytes(row) for row in flat.view(np.uint8).reshape(len(col), -1)]
    return col.tolist()


def _family(spec: MetricSpec, label_names: list[str]) -> CounterMetricFamily | GaugeMetricFamily:
    if spec.kind == "counter":
        return CounterMetricFamily(spec.name, spec.help, labels=label_names)
    return GaugeMetricFamily(spec.name, spec.help, labels=label_names)


def _need_field(cfg: Config, path: tuple[Any, ...], dtype: np.dtype, field: str, what: str) -> None:
    if not dtype.names or field not in dtype.names:
        fields = ", ".join(dtype.names) if dtype.names else f"none: it is a plain {dtype}"
        raise cfg.error(path, f"{what} has no field {field!r} (fields: {fields})")


def _find_global(cfg: Config, spec: MetricSpec, obj: pybpf.Object, *, name: str | None = None,
                 key: tuple[str, ...] = ("global",)) -> tuple[pybpf.Section, str]:
    var = name or spec.glob
    assert var is not None
    for section in (obj.bss, obj.data, obj.rodata):
        try:
            if var in section:
                return section, var
        except (KeyError, LookupError, pybpf.BpfError):
            continue
    raise cfg.error(spec.path + key, f"no global variable {var!r} in {cfg.object} (.bss, .data or .rodata)")


class ObjectMetrics:
    """One config's metrics over its loaded object (the object stays owned by the caller)."""

    def __init__(self, cfg: Config, obj: pybpf.Object) -> None:
        self.config = cfg
        self.object = obj
        self.metrics = [_Metric(cfg, spec, obj) for spec in cfg.metrics]

    def collect(self) -> Iterator[Metric]:
        """This config's metric families, each map read once for all of them."""
        cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for metric in self.metrics:
            yield metric.collect(cache)
        limited = [m for m in self.metrics if m.spec.max_series is not None]
        if limited:
            folded = GaugeMetricFamily("pybpf_export_folded_series",
                                       "label sets folded into the 'other' series by max_series", labels=["metric"])
            for m in limited:
                folded.add_metric([m.spec.name], float(m.folded))
            yield folded

    def read_paths(self) -> dict[str, str]:
        """How each map metric is read (``mmap view`` / ``batch lookup`` / ``per-key lookups``)."""
        return {m.spec.name: (m.reader.how if m.reader else "global (mmap view)") for m in self.metrics}


class BpfCollector(Collector):
    """The prometheus_client collector: register it on a ``CollectorRegistry``."""

    def __init__(self, sources: Iterable[ObjectMetrics] = ()) -> None:
        self.sources = list(sources)

    def add(self, source: ObjectMetrics) -> None:
        """Serve one more config's metrics."""
        self.sources.append(source)

    def describe(self) -> list[Metric]:
        """Nothing: registering must not read the maps (prometheus_client calls this then)."""
        return []  # no collect() at registration time

    def collect(self) -> Iterator[Metric]:
        """Every source's metric families, read now (called by prometheus_client per scrape)."""
        for source in self.sources:
            yield from source.collect()

