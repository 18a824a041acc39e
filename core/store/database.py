"""The lab's database: where the run store keeps every run's state, queue place, lease, stop
request, live progress and metrics (core/store/runs.py is the only code that talks to it).

State in a database, artifacts in folders (as MLflow moved its tracking store from files to a
database): a run folder keeps its checkpoints, predictions, TensorBoard events and a readable
copy of its config, status and metrics; everything that several processes change at once lives
here, where every change is one transaction.

- **SQLite by default**, `lab.db` inside the runs folder, in WAL mode: no set-up, and readers never
  wait for a writer. Every process on the machine sees the same file. SQLite must not live on a
  network file system (its locks do not hold there): for several machines, use PostgreSQL.
- **PostgreSQL** with `EFFLAB_DB_URL=postgresql+psycopg://user:password@host/database`: one
  database for the dashboards, CLIs and Ray workers of every machine that shares the runs folder.
- **One clock**: leases and heartbeats are stamped with the database's clock (`now()` here), never
  a host's, so machines whose clocks disagree cannot declare each other's runs dead.
- **Migrations** with Alembic (core/store/migrations/): the first use of a database upgrades it to the
  schema this code needs; `python -m core db upgrade` does it by hand.

Write transactions take the database's write lock at once (SQLite `BEGIN IMMEDIATE`; PostgreSQL
row locks with `SELECT ... FOR UPDATE`), so a read-modify-write of a run's status never loses a
change made by another process in between.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

from core.errors import UserInputError

DB_URL_ENV = "EFFLAB_DB_URL"
SQLITE_FILE = "lab.db"
SQLITE_BUSY_SECONDS = 30          # a writer waits this long for another's transaction to end
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
QUEUE_LOCK_KEY = 29_0001           # PostgreSQL advisory lock of the queue's limits (lock_queue)
HEAD_REVISION = "0003"            # the newest revision in core/store/migrations/versions/
# Alembic's bookkeeping table for the lab's schema. Not Alembic's default name, `alembic_version`:
# Optuna keeps its own schema's revision under that name, and sweeps keep their studies in this
# same database (core/sweeps). Databases from before are moved over on their next upgrade.
VERSION_TABLE = "efflab_schema_version"
OLD_VERSION_TABLE = "alembic_version"
LAB_REVISIONS = ("0001", "0002", "0003")   # what OLD_VERSION_TABLE may hold when the lab wrote it

metadata = sa.MetaData()

# One row per run (and per learning-rate finder job). The columns are what the store queries and
# changes atomically; everything else the engine records about a run is in `status` (JSON).
runs = sa.Table(
    "runs", metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("config", sa.JSON, nullable=True),
    sa.Column("status", sa.JSON, nullable=False),
    sa.Column("queued_at", sa.Float, nullable=True),
    sa.Column("heartbeat", sa.Float, nullable=True),            # database clock
    sa.Column("lease_owner", sa.String(80), nullable=True),
    sa.Column("lease_expires_at", sa.Float, nullable=True),     # database clock
    sa.Column("stop_requested_at", sa.Float, nullable=True),
    sa.Column("progress", sa.JSON, nullable=True),
    sa.Column("damaged", sa.Text, nullable=False, server_default=""),
    sa.Column("status_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("progress_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("metrics_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("batches_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("owner", sa.String(64), nullable=True),           # core/store/ownership.py; NULL: nobody's
    sa.Index("ix_runs_state_queued_at", "state", "queued_at"),
    sa.Index("ix_runs_state_owner", "state", "owner"),
)

# One row per finished epoch (the columns of metrics.csv).
metrics = sa.Table(
    "metrics", metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("epoch", sa.Integer, primary_key=True),
    sa.Column("loss", sa.Float), sa.Column("accuracy", sa.Float),
    sa.Column("val_loss", sa.Float), sa.Column("val_accuracy", sa.Float),
    sa.Column("learning_rate", sa.Float), sa.Column("epoch_seconds", sa.Float),
    sa.Column("images_per_second", sa.Float),
)

# Every finished epoch's per-batch running means (batches.csv), any number of them.
batches = sa.Table(
    "batches", metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("epoch", sa.Integer, primary_key=True),
    sa.Column("batch", sa.Integer, primary_key=True),
    sa.Column("loss", sa.Float), sa.Column("accuracy", sa.Float),
)


# Named leases: who does a piece of shared work now (RunStore.exclusive), on the database's clock.
leases = sa.Table(
    "leases", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(120), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)


class DatabaseError(UserInputError):
    """A database the lab cannot use: the message names it, why, and what to do."""


def database_url(runs_dir: Path) -> str:
    """EFFLAB_DB_URL, else the SQLite file inside `runs_dir`."""
    url = os.environ.get(DB_URL_ENV, "").strip()
    if url:
        return url
    return f"sqlite:///{Path(runs_dir).resolve() / SQLITE_FILE}"


class Database:
    """One database: an engine, read and write transactions, its clock, its schema."""

    def __init__(self, url: str):
        self.url = url
        try:
            parsed = sa.engine.make_url(url)
        except sa.exc.ArgumentError:
            raise DatabaseError(f"{DB_URL_ENV}: expected a database URL such as "
                                "postgresql+psycopg://user:password@host/database; got "
                                f"{url[:80]!r}") from None
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise DatabaseError(f"{DB_URL_ENV}: expected a sqlite:/// or postgresql+psycopg:// URL; "
                                f"got a {self.dialect} one")
        if self.dialect == "sqlite":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})
            _sqlite_transactions(self.engine)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        self._upgraded = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Database({self.safe_url})"

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    # --- transactions --------------------------------------------------------------------------
    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A read transaction: one consistent snapshot."""
        self.upgrade()
        with self._connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A write transaction, holding the write lock from its first statement (SQLite), so a
        read-modify-write in it cannot interleave with another's."""
        self.upgrade()
        with self._connect(write=True) as conn, conn.begin():
            yield conn

    def _connect(self, write: bool = False) -> sa.Connection:
        try:
            conn = self.engine.connect()
        except sa.exc.OperationalError as exc:
            raise DatabaseError(f"the run database {self.safe_url} cannot be opened: "
                                f"{str(exc.orig).splitlines()[0][:200]}. Check {DB_URL_ENV} (or that the "
                                "runs folder is writable)") from None
        return conn.execution_options(efflab_write=True) if write else conn

    def lock_queue(self, conn: sa.Connection) -> None:
        """Holds the queue's lock until `conn`'s transaction ends, so that counting the waiting runs
        and adding one cannot interleave with another's (a limit that cannot be overshot). SQLite's
        write transactions are serial already; PostgreSQL takes a transaction-level advisory lock."""
        if self.dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": QUEUE_LOCK_KEY})

    def now(self) -> sa.ColumnElement[float]:
        """The database's clock, in seconds since 1970, as an SQL expression."""
        if self.dialect == "sqlite":
            return sa.literal_column("((julianday('now') - 2440587.5) * 86400.0)", sa.Float)
        return sa.cast(sa.func.extract("epoch", sa.func.clock_timestamp()), sa.Float)

    def clock(self) -> float:
        """The database's clock now (for a caller that must compare with stamps it wrote)."""
        with self.read() as conn:
            return float(conn.execute(sa.select(self.now())).scalar_one())

    # --- schema --------------------------------------------------------------------------------
    def revision(self) -> str | None:
        """The schema revision the database holds; None for an empty one."""
        with self.engine.connect() as conn:
            return _lab_revision(conn, VERSION_TABLE) or _lab_revision(conn, OLD_VERSION_TABLE)

    def upgrade(self, force: bool = False) -> None:
        """Brings the schema to HEAD_REVISION (once per process, unless `force`), with Alembic,
        under the database's write lock so two processes starting together do it once."""
        if self._upgraded and not force:
            return
        with self._lock:
            if self._upgraded and not force:
                return
            try:
                with self.engine.connect() as conn:
                    current = _lab_revision(conn, VERSION_TABLE)   # None too before the table moved
            except sa.exc.OperationalError as exc:
                raise DatabaseError(f"the run database {self.safe_url} cannot be opened: "
                                    f"{str(exc.orig).splitlines()[0][:200]}. Check {DB_URL_ENV} (or "
                                    "that the runs folder is writable)") from None
            if current != HEAD_REVISION:
                self._migrate()
            self._upgraded = True

    def _migrate(self) -> None:
        from alembic import command
        from alembic.config import Config
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self._connect(write=True) as conn, conn.begin():
            if self.dialect == "postgresql":   # one migrating process at a time, for this transaction
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(20261207)"))
            _move_version_table(conn)
            config.attributes["connection"] = conn
            command.upgrade(config, "head")


