"""Shared fixtures. Tests pay for TensorFlow tracing once: one tiny real run, trained in a
session fixture, serves the evaluation, chart and page tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cifar_fixture import write_cifar_fixture  # noqa: E402
import small_efficientnet  # noqa: E402
# The slowest files first, so that make test's two workers finish together (tests/file_order.py).
from file_order import pytest_collection_modifyitems, pytest_runtest_logreport, pytest_sessionfinish  # noqa: E402,F401


class _NoTensorFlow:
    """Under KERAS_BACKEND=jax (`make test-jax`) the engine must run as on a GPU machine that has
    no TensorFlow: any import of it fails, as it would there. (Keras itself imports TensorFlow
    when it is installed, to recognise its types; with this finder it takes it as absent. Setting
    sys.modules["tensorflow"] = None instead would break Keras, which checks that key.)"""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"No module named {name!r} (tests under JAX run without TensorFlow)")


if os.environ.get("KERAS_BACKEND") == "jax":
    sys.meta_path.insert(0, _NoTensorFlow())

# The tests' small EfficientNet (tests/small_efficientnet.py): in this process the hook is always
# installed and acts only while a test has EFFLAB_TEST_NETWORK=small set (the `small_network`
# marker); the processes tests start find it through tests/site/sitecustomize.py.
small_efficientnet.install()
_SITE = str(Path(__file__).resolve().parent / "site")
os.environ["PYTHONPATH"] = os.pathsep.join([_SITE, *filter(None, [os.environ.get("PYTHONPATH")])]) \
    if _SITE not in os.environ.get("PYTHONPATH", "").split(os.pathsep) else os.environ["PYTHONPATH"]

# Tests never reach the network, so Keras must never find the user's own cached downloads either:
# each session gets an empty Keras home and its own array cache.
_SESSION_HOME = Path(os.environ.get("PYTEST_TMP_HOME", "/tmp")) / f"efflab-test-{os.getpid()}"
os.environ["KERAS_HOME"] = str(_SESSION_HOME / "keras")
os.environ["EFFLAB_CACHE_DIR"] = str(_SESSION_HOME / "cache")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# A trainer's lease lasts 10 s here (60 by default), so that a test that kills one sees its run
# interrupted within seconds; every process a test starts inherits it.
os.environ.setdefault("EFFLAB_LEASE_SECONDS", "10")
# JAX keeps what XLA compiled in the checkout's cache folder, so the next process (a resume, the
# other process of a two-process run, the next `make test`) loads B0's step instead of compiling it
# again: a JAX run of the small network here took 72 s with an empty cache and 26 s with it.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".cache" / "jax"))

# Fixture runs use their own data; the real copy is only reached through `real_data_dir`. The
# path moves to a variable of its own rather than vanishing: `make test` runs pytest-xdist, whose
# workers start from this (the controller's) environment after it has already been imported here.
_REAL_DATA_ENV = "EFFLAB_TEST_REAL_DATA_DIR"
REAL_DATA_DIR = os.environ.pop("EFFLAB_DATA_DIR", None) or os.environ.get(_REAL_DATA_ENV)
if REAL_DATA_DIR:
    os.environ[_REAL_DATA_ENV] = REAL_DATA_DIR
WEIGHTS_DIR = os.environ.get("EFFLAB_WEIGHTS_DIR")


def _need(env_value: str | None, what: str, name: str):
    if env_value and Path(env_value).exists():
        return env_value
    message = f"{what} not available: set {name} (.ci/run does)"
    if os.environ.get("EFFLAB_REQUIRE_REAL_DATA"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def real_data_dir() -> str:
    """The real CIFAR-10 copy (EFFLAB_DATA_DIR); skips with a reason where it is absent."""
    return _need(REAL_DATA_DIR, "real CIFAR-10", "EFFLAB_DATA_DIR")


@pytest.fixture(scope="session")
def weights_dir() -> str:
    """ImageNet-trained B0 weights named as Keras names them (EFFLAB_WEIGHTS_DIR)."""
    return _need(WEIGHTS_DIR, "ImageNet B0 weights", "EFFLAB_WEIGHTS_DIR")


@pytest.fixture(scope="session")
def fixture_data_dir(tmp_path_factory) -> str:
    """A small CIFAR-format data set (30 training and 10 test images per class)."""
    return str(write_cifar_fixture(tmp_path_factory.mktemp("cifar")))


@pytest.fixture(scope="session")
def tiny_config():
    from core.settings.config import TrainConfig
    return TrainConfig(variant="b0", epochs=1, batch_size=32, train_limit=200, val_fraction=0.2,
                       learning_rate=3e-3, seed=1)


@pytest.fixture(autouse=True)
def _network_of_the_test(request, monkeypatch):
    """Tests marked `small_network` (plumbing: queue, faults, CLI, Ray, jobs) build the tests' small
    EfficientNet for B0, in this process and in every process they start; the rest the real B0."""
    if request.node.get_closest_marker("small_network"):
        monkeypatch.setenv(small_efficientnet.ENV, "small")
    else:
        monkeypatch.delenv(small_efficientnet.ENV, raising=False)


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for this worker (tests/postgres.py); its URL prefix."""
    import postgres
    if postgres.binaries() is None:
        pytest.skip("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)")
    with postgres.server() as prefix:
        yield prefix


