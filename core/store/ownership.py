"""Who may act on a run, and how many runs may wait in line: one person's, and everyone's.

A run belongs to whoever started it. In the dashboard that is a browser: a random key it keeps in
a cookie (dashboard/identity.py), so the right survives a page reload and a server restart; the
database keeps only a hash of the key, so nobody who reads it (`runs --json`, a backup) can act as
someone else. Runs started from the command line, and runs imported from folders, belong to nobody
in particular: whoever can run `python -m core` on the runs folder can change its database anyway,
so the command line may act on every run.

In the dashboard the teacher (whoever entered the control token, dashboard/control.py) may act on
every run; anyone else on their own runs, and on nobody's runs only where no token is set (a lab
with no teacher trusts everyone with what nobody owns). Anyone may watch every run.

Limits keep one person (or a full class) from filling the line: each person may have
QUEUE_PER_PERSON runs and finder jobs waiting, the server QUEUE_LIMIT in all; a redraw of the
queue costs about 0.2 ms per waiting run per viewer. The teacher and the command line are held to
the server's limit only.
"""

from __future__ import annotations

import hashlib

from core.errors import UserInputError
from core.settings.env_settings import number_from_env

QUEUE_PER_PERSON_ENV = "EFFLAB_QUEUE_PER_PERSON"
QUEUE_LIMIT_ENV = "EFFLAB_QUEUE_LIMIT"
DEFAULT_QUEUE_PER_PERSON = 10
DEFAULT_QUEUE_LIMIT = 100
MAX_QUEUE_LIMIT = 10_000


class QueueFull(UserInputError):
    """A Start or Resume that would pass a limit on waiting runs; the message says which and what to do."""


def owner_of_key(key: str) -> str:
    """What the database keeps of a browser's key: its SHA-256, in hex (64 characters)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def may_act(run_owner: str | None, person: str | None, *, teacher: bool, teacher_exists: bool) -> bool:
    """Whether `person` (an owner hash; None: nobody known) may stop, resume, cancel, rename,
    evaluate or delete a run owned by `run_owner`."""
    if teacher:
        return True
    if run_owner:
        return person is not None and run_owner == person
    return not teacher_exists


def _limit(env: str, default: int) -> int:
    return int(number_from_env(env, default, 1, MAX_QUEUE_LIMIT, "a whole number of runs", whole=True))


def queue_per_person() -> int:
    """How many runs and finder jobs one person may have waiting (EFFLAB_QUEUE_PER_PERSON)."""
    return _limit(QUEUE_PER_PERSON_ENV, DEFAULT_QUEUE_PER_PERSON)


def queue_limit() -> int:
    """How many runs and finder jobs may wait in all (EFFLAB_QUEUE_LIMIT)."""
    return _limit(QUEUE_LIMIT_ENV, DEFAULT_QUEUE_LIMIT)


def check_queue_room(waiting_in_all: int, waiting_of_owner: int, *, owner: str | None, exempt: bool) -> None:
    """Refuses one more waiting run when a limit is reached.

    Args:
        waiting_in_all: runs and finder jobs queued now, everyone's.
        waiting_of_owner: those of `owner`.
        owner: who the new one belongs to (None: nobody in particular).
        exempt: the teacher or the command line: held to the server's limit only.

    Raises:
        QueueFull: naming the limit, its setting and what to do.
    """
    limit = queue_limit()
    if waiting_in_all >= limit:
        raise QueueFull(f"the queue is full: {waiting_in_all} runs are waiting, the most this server takes "
                        f"({QUEUE_LIMIT_ENV}={limit}). Try again when some have started, or ask the teacher "
                        "to cancel some")
    per_person = queue_per_person()
    if owner and not exempt and waiting_of_owner >= per_person:
        raise QueueFull(f"you have {waiting_of_owner} runs waiting, the most one person may have "
                        f"({QUEUE_PER_PERSON_ENV}={per_person}). Cancel one of them, or start this one when "
                        "one of yours has begun training")
