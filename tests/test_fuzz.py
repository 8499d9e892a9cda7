"""Issue 10: a seeded slice of the fuzz run (tools/fuzz.py runs the long one).

Mutated bundled objects and raw BTF go through open, inspect, btf dump and load, objects
(mutated, or with hostile names) through gen, and mutated kernel images through btf extract,
each case in a forked child: a crash (signal), a hang (killed at 20 s) or an exception that is not a
pybpf error fails the test, and hypothesis reports the input. Seeded and derandomized: CI
runs the same cases every time.
"""

from __future__ import annotations

import pytest
from pathlib import Path
from hypothesis import HealthCheck, Phase, given, seed, settings

from tests import fuzzing

_SLICE = settings(max_examples=80, database=None, deadline=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    fuzzing.warm_up()


def _check(target: str, data: bytes) -> None:
    outcome = fuzzing.run_case(target, data, timeout=20)
    assert outcome.kind in (fuzzing.ACCEPTED, fuzzing.TYPED), f"{target}: {outcome.kind}: {outcome.detail}"


@seed(10)
@_SLICE
@given(fuzzing.cases(("open", "inspect", "btf_dump")))
def test_fuzzed_inputs_without_the_kernel(case: tuple[str, fuzzing.Mutant]) -> None:
    _check(*case)


@seed(11)
@settings(_SLICE, max_examples=40)
@given(fuzzing.cases(("load",)))
def test_fuzzed_objects_through_load(kernel, case: tuple[str, fuzzing.Mutant]) -> None:
    _check(*case)


@seed(20)
@settings(_SLICE, max_examples=40)
@given(fuzzing.cases(("gen",)))
def test_fuzzed_objects_through_gen(case: tuple[str, fuzzing.Mutant]) -> None:
    """Issue 20: the generated module of a mutated or hostile-named object imports and works
    (or generation is refused with a pybpf error), and never runs object data."""
    _check(*case)


@seed(21)
@settings(_SLICE, max_examples=60)
@given(fuzzing.cases(("extract",)))
def test_fuzzed_kernel_images_through_extract(case: tuple[str, fuzzing.Mutant]) -> None:
    """Issue 20: mutated kernel images, ELFs, raw BTF and BTFHub archives through btf extract."""
    _check(*case)


def _known_crashers() -> list[tuple[str, str]]:
    return [("btf_dump", "pointer-array cycle"), ("btf_dump", "VAR member"), ("load", "bitfield on char[16]")]


@pytest.mark.parametrize("target,what", _known_crashers())
def test_known_crashers_are_typed_errors(target: str, what: str, bundled, tmp_path) -> None:
    """The harness sees what the old code did (a signal) as a failure: the inputs that crashed it."""
    from tests.mutate import set_bitfield
    from tests.test_robust_input import _pointer_array_cycle, _var_member
    from tests.test_btf import BtfBuilder
    if target == "load":
        if not fuzzing.can_load():
            pytest.skip("needs root with CAP_BPF")
        data = set_bitfield(Path(bundled("probes")).read_bytes(), "task_struct", "comm", 216)
    else:
        b = BtfBuilder()
        (_pointer_array_cycle if "cycle" in what else _var_member)(b)
        data = b.blob()
    assert fuzzing.run_case(target, data).kind == fuzzing.TYPED
