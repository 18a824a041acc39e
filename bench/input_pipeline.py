"""Images/s the host side of training can deliver, per CPU core, before and after feeding the device.

"before": the pipeline as it was until issue 11, still in core.data.cifar10.make_dataset for checkpoints
that need it: gather, flip and reflect-pad translate on uint8, cast to float32 and resize to the
training size, all on the host. "after": what the engine ships now: uint8 batches at CIFAR's
32 px (3 KB an image); cast, augmentation and resize are layers of the model, on the device. The
host's work no longer depends on the training size, so "after" is one pipeline measured at each.

TensorFlow and tf.data are held to one thread each, so the figure is per core: images per CPU
second of this process (and per wall second, which on a busy machine is lower); a host with N
free cores delivers roughly N times as much (tf.data parallelises the map over batches).

    python bench/input_pipeline.py [--seconds 3] [--batch 256] [--sizes 32 96 224] [--data-dir DIR]

Uses real CIFAR-10 when EFFLAB_DATA_DIR (or --data-dir) has it, else random uint8 images of the
same shape (the pipeline's cost does not depend on the pixel values). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from core.data import cifar10 as data_mod  # noqa: E402

CROP_PADDING = 4   # the default TrainConfig.augment_crop_padding


def _one_core() -> None:
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _images(data_dir: str | None, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    try:
        cifar = data_mod.load_cifar10(data_dir, allow_download=False)
        return cifar.x_train[:n], cifar.y_train[:n], f"real CIFAR-10 ({cifar.source})"
    except data_mod.DataError:
        rng = np.random.default_rng(0)
        return (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n),
                "random uint8 32x32 images (no CIFAR-10 found)")


def _single_threaded(ds):
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    return ds.with_options(options)


def images_per_second(ds, batch: int, seconds: float) -> tuple[float, float, int]:
    """Drains `ds` (repeated) for about `seconds` after one warm-up batch.

    Returns (images per wall second, images per CPU second of this process, bytes per image). On a
    shared machine the CPU-second figure is the one that holds: it is what one core delivers when
    it is ours, however many other processes want it meanwhile.
    """
    iterator = iter(ds.repeat())
    first, _ = next(iterator)
    bytes_per_image = int(np.prod(first.shape[1:])) * first.dtype.size
    images, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        next(iterator)
        images += batch
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return images / wall, images / max(cpu, 1e-9), bytes_per_image


def measure(x, y, *, size: int, batch: int, seconds: float, path: str) -> dict:
    if path == "before":   # host: augment, cast, resize to the training size
        ds = data_mod.make_dataset(x, y, image_size=size, batch_size=batch, training=True,
                                   augment_flip=True, crop_padding=CROP_PADDING, drop_remainder=True)
        if size == x.shape[1]:   # the old code cast to float32 even when it did not resize
            ds = ds.map(lambda images, labels: (tf.cast(images, tf.float32), labels))
    else:                  # host: uint8 at 32 px; the model does the rest on the device
        ds = data_mod.make_dataset(x, y, batch_size=batch, training=True, drop_remainder=True)
    rate, per_cpu_second, bytes_per_image = images_per_second(_single_threaded(ds), batch, seconds)
    return {"path": path, "image_size": size, "images_per_cpu_second": round(per_cpu_second, 1),
            "images_per_wall_second": round(rate, 1),
            "host_bytes_per_image": bytes_per_image,
            "host_megabytes_per_batch": round(bytes_per_image * batch / 1e6, 2)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 96, 224])
    parser.add_argument("--images", type=int, default=10_000, help="images in the source array")
    parser.add_argument("--data-dir", default=os.environ.get("EFFLAB_DATA_DIR"))
    args = parser.parse_args(argv)
    _one_core()
    x, y, source = _images(args.data_dir, args.images)
    rows = [measure(x, y, size=size, batch=args.batch, seconds=args.seconds, path=path)
            for size in args.sizes for path in ("before", "after")]
    report = {
        "machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip()
                   + f", {os.cpu_count()} CPUs visible, 1 used",
        "stack": f"TensorFlow {tf.__version__}, Python {platform.python_version()}",
        "data": source, "batch": args.batch, "seconds_per_measurement": args.seconds, "rows": rows,
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
