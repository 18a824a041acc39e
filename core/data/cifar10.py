"""CIFAR-10: find it, read it safely, cache it, split it, and feed it to Keras.

We read the official python batches ourselves: `keras.datasets.cifar10.load_data()` has no path
argument and sha256-checks and re-extracts its archive on every call. The batches are pickles, so
they go through an unpickler that can only rebuild numpy arrays. Keras and its backend (seconds to
import) are imported only by the download and `make_dataset`: the dashboard asks for status without
them. Under TensorFlow batches come from tf.data; under JAX from numpy (core/data/batches.py).
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from core.errors import UserInputError
from core.settings.config import CIFAR_CLASSES, CIFAR_TRAIN_IMAGES, ConfigError

CLASS_NAMES: tuple[str, ...] = ("airplane", "automobile", "bird", "cat", "deer",
                                "dog", "frog", "horse", "ship", "truck")
NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
BATCHES_DIRNAME = "cifar-10-batches-py"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
ORIGIN = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ORIGIN_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
KERAS_FNAME = "cifar-10-batches-py-target"   # the name keras.datasets.cifar10 uses: one shared download
DATA_DIR_ENV = "EFFLAB_DATA_DIR"
CACHE_DIR_ENV = "EFFLAB_CACHE_DIR"
DEFAULT_CACHE_DIR = "~/.cache/efficientnet-lab"
_ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")
# Everything numpy needs to rebuild an ndarray from a protocol 2-4 pickle, and nothing more:
# both spellings of multiarray, so files written under numpy 1 (the official ones) and 2 load.
_ALLOWED_GLOBALS = frozenset({("numpy.core.multiarray", "_reconstruct"),
                              ("numpy._core.multiarray", "_reconstruct"),
                              ("numpy", "ndarray"), ("numpy", "dtype")})

log = logging.getLogger(__name__)
_MEMORY_CACHE: dict[tuple[str, str], "Cifar10"] = {}
_LOCK = threading.Lock()


class DataError(UserInputError):
    """The data cannot be had; str(error) is a user-facing paragraph saying what to do."""


class UnsafePickleError(DataError):
    """A pickle asked for something other than numpy array reconstruction."""


@dataclass(frozen=True)
class Cifar10:
    x_train: np.ndarray  # uint8 (50000, 32, 32, 3), read-only: the arrays are shared by the cache
    y_train: np.ndarray  # int64 (50000,)
    x_test: np.ndarray   # uint8 (10000, 32, 32, 3)
    y_test: np.ndarray   # int64 (10000,)
    source: str          # where it was read from, for display


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafePickleError(f"it asks for {module}.{name}, which rebuilding numpy arrays never "
                                    "needs (the file is damaged, or crafted to run code)")
        if name == "_reconstruct":  # resolve here: importing numpy.core warns under numpy 2
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def restricted_load(fileobj) -> object:
    """Unpickles `fileobj` (encoding="bytes"), allowing only the globals numpy arrays need.

    Raises:
        UnsafePickleError: The pickle names any other global, e.g. `posix.system`.
    """
    return _RestrictedUnpickler(fileobj, encoding="bytes").load()


def _keras_datasets_dir() -> Path:
    home = os.environ.get("KERAS_HOME")
    if not home:  # mirror Keras: ~/.keras, or /tmp/.keras when home is read-only
        base = Path.home() if os.access(Path.home(), os.W_OK) else Path("/tmp")
        home = str(base / ".keras")
    return Path(home).expanduser() / "datasets"


def _named_dir(data_dir) -> tuple[str, Path] | None:
    if data_dir is not None and str(data_dir):
        return "data_dir", Path(data_dir).expanduser()
    if os.environ.get(DATA_DIR_ENV):
        return DATA_DIR_ENV, Path(os.environ[DATA_DIR_ENV]).expanduser()
    return None


def _locate(path: Path) -> Path | None:
    if path.is_file():
        return path  # taken as the archive; reading it says if it is not one
    if not path.is_dir():
        return None
    if path.name == BATCHES_DIRNAME or any((path / f).is_file() for f in (*TRAIN_FILES, TEST_FILE)):
        return path
    if (path / BATCHES_DIRNAME).is_dir():
        return path / BATCHES_DIRNAME
    if (path / ARCHIVE_NAME).is_file():
        return path / ARCHIVE_NAME
    return None


def find_cifar10(data_dir: str | os.PathLike | None = None) -> Path | None:
    """Finds CIFAR-10 without reading it: the batches folder or the archive, or None.

    Looks in `data_dir` if given, else in $EFFLAB_DATA_DIR if set, then in Keras's cache
    ($KERAS_HOME/datasets, default ~/.keras/datasets). A place may be a folder holding
    `cifar-10-batches-py/`, that folder itself, `cifar-10-python.tar.gz`, or a folder holding it.
    """
    named = _named_dir(data_dir)
    keras_dir = _keras_datasets_dir()
    places = ([named[1]] if named else []) + [keras_dir / KERAS_FNAME, keras_dir]
    for place in places:
        found = _locate(place)
        if found is not None:
            return found.resolve()
    return None


def _where_to_put_it(data_dir) -> str:
    named = _named_dir(data_dir)
    looked = f"{named[0]}={named[1]} and " if named else ""
    return (f"Looked in {looked}Keras's cache {_keras_datasets_dir()}. Put the CIFAR-10 python "
            f"version ({ARCHIVE_NAME}, or its extracted folder {BATCHES_DIRNAME}/ with "
            f"{', '.join(TRAIN_FILES)} and {TEST_FILE}) in a folder and set {DATA_DIR_ENV} to that "
            f"folder (e.g. {DATA_DIR_ENV}=/data with /data/{BATCHES_DIRNAME}/); {DATA_DIR_ENV} may also "
            f"name the folder or the archive itself. Get it from https://www.cs.toronto.edu/~kriz/cifar.html;"
            f" on a machine with internet access it downloads on first use (170 MB).")


def data_status(data_dir: str | os.PathLike | None = None) -> tuple[bool, str]:
    """(available, message) for the UI, e.g. (True, "CIFAR-10 found at X"); decodes nothing."""
    found = find_cifar10(data_dir)
    if found is None:
        return False, "CIFAR-10 not found. " + _where_to_put_it(data_dir)
    if found.is_dir():
        missing = [f for f in (*TRAIN_FILES, TEST_FILE) if not (found / f).is_file()]
        if missing:
            return False, (f"CIFAR-10 at {found} is incomplete: {', '.join(missing)} missing. "
                           f"Extract {ARCHIVE_NAME} there again.")
    return True, f"CIFAR-10 found at {found}"


def _decode_batch(fileobj, label: str) -> tuple[np.ndarray, np.ndarray]:  # rows (N, 3072), labels
    hint = f"Replace it with the file from the official {ARCHIVE_NAME}."
    try:
        batch = restricted_load(fileobj)
    except UnsafePickleError as e:
        raise UnsafePickleError(f"Refused to load {label}: {e}. {hint}") from None
    except Exception as e:  # garbage makes pickle raise almost anything: EOFError, ValueError, ...
        raise DataError(f"{label} is not a readable CIFAR-10 batch ({type(e).__name__}: {e}). "
                        + hint) from None
    if not isinstance(batch, dict):
        raise DataError(f"{label} is not a CIFAR-10 batch (a {type(batch).__name__}, not a dict). {hint}")
    data, labels = batch.get(b"data", batch.get("data")), batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != math.prod(IMAGE_SHAPE) or labels is None or len(labels) != len(data):
        raise DataError(f"{label} does not hold uint8 'data' of shape (N, 3072) with N 'labels'. {hint}")
    return data, np.asarray(labels, dtype=np.int64)


def _to_nhwc(rows: np.ndarray) -> np.ndarray:
    # Each row holds three 32x32 planes (R, G, B), each row-major.
    return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _read_source(source: Path) -> dict[str, np.ndarray]:
    names = (*TRAIN_FILES, TEST_FILE)
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if source.is_dir():
        for name in names:
            path = source / name
            try:
                with open(path, "rb") as f:
                    parts[name] = _decode_batch(f, str(path))
            except OSError as e:
                raise DataError(f"CIFAR-10 batch {path} is missing or unreadable ({e.strerror}). Extract "
                                f"{ARCHIVE_NAME} there again, or point {DATA_DIR_ENV} elsewhere.") from None
    else:
        try:  # stream the members: the archive is never extracted to disk
            with tarfile.open(source, "r:gz") as tar:
                for member in tar:
                    name = PurePosixPath(member.name).name
                    if member.isfile() and name in names and name not in parts:
                        parts[name] = _decode_batch(tar.extractfile(member), f"{source}:{member.name}")
        except DataError:
            raise
        except Exception as e:  # tarfile.ReadError, EOFError, zlib.error, OSError
            raise DataError(f"{source} is not a readable {ARCHIVE_NAME} ({type(e).__name__}: {e}). "
                            f"Download it again, or use the extracted {BATCHES_DIRNAME}/ folder.") from None
        missing = [n for n in names if n not in parts]
        if missing:
            raise DataError(f"{source} lacks {BATCHES_DIRNAME}/{missing[0]}: it is not the official "
                            f"{ARCHIVE_NAME}. Download it again.")
    train = [parts[n] for n in TRAIN_FILES]
    return {"x_train": _to_nhwc(np.concatenate([x for x, _ in train])),
            "y_train": np.concatenate([y for _, y in train]),
            "x_test": _to_nhwc(parts[TEST_FILE][0]), "y_test": parts[TEST_FILE][1]}


def _validate(arrays: dict[str, np.ndarray], source: Path) -> None:
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.shape[1:] != IMAGE_SHAPE or y.shape != (len(x),) or len(x) == 0:
            raise DataError(f"CIFAR-10 at {source}: {split} images {x.shape} {x.dtype} / labels "
                            f"{y.shape} are not N uint8 32x32x3 images with N labels.")
        if y.min() < 0 or y.max() >= NUM_CLASSES:
            raise DataError(f"CIFAR-10 at {source}: {split} labels run {y.min()}..{y.max()}, not 0..9.")


def _fingerprint(source: Path) -> str:
    files = [source / n for n in (*TRAIN_FILES, TEST_FILE)] if source.is_dir() else [source]
    stats = [(f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files if f.exists()]
    return hashlib.sha1(repr((str(source), stats)).encode()).hexdigest()


def _cache_file(source: Path) -> Path:
    folder = Path(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR).expanduser()
    return folder / f"cifar10-{hashlib.sha1(str(source).encode()).hexdigest()[:16]}.npz"


def _read_cache(path: Path, key: str, source: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                return None  # the source changed since: rebuild
            arrays = {k: npz[k] for k in _ARRAY_KEYS}
        _validate(arrays, source)
        return arrays
    except Exception as e:  # a damaged cache is only a cache: say so and rebuild it
        log.warning("ignoring damaged CIFAR-10 cache %s (%s)", path, e)
        return None


def _write_cache(path: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
            tmp = f.name
            np.savez(f, key=np.array(key), **arrays)  # uncompressed: loads at disk speed
        os.replace(tmp, path)  # readers see the old file or the whole new one, never half
    except OSError as e:
        log.warning("could not cache CIFAR-10 at %s (%s); the next load decodes again", path, e)
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)


def _download(data_dir) -> Path:
    try:
        from keras.utils import get_file  # lazy: pulls in TensorFlow
        path = get_file(fname=KERAS_FNAME, origin=ORIGIN, extract=True, file_hash=ORIGIN_SHA256)
        found = _locate(Path(path))
        if found is None:
            raise FileNotFoundError(f"no {BATCHES_DIRNAME}/ in {path}")
    except Exception as e:  # offline, proxy, disk full, bad hash: one message, no URL traceback
        reason = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise DataError(f"CIFAR-10 was not found and could not be downloaded ({reason}). "
                        + _where_to_put_it(data_dir)) from None
    return found.resolve()


def clear_memory_cache() -> None:
    """Forgets the in-process copy; the .npz cache on disk stays."""
    with _LOCK:
        _MEMORY_CACHE.clear()


def load_cifar10(data_dir: str | os.PathLike | None = None, *, allow_download: bool = True) -> Cifar10:
    """Loads CIFAR-10 as read-only uint8 NHWC images and int64 labels.

    Decoded arrays are cached in-process and in an uncompressed .npz under $EFFLAB_CACHE_DIR
    (default ~/.cache/efficientnet-lab), keyed by the source path and its files' mtimes and sizes.

    Args:
        data_dir: Where to look first (see `find_cifar10`); None means $EFFLAB_DATA_DIR.
        allow_download: If the data is nowhere, download it through Keras into Keras's cache.

    Raises:
        DataError: Not found (and not downloadable), or a batch/archive is missing or corrupt.
    """
    with _LOCK:
        source = find_cifar10(data_dir)
        if source is None:
            if not allow_download:
                raise DataError("CIFAR-10 not found. " + _where_to_put_it(data_dir))
            source = _download(data_dir)
        key = _fingerprint(source)
        cached = _MEMORY_CACHE.get((str(source), key))
        if cached is not None:
            return cached
        cache_file = _cache_file(source)
        arrays = _read_cache(cache_file, key, source)
        if arrays is None:
            arrays = _read_source(source)
            _validate(arrays, source)
            _write_cache(cache_file, key, arrays)
        for a in arrays.values():
            a.flags.writeable = False  # shared by every caller through the cache
        data = Cifar10(**arrays, source=str(source))
        _MEMORY_CACHE.clear()  # hold one copy (~180 MB), not one per source
        _MEMORY_CACHE[(str(source), key)] = data
        return data


def _equal_quota(total: int, available: np.ndarray) -> np.ndarray:
    # As equal as the per-class counts allow: classes that run out leave their share to others.
    quota = np.zeros_like(available)
    while total > 0:
        open_ = np.flatnonzero(quota < available)
        share, extra = divmod(total, len(open_))
        add = np.full(len(open_), share)
        add[:extra] += 1
        add = np.minimum(add, available[open_] - quota[open_])
        quota[open_] += add
        total -= int(add.sum())
    return quota


def training_images_after_split(y: np.ndarray, val_fraction: float) -> int:
    """How many training images split_train_val leaves for training at this val_fraction."""
    counts = np.bincount(np.asarray(y).reshape(-1))
    return int(sum(int(c) - round(int(c) * val_fraction) for c in counts if c > 0))


def training_images(train_limit: int, val_fraction: float, y_train: np.ndarray | None = None) -> int:
    """How many images a run with these settings trains on (split_train_val decides).

    Args:
        train_limit: The setting; 0 means every image the validation split leaves.
        val_fraction: The share of each class held out for validation.
        y_train: The training labels; default CIFAR-10's (5,000 per class).
    """
    if train_limit:
        return int(train_limit)
    if y_train is None:
        y_train = np.repeat(np.arange(CIFAR_CLASSES), CIFAR_TRAIN_IMAGES // CIFAR_CLASSES)
    return training_images_after_split(y_train, val_fraction)


def check_train_limit(train_limit: int, val_fraction: float, y_train: np.ndarray) -> None:
    """Raises ConfigError (field train_limit) when it asks for more images than the split leaves:
    caught before Start, not after the data has loaded in the training thread."""
    available = training_images_after_split(y_train, val_fraction)
    if train_limit > available:
        raise ConfigError("train_limit", f"0 (all) or at most {available:,}, the training images left after "
                          f"val_fraction={val_fraction:g} goes to validation", train_limit)


def split_train_val(x: np.ndarray, y: np.ndarray, *, val_fraction: float, seed: int,
                    train_limit: int = 0) -> Split:
    """Seeded, stratified split: `val_fraction` of each class goes to validation.

    Args:
        x, y: Images (N, ...) and labels (N,) or (N, 1).
        val_fraction: In [0, 1); 0 gives empty validation arrays.
        seed: The same seed gives the same split.
        train_limit: If > 0, keep this many training images (as equal per class as possible) and
            round(train_limit * val_fraction / (1 - val_fraction)) validation ones (>= 1 per class).

    Raises:
        ValueError: val_fraction out of range, or train_limit above the training images available.
    """
    y = np.asarray(y).reshape(-1)
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per_class = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    n_val = [round(len(idx) * val_fraction) for idx in per_class]
    val_parts = [idx[:k] for idx, k in zip(per_class, n_val)]
    train_parts = [idx[k:] for idx, k in zip(per_class, n_val)]
    if train_limit > 0:
        check_train_limit(train_limit, val_fraction, y)
        available = np.array([len(p) for p in train_parts])
        quota = _equal_quota(train_limit, available)
        train_parts = [p[:q] for p, q in zip(train_parts, quota)]
        if val_fraction > 0:
            available = np.array([len(p) for p in val_parts])
            want = max(round(train_limit * val_fraction / (1 - val_fraction)), len(classes))
            quota = _equal_quota(min(want, int(available.sum())), available)
            val_parts = [p[:q] for p, q in zip(val_parts, quota)]
    # Shuffle the concatenation so no consumer ever sees the classes in blocks.
    train_idx = rng.permutation(np.concatenate(train_parts)) if train_parts else np.array([], int)
    val_idx = rng.permutation(np.concatenate(val_parts)) if val_parts else np.array([], int)
    return Split(x[train_idx], y[train_idx], x[val_idx], y[val_idx])


def dataset_len(n_images: int, batch_size: int) -> int:
    """Steps per epoch: ceil(n_images / batch_size)."""
    return -(-n_images // batch_size)


def _batches_per_epoch(n_images: int, batch_size: int, drop_remainder: bool) -> int:
    return n_images // batch_size if drop_remainder else dataset_len(n_images, batch_size)


def make_dataset(x: np.ndarray, y: np.ndarray, *, batch_size: int, training: bool,
                 image_size: int | None = None, augment_flip: bool = False, crop_padding: int = 0,
                 seed: int = 0, one_hot: bool = True, drop_remainder: bool = False,
                 shard: tuple[int, int] = (0, 1), first_epoch: int = 0, epochs: int = 1,
                 skip_batches: int = 0):
    """(images, labels) batches for Keras, shuffled (seeded) in training: a prefetching
    tf.data.Dataset under TensorFlow, a numpy `core.data.batches.ArrayBatches` under any other
    Keras backend (JAX), with the same contents.

    In training it is a stream of whole epochs, `first_epoch` to `first_epoch + epochs - 1`, one
    after the other, for one `fit` with `steps_per_epoch` = the batches of an epoch. Each epoch's
    order (and the host augmentation of each of its batches) is a function of (seed, epoch) alone,
    never of how often a dataset was iterated: so a resumed process that starts at epoch e and
    skips the `skip_batches` batches a stopped one had trained gets exactly the batches it would
    have had next.

    By default the images leave as they are stored, uint8 at the source resolution (3 KB per
    CIFAR image): the model casts, augments and resizes them itself, on the accelerator
    (core.training.model). The resize and augmentation arguments serve checkpoints written before that
    change, whose models take `image_size` floats; they cost host CPU, which is what a fast GPU
    waits on. It batches indices, so shuffling moves integers, not images, and each step is one
    vectorised gather (+ augment + resize); no upscaled copy of the set is ever made.

    Args:
        x, y: uint8 images (N, H, W, 3) and int labels (N,) or (N, 1).
        batch_size: Images per batch.
        training: Shuffle every epoch (seeded), and augment if asked; otherwise keep order.
        image_size: Resize (bilinear, per batch) to this side, giving float32 in 0..255; None or
            the source side: no resize, images stay uint8.
        augment_flip: Random horizontal flip on the host (training only).
        crop_padding: Random translate on the host: reflect-pad by this many px, random-crop
            back to H x W (training only).
        seed: Seeds shuffle and augmentation; epochs still differ from each other.
        one_hot: Labels one-hot float32 (B, 10); else int32 (B,).
        drop_remainder: Drop the last, smaller batch.
        shard: (this process, processes): under JAX over several processes, the part of each
            batch this process feeds (core/data/batches.py); TensorFlow runs one process.
        first_epoch, epochs: The epochs (0-based, as Keras counts them) the training stream holds.
        skip_batches: Leave out this many batches at the start of the first epoch (fewer than it has).
    """
    import keras  # lazy: importing it imports its backend, seconds

    x, y = np.asarray(x), np.asarray(y).reshape(-1)
    if x.ndim != 4 or x.shape[-1] != 3 or len(x) != len(y):
        raise ValueError(f"expected images (N, H, W, 3) and N labels, got {x.shape} and {y.shape}")
    height, width = x.shape[1:3]
    image_size = height if image_size is None else image_size
    if batch_size < 1 or image_size < 1 or not 0 <= crop_padding < min(height, width):
        raise ValueError(f"bad batch_size={batch_size}, image_size={image_size} "
                         f"or crop_padding={crop_padding} (must be < {min(height, width)})")
    per_epoch = _batches_per_epoch(len(x), batch_size, drop_remainder)
    if training and (first_epoch < 0 or epochs < 1 or not 0 <= skip_batches < max(per_epoch, 1)):
        raise ValueError(f"bad first_epoch={first_epoch}, epochs={epochs} or skip_batches={skip_batches} "
                         f"(an epoch has {per_epoch} batches)")
    options = dict(batch_size=batch_size, training=training, image_size=image_size, augment_flip=augment_flip,
                   crop_padding=crop_padding, seed=seed, one_hot=one_hot, drop_remainder=drop_remainder,
                   first_epoch=first_epoch, epochs=epochs, skip_batches=skip_batches)
    if keras.backend.backend() != "tensorflow":
        from core.data.batches import ArrayBatches
        return ArrayBatches(x, y, shard=shard, **options)
    if shard != (0, 1):
        raise ValueError(f"shard {shard}: TensorFlow's pipeline feeds one process")
    return _tf_dataset(x, y, **options)


def _tf_dataset(x: np.ndarray, y: np.ndarray, *, batch_size: int, training: bool, image_size: int,
                augment_flip: bool, crop_padding: int, seed: int, one_hot: bool, drop_remainder: bool,
                first_epoch: int, epochs: int, skip_batches: int):
    """make_dataset on tf.data: indices batched and shuffled, one vectorised gather per step."""
    import tensorflow as tf  # lazy: seconds to import

    height, width = x.shape[1:3]
    images, labels = tf.constant(x), tf.constant(y.astype(np.int32))
    pixels = tf.reshape(images, (-1, 3))  # one row per pixel: crop + flip become one gather
    pad = crop_padding if training else 0
    flip = augment_flip and training

    def reflect(i, size):  # numpy/tf "reflect" padding, as index arithmetic (tf.pad is 10x slower)
        return (size - 1) - tf.abs((size - 1) - tf.abs(i))

    def to_batch(idx, rng_seed=None):
        if not (pad or flip):
            batch = tf.gather(images, idx)
        else:  # augment at the source scale, before resizing, on uint8
            n = tf.shape(idx, out_type=tf.int64)[0]
            u = tf.random.stateless_uniform((n, 3), seed=rng_seed)
            rows = tf.broadcast_to(tf.range(height, dtype=tf.int64), (n, height))
            cols = tf.broadcast_to(tf.range(width, dtype=tf.int64), (n, width))
            if pad:  # a random window of the reflect-padded image
                shift = tf.minimum(tf.cast(u[:, 1:] * (2 * pad + 1), tf.int64), 2 * pad) - pad
                rows, cols = reflect(rows + shift[:, :1], height), reflect(cols + shift[:, 1:], width)
            if flip:
                cols = tf.where(u[:, :1] < 0.5, tf.reverse(cols, axis=[1]), cols)
            flat = idx[:, None, None] * (height * width) + rows[:, :, None] * width + cols[:, None, :]
            batch = tf.gather(pixels, flat)
        if image_size != height or image_size != width:   # only for models that do not resize
            batch = tf.image.resize(tf.cast(batch, tf.float32), (image_size, image_size), method="bilinear")
        target = tf.gather(labels, idx)
        return batch, tf.one_hot(target, NUM_CLASSES) if one_hot else target

    if not training:
        ds = tf.data.Dataset.range(len(x)).batch(batch_size, drop_remainder=drop_remainder).map(
            to_batch, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    def epoch_batches(epoch):
        # Stateless: the order is the shuffle keyed by (seed, epoch), and batch b's augmentation
        # is keyed by (seed, epoch) folded with b, whatever was iterated before.
        key = tf.stack([tf.constant(seed, tf.int64), epoch])
        order = tf.random.experimental.stateless_shuffle(tf.range(len(x), dtype=tf.int64), seed=key)
        batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=drop_remainder)
        return batches.enumerate().map(lambda b, idx: (idx, tf.random.experimental.stateless_fold_in(key, b)))

    per_epoch = _batches_per_epoch(len(x), batch_size, drop_remainder)
    ds = tf.data.Dataset.range(first_epoch, first_epoch + epochs).flat_map(epoch_batches)
    # Skipping the first epoch's first batches moves indices only; the gather comes after.
    ds = ds.skip(skip_batches).apply(tf.data.experimental.assert_cardinality(epochs * per_epoch - skip_batches))
    ds = ds.map(to_batch if (pad or flip) else lambda idx, _: to_batch(idx), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
