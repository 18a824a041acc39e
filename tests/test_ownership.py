"""Ownership and limits (issue 29): a run is changed only by whoever started it or the teacher; one
person's waiting runs, and everyone's, are limited, counted in the transaction that adds one (so
simultaneous Starts cannot overshoot); the owner is kept in the database, across restarts and
through the schema's migration."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from conftest import ended
from core.errors import UserInputError
from core.jobs.scheduler import JobError, JobManager
from core.settings.config import TrainConfig
from core.store.ownership import (QUEUE_LIMIT_ENV, QUEUE_PER_PERSON_ENV, QueueFull, may_act, owner_of_key, queue_limit,
                                  queue_per_person)
from core.store.runs import RunStore

ANA, BEN = owner_of_key("a" * 32), owner_of_key("b" * 32)


def test_who_may_act_on_a_run():
    # Owners act on their own runs; the teacher on every run; nobody's runs are anyone's only
    # where there is no teacher.
    assert may_act(ANA, ANA, teacher=False, teacher_exists=False)
    assert not may_act(ANA, BEN, teacher=False, teacher_exists=False)
    assert not may_act(ANA, None, teacher=False, teacher_exists=False)
    assert may_act(ANA, BEN, teacher=True, teacher_exists=True)
    assert may_act(None, BEN, teacher=False, teacher_exists=False)
    assert not may_act(None, BEN, teacher=False, teacher_exists=True)
    assert may_act(None, BEN, teacher=True, teacher_exists=True)
    assert len(ANA) == 64 and ANA != "a" * 32          # the database keeps a hash, never the key


def test_limits_name_their_setting(monkeypatch):
    assert (queue_per_person(), queue_limit()) == (10, 100)
    for env in (QUEUE_PER_PERSON_ENV, QUEUE_LIMIT_ENV):
        for bad in ("0", "-1", "2.5", "many", "²", "10001"):
            monkeypatch.setenv(env, bad)
            with pytest.raises(UserInputError, match=rf"{env}: expected a whole number of runs from 1 to 10000; "
                                                     rf"got '{bad}'"):
                queue_per_person() if env == QUEUE_PER_PERSON_ENV else queue_limit()
        monkeypatch.delenv(env)


def test_one_persons_limit_and_the_servers(tmp_path, database, monkeypatch):
    monkeypatch.setenv(QUEUE_PER_PERSON_ENV, "2")
    monkeypatch.setenv(QUEUE_LIMIT_ENV, "4")
    manager = JobManager(tmp_path / "runs", drain_queue=False)
    config = TrainConfig(epochs=1)
    first, second = (manager.start(config, owner=ANA) for _ in range(2))
    with pytest.raises(JobError, match=r"you have 2 runs waiting, the most one person may have "
                                       r"\(EFFLAB_QUEUE_PER_PERSON=2\)\. Cancel one of them"):
        manager.start(config, owner=ANA)
    with pytest.raises(JobError, match="EFFLAB_QUEUE_PER_PERSON=2"):      # a finder job waits like a run
        manager.find_learning_rate(config, owner=ANA)
    teacher = owner_of_key("c" * 32)
    for _ in range(2):                                  # the teacher's own runs: the server's limit only
        manager.start(config, owner=teacher, teacher=True)
    with pytest.raises(JobError, match=r"the queue is full: 4 runs are waiting, the most this server takes "
                                       r"\(EFFLAB_QUEUE_LIMIT=4\)"):
        manager.start(config, owner=BEN)
    with pytest.raises(JobError, match="EFFLAB_QUEUE_LIMIT=4"):
        manager.start(config, owner=teacher, teacher=True)
    assert len(manager.store.queue()) == 4

    # A Resume counts against its run's owner too; a cancelled run leaves room.
    monkeypatch.setenv(QUEUE_LIMIT_ENV, "10")
    assert manager.cancel(first)
    manager.start(config, owner=ANA)
    with pytest.raises(JobError, match="EFFLAB_QUEUE_PER_PERSON=2"):
        manager.resume(first, 2)
    assert manager.store.get(first).read_status()["state"] == "cancelled"
    assert manager.cancel(second)
    manager.resume(first, 2)
    assert manager.store.get(first).read_status()["state"] == "queued"
    assert manager.store.get(first).owner() == ANA


def test_simultaneous_starts_cannot_pass_the_limit(tmp_path, database, monkeypatch):
    """Eight Starts of one person at once with room for three: exactly three queue."""
    monkeypatch.setenv(QUEUE_PER_PERSON_ENV, "3")
    store = RunStore(tmp_path / "runs")
    barrier, outcomes = threading.Barrier(8), []

    def press():
        barrier.wait()
        try:
            store.create(TrainConfig(epochs=1), owner=ANA)
            outcomes.append("queued")
        except QueueFull:
            outcomes.append("refused")

    threads = [threading.Thread(target=press) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["queued"] * 3 + ["refused"] * 5
    assert len(store.queue()) == 3


def test_the_owner_survives_a_restart_and_is_never_exported(tmp_path, database):
    from core.store.database import forget_databases
    runs = tmp_path / "runs"
    run = ended(RunStore(runs).create(TrainConfig(epochs=1), name="Ana's", author="Ana", owner=ANA), "stopped",
                checkpoint_epoch=0)
    forget_databases()                                   # as a new server process would find it
    again = RunStore(runs)
    assert again.get(run.run_id).owner() == ANA
    assert [s.owner for s in again.list()] == [ANA]
    assert ANA not in (runs / run.run_id / "status.json").read_text()   # a copied folder carries no identity


def test_a_database_from_before_owners_is_upgraded_in_place(tmp_path):
    """A lab.db at schema 0001 (before owners) is migrated on first use: its runs are kept, owned by
    nobody, and the new column is there for the next Start."""
    from alembic import command
    from alembic.config import Config

    from core.store.database import HEAD_REVISION, MIGRATIONS, Database, database_url, forget_databases
    runs = tmp_path / "runs"
    old = Database(database_url(runs))
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with old.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(sa.text("INSERT INTO runs (run_id, kind, state, status, damaged) VALUES "
                             "('20261207-120000-b0-abcd', 'train', 'completed', '{\"epochs\": 1}', '')"))
    (runs / "20261207-120000-b0-abcd").mkdir()
    old.engine.dispose()
    forget_databases()
    store = RunStore(runs)
    assert [(s.run_id, s.state, s.owner) for s in store.list()] == [("20261207-120000-b0-abcd", "completed", None)]
    assert store.db.revision() == HEAD_REVISION
    assert store.get(store.create(TrainConfig(), owner=BEN).run_id).owner() == BEN


def test_a_run_is_renamed_with_the_rules_of_a_name(tmp_path, database):
    store = RunStore(tmp_path / "runs")
    run = store.create(TrainConfig(), name="first try", owner=ANA)
    run.rename("Ana — lr 3e-3")
    assert [s.name for s in store.list()] == ["Ana — lr 3e-3"] and run.read_status()["state"] == "queued"
    with pytest.raises(ValueError, match=r"name: expected letters, digits"):
        run.rename("<b>bold</b>")
    assert store.list()[0].name == "Ana — lr 3e-3"
