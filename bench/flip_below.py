"""Which test images need the test-time flip's mirror pass: a finished run's checkpoint predicts the
test set plain and mirrored (both timed), then this prints, for each confidence threshold given,
the share of images below it (those `test_time_flip_below` would mirror) and the test accuracy when
only they are averaged with their mirrors. The same predictions serve every threshold, so the
accuracies compare exactly. A benchmark, not a test: docs/RECIPES.md (table I) says what it found.

    python bench/recipes.py --recipe best-cpu --runs-dir runs-bench
    python bench/flip_below.py runs-bench/<run id> 0.8 0.85 0.9
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from finished_run import open_finished_run, parser  # noqa: E402


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("thresholds", type=float, nargs="+", help="top-class probabilities, in (0, 1]")
    args = arguments.parse_args()

    import numpy as np

    from core.training.progress import Progress
    from core.training.train import cpu_predict_batch, predict_test_set

    finished = open_finished_run(args.run, args.data_dir)
    config = finished.config.replace(test_time_flip=False)
    batch = cpu_predict_batch(config.image_size)
    seconds = {}
    started = time.perf_counter()
    plain = predict_test_set(finished.model, config, finished.cifar, Progress(), batch_size=batch)
    seconds["plain"] = time.perf_counter() - started
    started = time.perf_counter()
    mirror = predict_test_set(finished.model, config, finished.mirrored, Progress(), batch_size=batch)
    seconds["mirror"] = time.perf_counter() - started

    def accuracy(probabilities) -> float:
        return round(finished.accuracy(probabilities), 4)

    print(json.dumps({"run": finished.run.run_id, "image_size": config.image_size, "plain": accuracy(plain),
                      "every_image_mirrored": accuracy((plain + mirror) / 2),
                      "plain_seconds": round(seconds["plain"], 1), "mirror_seconds": round(seconds["mirror"], 1)}))
    confidence = plain.max(axis=1)
    for below in args.thresholds:
        unsure = confidence < below if below < 1 else np.ones(len(plain), bool)
        averaged = np.where(unsure[:, None], (plain + mirror) / 2, plain)
        print(json.dumps({"below": below, "mirrored_share": round(float(unsure.mean()), 3),
                          "test_accuracy": accuracy(averaged)}))


if __name__ == "__main__":
    main()
