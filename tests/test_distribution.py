"""MirroredStrategy over two logical CPU devices: the engine's multi-GPU path, exercised on a CPU.

Logical devices must be configured before TensorFlow initialises, so the run happens in a fresh
interpreter. Its subject is the split of each batch over replicas, so it trains the tests' small
EfficientNet (B0 traced per replica took minutes here)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.full, pytest.mark.small_network, pytest.mark.timeout(1800)]

SCRIPT = textwrap.dedent("""
    import json, sys, threading
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from core.settings.config import TrainConfig
    from core.training.progress import Progress
    from core.store.runs import RunStore
    from core.training.train import make_strategy, train_run
    strategy = make_strategy("mirrored")
    run = RunStore(sys.argv[1]).create(TrainConfig(distribution="mirrored", epochs=1, batch_size=16,
                                                   train_limit=100, val_fraction=0.2))
    outcome = train_run(run, target_epochs=1, stop_event=threading.Event(), progress=Progress(),
                        data_dir=sys.argv[2])
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "state": outcome.state,
                      "error": outcome.error, "run": run.run_id,
                      "devices": list(strategy.extended.worker_devices)}))
""")


def test_mirrored_strategy_trains_over_two_logical_cpus(tmp_path, fixture_data_dir):
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "runs"), fixture_data_dir],
                            cwd=root, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2 and len(report["devices"]) == 2
    assert report["state"] == "completed", report["error"]
    from core.store.runs import RunStore
    run = RunStore(tmp_path / "runs").get(report["run"])
    metrics = run.read_metrics()
    assert len(metrics) == 1
    # Global batch = per-replica batch × replicas: 80 images at 32 per step is 3 steps.
    assert run.read_progress()["batches"] == 3
