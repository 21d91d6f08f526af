"""A real, throw-away PostgreSQL server for the tests (no tests here; the fixtures are in conftest.py).

``initdb`` + ``pg_ctl`` from Debian's ``postgresql`` package (``.ci/run`` installs it) into a temporary folder,
on a free localhost port, password login (scram-sha-256) like a production URL. PostgreSQL refuses to run as
root: as root the server runs as the ``postgres`` user the package creates (``runuser``).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


class PostgresUnavailable(Exception):
    """The server cannot be started here at all (no binaries, no unprivileged user): tests skip with this."""


def find_bin_dir() -> Path:
    """Folder holding initdb and pg_ctl: $CHATIR_TEST_PG_BIN, Debian's newest /usr/lib/postgresql/N/bin, PATH."""
    candidates = [os.environ.get("CHATIR_TEST_PG_BIN", "")]
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    which = shutil.which("initdb")
    candidates.append(str(Path(which).parent) if which else "")
    for candidate in filter(None, candidates):
        if (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: `apt-get install postgresql` "
        "(or set CHATIR_TEST_PG_BIN to their folder)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    bin_dir: Path
    folder: Path
    port: int
    password: str
    run_as: str | None
    user: str = "chatir"
    durable: bool = False
    """fsync on (production-like, for benchmarks); tests run with fsync off."""

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> None:
        password_file = self.folder / "password"
        password_file.write_text(self.password + "\n")
        if self.run_as:
            record = pwd.getpwnam(self.run_as)
            for path in (self.folder, password_file):
                os.chown(path, record.pw_uid, record.pw_gid)
        init = self._run(
            "initdb", "-D", str(self.data), "-U", self.user, f"--pwfile={password_file}",
            "--auth=scram-sha-256", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        if init.returncode:
            raise RuntimeError(f"initdb failed: {init.stderr or init.stdout}")
        try:
            self.resume()
        except RuntimeError as error:
            log = (self.folder / "log").read_text() if (self.folder / "log").exists() else ""
            raise RuntimeError(f"{error}\n{log[-2000:]}") from None

    def halt(self) -> None:
        """Stop the server as a crash would (immediate shutdown: no clean checkpoint), keeping its data."""
        stopped = self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        if stopped.returncode:
            raise RuntimeError(f"pg_ctl stop failed: {stopped.stderr or stopped.stdout}")

    def resume(self) -> None:
        """Start the halted server again on the same port and data."""
        fsync = "on" if self.durable else "off"
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync={fsync}"
        options += " -c max_connections=60"
        log = str(self.folder / "log")
        started = self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")
        if started.returncode:
            raise RuntimeError(f"pg_ctl start failed: {started.stderr or started.stdout}")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def start_server(*, durable: bool = False) -> PostgresServer:
    """Start a server (raises :class:`PostgresUnavailable` when it cannot exist here, RuntimeError when it fails)."""
    bin_dir = find_bin_dir()
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable(
                "running as root and there is no 'postgres' user to run the server as (PostgreSQL refuses root)"
            ) from None
        run_as = "postgres"
        if shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root without `runuser` to start PostgreSQL as 'postgres'")
    # as root the folder must be reachable by 'postgres': /tmp, whatever TMPDIR says
    folder = Path(tempfile.mkdtemp(prefix="chatir-pg-", dir="/tmp" if run_as else None))
    server = PostgresServer(bin_dir, folder, _free_port(), secrets.token_hex(12), run_as, durable=durable)
    try:
        server.start()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return server
