"""bench/device_check.py --smoke, the GPU check's own code run small on this CPU so it cannot rot:
what test_device_check_tensorflow.py and test_device_check_jax.py share.

Two files rather than one, so that pytest-xdist (`--dist loadfile`, Makefile) can give the two
runs, minutes each, to different workers. Both are in `make test-all` only. Their throughput
figures come from the tests' small EfficientNet (the subject is the script, which the GPU machine
runs on B0 at 224 px); transfer keeps the real B0, since it starts from B0's ImageNet weights.
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
MARKS = [pytest.mark.slow, pytest.mark.full, pytest.mark.small_network, pytest.mark.timeout(2400)]

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
    """A small CIFAR-format .npz for --subset: 100 training and 40 test images."""
    x_train, y_train, x_test, y_test = fixture_arrays(train_per_class=10, test_per_class=4)
    path = tmp_path_factory.mktemp("subset") / "cifar_subset.npz"
    np.savez_compressed(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return str(path)


def smoke(subset: str, weights_dir: str | None, *, backend: str) -> list[dict]:
    """Runs `device_check.py --smoke` under `backend` (JAX without TensorFlow); its JSON lines."""
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


def by_figure(lines: list[dict]) -> dict[str, list[dict]]:
    """The JSON lines grouped by their "figure"."""
    figures: dict[str, list[dict]] = {}
    for line in lines:
        figures.setdefault(line["figure"], []).append(line)
    return figures


def check_common(figures: dict, weights_dir: str | None) -> None:
    """What both backends must measure: the device, plain Keras both ways, the host pipeline, transfer."""
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
