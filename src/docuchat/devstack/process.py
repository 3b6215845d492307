"""Supervise one child process of the embedded dev stack.

Every child runs in its own session (so a Ctrl-C in the terminal reaches only us, and we stop
the children in order) and, on Linux, asks the kernel to send it SIGTERM when the thread that
started it dies (PR_SET_PDEATHSIG), so a killed ``docuchat dev`` leaves no process behind.

PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the whole process:
start children from the main thread or another thread that lives as long as the stack (never
from a short-lived worker such as ``asyncio.to_thread``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import http.client
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "ManagedProcess",
    "ReadinessError",
    "free_port",
    "http_ok",
    "tcp_port_open",
]

_PR_SET_PDEATHSIG = 1
_LOG_TAIL_LINES = 40


class ReadinessError(RuntimeError):
    """A managed process exited early or did not become ready before its deadline."""


# Ports handed out by this process: two stacks (or two parts of one) never get the same one.
_HANDED_OUT: set[int] = set()
_LOWEST_PORT = 10_000


def _ports_outside_the_ephemeral_range() -> range:
    """Below the kernel's ephemeral range where there is room, else above it."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):  # not Linux: the IANA dynamic range
        low, high = 49_152, 65_535
    return range(_LOWEST_PORT, low) if low - _LOWEST_PORT >= 1_000 else range(high + 1, 65_536)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that is free right now, chosen below the kernel's
    ephemeral range.

    A port the OS picks (bind to 0) comes from that range, which is also where every outgoing
    connection gets its local port: between choosing a service's port and the service binding
    it, seconds later, one of the stack's own connections (Kafka, PostgreSQL) can take it, and
    the service fails to start with "address already in use". Ports below the range are only
    ever taken by an explicit bind.
    """
    candidates = _ports_outside_the_ephemeral_range()
    for _ in range(200):
        port = random.choice(candidates)  # noqa: S311 - not a secret
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise OSError(f"no free TCP port on {host} outside the ephemeral range")


def tcp_port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts a TCP connection on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when ``GET url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http only)
            status: int = response.status
            return status == 200
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
        return False


def _load_prctl() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]
    prctl.restype = ctypes.c_int

    def call(option: int, arg: int) -> int:
        result: int = prctl(option, arg)
        return result

    return call


# Loaded in the parent: the pre-exec hook runs between fork and exec and must not load libraries.
_PRCTL = _load_prctl()


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A pre-exec hook that makes the child receive SIGTERM when its parent dies (Linux)."""
    prctl = _PRCTL
    if prctl is None:
        return None

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
        # The parent may have died between fork() and prctl(): then nobody would ever signal us.
        if os.getppid() != parent_pid:
            os._exit(1)

    return hook


class ManagedProcess:
    """One supervised child process: start, readiness wait, graceful stop, log tail.

    stdout and stderr go to ``log_path`` (appended). ``stop()`` sends ``stop_signal`` to the
    whole process group (or only to the leader when ``signal_group=False``, for programs such
    as the postmaster that shut their own children down and misread signals sent to them
    directly), waits up to ``timeout`` seconds, then SIGKILLs the group.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | int | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        signal_group: bool = True,
    ) -> None:
        self.name = name
        self.argv = [os.fspath(arg) for arg in argv]
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.user = user
        self.stop_signal = stop_signal
        self.signal_group = signal_group
        self._popen: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"ManagedProcess(name={self.name!r}, pid={self.pid}, running={self.is_running})"

    @property
    def pid(self) -> int | None:
        """PID of the running (or last started, not yet reaped) process."""
        return self._popen.pid if self._popen is not None else None

    @property
    def is_running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def start(self) -> None:
        if self.is_running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- starting {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(  # noqa: S603 (argv built by us, no shell)
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                user=self.user,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),  # noqa: PLW1509 (async-signal-safe enough: one prctl)
                close_fds=True,
            )

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit on its own; its exit code. TimeoutError if it lingers."""
        if self._popen is None:
            raise RuntimeError(f"{self.name} was never started")
        try:
            return self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(f"{self.name} still running after {timeout:.0f}s") from exc

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop gracefully, SIGKILL after ``timeout`` seconds; return the exit code."""
        popen = self._popen
        if popen is None:
            return None
        pgid = popen.pid  # start_new_session: the child leads its own group
        if popen.poll() is None:
            self._signal(pgid, self.stop_signal, group=self.signal_group)
            try:
                popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(pgid, signal.SIGKILL, group=True)
                popen.wait()
        # Anything the leader left behind in its group goes too.
        self._signal(pgid, signal.SIGKILL, group=True)
        return popen.returncode

    @staticmethod
    def _signal(pid: int, sig: signal.Signals, *, group: bool) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                size = log.tell()
                log.seek(max(0, size - 64 * 1024))
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(
        self,
        condition: Callable[[], bool],
        *,
        what: str,
        timeout: float = 30.0,
    ) -> float:
        """Poll ``condition`` until it is true; return the seconds it took.

        Raises ReadinessError (with the log tail) when the process exits first or the deadline
        passes.
        """
        started = time.monotonic()
        deadline = started + timeout
        interval = 0.01
        while True:
            if not self.is_running:
                raise ReadinessError(
                    f"{self.name} exited with code {self.returncode} before {what}; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            if condition():
                return time.monotonic() - started
            if time.monotonic() >= deadline:
                raise ReadinessError(
                    f"{self.name} (pid {self.pid}) not ready after {timeout:.0f}s: {what}; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(interval)  # poll interval between checks, not a readiness guess
            interval = min(interval * 2, 0.2)
