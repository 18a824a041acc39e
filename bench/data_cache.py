"""How long CIFAR-10 takes to load: decoding the batches (first load, which also writes the .npz
cache), the cache in a fresh process (a restarted server or the CLI), and the in-process copy
(every page rerun). A benchmark, not a test: tests check that the cache is used, this says what
it saves.

    python bench/data_cache.py [--data-dir DIR] [--repeats 3]

Needs the real CIFAR-10 in EFFLAB_DATA_DIR (or --data-dir); uses a temporary cache folder.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FRESH_PROCESS = ("import sys, time; t = time.perf_counter(); import core.data.cifar10 as d; "
                 "d.load_cifar10(sys.argv[1], allow_download=False); print(time.perf_counter() - t)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("EFFLAB_DATA_DIR"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not args.data_dir:
        sys.exit("error: set EFFLAB_DATA_DIR (or --data-dir) to the real CIFAR-10")
    sys.path.insert(0, str(ROOT))
    from core.data import cifar10 as data

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, "
          f"Python {platform.python_version()}")
    decode, fresh, in_process = [], [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="efflab-cache-") as cache:
            os.environ[data.CACHE_DIR_ENV] = cache
            data.clear_memory_cache()
            start = time.perf_counter()
            data.load_cifar10(args.data_dir, allow_download=False)       # decodes, writes the cache
            decode.append(time.perf_counter() - start)
            out = subprocess.run([sys.executable, "-c", FRESH_PROCESS, args.data_dir], cwd=ROOT,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                                 text=True, check=True).stdout
            fresh.append(float(out.split()[-1]))
            start = time.perf_counter()
            data.load_cifar10(args.data_dir, allow_download=False)       # the in-process copy
            in_process.append(time.perf_counter() - start)
    print(f"{'load':<46} {'median s':>9}  all runs")
    for label, times in (("first: decode the batches, write the .npz cache", decode),
                         ("fresh process, from the .npz cache", fresh),
                         ("same process, in memory", in_process)):
        print(f"{label:<46} {statistics.median(times):>9.3f}  {', '.join(f'{t:.3f}' for t in times)}")


if __name__ == "__main__":
    main()
