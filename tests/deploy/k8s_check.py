"""Offline checks of deploy/k8s: render with kubectl kustomize, validate core kinds with
kubernetes-validate (strict: unknown fields are errors) and custom resources (KEDA, Gateway API,
Traefik, External Secrets) with the schemas bundled in their @kubernetes-models packages, then
check that what the manifests reference exists."""

from __future__ import annotations

import functools
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import all_versions, major_minor, schema_contents
from referencing import Registry, Resource

from tests.deploy.tools import Tools

# The oldest Kubernetes the manifests must load on, and the newest schemas the package has.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


class RenderError(RuntimeError):
    pass


def render(tools: Tools, directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [tools.kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RenderError(result.stderr.strip())
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _name(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


@functools.cache
def _validator(version: str, kind: str, api_version: str) -> jsonschema.Draft202012Validator | None:
    """kubernetes-validate's strict schema for the kind, as ``kubernetes_validate.validate(...,
    strict=True)`` picks it, compiled once: that function re-reads the multi-megabyte
    definitions file on every call, which made each rendering take seconds."""
    schema_version = [v for v in all_versions() if major_minor(v) <= major_minor(version)][-1]
    schema_dir = f"kubernetes-json-schema/v{schema_version}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = schema_contents(f"{schema_dir}/{kind.lower()}-{group_version}.json", version)
    except FileNotFoundError:
        return None
    registry: Registry = Resource.from_contents(schema) @ Registry()
    registry = _definitions(schema_dir) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.cache
def _definitions(schema_dir: str) -> Resource:
    return Resource.from_contents(schema_contents(f"{schema_dir}/_definitions.json", schema_dir))


def core_errors(docs: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Errors of the kinds kubernetes-validate has (strict) schemas for, and the documents it
    has none for (custom resources), which :func:`custom_resource_errors` must then cover."""
    errors: list[str] = []
    custom: list[dict[str, Any]] = []
    for doc in docs:
        for version in KUBERNETES_VERSIONS:
            validator = _validator(version, doc["kind"], doc["apiVersion"])
            if validator is None:
                custom.append(doc)
                break
            for error in validator.iter_errors(doc):
                errors.append(
                    f"{_name(doc)} (Kubernetes {version}): {error.message} at {list(error.path)}"
                )
    return errors, custom


def custom_resource_errors(tools: Tools, docs: list[dict[str, Any]]) -> list[str]:
    """Every document validated by its package's schema; one no package knows is an error."""
    if not docs:
        return []
    result = subprocess.run(
        [tools.node, tools.crd_validator, tools.node_modules],
        input=json.dumps(docs),
        capture_output=True,
        text=True,
        check=False,
    )
    if not result.stdout:
        return [f"validator crashed: {result.stderr.strip()}"]
    reports = json.loads(result.stdout)
    errors = [f"{r['kind']}/{r['name']}: {e}" for r in reports for e in r["errors"]]
    if result.returncode != 0 and not errors:
        errors.append(f"validator failed: {result.stderr.strip()}")
    return errors


def reference_errors(docs: list[dict[str, Any]], *, targets: set[str]) -> list[str]:
    """Names the manifests use that nothing in the rendering (or the overlay's secret store)
    provides: Services and ports behind routes, scale targets, ConfigMaps and Secrets, service
    accounts, volume claims, the image's targets; and the termination grace each pod needs."""
    errors: list[str] = []
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    services = by_kind.get("Service", {})
    deployments = by_kind.get("Deployment", {})
    secrets = set(by_kind.get("Secret", {})) | {
        es["spec"]["target"]["name"] for es in by_kind.get("ExternalSecret", {}).values()
    }
    config_maps = set(by_kind.get("ConfigMap", {}))
    accounts = set(by_kind.get("ServiceAccount", {}))
    claims = set(by_kind.get("PersistentVolumeClaim", {}))
    middlewares = set(by_kind.get("Middleware", {}))
    gateways = set(by_kind.get("Gateway", {}))

    for route in by_kind.get("HTTPRoute", {}).values():
        where = _name(route)
        for parent in route["spec"]["parentRefs"]:
            if parent["name"] not in gateways:
                errors.append(f"{where}: no Gateway {parent['name']!r}")
        for rule in route["spec"]["rules"]:
            for backend in rule.get("backendRefs", []):
                service = services.get(backend["name"])
                if service is None:
                    errors.append(f"{where}: no Service {backend['name']!r}")
                elif backend["port"] not in {p["port"] for p in service["spec"]["ports"]}:
                    errors.append(
                        f"{where}: Service {backend['name']} has no port {backend['port']}"
                    )
            for flt in rule.get("filters", []):
                ref = flt.get("extensionRef")
                if ref and ref["kind"] == "Middleware" and ref["name"] not in middlewares:
                    errors.append(f"{where}: no Middleware {ref['name']!r}")

    for middleware in by_kind.get("Middleware", {}).values():
        for member in middleware["spec"].get("chain", {}).get("middlewares", []):
            if member["name"] not in middlewares:
                errors.append(f"{_name(middleware)}: no Middleware {member['name']!r} in its chain")

    for kind, field in (
        ("HorizontalPodAutoscaler", "scaleTargetRef"),
        ("ScaledObject", "scaleTargetRef"),
    ):
        for scaler in by_kind.get(kind, {}).values():
            if scaler["spec"][field]["name"] not in deployments:
                errors.append(f"{_name(scaler)}: no Deployment {scaler['spec'][field]['name']!r}")

    for service in services.values():
        selector = service["spec"]["selector"]
        if not any(
            selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
            for d in deployments.values()
        ):
            errors.append(f"{_name(service)}: selects no Deployment's pods")

    workloads = [*deployments.values(), *by_kind.get("Job", {}).values()]
    for workload in workloads:
        where = _name(workload)
        pod = workload["spec"]["template"]["spec"]
        if pod.get("serviceAccountName") not in accounts:
            errors.append(f"{where}: no ServiceAccount {pod.get('serviceAccountName')!r}")
        for volume in pod.get("volumes", []):
            claim = volume.get("persistentVolumeClaim", {}).get("claimName")
            if claim is not None and claim not in claims:
                errors.append(f"{where}: no PersistentVolumeClaim {claim!r}")
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source and source["configMapRef"]["name"] not in config_maps:
                    errors.append(f"{where}: no ConfigMap {source['configMapRef']['name']!r}")
                if "secretRef" in source and source["secretRef"]["name"] not in secrets:
                    errors.append(f"{where}: no Secret {source['secretRef']['name']!r}")
            args = container.get("args", [])
            if "--target" in args and args[args.index("--target") + 1] not in targets:
                errors.append(f"{where}: unknown target {args[args.index('--target') + 1]!r}")
        if workload["kind"] == "Deployment":
            errors += _grace_errors(where, pod, _consumer_graceful_timeout(by_kind))
    return errors


# On SIGTERM, after the preStop sleep: uvicorn drains in-flight requests (up to
# timeout_graceful_shutdown in src/docuchat/targets.py), then the lifespan stops the consumers,
# each finishing or abandoning its message within consumer_graceful_timeout_seconds, then the
# hooks and the database pool. The termination grace must cover all of it.
HTTP_DRAIN_SECONDS = 20
SHUTDOWN_MARGIN_SECONDS = 5


def _consumer_graceful_timeout(by_kind: dict[str, dict[str, dict[str, Any]]]) -> float:
    from docuchat_common.settings import ServiceSettings

    for config in by_kind.get("ConfigMap", {}).values():
        value = config.get("data", {}).get("DOCUCHAT_CONSUMER_GRACEFUL_TIMEOUT_SECONDS")
        if value is not None:
            return float(value)
    default = ServiceSettings.model_fields["consumer_graceful_timeout_seconds"].default
    return float(default)


def _grace_errors(where: str, pod: dict[str, Any], consumer_timeout: float) -> list[str]:
    errors = []
    grace = pod.get("terminationGracePeriodSeconds", 30)
    for container in pod["containers"]:
        command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
        if not command or command[0] != "sleep":
            errors.append(f"{where}: no preStop sleep (endpoints need time to drop the pod)")
            continue
        needed = int(command[1]) + HTTP_DRAIN_SECONDS + consumer_timeout + SHUTDOWN_MARGIN_SECONDS
        if grace < needed:
            errors.append(
                f"{where}: grace {grace}s < preStop {command[1]}s + {HTTP_DRAIN_SECONDS}s HTTP"
                f" drain + {consumer_timeout:g}s consumer graceful timeout"
                f" + {SHUTDOWN_MARGIN_SECONDS}s"
            )
    return errors
