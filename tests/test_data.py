"""core.data.cifar10: finding, safe reading, caching, splitting and the tf.data pipeline (offline, fast).

The fixture images encode their class in their colour (tests/cifar_fixture.py), so label
alignment can be checked on any image that comes out of the pipeline.
"""
from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from core.data import cifar10 as data
from core.settings.config import ConfigError
from cifar_fixture import class_of, fixture_arrays, fixture_files, write_cifar_fixture

REPO = Path(__file__).resolve().parents[1]
ALL_FILES = (*data.TRAIN_FILES, data.TEST_FILE)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test sees the developer's data, Keras cache or .npz cache."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "cache"))
    data.clear_memory_cache()
    yield
    data.clear_memory_cache()


@pytest.fixture
def root(tmp_path) -> Path:
    return write_cifar_fixture(tmp_path / "data")


def assert_same(loaded: data.Cifar10, expected) -> None:
    for name, want in zip(("x_train", "y_train", "x_test", "y_test"), expected):
        got = getattr(loaded, name)
        assert got.dtype == want.dtype and got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)


# --- finding and loading ------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["parent folder", "batches folder", "archive", "folder with archive"])
def test_loads_every_layout_exactly(tmp_path, layout):
    if "archive" in layout:
        source = write_cifar_fixture(tmp_path / "d", as_archive=True)
        data_dir = source if layout == "archive" else source.parent
    else:
        source = write_cifar_fixture(tmp_path / "d") / data.BATCHES_DIRNAME
        data_dir = source.parent if layout == "parent folder" else source
    assert data.find_cifar10(data_dir) == source.resolve()
    loaded = data.load_cifar10(data_dir, allow_download=False)
    assert loaded.source == str(source.resolve())
    assert_same(loaded, fixture_arrays())
    assert loaded.x_train.shape == (300, 32, 32, 3) and loaded.x_test.shape == (100, 32, 32, 3)
    assert np.bincount(loaded.y_train).tolist() == [30] * 10
    assert not loaded.x_train.flags.writeable  # shared through the cache


def test_channel_order_against_the_raw_rows(root):
    """A row is R plane, G plane, B plane, each row-major: pixel (r, c) of channel k is k*1024 + r*32 + c."""
    with open(root / data.BATCHES_DIRNAME / data.TEST_FILE, "rb") as f:
        rows = pickle.load(f, encoding="bytes")[b"data"]  # our own fixture: plain pickle is fine
    x = data.load_cifar10(root).x_test
    for i, r, c in [(0, 0, 0), (3, 5, 31), (7, 31, 2), (99, 17, 9)]:
        assert x[i, r, c].tolist() == [rows[i, k * 1024 + r * 32 + c] for k in range(3)]
    assert (class_of(x) == fixture_arrays()[3]).all()  # the colours survived, so R/G/B did too


def test_env_var_is_honoured_and_data_dir_wins(tmp_path, root, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(root))
    assert data.load_cifar10(allow_download=False).source == str((root / data.BATCHES_DIRNAME).resolve())
    assert data.data_status() == (True, f"CIFAR-10 found at {(root / data.BATCHES_DIRNAME).resolve()}")
    other = write_cifar_fixture(tmp_path / "other", as_archive=True)
    assert data.find_cifar10(other.parent) == other.resolve()


def test_keras_cache_is_searched_last(tmp_path):
    keras_copy = write_cifar_fixture(tmp_path / "keras" / "datasets" / data.KERAS_FNAME)
    assert data.find_cifar10() == (keras_copy / data.BATCHES_DIRNAME).resolve()
    assert data.find_cifar10(tmp_path / "empty-and-missing") == (keras_copy / data.BATCHES_DIRNAME).resolve()


def test_nothing_found_is_explained(tmp_path):
    (tmp_path / "empty").mkdir()
    assert data.find_cifar10(tmp_path / "empty") is None
    ok, message = data.data_status(tmp_path / "empty")
    assert not ok
    assert "EFFLAB_DATA_DIR" in message and "cifar-10-batches-py" in message and "first use" in message
    with pytest.raises(data.DataError, match="EFFLAB_DATA_DIR"):
        data.load_cifar10(tmp_path / "empty", allow_download=False)


