"""bench/device_check.py --smoke with TensorFlow: every figure, the engine's included.

The JAX run, as on the lent GPU machine, is test_device_check_jax.py; what they share is
device_check_smoke.py.
"""

import os

from device_check_smoke import MARKS, by_figure, check_common, smoke, subset  # noqa: F401 (subset: a fixture)

pytestmark = MARKS


def test_smoke_with_tensorflow(subset, request):
    weights_dir = os.environ.get("EFFLAB_WEIGHTS_DIR") and request.getfixturevalue("weights_dir")
    figures = by_figure(smoke(subset, weights_dir, backend="tensorflow"))
    check_common(figures, weights_dir)
    engine = figures["engine_train_images_per_second"]
    assert [e["mixed_precision"] for e in engine] == [False]            # the smoke's engine: float32 only
    assert all("error" not in e and e["value"] > 0 for e in engine), engine
    assert len(figures["engine_over_plain_keras"]) == 1
