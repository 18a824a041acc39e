"""A sweep's Optuna study, kept in the lab's own database.

The study lives in the same database as the run store (SQLite `lab.db` in the runs folder, or
EFFLAB_DB_URL's PostgreSQL), through Optuna's RDBStorage on the store's URL, so a sweep survives
a restart of whatever drives it, and Optuna's own tools read it:
`optuna.load_study(study_name=NAME, storage=URL)` with the URL `python -m core sweep status` prints.
What the lab needs besides Optuna's record (the sweep's spec, owner, who drives it, a Stop) is in
the study's user attributes; which run trains a trial is the trial's user attribute `run_id`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from core.errors import UserInputError
from core.store.runs import RunStore
from core.sweeps.spec import SweepSpec

SPEC_ATTR = "efflab_spec"          # the SweepSpec as a dict
OWNER_ATTR = "efflab_owner"        # who owns its trials (core/store/ownership.py); None: nobody in particular
DRIVER_ATTR = "efflab_driver"      # "cli": `sweep run` trains it in its process; "dashboard": the queue
STARTED_ATTR = "efflab_started_at"
STOPPED_ATTR = "efflab_stopped"    # set by Stop: no new trials, unfinished ones are not continued
RUN_ATTR = "run_id"                # on a trial: the run that trains it
ERROR_ATTR = "error"               # on a trial: why it never trained (settings refused, queue full)
DRIVERS = ("cli", "dashboard")
SQLITE_BUSY_SECONDS = 30           # as core/store/database.py: writers from several processes wait their turn

_STORAGES: dict[str, Any] = {}
_STORAGES_LOCK = threading.Lock()


class SweepError(UserInputError):
    """A sweep that cannot be created, found or changed; the message says why and what to do."""


def storage(store: RunStore):
    """Optuna's RDBStorage on the run store's database, one per process and URL. The lab's schema
    is brought up to date first: its version table must have moved out of Optuna's way
    (core/store/database.py, VERSION_TABLE)."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)   # no INFO line per trial on the CLI's stderr
    store.root.mkdir(parents=True, exist_ok=True)
    store.db.upgrade()
    url = store.db.url
    with _STORAGES_LOCK:
        if url not in _STORAGES:
            kwargs = {"connect_args": {"timeout": SQLITE_BUSY_SECONDS}} if store.db.dialect == "sqlite" \
                else {"pool_pre_ping": True}
            _STORAGES[url] = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        return _STORAGES[url]


@dataclass
class Sweep:
    """One sweep: its spec and the study that records its trials."""

    store: RunStore
    spec: SweepSpec
    study: Any
    owner: str | None
    driver: str
    started_at: float
    stopped: bool

    @property
    def name(self) -> str:
        return self.spec.name

    @classmethod
    def open(cls, store: RunStore, name: str) -> "Sweep":
        """The sweep called `name`. Raises SweepError when there is none."""
        import optuna
        try:
            study = optuna.load_study(study_name=name, storage=storage(store))
        except KeyError:
            raise SweepError(f"no sweep called {name!r} in {store.db.safe_url}; list them with: "
                             "python -m core sweep list") from None
        return cls._of(store, study)

    @classmethod
    def _of(cls, store: RunStore, study) -> "Sweep":
        attrs = study.user_attrs
        if SPEC_ATTR not in attrs:
            raise SweepError(f"study {study.study_name!r} is not a sweep of this lab (no {SPEC_ATTR})")
        return cls(store, SweepSpec.from_dict(attrs[SPEC_ATTR]), study, attrs.get(OWNER_ATTR),
                   attrs.get(DRIVER_ATTR, "dashboard"), float(attrs.get(STARTED_ATTR, 0.0)),
                   bool(attrs.get(STOPPED_ATTR)))

    def trials(self) -> list:
        """Every trial, oldest first (FrozenTrial: number, state, params, value, user_attrs)."""
        return self.study.get_trials(deepcopy=False)

    def trial(self, number: int, study=None):
        """The live Trial `number` (to report to, or set attributes on), of `study` (default: the
        sweep's own; the trainer passes one with the sweep's pruner)."""
        import optuna
        ids = storage(self.store)
        trial_id = ids.get_trial_id_from_study_id_trial_number(ids.get_study_id_from_name(self.name), number)
        return optuna.trial.Trial(study if study is not None else self.study, trial_id)

    def asking_study(self, trials_so_far: int):
        """The study with this round's sampler and the sweep's pruner (core/sweeps/spec.py says why
        each round has a sampler of its own)."""
        import optuna
        return optuna.load_study(study_name=self.name, storage=storage(self.store),
                                 sampler=self.spec.sampler(trials_so_far), pruner=self.spec.pruner())

    def out_of_time(self) -> bool:
        return self.spec.minutes is not None and time.time() - self.started_at > 60 * self.spec.minutes

    def stop(self) -> None:
        self.study.set_user_attr(STOPPED_ATTR, True)
        self.stopped = True


def create_sweep(store: RunStore, spec: SweepSpec, *, owner: str | None, driver: str) -> tuple[Sweep, bool]:
    """The sweep `spec` describes, created; or the one of that name, when it has the same spec
    (a sweep run again continues). (sweep, whether it was created now).

    Raises:
        SweepError: a sweep of that name exists with other settings, or belongs to someone else.
    """
    import optuna
    try:
        study = optuna.create_study(study_name=spec.name, storage=storage(store), direction=spec.goal)
    except optuna.exceptions.DuplicatedStudyError:
        sweep = Sweep.open(store, spec.name)
        if sweep.spec != spec:
            raise SweepError(f"name: a sweep called {spec.name!r} exists already with other settings; give this "
                             "one another name (or see it with: python -m core sweep status NAME)") from None
        if sweep.owner != owner:
            raise SweepError(f"name: the sweep {spec.name!r} belongs to someone else; give yours another name")
        return sweep, False
    for key, value in ((SPEC_ATTR, spec.to_dict()), (OWNER_ATTR, owner), (DRIVER_ATTR, driver),
                       (STARTED_ATTR, time.time())):
        study.set_user_attr(key, value)
    return Sweep._of(store, study), True


def list_sweeps(store: RunStore) -> list[Sweep]:
    """Every sweep of the lab's database, newest first; none (without importing Optuna) when no
    study was ever stored there."""
    store.db.upgrade()
    with store.db.engine.connect() as conn:
        if not sa.inspect(conn).has_table("studies"):
            return []
    import optuna
    sweeps = []
    for name in optuna.get_all_study_names(storage=storage(store)):
        try:
            sweeps.append(Sweep.open(store, name))
        except SweepError:
            continue                                      # a study of someone's own, not a sweep
    return sorted(sweeps, key=lambda s: s.started_at, reverse=True)


def trial_run_name(sweep_name: str, number: int) -> str:
    """What a trial's run is called wherever runs are listed: "lr sweep · trial 3" (1-based)."""
    return f"{sweep_name} · trial {number + 1}"