def test_offline_download_failure_says_where_to_put_the_data(tmp_path, monkeypatch):
    keras = pytest.importorskip("keras")
    calls = []

    def no_network(**kwargs):
        calls.append(kwargs)
        raise Exception("URL fetch failure on https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz: "
                        "None -- [Errno -3] Temporary failure in name resolution")

    # Only the network is mocked: this machine has no internet, so the real call would fail the
    # same way, only slower; everything else (finding, the message) is the real code.
    monkeypatch.setattr(keras.utils, "get_file", no_network)
    with pytest.raises(data.DataError) as info:
        data.load_cifar10(tmp_path / "nothing-here")
    message = str(info.value)
    assert "could not be downloaded" in message and "Temporary failure" in message
    assert "EFFLAB_DATA_DIR" in message and "cifar-10-python.tar.gz" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no URL traceback
    assert calls == [{"fname": data.KERAS_FNAME, "origin": data.ORIGIN, "extract": True,
                      "file_hash": data.ORIGIN_SHA256}]


def test_download_lands_where_keras_puts_it(tmp_path, monkeypatch):
    keras = pytest.importorskip("keras")

    def fake_download(**kwargs):  # the network again; Keras extracts into datasets/<fname>/
        target = tmp_path / "keras" / "datasets" / kwargs["fname"]
        write_cifar_fixture(target)
        return str(target)

    monkeypatch.setattr(keras.utils, "get_file", fake_download)
    loaded = data.load_cifar10()
    assert_same(loaded, fixture_arrays())
    assert data.find_cifar10() == Path(loaded.source)  # found next time without downloading


# --- damaged and malicious files ------------------------------------------------------------------

