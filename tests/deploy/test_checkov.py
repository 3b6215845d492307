"""checkov on the rendered overlays and the Dockerfile: no finding beyond the accepted ones in
tests/deploy/checkov.yaml (each with its reason); and it does flag a deliberately broken copy.
One checkov run covers both (it takes ~15 s to start)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import k8s_check
from tests.deploy.tools import REPO_ROOT, Tools

CONFIG = Path(__file__).with_name("checkov.yaml")


def _break_dockerfile(text: str) -> str:
    """Runs as root and has no HEALTHCHECK."""
    lines = [
        line
        for line in text.splitlines()
        if not line.startswith(("USER ", "HEALTHCHECK", '    CMD ["python", "-c"'))
    ]
    return "\n".join(lines) + "\n"


def _break_deployment(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat Deployment privileged, as root, writable root filesystem, no resource limits."""
    chat = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "chat")
    pod = chat["spec"]["template"]["spec"]
    pod["securityContext"] = {"runAsUser": 0}
    container = pod["containers"][0]
    container["securityContext"] = {"privileged": True, "readOnlyRootFilesystem": False}
    del container["resources"]
    return [chat]


@pytest.fixture(scope="module")
def findings(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Failed check ids by file (good/..., broken/...) from one checkov run."""
    root = tmp_path_factory.mktemp("checkov")
    (root / "good").mkdir()
    (root / "broken").mkdir()
    prod: list[dict[str, Any]] = []
    for overlay in ("dev", "prod"):
        docs = k8s_check.render(tools, REPO_ROOT / "deploy/k8s/overlays" / overlay)
        (root / "good" / f"{overlay}.yaml").write_text(yaml.safe_dump_all(docs))
        prod = docs
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    (root / "good" / "Dockerfile").write_text(dockerfile)
    (root / "broken" / "chat.yaml").write_text(yaml.safe_dump_all(_break_deployment(prod)))
    (root / "broken" / "Dockerfile").write_text(_break_dockerfile(dockerfile))

    checkov = Path(sys.executable).with_name("checkov")
    result = subprocess.run(
        [checkov, "--config-file", str(CONFIG), "-d", str(root), "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        cwd=root,
    )
    assert result.stdout, result.stderr
    reports = json.loads(result.stdout)
    failed: dict[str, set[str]] = {}
    for report in reports if isinstance(reports, list) else [reports]:
        assert report["summary"]["parsing_errors"] == 0, report["summary"]
        assert report["summary"]["resource_count"] > 0, report  # it did read the files
        for check in report["results"]["failed_checks"]:
            path = check["file_path"].lstrip("/")
            failed.setdefault(path, set()).add(check["check_id"])
    return failed


def test_rendered_overlays_and_the_dockerfile_have_no_findings(
    findings: dict[str, set[str]],
) -> None:
    assert {path: ids for path, ids in findings.items() if path.startswith("good/")} == {}


def test_checkov_flags_a_broken_deployment(findings: dict[str, set[str]]) -> None:
    flagged = findings.get("broken/chat.yaml", set())
    # privileged, root, writable root filesystem, no limits
    assert {"CKV_K8S_16", "CKV_K8S_22", "CKV_K8S_11", "CKV_K8S_13"} <= flagged, flagged


def test_checkov_flags_a_broken_dockerfile(findings: dict[str, set[str]]) -> None:
    flagged = findings.get("broken/Dockerfile", set())
    assert {"CKV_DOCKER_2", "CKV_DOCKER_3"} <= flagged, flagged
