"""A small CIFAR-10 look-alike on disk, in the official format, for offline tests.

Each class is a distinct colour (so a tiny model beats chance and tests can read the class back
from an image's mean colour), plus a left-to-right ramp (so a horizontal flip changes pixels)
and per-pixel noise (so every image is unique).
"""
from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

BATCHES_DIRNAME = "cifar-10-batches-py"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Ten RGB colours at least 80 apart per channel step; kept within 50..210 so ramp + noise never clip.
PALETTE = np.array([(50, 50, 210), (50, 210, 50), (210, 50, 50), (210, 210, 50), (210, 50, 210),
                    (50, 210, 210), (130, 130, 130), (210, 130, 50), (50, 130, 210), (130, 50, 130)],
                   dtype=np.int16)
RAMP = 20   # the ramp runs -RAMP..+RAMP across the width (mean 0)
NOISE = 10  # uniform per-pixel noise in -NOISE..+NOISE


def fixture_arrays(train_per_class: int = 30, test_per_class: int = 10,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What `write_cifar_fixture` writes, in file order: (x_train, y_train, x_test, y_test)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-RAMP, RAMP, 32).round().astype(np.int16)[None, None, :, None]

    def make(per_class):
        y = rng.permutation(np.repeat(np.arange(10), per_class))
        noise = rng.integers(-NOISE, NOISE + 1, size=(len(y), 32, 32, 3), dtype=np.int16)
        x = PALETTE[y][:, None, None, :] + ramp + noise
        return x.astype(np.uint8), y.astype(np.int64)

    x_train, y_train = make(train_per_class)
    x_test, y_test = make(test_per_class)
    return x_train, y_train, x_test, y_test


def class_of(images: np.ndarray) -> np.ndarray:
    """Reads the class back from each image's mean colour (works after flips, crops and resizing)."""
    means = np.asarray(images, dtype=np.float64).reshape(len(images), -1, 3).mean(axis=1)
    return np.argmin(((means[:, None, :] - PALETTE[None]) ** 2).sum(-1), axis=1)


def _batch_bytes(x: np.ndarray, y: np.ndarray, label: bytes) -> bytes:
    # The official row layout, written out plane by plane (not by a transpose, so a loader that
    # gets the channel order wrong cannot agree with this by making the same mistake).
    planes = [x[..., c].reshape(len(x), 1024) for c in range(3)]
    data = np.concatenate(planes, axis=1).astype(np.uint8)
    # Protocol 4, as in the verified copy: ndarray via multiarray._reconstruct, buffer as bytes.
    return pickle.dumps({b"batch_label": label, b"labels": [int(v) for v in y], b"data": data}, protocol=4)


def fixture_files(train_per_class: int = 30, test_per_class: int = 10, seed: int = 0) -> dict[str, bytes]:
    """File name -> contents of the batches folder."""
    x_train, y_train, x_test, y_test = fixture_arrays(train_per_class, test_per_class, seed)
    files = {}
    for i, (xs, ys) in enumerate(zip(np.array_split(x_train, 5), np.array_split(y_train, 5)), start=1):
        files[f"data_batch_{i}"] = _batch_bytes(xs, ys, f"training batch {i} of 5".encode())
    files["test_batch"] = _batch_bytes(x_test, y_test, b"testing batch 1 of 1")
    meta = {b"num_cases_per_batch": len(x_train) // 5, b"num_vis": 3072,
            b"label_names": [n.encode() for n in CLASS_NAMES]}
    files["batches.meta"] = pickle.dumps(meta, protocol=4)
    return files


def write_cifar_fixture(root: Path, *, train_per_class: int = 30, test_per_class: int = 10,
                        seed: int = 0, as_archive: bool = False) -> Path:
    """Writes a small CIFAR-10 in the official python format under `root`.

    Args:
        root: A folder (created if needed).
        train_per_class, test_per_class: Images per class; training images are spread over the
            five data_batch files, classes shuffled, as in the original.
        seed: Seeds the noise and the order (see `fixture_arrays` for the exact arrays).
        as_archive: Write `root/cifar-10-python.tar.gz` instead of `root/cifar-10-batches-py/`.

    Returns:
        The path to pass as data_dir: `root` (holding the batches folder), or the archive file.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    files = fixture_files(train_per_class, test_per_class, seed)
    if as_archive:
        archive = root / ARCHIVE_NAME
        with tarfile.open(archive, "w:gz") as tar:
            for name, content in files.items():
                info = tarfile.TarInfo(f"{BATCHES_DIRNAME}/{name}")
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        return archive
    folder = root / BATCHES_DIRNAME
    folder.mkdir(exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return root