class Exploit:
    """Unpickling this runs `func(arg)`: the classic pickle code-execution gadget."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("func, name", [(os.system, f"{os.system.__module__}.system"),
                                        (eval, "builtins.eval")])
def test_restricted_load_refuses_code(tmp_path, func, name):
    marker = tmp_path / "pwned"
    arg = f"touch {marker}" if func is os.system else f"open({str(marker)!r}, 'w').close()"
    payload = pickle.dumps(Exploit(func, arg), protocol=4)
    with pytest.raises(data.UnsafePickleError, match=name.replace(".", r"\.")):
        data.restricted_load(io.BytesIO(payload))
    assert not marker.exists()
    pickle.loads(payload)  # control: the same bytes through plain pickle do run the code
    assert marker.exists()


def test_malicious_batch_file_is_refused_by_name(root, tmp_path):
    marker = tmp_path / "pwned"
    (root / data.BATCHES_DIRNAME / "data_batch_2").write_bytes(
        pickle.dumps(Exploit(os.system, f"touch {marker}"), protocol=4))
    with pytest.raises(data.UnsafePickleError) as info:
        data.load_cifar10(root, allow_download=False)
    assert "data_batch_2" in str(info.value) and f"{os.system.__module__}.system" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("array", [np.arange(12, dtype=np.uint8).reshape(3, 4),
                                   np.linspace(0, 1, 7, dtype=np.float32), np.array([[1, -2]])])
@pytest.mark.parametrize("protocol", [3, 4])
def test_restricted_load_reads_numpy_arrays(array, protocol):
    loaded = data.restricted_load(io.BytesIO(pickle.dumps({b"a": array, b"n": [1, 2]}, protocol=protocol)))
    np.testing.assert_array_equal(loaded[b"a"], array)
    assert loaded[b"a"].dtype == array.dtype and loaded[b"n"] == [1, 2]


def test_missing_batch_is_named(root):
    (root / data.BATCHES_DIRNAME / "data_batch_3").unlink()
    ok, message = data.data_status(root)
    assert not ok and "data_batch_3" in message
    with pytest.raises(data.DataError, match="data_batch_3"):
        data.load_cifar10(root, allow_download=False)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "not a dict", "wrong shape"])
def test_corrupt_batch_is_named(root, damage):
    path = root / data.BATCHES_DIRNAME / data.TEST_FILE
    content = path.read_bytes()
    path.write_bytes({"truncated": content[: len(content) // 2],
                      "garbage": os.urandom(5000),
                      "empty": b"",
                      "not a dict": pickle.dumps([1, 2, 3]),
                      "wrong shape": pickle.dumps({b"data": np.zeros((2, 100), np.uint8),
                                                   b"labels": [0, 1]})}[damage])
    with pytest.raises(data.DataError, match="test_batch"):
        data.load_cifar10(root, allow_download=False)


def test_labels_out_of_range_are_refused(root):
    path = root / data.BATCHES_DIRNAME / data.TEST_FILE
    batch = pickle.loads(path.read_bytes())
    batch[b"labels"][0] = 10
    path.write_bytes(pickle.dumps(batch, protocol=4))
    with pytest.raises(data.DataError, match="0..9"):
        data.load_cifar10(root, allow_download=False)


def test_bad_archives_are_named(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    archive = folder / data.ARCHIVE_NAME
    archive.write_bytes(b"<html>404 Not Found</html>")  # what a failed download often leaves
    with pytest.raises(data.DataError, match=data.ARCHIVE_NAME):
        data.load_cifar10(folder, allow_download=False)

    good = write_cifar_fixture(tmp_path / "good", as_archive=True).read_bytes()
    archive.write_bytes(good[: len(good) // 2])
    with pytest.raises(data.DataError, match=data.ARCHIVE_NAME):
        data.load_cifar10(archive, allow_download=False)

    with tarfile.open(archive, "w:gz") as tar:  # a real tar.gz without the test batch
        for name, content in fixture_files().items():
            if name != data.TEST_FILE:
                info = tarfile.TarInfo(f"{data.BATCHES_DIRNAME}/{name}")
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    with pytest.raises(data.DataError, match="test_batch"):
        data.load_cifar10(archive, allow_download=False)


# --- caching ----------------------------------------------------------------------------------

def _cache_files(tmp_path) -> list[Path]:
    return sorted((tmp_path / "cache").glob("*.npz"))


def test_second_load_comes_from_the_npz_cache(tmp_path, root, monkeypatch):
    first = data.load_cifar10(root)
    assert data.load_cifar10(root) is first  # in-process
    assert len(_cache_files(tmp_path)) == 1
    data.clear_memory_cache()

    def no_decoding(fileobj):
        raise AssertionError("a batch was decoded although the cache was valid")

    monkeypatch.setattr(data, "restricted_load", no_decoding)
    second = data.load_cifar10(root)
    assert_same(second, fixture_arrays())
    assert second.source == first.source


def test_fresh_process_loads_from_cache_without_tensorflow(tmp_path, root):
    data.load_cifar10(root)  # builds the cache
    code = ("import sys; import core.data.cifar10 as d; "
            "d.restricted_load = lambda f: sys.exit('a batch was decoded although the cache was valid'); "
            f"x = d.load_cifar10({str(root)!r}, allow_download=False); "
            "print(len(x.x_train), 'tensorflow' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["300", "False"]


@pytest.mark.parametrize("damage", [b"not a zip at all", "truncated"])
def test_damaged_cache_is_rebuilt(tmp_path, root, damage):
    data.load_cifar10(root)
    [cache] = _cache_files(tmp_path)
    content = cache.read_bytes()
    cache.write_bytes(content[: len(content) // 2] if damage == "truncated" else damage)
    data.clear_memory_cache()
    assert_same(data.load_cifar10(root), fixture_arrays())
    with np.load(cache) as npz:  # rewritten whole
        np.testing.assert_array_equal(npz["x_test"], fixture_arrays()[2])
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_changed_source_invalidates_both_caches(tmp_path, root):
    data.load_cifar10(root)
    write_cifar_fixture(root, seed=1)  # the same folder, new content
    later = time.time() + 5
    for name in ALL_FILES:
        os.utime(root / data.BATCHES_DIRNAME / name, (later, later))
    assert_same(data.load_cifar10(root), fixture_arrays(seed=1))
    assert len(_cache_files(tmp_path)) == 1  # replaced, not piled up


def test_importing_core_data_does_not_import_tensorflow():
    code = "import sys, core.data.cifar10; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# --- split --------------------------------------------------------------------------------------

def _labels(per_class) -> np.ndarray:
    return np.random.default_rng(0).permutation(np.repeat(np.arange(10), per_class))


def test_split_is_stratified_disjoint_and_complete():
    y = _labels(100)
    x = np.arange(len(y))  # "images" that name their own index
    s = data.split_train_val(x, y, val_fraction=0.1, seed=3)
    assert np.bincount(s.y_val).tolist() == [10] * 10 and np.bincount(s.y_train).tolist() == [90] * 10
    assert not set(s.x_train) & set(s.x_val) and set(s.x_train) | set(s.x_val) == set(x)
    assert (y[s.x_train] == s.y_train).all() and (y[s.x_val] == s.y_val).all()  # pairs kept together


def test_split_is_deterministic_per_seed():
    y = _labels(50)
    x = np.arange(len(y))
    a, b, c = (data.split_train_val(x, y, val_fraction=0.2, seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.x_val, b.x_val)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert set(a.x_val) != set(c.x_val)


@pytest.mark.parametrize("limit, val_fraction, want_val", [(25, 0.2, 10), (100, 0.1, 11), (200, 0.2, 50)])
def test_train_limit_cuts_both_parts(limit, val_fraction, want_val):
    y = _labels(100)
    s = data.split_train_val(np.arange(len(y)), y, val_fraction=val_fraction, seed=0, train_limit=limit)
    assert len(s.y_train) == limit and len(s.y_val) == want_val  # round(limit*vf/(1-vf)), >= 1 per class
    for part in (s.y_train, s.y_val):
        counts = np.bincount(part, minlength=10)
        assert counts.max() - counts.min() <= 1 and counts.min() >= 1
    assert not set(s.x_train) & set(s.x_val)


def test_train_limit_with_uneven_classes_and_errors():
    y = np.concatenate([np.zeros(3, int), np.repeat(np.arange(1, 10), 20)])
    s = data.split_train_val(np.arange(len(y)), y, val_fraction=0.0, seed=0, train_limit=100)
    counts = np.bincount(s.y_train)
    assert counts[0] == 3 and counts[1:].min() >= 10 and counts.sum() == 100
    # Class 0 keeps 1 of its 3 (round(1.5) is 2 for validation), the others 10 of 20: 91 in all.
    with pytest.raises(ConfigError, match=r"^train_limit: expected 0 \(all\) or at most 91, .*; got 150$"):
        data.split_train_val(np.arange(len(y)), y, val_fraction=0.5, seed=0, train_limit=150)
    data.split_train_val(np.arange(len(y)), y, val_fraction=0.5, seed=0, train_limit=91)   # the most


@pytest.mark.parametrize("val_fraction", [0.0, 0.05, 0.1, 0.25, 0.5])
def test_training_images_after_split_matches_the_split(val_fraction):
    y = np.concatenate([np.zeros(3, int), np.repeat(np.arange(1, 10), 21)])
    s = data.split_train_val(np.arange(len(y)), y, val_fraction=val_fraction, seed=1)
    assert data.training_images_after_split(y, val_fraction) == len(s.y_train)
    with pytest.raises(ValueError, match="val_fraction"):
        data.split_train_val(np.arange(len(y)), y, val_fraction=1.0, seed=0)


def test_zero_val_fraction_gives_empty_validation(root):
    cifar = data.load_cifar10(root)
    s = data.split_train_val(cifar.x_train, cifar.y_train[:, None], val_fraction=0, seed=0)
    assert s.x_val.shape == (0, 32, 32, 3) and s.y_val.shape == (0,)
    assert s.x_train.shape == (300, 32, 32, 3) and (class_of(s.x_train) == s.y_train).all()


# --- the host pipeline: tf.data under TensorFlow, numpy batches under JAX (make test-jax) ------------

def _batches(ds) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every (images, labels) batch of `ds` as numpy: one epoch, or in training the epochs it was
    made for, one after the other (a keras PyDataset by index, as fit reads it)."""
    import keras
    if isinstance(ds, keras.utils.PyDataset):
        return [tuple(np.asarray(part) for part in ds[i]) for i in range(len(ds))]
    return [(x.numpy(), y.numpy()) for x, y in ds]


