"""Screen a transfer recipe fast, outside the engine: the engine's model, augmentation and data
pipeline, but no run folder, checkpoints or progress: for choosing what bench/recipes.py then
measures through the engine (docs/RECIPES.md, table D, says which rows came from here).

    python bench/screen_transfer.py --size 64 --from-block 4 --depthwise-kept --lr 3e-4 [--head-images N]

One epoch of fine-tuning over --images training images (blocks N..7, BatchNorm frozen, Adam on a
cosine with a linear warm-up over the first --warmup of it), after an optional head-only pass over
--head-images; prints one JSON line with test accuracy and the wall minutes since start (imports
included).
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--from-block", type=int, default=4)
    parser.add_argument("--depthwise-kept", action="store_true", help="leave the depthwise kernels frozen")
    parser.add_argument("--head-images", type=int, default=0, help="a head-only pass first over this many")
    parser.add_argument("--images", type=int, default=50000)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--head-lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=float, default=0.05, help="share of the epoch warming up")
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--data-dir", default=os.environ.get("EFFLAB_DATA_DIR"))
    args = parser.parse_args()

    import keras
    import numpy as np

    from core.data import cifar10 as data_mod
    from core.settings.config import TrainConfig
    from core.training.model import build_model, compile_model, unfreeze

    cifar = data_mod.load_cifar10(args.data_dir)
    rng = np.random.default_rng(0)
    config = TrainConfig(weights="imagenet", image_size=args.size, freeze_base=True, batch_size=args.batch_size,
                         label_smoothing=args.label_smoothing, val_fraction=0.0)
    model = build_model(config)
    result: dict = {"settings": vars(args)}
    if args.head_images:
        compile_model(model, config, args.head_lr)
        pick = rng.permutation(len(cifar.x_train))[:args.head_images]
        began = time.perf_counter()
        model.fit(data_mod.make_dataset(cifar.x_train[pick], cifar.y_train[pick], batch_size=args.batch_size,
                                        training=True, seed=1), epochs=1, verbose=0)
        result["head_seconds"] = round(time.perf_counter() - began, 1)
    unfreeze(model, args.from_block, depthwise=not args.depthwise_kept)
    compile_model(model, config, args.lr)
    pick = rng.permutation(len(cifar.x_train))[:args.images]
    steps = data_mod.dataset_len(len(pick), args.batch_size)

    class WarmCosine(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            f = batch / steps
            rate = (args.lr * f / args.warmup if f < args.warmup else
                    1e-6 + 0.5 * (args.lr - 1e-6) * (1 + math.cos(math.pi * (f - args.warmup) / (1 - args.warmup))))
            self.model.optimizer.learning_rate.assign(rate)

    began = time.perf_counter()
    model.fit(data_mod.make_dataset(cifar.x_train[pick], cifar.y_train[pick], batch_size=args.batch_size,
                                    training=True, seed=2), epochs=1, verbose=0, callbacks=[WarmCosine()])
    result["fine_tune_seconds"] = round(time.perf_counter() - began, 1)
    probabilities = model.predict(cifar.x_test, batch_size=256, verbose=0)
    result["test_accuracy"] = round(float(np.mean(probabilities.argmax(1) == cifar.y_test)), 4)
    result["minutes"] = round((time.perf_counter() - STARTED) / 60, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
