"""Peak memory of short training fits, and the fit core/estimates/memory.py uses to estimate any config.

Each point runs in its own process (peak RSS is a high-water mark, so one process per point):
build the model as the engine does (core.training.model.build_model + compile_model), predict one batch
of max(batch, 256) images as validation does, then `fit` a few steps on random images, reading
`ru_maxrss` after each. Then

    peak RSS ≈ runtime + bytes_per_param × params
               + predict_bytes_per_activation × max(batch, 256) × activations(v, s)
               + bytes_per_activation × batch × activations(v, s)

is fitted by least squares, where activations(v, s) = image_size² × ACTIVATIONS_PER_PIXEL[v]
(the float outputs of every layer of the base per input image pixel, counted from the Keras
model's shapes: `--count` prints that table).

Usage (keep it short: the machine is shared):
    python bench/memory_fit.py --count            # activations per input pixel, B0..B7 (~1 min)
    python bench/memory_fit.py                    # the default points and the fit (5 min of CPU; 16 min
                                                  # wall on the shared, busy 2 cores of 2026-11-30)
    python bench/memory_fit.py --point b0 64 32   # one point: variant, image_size, batch_size
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (variant, image_size, batch): small enough for a shared 2-core CPU, spread over size and batch.
DEFAULT_POINTS = (("b0", 32, 32), ("b0", 64, 32), ("b0", 96, 32), ("b0", 64, 96), ("b2", 64, 32))
FIT_STEPS = 3
COUNT_SIDE = 224          # activations are counted at this size and scaled by (size / 224)²


def _peak_rss() -> int:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024     # Linux: kB


def measure_point(variant: str, image_size: int, batch: int) -> dict:
    """Runs in a fresh process: peak RSS after import, build, one prediction batch and a short fit."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras  # noqa: F401 - imported here so "imported" is measured after the runtime loads

    from core.settings.config import TrainConfig
    from core.training.model import build_model, compile_model
    from core.training.train import PREDICT_BATCH
    imported = _peak_rss()
    config = TrainConfig(variant=variant, image_size=image_size, batch_size=batch, weights="none")
    model = build_model(config)
    compile_model(model, config, config.learning_rate)
    built = _peak_rss()
    spec = model.inputs[0]
    shape = tuple(int(d) for d in spec.shape[1:])
    dtype = np.uint8 if "int" in str(spec.dtype) else np.float32
    rng = np.random.default_rng(0)
    predict_batch = max(batch, PREDICT_BATCH)
    x = rng.integers(0, 256, (predict_batch, *shape)).astype(dtype)
    model.predict(x, batch_size=predict_batch, verbose=0)
    predicted = _peak_rss()
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch * FIT_STEPS)]
    x = rng.integers(0, 256, (batch * FIT_STEPS, *shape)).astype(dtype)
    started = time.time()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    return {"variant": variant, "image_size": image_size, "batch": batch, "predict_batch": predict_batch,
            "imported": imported, "built": built, "predicted": predicted, "fitted": _peak_rss(),
            "fit_seconds": round(time.time() - started, 1), "params": int(model.count_params())}


def count_activations() -> dict[str, float]:
    """Floats output by the base's layers per input pixel, per variant (from shapes, no data)."""
    import keras

    from core.settings.variants import VARIANT_NAMES, get_variant
    table = {}
    for name in VARIANT_NAMES:
        constructor = getattr(keras.applications, get_variant(name).keras_constructor)
        base = constructor(include_top=False, weights=None, input_shape=(COUNT_SIDE, COUNT_SIDE, 3))
        floats = sum(int(np.prod(layer.output.shape[1:])) for layer in base.layers[1:])
        table[name] = round(floats / COUNT_SIDE ** 2, 1)
        keras.backend.clear_session()
    return table


def _run_point(variant: str, image_size: int, batch: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--point", variant, str(image_size), str(batch)],
                         capture_output=True, text=True, cwd=ROOT, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def fit(points: list[dict]) -> dict:
    """Least squares of core.estimates.memory's model on the points: peak − runtime = bytes_per_param ×
    params + predict_bytes_per_activation × P·s²·a(v) + bytes_per_activation × B·s²·a(v), with
    P = max(B, 256) the prediction batch (each point predicts one such batch, then fits: as an
    epoch's validation pass and the next epoch's steps share one process in the engine)."""
    from core.estimates.memory import ACTIVATIONS_PER_PIXEL
    per_image = np.array([p["image_size"] ** 2 * ACTIVATIONS_PER_PIXEL[p["variant"]] for p in points])
    design = np.stack([[p["params"] for p in points], [p["predict_batch"] for p in points] * per_image,
                       [p["batch"] for p in points] * per_image], axis=1).astype(np.float64)
    measured = np.array([p["fitted"] - p["imported"] for p in points], dtype=np.float64)
    (per_param, predict_per_activation, per_activation), *_ = np.linalg.lstsq(design, measured, rcond=None)
    return {"runtime_bytes": float(np.mean([p["imported"] for p in points])),
            "bytes_per_param": float(per_param), "predict_bytes_per_activation": float(predict_per_activation),
            "bytes_per_activation": float(per_activation)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--point", nargs=3, metavar=("VARIANT", "SIZE", "BATCH"))
    parser.add_argument("--count", action="store_true")
    args = parser.parse_args()
    if args.point:
        print(json.dumps(measure_point(args.point[0], int(args.point[1]), int(args.point[2]))))
        return
    if args.count:
        print(json.dumps(count_activations(), indent=1))
        return
    points = []
    for variant, size, batch in DEFAULT_POINTS:
        point = _run_point(variant, size, batch)
        points.append(point)
        mb = {k: round(point[k] / 2 ** 20) for k in ("imported", "built", "predicted", "fitted")}
        print(f"{variant} {size:>3} px batch {batch:>3}: peak RSS MB {mb}, fit {point['fit_seconds']} s",
              flush=True)
    print(json.dumps({"points": points, "fit": fit(points)}, indent=1))
    from core.estimates.memory import estimate_peak_bytes
    from core.settings.config import TrainConfig
    for p in points:
        config = TrainConfig(variant=p["variant"], image_size=p["image_size"], batch_size=p["batch"])
        estimate = estimate_peak_bytes(config, device="cpu")
        print(f"{p['variant']} {p['image_size']} px batch {p['batch']}: measured {p['fitted'] / 2**20:.0f} MB, "
              f"core.estimates.memory estimates {estimate / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