def _collect(ds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*_batches(ds))
    return np.concatenate(xs), np.concatenate(ys)


@pytest.fixture(scope="module")
def fixture_xy():
    x_train, y_train, _, _ = fixture_arrays()
    return x_train, y_train


@pytest.mark.parametrize("image_size", [None, 64])
@pytest.mark.parametrize("one_hot", [True, False])
def test_dataset_shapes_and_dtypes(fixture_xy, image_size, one_hot):
    x, y = fixture_xy
    ds = data.make_dataset(x, y, image_size=image_size, batch_size=32, training=True, augment_flip=True,
                           crop_padding=4, one_hot=one_hot)
    batches = _batches(ds)
    assert len(batches) == data.dataset_len(300, 32) == 10
    assert [len(a) for a, _ in batches] == [32] * 9 + [12]
    images, labels = np.concatenate([a for a, _ in batches]), np.concatenate([b for _, b in batches])
    side = image_size or 32
    # The default ships what is stored (uint8, 32 px); resizing, for older checkpoints, gives floats.
    assert images.dtype == (np.uint8 if image_size is None else np.float32)
    assert images.shape == (300, side, side, 3)
    assert 0 <= images.min() and images.max() <= 255
    if one_hot:
        assert labels.dtype == np.float32 and labels.shape == (300, 10) and (labels.sum(1) == 1).all()
        labels = labels.argmax(1)
    else:
        assert labels.dtype == np.int32 and labels.shape == (300,)
    assert (class_of(images) == labels).all()  # every image still carries its own label
    assert np.bincount(labels).tolist() == [30] * 10


