"""Accuracy per minute of a preset, trained through the engine on real CIFAR-10 (a benchmark, not a test).

The run goes the CLI's way (core.jobs.scheduler.JobManager with queue=False: the same trainer, callbacks,
checkpoints and test prediction as `python -m core train --preset NAME`), into a run folder of its
own. Prints one JSON line: test accuracy, test accuracy averaging each test image's prediction with
its mirror's (one more prediction pass over the test set from the final checkpoint, timed apart),
the whole run's wall minutes (data, model build, compile, training, validation, test prediction),
and the machine, with its load average before and after and the share of CPU time its hypervisor
took for other guests during the run ("steal": a busy machine, or a busy host, inflates minutes,
not accuracy). docs/RECIPES.md records what it printed.

    python bench/recipes.py --recipe quick-demo [--images N] [--epochs N] [--set key=value ...]
    python bench/recipes.py --recipe from-scratch --smoke      # the same code, a few hundred images

Needs CIFAR-10 in EFFLAB_DATA_DIR (or --data-dir), and for the ImageNet presets the B0 weights
(EFFLAB_WEIGHTS_DIR or Keras's cache).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data.cifar10 import training_images  # noqa: E402
from core.jobs.scheduler import JobError  # noqa: E402
from core.settings.config import ConfigError, TrainConfig, field_type  # noqa: E402
from core.settings.presets import PRESET_NAMES, get_preset  # noqa: E402

SMOKE_IMAGES = 200     # 20 per class: enough to run every phase, small enough for about a minute


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", required=True, help=f"a preset: {', '.join(PRESET_NAMES)}")
    parser.add_argument("--images", type=int, help="training images (the preset's train_limit; 0 = all)")
    parser.add_argument("--epochs", type=int, help="epochs in all (a fine-tuning phase keeps its start)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other TrainConfig setting, e.g. --set bn_momentum=0.99 (repeatable)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"{SMOKE_IMAGES} images, one epoch per phase: checks the script, measures nothing")
    parser.add_argument("--no-mirror", action="store_true", help="skip the mirrored test pass")
    parser.add_argument("--data-dir", default=os.environ.get("EFFLAB_DATA_DIR"))
    parser.add_argument("--runs-dir", help="where the run folder goes (default: a temporary folder)")
    return parser.parse_args(argv)


def _typed(name: str, text: str) -> object:
    kind = field_type(name)
    try:
        if kind == "bool":
            if text.lower() not in ("true", "false"):
                raise ValueError
            return text.lower() == "true"
        return int(text) if kind == "int" else float(text) if kind == "float" else text
    except ValueError:
        raise ConfigError(name, f"a value of type {kind}", text) from None


def recipe_config(args: argparse.Namespace) -> TrainConfig:
    """The preset's config with the command line's changes (--smoke shrinks it last)."""
    preset = get_preset(args.recipe)
    changes: dict[str, object] = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or name not in TrainConfig.__dataclass_fields__:
            raise ConfigError(name or item, "KEY=VALUE naming a TrainConfig setting", item)
        changes[name] = _typed(name, value)
    if args.images is not None:
        changes["train_limit"] = args.images
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    config = preset.config(**changes)
    if args.smoke:
        two_phases = config.freeze_base and config.fine_tune_at_epoch > 0
        config = config.replace(train_limit=SMOKE_IMAGES, epochs=2 if two_phases else 1,
                                fine_tune_at_epoch=1 if two_phases else 0, warmup_epochs=0)
    return config


def cpu_times() -> list[int]:
    """The machine's CPU time counters since boot (/proc/stat: user, nice, system, idle, iowait,
    irq, softirq, steal, ...), in ticks; [] where there is no /proc/stat."""
    stat = Path("/proc/stat")
    return [int(v) for v in stat.read_text().split("\n", 1)[0].split()[1:]] if stat.exists() else []


def steal_percent(before: list[int], after: list[int]) -> float | None:
    """The share of CPU time between two cpu_times() readings that a virtual machine's host gave
    to other guests: on a shared cloud host it varies by the hour and slows every step alike."""
    if len(before) < 8 or len(after) < 8:
        return None
    total = sum(after[:8]) - sum(before[:8])     # guest time is already counted in user time
    return round(100 * (after[7] - before[7]) / total, 1) if total > 0 else None


def machine(load_before: tuple[float, ...], times_before: list[int]) -> dict:
    """What ran it: CPU model and cores, GPUs, libraries, and how busy the machine was."""
    import keras
    import tensorflow as tf
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "gpus": len(tf.config.list_physical_devices("GPU")),
            "tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version(),
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
            "steal_percent": steal_percent(times_before, cpu_times())}


def mirror_accuracy(run, config: TrainConfig, data_dir: str | None) -> tuple[float, float]:
    """(accuracy averaging each test image with its left-right mirror, seconds it took), from the
    run's final checkpoint and its recorded predictions."""
    import numpy as np

    from core.data import cifar10 as data_mod
    from core.training.model import load_checkpoint
    from core.training.progress import Progress
    from core.training.train import predict_test_set
    started = time.perf_counter()
    cifar = data_mod.load_cifar10(data_dir)
    mirrored = dataclasses.replace(cifar, x_test=np.ascontiguousarray(cifar.x_test[:, :, ::-1]))
    y_true, y_prob = run.read_predictions()
    y_mirror = predict_test_set(load_checkpoint(run.checkpoint("last")), config, mirrored, Progress())
    averaged = (y_prob.astype("float32") + y_mirror.astype("float32")) / 2
    return float(np.mean(np.argmax(averaged, axis=1) == y_true)), time.perf_counter() - started


