"""A private MariaDB server for tests that break the database: its own data directory and port,
so the machine's shared MariaDB (127.0.0.1:3306) is never touched. Grant tables are skipped (any
user, no password): it only ever listens on 127.0.0.1 for the length of one test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from jobworkerp.testing.server import free_port
from tests.chaos.private_server import stop_cleanly, wait_until_answering

START_TIMEOUT_S = 60.0
DATABASE = "jobworkerp"


class MariaDBInstance:
    def __init__(self, workdir: Path) -> None:
        for tool in ("mariadbd", "mariadb-install-db", "mariadb-admin", "mariadb"):
            if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
                raise RuntimeError(f"{tool} is not installed (apt-get install mariadb-server)")
        self.dir = workdir / "mariadb"
        self.data = self.dir / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mariadb-install-db", "--no-defaults", "--user=root", f"--datadir={self.data}",
                        "--skip-test-db", "--auth-root-authentication-method=normal"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def env(self) -> dict[str, str]:
        """Server settings for jobworkerp (MYSQL_*), TCP only."""
        return {"MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": str(self.port), "MYSQL_USER": "root",
                "MYSQL_PASSWORD": "", "MYSQL_DBNAME": DATABASE}

    def start(self) -> MariaDBInstance:
        mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        self.proc = subprocess.Popen(
            [mariadbd, "--no-defaults", "--user=root", f"--datadir={self.data}", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--socket={self.dir / 'mysqld.sock'}", f"--pid-file={self.dir / 'pid'}",
             "--skip-grant-tables", "--skip-log-bin", "--innodb-buffer-pool-size=32M",
             f"--log-error={self.dir / 'error.log'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_answering(self.proc, self._answers, f"mariadbd on port {self.port}", self._error_log,
                             START_TIMEOUT_S)
        self._sql(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        return self

    def stop(self) -> None:
        """SIGTERM: a clean shutdown (InnoDB flushes), as `systemctl restart` would do."""
        stop_cleanly(self.proc, 60)
        self.proc = None

    def _answers(self) -> bool:
        done = subprocess.run(["mariadb-admin", "-h127.0.0.1", f"-P{self.port}", "-uroot", "ping"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return done.returncode == 0

    def _sql(self, statement: str) -> None:
        subprocess.run(["mariadb", "-h127.0.0.1", f"-P{self.port}", "-uroot", "-e", statement], check=True,
                       stdout=subprocess.DEVNULL)

    def _error_log(self) -> str:
        log = self.dir / "error.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""