def test_default_pipeline_ships_the_stored_bytes(fixture_xy):
    """No cast, no resize, no augmentation on the host: the model does those on the device."""
    x, y = fixture_xy
    images, labels = _collect(data.make_dataset(x, y, batch_size=64, training=True, seed=3, one_hot=False))
    assert images.dtype == np.uint8 and images.shape == x.shape
    order = _index_of(images, x)
    assert sorted(order) == list(range(len(x))) and (y[order] == labels).all()


def test_evaluation_keeps_order_and_pixels(root):
    cifar = data.load_cifar10(root)  # read-only arrays, as the engine passes them
    x, y = cifar.x_train, cifar.y_train
    images, labels = _collect(data.make_dataset(x, y, image_size=32, batch_size=64, training=False,
                                                augment_flip=True, crop_padding=4, one_hot=False))
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(labels, y)
    resized, _ = _collect(data.make_dataset(x, y, image_size=64, batch_size=64, training=False))
    np.testing.assert_allclose(resized.mean(axis=(1, 2)), x.mean(axis=(1, 2)), atol=1.0)


def _index_of(images: np.ndarray, x: np.ndarray) -> np.ndarray:
    where = {img.tobytes(): i for i, img in enumerate(np.asarray(x, dtype=np.uint8))}
    return np.array([where.get(img.astype(np.uint8).tobytes(), -1) for img in images])


def test_training_shuffles_each_epoch_reproducibly(fixture_xy):
    """Each epoch has an order of its own, a function of (seed, epoch) alone: made again, or made
    to start at the second epoch (as a resumed run does), the dataset repeats it."""
    x, y = fixture_xy
    make = lambda seed, **epochs: data.make_dataset(x, y, image_size=32, batch_size=50, training=True, seed=seed,
                                                    one_hot=False, **epochs)
    images, labels = _collect(make(7, epochs=2))
    order = _index_of(images, x)
    order1, order2 = order[:300], order[300:]
    assert sorted(order1) == list(range(300)) and sorted(order2) == list(range(300))  # no augmentation
    assert (y[order] == labels).all()
    assert (order1 != order2).any() and (order1 != np.arange(300)).any()
    np.testing.assert_array_equal(_index_of(_collect(make(7))[0], x), order1)
    np.testing.assert_array_equal(_index_of(_collect(make(7, first_epoch=1))[0], x), order2)


