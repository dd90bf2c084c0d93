"""A private PostgreSQL cluster for tests: initdb + pg_ctl from the machine's binaries.

The cluster lives in a temporary directory, listens on a free port of 127.0.0.1 and keeps its
unix socket in that directory. PostgreSQL refuses to run as root, so when the tests run as root
the server runs as ``nobody`` (the directory is handed over to it). ``fresh_database()``
gives each test its own database, created from a template, so tests never see each other's
rows.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.ports import free_port

BIN_DIRS = ("/usr/local/bin", "/usr/lib/postgresql/15/bin")


def find_binary(name: str) -> str | None:
    for directory in BIN_DIRS:
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


def available() -> bool:
    return all(find_binary(name) for name in ("initdb", "pg_ctl", "postgres"))


class PostgresCluster:
    """A running private cluster; ``url(database)`` connects to one of its databases."""

    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable
        """False (tests): no fsync, no synchronous commit. True (benchmarks): the defaults."""
        self.directory = Path(tempfile.mkdtemp(prefix="otel-llm-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self._counter = itertools.count()
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            import pwd

            nobody = pwd.getpwnam("nobody")
            os.chown(self.directory, nobody.pw_uid, nobody.pw_gid)
            self._as = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
        self.user = "otel"
        self._template: str | None = None

    def _run(self, *args: str) -> None:
        subprocess.run(
            args,
            check=True,
            capture_output=True,
            cwd=self.directory,
            env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "TZ": "UTC"},
            timeout=120,
            **self._as,
        )

    def start(self) -> None:
        initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
        assert initdb
        assert pg_ctl
        self._run(
            initdb, "-D", str(self.data), "-U", self.user, "-A", "trust", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.directory} -c max_connections=50"
        )
        if not self.durable:  # a test's data need not survive a crash
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.directory / "log"),
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self) -> None:
        pg_ctl = find_binary("pg_ctl")
        try:
            if pg_ctl and (self.data / "postmaster.pid").exists():
                self._run(pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new database with the call log's schema; its URL.

        Copied from a template migrated once: a copy takes ~0.05 s where a database from
        template0 plus the migration takes ~1 s.
        """
        import psycopg

        if self._template is None:
            from otel_llm.calllog.store import open_store

            with psycopg.connect(self.url(), autocommit=True) as connection:
                connection.execute('CREATE DATABASE "calllog_template" TEMPLATE template0')
            open_store(self.url("calllog_template")).close()
            self._template = "calllog_template"
        name = f"test_{os.getpid()}_{next(self._counter)}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(
                f'CREATE DATABASE "{name}" TEMPLATE "{self._template}" STRATEGY WAL_LOG'
            )
        return self.url(name)


@contextmanager
def running_cluster(*, durable: bool = False) -> Iterator[PostgresCluster]:
    cluster = PostgresCluster(durable=durable)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


# --- pytest fixtures (import them into a test module to use them) ------------------------------


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One private cluster per importing module, stopped at the module's end: a session's
    fixture imported into each module is one per module anyway, and those of the ~24 modules
    were all left running till the session ended."""
    if not available():
        # A failure, not a skip: the PostgreSQL tests are part of the suite, not optional.
        pytest.fail(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH: "
            "install PostgreSQL (Debian: postgresql) to run the call-log tests"
        )
    with running_cluster() as cluster:
        yield cluster


BACKENDS = ("sqlite", "postgres")


def empty_store_url(backend: str, request: pytest.FixtureRequest, directory: Path) -> str:
    """The URL of an empty call store of ``backend``: a SQLite file in ``directory``, or a
    fresh database of the session's cluster."""
    if backend == "sqlite":
        return str(directory / f"calls-{next(_files)}.db")
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    # Not dropped after the test: dropping costs a checkpoint; the cluster goes at the end.
    return cluster.create_database()


_files = itertools.count()


def store_at_version(
    backend: str,
    request: pytest.FixtureRequest,
    directory: Path,
    version: int,
    *rows: tuple[str, Sequence[Any]],
) -> str:
    """The URL of a call store of ``backend`` as the release of schema ``version`` left it (its
    migrations applied, none after), holding ``rows``: (statement, parameters), ``?`` marking a
    parameter on either backend."""
    import sqlite3

    import psycopg

    from otel_llm.calllog import schema

    connection: Any
    if backend == "sqlite":
        url = str(directory / f"v{version}-{next(_files)}.db")
        connection, types, mark = sqlite3.connect(url), schema.SQLITE_TYPES, "?"
    else:
        cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
        name = f"v{version}_{os.getpid()}_{next(_files)}"
        with psycopg.connect(cluster.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')  # type: ignore[call-overload]
        url = cluster.url(name)
        connection, types, mark = psycopg.connect(url), schema.POSTGRES_TYPES, "%s"
    with closing(connection), connection:
        for migration in schema.MIGRATIONS[:version]:
            for statement in migration(types):
                connection.execute(statement)
        connection.execute(schema.version_table_ddl())
        connection.execute(f"INSERT INTO {schema.VERSION_TABLE} (version) VALUES ({version:d})")  # noqa: S608
        for statement, parameters in rows:
            connection.execute(statement.replace("?", mark), parameters)
    return url


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty call store: a SQLite file, then a fresh PostgreSQL database."""
    return empty_store_url(request.param, request, tmp_path)
