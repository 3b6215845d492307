"""The embedded dev stack's process supervisors, against the real binaries."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from docuchat.devstack import (
    GATEWAY_ENV_VARS,
    EmbeddedPostgres,
    ManagedProcess,
    ReadinessError,
    TansuBroker,
    TraefikGateway,
    free_port,
)

REPO = Path(__file__).resolve().parents[2]
DYNAMIC_CONFIG = REPO / "deploy" / "gateway" / "dynamic.yml"

pytestmark = pytest.mark.timeout(60)


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    """Wait until ``pid`` has exited (a zombie counts as gone): its pidfd becomes readable
    when it does, so nothing polls."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([pidfd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(pidfd)


def group_members(pgid: int) -> list[int]:
    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


# --- ManagedProcess ------------------------------------------------------------------------


def test_readiness_error_carries_log_tail_when_the_process_exits(tmp_path: Path) -> None:
    proc = ManagedProcess(
        "crasher",
        [sys.executable, "-c", "print('boom: bad config', flush=True); raise SystemExit(3)"],
        log_path=tmp_path / "crasher.log",
    )
    proc.start()
    try:
        with pytest.raises(ReadinessError, match="boom: bad config") as info:
            proc.wait_until(lambda: False, what="never", timeout=20)
        assert "exited with code 3" in str(info.value)
    finally:
        proc.stop()


def test_readiness_deadline_then_stop_kills_the_group(tmp_path: Path) -> None:
    proc = ManagedProcess(
        "sleeper",
        [sys.executable, "-c", "import signal; print('still booting', flush=True); signal.pause()"],
        log_path=tmp_path / "sleeper.log",
    )
    proc.start()
    try:
        with pytest.raises(ReadinessError, match="not ready after"):
            proc.wait_until(lambda: False, what="a port that never opens", timeout=0.3)
        assert proc.is_running
    finally:
        pid = proc.pid
        proc.stop(timeout=5)
    assert pid is not None
    assert not proc.is_running
    assert proc.returncode == -signal.SIGTERM
    assert wait_gone(pid)


