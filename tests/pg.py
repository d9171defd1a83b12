"""A throwaway PostgreSQL server for tests: initdb + pg_ctl in a temp directory, on loopback, on a free port.

Needs Debian's `postgresql` package (tests/run.sh installs it). Run as root, the server runs as the
`postgres` user, since PostgreSQL refuses to run as root. `python -m tests.pg` starts one and prints its URL
until interrupted (handy for trying the app against PostgreSQL by hand).
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.helpers import free_port

log = logging.getLogger(__name__)

SUPERUSER = "postgres"
# Durability off: a test cluster is thrown away, and fsync-free commits keep the test suite fast.
FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=200")


class PostgresUnavailable(RuntimeError):
    """The server could not be started; the message says why and what to install."""


def find_bin_dir() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian puts it under /usr/lib/postgresql/<ver>/bin)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PostgresUnavailable("PostgreSQL is not installed: run 'apt-get install -y postgresql' (or bash tests/run.sh)")


class PostgresServer:
    """One cluster: `start()`, then `url(database)`, `admin_url`; `stop()` removes everything."""

    def __init__(self) -> None:
        self.bin_dir = find_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="gelato-pg-"))
        self.data_dir = self.root / "data"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            why = result.stderr.strip() or result.stdout.strip()
            raise PostgresUnavailable(f"{args[0]} failed with status {result.returncode}: {why}")
        return result

    def start(self) -> PostgresServer:
        if self._as_postgres:
            try:
                user = pwd.getpwnam(SUPERUSER)
            except KeyError as error:
                raise PostgresUnavailable("no 'postgres' user: install Debian's postgresql package") from error
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
                  "--locale=C.UTF-8", "--no-sync")
        options = " ".join(
            [f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-k {self.root}", *(f"-c {s}" for s in FAST_SETTINGS)]
        )
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.root / "server.log"), "-o", options, "-w",
                  "-t", "60", "start")
        log.info("PostgreSQL %s running on port %d", self.bin_dir.parent.name, self.port)
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        except PostgresUnavailable as error:
            log.warning("stopping the test PostgreSQL: %s", error)
        shutil.rmtree(self.root, ignore_errors=True)


def wait_until_ready(admin_url: str, timeout: float = 30.0) -> None:
    """Block until the server at `admin_url` accepts connections (for servers started elsewhere)."""
    import psycopg

    conninfo = admin_url.replace("postgresql+psycopg://", "postgresql://")
    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(conninfo, connect_timeout=2).close()
            return
        except psycopg.OperationalError as error:
            if time.monotonic() > deadline:
                why = f"PostgreSQL at {admin_url} did not answer in {timeout:.0f} s: {error}"
                raise PostgresUnavailable(why) from error
            time.sleep(0.2)


class TestDatabases:
    """Fresh databases on one server, each a copy of a template migrated once (CREATE DATABASE .. TEMPLATE).

    Names carry the process id, so runs sharing an external server do not collide.
    """

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.prefix = f"gelato_test_{os.getpid()}"
        self.template = f"{self.prefix}_template"
        self.created: list[str] = []
        self._count = 0

    def _admin(self, *statements: str) -> None:
        import psycopg

        conninfo = self.admin_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conninfo, autocommit=True) as connection:
            for statement in statements:
                connection.execute(statement)

    def _url(self, database: str) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def prepare(self) -> TestDatabases:
        """Create and migrate the template (once per test run)."""
        from puzzles.bank import connect

        self._admin(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)', f'CREATE DATABASE "{self.template}"')
        connect(self._url(self.template)).close()  # close: a template must have no open connections
        return self

    def create(self) -> str:
        """A new, migrated, empty database; returns its URL."""
        self._count += 1
        name = f"{self.prefix}_{self._count}"
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.created.append(name)
        return self._url(name)

    def drop_all(self) -> None:
        names, self.created = [*self.created, self.template], []
        self._admin(*(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in names))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    server = PostgresServer().start()
    logging.info("DATABASE_URL=%s", server.url())
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
