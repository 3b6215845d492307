"""The whole product on the embedded stack: PostgreSQL, tansu, the services, Traefik.

``docuchat dev`` runs it for a newcomer; the end-to-end tests run the same thing on free ports.
Services run as child processes (one for ``--target all``, one per target with ``split``), so
the supervisor stays responsive and a crash in one shows up as that process's exit.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from docuchat.devstack import (
    EmbeddedPostgres,
    ManagedProcess,
    ReadinessError,
    TansuBroker,
    TraefikGateway,
    free_port,
    http_ok,
)
from docuchat.devstack.llm import LocalLLMServer, local_llm_unavailable
from docuchat_common.events.topics import ensure_topics
from docuchat_common.logging import get_logger

log = get_logger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
ROUTES_FILE = REPO_ROOT / "deploy" / "gateway" / "dynamic.yml"
SERVICES = ("auth", "ingest", "chat", "usage")
CORS_REGEX_ENV = "DOCUCHAT_CORS_ORIGIN_REGEX"
# Any port on this machine's names: the frontend dev servers (Vite 5173, Next 3000, ...).
DEV_CORS_ORIGIN_REGEX = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]+)?$"
# In split mode each of these runs in its own process; the API targets leave publishing to the
# relay target.
# With the embedded vector store the ingest target is API and worker in one process (one
# shard owner); `ingest-worker` processes are for a Qdrant server (compose, Kubernetes).
SPLIT_TARGETS = ("auth", "ingest", "chat", "usage", "relay")


@dataclass
class StackConfig:
    data_dir: Path = Path(".docuchat")
    gateway_port: int = 8080
    postgres_port: int | None = 15432
    kafka_port: int | None = 19092
    base_service_port: int = 8101
    split: bool = False
    fast_postgres: bool = False
    environment: str = "dev"
    # Shorter consumer-group timings for tansu: joins take ~2 s instead of ~10.
    kafka_session_timeout_ms: int = 6000
    kafka_heartbeat_interval_ms: int = 500
    extra_env: Mapping[str, str] = field(default_factory=dict)
    ready_timeout: float = 90.0
    # Serve SmolLM2 locally (xllamacpp) and point chat at it; `docuchat dev` turns it on. Off,
    # chat uses its own settings (the extractive provider unless extra_env says otherwise).
    local_llm: bool = False


class DevStack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.data_dir = config.data_dir.absolute()
        self.logs_dir = self.data_dir / "logs"
        self.postgres = EmbeddedPostgres(
            self.data_dir / "postgres", config.postgres_port, fast=config.fast_postgres
        )
        self.broker = TansuBroker(config.kafka_port, self.logs_dir / "tansu.log")
        targets = SPLIT_TARGETS if config.split else ("all",)
        self.ports: dict[str, int] = {}
        port = config.base_service_port
        for name in (*SERVICES, "ingest-worker", "relay", "llm"):
            self.ports[name] = port if port else free_port()
            port = port + 1 if port else 0
        self.targets = targets
        self.processes: dict[str, ManagedProcess] = {}
        self.gateway = TraefikGateway(
            config.gateway_port,
            ROUTES_FILE,
            {
                **{f"DOCUCHAT_{s.upper()}_URL": self.service_url(s) for s in SERVICES},
                "DOCUCHAT_INGEST_SEARCH_URL": self.search_url,
                **self._dev_cors(),
                # the gateway's own settings (rate limits, proxy depth) from extra_env too
                **{k: v for k, v in config.extra_env.items() if k.startswith("DOCUCHAT_GATEWAY_")},
            },
            self.logs_dir,
        )
        self.started_in: float | None = None
        self.llm: LocalLLMServer | None = None
        if config.local_llm:
            reason = local_llm_unavailable()
            if reason is None:
                self.llm = LocalLLMServer(self.ports["llm"], self.logs_dir)
            else:
                log.warning("no local LLM; chat answers extractively", reason=reason)

    def _dev_cors(self) -> dict[str, str]:
        """In dev, a frontend's dev server (any localhost port) may call the gateway unless the
        developer configured CORS themselves."""
        configured = any(os.environ.get(k) for k in ("DOCUCHAT_CORS_ORIGINS", CORS_REGEX_ENV))
        if self.config.environment != "dev" or configured:
            return {}
        return {CORS_REGEX_ENV: DEV_CORS_ORIGIN_REGEX}

    def service_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def search_url(self) -> str:
        """Knowledge-base search is served by the process that owns the vector store: with the
        embedded store, the ingest app in both modes."""
        return self.service_url("ingest")

    @property
    def mail_file(self) -> Path:
        """Where the dev mail sender writes (codes, reset links, invitations)."""
        return self.data_dir / "mail" / "outbox.jsonl"

    @property
    def gateway_url(self) -> str:
        return self.gateway.url

    def service_env(self, target: str) -> dict[str, str]:
        cfg = self.config
        env = {
            **os.environ,
            "DOCUCHAT_ENVIRONMENT": cfg.environment,
            "DOCUCHAT_LOG_JSON": "true",
            "DOCUCHAT_KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers,
            "DOCUCHAT_KAFKA_EPHEMERAL_BROKER": "true",
            "DOCUCHAT_KAFKA_SESSION_TIMEOUT_MS": str(cfg.kafka_session_timeout_ms),
            "DOCUCHAT_KAFKA_HEARTBEAT_INTERVAL_MS": str(cfg.kafka_heartbeat_interval_ms),
            "DOCUCHAT_JWKS_URL": f"{self.service_url('auth')}/.well-known/jwks.json",
            "DOCUCHAT_AUTH_KEYS_DIR": str(self.data_dir / "auth-keys"),
            "DOCUCHAT_AUTH_MAIL_FILE": str(self.mail_file),
            "DOCUCHAT_INGEST_BLOB_DIR": str(self.data_dir / "blobs"),
            "DOCUCHAT_INGEST_VECTOR_DIR": str(self.data_dir / "vectors"),
            "DOCUCHAT_RELAY_PORT": str(self.ports["relay"]),
            "DOCUCHAT_INGEST_WORKER_PORT": str(self.ports["ingest-worker"]),
            "DOCUCHAT_CHAT_RETRIEVAL_URL": self.search_url,
            "PYTHONUNBUFFERED": "1",
        }
        for service in SERVICES:
            prefix = f"DOCUCHAT_{service.upper()}_"
            env[prefix + "DATABASE_URL"] = self.postgres.async_url(f"docuchat_{service}")
            env[prefix + "PORT"] = str(self.ports[service])
        if target not in ("all", "relay") and "relay" in self.targets:
            env["DOCUCHAT_RELAY_ENABLED"] = "false"
        if self.llm is not None:
            env.update(self.llm.chat_env())
        env.update(cfg.extra_env)
        return env

    def _ready_urls(self, target: str) -> list[str]:
        if target == "all":
            return [f"{self.service_url(s)}/readyz" for s in SERVICES]
        return [f"http://127.0.0.1:{self.ports[target]}/readyz"]

    def start(self) -> None:
        started = time.monotonic()
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.llm is not None:
                self.llm.launch()  # loads while the rest starts
            self.postgres.start()
            self.broker.start()
            asyncio.run(ensure_topics(self.broker.bootstrap_servers))
            self._wait_for_llm()
            for target in self.targets:
                proc = ManagedProcess(
                    target,
                    [sys.executable, "-m", "docuchat", "run", "--target", target],
                    log_path=self.logs_dir / f"{target}.log",
                    env=self.service_env(target),
                    cwd=REPO_ROOT,
                )
                proc.start()
                self.processes[target] = proc
            # Migrations run on start: wait for auth first (it holds the JWKS others fetch).
            for target in self.processes:
                self._wait_ready(target)
            self.gateway.start()
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - started

    def stop(self) -> None:
        self.gateway.stop()
        for proc in reversed(list(self.processes.values())):
            proc.stop(timeout=25)
        if self.llm is not None:
            self.llm.stop()
        self.broker.stop()
        self.postgres.stop()

    def restart_target(self, target: str) -> None:
        proc = self.processes[target]
        proc.stop(timeout=25)
        proc.start()
        self._wait_ready(target)

    def _wait_for_llm(self) -> None:
        """Chat starts pointed at the local model only when it answers; else extractive."""
        if self.llm is None:
            return
        try:
            seconds = self.llm.wait_ready(timeout=self.config.ready_timeout)
        except ReadinessError as exc:
            log.warning("the local LLM did not start; chat answers extractively", error=str(exc))
            self.llm = None
        else:
            log.info(
                "local LLM ready",
                model=self.llm.alias,
                url=self.llm.base_url,
                seconds=round(seconds, 1),
            )

    def _wait_ready(self, target: str) -> None:
        for url in self._ready_urls(target):
            self.processes[target].wait_until(
                functools.partial(http_ok, url),
                what=f"GET {url} = 200",
                timeout=self.config.ready_timeout,
            )

    def __enter__(self) -> DevStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
