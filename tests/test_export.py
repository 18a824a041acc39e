"""Take the model home: the exported .keras file loads in plain Keras (a fresh interpreter that
cannot import this lab), and the SNIPPET shown to students, executed as a script on a PNG the test
writes, prints the class the lab's own model gives that image."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from core.analysis.export import SNIPPET, ExportError, download_name, export_model, portable_model, snippet
from core.data.cifar10 import CLASS_NAMES


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("home")
    return export_model(trained_run.checkpoint("last"), folder / download_name(trained_run.run_id))


@pytest.fixture(scope="module")
def test_images(fixture_data_dir):
    from core.data.cifar10 import load_cifar10
    return load_cifar10(fixture_data_dir, allow_download=False).x_test


def _run_snippet(model_file, photo, cwd) -> str:
    script = cwd / "classify.py"
    script.write_text(snippet(model_file.name))
    # -I: isolated, so neither this repository nor PYTHONPATH is importable: plain Keras only.
    done = subprocess.run([sys.executable, "-I", str(script), str(photo)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={"TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow",
                                                       "PATH": "/usr/bin:/bin", "HOME": str(cwd)})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_snippet_is_ten_lines_of_plain_keras():
    lines = SNIPPET.strip("\n").splitlines()
    assert len(lines) == 10
    assert "core" not in SNIPPET and "efflab" not in SNIPPET
    assert 'keras.models.load_model("my-model.keras", safe_mode=True)' in snippet("my-model.keras")


def test_the_snippet_classifies_a_photo_as_the_lab_does(exported, test_images, trained_run, tmp_path):
    """A 96×64 photo whose middle 64×64 is test image 11 at twice its size (the sides are noise):
    the snippet crops the centre, shrinks it to 32×32 and prints what the lab's model says of image 11."""
    from core.training.model import load_checkpoint
    from core.analysis.predict_image import predict
    expected = predict(load_checkpoint(trained_run.checkpoint("last")), test_images[11])
    canvas = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    canvas[:, 16:80] = np.kron(test_images[11], np.ones((2, 2, 1), dtype=np.uint8))
    photo = tmp_path / "photo.png"
    Image.fromarray(canvas).save(photo)
    name, percent = _run_snippet(exported, photo, exported.parent).split()
    assert name == CLASS_NAMES[int(np.argmax(expected))], (name, percent, expected)
    assert float(percent.rstrip("%")) == pytest.approx(100 * expected.max(), abs=0.11)


def test_the_export_has_no_lab_layers_and_no_optimizer(exported, trained_run):
    import keras
    from core.training.model import load_checkpoint
    original = load_checkpoint(trained_run.checkpoint("last"))
    copy = keras.models.load_model(exported)
    assert all(type(layer).__module__.startswith("keras.") for layer in copy.layers)
    assert getattr(copy, "optimizer", None) is None      # uncompiled: nothing to resume from
    assert exported.stat().st_size < trained_run.checkpoint("last").stat().st_size
    x = np.asarray(Image.new("RGB", (32, 32), (120, 80, 40)), dtype="float32")[None]
    np.testing.assert_allclose(copy.predict(x, verbose=0), original.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_an_unknown_custom_layer_is_named_not_exported():
    import keras

    class Mystery(keras.layers.Layer):
        def call(self, x):
            return x

    inputs = keras.Input((4,))
    model = keras.Model(inputs, Mystery(name="mystery")(inputs))
    with pytest.raises(ExportError, match="layer 'mystery' is a .*Mystery, which plain Keras cannot rebuild"):
        portable_model(model)


def test_download_name_says_which_checkpoint():
    assert download_name("20261125-142301-b0-3f9a", "best") == "efficientnet-lab-20261125-142301-b0-3f9a-best.keras"
    with pytest.raises(ValueError, match="which: expected 'last' or 'best'; got 'first'"):
        download_name("x", "first")


# --- the pages that offer it ------------------------------------------------------------------------
@pytest.fixture
def app(app_factory, trained_run):
    return app_factory(trained_run.path.parent)


def _downloads(at) -> dict[str, object]:
    return {b.label: b for b in at.get("download_button")}


def test_report_page_offers_the_model_and_the_snippet(app, trained_run):
    at = app("../pages/report.py", run=trained_run.run_id)
    button = _downloads(at)["Download the trained model (.keras)"]
    assert not button.disabled
    assert at.code[0].value == snippet(download_name(trained_run.run_id, "last")).strip()
    at.radio(key="report_model_which").set_value("best").run()
    assert not at.exception
    assert at.code[0].value == snippet(download_name(trained_run.run_id, "best")).strip()


def test_runs_page_offers_the_model_of_a_selected_run(app, trained_run, tmp_path):
    import shutil
    runs = tmp_path / "runs"
    shutil.copytree(trained_run.path, runs / trained_run.run_id)
    at = app("../pages/runs.py", runs_dir=runs)
    at.session_state["runs_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not _downloads(at)["Model (.keras)"].disabled
    assert snippet(download_name(trained_run.run_id)).strip() in [c.value for c in at.code]
    # Without a checkpoint the button stays, disabled, and says why.
    for checkpoint in (runs / trained_run.run_id / "checkpoints").glob("*.keras"):
        checkpoint.unlink()
    at.run()
    button = _downloads(at)["Model (.keras)"]
    assert button.disabled and "no last epoch checkpoint yet" in button.help
