"""The long fuzz run of issues 10 and 20: hypothesis-mutated objects and raw BTF through open,
inspect, btf dump, load and gen (also objects with hostile names), and mutated kernel images
through btf extract, each case in a forked child (see tests/fuzzing.py).

    python tools/fuzz.py --cases 10000 --seed 1 [--targets open,inspect,btf_dump,load,gen,extract]
                         [--save DIR] [--timeout 20] [--json FILE]

Prints, per target, how many cases were accepted, rejected with a pybpf error, rejected with
another exception type (a bug: the type is listed), crashed (a signal) or hung (killed at the
timeout). Exits 1 if any case crashed, hung or raised a foreign exception; inputs of those cases
are saved in --save (default: fuzz-findings/). The CI slice is tests/test_fuzz.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

from tests import fuzzing  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--targets", default=",".join(fuzzing.TARGETS))
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds before a case counts as a hang")
    parser.add_argument("--save", default="fuzz-findings")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    targets = tuple(t for t in args.targets.split(",") if t)
    if "load" in targets and not fuzzing.can_load():
        print("not root with CAP_BPF and kernel BTF: leaving out the load target", file=sys.stderr)
        targets = tuple(t for t in targets if t != "load")
    fuzzing.warm_up()
    tally = fuzzing.Tally()
    save = Path(args.save)
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="pybpf-fuzz-")

    @seed(args.seed)
    @settings(max_examples=args.cases, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(fuzzing.cases(targets))
    def run(case: tuple[str, fuzzing.Mutant]) -> None:
        target, data = case
        tally.add(target, fuzzing.run_case(target, data, args.timeout, work), data, save)
        done = tally.total()
        if done % 500 == 0:
            print(f"{done} cases, {time.monotonic() - started:.0f} s, crashes {tally.total(fuzzing.CRASH)}, "
                  f"hangs {tally.total(fuzzing.HANG)}, foreign {tally.total(fuzzing.FOREIGN)}", flush=True)

    run()
    seconds = time.monotonic() - started
    kinds = (fuzzing.ACCEPTED, fuzzing.TYPED, fuzzing.FOREIGN, fuzzing.CRASH, fuzzing.HANG)
    print(f"\n{tally.total()} cases in {seconds:.0f} s (seed {args.seed})")
    print(f"{'target':10} " + " ".join(f"{k:>14}" for k in kinds))
    for target in targets:
        print(f"{target:10} " + " ".join(f"{tally.counts[(target, k)]:>14}" for k in kinds))
    for what, n in tally.foreign.most_common():
        print(f"  foreign: {n} x {what}")
    for target, kind, path in tally.bad:
        print(f"  {kind} in {target}: {path}")
    figures = {"cases": tally.total(), "seconds": round(seconds), "seed": args.seed,
               "by_target": {t: {k: tally.counts[(t, k)] for k in kinds} for t in targets},
               "crashes": tally.total(fuzzing.CRASH), "hangs": tally.total(fuzzing.HANG),
               "foreign_errors": tally.total(fuzzing.FOREIGN), "foreign_types": dict(tally.foreign)}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    bad = figures["crashes"] + figures["hangs"] + figures["foreign_errors"]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
