"""A real PostgreSQL server for the tests: Debian's `postgresql` package (`.ci/run` installs it),
initialised in a temporary folder, listening on a free loopback port, run as the `postgres` user
(it refuses root), and stopped by its pid. Each test gets a database of its own."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

START_SECONDS = 30


def binaries() -> Path | None:
    """The folder of Debian's PostgreSQL server programs (newest version), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server() -> Iterator[str]:
    """Starts a server; yields the URL prefix `postgresql+psycopg://postgres@127.0.0.1:PORT/`."""
    import psycopg
    bin_dir = binaries()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)")
    as_user = {"user": "postgres"} if os.geteuid() == 0 else {}
    folder = Path(tempfile.mkdtemp(prefix="efflab-pg-", dir="/tmp"))
    if as_user:
        shutil.chown(folder, "postgres")
    try:
        subprocess.run([bin_dir / "initdb", "-D", folder / "data", "-A", "trust", "-U", "postgres", "--no-sync"],
                       check=True, capture_output=True, **as_user)
        port = _free_port()
        with open(folder / "server.log", "w") as log:
            process = subprocess.Popen(
                [bin_dir / "postgres", "-D", folder / "data", "-p", str(port), "-k", str(folder),
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"],
                stdout=log, stderr=subprocess.STDOUT, **as_user)
        try:
            deadline = time.monotonic() + START_SECONDS
            while True:
                try:
                    psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres").close()
                    break
                except psycopg.OperationalError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"PostgreSQL did not start: {(folder / 'server.log').read_text()[-2000:]}")
                    time.sleep(0.1)
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/"
        finally:
            process.send_signal(signal.SIGINT)           # "fast shutdown"
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def create_database(prefix: str, name: str) -> str:
    """A new, empty database on the server at `prefix`; its URL."""
    import psycopg
    address = prefix.removeprefix("postgresql+psycopg://postgres@").rstrip("/")
    host, port = address.split(":")
    with psycopg.connect(f"host={host} port={port} user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return prefix + name
