"""What the bench scripts that study a finished run share (flip_below.py, test_at_size.py): the
run's folder from the command line, then its settings, last checkpoint and the CIFAR-10 test set,
plain and mirrored."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parser(description: str) -> argparse.ArgumentParser:
    """A parser that takes the run's folder first and --data-dir (default: EFFLAB_DATA_DIR)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("run", type=Path, help="a finished run's folder (its last checkpoint is used)")
    parser.add_argument("--data-dir", default=os.environ.get("EFFLAB_DATA_DIR"))
    return parser


@dataclass(frozen=True)
class FinishedRun:
    run: object             # core.store.runs.Run
    config: object          # its TrainConfig
    model: object           # its last checkpoint, loaded
    cifar: object           # core.data.cifar10.Cifar10
    mirrored: object        # the same with every test image mirrored left-right
    labels: object          # the test labels, flat

    def accuracy(self, probabilities) -> float:
        return float((probabilities.argmax(axis=1) == self.labels).mean())


def open_finished_run(folder: Path, data_dir: str | None) -> FinishedRun:
    """The run in `folder` with its last checkpoint and the test set; exits when it has no checkpoint."""
    import numpy as np

    from core.data import cifar10 as data_mod
    from core.training.model import load_checkpoint
    from core.store.runs import RunStore
    run = RunStore(folder.resolve().parent).get(folder.name)
    checkpoint = run.checkpoint("last")
    if checkpoint is None:
        sys.exit(f"run {folder.name} has no checkpoint to use")
    cifar = data_mod.load_cifar10(data_dir)
    mirrored = dataclasses.replace(cifar, x_test=np.ascontiguousarray(cifar.x_test[:, :, ::-1]))
    return FinishedRun(run, run.read_config(), load_checkpoint(checkpoint), cifar, mirrored, cifar.y_test.ravel())