def test_child_dies_when_its_supervisor_is_killed(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: SIGKILL the supervising process and its child still goes away."""
    script = textwrap.dedent(
        f"""
        import signal, sys
        from pathlib import Path
        from docuchat.devstack import ManagedProcess
        p = ManagedProcess("orphan", [sys.executable, "-c", "import signal; signal.pause()"],
                           log_path=Path({str(tmp_path / "orphan.log")!r}))
        p.start()
        print(p.pid, flush=True)
        signal.pause()  # until the test kills this supervisor
        """
    )
    supervisor = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert supervisor.stdout is not None
        child_pid = int(supervisor.stdout.readline())
        assert psutil.pid_exists(child_pid)
        supervisor.kill()
        supervisor.wait(timeout=10)
        assert wait_gone(child_pid), "the child outlived its killed supervisor"
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        if supervisor.stdout is not None:
            supervisor.stdout.close()


# --- PostgreSQL ----------------------------------------------------------------------------


async def test_embedded_postgres_lifecycle(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pgdata", fast=True)
    try:
        pg.start()
        pid = pg.pid
        assert pid is not None
        assert pg.url("app") == f"postgresql://postgres@127.0.0.1:{pg.port}/app"
        assert pg.async_url("app") == f"postgresql+asyncpg://postgres@127.0.0.1:{pg.port}/app"

        pg.create_database("app")
        pg.create_database("app_copy", template="app")
        conn = await asyncpg.connect(pg.url("app_copy"))
        try:
            assert await conn.fetchval("select 1") == 1
            assert await conn.fetchval("show max_connections") == "300"
            assert await conn.fetchval("show fsync") == "off"
        finally:
            await conn.close()
        pg.drop_database("app_copy")
        pg.drop_database("app_copy")  # IF EXISTS: dropping twice is fine

        pg.stop()
        assert not pg.is_running
        assert wait_gone(pid)
        assert group_members(pid) == []
        assert not (tmp_path / "pgdata" / "postmaster.pid").exists()

        # A killed run leaves a stale postmaster.pid behind; a live PID that is not postgres
        # (ours) must not stop the next start.
        (tmp_path / "pgdata" / "postmaster.pid").write_text(f"{os.getpid()}\n/nowhere\n")
        pg.start()  # no initdb this time: same data dir, database still there
        conn = await asyncpg.connect(pg.url("app"))
        try:
            assert await conn.fetchval("select 1") == 1
        finally:
            await conn.close()
    finally:
        pg.stop()
    assert not pg.is_running


# --- tansu ---------------------------------------------------------------------------------


async def test_tansu_restart_keeps_the_port_and_serves_kafka(tmp_path: Path) -> None:
    broker = TansuBroker(log_path=tmp_path / "tansu.log")
    try:
        broker.start()
        port, first_pid = broker.port, broker.pid
        assert broker.bootstrap_servers == f"127.0.0.1:{port}"

        broker.restart()
        assert broker.port == port
        assert broker.pid != first_pid
        assert first_pid is not None
        assert wait_gone(first_pid)

        topic = f"devstack-{uuid.uuid4().hex[:8]}"
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
            assert topic in await admin.list_topics()
        finally:
            await admin.close()
    finally:
        broker.stop()
    assert not broker.is_running


# --- Traefik -------------------------------------------------------------------------------

APPROVED_TOKEN = "Bearer good-token"
VERIFIED_IDENTITY = "verified-identity-from-auth"
STREAM_PROBE = "/stream-probe"
STREAM_RELEASE = threading.Event()  # the probe's second event waits for it
TENANT_TOKEN_PREFIX = "Bearer tenant-"  # approved, as the tenant named after the prefix


class _Backend(BaseHTTPRequestHandler):
    service = "?"
    seen: list[dict[str, Any]]

    def _handle(self) -> None:
        if self.path.endswith(STREAM_PROBE):
            self._stream()
            return
        if self.path.startswith("/internal/forward-auth"):
            token = self.headers.get("Authorization", "")
            if token == APPROVED_TOKEN or token.startswith(TENANT_TOKEN_PREFIX):
                self.send_response(200)
                self.send_header("X-DocuChat-Identity", VERIFIED_IDENTITY)
                self.send_header(
                    "X-DocuChat-Tenant", token.removeprefix(TENANT_TOKEN_PREFIX) or "default"
                )
                self.end_headers()
            else:
                body = b'{"status": 401, "code": "unauthenticated"}'
                self.send_response(401)
                self.send_header("Content-Type", "application/problem+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        record = {
            "service": self.service,
            "method": self.command,
            "path": self.path,
            "identity": self.headers.get_all("X-DocuChat-Identity"),
            "tenant": self.headers.get_all("X-DocuChat-Tenant"),
            "aliases": [k for k in self.headers if k.lower().replace("_", "-") != k.lower()],
        }
        self.seen.append(record)
        body = json.dumps(record).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self) -> None:
        """Server-sent events: one now, the next only once the test has seen the first."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(b"event: token\ndata: first\n\n")
        self.wfile.flush()
        STREAM_RELEASE.wait(timeout=15)
        self.wfile.write(b"event: done\ndata: second\n\n")
        self.wfile.flush()
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Backends:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.servers: dict[str, ThreadingHTTPServer] = {}
        for name in ("auth", "ingest", "ingest_search", "chat", "usage"):
            handler = type(f"{name}Handler", (_Backend,), {"service": name, "seen": self.seen})
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
            self.servers[name] = server

    def env(self) -> dict[str, str]:
        return {
            f"DOCUCHAT_{name.upper()}_URL": f"http://127.0.0.1:{server.server_address[1]}"
            for name, server in self.servers.items()
        }

    def close(self) -> None:
        for server in self.servers.values():
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TraefikGateway, Backends]]:
    backends = Backends()
    env = backends.env()
    assert sorted(env) == sorted(GATEWAY_ENV_VARS)
    gw = TraefikGateway(free_port(), DYNAMIC_CONFIG, env, tmp_path_factory.mktemp("gateway"))
    try:
        gw.start()
        yield gw, backends
    finally:
        gw.stop()
        backends.close()


