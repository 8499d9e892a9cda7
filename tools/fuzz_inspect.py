"""Long-running fuzz loop: mutated bundled objects through `pybpf inspect`, in process.

The test suite runs a bounded hypothesis version of this; this loop runs longer and keeps
everything in one process, so garbage-collector-time crashes show up (it found one:
a memoryview export caught in a traceback cycle). A crash is a non-zero exit (139).

    python tools/fuzz_inspect.py SEED COUNT
"""

from __future__ import annotations

import gc
import random
import sys
import tempfile
from pathlib import Path

from typer.testing import CliRunner

import pybpf
from pybpf.cli import app


def main(seed: int, count: int) -> int:
    runner = CliRunner(env={"COLUMNS": "250"})
    originals = {name: Path(pybpf.bundled(name)).read_bytes() for name in ("syscount", "counters", "net")}
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "mutant.bpf.o"
        for i in range(count):
            raw = bytearray(originals[rng.choice(sorted(originals))])
            for _ in range(rng.randint(1, 6)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            if rng.random() < 0.3:
                del raw[rng.randrange(len(raw)):]
            path.write_bytes(bytes(raw))
            runner.invoke(app, ["--debug", "inspect", "--json", str(path)])
            runner.invoke(app, ["inspect", str(path)])
            if i % 20 == 0:
                gc.collect()
    print(f"{count} mutations, seed {seed}: no crash")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(int(sys.argv[1]), int(sys.argv[2])))
