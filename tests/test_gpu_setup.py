"""`make run` on a GPU machine installs TensorFlow's CUDA build; the device report says what
TensorFlow sees and, when it misses an NVIDIA GPU, the command that fixes it.

This machine has no GPU, so a stand-in `nvidia-smi` (a shell script printing what the real one
prints for an H100) is put first on PATH: it plays the hardware, nothing of ours is replaced.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.estimates import timing as estimate

ROOT = Path(__file__).resolve().parents[1]
H100 = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0c1a7b2e-1d5f-4c3e-9a8b-2f6e5d4c3b2a)"


@pytest.fixture
def fake_gpu(tmp_path, monkeypatch):
    script = tmp_path / "bin" / "nvidia-smi"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\necho '{H100}'\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    estimate.device_report.cache_clear()
    yield
    estimate.device_report.cache_clear()


@pytest.fixture
def no_gpu(tmp_path, monkeypatch):
    # PATH without any nvidia-smi: only the folders holding the tools make and pip need.
    keep = [d for d in os.environ["PATH"].split(os.pathsep) if d and not (Path(d) / "nvidia-smi").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(keep))
    estimate.device_report.cache_clear()
    yield
    estimate.device_report.cache_clear()


def _make_dry_run(target: str, **env) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _pinned_tensorflow() -> str:
    return re.search(r"^tensorflow==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)


@pytest.mark.parametrize("target", ["run", "test"])
def test_make_installs_the_cuda_build_when_a_gpu_is_listed(fake_gpu, target):
    if sys.platform != "linux":
        pytest.skip("the CUDA build is for Linux")
    commands = _make_dry_run(target)
    install = f'pip install --quiet "tensorflow[and-cuda]=={_pinned_tensorflow()}"'
    assert install in commands
    assert _make_dry_run(target, EFFLAB_CPU_ONLY="1").count("and-cuda") == 0     # the opt-out


def test_make_changes_nothing_without_a_gpu(no_gpu):
    assert "and-cuda" not in _make_dry_run("run") and "and-cuda" not in _make_dry_run("test")


def test_report_names_the_gpu_tensorflow_cannot_use_and_the_fix(fake_gpu):
    import tensorflow as tf   # the CPU-only machine's TensorFlow: it cannot see the stand-in GPU
    assert estimate.nvidia_gpu_names() == ("NVIDIA H100 80GB HBM3",)
    quick = estimate.device_report()
    assert quick.tensorflow_gpus is None and quick.fix_command is None and "H100" in quick.message
    report = estimate.device_report(ask_tensorflow=True)
    assert report.gpu_unused and report.tensorflow_gpus == () and report.tensorflow_version == tf.__version__
    assert report.fix_command == f'{sys.executable} -m pip install "tensorflow[and-cuda]=={tf.__version__}"'
    assert "NVIDIA H100 80GB HBM3" in report.message and "runs on the CPU" in report.message


def test_report_without_a_gpu_needs_no_fix(no_gpu):
    report = estimate.device_report(ask_tensorflow=True)
    assert report.nvidia_gpus == () and report.fix_command is None and not report.gpu_unused
    assert "CPU" in report.message and "no NVIDIA GPU" in report.message


def test_report_asks_tensorflow_in_a_child_process(fake_gpu):
    """The dashboard process does not import TensorFlow (seconds, most of a GB) for this label."""
    code = ("import sys; sys.path.insert(0, '.'); from core.estimates.timing import device_report; "
            "r = device_report(ask_tensorflow=True); "
            "print(r.gpu_unused, 'tensorflow' in sys.modules, bool(r.fix_command))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "False", "True"], out.stderr[-2000:]