# The run store's tests run once per database (DESIGN.md: an interface with two implementations is
# tested as one); PostgreSQL's pass is in `make test-all`.
DATABASES = [pytest.param("sqlite", id="sqlite"), pytest.param("postgresql", id="postgresql", marks=pytest.mark.full)]


@pytest.fixture(params=DATABASES)
def database(request, monkeypatch, tmp_path):
    """"sqlite" (lab.db in the runs folder) or "postgresql" (EFFLAB_DB_URL to a fresh database of a
    real server); every RunStore the test makes, in this process or a child, uses it."""
    from core.store.database import DB_URL_ENV, forget_databases
    forget_databases()
    if request.param == "postgresql":
        import postgres
        prefix = request.getfixturevalue("postgres_server")
        import secrets
        name = "t_" + "".join(ch for ch in request.node.name.lower() if ch.isalnum())[:40] + "_" + secrets.token_hex(4)
        monkeypatch.setenv(DB_URL_ENV, postgres.create_database(prefix, name))
    else:
        monkeypatch.delenv(DB_URL_ENV, raising=False)
    yield request.param
    forget_databases()


def _shared_folder(tmp_path_factory) -> Path:
    """A folder every pytest-xdist worker of this session sees (the workers' temporary folders
    share a parent); this session's own temporary folder without xdist."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, fixture_data_dir, tiny_config):
    """One finished real run (B0 @32 px, fixture data, one epoch) shared by read-only tests.

    Trained once per session, by whichever worker asks first while the others wait on a lock, then
    copied into each worker's own runs folder (a test that changes its copy changes it for the
    tests of its worker only, as before). Training it once per worker cost a minute each."""
    import fcntl
    import shutil

    from core.jobs.scheduler import JobManager
    from core.store.runs import RunStore
    shared = _shared_folder(tmp_path_factory) / "trained-run"
    shared.mkdir(exist_ok=True)
    with open(shared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        built = shared / "runs"
        if not (shared / "done").exists():
            shutil.rmtree(built, ignore_errors=True)
            manager = JobManager(runs_dir=built, data_dir=fixture_data_dir)
            run_id = manager.start(tiny_config)
            assert manager.wait(600), "training did not finish in 10 minutes"
            status = manager.store.get(run_id).read_status()
            assert status["state"] == "completed", status
            (shared / "done").write_text(run_id)
        run_id = (shared / "done").read_text()
    runs = tmp_path_factory.mktemp("runs")
    shutil.copytree(built / run_id, runs / run_id)
    return RunStore(runs).get(run_id)


def wait_for(predicate, timeout: float = 300, what: str = "condition") -> None:
    """Polls `predicate` every 50 ms until it is true; fails naming `what` after `timeout` seconds."""
    import time
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def evaluated(at, timeout: float = 180):
    """Reruns a page on which "Evaluate now" was clicked, as its panel's timer would, until the
    evaluation job (queued, then run by the dashboard's scheduler in this process) has ended and
    the page says so: "Evaluated: ..." or "Evaluation failed: ...". Returns `at`."""
    import time
    deadline = time.time() + timeout
    while not (any(s.value.startswith("Evaluated:") for s in at.success)
               or any(e.value.startswith("Evaluation ") for e in at.error)):
        assert time.time() < deadline, ("timed out waiting for the evaluation job: "
                                        f"{[e.value for e in (*at.info, *at.error, *at.caption)]}")
        time.sleep(0.5)
        at.run()
    return at


def plotly_values(data):
    """A trace's array from a chart's JSON: Plotly 6 sends numpy arrays as {"dtype", "bdata"} (base64)."""
    import base64

    import numpy as np
    if isinstance(data, dict) and "bdata" in data:
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"])
    return np.asarray(data)


# --- watching a run from outside (as another process would) ---------------------------------------
def read_status_file(run_dir) -> dict:
    """A run's status as the run database holds it (a trainer gone is not noticed here: this only
    reads); {} while the run does not exist yet."""
    from core.store.runs import RunNotFoundError, RunStore
    try:
        return RunStore(Path(run_dir).parent).get(Path(run_dir).name).read_status()
    except (RunNotFoundError, OSError):
        return {}


def run_folders(runs) -> list[Path]:
    """The run folders in the runs folder `runs`, oldest first (not its database's files)."""
    from core.store.runs import is_run_id
    runs = Path(runs)
    return sorted(p for p in runs.iterdir() if p.is_dir() and is_run_id(p.name)) if runs.is_dir() else []


def training_here(run, **status):
    """`run` as if this process were training it now, the way a trainer gets there: back in the
    queue if it had ended, then claimed (its lease is this process's and it counts as active
    here). `status` is written on top (epochs=..., ...). Returns the claimed Run."""
    if run.read_status()["state"] != "queued":
        assert run.store.enqueue(run, int(status.get("epochs") or run.read_status().get("epochs") or 1))
    claimed = run.claim()
    assert claimed is not None, run.read_status()
    if status:
        assert claimed.write_status(**status) is not None
    return claimed


def ended(run, state: str = "completed", **status):
    """`run` (queued, as created) claimed and ended with `state` and `status`, as a trainer ends one."""
    claimed = run.claim() if run.read_status()["state"] == "queued" else run
    assert claimed is not None and claimed.write_status(state=state, **status) is not None, run.read_status()
    from core.store.runs import mark_active
    mark_active(run.run_id, False)
    return claimed


def read_progress(run_dir) -> dict:
    from core.store.runs import RunNotFoundError, RunStore
    try:
        return RunStore(Path(run_dir).parent).get(Path(run_dir).name).read_progress()
    except (RunNotFoundError, OSError):
        return {}


def wait_mid_epoch(run_dir, *, after_epoch: int = 1, min_batch: int = 1, timeout: float = 300,
                   trainer=None) -> None:
    """Until epoch `after_epoch` is checkpointed and a later epoch has done `min_batch` batches,
    so a fault injected now lands in the middle of an epoch. `trainer`: a Popen that must stay alive."""
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        if trainer is not None:
            assert trainer.poll() is None, trainer.communicate()[1][-2000:]
        progress = read_progress(run_dir)
        if read_status_file(run_dir).get("checkpoint_epoch", 0) >= after_epoch \
                and progress.get("epoch", 0) > after_epoch and progress.get("batch", 0) >= min_batch:
            return
        time.sleep(0.05)
    raise AssertionError(f"training never reached the middle of epoch {after_epoch + 1}")


# --- the dashboard under Streamlit's AppTest -----------------------------------------------------
APP = str(ROOT / "dashboard" / "app.py")


def clear_streamlit_caches() -> None:
    """Each AppTest gets fresh cached loaders and its own job manager (st.cache_resource)."""
    import streamlit as st
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def app_factory(monkeypatch, fixture_data_dir):
    """app_factory(default_runs_dir) -> make(page, *, runs_dir=, data_dir=, secrets=, **query):
    an AppTest of the whole app switched to `page` (a path relative to dashboard/), with the runs
    folder and data set from the environment, as `make run` passes them, and no control token
    unless a test sets one."""
    from streamlit.testing.v1 import AppTest

    from dashboard import control
    monkeypatch.delenv(control.TOKEN_ENV, raising=False)

    def factory(default_runs_dir):
        def make(page, *, runs_dir=None, data_dir=None, secrets=None, **query):
            monkeypatch.setenv("EFFLAB_RUNS_DIR", str(runs_dir or default_runs_dir))
            monkeypatch.setenv("EFFLAB_DATA_DIR", str(data_dir or fixture_data_dir))
            clear_streamlit_caches()
            at = AppTest.from_file(APP, default_timeout=180)
            if secrets:
                at.secrets.update(secrets)
            at.switch_page(page)
            for key, value in query.items():
                at.query_params[key] = value
            at.run()
            assert not at.exception, [e.value for e in at.exception]
            return at
        return make

    yield factory
    clear_streamlit_caches()
