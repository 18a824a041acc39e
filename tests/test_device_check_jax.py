"""bench/device_check.py --smoke as on the lent GPU machine: KERAS_BACKEND=jax with TensorFlow made
unimportable (a `sys.meta_path` finder: setting `sys.modules["tensorflow"] = None` would break
Keras, which checks that key), where every figure, the engine's included, must still be measured.

The TensorFlow run is test_device_check_tensorflow.py; what they share is device_check_smoke.py.
"""

import os

import pytest

from device_check_smoke import MARKS, by_figure, check_common, smoke, subset  # noqa: F401 (subset: a fixture)

pytestmark = MARKS


def test_smoke_with_jax_and_no_tensorflow(subset, request):
    pytest.importorskip("jax")
    weights_dir = os.environ.get("EFFLAB_WEIGHTS_DIR") and request.getfixturevalue("weights_dir")
    figures = by_figure(smoke(subset, weights_dir, backend="jax"))
    check_common(figures, weights_dir)
    engine = figures["engine_train_images_per_second"]
    assert [e["mixed_precision"] for e in engine] == [False]      # float16 is emulated on a CPU: too slow here
    assert "error" not in engine[0] and engine[0]["value"] > 0, engine
    pipeline = figures["host_pipeline_images_per_second"][0]["pipeline"]
    assert pipeline == "core.data.cifar10.make_dataset (numpy PyDataset)"
