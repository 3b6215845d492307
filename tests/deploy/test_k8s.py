"""deploy/k8s, validated offline: `kubectl kustomize` of each overlay, kubernetes-validate --strict,
the KEDA / Gateway API / Traefik / External Secrets schemas, references; each validator shown to
fail on a deliberately broken copy. (checkov: test_checkov.py.)"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from docuchat.targets import TARGETS
from docuchat_common.events.topics import DOCUMENTS, TOKENS
from docuchat_ingest.worker.consumers import DOCUMENTS_GROUP
from docuchat_usage.metering.consumers import TOKENS_GROUP
from tests.deploy import k8s_check
from tests.deploy.tools import REPO_ROOT, Tools

K8S = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
RUN_TARGETS = tuple(t for t in TARGETS if t != "all")
API_TARGETS = {"auth", "ingest", "chat", "usage"}

Docs = list[dict[str, Any]]


@pytest.fixture(scope="module")
def rendered(tools: Tools) -> dict[str, Docs]:
    return {overlay: k8s_check.render(tools, K8S / "overlays" / overlay) for overlay in OVERLAYS}


def _all_errors(tools: Tools, docs: Docs) -> list[str]:
    core, custom = k8s_check.core_errors(docs)
    return [
        *core,
        *k8s_check.custom_resource_errors(tools, custom),
        *k8s_check.reference_errors(docs, targets=set(TARGETS)),
    ]


def _of(docs: Docs, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlay_renders_and_validates(
    tools: Tools, rendered: dict[str, Docs], overlay: str
) -> None:
    assert _all_errors(tools, rendered[overlay]) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_are_the_ones_with_schema_packages(
    rendered: dict[str, Docs], overlay: str
) -> None:
    _, custom = k8s_check.core_errors(rendered[overlay])
    kinds = {d["kind"] for d in custom}
    expected = {"ScaledObject", "Gateway", "HTTPRoute", "Middleware"}
    assert kinds == (expected | {"ExternalSecret"} if overlay == "prod" else expected)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_target_has_its_deployment_service_account_and_budget(
    rendered: dict[str, Docs], overlay: str
) -> None:
    docs = rendered[overlay]
    for kind in ("Deployment", "Service", "ServiceAccount", "PodDisruptionBudget"):
        assert set(RUN_TARGETS) <= set(_of(docs, kind)), kind
    deployments = _of(docs, "Deployment")
    for target in RUN_TARGETS:
        container = deployments[target]["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == ["run", "--target", target]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert {"requests", "limits"} <= set(container["resources"])


def test_api_targets_scale_on_cpu_and_consumers_on_their_group_lag(
    rendered: dict[str, Docs],
) -> None:
    docs = rendered["prod"]
    assert set(_of(docs, "HorizontalPodAutoscaler")) == {"auth", "ingest", "chat"}
    scaled = _of(docs, "ScaledObject")
    assert set(scaled) == {"ingest-worker", "usage"}
    for name, group, topic in (
        ("ingest-worker", DOCUMENTS_GROUP, DOCUMENTS),
        ("usage", TOKENS_GROUP, TOKENS),
    ):
        spec = scaled[name]["spec"]
        kafka = next(t for t in spec["triggers"] if t["type"] == "kafka")
        assert kafka["metadata"]["consumerGroup"] == group
        assert kafka["metadata"]["topic"] == topic.name
        # replicas beyond the partition count would sit idle
        assert spec["maxReplicaCount"] <= topic.partitions
    # usage is an API too: its CPU trigger lives in the ScaledObject (KEDA owns its HPA)
    assert any(t["type"] == "cpu" for t in scaled["usage"]["spec"]["triggers"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_reads_the_brokers_the_services_use(rendered: dict[str, Docs], overlay: str) -> None:
    docs = rendered[overlay]
    config = next(iter(_of(docs, "ConfigMap").values()))["data"]
    for scaled in _of(docs, "ScaledObject").values():
        kafka = next(t for t in scaled["spec"]["triggers"] if t["type"] == "kafka")
        assert kafka["metadata"]["bootstrapServers"] == config["DOCUCHAT_KAFKA_BOOTSTRAP_SERVERS"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_non_root_on_a_read_only_root_with_tmp_writable(
    rendered: dict[str, Docs], overlay: str
) -> None:
    docs = rendered[overlay]
    for workload in [*_of(docs, "Deployment").values(), *_of(docs, "Job").values()]:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        tmp_volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in tmp_volumes


def test_setup_jobs_create_topics_and_migrate_each_database(rendered: dict[str, Docs]) -> None:
    jobs = _of(rendered["prod"], "Job")
    args = {
        name: job["spec"]["template"]["spec"]["containers"][0]["args"] for name, job in jobs.items()
    }
    assert args == {
        "create-topics": ["topics"],
        **{f"migrate-{s}": ["migrate", "--target", s] for s in sorted(API_TARGETS)},
    }
    config = next(iter(_of(rendered["prod"], "ConfigMap").values()))
    assert config["data"]["DOCUCHAT_MIGRATE_ON_START"] == "false"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_setup_phase_holds_everything_the_jobs_need(
    rendered: dict[str, Docs], overlay: str
) -> None:
    """`kubectl apply -l docuchat.io/phase=setup` must bring the Jobs and what they read."""
    setup = [
        d
        for d in rendered[overlay]
        if d["metadata"].get("labels", {}).get("docuchat.io/phase") == "setup"
    ]
    kinds = {d["kind"] for d in setup}
    assert {"Namespace", "ConfigMap", "ServiceAccount", "Job", "NetworkPolicy"} <= kinds
    assert kinds & {"Secret", "ExternalSecret"}
    assert (
        k8s_check.reference_errors(
            [d for d in setup if d["kind"] != "Job"] + [d for d in setup if d["kind"] == "Job"],
            targets=set(TARGETS),
        )
        == []
    )


def test_only_the_gateway_reaches_the_api_targets(rendered: dict[str, Docs]) -> None:
    docs = rendered["prod"]
    policies = _of(docs, "NetworkPolicy")
    assert policies["default-deny"]["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
    }
    gateway = policies["gateway-to-apis"]["spec"]
    selected = {
        name
        for name, d in _of(docs, "Deployment").items()
        if gateway["podSelector"]["matchLabels"].items()
        <= d["spec"]["template"]["metadata"]["labels"].items()
    }
    routed = {
        b["name"]
        for route in _of(docs, "HTTPRoute").values()
        for rule in route["spec"]["rules"]
        for b in rule["backendRefs"]
    }
    assert selected == routed == API_TARGETS
    assert gateway["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "traefik"
    }


def _dynamic() -> dict[str, Any]:
    """deploy/gateway/dynamic.yml without its Go template actions (values from the environment),
    which leaves the structure: routers, rules, middlewares."""
    text = (REPO_ROOT / "deploy/gateway/dynamic.yml").read_text()
    config: dict[str, Any] = yaml.safe_load(re.sub(r"\{\{.*?\}\}", "", text))
    return config["http"]


def _dynamic_paths() -> set[str]:
    """The API paths deploy/gateway/dynamic.yml routes (health routes and the search route,
    which the ingest API serves with a Qdrant server, aside)."""
    routers = _dynamic()["routers"]
    paths: set[str] = set()
    for name, router in routers.items():
        if name.endswith("-health") or name == "ingest-search":
            continue
        for kind, value in re.findall(r"(PathPrefix|PathRegexp|Path)\(`([^`]+)`\)", router["rule"]):
            paths.add((value.rstrip("/") or "/") if kind == "PathPrefix" else value)
    return paths


def test_http_routes_match_the_gateway_file(rendered: dict[str, Docs]) -> None:
    routes = _of(rendered["prod"], "HTTPRoute")
    paths = {
        m["path"]["value"]
        for route in routes.values()
        for rule in route["spec"]["rules"]
        for m in rule["matches"]
    }
    assert paths == _dynamic_paths()
    middlewares = _dynamic()["middlewares"]
    identity_headers = set(middlewares["strip-identity"]["headers"]["customRequestHeaders"])
    forward_auth = _of(rendered["prod"], "Middleware")["identity"]["spec"]["forwardAuth"]
    assert (
        forward_auth["authResponseHeaders"]
        == middlewares["identity"]["forwardAuth"]["authResponseHeaders"]
    )
    for name, route in routes.items():
        for rule in route["spec"]["rules"]:
            assert set(rule["filters"][0]["requestHeaderModifier"]["remove"]) == identity_headers
        filters = [f for rule in route["spec"]["rules"] for f in rule["filters"]]
        # a client's identity headers never pass; then the policy chain, forward-auth included
        # on protected routes; the catch-all rewrites the path as dynamic.yml's does
        rewrites = [f["urlRewrite"]["path"]["replaceFullPath"] for f in filters[2:]]
        assert [f["type"] for f in filters] == [
            "RequestHeaderModifier",
            "ExtensionRef",
            *(["URLRewrite"] if rewrites else []),
        ]
        dynamic_router = _dynamic()["routers"].get(name, {})
        expected = [
            middlewares[m]["replacePath"]["path"]
            for m in dynamic_router.get("middlewares", [])
            if "replacePath" in middlewares[m]
        ]
        assert rewrites == expected, name
        chain = "public" if name.endswith("-public") else "protected"
        assert filters[1]["extensionRef"]["name"] == chain, name


def test_gateway_policies_match_the_gateway_file(rendered: dict[str, Docs]) -> None:
    """The Middlewares of policies.yaml do what deploy/gateway/dynamic.yml's do."""
    dynamic = _dynamic()["middlewares"]
    ours = {name: m["spec"] for name, m in _of(rendered["prod"], "Middleware").items()}
    for chain in ("public", "protected"):
        # identity headers: removed by the routes' standard filter instead
        expected = [m for m in dynamic[chain]["chain"]["middlewares"] if m != "strip-identity"]
        assert [m["name"] for m in ours[chain]["chain"]["middlewares"]] == expected, chain
    cors = {
        k: v
        for k, v in dynamic["cors"]["headers"].items()
        if k not in ("accessControlAllowOriginList", "accessControlAllowOriginListRegex")
    }
    assert {
        k: v for k, v in ours["cors"]["headers"].items() if k != "accessControlAllowOriginList"
    } == cors
    text = (REPO_ROOT / "deploy/gateway/dynamic.yml").read_text()
    for name in ("ip-rate-limit", "tenant-rate-limit"):
        theirs, mine = dynamic[name]["rateLimit"], ours[name]["rateLimit"]
        assert mine["period"] == theirs["period"]
        assert mine["sourceCriterion"].keys() == theirs["sourceCriterion"].keys()
        # average and burst: dynamic.yml's defaults (its values come from the environment)
        block = text[text.index(f"    {name}:") :].split("\n\n", 1)[0]
        defaults = dict(re.findall(r"(average|burst): .*?default \"(\d+)\"", block))
        assert {k: str(mine[k]) for k in ("average", "burst")} == defaults, name


