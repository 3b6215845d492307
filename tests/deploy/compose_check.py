"""Offline checks of docker-compose.yml: what `docker compose config` would refuse, without Docker.

1. Interpolation as compose does it (``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
   ``${VAR:?error}``, ``${VAR?error}``, ``$$``), with the variables of ``.env.example``;
   YAML merge keys (``<<``) resolved by the YAML loader, as compose does.
2. The schema: the ``compose-spec`` package (the Rust ``compose_spec`` parser: unknown keys, wrong
   types and malformed values are errors), then its pydantic models of the Compose Specification.
3. References: every ``depends_on`` service, network, named volume, bind-mount source and
   required ``env_file`` exists; a ``service_healthy`` dependency has a healthcheck; a
   ``service_completed_successfully`` one does not restart; every service running the DocuChat
   image runs a known ``docuchat`` command and target.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from compose_spec import ComposeSpecification, PyCompose

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})"
)


class ComposeError(ValueError):
    """The file would not load in docker compose."""


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file (comments and blank lines skipped, quotes removed)."""
    values: dict[str, str] = {}
    for raw_line in path.read_text().splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def interpolate(text: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg") or ""
        value = env.get(name)
        if op in (":-", ":?") and not value:
            value = None
        if value is not None:
            return value
        if op in (":-", "-"):
            return interpolate(arg, env)
        if op in (":?", "?"):
            raise ComposeError(f"required variable {name} is missing: {arg}")
        return ""

    return _VARIABLE.sub(replace, text)


def _interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate_tree(value, env) for value in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def load(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """The compose model after merge keys and interpolation (``x-`` extensions kept)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ComposeError(f"{path.name}: not YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ComposeError(f"{path.name}: not a mapping")
    model: dict[str, Any] = _interpolate_tree(raw, env)
    return model


def schema_errors(model: dict[str, Any]) -> list[str]:
    try:
        parsed = PyCompose.from_json(json.dumps(model))
    except ValueError as exc:
        return [f"compose-spec: {exc}"]
    try:
        ComposeSpecification.model_validate(parsed.to_dict())
    except ValueError as exc:
        return [f"compose-spec model: {exc}"]
    return []


def _named_volume(source: str) -> bool:
    return not source.startswith(("/", ".", "~"))


def _volume_source(entry: Any) -> tuple[str | None, str]:
    """(source, type) of a service volume, short or long syntax."""
    if isinstance(entry, dict):
        return entry.get("source"), entry.get("type", "volume")
    parts = str(entry).split(":")
    if len(parts) == 1:
        return None, "volume"  # anonymous volume
    source = parts[0]
    return source, "volume" if _named_volume(source) else "bind"


def reference_errors(
    model: dict[str, Any],
    base_dir: Path,
    *,
    image: str,
    commands: set[str],
    targets: set[str],
) -> list[str]:
    errors: list[str] = []
    services: dict[str, Any] = model.get("services") or {}
    networks = set(model.get("networks") or {}) | {"default"}
    volumes = set(model.get("volumes") or {})

    for name, service in services.items():
        where = f"services.{name}"
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {dep: {"condition": "service_started"} for dep in depends}
        for dep, spec in depends.items():
            if dep not in services:
                errors.append(f"{where}.depends_on: no service {dep!r}")
                continue
            condition = (spec or {}).get("condition", "service_started")
            if condition == "service_healthy" and not services[dep].get("healthcheck"):
                errors.append(
                    f"{where}.depends_on.{dep}: service_healthy but {dep} has no healthcheck"
                )
            if condition == "service_completed_successfully" and services[dep].get(
                "restart", "no"
            ) not in ("no", "on-failure"):
                errors.append(f"{where}.depends_on.{dep}: waits for completion but {dep} restarts")

        # a list, or a mapping of network name to options: iterating either gives the names
        for network in service.get("networks") or []:
            if network not in networks:
                errors.append(f"{where}.networks: no network {network!r}")

        for entry in service.get("volumes") or []:
            source, kind = _volume_source(entry)
            if source is None:
                continue
            if kind == "volume" and source not in volumes:
                errors.append(f"{where}.volumes: no volume {source!r}")
            if kind == "bind" and not (base_dir / source).exists():
                errors.append(f"{where}.volumes: bind source {source!r} does not exist")

        env_files = service.get("env_file") or []
        for entry in [env_files] if isinstance(env_files, str) else env_files:
            path, required = (
                (entry.get("path"), entry.get("required", True))
                if isinstance(entry, dict)
                else (entry, True)
            )
            if required and not (base_dir / str(path)).is_file():
                errors.append(f"{where}.env_file: {path!r} does not exist")

        build = service.get("build")
        if isinstance(build, dict):
            context = base_dir / build.get("context", ".")
            if not (context / build.get("dockerfile", "Dockerfile")).is_file():
                errors.append(f"{where}.build: no Dockerfile in {context}")

        if service.get("image") == image:
            command = service.get("command")
            if not isinstance(command, list) or not command or command[0] not in commands:
                errors.append(f"{where}.command: not a docuchat command: {command!r}")
            elif "--target" in command:
                at = command.index("--target")
                target = command[at + 1] if at + 1 < len(command) else None
                if target not in targets:
                    errors.append(f"{where}.command: unknown target {target!r}")
            elif command[0] == "run":
                errors.append(f"{where}.command: `run` without --target")
    return errors
