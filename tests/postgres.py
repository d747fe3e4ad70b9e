"""A throwaway PostgreSQL server for tests and benchmarks: ``initdb`` in a temporary folder,
listening on 127.0.0.1 at a free port (and a private unix socket folder), stopped and removed after.

    with postgres_server() as pg:
        url = pg.create_database("t1")   # postgresql+psycopg2://testbed@127.0.0.1:PORT/t1
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from testbed.net import HOST, free_port
from tests.waiting import wait_until

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)
MISSING = "PostgreSQL server binaries missing: apt-get install -y postgresql (make system-deps)"


def available() -> bool:
    return PG_BIN is not None and (PG_BIN / "initdb").exists()


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the 'postgres' user."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class PostgresServer:
    port: int
    process: subprocess.Popen

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://testbed@{HOST}:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A fresh, empty database on this server; its URL."""
        import sqlalchemy

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        engine = sqlalchemy.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        engine.dispose()
        return self.url(name)


@contextmanager
def postgres_server(max_connections: int = 200, durable: bool = False) -> Iterator[PostgresServer]:
    """Start a private PostgreSQL; stop it (its whole process group) and delete its files on exit.

    Tests run it without fsync; ``durable`` (benchmarks) keeps PostgreSQL's default, flushed commits.
    """
    if not available():
        raise RuntimeError(MISSING)
    import sqlalchemy

    root = Path(tempfile.mkdtemp(prefix="tb-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "testbed", "--auth=trust", "-E", "UTF8"]),
        check=True,
        capture_output=True,
        timeout=120,
    )
    server = subprocess.Popen(
        _as_postgres(
            [
                str(PG_BIN / "postgres"),
                "-D",
                str(data),
                "-h",
                HOST,
                "-p",
                str(port),
                "-k",
                str(sockets),
                "-c",
                f"max_connections={max_connections}",
                *([] if durable else ["-c", "fsync=off"]),
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    handle = PostgresServer(port=port, process=server)
    try:

        def accepting() -> bool:
            try:
                sqlalchemy.create_engine(handle.url()).connect().close()
                return True
            except sqlalchemy.exc.OperationalError:
                if server.poll() is not None:
                    raise
                return False

        wait_until(accepting, 60, "PostgreSQL to accept connections", every=0.2)
        yield handle
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def record_queries(engine: Any) -> list[str]:
    """Every query ``engine``'s connections are asked to send from now on, in order, the pool's own checks included:
    the pool's idle connections are closed, and each connection opened from here on gets a psycopg2 cursor that
    notes each query as its default. On the control plane's connections (autocommit, ``BEGIN`` riding on the first
    statement) each query is one round trip; ``executemany`` sends one per row."""
    import psycopg2.extensions
    from sqlalchemy import event

    sent: list[str] = []

    class Recording(psycopg2.extensions.cursor):
        def execute(self, query, vars=None):  # noqa: A002 - psycopg2's name
            sent.append(str(query))
            return super().execute(query, vars)

        def executemany(self, query, vars_list):
            rows = list(vars_list)
            sent.extend([str(query)] * len(rows))
            return super().executemany(query, rows)

    def recording(dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.cursor_factory = Recording

    event.listen(engine, "connect", recording)
    engine.dispose()  # connections opened before would escape the count
    return sent
