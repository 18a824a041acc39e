"""Where one training step of a preset goes, by part of the network and kind of layer (TensorFlow's profiler).

Builds the preset's model as the engine does (core.training.model), traces its training step on real
CIFAR-10 batches, times a few steps, then records a few more under `tf.profiler` and sums the
time of every TensorFlow op by forward or backward pass, by part of the network (the input
pipeline, stem and blocks 1-3, frozen in the presets; or the rest) and by the kind of layer it
belongs to (convolution, BatchNorm, activation, squeeze-and-excitation, ...). Times are per step,
in milliseconds on TensorFlow's executor threads (two of them on a 2-core CPU, so they add up to
more than the wall time). It prints a table, then one JSON line with the same figures. This is
how docs/RECIPES.md table M found the frozen BatchNorm's multiply-adds.

    python bench/step_profile.py [--recipe best-cpu] [--set fold_frozen_batchnorm=false] [--steps 4]

TensorFlow only: JAX's profiler writes another format.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipes import parse_args as recipe_args, recipe_config  # noqa: E402 - the same --recipe and --set

EARLY_PART = re.compile(r"/(prep_|stem|block[123]|normalization|rescaling)")
KINDS = (("_bn", "batchnorm"), ("_se_", "squeeze-excite"), ("activation", "activation"),
         ("conv", "convolution"), ("drop", "dropout"), ("prep_", "input pipeline"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="best-cpu", help="a preset name (python -m core presets)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a setting, as bench/recipes.py does (repeatable)")
    parser.add_argument("--steps", type=int, default=4, help="steps recorded by the profiler")
    parser.add_argument("--data-dir", default=os.environ.get("EFFLAB_DATA_DIR"))
    return parser.parse_args(argv)


def op_part(op_name: str) -> tuple[str, str]:
    """("forward"|"backward", "input, stem, blocks 1-3"|"blocks 4-7, top, head", kind) of a profiled op."""
    direction = "backward" if op_name.startswith("gradient_tape") else "forward"
    part = "input, stem, blocks 1-3" if EARLY_PART.search(op_name) else "blocks 4-7, top, head"
    kind = next((name for marker, name in KINDS if marker in op_name), "other")
    return f"{direction}, {part}", kind


def profile_ms_per_step(logdir: str, steps: int) -> dict[tuple[str, str], float]:
    """Milliseconds per step of the model's ops, by (pass and part, kind), from the profile in `logdir`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0]).read_bytes())
    totals: dict[tuple[str, str], float] = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):    # the executor threads that run the ops
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name and "/" in name:           # "model/layer/op:OpType"; not the executor itself
                    totals[op_part(name)] += event.duration_ps / 1e9 / steps
    return totals


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = recipe_config(recipe_args(["--recipe", args.recipe] + [f"--set={item}" for item in args.set]))

    import keras
    import tensorflow as tf

    from core.data import cifar10 as data_mod
    from core.training.model import build_model, compile_model

    cifar = data_mod.load_cifar10(args.data_dir)
    model = build_model(config)
    compile_model(model, config, config.learning_rate)
    batches = [(cifar.x_train[i:i + config.batch_size],
                keras.utils.to_categorical(cifar.y_train[i:i + config.batch_size], 10))
               for i in range(0, config.batch_size * (8 + args.steps), config.batch_size)]
    for x, y in batches[:3]:                              # traces the step
        model.train_on_batch(x, y)
    started = time.perf_counter()
    for x, y in batches[3:8]:
        model.train_on_batch(x, y)
    wall_ms = (time.perf_counter() - started) / 5 * 1000
    logdir = tempfile.mkdtemp(prefix="efflab-profile-")
    tf.profiler.experimental.start(logdir)
    for x, y in batches[8:]:
        model.train_on_batch(x, y)
    tf.profiler.experimental.stop()
    totals = profile_ms_per_step(logdir, args.steps)

    by_part: dict[str, float] = collections.Counter()
    for (part, _), ms in totals.items():
        by_part[part] += ms
    print(f"{args.recipe} at {config.image_size} px, batch {config.batch_size}: {wall_ms:.0f} ms a step "
          f"(wall, unprofiled); ops on the executor threads, ms a step:")
    for part, ms in sorted(by_part.items(), key=lambda item: -item[1]):
        print(f"  {ms:7.1f}  {part}")
        for (other_part, kind), kind_ms in sorted(totals.items(), key=lambda item: -item[1]):
            if other_part == part and kind_ms >= 1:
                print(f"  {kind_ms:16.1f}  {kind}")
    print(json.dumps({"recipe": args.recipe, "settings": args.set, "image_size": config.image_size,
                      "wall_ms_per_step": round(wall_ms, 1),
                      "ms_per_step": {f"{part}: {kind}": round(ms, 1) for (part, kind), ms in totals.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
