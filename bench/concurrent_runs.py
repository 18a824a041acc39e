"""Throughput of 1, 2 and 4 B0 runs at 32 px training at once in one process (the dashboard's
slots), on real CIFAR-10: images/s of each run and in total, so the slot count that pays on this
machine is a measurement, not a guess.

    .venv/bin/python bench/concurrent_runs.py --data-dir ~/.cache/efflab-ci/data [--images 5000]

Each configuration runs in a fresh process (one JobManager with `--slots N`, N runs queued at
once) so that TensorFlow's thread pools start clean. Prints one JSON line per configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure(slots: int, images: int, epochs: int, data_dir: str) -> dict:
    """N runs started together with N slots; their steady-state images/s from metrics.csv."""
    from core.settings.config import TrainConfig
    from core.jobs.scheduler import JobManager
    with tempfile.TemporaryDirectory() as runs:
        manager = JobManager(runs_dir=runs, data_dir=data_dir, slots=slots)
        config = TrainConfig(variant="b0", image_size=32, batch_size=128, epochs=epochs, train_limit=images,
                             val_fraction=0.1, seed=1)
        started = time.time()
        run_ids = [manager.start(config) for _ in range(slots)]
        assert manager.wait(3600), "the runs did not finish in an hour"
        wall = time.time() - started
        per_run = []
        for run_id in run_ids:
            run = manager.store.get(run_id)
            status = run.read_status()
            rows = run.read_metrics()
            # The last epoch: the first one carries the tracing of the first step.
            per_run.append({"state": status["state"], "images_per_second": rows[-1]["images_per_second"] if rows else None})
    rates = [r["images_per_second"] for r in per_run if r["images_per_second"]]
    return {"slots": slots, "runs": len(run_ids), "images": images, "epochs": epochs,
            "per_run_images_per_second": [round(r, 1) for r in rates],
            "total_images_per_second": round(sum(rates), 1), "wall_seconds": round(wall, 1),
            "states": [r["state"] for r in per_run]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("EFFLAB_DATA_DIR"), required=False)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--slots", default="1,2,4")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)   # the child's job: one configuration
    args = parser.parse_args()
    if not args.data_dir:
        sys.exit("error: --data-dir: expected the folder holding cifar-10-batches-py (or set EFFLAB_DATA_DIR)")
    if args.one:
        print(json.dumps(measure(args.one, args.images, args.epochs, args.data_dir)), flush=True)
        return
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    for slots in (int(s) for s in args.slots.split(",")):
        out = subprocess.run([sys.executable, __file__, "--data-dir", args.data_dir, "--images", str(args.images),
                              "--epochs", str(args.epochs), "--one", str(slots)],
                             capture_output=True, text=True, cwd=ROOT)
        line = next((l for l in out.stdout.splitlines() if l.startswith("{")), None)
        if line is None:
            print(json.dumps({"slots": slots, "error": out.stderr[-1500:]}), flush=True)
            continue
        result = json.loads(line)
        result["machine"] = machine
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
