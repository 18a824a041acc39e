"""The races of issue 29, reproduced against the run store from several processes at once (as a
class uses the lab: two servers, a CLI, Ray workers, a second container on the same folder), on
each database. With state in files each of these lost something: 22 of 2,000 simultaneous Resume
pairs trained a run twice, 24 of 300 checkpoint writes were undone by a Stop, 98 of 200
completed-vs-Stop pairs ended `stopping` without their accuracy, a trainer in another PID
namespace was declared dead 0.7 s after its heartbeat, and 68 of 300 Delete-vs-Resume pairs left
half-deleted folders. Here none may."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ended
from core.settings.config import TrainConfig
from core.store.runs import RunNotFoundError, RunStore

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(autouse=True)
def room_for_every_run(monkeypatch):
    """Hundreds of runs queued at once: the queue's limits (tests/test_ownership.py) are not what
    these races are about."""
    monkeypatch.setenv("EFFLAB_QUEUE_LIMIT", "10000")


def _in_processes(count: int, script: str, *args: str) -> list[dict]:
    """`script` in `count` fresh processes that start their work together (a shared start time a
    second ahead); each prints one JSON line, returned in order."""
    start_at = time.time() + 2.0
    prelude = textwrap.dedent(f"""
        import json, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from core.store.runs import RunStore
        from core.settings.config import TrainConfig
        index, args = int(sys.argv[1]), sys.argv[2:]
        time.sleep(max(0.0, {start_at!r} - time.time()))
    """)
    children = [subprocess.Popen([sys.executable, "-c", prelude + textwrap.dedent(script), str(i), *args],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(count)]
    results = []
    for child in children:
        out, err = child.communicate(timeout=500)
        assert child.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _stopped_runs(store: RunStore, count: int) -> list[str]:
    return [ended(store.create(TrainConfig()), "stopped", checkpoint_epoch=1).run_id for _ in range(count)]


def test_resume_pressed_in_two_processes_at_once_queues_each_run_once(tmp_path, database):
    store = RunStore(tmp_path / "runs")
    ids = _stopped_runs(store, 300)
    results = _in_processes(2, """
        store = RunStore(args[0])
        print(json.dumps([rid for rid in args[1:] if store.enqueue(store.get(rid), 5)]))
    """, str(store.root), *ids)
    queued = [rid for part in results for rid in part]
    assert sorted(queued) == sorted(ids)                 # every run queued, none twice
    claimed = _in_processes(2, """
        store = RunStore(args[0])
        print(json.dumps([rid for rid in args[1:] if store.claim(rid) is not None]))
    """, str(store.root), *ids)
    assert sorted(rid for part in claimed for rid in part) == sorted(ids)   # and launched once each


def test_a_stop_from_another_process_never_undoes_the_trainer_s_writes(tmp_path, database):
    """The trainer records 300 checkpoints while another process presses Stop again and again and
    writes a field of its own: every one of the trainer's writes survives, and so does the Stop."""
    store = RunStore(tmp_path / "runs")
    run = store.create(TrainConfig())
    results = _in_processes(2, """
        store = RunStore(args[0])
        run = store.get(args[1])
        if index == 0:
            trainer = run.claim()
            for epoch in range(1, 301):
                assert trainer.write_status(checkpoint_epoch=epoch, epoch=epoch) is not None
            print(json.dumps({"trainer": "done"}))
        else:
            time.sleep(0.05)                 # the trainer claims first
            stops = sum(run.write_status(state="stopping", if_state=("running", "stopping"), stop_note=i) is not None
                        for i in range(300))
            print(json.dumps({"stops": stops}))
    """, str(store.root), run.run_id)
    status = run.read_status()
    assert status["checkpoint_epoch"] == 300 and status["epoch"] == 300      # nothing undone
    assert status["state"] == "stopping" and status["stop_note"] == 299 and results[1]["stops"] > 0


def test_a_finish_racing_a_stop_always_ends_completed_with_its_accuracy(tmp_path, database):
    store = RunStore(tmp_path / "runs")
    ids = [store.create(TrainConfig()).run_id for _ in range(100)]
    _in_processes(2, """
        store = RunStore(args[0])
        for rid in args[1:]:
            if index == 0:
                trainer = store.claim(rid)
                trainer.write_status(state="completed", test_accuracy=0.5)
            else:
                deadline = time.time() + 5
                while store.get(rid).read_status()["state"] == "queued" and time.time() < deadline:
                    pass
                store.get(rid).write_status(state="stopping", if_state=("running", "stopping"))
        print(json.dumps({}))
    """, str(store.root), *ids)
    ends = [store.get(rid).read_status() for rid in ids]
    assert {(s["state"], s["test_accuracy"]) for s in ends} == {("completed", 0.5)}


def test_delete_racing_resume_leaves_each_run_whole_or_gone(tmp_path, database):
    store = RunStore(tmp_path / "runs")
    ids = _stopped_runs(store, 150)
    results = _in_processes(2, """
        from core.store.runs import RunNotFoundError
        store = RunStore(args[0])
        done = []
        for rid in args[1:]:
            try:
                if index == 0:
                    store.delete(rid)
                    done.append(rid)
                elif store.enqueue(store.get(rid), 5):
                    done.append(rid)
            except (RunNotFoundError, ValueError):
                pass
        print(json.dumps(done))
    """, str(store.root), *ids)
    deleted, resumed = set(results[0]), set(results[1])
    assert not deleted & resumed and deleted | resumed == set(ids)
    assert not [p.name for p in store.root.iterdir() if p.name.startswith(".deleted")]
    for rid in ids:
        if rid in deleted:
            assert not (store.root / rid).exists()
            with pytest.raises(RunNotFoundError):
                store.get(rid)
        else:
            run = store.get(rid)
            assert run.read_status()["state"] == "queued" and (run.path / "config.json").is_file()
    assert {s.run_id for s in store.list()} == resumed and not [s for s in store.list() if s.damaged]


def test_a_trainer_in_another_pid_namespace_stays_running_and_stoppable(tmp_path, database, monkeypatch):
    """A container on the same folder: its trainer's pid means nothing here, and its host name may
    be ours. Its lease keeps it `running` long after a lease's length, a Stop from here reaches it,
    and it ends the run `stopped` itself."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "--pid", "--fork", "true"]).returncode:
        pytest.skip("this machine cannot make a PID namespace (unshare --pid)")
    monkeypatch.setenv("EFFLAB_LEASE_SECONDS", "3")
    store = RunStore(tmp_path / "runs")
    run = store.create(TrainConfig())
    trainer = textwrap.dedent(f"""
        import os, sys, threading, time
        sys.path.insert(0, {str(ROOT)!r})
        from core.store.runs import Keepalive, RunStore
        run = RunStore({str(store.root)!r}).claim({run.run_id!r})
        print("pid", os.getpid(), flush=True)
        stop = threading.Event()
        with Keepalive(run, stop):
            stop.wait(120)
        run.write_status(state="stopped")
        print("stopped", flush=True)
    """)
    child = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", trainer],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ)
    try:
        line = child.stdout.readline()
        assert line.startswith("pid "), child.stderr.read()[-2000:]
        assert int(line.split()[1]) < 10                      # a pid of its own namespace
        time.sleep(7)                                         # over two leases' length
        viewer = store.get(run.run_id)
        assert viewer.live_status()["state"] == "running"
        assert viewer.write_status(state="stopping", if_state=("running",)) is not None
        viewer.request_stop()
        assert child.stdout.readline().strip() == "stopped"
        assert child.wait(30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert store.get(run.run_id).live_status()["state"] == "stopped"
