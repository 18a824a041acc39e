"""Test a finished run at other image sizes than it trained at (train small, test large: "FixRes").

EfficientNet's weights do not depend on the input size (convolutions and global pooling), so a run
trained at 112 px can be tested at 128: this script builds the run's model at each size given,
copies the trained weights in, and prints one JSON line per size with the test accuracy, with and
without averaging each test image with its mirror, and the seconds the two passes took. A
benchmark, not a test: docs/RECIPES.md (table F) says what it found.

    python bench/recipes.py --recipe best-cpu --set image_size=112 --runs-dir runs-bench
    python bench/test_at_size.py runs-bench/<run id> 112 128
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run's folder (its last checkpoint is tested)")
    parser.add_argument("sizes", type=int, nargs="+", help="image sizes to test at")
    parser.add_argument("--data-dir", default=os.environ.get("EFFLAB_DATA_DIR"))
    args = parser.parse_args()

    import numpy as np

    from core import data as data_mod
    from core.model import build_model, load_checkpoint
    from core.progress import Progress
    from core.runs import RunStore
    from core.train import predict_test_set

    run = RunStore(args.run.resolve().parent).get(args.run.name)
    trained_config = run.read_config()
    checkpoint = run.checkpoint("last")
    if checkpoint is None:
        sys.exit(f"run {args.run.name} has no checkpoint to test")
    trained = load_checkpoint(checkpoint)
    cifar = data_mod.load_cifar10(args.data_dir)
    labels = cifar.y_test.ravel()
    mirrored = dataclasses.replace(cifar, x_test=np.ascontiguousarray(cifar.x_test[:, :, ::-1]))

    def accuracy(probabilities: np.ndarray) -> float:
        return float((probabilities.argmax(axis=1) == labels).mean())

    for size in args.sizes:
        # The same weights setting as the run: with ImageNet weights Keras' EfficientNet adds an input
        # rescaling that a weights="none" build lacks, and the copied weights would see other pixels.
        # The flip off: each pass is one side, averaged below, so both accuracies come from two passes.
        config = dataclasses.replace(trained_config, image_size=size, test_time_flip=False)
        model = build_model(config)
        model.set_weights(trained.get_weights())
        began = time.perf_counter()
        plain = predict_test_set(model, config, cifar, Progress())
        flipped = predict_test_set(model, config, mirrored, Progress())
        print(json.dumps({
            "trained_at": trained_config.image_size, "tested_at": size,
            "test_accuracy": accuracy(plain), "mirror_test_accuracy": accuracy((plain + flipped) / 2),
            "seconds_two_passes": round(time.perf_counter() - began, 1)}), flush=True)


if __name__ == "__main__":
    main()
