"""Run every benchmark script (benchmarks/bench_*.py) and print its figures.

Each script prints one line per figure, ``name: value unit (context)``. Usage:
``python benchmarks/run.py [name-filter ...]`` (e.g. ``foundation feast``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(filters: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if filters:
        scripts = [s for s in scripts if any(f in s.stem for f in filters)]
    failed = []
    for script in scripts:
        print(f"== {script.stem}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(script)], cwd=HERE.parent)
        print(f"   ({script.stem} took {time.perf_counter() - t0:.0f} s)", flush=True)
        if proc.returncode:
            failed.append(script.stem)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
