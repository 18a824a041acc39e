"""The engine on the real CIFAR-10 (EFFLAB_DATA_DIR; .ci/run builds a verified copy)."""

import pytest

from core.jobs.scheduler import JobManager
from core.settings.config import TrainConfig

pytestmark = [pytest.mark.slow, pytest.mark.real_data]


def test_quick_run_on_real_cifar10_predicts_all_10000_test_images(tmp_path, real_data_dir):
    manager = JobManager(runs_dir=tmp_path / "runs", data_dir=real_data_dir)
    run_id = manager.start(TrainConfig(variant="b0", epochs=1, train_limit=1000, batch_size=64))
    assert manager.wait(900)
    run = manager.store.get(run_id)
    status = run.read_status()
    assert status["state"] == "completed", status
    (row,) = run.read_metrics()
    assert row["epoch"] == 1 and row["images_per_second"] > 0
    y_true, y_prob = run.read_predictions()
    assert y_prob.shape == (10_000, 10)
    assert y_true.shape == (10_000,) and (y_true == 3).sum() == 1000   # 1000 test images per class
    assert abs(float(y_prob.astype("float32").sum(axis=1).mean()) - 1.0) < 1e-2
