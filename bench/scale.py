"""What going through Ray costs a small run on this machine, and what two runs on a 2-CPU Ray
cluster buy (issue 12 §3): design for many machines, measure on loopback.

    .venv/bin/python bench/scale.py --data-dir ~/.cache/efflab-ci/data [--images 2000] [--epochs 2]

Four configurations, each in a fresh driver process (TensorFlow's thread pools start clean), with
B0 at 32 px, batch 128, real CIFAR-10:
  in-process   one run, the dashboard's thread executor (the default)
  ray          one run as a Ray task (1 CPU asked) on a loopback head with 2 CPUs
  ray 2 serial two runs queued, each asking 2 CPUs: one at a time
  ray 2 at once two runs queued, each asking 1 CPU: side by side
Figures: seconds from Start (JobManager.start) to the first batch in the run's progress, the last
epoch's training images/s (the first carries the tracing), and wall seconds until every run has
ended. Prints one JSON line per configuration.
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

CONFIGURATIONS = {   # name: (Ray?, runs, CPUs each run asks for)
    "in-process": (False, 1, None),
    "ray": (True, 1, 1),
    "ray 2 serial": (True, 2, 2),
    "ray 2 at once": (True, 2, 1),
}


def measure(name: str, address: str | None, images: int, epochs: int, data_dir: str) -> dict:
    """The configuration's runs started together; when each saw its first batch; their speed."""
    from core.settings.config import TrainConfig
    from core.jobs.scheduler import JobManager
    _, runs, _ = CONFIGURATIONS[name]
    with tempfile.TemporaryDirectory() as runs_dir:
        manager = JobManager(runs_dir=runs_dir, data_dir=data_dir, slots=1, ray_address=address)
        config = TrainConfig(variant="b0", image_size=32, batch_size=128, epochs=epochs, train_limit=images,
                             val_fraction=0.1, weights="none", seed=1)
        started = time.time()
        run_ids = [manager.start(config) for _ in range(runs)]
        first_batch: dict[str, float] = {}
        while not manager.wait(0.2):
            for run_id in run_ids:
                progress = manager.progress(run_id)
                if run_id not in first_batch and (progress.get("batch") or 0) >= 1 and progress.get("epoch"):
                    first_batch[run_id] = time.time() - started
        wall = time.time() - started
        per_run = []
        for run_id in run_ids:
            run = manager.store.get(run_id)
            status, rows = run.read_status(), run.read_metrics()
            per_run.append({"state": status["state"], "executor": status.get("executor"),
                            "first_batch_seconds": round(first_batch.get(run_id, float("nan")), 1),
                            "images_per_second": round(rows[-1]["images_per_second"], 1) if rows else None})
    return {"configuration": name, "runs": per_run, "wall_seconds": round(wall, 1),
            "total_images_per_second": round(sum(r["images_per_second"] or 0 for r in per_run), 1),
            "images": images, "epochs": epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("EFFLAB_DATA_DIR"))
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--only", help="comma-separated configuration names (default: all)")
    parser.add_argument("--one", help=argparse.SUPPRESS)        # the child's job: one configuration
    parser.add_argument("--address", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.data_dir:
        sys.exit("error: --data-dir: expected the folder holding cifar-10-batches-py (or set EFFLAB_DATA_DIR)")
    if args.one:
        print(json.dumps(measure(args.one, args.address, args.images, args.epochs, args.data_dir)), flush=True)
        return
    from core.jobs.executors.ray_cluster import CPUS_ENV, LOOPBACK_ENV, loopback_head
    names = args.only.split(",") if args.only else list(CONFIGURATIONS)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    with loopback_head(num_cpus=2) as address:
        for name in names:
            ray, _, cpus = CONFIGURATIONS[name]
            env = {**os.environ, **LOOPBACK_ENV, **({CPUS_ENV: str(cpus)} if ray else {})}
            env.pop("EFFLAB_RAY_ADDRESS", None)
            command = [sys.executable, __file__, "--data-dir", args.data_dir, "--images", str(args.images),
                       "--epochs", str(args.epochs), "--one", name] + (["--address", address] if ray else [])
            out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
            line = next((l for l in out.stdout.splitlines() if l.startswith("{")), None)
            result = json.loads(line) if line else {"configuration": name, "error": out.stderr[-1500:]}
            result["machine"] = machine
            result["load_average_1min"] = round(os.getloadavg()[0], 2)
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
