"""What training a run in a worker process of its own costs against a thread of the server (issue 30):
the thread executor (the default) and the process executor (EFFLAB_EXECUTOR=process) on the same
tiny run.

    .venv/bin/python bench/executors.py --data-dir ~/.cache/efflab-ci/data [--images 2000] [--epochs 2] [--repeats 2]

Each configuration runs in a fresh driver process standing in for the dashboard (TensorFlow's
thread pools start clean, and the driver's memory is its own), alternating thread and process. B0
at 32 px from scratch, batch 64, real CIFAR-10. Figures: seconds from Start (JobManager.start) to
the first batch in the run's progress (a worker adds its own interpreter and imports), the last
epoch's training images/s (the first carries the tracing), wall seconds until the run has ended,
and the driver's resident memory afterwards (the server's own size: with threads it holds
TensorFlow and what the run left; with workers it never imports TensorFlow). One JSON line each.
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

EXECUTORS = ("thread", "process")


def measure(executor: str, images: int, epochs: int, data_dir: str, poll: float) -> dict:
    """One run through a JobManager whose executor is `executor`; its latency, speed and the driver's size."""
    os.environ["EFFLAB_EXECUTOR"] = executor
    from core.jobs.admission import resident_bytes
    from core.settings.config import TrainConfig
    from core.jobs.scheduler import JobManager
    with tempfile.TemporaryDirectory() as runs_dir:
        manager = JobManager(runs_dir=runs_dir, data_dir=data_dir, slots=1)
        config = TrainConfig(variant="b0", image_size=32, batch_size=64, epochs=epochs, train_limit=images,
                             val_fraction=0.1, weights="none", seed=1)
        started = time.time()
        run_id = manager.start(config)
        first_batch = None
        while not manager.wait(poll):
            progress = manager.progress(run_id)
            if first_batch is None and (progress.get("batch") or 0) >= 1 and progress.get("epoch"):
                first_batch = time.time() - started
        wall = time.time() - started
        run = manager.store.get(run_id)
        status, rows = run.read_status(), run.read_metrics()
    return {"executor": executor, "state": status["state"], "trainer_pid_is_driver": status.get("pid") == os.getpid(),
            "first_batch_seconds": round(first_batch, 1) if first_batch is not None else None,
            "images_per_second": round(rows[-1]["images_per_second"], 1) if rows else None,
            "wall_seconds": round(wall, 1), "poll_seconds": poll, "driver_rss_mb": round((resident_bytes() or 0) / 2**20),
            "tensorflow_in_driver": "tensorflow" in sys.modules, "images": images, "epochs": epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("EFFLAB_DATA_DIR"))
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between looks at the run's progress")
    parser.add_argument("--one", choices=EXECUTORS, help=argparse.SUPPRESS)   # the child's job
    args = parser.parse_args()
    if not args.data_dir:
        sys.exit("error: --data-dir: expected the folder holding cifar-10-batches-py (or set EFFLAB_DATA_DIR)")
    if args.one:
        print(json.dumps(measure(args.one, args.images, args.epochs, args.data_dir, args.poll)), flush=True)
        return
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    for repeat in range(args.repeats):
        for executor in EXECUTORS:
            command = [sys.executable, __file__, "--data-dir", args.data_dir, "--images", str(args.images),
                       "--epochs", str(args.epochs), "--poll", str(args.poll), "--one", executor]
            env = {k: v for k, v in os.environ.items() if k not in ("EFFLAB_RAY_ADDRESS", "EFFLAB_EXECUTOR")}
            out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
            line = next((l for l in out.stdout.splitlines() if l.startswith("{")), None)
            result = json.loads(line) if line else {"executor": executor, "error": out.stderr[-1500:]}
            result.update(repeat=repeat + 1, machine=machine, load_average_1min=round(os.getloadavg()[0], 2))
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