# --- each validator fails on a broken copy -----------------------------------------------------


def _broken_copy(tmp_path: Path, rel: str, edit: Callable[[str], str]) -> Path:
    shutil.copytree(K8S, tmp_path / "k8s")
    target = tmp_path / "k8s" / rel
    target.write_text(edit(target.read_text()))
    return tmp_path / "k8s" / "overlays" / "prod"


def _replace(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)

    return edit


def test_kustomize_fails_on_a_missing_resource(tools: Tools, tmp_path: Path) -> None:
    overlay = _broken_copy(
        tmp_path, "base/auth/kustomization.yaml", lambda t: t + "- configmap.yaml\n"
    )
    with pytest.raises(k8s_check.RenderError, match=r"configmap\.yaml"):
        k8s_check.render(tools, overlay)


@pytest.mark.parametrize(
    ("rel", "edit", "expected"),
    [
        pytest.param(
            "base/chat/deployment.yaml",
            _replace("  revisionHistoryLimit: 5", "  revisionHistoryLimit: 5\n  replica: 3"),
            "Deployment/chat",
            id="strict-unknown-field",
        ),
        pytest.param(
            "base/chat/deployment.yaml",
            _replace("containerPort: 8103", "containerPort: http"),
            "Deployment/chat",
            id="wrong-type",
        ),
        pytest.param(
            "base/ingest-worker/scaledobject.yaml",
            _replace("minReplicaCount: 1", "minReplicaCount: one"),
            "ScaledObject/ingest-worker",
            id="keda-schema",
        ),
        pytest.param(
            "base/gateway/chat-routes.yaml",
            _replace("type: PathPrefix", "type: Prefix"),
            "HTTPRoute/chat",
            id="gateway-api-schema",
        ),
        pytest.param(
            "base/gateway/middleware.yaml",
            _replace("maxResponseBodySize: 65536", "maxResponseBodySize: 64KiB"),
            "Middleware/identity",
            id="traefik-schema",
        ),
        pytest.param(
            "overlays/prod/external-secret.yaml",
            _replace("kind: ClusterSecretStore", "kind: Vault"),
            "ExternalSecret/docuchat-secrets",
            id="external-secrets-schema",
        ),
        pytest.param(
            "base/gateway/usage-routes.yaml",
            _replace("port: 8104", "port: 8000"),
            "HTTPRoute/usage-public: Service usage has no port 8000",
            id="route-to-missing-port",
        ),
        pytest.param(
            "base/ingest-worker/deployment.yaml",
            _replace("terminationGracePeriodSeconds: 60", "terminationGracePeriodSeconds: 10"),
            "Deployment/ingest-worker: grace 10s",
            id="grace-too-short",
        ),
        pytest.param(
            "base/relay/deployment.yaml",
            _replace("- relay\n", "- outbox\n"),
            "unknown target 'outbox'",
            id="unknown-target",
        ),
    ],
)
def test_a_broken_copy_fails(
    tools: Tools, tmp_path: Path, rel: str, edit: Callable[[str], str], expected: str
) -> None:
    docs = k8s_check.render(tools, _broken_copy(tmp_path, rel, edit))
    errors = _all_errors(tools, docs)
    assert any(expected in e for e in errors), errors
