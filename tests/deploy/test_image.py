"""The Dockerfile and what runs it agree: the ports the image gives each target are the ones
compose probes and scrapes, the gateway calls, and Kubernetes exposes; the image is built from
uv.lock without dev dependencies and runs as a non-root user."""

from __future__ import annotations

import re
from typing import Any

import yaml

from docuchat.targets import TARGETS
from tests.deploy import compose_check
from tests.deploy.tools import REPO_ROOT

DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()


def _image_env() -> dict[str, str]:
    """ENV of the runtime stage (the last FROM)."""
    runtime = DOCKERFILE[DOCKERFILE.rindex("\nFROM ") :]
    env: dict[str, str] = {}
    for block in re.findall(r"^ENV (.*?)(?<!\\)$", runtime, flags=re.MULTILINE | re.DOTALL):
        for name, value in re.findall(r"([A-Z_]+)=(\S+)", block):
            env[name] = value
    return env


def _target_ports() -> dict[str, int]:
    env = _image_env()
    ports = {t: int(env[f"DOCUCHAT_{t.upper()}_PORT"]) for t in ("auth", "ingest", "chat", "usage")}
    ports["ingest-worker"] = int(env["DOCUCHAT_INGEST_WORKER_PORT"])
    ports["relay"] = int(env["DOCUCHAT_RELAY_PORT"])
    assert set(ports) == {t for t in TARGETS if t != "all"}
    assert len(set(ports.values())) == len(ports), "targets share a port (`--target all`)"
    return ports


def _compose() -> dict[str, Any]:
    return compose_check.load(
        REPO_ROOT / "docker-compose.yml", compose_check.read_env_file(REPO_ROOT / ".env.example")
    )


def test_compose_probes_each_target_on_the_image_port() -> None:
    services = _compose()["services"]
    for target, port in _target_ports().items():
        probe = " ".join(services[target]["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/readyz" in probe, target


def test_the_gateway_and_prometheus_use_the_image_ports() -> None:
    ports = _target_ports()
    gateway = _compose()["services"]["gateway"]["environment"]
    for service in ("auth", "ingest", "chat", "usage"):
        assert gateway[f"DOCUCHAT_{service.upper()}_URL"] == f"http://{service}:{ports[service]}"
    prometheus = yaml.safe_load((REPO_ROOT / "deploy/observability/prometheus.yml").read_text())
    job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "docuchat")
    assert {sd["names"][0]: sd["port"] for sd in job["dns_sd_configs"]} == ports


def test_kubernetes_exposes_each_target_on_the_image_port() -> None:
    for target, port in _target_ports().items():
        docs = list(
            yaml.safe_load_all(
                (REPO_ROOT / f"deploy/k8s/base/{target}/deployment.yaml").read_text()
            )
        )
        container = docs[0]["spec"]["template"]["spec"]["containers"][0]
        assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        service = yaml.safe_load((REPO_ROOT / f"deploy/k8s/base/{target}/service.yaml").read_text())
        assert service["spec"]["ports"][0]["port"] == port


def test_the_image_is_built_from_the_lock_without_dev_dependencies_and_runs_non_root() -> None:
    assert re.search(r"^FROM ghcr\.io/astral-sh/uv:\$\{UV_VERSION\} AS uv$", DOCKERFILE, re.M)
    syncs = re.findall(r"uv sync ([^\n]*)", DOCKERFILE)
    assert syncs and all("--frozen" in s and "--no-dev" in s for s in syncs)
    assert "--extra" not in DOCKERFILE.split("uv sync", 1)[1]  # no embedded stack in the image
    user = re.findall(r"^USER (\S+)$", DOCKERFILE, re.M)
    assert user == ["10001:10001"]
    env = _image_env()
    assert env["DOCUCHAT_HOST"] == "0.0.0.0"
    # writable paths only under /data and /tmp (read-only root filesystem)
    for name in (
        "DOCUCHAT_INGEST_BLOB_DIR",
        "DOCUCHAT_AUTH_KEYS_DIR",
        "TIKTOKEN_CACHE_DIR",
        "HOME",
    ):
        assert env[name].startswith(("/data/", "/tmp")), name
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {"**/.venv", "**/.git", ".env"} <= set(ignored)
