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

import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from finished_run import open_finished_run, parser  # noqa: E402


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("sizes", type=int, nargs="+", help="image sizes to test at")
    args = arguments.parse_args()

    from core.training.model import build_model
    from core.training.progress import Progress
    from core.training.train import predict_test_set

    finished = open_finished_run(args.run, args.data_dir)
    trained_config, accuracy = finished.config, finished.accuracy
    for size in args.sizes:
        # The same weights setting as the run: with ImageNet weights Keras' EfficientNet adds an input
        # rescaling that a weights="none" build lacks, and the copied weights would see other pixels.
        # The flip off: each pass is one side, averaged below, so both accuracies come from two passes.
        config = dataclasses.replace(trained_config, image_size=size, test_time_flip=False)
        model = build_model(config)
        model.set_weights(finished.model.get_weights())
        began = time.perf_counter()
        plain = predict_test_set(model, config, finished.cifar, Progress())
        flipped = predict_test_set(model, config, finished.mirrored, Progress())
        print(json.dumps({
            "trained_at": trained_config.image_size, "tested_at": size,
            "test_accuracy": accuracy(plain), "mirror_test_accuracy": accuracy((plain + flipped) / 2),
            "seconds_two_passes": round(time.perf_counter() - began, 1)}), flush=True)


if __name__ == "__main__":
    main()
