"""bench/device_check.py --smoke: the GPU check's own code, run small on this CPU so it cannot rot.

Once with TensorFlow (every figure, the engine included) and once as on the lent GPU machine:
KERAS_BACKEND=jax with TensorFlow made unimportable (a `sys.meta_path` finder: setting
`sys.modules["tensorflow"] = None` would break Keras, which checks that key), where every figure,
the engine's included, must still be measured.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cifar_fixture import fixture_arrays

# XLA compiles every B0 step function under JAX, slowly on a CPU (minutes on these 2 shared cores),
# and float16 is emulated: both runs take longer than the suite's 15-minute default on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "bench/device_check.py"
WITHOUT_TENSORFLOW = """
import importlib.abc, runpy, sys
class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"No module named {name!r} (this machine has no TensorFlow)")
sys.meta_path.insert(0, NoTensorFlow())
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
assert "tensorflow" not in sys.modules
"""


@pytest.fixture(scope="module")
def subset(tmp_path_factory) -> str:
    x_train, y_train, x_test, y_test = fixture_arrays(train_per_class=10, test_per_class=4)
    path = tmp_path_factory.mktemp("subset") / "cifar_subset.npz"
    np.savez_compressed(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return str(path)


def _smoke(subset: str, weights_dir: str | None, *, backend: str) -> list[dict]:
    env = {**os.environ, "KERAS_BACKEND": backend}
    env.pop("EFFLAB_WEIGHTS_DIR", None)
    args = [SCRIPT, "--smoke", "--subset", subset]
    if weights_dir:
        args += ["--weights", str(Path(weights_dir) / "efficientnetb0_notop.h5")]
    command = [sys.executable, *(["-c", WITHOUT_TENSORFLOW] if backend == "jax" else []), *args]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=2300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines and lines[-1]["figure"] == "done", result.stdout[-2000:]
    assert all(line["backend"] == backend for line in lines)
    return lines


def _by_figure(lines: list[dict]) -> dict[str, list[dict]]:
    figures: dict[str, list[dict]] = {}
    for line in lines:
        figures.setdefault(line["figure"], []).append(line)
    return figures


def _check_common(figures: dict, weights_dir: str | None) -> None:
    assert figures["device"][0]["devices"] and figures["device"][0]["smoke"] is True
    plain = figures["plain_keras_train_images_per_second"]
    assert sorted(p["mixed_precision"] for p in plain) == [False, True]
    assert all("error" not in p and p["value"] > 0 and p["image_size"] == 32 for p in plain), plain
    assert figures["host_pipeline_images_per_second"][0]["value"] > 0
    transfer = figures["transfer_test_accuracy"]
    if weights_dir:
        assert [t["phase"] for t in transfer] == ["head", "fine-tune"], transfer
        assert all(0.0 <= t["value"] <= 1.0 for t in transfer)
    else:
        assert "skipped" in transfer[0]


def test_smoke_with_tensorflow(subset, request):
    weights_dir = os.environ.get("EFFLAB_WEIGHTS_DIR") and request.getfixturevalue("weights_dir")
    lines = _smoke(subset, weights_dir, backend="tensorflow")
    figures = _by_figure(lines)
    _check_common(figures, weights_dir)
    engine = figures["engine_train_images_per_second"]
    assert sorted(e["mixed_precision"] for e in engine) == [False, True]
    assert all("error" not in e and e["value"] > 0 for e in engine), engine
    assert len(figures["engine_over_plain_keras"]) == 2


def test_smoke_with_jax_and_no_tensorflow(subset, request):
    pytest.importorskip("jax")
    weights_dir = os.environ.get("EFFLAB_WEIGHTS_DIR") and request.getfixturevalue("weights_dir")
    figures = _by_figure(_smoke(subset, weights_dir, backend="jax"))
    _check_common(figures, weights_dir)
    engine = figures["engine_train_images_per_second"]
    assert [e["mixed_precision"] for e in engine] == [False]      # float16 is emulated on a CPU: too slow here
    assert "error" not in engine[0] and engine[0]["value"] > 0, engine
    assert figures["host_pipeline_images_per_second"][0]["pipeline"] == "core.data.make_dataset (numpy PyDataset)"
