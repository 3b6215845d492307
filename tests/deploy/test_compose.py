"""docker-compose.yml, validated offline: the compose-spec schema and every reference resolving;
each check shown to fail on a deliberately broken copy."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from docuchat.cli import app as cli_app
from docuchat.devstack.traefik import GATEWAY_ENV_VARS
from docuchat.targets import TARGETS
from docuchat_common.events.topics import ALL_TOPICS
from tests.deploy import compose_check
from tests.deploy.tools import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
COMMANDS = {
    command.name or (command.callback.__name__ if command.callback else "")
    for command in cli_app.registered_commands
}


def _errors(compose_file: Path) -> list[str]:
    env = compose_check.read_env_file(ENV_EXAMPLE)
    model = compose_check.load(compose_file, env)
    errors = compose_check.schema_errors(model)
    if errors:
        return errors
    return compose_check.reference_errors(
        model,
        compose_file.parent,
        image=model["x-docuchat"]["image"],
        commands=COMMANDS,
        targets=set(TARGETS),
    )


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    return compose_check.load(COMPOSE, compose_check.read_env_file(ENV_EXAMPLE))


def test_the_compose_file_is_valid_and_every_reference_resolves() -> None:
    assert _errors(COMPOSE) == []


def test_every_target_runs_from_the_one_image(model: dict[str, Any]) -> None:
    image = model["x-docuchat"]["image"]
    targets = {
        s["command"][s["command"].index("--target") + 1]
        for s in model["services"].values()
        if s.get("image") == image and s["command"][0] == "run"
    }
    run_targets = {t for t in TARGETS if t != "all"}
    assert targets == run_targets
    assert {s["command"][0] for s in model["services"].values() if s.get("image") == image} == {
        "run",
        "topics",
        "migrate",
    }


def test_targets_wait_for_topics_migrations_and_healthy_dependencies(
    model: dict[str, Any],
) -> None:
    services = model["services"]
    for name in ("auth", "ingest", "ingest-worker", "chat", "usage", "relay"):
        depends = services[name]["depends_on"]
        assert depends["topics"]["condition"] == "service_completed_successfully", name
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert "healthcheck" in services[name], name
    for name in ("ingest", "ingest-worker", "chat", "usage"):
        assert services[name]["depends_on"]["auth"]["condition"] == "service_healthy", name
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert all(
        dep["condition"] == "service_healthy" for dep in services["gateway"]["depends_on"].values()
    )


def test_ingest_worker_scales_on_the_qdrant_server_with_the_shared_blob_volume(
    model: dict[str, Any],
) -> None:
    worker = model["services"]["ingest-worker"]
    # --scale needs no fixed name or host port
    assert "container_name" not in worker
    assert "ports" not in worker
    shared_env = compose_check.read_env_file(REPO_ROOT / "deploy/compose/docuchat.env")
    assert shared_env["DOCUCHAT_INGEST_QDRANT_URL"].startswith("http://qdrant:")
    assert "blobs:/data/blobs" in worker["volumes"]
    assert "blobs:/data/blobs" in model["services"]["ingest"]["volumes"]


def test_the_gateway_gets_every_service_url_and_the_shared_routes(
    model: dict[str, Any],
) -> None:
    gateway = model["services"]["gateway"]
    assert set(GATEWAY_ENV_VARS) <= set(gateway["environment"])
    assert "./deploy/gateway:/etc/traefik/dynamic:ro" in gateway["volumes"]
    static = yaml.safe_load((REPO_ROOT / "deploy/compose/traefik.yml").read_text())
    # what deploy/gateway/dynamic.yml expects of the static configuration
    assert "web" in static["entryPoints"]
    assert static["ping"] == {"entryPoint": "web", "manualRouting": True}
    assert static["providers"]["file"]["directory"] == "/etc/traefik/dynamic"


def test_kafka_runs_kraft_without_auto_created_topics(model: dict[str, Any]) -> None:
    kafka = model["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_postgres_init_creates_one_database_per_service() -> None:
    sql = (REPO_ROOT / "deploy/compose/postgres-init.sql").read_text()
    created = set(re.findall(r"CREATE DATABASE (\w+);", sql))
    assert created == {f"docuchat_{s}" for s in ("auth", "ingest", "chat", "usage")}


def test_observability_is_a_profile(model: dict[str, Any]) -> None:
    profiled = {n for n, s in model["services"].items() if s.get("profiles")}
    assert profiled == {"otel-collector", "prometheus", "grafana"}
    assert all(
        s["profiles"] == ["observability"] for s in model["services"].values() if s.get("profiles")
    )


def _metric_names() -> set[str]:
    import docuchat_common.metrics as metrics
    import docuchat_common.quota  # noqa: F401 - registers its metrics
    import docuchat_ingest.embedding.metrics  # noqa: F401 - the embedding model's

    return {family.name for family in metrics.registry.collect()}


def test_the_dashboard_uses_only_exported_metrics_and_existing_usage_tables() -> None:
    dashboard = json.loads(
        (REPO_ROOT / "deploy/observability/grafana/dashboards/docuchat-overview.json").read_text()
    )
    exported = _metric_names()
    used: set[str] = set()
    tables: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"\bdocuchat_[a-z_]+", target.get("expr", "")))
            tables |= set(re.findall(r"FROM (\w+)", target.get("rawSql", "")))
    assert used, "no PromQL in the dashboard"
    suffixes = ("_total", "_bucket", "_sum", "_count", "_created")
    unknown = {
        name
        for name in used
        if name not in exported and not any(name.removesuffix(s) in exported for s in suffixes)
    }
    assert unknown == set()
    # panels the brief names: request rate, latency, consumer lag, ingestion, tokens by tenant
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("request rate", "latency", "consumer lag", "ingestion", "tokens by tenant"):
        assert topic in titles
    from docuchat_usage.models import Base

    assert tables <= set(Base.metadata.tables)


def test_prometheus_scrapes_every_target() -> None:
    config = yaml.safe_load((REPO_ROOT / "deploy/observability/prometheus.yml").read_text())
    docuchat = next(j for j in config["scrape_configs"] if j["job_name"] == "docuchat")
    scraped = {name for sd in docuchat["dns_sd_configs"] for name in sd["names"]}
    assert scraped == {t for t in TARGETS if t != "all"}


def test_topics_the_init_step_creates_are_the_catalog() -> None:
    # the init step runs `docuchat topics`, which creates ALL_TOPICS and their .dlq
    assert {t.name for t in ALL_TOPICS} >= {"docuchat.documents", "docuchat.tokens"}


# --- each check fails on a broken copy --------------------------------------------------------


def _broken_copy(tmp_path: Path, edit: Any) -> Path:
    """docker-compose.yml and what it references, in tmp_path, with ``edit`` applied."""
    for rel in ("Dockerfile", "deploy/compose", "deploy/gateway", "deploy/observability"):
        src = REPO_ROOT / rel
        dst = tmp_path / rel
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    target = tmp_path / "docker-compose.yml"
    target.write_text(edit(COMPOSE.read_text()))
    return target


def _replace(old: str, new: str) -> Any:
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(
            _replace(
                "    image: apache/kafka:3.9.1\n",
                "    image: apache/kafka:3.9.1\n    restrat: always\n",
            ),
            "compose-spec",
            id="unknown-key",
        ),
        pytest.param(
            _replace(
                "      retries: 12\n      start_period: 20s",
                "      retries: twelve\n      start_period: 20s",
            ),
            "compose-spec",
            id="wrong-type",
        ),
        pytest.param(
            _replace(
                "      kafka:\n        condition: service_healthy\n\n  migrate",
                "      kafka-broker:\n        condition: service_healthy\n\n  migrate",
            ),
            "no service 'kafka-broker'",
            id="depends-on-missing-service",
        ),
        pytest.param(
            _replace(
                "    networks:\n      - edge\n      - services\n    healthcheck",
                "    networks:\n      - edge\n      - frontend\n    healthcheck",
            ),
            "no network 'frontend'",
            id="undeclared-network",
        ),
        pytest.param(
            _replace(
                "      - qdrant-data:/qdrant/storage", "      - qdrant-storage:/qdrant/storage"
            ),
            "no volume 'qdrant-storage'",
            id="undeclared-volume",
        ),
        pytest.param(
            _replace("./deploy/compose/traefik.yml:", "./deploy/compose/traefik-static.yml:"),
            "does not exist",
            id="missing-bind-source",
        ),
        pytest.param(
            _replace("    - deploy/compose/docuchat.env\n", "    - deploy/compose/shared.env\n"),
            "does not exist",
            id="missing-env-file",
        ),
        pytest.param(
            _replace('["run", "--target", "usage"]', '["run", "--target", "billing"]'),
            "unknown target 'billing'",
            id="unknown-target",
        ),
        pytest.param(
            _replace('command: ["topics"]', 'command: ["create-topics"]'),
            "not a docuchat command",
            id="unknown-command",
        ),
    ],
)
def test_a_broken_copy_fails(tmp_path: Path, edit: Any, expected: str) -> None:
    broken = _broken_copy(tmp_path, edit)
    errors = _errors(broken)
    assert any(expected in e for e in errors), errors
