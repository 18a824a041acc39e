"""Device check: what one accelerator does with this lab, one JSON line per figure.

Figures: the device; EfficientNet-B0 at 224 px, batch 256, steady-state training images/s for
plain Keras (the same model and input, `fit` with no callbacks) and for the engine (the job
manager, as the dashboard runs it), each with mixed precision on and off; the host pipeline's
capacity; and B0 ImageNet-weights transfer at 224 px on a CIFAR-10 subset (head, then
fine-tuning with BatchNorm frozen), with test accuracy after each epoch and at each minute.

Backends: every figure is measured under the default TensorFlow and under KERAS_BACKEND=jax (a
GPU machine with JAX and no TensorFlow), where nothing imports TensorFlow: the engine's host
pipeline is then numpy batches through keras.utils.PyDataset (core/data/batches.py) instead of tf.data.

    python bench/device_check.py [--smoke] [--subset cifar_subset.npz] [--weights efficientnetb0_notop.h5]
    python bench/device_check.py --make-subset cifar_subset.npz    # from EFFLAB_DATA_DIR, then carry it

--smoke runs the same code with tiny sizes (32 px, batch 16, a few steps) so a CPU finishes in
minutes; tests/test_device_check_tensorflow.py and tests/test_device_check_jax.py run it. Without
--subset, images come from CIFAR-10 (EFFLAB_DATA_DIR) or, failing that, random pixels (throughput
only; transfer is then skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from core.settings.config import TrainConfig  # noqa: E402
from core.training.model import build_model, compile_model, unfreeze, use_jit_compile  # noqa: E402

BACKEND = keras.backend.backend()
SUBSET_TRAIN, SUBSET_TEST = 10_000, 5_000


@dataclass(frozen=True)
class Sizes:
    image_size: int
    batch: int
    steps: int               # timed steps per throughput measurement (after one warm-up epoch)
    transfer_batch: int
    transfer_train: int      # images of the subset used for transfer
    transfer_test: int
    fine_tune_epochs: int
    pipeline_seconds: float


FULL = Sizes(image_size=224, batch=256, steps=30, transfer_batch=128, transfer_train=SUBSET_TRAIN,
             transfer_test=SUBSET_TEST, fine_tune_epochs=8, pipeline_seconds=3.0)
SMOKE = Sizes(image_size=32, batch=8, steps=2, transfer_batch=8, transfer_train=32, transfer_test=16,
              fine_tune_epochs=1, pipeline_seconds=0.5)


def emit(figure: str, **fields) -> None:
    print(json.dumps({"figure": figure, "backend": BACKEND, **fields}), flush=True)


# --- the device -------------------------------------------------------------------------------------
def device_name() -> dict:
    from core.estimates.timing import nvidia_gpu_names
    if BACKEND == "jax":
        import jax
        devices = jax.devices()
        names = [getattr(d, "device_kind", d.platform) for d in devices]
    else:
        import tensorflow as tf
        gpus = tf.config.list_physical_devices("GPU")
        names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
        names = names or [f"CPU ({os.cpu_count()} cores)"]
    return {"devices": names, "nvidia_smi": list(nvidia_gpu_names()), "cpu_cores": os.cpu_count(),
            "machine": f"{platform.node()} {platform.machine()}", "keras": keras.__version__,
            "python": platform.python_version()}


# --- data ---------------------------------------------------------------------------------------------
def make_subset(path: str, data_dir: str | None) -> None:
    """A stratified CIFAR-10 subset (10,000 train, 5,000 test) as a compressed npz to carry."""
    from core.data.cifar10 import load_cifar10
    cifar = load_cifar10(data_dir, allow_download=False)
    rng = np.random.default_rng(0)

    def pick(y, n):
        per_class = [rng.permutation(np.flatnonzero(y == c))[:n // 10] for c in range(10)]
        return rng.permutation(np.concatenate(per_class))
    train, test = pick(cifar.y_train, SUBSET_TRAIN), pick(cifar.y_test, SUBSET_TEST)
    np.savez_compressed(path, x_train=cifar.x_train[train], y_train=cifar.y_train[train],
                        x_test=cifar.x_test[test], y_test=cifar.y_test[test])
    emit("subset_written", path=path, megabytes=round(os.path.getsize(path) / 1e6, 1))


def load_images(subset: str | None, data_dir: str | None) -> tuple[dict, str]:
    if subset:
        with np.load(subset, allow_pickle=False) as npz:
            return {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test")}, f"subset {subset}"
    try:
        from core.data.cifar10 import load_cifar10
        cifar = load_cifar10(data_dir, allow_download=False)
        return ({"x_train": cifar.x_train[:SUBSET_TRAIN], "y_train": cifar.y_train[:SUBSET_TRAIN],
                 "x_test": cifar.x_test[:SUBSET_TEST], "y_test": cifar.y_test[:SUBSET_TEST]},
                f"CIFAR-10 {cifar.source}")
    except Exception:  # noqa: BLE001 - no data at all: throughput still means something
        rng = np.random.default_rng(0)
        return ({"x_train": rng.integers(0, 256, (SUBSET_TRAIN, 32, 32, 3), dtype=np.uint8),
                 "y_train": rng.integers(0, 10, SUBSET_TRAIN), "x_test": None, "y_test": None},
                "random pixels (no CIFAR-10 found)")


class Batches(keras.utils.PyDataset):
    """uint8 32 px batches from numpy, shuffled per epoch, `steps` long however few the images:
    plain Keras's input under JAX (the smoke subset holds fewer images than its timed steps use)."""

    def __init__(self, x, y, batch: int, *, shuffle: bool, seed: int = 0, steps: int | None = None):
        super().__init__()
        self.x, self.y = x, keras.utils.to_categorical(np.asarray(y).reshape(-1), 10).astype("float32")
        self.batch, self.shuffle, self.rng = batch, shuffle, np.random.default_rng(seed)
        self.steps = steps or len(x) // batch
        self.order = self._order()

    def _order(self):
        n = self.steps * self.batch
        repeats = -(-n // len(self.x))
        order = np.concatenate([self.rng.permutation(len(self.x)) if self.shuffle else np.arange(len(self.x))
                                for _ in range(repeats)])
        return order[:n]

    def __len__(self):
        return self.steps

    def __getitem__(self, i):
        idx = self.order[i * self.batch:(i + 1) * self.batch]
        return self.x[idx], self.y[idx]

    def on_epoch_end(self):
        if self.shuffle:
            self.order = self._order()


def training_input(x, y, batch: int, steps: int, seed: int = 0):
    """The engine's host pipeline under TensorFlow (core.data.cifar10.make_dataset), numpy otherwise."""
    if BACKEND == "tensorflow":
        from core.data.cifar10 import make_dataset
        return make_dataset(x, y, batch_size=batch, training=True, seed=seed, drop_remainder=True).repeat()
    return Batches(x, y, batch, shuffle=True, seed=seed, steps=steps)


# --- throughput ---------------------------------------------------------------------------------------
class EpochClock(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start   # logs are host values by now: steps are done


def plain_keras(images: dict, sizes: Sizes, mixed: bool) -> float:
    """Steady-state images/s of `fit` on core.training.model's B0 (second epoch; the first compiles)."""
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    try:
        config = TrainConfig(image_size=sizes.image_size, batch_size=sizes.batch, weights="none")
        keras.utils.set_random_seed(0)
        model = build_model(config)
        compile_model(model, config, config.learning_rate, jit_compile=use_jit_compile("auto"))
        data = training_input(images["x_train"], images["y_train"], sizes.batch, sizes.steps)
        clock = EpochClock()
        model.fit(data, epochs=2, steps_per_epoch=sizes.steps, callbacks=[clock], shuffle=False, verbose=0)
        return sizes.steps * sizes.batch / clock.seconds
    finally:
        keras.mixed_precision.set_global_policy("float32")


def write_cifar_folder(images: dict, folder: Path) -> Path:
    """The subset in CIFAR-10's own python format, so the engine loads it like the real thing."""
    out = folder / "cifar-10-batches-py"
    out.mkdir(parents=True)

    def dump(name, x, y):
        rows = np.ascontiguousarray(x.transpose(0, 3, 1, 2)).reshape(len(x), -1)
        with open(out / name, "wb") as f:
            # Protocol 4, as the verified copy: protocol 2 stores the buffer through _codecs.encode,
            # which core.data.cifar10's restricted unpickler rightly refuses.
            pickle.dump({b"data": rows, b"labels": [int(v) for v in y]}, f, protocol=4)
    for i, part in enumerate(np.array_split(np.arange(len(images["x_train"])), 5), start=1):
        dump(f"data_batch_{i}", images["x_train"][part], images["y_train"][part])
    dump("test_batch", images["x_test"], images["y_test"])
    return folder


def engine(images: dict, sizes: Sizes, mixed: bool, data_dir: Path) -> float:
    """Steady-state images/s the engine records (metrics.csv, second epoch; validation excluded)."""
    from core.jobs.scheduler import JobManager
    config = TrainConfig(image_size=sizes.image_size, batch_size=sizes.batch, epochs=2,
                         train_limit=sizes.steps * sizes.batch, val_fraction=0.1,
                         mixed_precision="on" if mixed else "off")
    with tempfile.TemporaryDirectory() as runs:
        manager = JobManager(runs_dir=runs, data_dir=str(data_dir))
        run = manager.store.get(manager.start(config))
        manager.wait()
        status = run.read_status()
        if status.get("state") != "completed":
            raise RuntimeError(f"engine run {status.get('state')}: {status.get('error')}")
        return float(run.read_metrics()[-1]["images_per_second"])


def host_pipeline(images: dict, sizes: Sizes) -> float:
    """Images/s the host side delivers (all cores), draining the training input for a while."""
    from core.data.cifar10 import make_dataset   # the engine's own host pipeline, on either backend
    data = make_dataset(images["x_train"], images["y_train"], batch_size=sizes.batch, training=True,
                        drop_remainder=True)
    iterator = iter(data.repeat()) if BACKEND == "tensorflow" else (data[i % len(data)] for i in range(10**9))
    next(iterator)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < sizes.pipeline_seconds:
        next(iterator)
        count += sizes.batch
    return count / (time.perf_counter() - start)


# --- transfer -----------------------------------------------------------------------------------------
def transfer(images: dict, sizes: Sizes, weights: str) -> None:
    """B0 ImageNet weights: one head epoch (base frozen), then fine-tuning (BatchNorm frozen)."""
    x, y = images["x_train"][:sizes.transfer_train], images["y_train"][:sizes.transfer_train]
    x_test, y_test = images["x_test"][:sizes.transfer_test], images["y_test"][:sizes.transfer_test]
    config = TrainConfig(weights=weights, image_size=sizes.image_size, batch_size=sizes.transfer_batch,
                         freeze_base=True, fine_tune_at_epoch=1, label_smoothing=0.1)
    mixed = _on_gpu()    # as the engine's mixed_precision=auto on a recent GPU; float16 crawls on a CPU
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    try:
        model = build_model(config)
        jit = use_jit_compile("auto")
        compile_model(model, config, 1e-3, jit_compile=jit)
        steps = len(x) // sizes.transfer_batch
        test = Batches(x_test, y_test, sizes.transfer_batch, shuffle=False, steps=max(1, len(x_test) // sizes.transfer_batch))
        start, points = time.perf_counter(), []
        for epoch in range(1 + sizes.fine_tune_epochs):
            if epoch == 1:
                unfreeze(model, 1)
                compile_model(model, config, 3e-4, jit_compile=jit)
            model.fit(training_input(x, y, sizes.transfer_batch, steps, seed=epoch), epochs=1,
                      steps_per_epoch=steps, shuffle=False, verbose=0)
            accuracy = float(model.evaluate(test, verbose=0, return_dict=True)["accuracy"])
            elapsed = time.perf_counter() - start
            points.append((elapsed, accuracy))
            emit("transfer_test_accuracy", epoch=epoch + 1, phase="head" if epoch == 0 else "fine-tune",
                 elapsed_seconds=round(elapsed, 1), value=round(accuracy, 4), image_size=sizes.image_size,
                 train_images=len(x), test_images=test.steps * test.batch, mixed_precision=mixed, xla=jit)
        for minute in range(1, int(points[-1][0] // 60) + 1):
            latest = [a for t, a in points if t <= minute * 60]
            emit("transfer_test_accuracy_by_minute", minute=minute, value=latest[-1] if latest else None)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _on_gpu() -> bool:
    from core.training.backend import gpu_devices
    return bool(gpu_devices())


def _weights_file(given: str | None) -> str | None:
    candidates = [given] if given else []
    if os.environ.get("EFFLAB_WEIGHTS_DIR"):
        candidates.append(os.path.join(os.environ["EFFLAB_WEIGHTS_DIR"], "efficientnetb0_notop.h5"))
    return next((c for c in candidates if c and os.path.isfile(c)), None)


def _measure(figure: str, function, **fields) -> float | None:
    try:
        value = function()
    except Exception as exc:  # noqa: BLE001 - one failed figure must not hide the others
        emit(figure, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}", **fields)
        return None
    emit(figure, value=round(value, 1), unit="images/s", **fields)
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for a CPU and for the test")
    parser.add_argument("--subset", help="npz with x_train, y_train, x_test, y_test (uint8 32 px)")
    parser.add_argument("--weights", help="efficientnetb0_notop.h5 (default: $EFFLAB_WEIGHTS_DIR)")
    parser.add_argument("--data-dir", default=os.environ.get("EFFLAB_DATA_DIR"))
    parser.add_argument("--make-subset", metavar="NPZ", help="write the carried subset and exit")
    parser.add_argument("--skip", nargs="*", default=[], choices=["plain", "engine", "pipeline", "transfer"])
    args = parser.parse_args(argv)
    if args.make_subset:
        make_subset(args.make_subset, args.data_dir)
        return
    sizes = SMOKE if args.smoke else FULL
    started = time.perf_counter()
    emit("device", smoke=args.smoke, **device_name())
    images, source = load_images(args.subset, args.data_dir)
    shape = {"image_size": sizes.image_size, "batch": sizes.batch, "timed_steps": sizes.steps, "data": source}
    plain = {}
    for mixed in (False, True):
        if "plain" not in args.skip:
            plain[mixed] = _measure("plain_keras_train_images_per_second", lambda: plain_keras(images, sizes, mixed),
                                    mixed_precision=mixed, **shape)
    if "engine" not in args.skip:
        if images["x_test"] is None:
            emit("engine_train_images_per_second", skipped="needs CIFAR-10 images (--subset or EFFLAB_DATA_DIR)")
        else:
            # The smoke run keeps float32 only: float16 is emulated on a CPU (the TensorFlow smoke's
            # mixed engine run took 92 s of its 390), and the engine's mixed precision has its own
            # tests (tests/test_gpu_branches.py, test_slots.py); plain Keras above still takes both.
            precisions = (False,) if args.smoke else (False, True)
            with tempfile.TemporaryDirectory() as folder:
                data_dir = write_cifar_folder(images, Path(folder))
                for mixed in precisions:
                    value = _measure("engine_train_images_per_second",
                                     lambda: engine(images, sizes, mixed, data_dir), mixed_precision=mixed, **shape)
                    if value and plain.get(mixed):
                        emit("engine_over_plain_keras", mixed_precision=mixed, value=round(value / plain[mixed], 3))
    if "pipeline" not in args.skip:
        _measure("host_pipeline_images_per_second", lambda: host_pipeline(images, sizes), batch=sizes.batch,
                 pipeline="core.data.cifar10.make_dataset (tf.data)" if BACKEND == "tensorflow"
                 else "core.data.cifar10.make_dataset (numpy PyDataset)",
                 cpu_cores=os.cpu_count())
    if "transfer" not in args.skip:
        weights = _weights_file(args.weights)
        if weights is None or images["x_test"] is None:
            emit("transfer_test_accuracy", skipped="needs ImageNet B0 weights (--weights or EFFLAB_WEIGHTS_DIR) "
                 "and CIFAR-10 images (--subset or EFFLAB_DATA_DIR)")
        else:
            try:
                transfer(images, sizes, weights)
            except Exception as exc:  # noqa: BLE001
                emit("transfer_test_accuracy", error=f"{type(exc).__name__}: {str(exc)[:300]}")
    emit("done", seconds=round(time.perf_counter() - started, 1))


if __name__ == "__main__":
    main()
