"""Where claimed runs train, behind one interface (core/jobs/executors/base.py): a thread of this process
(the default), a worker process per run (EFFLAB_EXECUTOR=process), or a Ray task (EFFLAB_RAY_ADDRESS).
The scheduler (core/jobs/scheduler.py) picks which run trains when; `make_executor` picks where, once."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from core.jobs.executors.base import Executor, Job, JobError
from core.jobs.executors.process import ProcessExecutor
from core.jobs.executors.ray import RayExecutor
from core.jobs.executors.ray_cluster import RAY_ADDRESS_ENV, ray_address
from core.jobs.executors.thread import ThreadExecutor
from core.settings.env_settings import EnvSettingError

EXECUTOR_ENV = "EFFLAB_EXECUTOR"
EXECUTORS = {"thread": ThreadExecutor, "process": ProcessExecutor, "ray": RayExecutor}


def executor_name(environ: dict[str, str] | None = None, ray_address_given: str | None = None) -> str:
    """Which executor EFFLAB_EXECUTOR (and a Ray address) ask for: "thread" by default, "ray" when a
    Ray address is given or set.

    Raises:
        EnvSettingError: a value that is not an executor's name, naming the variable, the allowed
            values and what was given; or one that contradicts the Ray address.
    """
    environ = os.environ if environ is None else environ
    text = environ.get(EXECUTOR_ENV, "").strip()
    address = ray_address_given or ray_address(environ)
    if not text:
        return "ray" if address else "thread"
    name = text.lower()
    if name not in EXECUTORS:
        raise EnvSettingError(f"{EXECUTOR_ENV}: expected one of {', '.join(EXECUTORS)}; got {text!r}")
    if name == "ray" and not address:
        raise EnvSettingError(f"{EXECUTOR_ENV}: ray needs the cluster's address in {RAY_ADDRESS_ENV} "
                              "(HOST:PORT of its head); it is not set")
    if name != "ray" and address:
        if ray_address_given:       # the CLI's --ray-address says it for this one command
            return "ray"
        raise EnvSettingError(f"{EXECUTOR_ENV}: expected ray (or unset) while {RAY_ADDRESS_ENV} is set; got "
                              f"{text!r}: unset one of the two")
    return name


def make_executor(runs_dir: Path, data_dir: str | None, wake: Callable[[], object], *,
                  ray_address_given: str | None = None, drain_queue: bool = True) -> Executor:
    """The executor this process's environment asks for (see `executor_name`)."""
    name = executor_name(ray_address_given=ray_address_given)
    if name == "ray":
        return RayExecutor(runs_dir, data_dir, wake, address=ray_address_given or ray_address(),
                           drain_queue=drain_queue)
    return EXECUTORS[name](runs_dir, data_dir, wake)


def where_trained(status: dict) -> str:
    """Where a run trains or trained, from its status, in words for a caption ("" for a run of a
    server's thread: the page that shows it is on that server)."""
    kind = EXECUTORS.get(status.get("executor"))
    return kind.where_trained(status) if kind is not None else ""


__all__ = ["EXECUTOR_ENV", "Executor", "Job", "JobError", "executor_name", "make_executor", "where_trained"]
