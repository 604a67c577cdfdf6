"""Does every benchmark still run? Each in its quick mode, one after the other.

    .venv/bin/python benchmarks/smoke.py        (make bench-smoke; .ci/run after the tests)

A benchmark fails the smoke run when it exits non-zero or its standard output is
not one JSON object: a crash, a renamed API, a missing peer. A figure that misses
its target does not (these runs are too short to mean much; the full runs do).
Each benchmark's JSON goes to ``benchmarks/results/smoke-<name>.json``; a line
per benchmark goes to stderr, and the exit status is the number of failures.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = [
    ("render", ["render.py", "--quick", "--seconds", "3", "--no-cold-compile"]),
    ("analyze", ["analyze.py", "--minutes", "0.5", "--pyln-minutes", "0.5"]),
    ("video", ["video.py", "--seconds", "5", "--rounds", "1"]),
    ("midi", ["midi.py", "--quick"]),
    ("realtime", ["realtime.py", "--smoke"]),
]
TIMEOUT_S = 600


def main() -> int:
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    failed = 0
    t_all = time.monotonic()
    for name, args in RUNS:
        t0 = time.monotonic()
        print(f"[smoke] {name}: {' '.join(args)} ...", file=sys.stderr, flush=True)
        try:
            p = subprocess.run([sys.executable, str(HERE / args[0]), *args[1:]], cwd=HERE.parent,
                               capture_output=True, text=True, timeout=TIMEOUT_S)
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = "timeout", e.stdout or "", f"took over {TIMEOUT_S} s"
        problem = None
        if rc != 0:
            problem = f"exit {rc}"
        else:
            try:
                json.loads(out)
            except ValueError:
                problem = "its output is not one JSON object"
        (results / f"smoke-{name}.json").write_text(out if isinstance(out, str) else "")
        took = time.monotonic() - t0
        if problem:
            failed += 1
            tail = "\n".join((err if isinstance(err, str) else "").strip().splitlines()[-15:])
            print(f"[smoke] {name}: FAILED ({problem}) after {took:.0f} s\n{tail}",
                  file=sys.stderr, flush=True)
        else:
            print(f"[smoke] {name}: ok ({took:.0f} s)", file=sys.stderr, flush=True)
    print(f"[smoke] {len(RUNS) - failed} of {len(RUNS)} benchmarks ran "
          f"({time.monotonic() - t_all:.0f} s)", file=sys.stderr, flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
