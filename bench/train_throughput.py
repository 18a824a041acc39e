"""Training throughput of the engine against plain Keras `model.fit` (a benchmark, not a test).

Same model (core.training.model.build_model), same tf.data pipeline (core.data.cifar10.make_dataset), same batch
(B0 at 32 px, batch 128 by default). Plain Keras gets only an epoch-boundary timer; the engine
runs for real through the job manager with its callbacks (core/training/callbacks.py: progress, heartbeat, stop check,
NaN guard, per-epoch validation, checkpoints). Both figures are the steady-state training phase
(epochs after the first, validation and checkpointing excluded: DESIGN.md's images_per_second);
the end-to-end figure also counts the engine's validation and checkpoint writes against a plain
fit that validates. Runs alternate (plain, engine, plain, engine, ...) so drift hits both.

    python bench/train_throughput.py [--images 6400] [--batch 128] [--repeats 2] [--epochs 3]

Needs real CIFAR-10 in EFFLAB_DATA_DIR (or --data-dir).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from core.data import cifar10 as data_mod  # noqa: E402
from core.jobs.scheduler import JobManager  # noqa: E402
from core.settings.config import TrainConfig  # noqa: E402
from core.training.model import build_model, compile_model, host_preprocessing  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    """Only epoch boundaries: the least a plain `fit` user would have."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def plain_keras(config: TrainConfig, cifar, epochs: int) -> dict:
    split = data_mod.split_train_val(cifar.x_train, cifar.y_train, val_fraction=config.val_fraction,
                                     seed=config.seed, train_limit=config.train_limit)
    keras.utils.set_random_seed(config.seed)
    model = build_model(config)
    compile_model(model, config, config.learning_rate)
    host = host_preprocessing(model, config)   # {}: the model augments and resizes itself, as in the engine
    train_ds = data_mod.make_dataset(split.x_train, split.y_train, batch_size=config.batch_size,
                                     training=True, seed=config.seed, **host)
    val_ds = data_mod.make_dataset(split.x_val, split.y_val, image_size=host.get("image_size"),
                                   batch_size=256, training=False)
    timer = EpochTimer()
    model.fit(train_ds, epochs=epochs, callbacks=[timer], shuffle=False, verbose=0)
    steady = statistics.median(timer.seconds[1:])
    model.evaluate(val_ds, verbose=0)   # trace evaluation first: the engine's is traced in epoch 1
    with_val = EpochTimer()
    start = time.perf_counter()
    model.fit(train_ds, epochs=1, validation_data=val_ds, callbacks=[with_val], shuffle=False, verbose=0)
    return {"images_per_second": len(split.x_train) / steady,
            "epoch_seconds_with_validation": time.perf_counter() - start}


def engine(config: TrainConfig, data_dir: str) -> dict:
    with tempfile.TemporaryDirectory() as runs_dir:
        manager = JobManager(runs_dir=runs_dir, data_dir=data_dir)
        run_id = manager.start(config)
        manager.wait()
        run = manager.store.get(run_id)
        status = run.read_status()
        if status["state"] != "completed":
            raise SystemExit(f"engine run failed: {status.get('error')}")
        rows = run.read_metrics()[1:]
        return {"images_per_second": statistics.median(r["images_per_second"] for r in rows),
                "epoch_seconds_with_validation": statistics.median(r["epoch_seconds"] for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6400, help="training images per epoch")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first (tracing) is not timed")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data-dir", default=os.environ.get("EFFLAB_DATA_DIR"))
    args = parser.parse_args()

    cifar = data_mod.load_cifar10(args.data_dir, allow_download=False)
    config = TrainConfig(variant="b0", image_size=32, batch_size=args.batch, epochs=args.epochs,
                         train_limit=args.images, val_fraction=0.1, optimizer="adam")
    plain, ours = [], []
    for i in range(args.repeats):
        plain.append(plain_keras(config, cifar, args.epochs))
        print(f"repeat {i + 1}: plain keras {plain[-1]['images_per_second']:.1f} img/s", flush=True)
        ours.append(engine(config, args.data_dir))
        print(f"repeat {i + 1}: engine      {ours[-1]['images_per_second']:.1f} img/s", flush=True)

    def median(results, key):
        return statistics.median(r[key] for r in results)

    report = {
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
                   f"GPUs: {len(tf.config.list_physical_devices('GPU'))}",
        "stack": f"TensorFlow {tf.__version__}, Keras {keras.__version__}, Python {platform.python_version()}",
        "setup": f"B0 @32 px, batch {args.batch}, Adam, {args.images} training images/epoch, "
                 f"{args.epochs} epochs per run (first untimed), {args.repeats} repeats, medians",
        "plain_images_per_second": round(median(plain, "images_per_second"), 1),
        "engine_images_per_second": round(median(ours, "images_per_second"), 1),
        "plain_epoch_seconds_with_validation": round(median(plain, "epoch_seconds_with_validation"), 2),
        "engine_epoch_seconds_with_validation_and_checkpoint": round(median(ours, "epoch_seconds_with_validation"), 2),
    }
    report["training_ratio"] = round(report["engine_images_per_second"] / report["plain_images_per_second"], 3)
    report["end_to_end_ratio"] = round(report["plain_epoch_seconds_with_validation"]
                                       / report["engine_epoch_seconds_with_validation_and_checkpoint"], 3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