def call(
    gw: TraefikGateway, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    data = b"{}" if method in {"POST", "PUT", "PATCH"} else None
    request = urllib.request.Request(gw.url + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_gateway_health_and_service_probes(gateway: tuple[TraefikGateway, Backends]) -> None:
    gw, _ = gateway
    assert call(gw, "/healthz") == (200, b"OK")
    status, body = call(gw, "/auth/readyz")
    assert status == 200
    assert json.loads(body) == {
        "service": "auth",
        "method": "GET",
        "path": "/readyz",
        "identity": None,
        "aliases": [],
        "tenant": None,
    }
    for service in ("ingest", "chat", "usage"):
        status, body = call(gw, f"/{service}/healthz")
        assert status == 200
        assert (json.loads(body)["service"], json.loads(body)["path"]) == (service, "/healthz")


@pytest.mark.parametrize(
    "path", ["/metrics", "/auth/metrics", "/internal/forward-auth", "/", "/api/v1/plans/a/b"]
)
def test_gateway_does_not_route(gateway: tuple[TraefikGateway, Backends], path: str) -> None:
    """Unrouted paths reach no service at their own path: the catch-all hands auth one path
    nobody serves (its problem+json 404 is the client's answer; these backends echo)."""
    gw, _ = gateway
    status, body = call(gw, path)
    assert status == 200
    echoed = json.loads(body)
    assert (echoed["service"], echoed["path"], echoed["identity"]) == (
        "auth",
        "/gateway/not-found",
        None,
    )


def test_protected_routes_need_forward_auth_approval(
    gateway: tuple[TraefikGateway, Backends],
) -> None:
    gw, backends = gateway
    before = len(backends.seen)
    protected = (
        "/api/v1/knowledge-bases",
        "/api/v1/knowledge-bases/123/search",
        "/api/v1/users/me",
        "/api/v1/usage",
        "/api/v1/auth/anything-else",
        # a public path must not open the way to a protected one
        "/api/v1/auth/register/../../users/me",
        "/api/v1/auth/register%2F..%2F..%2Fusers%2Fme",
        "/auth/healthz/../../api/v1/users/me",
    )
    for path in protected:
        status, body = call(gw, path, headers={"X-DocuChat-Identity": "forged"})
        assert (path, status) == (path, 401)
        assert json.loads(body)["code"] == "unauthenticated"
    assert len(backends.seen) == before, "a refused request reached a service"

    forged = {
        "Authorization": APPROVED_TOKEN,
        "X-DocuChat-Identity": "forged",
        "X_DocuChat_Identity": "forged-alias",
    }
    status, body = call(gw, "/api/v1/sessions/123/messages", "POST", forged)
    assert status == 200
    seen = json.loads(body)
    assert seen["service"] == "chat"
    assert seen["path"] == "/api/v1/sessions/123/messages"
    assert seen["identity"] == [VERIFIED_IDENTITY]
    assert seen["aliases"] == []

    # search goes to the process that owns the vector store, the rest of ingest to its API
    kb = "/api/v1/knowledge-bases/0b7c17c2-aaaa-4bbb-8ccc-123456789abc"
    for path, service in (
        (f"{kb}/search", "ingest_search"),
        (f"{kb}/documents", "ingest"),
        (f"{kb}/search/x", "ingest"),
        (f"{kb}%2Fsearch", "ingest"),
    ):
        status, body = call(gw, path, "POST", {"Authorization": APPROVED_TOKEN})
        assert (path, status, json.loads(body)["service"]) == (path, 200, service)
        assert json.loads(body)["identity"] == [VERIFIED_IDENTITY]


@pytest.mark.parametrize(
    ("method", "path", "service"),
    [
        ("POST", "/api/v1/auth/register", "auth"),
        ("POST", "/api/v1/auth/login", "auth"),
        ("POST", "/api/v1/auth/email-code/verify", "auth"),
        ("POST", "/api/v1/auth/password/reset", "auth"),
        ("GET", "/.well-known/jwks.json", "auth"),
        ("GET", "/api/v1/plans", "usage"),
        ("GET", "/api/v1/plans/pro", "usage"),
    ],
)
def test_public_routes_pass_without_identity(
    gateway: tuple[TraefikGateway, Backends], method: str, path: str, service: str
) -> None:
    gw, _ = gateway
    status, body = call(gw, path, method, {"X-DocuChat-Identity": "forged"})
    assert status == 200
    seen = json.loads(body)
    assert (seen["service"], seen["method"], seen["path"]) == (service, method, path)
    assert seen["identity"] is None, "a client's identity header reached a service"


def test_gateway_stop_leaves_nothing(tmp_path: Path) -> None:
    backends = Backends()
    gw = TraefikGateway(free_port(), DYNAMIC_CONFIG, backends.env(), tmp_path)
    try:
        gw.start()
        pid = gw.pid
        assert (tmp_path / "access.log").exists()
    finally:
        gw.stop()
        backends.close()
    assert pid is not None
    assert wait_gone(pid)
    assert "Server stopped" in (tmp_path / "traefik.log").read_text()


def test_gateway_refuses_to_start_without_service_urls(tmp_path: Path) -> None:
    env = dict.fromkeys(GATEWAY_ENV_VARS, "http://127.0.0.1:9")
    env["DOCUCHAT_CHAT_URL"] = ""
    gw = TraefikGateway(free_port(), DYNAMIC_CONFIG, env, tmp_path)
    with pytest.raises(ValueError, match="DOCUCHAT_CHAT_URL"):
        gw.start()
    assert gw.pid is None


def test_free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() -> None:
    """Outgoing connections take their local ports from the ephemeral range: a service port
    chosen there can be gone by the time the service binds it."""
    import socket

    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == 20
    assert all(port < low for port in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[0]))  # still free
