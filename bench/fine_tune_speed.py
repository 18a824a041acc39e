"""Training speed by what is trainable, at one image size: where a CPU fine-tuning step spends its time.

Each case builds B0 from ImageNet weights as the engine does (core.training.model), opens the named blocks
(BatchNorm frozen), and times one epoch over a few thousand real CIFAR-10 images after a first epoch
that traces the step; it prints one JSON line per case with the median images/s of the timed epoch's
batches. No accuracy: docs/RECIPES.md says what these speeds bought.

    python bench/fine_tune_speed.py [--size 64] [--images 2048] [--policy float32|mixed_bfloat16]
    KERAS_BACKEND=jax python bench/fine_tune_speed.py      # the same under JAX (XLA) on the CPU
    python bench/fine_tune_speed.py --jit                  # TensorFlow with XLA (jit_compile=True)
    python bench/fine_tune_speed.py --drop-connect-rate 0  # without stochastic depth (Keras: 0.2)

Cases: "head" (frozen base), "from block N" (blocks N..7 and the top conv), "from block N, depthwise
kept" (their depthwise kernels frozen), and "predict" (inference only).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CASES = ("predict", "head", "from block 6", "from block 5, depthwise kept", "from block 4",
         "from block 4, depthwise kept", "from block 1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--policy", default="float32", help="Keras dtype policy, e.g. mixed_bfloat16")
    parser.add_argument("--data-dir", default=os.environ.get("EFFLAB_DATA_DIR"))
    parser.add_argument("--case", action="append", choices=CASES, help="repeatable; default: all")
    parser.add_argument("--jit", action="store_true", help="XLA under TensorFlow too (JAX always jits)")
    parser.add_argument("--drop-connect-rate", type=float, default=0.2,
                        help="stochastic depth, as TrainConfig.drop_connect_rate (Keras builds 0.2)")
    args = parser.parse_args()

    import keras
    import numpy as np

    from core.data import cifar10 as data_mod
    from core.settings.config import TrainConfig
    from core.training.model import build_model, compile_model, unfreeze

    keras.mixed_precision.set_global_policy(args.policy)
    cifar = data_mod.load_cifar10(args.data_dir)
    x, y = cifar.x_train[:args.images], keras.utils.to_categorical(cifar.y_train[:args.images], 10)
    config = TrainConfig(weights="imagenet", image_size=args.size, freeze_base=True, batch_size=args.batch_size,
                         drop_connect_rate=args.drop_connect_rate)
    jit = args.jit or keras.backend.backend() == "jax"   # JAX without jit dispatches op by op

    class BatchTimes(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.began = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.seconds.append(time.perf_counter() - self.began)

    for case in args.case or CASES:
        model = build_model(config)
        if case.startswith("from block"):
            unfreeze(model, int(case.split()[2].rstrip(",")), depthwise="kept" not in case)
        compile_model(model, config, 1e-4, jit_compile=jit)
        if case == "predict":
            model.predict(x, batch_size=256, verbose=0)
            started = time.perf_counter()
            model.predict(x, batch_size=256, verbose=0)
            speed = len(x) / (time.perf_counter() - started)
        else:
            timer = BatchTimes()
            for _ in range(2):                   # the first epoch traces the step
                timer.seconds = []
                model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0, callbacks=[timer])
            speed = args.batch_size / float(np.median(timer.seconds[:-1] or timer.seconds))
        print(json.dumps({"case": case, "size": args.size, "policy": args.policy,
                          "backend": keras.backend.backend(), "jit": jit, "drop_connect_rate": args.drop_connect_rate,
                          "images_per_second": round(speed, 1),
                          "cores": os.cpu_count()}), flush=True)
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
