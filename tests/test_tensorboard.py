"""TensorBoard event files, read back with TensorBoard's own reader (EventAccumulator) from the shared
tiny real run: epoch scalars equal to metrics.csv, the throttled per-batch loss, the confusion
matrix image equal to the one computed from the predictions.

TF2's tf.summary writes every summary as a tensor tagged with the plugin that shows it; the
reader lists them under "tensors", and the plugin name says which TensorBoard tab draws each."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.analysis.evaluate import evaluate
from core.data.cifar10 import CLASS_NAMES
from core.training.tensorboard_log import (BATCH_EVERY, CELL, CONFUSION_TAG, EPOCH_SCALARS, HIGH_COLOUR, LABEL_MARGIN,
                                           LOW_COLOUR, TITLE_HEIGHT, TensorBoardLog, confusion_image)


@pytest.fixture(scope="module")
def events(trained_run):
    accumulator_module = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    accumulator = accumulator_module.EventAccumulator(str(trained_run.tensorboard_dir()),
                                                      size_guidance={"tensors": 0})
    return accumulator.Reload()


def _values(events, tag: str) -> list[tuple[int, object]]:
    from tensorboard.util import tensor_util
    return [(e.step, tensor_util.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)]


def _plugin(events, tag: str) -> str:
    return events.SummaryMetadata(tag).plugin_data.plugin_name


def test_epoch_scalars_are_the_runs_metrics(events, trained_run):
    metrics = trained_run.read_metrics()
    assert len(metrics) == 1
    tags = events.Tags()["tensors"]
    for name in EPOCH_SCALARS:
        assert f"epoch/{name}" in tags, (name, tags)
        assert _plugin(events, f"epoch/{name}") == "scalars"
        points = _values(events, f"epoch/{name}")
        assert [step for step, _ in points] == [1]
        assert float(points[0][1]) == pytest.approx(metrics[0][name], rel=1e-5), name


def test_per_batch_loss_is_throttled_but_there(events, trained_run, tiny_config):
    steps = -(-int(tiny_config.train_limit) // tiny_config.batch_size)     # 200 images / 32 = 7 batches
    points = _values(events, "batch/loss")
    every = max(1, min(BATCH_EVERY, steps // 5))
    assert _plugin(events, "batch/loss") == "scalars"
    assert [step for step, _ in points] == list(range(every, steps + 1, every))
    assert all(np.isfinite(float(v)) and float(v) > 0 for _, v in points)


def test_confusion_matrix_image_matches_the_predictions(events, trained_run):
    assert _plugin(events, CONFUSION_TAG) == "images"
    ((step, value),) = _values(events, CONFUSION_TAG)      # [width, height, PNG]
    assert step == trained_run.read_metrics()[-1]["epoch"]
    picture = np.asarray(Image.open(io.BytesIO(value[2])).convert("RGB"))
    assert (int(value[0]), int(value[1])) == (picture.shape[1], picture.shape[0])
    y_true, y_prob = trained_run.read_predictions()
    expected = confusion_image(evaluate(y_true, y_prob).confusion)
    assert picture.shape == expected.shape
    # The cells (title aside): drawn from the same counts.
    np.testing.assert_array_equal(picture[TITLE_HEIGHT + 20:], expected[TITLE_HEIGHT + 20:])


def test_confusion_image_colours_each_cell_by_its_share_of_the_true_class():
    confusion = np.zeros((10, 10), dtype=np.int64)
    confusion[3, 3], confusion[3, 5] = 75, 25           # cat: 75% right, 25% taken for a dog
    confusion[0, 0] = 10
    picture = confusion_image(confusion, title="test")
    assert picture.shape == (TITLE_HEIGHT + LABEL_MARGIN + 10 * CELL + 10, LABEL_MARGIN + 10 * CELL + 10, 3)

    def corner(i, j):
        return picture[TITLE_HEIGHT + LABEL_MARGIN + i * CELL + 3, LABEL_MARGIN + j * CELL + 3]

    def shade(share):
        return np.round(LOW_COLOUR + share * (HIGH_COLOUR - LOW_COLOUR)).astype(np.uint8)

    np.testing.assert_array_equal(corner(3, 3), shade(0.75))
    np.testing.assert_array_equal(corner(3, 5), shade(0.25))
    np.testing.assert_array_equal(corner(0, 0), shade(1.0))
    np.testing.assert_array_equal(corner(9, 9), shade(0.0))          # an empty row stays white
    # Count text is drawn inside its cell: dark pixels in the middle of a light cell.
    middle = picture[TITLE_HEIGHT + LABEL_MARGIN + 3 * CELL + 10: TITLE_HEIGHT + LABEL_MARGIN + 4 * CELL - 10,
                     LABEL_MARGIN + 5 * CELL + 10: LABEL_MARGIN + 6 * CELL - 10]
    assert middle.min() < 100


def test_confusion_image_refuses_what_it_cannot_draw():
    with pytest.raises(ValueError, match=r"square matrix; got shape \(2, 3\)"):
        confusion_image(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="name the 10 classes; got 3 names"):
        confusion_image(np.zeros((10, 10)), class_names=CLASS_NAMES[:3])


def test_batch_every_must_be_a_positive_whole_number(trained_run):
    with pytest.raises(ValueError, match="batch_every must be a whole number of batches, 1 or more; got 0"):
        TensorBoardLog(trained_run, steps_per_epoch=7, batch_every=0)
