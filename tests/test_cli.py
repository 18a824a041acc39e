"""The command line, run as a user runs it (`python -m core ...` in a subprocess): exit codes,
one-line messages, progress, resume, Ctrl-C and SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import read_status_file, run_folders, wait_mid_epoch

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--epochs", "1", "--train-limit", "200", "--val-fraction", "0.2", "--batch-size", "32"]


def cli(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def start_cli(*args):
    return subprocess.Popen([sys.executable, "-m", "core", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("flags, field", [
    (["--variant", "b9"], "variant"),
    (["--batch-size", "0"], "batch_size"),
    (["--learning-rate", "-1"], "learning_rate"),
    (["--learning-rate", "fast"], "learning_rate"),
    (["--image-size", "1000"], "image_size"),
    (["--optimizer", "lbfgs"], "optimizer"),
])
def test_invalid_settings_exit_2_with_one_line_naming_the_field(tmp_path, flags, field):
    result = cli("train", *flags, "--runs-dir", str(tmp_path))
    assert result.returncode == 2
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}: expected"), result.stderr
    assert "Traceback" not in result.stderr
    assert not run_folders(tmp_path)   # nothing was created


def test_config_file_with_unknown_key_exits_2(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"variant": "b0", "epoch": 3}))
    result = cli("train", "--config", str(config), "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2 and "error: epoch: expected one of the known settings" in result.stderr


def test_missing_data_exits_2_saying_where_to_put_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("train", *QUICK, "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(empty),
                 env={"KERAS_HOME": str(tmp_path / "keras"), "EFFLAB_OFFLINE_TEST": "1"})
    assert result.returncode == 2, result.stderr
    assert "EFFLAB_DATA_DIR" in result.stderr and "Traceback" not in result.stderr


def test_unknown_run_and_bad_epochs_exit_2(tmp_path):
    result = cli("resume", "20200101-000000-b0-0000", "--runs-dir", str(tmp_path))
    assert result.returncode == 2 and "no run" in result.stderr
    result = cli("resume", "../../etc", "--runs-dir", str(tmp_path))
    assert result.returncode == 2 and "run id must look like" in result.stderr
    assert cli("runs", "--runs-dir", str(tmp_path)).returncode == 0


@pytest.mark.slow
@pytest.mark.small_network
def test_train_ctrl_c_resume_sigkill_resume_then_list_and_evaluate(tmp_path, fixture_data_dir):
    """One run through every way a terminal ends it, as a chain: Ctrl-C stops it at the next batch
    with a checkpoint (exit 130); a resume SIGKILLed mid-epoch lists as interrupted; a resume
    completes it with every epoch exactly once, and one more adds an epoch to the finished run;
    `runs` and `evaluate` report it. The network is the tests' small EfficientNet: the subject is
    the command line, not B0."""
    runs = tmp_path / "runs"
    where = ["--runs-dir", str(runs), "--data-dir", fixture_data_dir]
    args = ["--train-limit", "200", "--val-fraction", "0.2", "--batch-size", "8"]
    proc = start_cli("train", "--epochs", "500", *args, *where)
    deadline = time.time() + 60
    while not run_folders(runs):
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    (run_dir,) = run_folders(runs)

    # Ctrl-C: stops at the next batch with a checkpoint, exit 130, resumable.
    wait_mid_epoch(run_dir, trainer=proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "img/s" in err and "epoch 1:" in err          # progress was shown
    assert f"python -m core resume {run_dir.name}" in out
    assert read_status_file(run_dir)["state"] == "stopped"

    # SIGKILL in the middle of a resumed epoch: the run shows as interrupted.
    proc = start_cli("resume", run_dir.name, "--epochs", "500", *where)
    done_before = read_status_file(run_dir)["checkpoint_epoch"]
    wait_mid_epoch(run_dir, after_epoch=done_before + 1, trainer=proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    # Its lease lapses EFFLAB_LEASE_SECONDS (10 s in the tests) after its last heartbeat; from then
    # on anyone who lists the runs sees it interrupted.
    deadline = time.time() + 60
    while "interrupted" not in (listing := cli("runs", "--runs-dir", str(runs)).stdout):
        assert time.time() < deadline, listing
        time.sleep(1)
    done = read_status_file(run_dir)["checkpoint_epoch"]

    result = cli("resume", run_dir.name, "--epochs", str(done + 1), *where)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "completed: test accuracy" in result.stdout
    epochs = [int(line.split(",")[0]) for line in (run_dir / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == list(range(1, done + 2))     # nothing lost, nothing twice
    assert read_status_file(run_dir)["state"] == "completed"
    assert (run_dir / "checkpoints" / "last.keras").exists() and (run_dir / "predictions.npz").exists()

    # A finished run takes more epochs: one more, appended after the others.
    result = cli("resume", run_dir.name, "--epochs", str(done + 2), *where)
    assert result.returncode == 0, result.stderr[-2000:]
    epochs = [int(line.split(",")[0]) for line in (run_dir / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == list(range(1, done + 3))

    listing = cli("runs", "--runs-dir", str(runs)).stdout
    assert run_dir.name in listing and "completed" in listing and f"{done + 2}/{done + 2}" in listing
    report = cli("evaluate", run_dir.name, "--runs-dir", str(runs))
    assert report.returncode == 0 and "top-1" in report.stdout and "most confused" in report.stdout


def test_runs_as_json_metrics_as_csv_db_upgrade_and_import(tmp_path):
    """What scripts and a lab moving its runs use: `runs --json` (one object per run), `metrics`
    (the Runs page's CSV), `db upgrade`, and `import DIR` (folders copied from another lab)."""
    from conftest import ended
    from core.settings.config import TrainConfig
    from core.store.runs import RunStore
    store = RunStore(tmp_path / "runs")
    run = ended(store.create(TrainConfig(epochs=2), name="Ana's run", author="Ana"), "completed",
                checkpoint_epoch=2, test_accuracy=0.5)
    for epoch in (1, 2):
        run.append_metrics({"epoch": epoch, "loss": 2.0 / epoch, "accuracy": 0.2 * epoch, "val_loss": float("nan"),
                            "val_accuracy": 0.25 * epoch, "learning_rate": 1e-3, "epoch_seconds": 5,
                            "images_per_second": 40})
    queued = store.create(TrainConfig())
    lines = cli("runs", "--json", "--runs-dir", str(store.root)).stdout.splitlines()
    records = {r["run_id"]: r for r in map(json.loads, lines)}
    assert records[run.run_id] == {
        "run_id": run.run_id, "state": "completed", "epoch": 2, "epochs": 2, "best_val_accuracy": 0.5,
        "test_accuracy": 0.5, "name": "Ana's run", "owner": "Ana", "kind": "train", "executor": "thread",
        "host": records[run.run_id]["host"], "pid": os.getpid(), "damaged": None}
    assert records[queued.run_id]["state"] == "queued" and records[queued.run_id]["epoch"] == 0

    csv_text = cli("metrics", run.run_id, "--runs-dir", str(store.root)).stdout
    assert csv_text.splitlines()[0] == "epoch,loss,accuracy,val_loss,val_accuracy,learning_rate,epoch_seconds,images_per_second"
    assert csv_text.splitlines()[2] == "2,1.0,0.4,,0.5,0.001,5.0,40.0"

    upgraded = cli("db", "upgrade", "--runs-dir", str(store.root))
    assert upgraded.returncode == 0 and "schema 0003 (already up to date)" in upgraded.stdout

    other = tmp_path / "other-lab"
    done = cli("import", str(store.root), "--runs-dir", str(other))
    assert done.returncode == 0 and f"imported {run.run_id}" in done.stdout and "2 imported, 0 skipped" in done.stdout
    imported = {json.loads(line)["run_id"]: json.loads(line)
                for line in cli("runs", "--json", "--runs-dir", str(other)).stdout.splitlines()}
    assert imported.keys() == {run.run_id, queued.run_id} and imported[run.run_id]["state"] == "completed"
    missing = cli("import", str(tmp_path / "nowhere"), "--runs-dir", str(other))
    assert missing.returncode == 2 and "is not a folder" in missing.stderr
