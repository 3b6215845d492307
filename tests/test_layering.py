"""Services never import each other; libs/common imports no service."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("auth", "ingest", "chat", "usage")


def _imports(package_dir: Path) -> set[str]:
    found: set[str] = set()
    for path in package_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_services_never_import_each_other() -> None:
    for service in SERVICES:
        imported = _imports(ROOT / "services" / service / "src" / f"docuchat_{service}")
        others = {f"docuchat_{s}" for s in SERVICES if s != service}
        assert not imported & others, f"{service} imports {imported & others}"


def test_common_imports_no_service() -> None:
    imported = _imports(ROOT / "libs" / "common" / "src" / "docuchat_common")
    assert not imported & {f"docuchat_{s}" for s in SERVICES}