def run_recipe(args: argparse.Namespace) -> dict:
    config = recipe_config(args)   # a bad name fails before TensorFlow is imported
    load_before, times_before = os.getloadavg(), cpu_times()
    import_started = time.perf_counter()
    from core.jobs.scheduler import JobManager
    from core.data.cifar10 import load_cifar10
    import keras  # noqa: F401 - imported here so its seconds are counted apart from the run's
    import_seconds = time.perf_counter() - import_started

    runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="efflab-recipe-")
    started = time.perf_counter()
    cifar = load_cifar10(args.data_dir)    # what the CLI does before it starts a run (cached for the trainer)
    manager = JobManager(runs_dir=runs_dir, data_dir=args.data_dir, slots=1, drain_queue=False)
    run_id = manager.start(config, name=f"bench {args.recipe}" + (" (smoke)" if args.smoke else ""),
                           queue=False)
    manager.wait(run_id=run_id)
    minutes = (time.perf_counter() - started) / 60
    run = manager.store.get(run_id)
    status = run.read_status()
    images = training_images(config.train_limit, config.val_fraction, cifar.y_train)
    result = {"recipe": args.recipe, "smoke": args.smoke, "state": status.get("state"),
              "error": status.get("error") or None, "test_accuracy": status.get("test_accuracy"),
              "mirror_test_accuracy": None, "minutes": round(minutes, 2),
              "import_seconds": round(import_seconds, 1), "training_images": images,
              "epochs": config.epochs, "epoch_seconds": [m["epoch_seconds"] for m in run.read_metrics()],
              "images_per_second": [m["images_per_second"] for m in run.read_metrics()],
              "run": str(run.path), "settings": config.to_dict()}
    # With test_time_flip the recorded predictions already average each image with its mirror.
    if status.get("state") == "completed" and not args.no_mirror and not config.test_time_flip:
        accuracy, seconds = mirror_accuracy(run, config, args.data_dir)
        result.update(mirror_test_accuracy=round(accuracy, 4), mirror_seconds=round(seconds, 1))
    result["machine"] = machine(load_before, times_before)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run_recipe(args)
    except (ConfigError, JobError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0 if result["state"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
