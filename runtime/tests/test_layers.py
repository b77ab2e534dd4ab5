"""The runtime is the layer below the apps: it reaches tasks only through its port (runtime.ports)."""
import ast
from pathlib import Path

RUNTIME = Path(__file__).resolve().parent.parent
APPS_ABOVE = {"tasks", "accounts", "agents", "teams", "adminpanel"}


def test_runtime_imports_no_app_above_it():
    offenders = []
    for path in RUNTIME.rglob("*.py"):
        if "tests" in path.relative_to(RUNTIME).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(RUNTIME)}: {n}" for n in names if n.split(".")[0] in APPS_ABOVE]
    assert offenders == []