def _lab_revision(conn: sa.Connection, table: str) -> str | None:
    """The lab's revision recorded in `table`; None when the table is absent or holds another's."""
    if not sa.inspect(conn).has_table(table):
        return None
    revision = conn.execute(sa.text(f"SELECT version_num FROM {table}")).scalar()
    return revision if table == VERSION_TABLE or revision in LAB_REVISIONS else None


def _move_version_table(conn: sa.Connection) -> None:
    """A database from before VERSION_TABLE: its revision moves there, and `alembic_version` is
    left to Optuna (inside the migration's transaction: both or neither)."""
    revision = _lab_revision(conn, OLD_VERSION_TABLE)
    if revision is None or sa.inspect(conn).has_table(VERSION_TABLE):
        return
    conn.execute(sa.text(f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
    conn.execute(sa.text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:revision)"), {"revision": revision})
    conn.execute(sa.text(f"DROP TABLE {OLD_VERSION_TABLE}"))


def _sqlite_transactions(engine: sa.Engine) -> None:
    """SQLite as a database for several processes: WAL (readers never block), a busy timeout,
    durable commits, foreign keys, and transactions SQLAlchemy begins itself: BEGIN IMMEDIATE for
    writes (pysqlite would begin late, at the first write, so a read-modify-write could interleave)."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None          # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", f"busy_timeout={SQLITE_BUSY_SECONDS * 1000}", "synchronous=FULL",
                       "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("efflab_write") else "BEGIN")


_DATABASES: dict[str, Database] = {}
_DATABASES_LOCK = threading.Lock()


def database_for(runs_dir: Path) -> Database:
    """The process's one Database for the runs folder `runs_dir` (its engine and connection pool
    are shared by every RunStore on that folder)."""
    url = database_url(runs_dir)
    with _DATABASES_LOCK:
        if url not in _DATABASES:
            _DATABASES[url] = Database(url)
        return _DATABASES[url]


def forget_databases() -> None:
    """Closes every engine of this process (after a fork, or between tests that drop databases)."""
    with _DATABASES_LOCK:
        for database in _DATABASES.values():
            database.engine.dispose()
        _DATABASES.clear()