# Host-side augmentation now serves only checkpoints from before the model augmented itself;
# the in-model layer is held to the same tests in tests/test_device_pipeline.py.
def test_host_flip_mirrors_some_images_only_in_training(fixture_xy):
    x, y = fixture_xy
    images, labels = _collect(data.make_dataset(x, y, image_size=32, batch_size=64, training=True,
                                                augment_flip=True, one_hot=False))
    plain, flipped = _index_of(images, x), _index_of(images, x[:, :, ::-1])
    assert ((plain >= 0) | (flipped >= 0)).all()
    assert 50 < (flipped >= 0).sum() < 250  # about half
    index = np.where(plain >= 0, plain, flipped)
    assert sorted(index) == list(range(300)) and (y[index] == labels).all()
    again, _ = _collect(data.make_dataset(x, y, image_size=32, batch_size=64, training=True,
                                          augment_flip=True, one_hot=False))
    np.testing.assert_array_equal(again, images)  # the same seed augments the same way


def test_host_crop_is_a_reflect_padded_translation(fixture_xy):
    x, y = fixture_xy[0][:20], fixture_xy[1][:20]
    pad = 3
    images, labels = _collect(data.make_dataset(x, y, image_size=32, batch_size=8, training=True,
                                                crop_padding=pad, seed=1, one_hot=False))
    padded = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)], mode="reflect")
    used, offsets = [], []
    for image in images:
        hits = [(i, dy, dx) for i in range(len(x)) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                if np.array_equal(padded[i, dy:dy + 32, dx:dx + 32], image)]
        assert hits, "an output is not a window of its padded original"
        used.append(hits[0][0])
        offsets.append(hits[0][1:])
    assert sorted(used) == list(range(20)) and (y[used] == labels).all()
    assert len(set(offsets)) > 5  # the windows really move


def test_drop_remainder_and_dataset_len(fixture_xy):
    x, y = fixture_xy
    ds = data.make_dataset(x, y, image_size=32, batch_size=32, training=True, drop_remainder=True)
    assert [len(a) for a, _ in _batches(ds)] == [32] * 9
    assert data.dataset_len(320, 32) == 10 and data.dataset_len(321, 32) == 11 and data.dataset_len(0, 8) == 0


# --- the real thing -------------------------------------------------------------------------------

@pytest.mark.real_data
def test_real_cifar10(real_data_dir, monkeypatch):
    """EFFLAB_DATA_DIR's copy (conftest's `real_data_dir` skips with a reason where it is unset).
    How long loading takes, first and cached: bench/data_cache.py."""
    source = data.find_cifar10(real_data_dir)
    if source is None:
        pytest.skip(f"no CIFAR-10 under {data.DATA_DIR_ENV}={real_data_dir}")
    cifar = data.load_cifar10(real_data_dir, allow_download=False)
    assert cifar.x_train.shape == (50000, 32, 32, 3) and cifar.x_test.shape == (10000, 32, 32, 3)
    assert np.bincount(cifar.y_train).tolist() == [5000] * 10
    assert np.bincount(cifar.y_test).tolist() == [1000] * 10
    # The first labels of the official files (frog, truck, truck, deer, ... / cat, ship, ship, ...).
    assert cifar.y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert cifar.y_test[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    if source.is_dir():  # the reference reader: Keras's own CIFAR batch loader
        from keras.src.datasets.cifar import load_batch
        rows, labels = load_batch(str(source / data.TEST_FILE))
        np.testing.assert_array_equal(cifar.x_test, rows.transpose(0, 2, 3, 1))
        np.testing.assert_array_equal(cifar.y_test, labels)
    data.clear_memory_cache()

    def no_decoding(fileobj):
        raise AssertionError("a batch was decoded although the cache was valid")

    monkeypatch.setattr(data, "restricted_load", no_decoding)
    again = data.load_cifar10(real_data_dir, allow_download=False)   # from the npz cache
    np.testing.assert_array_equal(again.x_train, cifar.x_train)
    np.testing.assert_array_equal(again.y_test, cifar.y_test)
